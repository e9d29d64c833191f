# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Filters of the internal artifact role; the logic lives in plugin_utils/_artifact.py."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.odin.stack.plugins.plugin_utils import _artifact


def artifact_plan(catalog, name, version, arch, source, files, mirror_url="", bundle_dir="", sha256=None, settings=""):  # noqa: PLR0913,PLR0917 (the filter's positional arguments)
    """The base URL, checksum list and files (with pins) artifact_fetch needs for one release."""
    try:
        return _artifact.plan(
            catalog,
            name,
            version,
            arch,
            source=source,
            files=list(files or []),
            mirror_url=mirror_url or "",
            bundle_dir=bundle_dir or "",
            sha256=dict(sha256 or {}),
            settings=settings or "",
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"artifact_plan: {exc}") from exc


def artifact_failure(result, plan):
    """The message for a failed artifact_fetch result: what was refused and what to change."""
    return _artifact.failure_message(dict(result or {}), dict(plan or {}))


def sha256sum_files(text, directory, prefix="", pattern="", mode="0644"):
    """artifact_fetch's files for the entries of a sha256sum list, kept in `directory`."""
    try:
        return _artifact.listed_files(text, directory, prefix=prefix, pattern=pattern, mode=mode)
    except ValueError as exc:
        raise AnsibleFilterError(f"sha256sum_files: {exc}") from exc


class FilterModule:
    def filters(self):
        return {
            "artifact_plan": artifact_plan,
            "artifact_failure": artifact_failure,
            "sha256sum_files": sha256sum_files,
        }
