"""Parser, checks and failure classification behind odin.stack.gpu_validate, on fixture XML."""

import json
from pathlib import Path

import pytest

from ansible_collections.odin.stack.plugins.module_utils import _gpu_cluster as cluster
from ansible_collections.odin.stack.plugins.module_utils import _nvidia_smi as smi

FIXTURES = Path(__file__).parent / "fixtures"
SMI = FIXTURES / "nvidia_smi"
CLUSTER = FIXTURES / "gpu_cluster"


def load(name):
    return smi.parse((SMI / name).read_text())


@pytest.mark.parametrize(
    ("fixture", "driver", "cuda", "expected"),
    [
        pytest.param(
            "driver-470-datacenter-throttle-reasons.xml",
            "470.103.01",
            "11.4",
            [
                {
                    "product_name": "Tesla T4",
                    "uuid": "GPU-0a1b2c3d-0000-4000-8000-000000000470",
                    "memory_total_mib": 15109,
                    "temperature_c": 34,
                    "power": {"source": "power_readings", "draw_watts": 9.84, "limit_watts": 70, "max_limit_watts": 70},
                    "clock_reasons": {"source": "clocks_throttle_reasons", "active": ["gpu_idle"]},
                    "ecc_mode": "Enabled",
                    "retired_pages": {"pending": False, "single_bit": 0, "double_bit": 0},
                    "remapped_rows": {"pending": None, "failure": None, "correctable": None, "uncorrectable": None},
                    "pcie": {"current_gen": 3, "max_gen": 3, "current_width": 16, "max_width": 16},
                    "persistence_mode": "Enabled",
                }
            ],
            id="470-throttle-reasons-power-readings",
        ),
        pytest.param(
            "driver-525-geforce-laptop-na.xml",
            "525.85.05",
            "12.0",
            [
                {
                    "product_name": "NVIDIA GeForce RTX 3070 Laptop GPU",
                    "product_brand": "GeForce",
                    "memory_total_mib": 8192,
                    "memory_used_mib": 5,
                    "power": {
                        "source": "power_readings",
                        "draw_watts": None,
                        "limit_watts": None,
                        "max_limit_watts": None,
                    },
                    "ecc_mode": None,
                    "retired_pages": {"pending": None, "single_bit": None, "double_bit": None},
                    "remapped_rows": {"pending": None, "failure": None, "correctable": None, "uncorrectable": None},
                    "pcie": {"current_gen": 1, "max_gen": 4, "current_width": 16, "max_width": 16},
                    "persistence_mode": "Disabled",
                }
            ],
            id="525-geforce-laptop-na-fields",
        ),
        pytest.param(
            "driver-550-laptop-gpu-power-readings.xml",
            "550.120",
            "12.4",
            [
                {
                    "product_name": "NVIDIA GeForce RTX 4090 Laptop GPU",
                    "pci_bus_id": "00000000:01:00.0",
                    "power": {
                        "source": "gpu_power_readings",
                        "draw_watts": 5.87,
                        "limit_watts": 175,
                        "max_limit_watts": 175,
                    },
                    "clock_reasons": {"source": "clocks_event_reasons", "active": ["gpu_idle"]},
                    "temperature_c": 41,
                    "retired_pages": {"pending": None, "single_bit": None, "double_bit": None},
                }
            ],
            id="550-gpu-power-readings-event-reasons",
        ),
        pytest.param(
            "driver-535-two-gpus.xml",
            "535.129.03",
            "12.2",
            [
                {
                    "uuid": "GPU-0a1b2c3d-0000-4000-8000-000000535001",
                    "pci_bus_id": "00000000:17:00.0",
                    "power": {
                        "source": "gpu_power_readings",
                        "draw_watts": 27.51,
                        "limit_watts": 72,
                        "max_limit_watts": 72,
                    },
                    "clock_reasons": {"source": "clocks_event_reasons", "active": []},
                    "retired_pages": {"pending": False, "single_bit": 0, "double_bit": 0},
                    "remapped_rows": {"pending": False, "failure": False, "correctable": 0, "uncorrectable": 0},
                },
                {"uuid": "GPU-0a1b2c3d-0000-4000-8000-000000535002", "temperature_c": 40},
            ],
            id="535-two-gpus",
        ),
    ],
)
def test_parse_generations(fixture, driver, cuda, expected):
    report = load(fixture)
    assert report["driver_version"] == driver
    assert report["cuda_version"] == cuda
    assert len(report["gpus"]) == len(expected)
    for gpu, want in zip(report["gpus"], expected, strict=True):
        for key, value in want.items():
            assert gpu[key] == value, key


