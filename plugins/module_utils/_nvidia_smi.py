# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Parse `nvidia-smi -q -x` and judge whether the GPUs it reports are usable.

Plain Python with no Ansible imports, so the parser and the checks can be unit-tested on
XML fixtures. The XML layout changed across driver generations; every accessor below
accepts each known spelling:

* clock reasons: ``clocks_throttle_reasons/clocks_throttle_reason_*`` (up to the 525
  drivers) and ``clocks_event_reasons/clocks_event_reason_*`` (535 onwards);
* power: ``power_readings`` with ``power_draw``/``power_limit`` (older drivers) and
  ``gpu_power_readings`` with ``power_draw`` or ``average_power_draw``/``instant_power_draw``
  and ``current_power_limit`` (530 onwards);
* pending page retirement: ``pending_blacklist`` (older) and ``pending_retirement`` (newer);
* ``N/A``, ``[N/A]``, ``Not Supported`` and ``[Not Supported]`` (common on GeForce and
  laptop GPUs) all read as "unknown".
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # noqa: S405 - the input is local nvidia-smi output

UNKNOWN_VALUES = {"", "n/a", "[n/a]", "not supported", "[not supported]", "unknown error", "[unknown error]"}

# rc of coreutils `timeout` when it had to stop the command, and when it could not execute
# (126) or find (127) the command.
TIMEOUT_RC = 124
CANNOT_EXECUTE_RC = 126
NOT_FOUND_RC = 127
# A command ended by SIGKILL or SIGTERM: negative from Python, 128 + signal from a shell.
_KILLED_RCS = (-9, -15, 137, 143)

# Directories Ansible's get_bin_path searches after PATH.
SBIN_DIRS = ("/sbin", "/usr/sbin", "/usr/local/sbin")

# nvidia-smi's documented return codes, named in the message of a failure no known text explains.
RC_MEANINGS = {
    2: "invalid argument or flag",
    3: "operation not available on the target device",
    4: "insufficient permissions",
    6: "query unsuccessful",
    8: "external power cables not attached",
    9: "NVIDIA driver not loaded",
    10: "the kernel detected an interrupt issue with a GPU",
    12: "NVML shared library not found or not loadable",
    13: "the local NVML does not implement this function",
    14: "infoROM corrupted",
    15: "a GPU has fallen off the bus or otherwise become inaccessible",
    255: "other error or internal driver error",
}


class NvidiaSmiError(Exception):
    """nvidia-smi could not report the GPUs.

    ``kind`` is machine readable, ``hint`` says what to do, ``gpus`` lists the GPUs the failure
    names ({index, pci_bus_id, uuid}, each None when unknown).
    """

    def __init__(self, kind, message, hint, gpus=()):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint
        self.gpus = list(gpus)

    def __str__(self):
        return "%s %s" % (self.message, self.hint)


def gpu_label(gpu):
    """'GPU 0 (bus id 00000000:01:00.0, GPU-...)': index, PCI bus id and UUID, as far as known."""
    index = gpu.get("index")
    head = "GPU" if index is None else "GPU %s" % index
    known = []
    if gpu.get("pci_bus_id"):
        known.append("bus id %s" % gpu["pci_bus_id"])
    if gpu.get("uuid"):
        known.append(gpu["uuid"])
    return "%s (%s)" % (head, ", ".join(known)) if known else head


# A PCI bus id as nvidia-smi prints it: "0000:01:00.0" in messages, "00000000:01:00.0" in XML.
_BUS_ID = re.compile(r"(?<![0-9a-fA-F:])([0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])(?![0-9a-fA-F])")


def _bus_key(bus_id):
    domain, _sep, rest = bus_id.partition(":")
    return int(domain, 16), rest.lower()


