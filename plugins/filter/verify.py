# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Filters of the verify role; the logic lives in plugin_utils/_verify_pod.py."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.odin.stack.plugins.plugin_utils import _verify_pod


def verify_test_pod(namespace, *, name, image, token, marker, storage_class=None):
    """The Namespace, optional PVC and Pod of the verify role's test workload."""
    given = {"namespace": namespace, "name": name, "image": image, "token": token, "marker": marker}
    for option, value in given.items():
        if not value or not isinstance(value, str):
            raise AnsibleFilterError("verify_test_pod: %s must be a non-empty string, got %r" % (option, value))
    return _verify_pod.test_pod_objects(
        namespace, pod_name=name, image=image, token=token, marker=marker, storage_class=storage_class or None
    )


class FilterModule:
    def filters(self):
        return {"verify_test_pod": verify_test_pod}
