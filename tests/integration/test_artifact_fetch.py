"""odin.stack.artifact_fetch run for real: a local HTTP server and file:// sources serve release
files and their checksum lists, and the tests break them (tampered files, forged lists, a
dropped connection, a full disk, a concurrent run) and check what is left on disk."""

import hashlib
import http.server
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from backup_helpers import mounted_tmpfs, run_module
from conftest import run

BINARY = b"#!/bin/sh\necho release v1\n" * 50
IMAGES = os.urandom(256 * 1024)


def sha(data):
    return hashlib.sha256(data).hexdigest()


class Source:
    """A release directory served over HTTP on 127.0.0.1; records every path requested."""

    def __init__(self, root):
        self.root = root
        self.requests = []
        self.truncate = set()
        source = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                source.requests.append(self.path)
                name = self.path.lstrip("/")
                if name in source.truncate:
                    data = (root / name).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 3])
                    self.wfile.flush()
                    self.connection.close()
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "release"
    root.mkdir()
    (root / "k3s").write_bytes(BINARY)
    (root / "images.tar.zst").write_bytes(IMAGES)
    (root / "sha256sum-amd64.txt").write_text("%s  k3s\n%s  images.tar.zst\n" % (sha(BINARY), sha(IMAGES)))
    source = Source(root)
    yield source
    source.stop()


@pytest.fixture
def dest(tmp_path):
    path = tmp_path / "dest"
    path.mkdir()
    return path


def files(dest, pins=True, **override):
    entries = [
        {"name": "k3s", "dest": str(dest / "k3s"), "mode": "0755", "sha256": sha(BINARY) if pins else ""},
        {"name": "images.tar.zst", "dest": str(dest / "images"), "sha256": sha(IMAGES) if pins else ""},
    ]
    for entry in entries:
        entry.update(override.get(entry["name"], {}))
    return entries


def fetch(base_url, entries, check=False, **extra):
    return run_module(
        run,
        "artifact_fetch",
        {"base_url": base_url, "checksum_list": "sha256sum-amd64.txt", "files": entries, **extra},
        check=check,
    )


def listing(path):
    """Every entry under path with its mode and content digest: what a failed run must leave as it was."""
    out = {}
    for entry in sorted(path.rglob("*")):
        st = entry.lstat()
        out[str(entry.relative_to(path))] = (
            stat.S_IMODE(st.st_mode),
            sha(entry.read_bytes()) if entry.is_file() else None,
        )
    return out


def test_fetches_verified_files_into_place_then_needs_no_network(release, dest):
    res = fetch(release.url, files(dest))
    assert res.get("failed") is not True, res
    assert res["changed"] is True
    assert (dest / "k3s").read_bytes() == BINARY and (dest / "images").read_bytes() == IMAGES
    assert stat.S_IMODE((dest / "k3s").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "images").stat().st_mode) == 0o644
    assert [f["pinned"] for f in res["files"]] == [True, True]
    assert sorted(p.name for p in dest.iterdir()) == ["images", "k3s"], "a temporary file was left behind"

    release.stop()
    again = fetch(release.url, files(dest))
    assert again.get("failed") is not True, again
    assert again["changed"] is False and again["fetched_list"] is False


def test_unpinned_files_are_verified_by_the_list_and_need_it(release, dest):
    res = fetch(release.url, files(dest, pins=False))
    assert res["changed"] is True and res["unpinned"] == ["k3s", "images.tar.zst"], res
    release.stop()
    offline = fetch(release.url, files(dest, pins=False))
    assert offline["failed"] is True and offline["reason"] == "unreachable", offline
    assert "sha256sum-amd64.txt could not be read" in offline["msg"]


def test_check_mode_writes_nothing(release, dest):
    res = fetch(release.url, files(dest), check=True)
    assert res["changed"] is True, res
    assert list(dest.iterdir()) == []
    assert not any(path.endswith(("k3s", "images.tar.zst")) for path in release.requests), release.requests


def test_drifted_content_and_mode_are_put_back(release, dest):
    fetch(release.url, files(dest))
    (dest / "k3s").write_bytes(b"edited\n")
    (dest / "images").chmod(0o600)
    res = fetch(release.url, files(dest))
    assert [f["changed"] for f in res["files"]] == [True, True], res
    assert (dest / "k3s").read_bytes() == BINARY
    assert stat.S_IMODE((dest / "images").stat().st_mode) == 0o644


