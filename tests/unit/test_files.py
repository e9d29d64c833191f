"""file_differs and file_drifted: what a role renders again after one listing of the host's files."""

import hashlib

import pytest

from ansible_collections.odin.stack.plugins.plugin_utils import _files

CONTENT = "# managed\nkey: value\n"
SHA1 = hashlib.sha1(CONTENT.encode()).hexdigest()  # noqa: S324 (find's default checksum)
LISTED = {"path": "/etc/app.conf", "checksum": SHA1, "mode": "0600", "pw_name": "root", "gr_name": "root"}


@pytest.mark.parametrize(
    ("entry", "differs"),
    [
        (LISTED, False),
        ({**LISTED, "checksum": "0" * 40}, True),
        ({**LISTED, "mode": "0644"}, True),
        ({**LISTED, "mode": "600"}, False),
        ({**LISTED, "pw_name": "grafana"}, True),
        ({**LISTED, "gr_name": "adm"}, True),
        ({**LISTED, "path": "/etc/other.conf"}, True),
        ({k: v for k, v in LISTED.items() if k != "checksum"}, True),
    ],
)
def test_file_differs(entry, differs):
    assert _files.file_differs([entry], "/etc/app.conf", CONTENT, "0600") is differs


def test_file_differs_when_nothing_is_listed_or_the_content_changed():
    assert _files.file_differs([], "/etc/app.conf", CONTENT, "0600")
    assert _files.file_differs(None, "/etc/app.conf", CONTENT, "0600")
    assert _files.file_differs([LISTED], "/etc/app.conf", CONTENT + "more: 1\n", "0600")
    assert not _files.file_differs([LISTED], "/etc/app.conf", CONTENT.encode(), "0600")


@pytest.mark.parametrize(
    ("found", "drifted"),
    [
        ([LISTED], False),
        ([{**LISTED, "mode": "0644"}], True),
        ([{**LISTED, "pw_name": "nobody"}], True),
        ([], False),
        ([{**LISTED, "checksum": "0" * 40}], False),
    ],
)
def test_file_drifted(found, drifted):
    assert _files.file_drifted(found, "/etc/app.conf", "0600") is drifted