def _named_gpus(text, stdout):
    """The GPUs a failure text names by bus id, with index and UUID from any XML that was printed."""
    known = []
    if stdout.lstrip().startswith("<?xml"):
        try:
            known = parse(stdout)["gpus"]
        except NvidiaSmiError:
            known = []
    by_bus = {_bus_key(gpu["pci_bus_id"]): gpu for gpu in known if gpu.get("pci_bus_id")}
    named, seen = [], set()
    for bus_id in _BUS_ID.findall(text):
        key = _bus_key(bus_id)
        if key in seen:
            continue
        seen.add(key)
        gpu = by_bus.get(key, {})
        named.append(
            {"index": gpu.get("index"), "pci_bus_id": gpu.get("pci_bus_id") or bus_id, "uuid": gpu.get("uuid")}
        )
    return named


# Known failures: kind, the return codes that mean it when no text matches, the text that names
# it (checked first, in this order), what happened ("{gpu}" is replaced by the GPUs named) and
# what to do.
_FAILURES = (
    (
        "driver_library_mismatch",
        (),
        re.compile(r"Driver/library version mismatch", re.I),
        "nvidia-smi reports 'Driver/library version mismatch': the loaded kernel module and the "
        "user-space NVIDIA libraries come from different driver versions.",
        "This follows a driver upgrade without a reboot: reboot the host (or unload and reload the "
        "nvidia kernel modules when nothing uses the GPU).",
    ),
    (
        "permission_denied",
        (4,),
        re.compile(r"Insufficient Permissions", re.I),
        "nvidia-smi may not open the NVIDIA devices (NVML: insufficient permissions).",
        "Run the task with 'become: true', or give the user read and write access to /dev/nvidia* "
        "(check 'ls -l /dev/nvidia*'; the driver's NVreg_DeviceFileMode/NVreg_DeviceFileGID set them).",
    ),
    (
        "gpu_lost",
        (15,),
        re.compile(r"GPU is lost|fallen off the bus|Unable to determine the device handle", re.I),
        "{gpu} has fallen off the bus or otherwise become inaccessible: nvidia-smi cannot reach it.",
        "Reboot the host to recover it (power a laptop off fully if a warm reboot does not) and note "
        "the bus id; 'dmesg | grep -i xid' shows Xid 79 for a GPU that fell off the bus. If it recurs, "
        "check power and thermals, then the PCIe power management of hybrid graphics "
        "(nvidia.NVreg_DynamicPowerManagement=0x00 on the kernel command line turns it off).",
    ),
    (
        "driver_not_loaded",
        (9,),
        re.compile(r"couldn't communicate with the NVIDIA driver", re.I),
        "nvidia-smi cannot talk to the NVIDIA kernel driver.",
        "Load it with 'modprobe nvidia' and check 'dmesg'; with Secure Boot enabled the module must be signed.",
    ),
    (
        "no_devices",
        (),
        re.compile(r"No devices were found", re.I),
        "nvidia-smi found no NVIDIA devices.",
        "Check that the GPU is visible with 'lspci -nn | grep -i nvidia', that the nvidia module is "
        "bound to it, and that a laptop MUX/BIOS setting has not disabled the discrete GPU.",
    ),
)


def timed_out(rc, elapsed, timeout):
    """Whether coreutils `timeout` stopped the command.

    rc 124 after its SIGTERM; a command that ignores SIGTERM gets SIGKILL --kill-after seconds
    later, together with `timeout` itself, which then ends killed (rc -9) instead of with 124.
    """
    if rc == TIMEOUT_RC:
        return True
    return rc in _KILLED_RCS and None not in (elapsed, timeout) and elapsed >= timeout


def timeout_error(timeout=None):
    if timeout is None:
        limit = "the time limit"
    else:
        limit = "%s second%s (the module's timeout)" % (timeout, "" if timeout == 1 else "s")
    return NvidiaSmiError(
        "timeout",
        "nvidia-smi did not answer within %s and was stopped." % limit,
        "The GPU or the NVIDIA driver is hung: look for Xid errors with 'dmesg | grep -i xid' and "
        "reboot the host. Raise timeout only if nvidia-smi run by hand answers, just slowly.",
    )


