# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Parsers behind the NVIDIA host roles: package versions, the loaded kernel module,
and MOK enrolment.

Plain Python with no Ansible imports, so every parser is unit-tested on recorded output.
"""

from __future__ import annotations

import re

# A Debian package version pinned exactly: optional epoch, an upstream part that starts
# with a digit, and a Debian revision. Wildcards, ranges and bare branches are not pins.
EXACT_DEBIAN_VERSION = re.compile(r"^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~]*-[A-Za-z0-9.+~]+\Z")

# "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 ..." (proprietary)
# "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build ..." (open)
_NVRM = re.compile(r"^NVRM version:.*?Kernel Module(?: for \S+)?\s+([0-9]+(?:\.[0-9]+)+)\b")


def is_exact_version(value):
    """True when `value` is a complete Debian package version (epoch:upstream-revision)."""
    return isinstance(value, str) and bool(EXACT_DEBIAN_VERSION.match(value))


def upstream_version(package_version):
    """The upstream part of a Debian package version: '1:535.309.01-0+deb12u1' -> '535.309.01'.

    Returns None for an empty value.
    """
    if not package_version:
        return None
    version = package_version.split(":", 1)[1] if ":" in package_version else package_version
    return version.rsplit("-", 1)[0] if "-" in version else version


def parse_proc_version(text):
    """Read /proc/driver/nvidia/version.

    Returns {'version': '535.183.01', 'flavor': 'open'|'proprietary', 'line': <NVRM line>}
    or None when the text holds no NVRM line (no NVIDIA module loaded).
    """
    if not text:
        return None
    for raw in text.splitlines():
        line = raw.strip()
        match = _NVRM.match(line)
        if match:
            flavor = "open" if "Open Kernel Module" in line else "proprietary"
            return {"version": match.group(1), "flavor": flavor, "line": line}
    return None


def compare_loaded(loaded, package, package_version):
    """Compare the loaded kernel module with an installed package's version.

    `loaded` is parse_proc_version()'s result (or None). Returns a dict with `match`
    (bool) and `message` describing what was found.
    """
    expected = upstream_version(package_version)
    if expected is None:
        return {
            "match": False,
            "expected": None,
            "found": loaded and loaded["version"],
            "message": "%s is not installed" % package,
        }
    if loaded is None:
        return {
            "match": False,
            "expected": expected,
            "found": None,
            "message": "no NVIDIA kernel module is loaded (/proc/driver/nvidia/version is absent); "
            "%s %s is installed" % (package, package_version),
        }
    if loaded["version"] != expected:
        return {
            "match": False,
            "expected": expected,
            "found": loaded["version"],
            "message": "the loaded NVIDIA kernel module is %s but %s %s is installed"
            % (loaded["version"], package, package_version),
        }
    return {
        "match": True,
        "expected": expected,
        "found": loaded["version"],
        "message": "the loaded NVIDIA kernel module %s matches %s %s" % (loaded["version"], package, package_version),
    }


def parse_dpkg_query(output):
    """Parse `dpkg-query -W -f '${Package}\\t${Version}\\t${db:Status-Abbrev}\\n'`.

    Returns {package: version} for packages whose status is installed (ii/hi), and a
    second dict {package: selection} (install, hold, deinstall, purge, unknown) for every
    listed package.
    """
    wanted = {"i": "install", "h": "hold", "r": "deinstall", "p": "purge", "u": "unknown"}
    installed, selections = {}, {}
    for raw in output.splitlines():
        fields = raw.split("\t")
        if len(fields) < 3 or not fields[0]:
            continue
        package, version, status = fields[0], fields[1], fields[2].strip()
        if len(status) >= 2 and status[1] == "i":
            installed[package] = version
        selections[package] = wanted.get(status[:1], "unknown")
    return installed, selections


def mok_key_state(rc, stdout, stderr):
    """Interpret `mokutil --test-key <cert>`.

    Returns 'enrolled', 'not_enrolled' or 'unknown' (EFI variables unreadable, no
    Secure Boot support, or output not understood).
    """
    text = "\n".join(part for part in (stdout, stderr) if part).lower()
    if "is already enrolled" in text:
        return "enrolled"
    if "is not enrolled" in text:
        return "not_enrolled"
    return "unknown"


# linux-image-6.8.0-51-generic, linux-image-unsigned-6.8.0-51-generic: one kernel release each.
_KERNEL_IMAGE = re.compile(r"^linux-image-(?:unsigned-)?([0-9][A-Za-z0-9.+~_-]*)$")
# linux-image-generic, linux-image-generic-hwe-24.04, linux-image-oem-24.04b: the metapackages
# that bring each new kernel of their flavour.
_KERNEL_FLAVOUR = re.compile(r"^linux-image-([a-z][a-z0-9.+-]*)$")
_NOT_FLAVOURS = ("unsigned", "extra", "uc")


def _release_key(release):
    """Sort key that orders '6.8.0-9-generic' before '6.8.0-51-generic'."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"([0-9]+)", release) if part]


def kernel_images(installed):
    """The kernels a host can boot and the kernel flavours it follows, from its installed packages.

    `installed` is {package: version} (parse_dpkg_query's first result). Returns
    (releases, flavours): the releases of the installed linux-image-<release> packages,
    oldest first, and the flavours of the installed linux-image-<flavour> metapackages
    (generic, generic-hwe-24.04, oem-24.04b), sorted.
    """
    releases, flavours = set(), set()
    for package in installed:
        image = _KERNEL_IMAGE.match(package)
        if image:
            releases.add(image.group(1))
            continue
        flavour = _KERNEL_FLAVOUR.match(package)
        if flavour and not flavour.group(1).startswith(_NOT_FLAVOURS):
            flavours.add(flavour.group(1))
    return sorted(releases, key=_release_key), sorted(flavours)


def kernel_module_plan(prefix, running, installed):
    """The prebuilt kernel module packages a host needs: one per kernel it can boot.

    `prefix` names the module packages (linux-modules-nvidia-580-open-), `running` is the
    running kernel release and `installed` {package: version}. Returns a dict:
    kernels (every installed kernel and the running one, oldest first), packages (the
    module package of each), missing (those not installed) and metapackages (the
    module metapackage of each kernel flavour the host follows, which brings the module
    package of each new kernel of that flavour).
    """
    releases, flavours = kernel_images(installed)
    kernels = sorted(set(releases) | {running}, key=_release_key)
    packages = [prefix + release for release in kernels]
    return {
        "kernels": kernels,
        "packages": packages,
        "missing": [package for package in packages if package not in installed],
        "metapackages": [prefix + flavour for flavour in flavours],
    }
