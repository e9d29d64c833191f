# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Tests the roles check their settings with; the logic lives in module_utils/_settings.py."""

from __future__ import annotations

from ansible_collections.odin.stack.plugins.module_utils import _settings


def is_k8s_quantity(value):
    """True for a Kubernetes quantity such as 10Gi, 512Mi, 100m or 1."""
    return _settings.quantity(value) is not None


class TestModule:
    def tests(self):
        return {
            "http_url": _settings.is_http_url,
            "listen_address": _settings.is_listen_address,
            "k8s_label": _settings.is_k8s_label,
            "k8s_subdomain": _settings.is_k8s_subdomain,
            "alertmanager_matcher": _settings.is_alertmanager_matcher,
            "k8s_quantity": is_k8s_quantity,
        }