def missing_error(path=None):
    """nvidia-smi is not installed, or not where nvidia_smi_path says."""
    if path:
        message = "nvidia_smi_path %s does not exist or is not a file, so the GPU cannot be validated." % path
    else:
        message = "nvidia-smi was not found on PATH or in %s, so the GPU cannot be validated." % ", ".join(SBIN_DIRS)
    return NvidiaSmiError(
        "missing",
        message,
        "Install the NVIDIA driver utilities with the collection's nvidia_driver role "
        "(playbooks/gpu_host.yml). nvidia-smi comes from the package nvidia-smi on Debian and "
        "nvidia-utils-<branch> on Ubuntu (nvidia-utils-580 for nvidia_driver_branch 580); "
        "check it with 'dpkg -s nvidia-smi' or 'dpkg -s nvidia-utils-<branch>'. Or set "
        "nvidia_smi_path to the nvidia-smi this host has.",
    )


def not_executable_error(path, mode):
    """nvidia-smi exists but its mode lets nobody execute it."""
    return NvidiaSmiError(
        "permission_denied",
        "nvidia-smi at %s is not executable (mode %04o), so the GPU cannot be validated." % (path, mode),
        "Restore its mode with 'chmod 0755 %s' (reinstalling the driver utilities does too), or set "
        "nvidia_smi_path to a working nvidia-smi." % path,
    )


def cannot_run_error(path, reason, rc=None):
    """nvidia-smi was found but executing it failed (`reason` is the system's error text)."""
    reason = (reason or "").strip().rstrip(".")
    if re.search(r"permission denied|not permitted", reason, re.I):
        return NvidiaSmiError(
            "permission_denied",
            "nvidia-smi at %s could not be executed: %s." % (path, reason),
            "Check 'ls -l %s' and the interpreter or loader it starts, that its filesystem is not "
            "mounted noexec, and run the task with 'become: true' if only root may run it." % path,
        )
    if rc == NOT_FOUND_RC or re.search(r"no such file", reason, re.I):
        return NvidiaSmiError(
            "missing",
            "nvidia-smi at %s could not be started: %s." % (path, reason),
            "The file or the interpreter or loader it needs is gone: reinstall the NVIDIA driver "
            "utilities with the collection's nvidia_driver role, or set nvidia_smi_path.",
        )
    return NvidiaSmiError(
        "failed",
        "nvidia-smi at %s could not be executed: %s." % (path, reason),
        "Check that it is NVIDIA's nvidia-smi for this architecture ('file %s')." % path,
    )


_CANNOT_RUN = re.compile(r"failed to run command .*?: ([^\n]+)")


def _rc_text(rc):
    if rc is not None and rc < 0:
        return "rc=%s (killed by signal %s)" % (rc, -rc)
    meaning = RC_MEANINGS.get(rc)
    return "rc=%s (%s)" % (rc, meaning) if meaning else "rc=%s" % rc


def classify_failure(rc, stdout, stderr, *, timed_out=False, timeout=None, path="nvidia-smi"):
    """Return an NvidiaSmiError for a failed run, or None when the output should be XML.

    ``timed_out`` says that the time limit of ``timeout`` seconds stopped the run; ``path`` is the
    nvidia-smi that was run.
    """
    stdout = stdout or ""
    stderr = stderr or ""
    if timed_out or rc == TIMEOUT_RC:
        return timeout_error(timeout)
    text = stderr if stdout.lstrip().startswith("<?xml") else stdout + "\n" + stderr
    if rc in (CANNOT_EXECUTE_RC, NOT_FOUND_RC):
        match = _CANNOT_RUN.search(stderr)
        if match:
            return cannot_run_error(path, match.group(1), rc)
    gpus = _named_gpus(text, stdout)
    known = [entry for entry in _FAILURES if entry[2].search(text)]
    if not known and rc:
        known = [entry for entry in _FAILURES if rc in entry[1]]
    if known:
        kind, _rcs, _pattern, message, hint = known[0]
        named = ", ".join(gpu_label(gpu) for gpu in gpus)
        if "{gpu}" in message:
            message = message.replace("{gpu}", named or "A GPU (nvidia-smi did not say which)")
        elif named:
            message += " Affected: %s." % named
        return NvidiaSmiError(kind, message + _output(text), hint, gpus)
    if rc != 0:
        named = " Affected: %s." % ", ".join(gpu_label(gpu) for gpu in gpus) if gpus else ""
        return NvidiaSmiError(
            "failed",
            "nvidia-smi exited with %s.%s%s" % (_rc_text(rc), named, _output(text)),
            "Run 'nvidia-smi -q' on the host to see the full error.",
            gpus,
        )
    return None


