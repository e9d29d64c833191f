"""Fixtures for the stage that runs the Kubernetes layers against a real control plane.

The control plane (tests/controlplane/cluster.py) is built or taken from the cache by
scripts/controlplane-build.sh, started once for the session and torn down after it.
Playbooks run as the user runs them, against this host over a local connection, with
odin_kubeconfig pointing at the test cluster and state under a temporary directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controlplane"))

import cluster  # noqa: E402
from k8slive import say  # noqa: E402


@pytest.fixture(scope="session")
def plane(tmp_path_factory):
    bin_dir, seconds, reused = cluster.build()
    say(f"control plane binaries {'reused from' if reused else 'built into'} {bin_dir} in {seconds:.1f}s")
    control_plane = cluster.ControlPlane(bin_dir, workdir=tmp_path_factory.mktemp("controlplane"))
    try:
        control_plane.start()
    except Exception:
        control_plane.stop()
        raise
    say(f"control plane ready in {control_plane.startup_seconds:.1f}s (kine/SQLite, apiserver, kcm, scheduler, kwok)")
    yield control_plane
    rss = control_plane.rss_mib()
    say("resident memory at the end: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in rss.items()))
    control_plane.stop()
