"""odin.stack.gpu_validate run by real `ansible` against stand-in nvidia-smi programs.

No GPU exists on the CI machines: each case puts a small executable named nvidia-smi on
PATH that prints a fixture document (or a recorded failure) and exits as nvidia-smi does,
so the module's command handling, timeout, failure messages and return values are exercised
for real. The GPU itself is validated on hardware by the e2e workflow.
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent

FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "fixtures"
SMI = FIXTURES / "nvidia_smi"


def fake_tool(bindir, name, stdout_file=None, *, stderr_text="", stderr_file=None, rc=0, sleep=0):
    bindir.mkdir(exist_ok=True)
    lines = ["#!/bin/sh"]
    if sleep:
        lines.append("sleep %d" % sleep)
    if stdout_file:
        lines.append("cat '%s'" % stdout_file)
    if stderr_file:
        lines.append("cat '%s' >&2" % stderr_file)
    if stderr_text:
        lines.append("printf '%%s\\n' '%s' >&2" % stderr_text)
    lines.append("exit %d" % rc)
    path = bindir / name
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)
    return path


def hung_tool(bindir, pidfile, *, ignore_term):
    """An nvidia-smi that never answers, with a child; both pids go to pidfile."""
    bindir.mkdir(exist_ok=True)
    path = bindir / "nvidia-smi"
    path.write_text(
        "#!/bin/sh\n%ssleep 1000 &\necho $$ $! > '%s'\nwait\n" % ("trap '' TERM\n" if ignore_term else "", pidfile)
    )
    path.chmod(0o755)


def running(pid):
    """Whether pid is a live process (a zombie has ended and only waits to be reaped)."""
    try:
        stat = Path("/proc/%d/stat" % pid).read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


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
        ]
        + (["-a", json.dumps(args)] if args else [])
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


@pytest.mark.parametrize(
    ("stderr_file", "rc", "kind", "words"),
    [
        pytest.param(
            "errors/device-handle-unknown-error.txt",
            15,
            "gpu_lost",
            ["GPU (bus id 0000:01:00.0) has fallen off the bus", "Reboot the host", "Xid 79"],
            id="device-handle-unknown-error",
        ),
        pytest.param(
            "errors/gpu-lost-reboot.txt",
            15,
            "gpu_lost",
            ["GPU (bus id 0000:01:00.0) has fallen off the bus", "NVreg_DynamicPowerManagement"],
            id="gpu-lost-reboot",
        ),
        pytest.param(
            "errors/insufficient-permissions.txt",
            4,
            "permission_denied",
            ["may not open the NVIDIA devices", "become: true", "/dev/nvidia*"],
            id="insufficient-permissions",
        ),
        pytest.param(
            "errors/driver-not-loaded.txt", 9, "driver_not_loaded", ["modprobe nvidia"], id="driver-not-loaded"
        ),
    ],
)
def test_gpu_faults_say_what_which_gpu_and_what_to_do(ansible, tmp_path, stderr_file, rc, kind, words):  # noqa: PLR0917
    fake_tool(tmp_path / "bin", "nvidia-smi", stderr_file=SMI / stderr_file, rc=rc)
    result = validate(ansible, tmp_path / "bin")
    assert result["failed"]
    assert result["error_kind"] == kind, result["msg"]
    assert result["rc"] == rc
    for word in words:
        assert word in result["msg"]
    if kind == "gpu_lost":
        assert result["error_gpus"] == [{"index": None, "pci_bus_id": "0000:01:00.0", "uuid": None}]


@pytest.mark.parametrize("ignore_term", [False, True], ids=["stops-on-sigterm", "ignores-sigterm"])
def test_hung_nvidia_smi_is_a_timeout_and_is_killed(ansible, tmp_path, ignore_term):
    pidfile = tmp_path / "nvidia-smi.pids"
    hung_tool(tmp_path / "bin", pidfile, ignore_term=ignore_term)
    started = time.monotonic()
    result = validate(ansible, tmp_path / "bin", timeout=1)
    elapsed = time.monotonic() - started
    pids = [int(pid) for pid in pidfile.read_text().split()]
    try:
        assert result["failed"]
        assert result["error_kind"] == "timeout", result["msg"]
        assert "did not answer within 1 second (the module's timeout)" in result["msg"]
        assert "dmesg" in result["msg"]
        assert elapsed < 60
        deadline = time.monotonic() + 5
        while any(running(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in pids if running(pid)] == []
    finally:
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_nvidia_smi_without_execute_permission(ansible, tmp_path):
    path = fake_tool(tmp_path / "bin", "nvidia-smi", SMI / "driver-550-laptop-gpu-power-readings.xml")
    path.chmod(0o000)
    for args in ({}, {"nvidia_smi_path": str(path)}):
        result = validate(ansible, tmp_path / "bin", **args)
        assert result["failed"]
        assert result["error_kind"] == "permission_denied", result["msg"]
        assert "%s is not executable (mode 0000)" % path in result["msg"]
        assert "chmod 0755" in result["msg"]


def test_nvidia_smi_that_the_kernel_refuses_to_execute(ansible, tmp_path):
    interpreter = tmp_path / "sh"
    interpreter.write_text("")
    interpreter.chmod(0o644)
    path = fake_tool(tmp_path / "bin", "nvidia-smi", SMI / "driver-550-laptop-gpu-power-readings.xml")
    path.write_text("#!%s\n" % interpreter + path.read_text().partition("\n")[2])
    result = validate(ansible, tmp_path / "bin")
    assert result["failed"]
    assert result["error_kind"] == "permission_denied", result["msg"]
    assert "%s could not be executed: Permission denied" % path in result["msg"]


@pytest.mark.parametrize("where", ["missing-path", "missing-interpreter"])
def test_nvidia_smi_that_is_not_there(ansible, tmp_path, where):
    bindir = tmp_path / "bin"
    if where == "missing-path":
        bindir.mkdir()
        path = tmp_path / "opt" / "nvidia-smi"
        words = "nvidia_smi_path %s does not exist" % path
    else:
        path = fake_tool(bindir, "nvidia-smi", SMI / "driver-550-laptop-gpu-power-readings.xml")
        path.write_text("#!%s\n" % (tmp_path / "gone" / "sh") + path.read_text().partition("\n")[2])
        words = "%s could not be started: No such file or directory" % path
    result = validate(ansible, bindir, nvidia_smi_path=str(path))
    assert result["failed"]
    assert result["error_kind"] == "missing", result["msg"]
    assert words in result["msg"]
    assert "nvidia_driver role" in result["msg"]


def test_failed_checks_name_each_gpu_by_index_bus_id_and_uuid(ansible, tmp_path):
    fake_tool(tmp_path / "bin", "nvidia-smi", SMI / "driver-535-two-gpus.xml")
    result = validate(ansible, tmp_path / "bin", max_temperature=39)
    assert result["failed"]
    assert [g["index"] for g in result["gpus"]] == [0, 1]
    assert [(c["gpu_index"], c["pci_bus_id"]) for c in result["failed_checks"]] == [(1, "00000000:65:00.0")]
    assert (
        "temperature on GPU 1 (bus id 00000000:65:00.0, GPU-0a1b2c3d-0000-4000-8000-000000535002): "
        "expected <= 39 C, found 40 C" in result["msg"]
    )


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