@pytest.mark.parametrize(
    ("fixture", "options", "failed"),
    [
        pytest.param("driver-550-laptop-gpu-power-readings.xml", {}, [], id="defaults-pass"),
        pytest.param(
            "driver-550-laptop-gpu-power-readings.xml",
            {
                "min_driver_version": "535.104",
                "expected_gpu_count": 1,
                "product_pattern": r"RTX \d+ Laptop GPU",
                "max_temperature": 85,
                "require_persistence_mode": True,
            },
            [],
            id="all-options-pass",
        ),
        pytest.param(
            "driver-525-geforce-laptop-na.xml",
            {"min_driver_version": "535", "require_persistence_mode": True},
            [("driver_version", ">= 535", "525.85.05"), ("persistence_mode", "Enabled", "Disabled")],
            id="old-driver-no-persistence",
        ),
        pytest.param(
            "driver-525-geforce-laptop-na.xml",
            {"min_driver_version": "525.85.05", "check_pcie_width": True},
            [],
            id="idle-gen1-link-is-not-degraded",
        ),
        pytest.param(
            "driver-535-two-gpus.xml",
            {"expected_gpu_count": 1, "product_pattern": "RTX"},
            [
                ("gpu_count", 1, 2),
                ("product_name", "matches 'RTX'", "NVIDIA L4"),
                ("product_name", "matches 'RTX'", "NVIDIA L4"),
            ],
            id="count-and-pattern-per-gpu",
        ),
        pytest.param(
            "driver-535-unhealthy.xml",
            {"max_temperature": 85, "require_persistence_mode": True},
            [
                ("temperature", "<= 85 C", "94 C"),
                ("retired_pages_pending", "no pages pending retirement", "pages pending retirement"),
                ("remapped_rows_pending", "no rows pending remapping", "rows pending remapping"),
                ("pcie_link_width", "x16", "x8"),
                ("persistence_mode", "Enabled", "Disabled"),
            ],
            id="unhealthy-all-reasons-at-once",
        ),
        pytest.param(
            "driver-535-unhealthy.xml",
            {"check_pcie_width": False, "check_memory_health": False},
            [],
            id="unhealthy-checks-disabled",
        ),
    ],
)
def test_checks(fixture, options, failed):
    found, _warnings = smi.check(load(fixture), **options)
    assert [(f["check"], f["expected"], f["found"]) for f in found] == failed


def test_failed_checks_name_the_gpu_and_summarise():
    found, warnings = smi.check(load("driver-535-unhealthy.xml"), max_temperature=85)
    assert {f["gpu"] for f in found} == {"GPU-0a1b2c3d-0000-4000-8000-00000053500b"}
    summary = smi.failure_summary(found)
    assert (
        "temperature on GPU 0 (bus id 00000000:17:00.0, GPU-0a1b2c3d-0000-4000-8000-00000053500b): "
        "expected <= 85 C, found 94 C" in summary
    )
    assert any("hw_thermal_slowdown" in w for w in warnings)


def test_parse_numbers_the_gpus_in_order():
    report = load("driver-535-two-gpus.xml")
    assert [(g["index"], g["pci_bus_id"], g["uuid"]) for g in report["gpus"]] == [
        (0, "00000000:17:00.0", "GPU-0a1b2c3d-0000-4000-8000-000000535001"),
        (1, "00000000:65:00.0", "GPU-0a1b2c3d-0000-4000-8000-000000535002"),
    ]


def test_failed_checks_on_two_gpus_name_index_bus_id_and_uuid():
    found, _warnings = smi.check(load("driver-535-two-gpus.xml"), max_temperature=39)
    assert [(f["check"], f["gpu_index"], f["pci_bus_id"], f["gpu"]) for f in found] == [
        ("temperature", 1, "00000000:65:00.0", "GPU-0a1b2c3d-0000-4000-8000-000000535002"),
    ]
    assert smi.failure_summary(found) == (
        "temperature on GPU 1 (bus id 00000000:65:00.0, GPU-0a1b2c3d-0000-4000-8000-000000535002): "
        "expected <= 39 C, found 40 C"
    )


def test_host_wide_failures_name_no_gpu():
    found, _warnings = smi.check(load("driver-535-two-gpus.xml"), expected_gpu_count=1)
    assert found == [
        {"check": "gpu_count", "gpu": None, "gpu_index": None, "pci_bus_id": None, "expected": 1, "found": 2}
    ]
    assert smi.failure_summary(found) == "gpu_count: expected 1, found 2"


