"""Parsers behind odin.stack.host_probe, on recorded lspci/mokutil output and built sysfs trees."""

from pathlib import Path

import pytest

from ansible_collections.odin.stack.plugins.module_utils import _host_probe as probe

FIXTURES = Path(__file__).parent / "fixtures"


def make_pci(root, functions):
    for address, vendor, device, pci_class, driver in functions:
        func = root / "devices" / address
        func.mkdir(parents=True)
        (func / "vendor").write_text(vendor + "\n")
        (func / "device").write_text(device + "\n")
        (func / "class").write_text(pci_class + "\n")
        if driver:
            target = root / "drivers" / driver
            target.mkdir(parents=True, exist_ok=True)
            (func / "driver").symlink_to(target)
    return root / "devices"


@pytest.mark.parametrize(
    ("functions", "expected"),
    [
        pytest.param(
            [
                ("0000:00:02.0", "0x8086", "0xa788", "0x030000", "i915"),
                ("0000:01:00.0", "0x10de", "0x2820", "0x030000", "nvidia"),
                ("0000:01:00.1", "0x10de", "0x22bd", "0x040300", "snd_hda_intel"),
            ],
            [("0000:01:00.0", "2820", "nvidia")],
            id="laptop-hybrid-nvidia-bound",
        ),
        pytest.param(
            [("0000:01:00.0", "0x10de", "0x2820", "0x030000", "nouveau")],
            [("0000:01:00.0", "2820", "nouveau")],
            id="nouveau-bound",
        ),
        pytest.param(
            [
                ("0000:17:00.0", "0x10de", "0x20b5", "0x030200", None),
                ("0000:65:00.0", "0x10de", "0x20b5", "0x030200", None),
            ],
            [("0000:17:00.0", "20b5", None), ("0000:65:00.0", "20b5", None)],
            id="two-3d-controllers-no-driver",
        ),
        pytest.param(
            [("0000:00:02.0", "0x1234", "0x1111", "0x030000", None)],
            [],
            id="no-nvidia",
        ),
        pytest.param(
            [("0000:01:00.1", "0x10de", "0x22bd", "0x040300", None)],
            [],
            id="nvidia-audio-only",
        ),
    ],
)
def test_sysfs(tmp_path, functions, expected):
    devices = make_pci(tmp_path, functions)
    found = probe.pci_gpus_from_sysfs(str(devices))
    assert [(g["address"], g["device_id"], g["driver"]) for g in found] == expected
    assert all(g["vendor_id"] == "10de" and g["class"].startswith("03") for g in found)


def test_sysfs_missing_directory_is_none(tmp_path):
    assert probe.pci_gpus_from_sysfs(str(tmp_path / "absent")) is None


def test_sysfs_function_with_unreadable_files_is_skipped(tmp_path):
    (tmp_path / "0000:03:00.0").mkdir()
    assert probe.pci_gpus_from_sysfs(str(tmp_path)) == []


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("razer-blade-18.txt", [("0000:01:00.0", "2820", "030000")]),
        ("two-gpus-3d.txt", [("0000:17:00.0", "20b5", "030200"), ("0000:65:00.0", "20b5", "030200")]),
        ("no-nvidia.txt", []),
    ],
)
def test_lspci(fixture, expected):
    found = probe.pci_gpus_from_lspci((FIXTURES / "lspci" / fixture).read_text())
    assert [(g["address"], g["device_id"], g["class"]) for g in found] == expected


def test_lspci_ignores_garbage():
    assert probe.pci_gpus_from_lspci('not lspci output\n"unterminated\n\n') == []


@pytest.mark.parametrize(
    ("fixture", "rc", "expected"),
    [
        ("enabled.txt", 0, "enabled"),
        ("disabled.txt", 0, "disabled"),
        ("enabled-shim-validation-off.txt", 0, "enabled"),
        ("no-efi.txt", 255, "unsupported"),
        ("no-secure-boot.txt", 255, "unsupported"),
    ],
)
def test_mokutil(fixture, rc, expected):
    text = (FIXTURES / "mokutil" / fixture).read_text()
    assert probe.secure_boot_from_mokutil(rc, "", text) == expected
    assert probe.secure_boot_from_mokutil(rc, text, "") == expected


def test_mokutil_unrecognised_output_is_unknown():
    assert probe.secure_boot_from_mokutil(1, "", "Failed to read SecureBoot") == "unknown"


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"\x06\x00\x00\x00\x01", "enabled"), (b"\x06\x00\x00\x00\x00", "disabled"), (b"\x06\x00", "unknown")],
)
def test_efivars(tmp_path, data, expected):
    efivars = tmp_path / "efi" / "efivars"
    efivars.mkdir(parents=True)
    (efivars / probe.SECURE_BOOT_EFIVAR).write_bytes(data)
    assert probe.secure_boot_from_efivars(str(tmp_path / "efi")) == expected


def test_efivars_legacy_bios_is_unsupported(tmp_path):
    assert probe.secure_boot_from_efivars(str(tmp_path / "no-efi")) == "unsupported"


def test_efivars_without_variable_is_unknown(tmp_path):
    (tmp_path / "efi" / "efivars").mkdir(parents=True)
    assert probe.secure_boot_from_efivars(str(tmp_path / "efi")) == "unknown"


def test_disk_usage_of_missing_path_measures_parent(tmp_path):
    usage = probe.disk_usage(str(tmp_path / "not" / "yet" / "there"))
    assert usage["measured_at"] == str(tmp_path)
    assert 0 < usage["free_bytes"] <= usage["total_bytes"]


def test_kernel_module_loaded(tmp_path):
    (tmp_path / "nvidia").mkdir()
    assert probe.kernel_module_loaded("nvidia", str(tmp_path))
    assert not probe.kernel_module_loaded("nouveau", str(tmp_path))
