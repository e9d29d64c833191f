"""The test control plane itself: the pinned version, and nothing left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_control_plane_runs_the_kubernetes_version_of_the_pinned_k3s(plane):
    k3s_version = yaml.safe_load((REPO / "roles/k3s/defaults/main.yml").read_text())["k3s_version"]
    kubernetes = re.match(r"^(v\d+\.\d+\.\d+)\+k3s\d+$", k3s_version).group(1)
    server = plane.kubectl("version", "-o", "yaml").stdout
    assert yaml.safe_load(server)["serverVersion"]["gitVersion"] == kubernetes
    gomod = (REPO / "tests/controlplane/kubernetes/go.mod").read_text()
    assert f"require k8s.io/kubernetes {kubernetes}\n" in gomod
    minor = kubernetes.rsplit(".", 1)[0].replace("v1.", "v0.")
    replaced = re.findall(r"=> k8s.io/[\w-]+ (v[\d.]+)", gomod)
    assert replaced and all(v.rsplit(".", 1)[0] == minor for v in replaced), set(replaced)


def test_killed_owner_leaves_no_component_running(plane, tmp_path):
    """kill -9 of the process that started a control plane takes every component with it."""
    script = (
        "import sys, time; sys.path.insert(0, %r); import cluster; "
        "p = cluster.ControlPlane(%r, workdir=%r); p.start(); "
        "print(' '.join(str(x.pid) for x in p.procs.values()), flush=True); time.sleep(600)"
    ) % (str(REPO / "tests/controlplane"), str(plane.bin), str(tmp_path / "plane"))
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in owner.stdout.readline().split()]
    assert len(pids) == 5
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 30
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
        time.sleep(0.5)
    assert alive == [], f"still running after the owner was killed: {alive}"


def _state(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line
    except OSError:
        return "Z"
    return ""
