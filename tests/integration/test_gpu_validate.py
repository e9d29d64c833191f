"""odin.stack.gpu_validate run by real `ansible` against stand-in nvidia-smi programs.

No GPU exists on the CI machines: each case puts a small executable named nvidia-smi on
PATH that prints a fixture document (or a recorded failure) and exits as nvidia-smi does,
so the module's command handling, timeout, failure messages and return values are exercised
for real. The GPU itself is validated on hardware by the e2e workflow.
"""

import json
import os
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent

FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "fixtures"
SMI = FIXTURES / "nvidia_smi"


def fake_tool(bindir, name, stdout_file=None, *, stderr_text="", rc=0, sleep=0):
    bindir.mkdir(exist_ok=True)
    lines = ["#!/bin/sh"]
    if sleep:
        lines.append("sleep %d" % sleep)
    if stdout_file:
        lines.append("cat '%s'" % stdout_file)
    if stderr_text:
        lines.append("printf '%%s\\n' '%s' >&2" % stderr_text)
    lines.append("exit %d" % rc)
    path = bindir / name
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)


def validate(ansible, bindir, check=False, **args):
    result = ansible(
        [
            "ansible",
            "localhost",
            "-c",
            "local",
            "-i",
            "localhost,",
            "-m",
            "odin.stack.gpu_validate",
            "-e",
            "ansible_python_interpreter=%s" % sys.executable,
            "-a",
            json.dumps(args),
        ]
        + (["--check"] if check else []),
        PATH=os.pathsep.join([str(bindir), str(BIN), "/usr/bin", "/bin"]),
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
    )
    payload, _ = json.JSONDecoder().raw_decode(result.stdout[result.stdout.index("{") :])
    return payload["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_healthy_laptop_gpu_passes_with_facts(ansible, tmp_path):
    fake_tool(tmp_path / "bin", "nvidia-smi", SMI / "driver-550-laptop-gpu-power-readings.xml")
    result = validate(
        ansible,
        tmp_path / "bin",
        min_driver_version="535",
        expected_gpu_count=1,
        product_pattern="Laptop GPU",
        max_temperature=85,
    )
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    assert result["driver_version"] == "550.120"
    assert result["gpus"][0]["uuid"] == "GPU-0a1b2c3d-0000-4000-8000-000000000550"
    assert result["failed_checks"] == []


def test_every_failed_check_is_reported_at_once(ansible, tmp_path):
    fake_tool(tmp_path / "bin", "nvidia-smi", SMI / "driver-535-unhealthy.xml")
    result = validate(ansible, tmp_path / "bin", max_temperature=85, min_driver_version="550")
    assert result["failed"]
    checks = [c["check"] for c in result["failed_checks"]]
    assert checks == [
        "driver_version",
        "temperature",
        "retired_pages_pending",
        "remapped_rows_pending",
        "pcie_link_width",
    ]
    assert "5 check(s)" in result["msg"] and "expected <= 85 C, found 94 C" in result["msg"]


@pytest.mark.parametrize(
    ("stdout", "rc", "sleep", "kind"),
    [
        pytest.param("errors/driver-library-mismatch.txt", 18, 0, "driver_library_mismatch", id="mismatch"),
        pytest.param("errors/gpu-lost.txt", 15, 0, "gpu_lost", id="gpu-lost"),
        pytest.param("errors/no-devices.txt", 6, 0, "no_devices", id="no-devices"),
        pytest.param("truncated.xml", 0, 0, "malformed_xml", id="malformed"),
        pytest.param(None, 0, 30, "timeout", id="timeout"),
    ],
)
def test_known_failures_are_named(ansible, tmp_path, stdout, rc, sleep, kind):  # noqa: PLR0917 - parametrized
    fake_tool(tmp_path / "bin", "nvidia-smi", SMI / stdout if stdout else None, rc=rc, sleep=sleep)
    result = validate(ansible, tmp_path / "bin", timeout=2)
    assert result["failed"]
    assert result["error_kind"] == kind, result["msg"]


def test_missing_nvidia_smi(ansible, tmp_path):
    if any(Path(d, "nvidia-smi").exists() for d in ("/sbin", "/usr/sbin", "/usr/local/sbin")):
        pytest.skip("this machine has a real nvidia-smi in an sbin directory, which the module always searches")
    (tmp_path / "bin").mkdir()
    result = validate(ansible, tmp_path / "bin", timeout=30)
    assert result["failed"] and result["error_kind"] == "missing"
    assert "nvidia-smi was not found" in result["msg"]


def test_container_runtime_sees_the_host_gpus(ansible, tmp_path):
    bindir = tmp_path / "bin"
    fake_tool(bindir, "nvidia-smi", SMI / "driver-550-laptop-gpu-power-readings.xml")
    fake_tool(bindir, "nvidia-container-cli", FIXTURES / "gpu_cluster/nvidia-container-cli-info.txt")
    result = validate(ansible, bindir, check_container_runtime=True)
    assert not result.get("failed"), result.get("msg")
    assert result["container_runtime"]["nvrm_version"] == "550.120"

    fake_tool(bindir, "nvidia-smi", SMI / "driver-535-two-gpus.xml")
    result = validate(ansible, bindir, check_container_runtime=True)
    assert [c["check"] for c in result["failed_checks"]] == ["container_runtime_uuids"]


def test_cluster_check_is_skipped_in_check_mode_and_needs_a_reachable_api(ansible, tmp_path):
    bindir = tmp_path / "bin"
    fake_tool(bindir, "nvidia-smi", SMI / "driver-550-laptop-gpu-power-readings.xml")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: x}}]\n"
    )
    checked = validate(ansible, bindir, check=True, check_cluster=True, kubeconfig=str(kubeconfig))
    assert not checked.get("failed"), checked.get("msg")
    assert any("cluster check creates a pod" in w for w in checked["warnings_found"])
    # No K3s here: the API at 127.0.0.1:1 refuses connections, which the module must name.
    result = validate(ansible, bindir, check_cluster=True, kubeconfig=str(kubeconfig))
    assert result["failed"]
    assert "could not talk to the Kubernetes API" in result["msg"]
