# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Filters used by the k3s and helm roles; the logic lives in plugin_utils/_k3s.py and module_utils/_artifact.py."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.odin.stack.plugins.module_utils import _artifact
from ansible_collections.odin.stack.plugins.plugin_utils import _k3s


def k3s_version_valid(version):
    """True when `version` is exactly a release tag like v1.36.3+k3s1 (no surrounding space)."""
    return _k3s.is_release_tag(version)


def k3s_version_compare(left, right):
    """-1, 0 or 1 as K3s release `left` is older than, equal to or newer than `right`."""
    try:
        return _k3s.compare_versions(left, right)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def k3s_version_from_output(output):
    """The release version printed by `k3s --version` ('' when none)."""
    return _k3s.version_from_output(output) or ""


def sha256sum_entry(text, name):
    """The sha256 listed for file `name` in sha256sum-format text ('' when not listed)."""
    try:
        return _artifact.checksum_for(text, name)
    except ValueError as exc:
        raise AnsibleFilterError(f"checksum list does not parse: {exc}") from exc


def k3s_config_problems(config, variable="k3s_config"):
    """List of problems with a K3s config.yaml dict (empty when it is fine)."""
    return _k3s.config_problems(config, variable)


def k3s_registries_problems(registries, variable="k3s_registries"):
    """List of problems with a registries.yaml dict; credentials are never shown."""
    return _k3s.registries_problems(registries, variable)


def k3s_stable_address_problems(address, interface, kind, enabled, agents=(), config=None):  # noqa: PLR0917
    """List of problems with the stable node address settings (positional: the Jinja filter's arguments)."""
    return _k3s.stable_address_problems(
        address, interface, kind, enabled, agents=list(agents or ()), config=config or {}
    )


class FilterModule:
    def filters(self):
        return {
            "k3s_version_valid": k3s_version_valid,
            "k3s_version_compare": k3s_version_compare,
            "k3s_version_from_output": k3s_version_from_output,
            "sha256sum_entry": sha256sum_entry,
            "k3s_config_problems": k3s_config_problems,
            "k3s_registries_problems": k3s_registries_problems,
            "k3s_stable_address_problems": k3s_stable_address_problems,
        }
