"""The offline bundle's images: listed from the rendered charts, pulled, verified, imported.

playbooks/bundle.yml renders each chart (here the test charts, served as a chart repository
on 127.0.0.1) with the values the monitoring and gpu_k8s roles render from the inventory,
and lists every image those manifests start. The test checks that list against every
`image:` line of its own `helm template` of the same charts with the same values. Then a real
registry (Debian's docker-registry) serves a small image under each listed name. skopeo
pulls them into the bundle through a registries.conf mirror (odin_bundle_registries_conf),
and the k3s role's import step verifies and copies them, and refuses a tampered archive.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from k8slive import package_charts, say

from ansible_collections.odin.stack.plugins.plugin_utils import _k8s_yaml

REPO = Path(__file__).resolve().parents[2]
MON_DEFAULTS = yaml.safe_load((REPO / "roles/monitoring/defaults/main.yml").read_text())
GPU_DEFAULTS = yaml.safe_load((REPO / "roles/gpu_k8s/defaults/main.yml").read_text())

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
IMAGE_LINE = re.compile(r"""^\s*(?:-\s+)?image:\s*["']?([^"'\s]+)["']?\s*$""", re.MULTILINE)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(plane, tmp_path_factory):
    """The real Helm (as a release archive) and the test charts as a chart repository."""
    root = tmp_path_factory.mktemp("bundle-source")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(plane.bin / "helm", arcname="linux-amd64/helm")
    name = "helm-v9.9.9-linux-amd64.tar.gz"
    (root / "helm").mkdir()
    (root / "helm" / name).write_bytes(archive.getvalue())
    digest = hashlib.sha256(archive.getvalue()).hexdigest()
    (root / "helm" / (name + ".sha256sum")).write_text(f"{digest}  {name}\n")
    charts = package_charts(plane, root / "charts", CHART_VERSIONS)
    subprocess.run([str(plane.bin / "helm"), "repo", "index", str(charts)], check=True, env=plane.env())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


CHART_VERSIONS = {
    "kube-prometheus-stack": MON_DEFAULTS["monitoring_kube_prometheus_stack_version"],
    "loki": MON_DEFAULTS["monitoring_loki_version"],
    "alloy": MON_DEFAULTS["monitoring_alloy_version"],
    "dcgm-exporter": MON_DEFAULTS["monitoring_dcgm_exporter_version"],
    "nvidia-device-plugin": GPU_DEFAULTS["gpu_k8s_chart_version"],
}


def run_bundle(plane, served, out, *extra, env=None):
    repos = {name: f"{served}/charts" for name in MON_DEFAULTS["monitoring_chart_repositories"]}
    extra_vars = {
        "odin_bundle_dir": str(out),
        "helm_version": "v9.9.9",
        "odin_bundle_helm_mirror_url": f"{served}/helm",
        "monitoring_chart_repositories": repos,
        "gpu_k8s_chart_repo_url": f"{served}/charts",
    }
    cmd = [
        str(REPO / ".venv/bin/ansible-playbook"),
        str(REPO / "playbooks/bundle.yml"),
        "-i",
        str(REPO / "inventories/laptop"),
        "--tags",
        "bundle_helm,bundle_charts,bundle_images,bundle_sums",
        "-e",
        json.dumps(extra_vars),
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        *extra,
    ]
    start = time.monotonic()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, check=False, cwd=REPO, env={**plane.env(), **(env or {})}
    )
    say(f"bundle.yml {' '.join(extra) or '(images listed)'}: rc={proc.returncode} in {time.monotonic() - start:.1f}s")
    return proc


def changed_tasks(stdout):
    """The names of the tasks that reported a change, from ansible-playbook's default output."""
    tasks, current = [], None
    for line in stdout.splitlines():
        if line.startswith("TASK ["):
            current = line[6:].split("]", 1)[0]
        elif line.startswith("changed:") and current not in tasks:
            tasks.append(current)
    return tasks


def images_by_grep(plane, out):
    """Every `image:` line of a helm template of each bundled chart with the rendered values."""
    render = out / ".render/rendered"
    found = set()
    for chart, version in CHART_VERSIONS.items():
        values = (
            render / "gpu_k8s/device-plugin-values.yaml"
            if chart == "nvidia-device-plugin"
            else render / f"monitoring/{chart}.values.yaml"
        )
        text = subprocess.run(
            [str(plane.bin / "helm"), "template", chart, str(out / f"charts/{chart}-{version}.tgz"), "-f", str(values)],
            capture_output=True,
            text=True,
            check=True,
            env=plane.env(),
        ).stdout
        found |= {_k8s_yaml.normalize_image(ref) for ref in IMAGE_LINE.findall(text)}
    return found


@pytest.fixture(scope="module")
def listed(plane, served, tmp_path_factory):
    """A bundle of the served Helm and charts whose images are listed, not yet pulled."""
    out = tmp_path_factory.mktemp("bundle") / "bundle"
    proc = run_bundle(plane, served, out, "-e", "odin_bundle_pull_images=false")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return out


