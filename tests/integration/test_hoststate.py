"""The host-state record the bad-settings table relies on sees every kind of change."""

import os

from hoststate import changes, snapshot


def _tree(root):
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "config").write_bytes(b"key: value\n")
    (root / "etc" / "link").symlink_to("config")
    (root / "cache" / "__pycache__").mkdir(parents=True)
    return [root / "etc", root / "absent", root / "cache"]


def test_an_untouched_tree_has_no_changes(tmp_path):
    roots = _tree(tmp_path)
    assert changes(snapshot(roots), snapshot(roots)) == []


def test_a_same_size_edit_with_its_time_put_back_is_seen(tmp_path):
    roots = _tree(tmp_path)
    before = snapshot(roots)
    config = tmp_path / "etc" / "config"
    info = config.stat()
    config.write_bytes(b"key: VALUE\n")
    os.utime(config, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert changes(before, snapshot(roots)) == ["changed %s" % config]


def test_mode_link_creation_and_removal_are_seen(tmp_path):
    roots = _tree(tmp_path)
    before = snapshot(roots)
    (tmp_path / "etc" / "config").chmod(0o600)
    (tmp_path / "etc" / "link").unlink()
    (tmp_path / "etc" / "link").symlink_to("elsewhere")
    (tmp_path / "absent").mkdir()
    (tmp_path / "absent" / "new").write_text("x")
    assert changes(before, snapshot(roots)) == [
        "created %s" % (tmp_path / "absent"),
        "created %s" % (tmp_path / "absent" / "new"),
        "changed %s" % (tmp_path / "etc" / "config"),
        "changed %s" % (tmp_path / "etc" / "link"),
    ]
    (tmp_path / "etc" / "config").unlink()
    assert "removed %s" % (tmp_path / "etc" / "config") in changes(before, snapshot(roots))


def test_excluded_paths_and_skipped_names_are_left_out(tmp_path):
    roots = _tree(tmp_path)
    skip = ("__pycache__",)
    before = snapshot(roots, exclude=[tmp_path / "cache" / "busy"], skip_names=skip)
    (tmp_path / "cache" / "__pycache__" / "m.pyc").write_bytes(b"\0")
    (tmp_path / "cache" / "busy").mkdir()
    assert changes(before, snapshot(roots, exclude=[tmp_path / "cache" / "busy"], skip_names=skip)) == []