@pytest.mark.parametrize(
    ("gpu", "label"),
    [
        pytest.param(
            {"index": 0, "pci_bus_id": "00000000:01:00.0", "uuid": "GPU-1"},
            "GPU 0 (bus id 00000000:01:00.0, GPU-1)",
            id="all-three",
        ),
        pytest.param(
            {"index": None, "pci_bus_id": "0000:01:00.0", "uuid": None}, "GPU (bus id 0000:01:00.0)", id="bus-id"
        ),
        pytest.param({"index": 2, "pci_bus_id": None, "uuid": None}, "GPU 2", id="index"),
    ],
)
def test_gpu_label(gpu, label):
    assert smi.gpu_label(gpu) == label


def test_unreported_temperature_is_a_warning_not_a_pass_or_fail():
    report = load("driver-525-geforce-laptop-na.xml")
    report["gpus"][0]["temperature_c"] = None
    found, warnings = smi.check(report, max_temperature=80)
    assert found == []
    assert any("temperature not reported" in w for w in warnings)


ERRORS = SMI / "errors"


@pytest.mark.parametrize(
    ("rc", "stdout", "stderr", "kind", "hint_words"),
    [
        pytest.param(
            18,
            (ERRORS / "driver-library-mismatch.txt").read_text(),
            "",
            "driver_library_mismatch",
            "reboot",
            id="driver-library-mismatch",
        ),
        pytest.param(15, (ERRORS / "gpu-lost.txt").read_text(), "", "gpu_lost", "Xid 79", id="gpu-lost"),
        pytest.param(
            15,
            "",
            (ERRORS / "fallen-off-the-bus.txt").read_text(),
            "gpu_lost",
            "reboot",
            id="fallen-off-the-bus-on-stderr",
        ),
        pytest.param(6, (ERRORS / "no-devices.txt").read_text(), "", "no_devices", "lspci", id="no-devices"),
        pytest.param(
            9,
            (ERRORS / "driver-not-loaded.txt").read_text(),
            "",
            "driver_not_loaded",
            "modprobe",
            id="driver-not-loaded",
        ),
        pytest.param(124, "", "", "timeout", "Xid", id="timeout"),
        pytest.param(3, "", "Segmentation fault", "failed", "nvidia-smi -q", id="unknown-failure"),
        pytest.param(
            15,
            "",
            (ERRORS / "device-handle-unknown-error.txt").read_text(),
            "gpu_lost",
            "Xid 79",
            id="device-handle-unknown-error",
        ),
        pytest.param(
            15, (ERRORS / "gpu-lost-reboot.txt").read_text(), "", "gpu_lost", "NVreg_DynamicPowerManagement", id="lost"
        ),
        pytest.param(15, "", "", "gpu_lost", "Reboot", id="rc-15-without-text"),
        pytest.param(
            4,
            (ERRORS / "insufficient-permissions.txt").read_text(),
            "",
            "permission_denied",
            "become",
            id="insufficient-permissions",
        ),
        pytest.param(4, "", "", "permission_denied", "/dev/nvidia*", id="rc-4-without-text"),
        pytest.param(9, "", "", "driver_not_loaded", "modprobe", id="rc-9-without-text"),
        pytest.param(
            126,
            "",
            "timeout: failed to run command '/opt/nvidia/nvidia-smi': Permission denied\n",
            "permission_denied",
            "ls -l /opt/nvidia/nvidia-smi",
            id="exec-permission-denied",
        ),
        pytest.param(
            127,
            "",
            "timeout: failed to run command '/opt/nvidia/nvidia-smi': No such file or directory\n",
            "missing",
            "nvidia_driver role",
            id="exec-not-found",
        ),
    ],
)
def test_classify_failures(rc, stdout, stderr, kind, hint_words):
    error = smi.classify_failure(rc, stdout, stderr, path="/opt/nvidia/nvidia-smi")
    assert error is not None
    assert error.kind == kind
    assert hint_words in error.hint