def test_a_tampered_download_replaces_nothing(release, dest):
    fetch(release.url, files(dest))
    before = listing(dest)
    (release.root / "images.tar.zst").write_bytes(IMAGES[:-1] + b"X")
    res = fetch(
        release.url,
        files(
            dest,
            pins=False,
            k3s={"dest": str(dest / "k3s-new")},
            **{"images.tar.zst": {"dest": str(dest / "images-new")}},
        ),
    )
    assert res["failed"] is True and res["reason"] == "refused", res
    assert "does not match sha256 %s" % sha(IMAGES) in res["msg"]
    assert str(dest / "images-new") + " was not changed" in res["msg"]
    # k3s-new downloaded and verified first, but nothing is moved into place while another file fails.
    assert listing(dest) == before


@pytest.mark.parametrize(
    ("case", "forge", "expect"),
    [
        (
            "pin mismatch",
            lambda root: (root / "sha256sum-amd64.txt").write_text(
                "%s  k3s\n%s  images.tar.zst\n" % ("1" * 64, sha(IMAGES))
            ),
            [
                "gives " + "1" * 64 + " for k3s, but the pinned checksum is " + sha(BINARY),
                "(release.yml)",
                "does not serve the official release",
            ],
        ),
        (
            "unlisted file",
            lambda root: (root / "sha256sum-amd64.txt").write_text("%s  k3s\n" % sha(BINARY)),
            ["has no entry for 'images.tar.zst'"],
        ),
    ],
)
def test_a_forged_list_is_refused_before_any_download(release, dest, case, forge, expect):
    forge(release.root)
    res = fetch(release.url, files(dest, k3s={"pinned_by": "release.yml"}))
    assert res["failed"] is True and res["reason"] == "refused", (case, res)
    for text in expect:
        assert text in res["msg"], (case, text, res["msg"])
    assert release.requests == ["/sha256sum-amd64.txt"], "a file was downloaded after the list was refused"
    assert list(dest.iterdir()) == []


def test_a_list_that_does_not_parse_is_refused(release, dest):
    (release.root / "sha256sum-amd64.txt").write_text("this is not a checksum list\n")
    res = fetch(release.url, files(dest))
    assert res["failed"] is True and res["reason"] == "unparsable", res
    assert list(dest.iterdir()) == []


def test_a_dropped_connection_leaves_nothing(release, dest):
    release.truncate.add("images.tar.zst")
    res = fetch(release.url, files(dest))
    assert res["failed"] is True and res["reason"] == "unreachable", res
    assert "was not changed" in res["msg"]
    assert list(dest.iterdir()) == []


def test_a_full_disk_leaves_nothing(release, tmp_path):
    with mounted_tmpfs(tmp_path / "small", "128k") as small:
        res = fetch(release.url, files(small))
        assert res["failed"] is True and res["reason"] == "write", res
        assert "No space left on device" in res["msg"]
        assert list(small.iterdir()) == []


def test_file_source_and_kept_checksum_list(release, dest):
    kept = dest / "sha256sum-amd64.txt"
    res = fetch("file://%s" % release.root, files(dest), checksum_list_dest=str(kept))
    assert res["changed"] is True, res
    assert kept.read_text() == (release.root / "sha256sum-amd64.txt").read_text()
    assert release.requests == []
    again = fetch("file://%s" % release.root, files(dest), checksum_list_dest=str(kept))
    assert again["changed"] is False and again["fetched_list"] is False


def test_concurrent_runs_agree_and_leave_no_temporary_files(release, dest):
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _n: fetch(release.url, files(dest)), range(3)))
    assert all(res.get("failed") is not True for res in results), results
    assert (dest / "k3s").read_bytes() == BINARY and (dest / "images").read_bytes() == IMAGES
    assert sorted(p.name for p in dest.iterdir()) == ["images", "k3s"]


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        ({"base_url": "ftp://example.invalid/k3s"}, "is not an http://, https:// or file:// URL"),
        ({"files": [{"name": "../k3s", "dest": "/nonexistent-dir/k3s"}]}, "must be a plain file name"),
        ({"files": [{"name": "k3s", "dest": "/nonexistent-dir/k3s", "sha256": "abc"}]}, "which is not a sha256"),
        (
            {"files": [{"name": "k3s", "dest": "/nonexistent-dir/k3s", "sha256": sha(BINARY)}]},
            "does not exist; create it first",
        ),
    ],
)
def test_bad_input_is_refused(release, dest, args, expect):
    merged = {"base_url": release.url, "files": files(dest), **args}
    res = fetch(merged.pop("base_url"), merged.pop("files"), **merged)
    assert res["failed"] is True and expect in res["msg"], res
    assert list(dest.iterdir()) == []


def test_a_directory_as_dest_is_refused(release, dest):
    (dest / "k3s").mkdir()
    res = fetch(release.url, files(dest))
    assert res["failed"] is True and res["reason"] == "bad_input" and "is a directory" in res["msg"], res
