# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Filters the roles check their settings with; the logic lives in module_utils/_settings.py."""

from __future__ import annotations

from ansible_collections.odin.stack.plugins.module_utils import _settings


def path_problems(paths, optional=()):
    """Messages for the settings of `paths` ({name: value}) that are not absolute paths."""
    return _settings.path_problems(dict(paths), optional=list(optional))


def prometheus_duration_seconds(value):
    """Seconds in a Prometheus duration (15d, 1w2d); none when the value is not one."""
    return _settings.duration_seconds(value)


def k8s_quantity(value):
    """A Kubernetes quantity as a number (cores or bytes); none when the value is not one."""
    return _settings.quantity(value)


def prometheus_byte_size(value):
    """Bytes in a Prometheus byte size (8GiB, 512MB); none when the value is not one."""
    return _settings.byte_size(value)


class FilterModule:
    def filters(self):
        return {
            "path_problems": path_problems,
            "prometheus_duration_seconds": prometheus_duration_seconds,
            "k8s_quantity": k8s_quantity,
            "prometheus_byte_size": prometheus_byte_size,
        }