@pytest.mark.parametrize(
    ("rc", "stdout", "stderr", "kind", "gpus", "words"),
    [
        pytest.param(
            15,
            "",
            (ERRORS / "device-handle-unknown-error.txt").read_text(),
            "gpu_lost",
            [{"index": None, "pci_bus_id": "0000:01:00.0", "uuid": None}],
            "GPU (bus id 0000:01:00.0) has fallen off the bus",
            id="bus-id-from-the-error-text",
        ),
        pytest.param(
            15,
            (SMI / "driver-535-two-gpus.xml").read_text(),
            "Unable to determine the device handle for gpu 0000:65:00.0: GPU is lost.  "
            "Reboot the system to recover this GPU\n",
            "gpu_lost",
            [{"index": 1, "pci_bus_id": "00000000:65:00.0", "uuid": "GPU-0a1b2c3d-0000-4000-8000-000000535002"}],
            "GPU 1 (bus id 00000000:65:00.0, GPU-0a1b2c3d-0000-4000-8000-000000535002) has fallen off the bus",
            id="index-and-uuid-from-the-xml",
        ),
        pytest.param(15, "", "", "gpu_lost", [], "A GPU (nvidia-smi did not say which)", id="unnamed"),
        pytest.param(
            14,
            "",
            "infoROM is corrupted at gpu 0000:01:00.0\n",
            "failed",
            [{"index": None, "pci_bus_id": "0000:01:00.0", "uuid": None}],
            "rc=14 (infoROM corrupted). Affected: GPU (bus id 0000:01:00.0).",
            id="documented-rc-named",
        ),
        pytest.param(-9, "", "", "failed", [], "rc=-9 (killed by signal 9)", id="killed-before-the-limit"),
    ],
)
def test_failures_name_the_gpu(rc, stdout, stderr, kind, gpus, words):  # noqa: PLR0917 - parametrized
    error = smi.classify_failure(rc, stdout, stderr)
    assert (error.kind, error.gpus) == (kind, gpus)
    assert words in error.message


@pytest.mark.parametrize(
    ("rc", "elapsed", "timeout", "expected"),
    [
        pytest.param(124, 2.0, 2, True, id="stopped-by-sigterm"),
        pytest.param(-9, 7.1, 2, True, id="ignored-sigterm-killed-with-timeout"),
        pytest.param(137, 7.1, 2, True, id="killed-rc-from-a-shell"),
        pytest.param(-9, 0.3, 2, False, id="killed-by-something-else"),
        pytest.param(1, 9.0, 2, False, id="slow-failure"),
        pytest.param(0, 9.0, 2, False, id="slow-success"),
    ],
)
def test_timed_out(rc, elapsed, timeout, expected):
    assert smi.timed_out(rc, elapsed, timeout) is expected


def test_timeout_names_its_seconds_and_is_not_a_failure():
    error = smi.classify_failure(-9, "", "", timed_out=True, timeout=7)
    assert error.kind == "timeout"
    assert "within 7 seconds" in error.message
    assert "dmesg" in error.hint


@pytest.mark.parametrize(
    ("error", "kind", "words"),
    [
        pytest.param(smi.missing_error(), "missing", "not found on PATH or in /sbin", id="missing"),
        pytest.param(smi.missing_error("/opt/x/nvidia-smi"), "missing", "nvidia_smi_path /opt/x/nvidia-smi", id="path"),
        pytest.param(
            smi.not_executable_error("/usr/bin/nvidia-smi", 0o644), "permission_denied", "(mode 0644)", id="mode"
        ),
        pytest.param(
            smi.cannot_run_error("/usr/bin/nvidia-smi", "Exec format error"), "failed", "Exec format error", id="format"
        ),
    ],
)
def test_cannot_run_errors(error, kind, words):
    assert error.kind == kind
    assert words in error.message
    assert error.hint


def test_missing_names_the_package_of_each_distribution():
    hint = smi.missing_error().hint
    assert "package nvidia-smi on Debian" in hint
    assert "nvidia-utils-<branch> on Ubuntu" in hint


def test_clean_run_is_not_a_failure():
    text = (SMI / "driver-535-two-gpus.xml").read_text()
    assert smi.classify_failure(0, text, "") is None


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        pytest.param((SMI / "truncated.xml").read_text(), "malformed_xml", id="truncated"),
        pytest.param("", "malformed_xml", id="empty"),
        pytest.param("<html><body>not nvidia</body></html>", "malformed_xml", id="wrong-root"),
        pytest.param((SMI / "no-gpus.xml").read_text(), "no_devices", id="no-gpus"),
    ],
)
def test_parse_errors(text, kind):
    with pytest.raises(smi.NvidiaSmiError) as info:
        smi.parse(text)
    assert info.value.kind == kind
    assert info.value.hint


@pytest.mark.parametrize(
    ("version", "expected"),
    [("535.129.03", (535, 129, 3)), ("550", (550,)), ("470.57.02", (470, 57, 2)), ("N/A", None), (None, None)],
)
def test_version_tuple(version, expected):
    assert smi.version_tuple(version) == expected


