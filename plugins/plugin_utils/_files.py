# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Whether a file on the host already is what a task would write, from one listing.

The roles list the files they render with one ansible.builtin.find call (checksums, modes,
owners) and render only those that are missing, differ or drifted, instead of asking the
host once per file. Controller-side only.
"""

from __future__ import annotations

import hashlib


def _sha1(content):
    if isinstance(content, str):
        content = content.encode("utf-8")
    return hashlib.sha1(content).hexdigest()  # noqa: S324 (the checksum find and copy compare files with)


def file_differs(found, path, content, mode, *, owner="root", group="root"):
    """True unless `path` is among `found` (ansible.builtin.find's files, with get_checksum)
    with the sha1 of `content`, the octal `mode` ("0600") and the owner and group given."""
    for entry in found or ():
        if entry.get("path") != path:
            continue
        return (
            entry.get("checksum") != _sha1(content)
            or int(str(entry.get("mode", "-1")), 8) != int(str(mode), 8)
            or entry.get("pw_name") != owner
            or entry.get("gr_name") != group
        )
    return True


def file_drifted(found, path, mode, *, owner="root", group="root"):
    """True when `path` is among `found` but its mode, owner or group is not the one given;
    False when it is as given or not there at all (nothing to correct)."""
    for entry in found or ():
        if entry.get("path") == path:
            return (
                int(str(entry.get("mode", "-1")), 8) != int(str(mode), 8)
                or entry.get("pw_name") != owner
                or entry.get("gr_name") != group
            )
    return False