def _output(text):
    return ' Output: "%s".' % _excerpt(text) if text.strip() else ""


def _excerpt(text, limit=400):
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _text(node, *paths):
    """First non-unknown text found at any of the paths (alternative spellings), else None."""
    if node is None:
        return None
    for path in paths:
        child = node.find(path)
        if child is not None and child.text is not None:
            value = child.text.strip()
            if value.lower() not in UNKNOWN_VALUES:
                return value
    return None


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _number(value):
    """'16376 MiB' -> 16376, '45 C' -> 45, '10.52 W' -> 10.52, '16x' -> 16; None when unknown."""
    if value is None:
        return None
    match = _NUMBER.search(value)
    if not match:
        return None
    number = float(match.group(0))
    return int(number) if number.is_integer() else number


def _yes(value):
    if value is None:
        return None
    return value.strip().lower() in ("yes", "enabled", "active", "true")


def _reasons(gpu):
    """Active clock throttle/event reasons, without their generation-specific prefix."""
    for container, prefix in (
        ("clocks_event_reasons", "clocks_event_reason_"),
        ("clocks_throttle_reasons", "clocks_throttle_reason_"),
    ):
        node = gpu.find(container)
        if node is None:
            continue
        active = []
        for child in node:
            name = child.tag[len(prefix) :] if child.tag.startswith(prefix) else child.tag
            if (child.text or "").strip().lower() == "active":
                active.append(name)
        return {"source": container, "active": sorted(active)}
    return {"source": None, "active": []}


def _power(gpu):
    for container in ("gpu_power_readings", "power_readings"):
        node = gpu.find(container)
        if node is None:
            continue
        return {
            "source": container,
            "draw_watts": _number(_text(node, "power_draw", "instant_power_draw", "average_power_draw")),
            "limit_watts": _number(_text(node, "current_power_limit", "power_limit", "enforced_power_limit")),
            "max_limit_watts": _number(_text(node, "max_power_limit")),
        }
    return {"source": None, "draw_watts": None, "limit_watts": None, "max_limit_watts": None}


def _retired_pages(gpu):
    node = gpu.find("retired_pages")
    if node is None:
        return {"pending": None, "single_bit": None, "double_bit": None}
    return {
        "pending": _yes(_text(node, "pending_retirement", "pending_blacklist")),
        "single_bit": _number(_text(node, "multiple_single_bit_retirement/retired_count")),
        "double_bit": _number(_text(node, "double_bit_retirement/retired_count")),
    }


def _remapped_rows(gpu):
    node = gpu.find("remapped_rows")
    if node is None:
        return {"pending": None, "failure": None, "correctable": None, "uncorrectable": None}
    return {
        "pending": _yes(_text(node, "remapped_row_pending")),
        "failure": _yes(_text(node, "remapped_row_failure")),
        "correctable": _number(_text(node, "remapped_row_corr")),
        "uncorrectable": _number(_text(node, "remapped_row_unc")),
    }


def _pcie(gpu):
    link = gpu.find("pci/pci_gpu_link_info")
    return {
        "current_gen": _number(_text(link, "pcie_gen/current_link_gen")),
        "max_gen": _number(_text(link, "pcie_gen/max_link_gen")),
        "current_width": _number(_text(link, "link_widths/current_link_width")),
        "max_width": _number(_text(link, "link_widths/max_link_width")),
    }