def test_container_cli_info():
    info = smi.parse_container_cli_info((CLUSTER / "nvidia-container-cli-info.txt").read_text())
    assert info == {
        "nvrm_version": "550.120",
        "cuda_version": "12.4",
        "uuids": ["GPU-0a1b2c3d-0000-4000-8000-000000000550"],
    }


class RecordedApi:
    """Answers from recorded API responses and records every call, as the real client would be called."""

    def __init__(self, nodes, runtime_classes, pod_states=(), log="", fail_create=False):
        self.nodes = json.loads((CLUSTER / nodes).read_text())
        self.runtime_classes = json.loads((CLUSTER / runtime_classes).read_text())
        self.pod_states = [json.loads((CLUSTER / s).read_text()) for s in pod_states]
        self.log = (CLUSTER / log).read_text() if log else ""
        self.fail_create = fail_create
        self.calls = []

    def list_nodes(self):
        return self.nodes

    def list_runtime_classes(self):
        return self.runtime_classes

    def create_pod(self, namespace, body):
        self.calls.append(("create", namespace, body))
        if self.fail_create:
            raise RuntimeError("admission webhook denied the pod")

    def read_pod(self, namespace, name):
        self.calls.append(("read", namespace, name))
        return self.pod_states.pop(0) if len(self.pod_states) > 1 else self.pod_states[0]

    def read_pod_log(self, namespace, name):
        return self.log

    def delete_pod(self, namespace, name):
        self.calls.append(("delete", namespace, name))


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


HOST_UUIDS = ["GPU-0a1b2c3d-0000-4000-8000-000000000550"]


def run_cluster(api, **kwargs):
    clock = FakeClock()
    return cluster.check_cluster(
        api, HOST_UUIDS, image="img", pod_name="odin-gpu-validate-test", sleep=clock.sleep, clock=clock, **kwargs
    )


def test_cluster_all_good_and_pod_deleted():
    api = RecordedApi(
        "nodes-gpu.json", "runtimeclasses.json", ["pod-pending.json", "pod-succeeded.json"], "nvidia-smi-L.txt"
    )
    facts, failed = run_cluster(api)
    assert failed == []
    assert facts["allocatable"] == {"blade18": 1}
    assert facts["runtime_class_handler"] == "nvidia"
    assert facts["pod_uuids"] == HOST_UUIDS
    create = api.calls[0]
    assert create[0] == "create"
    assert create[2]["spec"]["runtimeClassName"] == "nvidia"
    assert create[2]["spec"]["containers"][0]["command"] == ["nvidia-smi", "-L"]
    assert create[2]["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert api.calls[-1] == ("delete", "default", "odin-gpu-validate-test")


def test_cluster_pod_sees_other_gpus():
    api = RecordedApi("nodes-gpu.json", "runtimeclasses.json", ["pod-succeeded.json"], "nvidia-smi-L-other-gpu.txt")
    _facts, failed = run_cluster(api)
    assert [f["check"] for f in failed] == ["cluster_pod_uuids"]
    assert failed[0]["expected"] == HOST_UUIDS
    assert api.calls[-1][0] == "delete"


def test_cluster_pod_never_completes_is_deleted():
    api = RecordedApi("nodes-gpu.json", "runtimeclasses.json", ["pod-pending.json"])
    facts, failed = run_cluster(api, timeout=10)
    assert facts["pod_phase"] == "Pending"
    assert [f["check"] for f in failed] == ["cluster_pod"]
    assert api.calls[-1] == ("delete", "default", "odin-gpu-validate-test")


def test_cluster_pod_deleted_when_create_raises():
    api = RecordedApi("nodes-gpu.json", "runtimeclasses.json", ["pod-pending.json"], fail_create=True)
    with pytest.raises(RuntimeError):
        run_cluster(api)
    assert api.calls[-1] == ("delete", "default", "odin-gpu-validate-test")


def test_cluster_without_gpu_or_runtime_class_reports_both_and_creates_no_pod():
    api = RecordedApi("nodes-no-gpu.json", "runtimeclasses-none.json", ["pod-succeeded.json"])
    facts, failed = run_cluster(api)
    assert [f["check"] for f in failed] == ["cluster_allocatable", "cluster_runtime_class"]
    assert facts["allocatable"] == {"blade18": 0}
    assert api.calls == []


def test_cluster_unknown_node():
    api = RecordedApi("nodes-gpu.json", "runtimeclasses.json", ["pod-succeeded.json"])
    _facts, failed = run_cluster(api, node_name="other")
    assert failed[0]["check"] == "cluster_node"
