"""playbooks/bundle.yml against release files served on 127.0.0.1 by the test.

Nothing here can reach GitHub or get.helm.sh, so the test serves a release tree of its own
(as a mirror: odin_bundle_k3s_mirror_url, odin_bundle_helm_mirror_url) and runs the K3s and
Helm parts: files land in the bundle layout the k3s and helm roles read, a checksum list that disagrees with the pinned
checksum stops the run. Pulling the charts needs the real Helm and the chart repositories;
the e2e workflow runs that part on a runner with internet access.
"""

import hashlib
import io
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "release"
    (root / "helm").mkdir(parents=True)
    files = {"k3s": b"\x7fELF k3s test build\n", "k3s-airgap-images-amd64.tar.zst": b"\x28\xb5\x2f\xfd images"}
    # The same files under both versions the tests ask for (mirrors keep GitHub's <version>/ layout).
    for version in ("v9.9.9+k3s1", "v1.36.3+k3s1"):
        (root / "k3s" / version).mkdir(parents=True)
        for name, data in files.items():
            (root / "k3s" / version / name).write_bytes(data)
        (root / "k3s" / version / "sha256sum-amd64.txt").write_text(
            "".join("%s  %s\n" % (sha(d), n) for n, d in files.items())
        )
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        body = b"helm test build\n"
        info = tarfile.TarInfo("linux-amd64/README.md")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    name = "helm-v9.9.9-linux-amd64.tar.gz"
    (root / "helm" / name).write_bytes(archive.getvalue())
    (root / "helm" / (name + ".sha256sum")).write_text("%s  %s\n" % (sha(archive.getvalue()), name))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"root": root, "url": "http://127.0.0.1:%d" % server.server_address[1], "files": files}
    server.shutdown()


def bundle(ansible, release, bundle_dir, *extra):
    return ansible(
        [
            "ansible-playbook",
            "-i",
            "inventories/laptop",
            "playbooks/bundle.yml",
            "--tags",
            "bundle_k3s,bundle_helm",
            "-e",
            "odin_bundle_dir=%s" % bundle_dir,
            "-e",
            "odin_bundle_k3s_mirror_url=%s/k3s odin_bundle_helm_mirror_url=%s/helm" % (release["url"], release["url"]),
            *extra,
        ],
        timeout=300,
    )


def test_k3s_and_helm_land_verified_in_the_bundle_layout(ansible, release, tmp_path):
    out = tmp_path / "bundle"
    res = bundle(ansible, release, out, "-e", "k3s_version=v9.9.9+k3s1", "-e", "helm_version=v9.9.9")
    assert res.returncode == 0, res.stdout + res.stderr
    for name, data in release["files"].items():
        assert (out / "k3s" / name).read_bytes() == data
    assert (out / "k3s" / "sha256sum-amd64.txt").is_file()
    assert (out / "k3s" / "k3s").stat().st_mode & 0o111
    assert (out / "helm" / "helm-v9.9.9-linux-amd64.tar.gz").is_file()
    assert (out / "helm" / "helm-v9.9.9-linux-amd64.tar.gz.sha256sum").is_file()
    # A second run downloads nothing new.
    again = bundle(ansible, release, out, "-e", "k3s_version=v9.9.9+k3s1", "-e", "helm_version=v9.9.9")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "changed=0" in again.stdout


def test_artifact_that_disagrees_with_the_pinned_checksum_is_refused(ansible, release, tmp_path):
    out = tmp_path / "bundle"
    # v1.36.3+k3s1 has checksums pinned in roles/artifact/vars/main.yml; the served test files differ.
    res = bundle(ansible, release, out, "-e", "k3s_version=v1.36.3+k3s1", "-e", "helm_version=v9.9.9")
    assert res.returncode == 2
    assert "but the pinned checksum is 2f98a9f8" in res.stdout
    assert "(roles/artifact/vars/main.yml)" in res.stdout
    assert not (out / "k3s" / "k3s").exists()


def test_checksum_mismatch_on_download_is_refused(ansible, release, tmp_path):
    (release["root"] / "k3s" / "v9.9.9+k3s1" / "k3s").write_bytes(b"tampered\n")
    out = tmp_path / "bundle"
    res = bundle(ansible, release, out, "-e", "k3s_version=v9.9.9+k3s1", "-e", "helm_version=v9.9.9")
    assert res.returncode == 2
    assert "does not match sha256 %s" % sha(release["files"]["k3s"]) in res.stdout
    # Neither the refused binary nor the images archive downloaded beside it is kept.
    assert sorted(p.name for p in (out / "k3s").iterdir()) == []


def test_bundle_dir_is_required(ansible, release):
    res = ansible(["ansible-playbook", "-i", "inventories/laptop", "playbooks/bundle.yml"], timeout=120)
    assert res.returncode == 2
    assert "pass an absolute directory for the bundle" in res.stdout
