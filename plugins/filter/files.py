# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Filters that compare rendered content with a listing of the host's files; the logic
lives in plugin_utils/_files.py."""

from __future__ import annotations

from ansible_collections.odin.stack.plugins.plugin_utils import _files


class FilterModule:
    def filters(self):
        return {"file_differs": _files.file_differs, "file_drifted": _files.file_drifted}