def parse_gpu(gpu, index=None):
    """One ``<gpu>`` element; ``index`` is its position, which is nvidia-smi's GPU index."""
    return {
        "index": index,
        "pci_bus_id": gpu.get("id"),
        "product_name": _text(gpu, "product_name"),
        "product_brand": _text(gpu, "product_brand"),
        "uuid": _text(gpu, "uuid"),
        "persistence_mode": _text(gpu, "persistence_mode"),
        "compute_mode": _text(gpu, "compute_mode"),
        "memory_total_mib": _number(_text(gpu, "fb_memory_usage/total")),
        "memory_used_mib": _number(_text(gpu, "fb_memory_usage/used")),
        "temperature_c": _number(_text(gpu, "temperature/gpu_temp")),
        "power": _power(gpu),
        "clock_reasons": _reasons(gpu),
        "ecc_mode": _text(gpu, "ecc_mode/current_ecc"),
        "retired_pages": _retired_pages(gpu),
        "remapped_rows": _remapped_rows(gpu),
        "pcie": _pcie(gpu),
    }


def parse(xml_text):
    """Parse `nvidia-smi -q -x` output into {driver_version, cuda_version, gpus}.

    Raises NvidiaSmiError(kind='malformed_xml') when the text is not the expected XML and
    NvidiaSmiError(kind='no_devices') when it lists no GPU.
    """
    try:
        # The document carries a DOCTYPE naming a DTD file; ElementTree never fetches it.
        root = ET.fromstring(xml_text)  # noqa: S314 - trusted local command output
    except ET.ParseError as exc:
        raise NvidiaSmiError(
            "malformed_xml",
            "nvidia-smi -q -x printed output that is not valid XML (%s): %s" % (exc, _excerpt(xml_text or "")),
            "Run 'nvidia-smi -q -x' on the host; a truncated document points at a crash of nvidia-smi.",
        ) from None
    if root.tag != "nvidia_smi_log":
        raise NvidiaSmiError(
            "malformed_xml",
            "nvidia-smi -q -x printed XML whose root is <%s>, not <nvidia_smi_log>." % root.tag,
            "Check that the nvidia-smi on PATH is NVIDIA's.",
        )
    gpus = [parse_gpu(gpu, index) for index, gpu in enumerate(root.findall("gpu"))]
    if not gpus:
        raise NvidiaSmiError(
            "no_devices",
            "nvidia-smi -q -x lists no GPU (attached_gpus=%s)." % _text(root, "attached_gpus"),
            "Check that the GPU is visible with 'lspci -nn | grep -i nvidia' and bound to the nvidia driver.",
        )
    return {
        "driver_version": _text(root, "driver_version"),
        "cuda_version": _text(root, "cuda_version"),
        "gpus": gpus,
    }


def version_tuple(version):
    """'535.129.03' -> (535, 129, 3); None when it has no leading number."""
    if version is None:
        return None
    parts = []
    for part in str(version).split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        parts.append(int(match.group(0)))
    return tuple(parts) or None


# Clock reasons that mean the GPU is being slowed down by hardware protection rather than
# by idling or configuration.
HARDWARE_SLOWDOWN_REASONS = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown")


def _check_gpu(gpu, fail, warnings, options):
    label = gpu_label(gpu)
    pattern = options["product_pattern"]
    if pattern and not re.search(pattern, gpu.get("product_name") or ""):
        fail("product_name", "matches %r" % pattern, gpu.get("product_name"), gpu)
    max_temperature = options["max_temperature"]
    if max_temperature is not None:
        temp = gpu.get("temperature_c")
        if temp is None:
            warnings.append("%s: temperature not reported, max_temperature not checked" % label)
        elif temp > max_temperature:
            fail("temperature", "<= %s C" % max_temperature, "%s C" % temp, gpu)
    if options["check_memory_health"]:
        if gpu["retired_pages"]["pending"]:
            fail("retired_pages_pending", "no pages pending retirement", "pages pending retirement", gpu)
        if gpu["remapped_rows"]["pending"]:
            fail("remapped_rows_pending", "no rows pending remapping", "rows pending remapping", gpu)
        if gpu["remapped_rows"]["failure"]:
            fail("remapped_rows_failure", "no row remapping failure", "row remapping failed", gpu)
    pcie = gpu["pcie"]
    widths_known = None not in (pcie["current_width"], pcie["max_width"])
    if options["check_pcie_width"] and widths_known and pcie["current_width"] < pcie["max_width"]:
        fail("pcie_link_width", "x%s" % pcie["max_width"], "x%s" % pcie["current_width"], gpu)
    if options["require_persistence_mode"] and (gpu.get("persistence_mode") or "").lower() != "enabled":
        fail("persistence_mode", "Enabled", gpu.get("persistence_mode"), gpu)
    slowdowns = [r for r in gpu["clock_reasons"]["active"] if r in HARDWARE_SLOWDOWN_REASONS]
    if slowdowns:
        warnings.append("%s: clocks slowed down by %s" % (label, ", ".join(slowdowns)))