def test_bundle_lists_every_image_the_rendered_charts_start(plane, listed):
    out = listed
    listed = (out / "images/images.txt").read_text().splitlines()
    grepped = images_by_grep(plane, out)
    assert grepped, "the test charts start no images: the comparison would prove nothing"
    assert sorted(grepped - set(listed)) == [], "images in the manifests but not in the bundle list"
    assert sorted(set(listed) - grepped) == [], "images in the bundle list that no manifest names"
    # One entry per chart workload the test charts define, named as containerd pulls them.
    assert all(ref.startswith("registry.invalid/odin-test/") for ref in listed), listed
    sums = (out / "SHA256SUMS").read_text()
    assert "images/images.txt" in sums
    assert json.loads((out / "versions.json").read_text())["images"] == listed
    say(f"bundle image list: {len(listed)} images, all {len(grepped)} grepped from the manifests")


def _oci_layout(dest):
    """A minimal one-layer OCI image layout (the image every test name is pushed as)."""
    blobs = dest / "blobs/sha256"
    blobs.mkdir(parents=True)

    def blob(data):
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    layer_io = io.BytesIO()
    with tarfile.open(fileobj=layer_io, mode="w") as tar:
        data = b"odin bundle test image\n"
        info = tarfile.TarInfo("odin-test.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = blob(layer_io.getvalue())
    config = blob(
        json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}
        ).encode()
    )
    manifest = blob(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
            }
        ).encode()
    )
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (dest / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        **manifest,
                        "annotations": {"org.opencontainers.image.ref.name": "latest"},
                    }
                ],
            }
        )
    )


@pytest.fixture
def registry(tmp_path):
    """Debian's docker-registry on 127.0.0.1, with registries.conf mirroring registry.invalid to it."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not (Path(binary).exists() and shutil.which("skopeo")):
        pytest.skip("skopeo and docker-registry are not installed; scripts/host-deps.sh installs them")
    port = _free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "error"},
                "storage": {"filesystem": {"rootdirectory": str(tmp_path / "registry-data")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    conf = tmp_path / "registries.conf"
    conf.write_text(
        '[[registry]]\nlocation = "registry.invalid"\n'
        f'[[registry.mirror]]\nlocation = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    yield f"127.0.0.1:{port}", conf
    proc.kill()
    proc.wait()


def _k3s_import(tmp_path, images_dir, name):
    dest = tmp_path / name
    vars_file = tmp_path / f"{name}.json"
    vars_file.write_text(json.dumps({"_dir": str(dest), "k3s_bundle_images_dir": str(images_dir)}))
    proc = subprocess.run(
        [
            str(REPO / ".venv/bin/ansible-playbook"),
            str(REPO / "tests/integration/files/k3s_bundle_images.yml"),
            "-i",
            "localhost,",
            "-e",
            f"@{vars_file}",
            "-e",
            f"ansible_python_interpreter={sys.executable} ansible_become=false",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    return proc, dest / "images"


def test_bundle_pulls_each_image_and_the_k3s_role_imports_them_verified(plane, served, listed, registry, tmp_path):
    address, conf = registry
    out = listed
    images = (out / "images/images.txt").read_text().splitlines()
    layout = tmp_path / "layout"
    _oci_layout(layout)
    for ref in images:
        path = ref.split("/", 1)[1]
        subprocess.run(
            [
                SKOPEO,
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                f"oci:{layout}:latest",
                f"docker://{address}/{path}",
            ],
            check=True,
            capture_output=True,
        )

    pulled = run_bundle(plane, served, out, "-e", f"odin_bundle_registries_conf={conf}")
    assert pulled.returncode == 0, pulled.stdout[-4000:] + pulled.stderr[-2000:]
    sums = dict(reversed(line.split("  ", 1)) for line in (out / "images/SHA256SUMS").read_text().splitlines() if line)
    assert len(sums) == len(images)
    for ref in images:
        archive = out / "images" / (re.sub(r"[^A-Za-z0-9._-]+", "_", ref) + ".tar")
        assert hashlib.sha256(archive.read_bytes()).hexdigest() == sums[archive.name]
        with tarfile.open(archive) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == [ref]
    assert not list((out / "images").glob(".*.part")), "a partial download was left behind"
    again = run_bundle(plane, served, out, "-e", f"odin_bundle_registries_conf={conf}")
    assert again.returncode == 0 and "changed=0" in again.stdout, changed_tasks(again.stdout)

    # The k3s role copies each archive where K3s imports it, verified against SHA256SUMS.
    proc, dest = _k3s_import(tmp_path, out / "images", "host")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert sorted(p.name for p in dest.iterdir()) == sorted("odin-bundle-" + name for name in sums)

    # A tampered archive is refused; nothing of it lands on the host.
    victim = sorted(sums)[0]
    (out / "images" / victim).write_bytes(b"not the image\n")
    proc, dest = _k3s_import(tmp_path, out / "images", "tampered-host")
    assert proc.returncode != 0
    assert "checksum" in proc.stdout.lower(), proc.stdout[-3000:]
    assert not (dest / f"odin-bundle-{victim}").exists()
