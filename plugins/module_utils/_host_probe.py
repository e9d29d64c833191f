# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Host hardware probes used by preflight: NVIDIA PCI functions, Secure Boot, free disk.

Plain Python with no Ansible imports, so the parsers can be unit-tested on recorded
sysfs trees and command output.
"""

from __future__ import annotations

import os
import shlex

NVIDIA_VENDOR_ID = "10de"
# PCI base class 0x03 is "display controller" (VGA 0x0300, 3D 0x0302). NVIDIA GPUs also
# expose an HDMI audio function (0x0403) and sometimes USB-C controllers: not GPUs.
DISPLAY_CLASS_PREFIX = "03"

SECURE_BOOT_EFIVAR = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def _read(path):
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _hex_id(value, width):
    """Normalise '0x10DE' / '10de' / '0x030000' to lower-case hex without prefix."""
    if value is None:
        return None
    value = value.strip().lower()
    if value.startswith("0x"):
        value = value[2:]
    return value.zfill(width)


def _is_nvidia_display(vendor, pci_class):
    return vendor == NVIDIA_VENDOR_ID and pci_class is not None and pci_class.startswith(DISPLAY_CLASS_PREFIX)


def pci_gpus_from_sysfs(devices_path):
    """Return NVIDIA display functions found under a sysfs PCI devices directory.

    Returns None when the directory cannot be listed (no sysfs), an empty list when
    it can but holds no NVIDIA GPU.
    """
    try:
        names = sorted(os.listdir(devices_path))
    except OSError:
        return None
    gpus = []
    for name in names:
        base = os.path.join(devices_path, name)
        vendor = _hex_id(_read(os.path.join(base, "vendor")), 4)
        pci_class = _hex_id(_read(os.path.join(base, "class")), 6)
        if not _is_nvidia_display(vendor, pci_class):
            continue
        driver_link = os.path.join(base, "driver")
        driver = os.path.basename(os.readlink(driver_link)) if os.path.islink(driver_link) else None
        gpus.append(
            {
                "address": name,
                "vendor_id": vendor,
                "device_id": _hex_id(_read(os.path.join(base, "device")), 4),
                "class": pci_class,
                "driver": driver,
            }
        )
    return gpus


def pci_gpus_from_lspci(output):
    """Parse `lspci -Dnmm` output (machine readable, numeric ids).

    A line looks like: 0000:01:00.0 "0300" "10de" "2820" -ra1 "1a58" "201f"
    """
    gpus = []
    for raw in output.splitlines():
        line = raw.strip()
        if not line:
            continue
        try:
            fields = shlex.split(line)
        except ValueError:
            continue
        positional = [field for field in fields if not field.startswith("-")]
        if len(positional) < 4:
            continue
        address, pci_class, vendor, device = positional[:4]
        pci_class = _hex_id(pci_class, 4)
        vendor = _hex_id(vendor, 4)
        if not _is_nvidia_display(vendor, pci_class):
            continue
        gpus.append(
            {
                "address": address,
                "vendor_id": vendor,
                "device_id": _hex_id(device, 4),
                "class": pci_class + "00",
                "driver": None,
            }
        )
    return gpus


def secure_boot_from_mokutil(rc, stdout, stderr):
    """Interpret `mokutil --sb-state`.

    Returns one of 'enabled', 'disabled', 'unsupported' (no EFI / no Secure Boot on this
    firmware) or 'unknown' (the output was not understood).
    """
    text = "\n".join(part for part in (stdout, stderr) if part).lower()
    if "secureboot enabled" in text:
        return "enabled"
    if "secureboot disabled" in text:
        return "disabled"
    if "not supported" in text or "doesn't support" in text or "does not support" in text:
        return "unsupported"
    return "unknown"


def secure_boot_from_efivars(efi_path):
    """Read Secure Boot from the EFI variable directly (used when mokutil is absent).

    The efivarfs file is 4 bytes of attributes followed by one data byte: 1 = enabled.
    """
    if not os.path.isdir(efi_path):
        return "unsupported"
    var = os.path.join(efi_path, "efivars", SECURE_BOOT_EFIVAR)
    try:
        with open(var, "rb") as handle:
            data = handle.read()
    except OSError:
        return "unknown"
    if len(data) < 5:
        return "unknown"
    return "enabled" if data[4] == 1 else "disabled"


def disk_usage(path):
    """Free and total bytes of the filesystem holding `path` (or its nearest existing parent)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    stat = os.statvfs(probe)
    return {
        "path": path,
        "measured_at": probe,
        "free_bytes": stat.f_bavail * stat.f_frsize,
        "total_bytes": stat.f_blocks * stat.f_frsize,
    }


def kernel_module_loaded(name, sys_module_path="/sys/module"):
    return os.path.isdir(os.path.join(sys_module_path, name))