def check(
    report,
    *,
    min_driver_version=None,
    expected_gpu_count=None,
    product_pattern=None,
    max_temperature=None,
    require_persistence_mode=False,
    check_pcie_width=True,
    check_memory_health=True,
):
    """Judge a parsed report; returns (failed_checks, warnings).

    Every failed check is {check, gpu, gpu_index, pci_bus_id, expected, found}; ``gpu`` is the
    GPU's UUID (its bus id when the UUID is unknown); the three are None for host-wide checks.
    """
    failed, warnings = [], []

    def fail(name, expected, found, gpu=None):
        gpu = gpu or {}
        failed.append(
            {
                "check": name,
                "gpu": gpu.get("uuid") or gpu.get("pci_bus_id"),
                "gpu_index": gpu.get("index"),
                "pci_bus_id": gpu.get("pci_bus_id"),
                "expected": expected,
                "found": found,
            }
        )

    if min_driver_version:
        found = report.get("driver_version")
        have, want = version_tuple(found), version_tuple(min_driver_version)
        if have is None or want is None or have < want:
            fail("driver_version", ">= %s" % min_driver_version, found)

    gpus = report.get("gpus", [])
    if expected_gpu_count is not None and len(gpus) != expected_gpu_count:
        fail("gpu_count", expected_gpu_count, len(gpus))

    options = {
        "product_pattern": product_pattern,
        "max_temperature": max_temperature,
        "require_persistence_mode": require_persistence_mode,
        "check_pcie_width": check_pcie_width,
        "check_memory_health": check_memory_health,
    }
    for gpu in gpus:
        _check_gpu(gpu, fail, warnings, options)
    return failed, warnings


_UUID_LINE = re.compile(r"\(UUID:\s*(GPU-[0-9a-fA-F-]+)\)")


def uuids_from_list(text):
    """UUIDs from `nvidia-smi -L` output ("GPU 0: NAME (UUID: GPU-...)"), in order."""
    return _UUID_LINE.findall(text or "")


_CLI_UUID = re.compile(r"^\s*GPU UUID:\s*(GPU-[0-9a-fA-F-]+)\s*$", re.M)
_CLI_FIELD = re.compile(r"^\s*(NVRM version|CUDA version):\s*(\S+)\s*$", re.M)


def parse_container_cli_info(text):
    """Parse `nvidia-container-cli info`: driver (NVRM) and CUDA versions, GPU UUIDs."""
    fields = dict(_CLI_FIELD.findall(text or ""))
    return {
        "nvrm_version": fields.get("NVRM version"),
        "cuda_version": fields.get("CUDA version"),
        "uuids": _CLI_UUID.findall(text or ""),
    }


def failure_summary(failed):
    """One line per failed check, for the module's failure message; GPUs by index, bus id and UUID."""
    lines = []
    for item in failed:
        gpu = item.get("gpu")
        where = " on %s" % gpu if gpu else ""
        if item.get("gpu_index") is not None or item.get("pci_bus_id"):
            uuid = gpu if gpu != item.get("pci_bus_id") else None
            where = " on %s" % gpu_label(
                {"index": item.get("gpu_index"), "pci_bus_id": item.get("pci_bus_id"), "uuid": uuid}
            )
        lines.append("%s%s: expected %s, found %s" % (item["check"], where, item["expected"], item["found"]))
    return "; ".join(lines)
