"""Parsers behind odin.stack.nvidia_driver_state, on recorded /proc, mokutil and dpkg-query output."""

from pathlib import Path

import pytest
import yaml

from ansible_collections.odin.stack.plugins.module_utils import _nvidia_driver as nd

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia_driver"


def fixture(name):
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize(
    ("value", "exact"),
    [
        ("535.309.01-0+deb12u1", True),
        ("535.261.03-1", True),
        ("580.95.05-0ubuntu0.24.04.2", True),
        ("1.18.0-1", True),
        ("1:535.309.01-0+deb12u1", True),
        ("1.18.0~rc.1-1", True),
        ("535", False),
        ("535.309.01", False),
        ("535.*", False),
        ("535.309.01-*", False),
        (">=535.309.01-1", False),
        ("latest", False),
        ("", False),
        (" 535.309.01-1", False),
        ("535.309.01-1 ", False),
        ("535.309.01-1\n", False),
        (None, False),
        (535, False),
    ],
)
def test_is_exact_version(value, exact):
    assert nd.is_exact_version(value) is exact


@pytest.mark.parametrize(
    ("package_version", "upstream"),
    [
        ("535.309.01-0+deb12u1", "535.309.01"),
        ("1:535.309.01-0+deb12u1", "535.309.01"),
        ("580.95.05-0ubuntu0.24.04.2", "580.95.05"),
        ("1.18.0-1", "1.18.0"),
        ("535.309.01", "535.309.01"),
        ("", None),
        (None, None),
    ],
)
def test_upstream_version(package_version, upstream):
    assert nd.upstream_version(package_version) == upstream


@pytest.mark.parametrize(
    ("name", "version", "flavor"),
    [
        ("proc-version-535-proprietary.txt", "535.309.01", "proprietary"),
        ("proc-version-580-open.txt", "580.95.05", "open"),
        ("proc-version-535-older.txt", "535.261.03", "proprietary"),
    ],
)
def test_parse_proc_version(name, version, flavor):
    loaded = nd.parse_proc_version(fixture(name))
    assert loaded["version"] == version
    assert loaded["flavor"] == flavor
    assert loaded["line"].startswith("NVRM version:")


@pytest.mark.parametrize("text", [None, "", fixture("proc-version-no-nvrm.txt"), "NVRM version: garbage\n"])
def test_parse_proc_version_without_module(text):
    assert nd.parse_proc_version(text) is None


@pytest.mark.parametrize(
    ("proc", "installed", "match", "expected", "found", "words"),
    [
        pytest.param(
            "proc-version-535-proprietary.txt",
            "535.309.01-0+deb12u1",
            True,
            "535.309.01",
            "535.309.01",
            ["matches"],
            id="match",
        ),
        pytest.param(
            "proc-version-535-older.txt",
            "535.309.01-0+deb12u1",
            False,
            "535.309.01",
            "535.261.03",
            ["535.261.03", "535.309.01-0+deb12u1"],
            id="mismatch-after-upgrade",
        ),
        pytest.param(
            "proc-version-580-open.txt",
            "580.95.05-0ubuntu0.24.04.2",
            True,
            "580.95.05",
            "580.95.05",
            ["matches"],
            id="ubuntu-open",
        ),
        pytest.param(
            None, "535.309.01-0+deb12u1", False, "535.309.01", None, ["no NVIDIA kernel module"], id="none-loaded"
        ),
        pytest.param(
            "proc-version-535-proprietary.txt", None, False, None, "535.309.01", ["not installed"], id="not-installed"
        ),
    ],
)
def test_compare_loaded(proc, installed, match, expected, found, words):  # noqa: PLR0917
    loaded = nd.parse_proc_version(fixture(proc)) if proc else None
    result = nd.compare_loaded(loaded, "nvidia-kernel-dkms", installed)
    assert result["match"] is match
    assert result["expected"] == expected
    assert result["found"] == found
    for word in words:
        assert word in result["message"]


def test_parse_dpkg_query():
    installed, selections = nd.parse_dpkg_query(fixture("dpkg-query.txt"))
    assert installed == {
        "nvidia-driver": "535.309.01-0+deb12u1",
        "nvidia-kernel-dkms": "535.309.01-0+deb12u1",
        "nvidia-smi": "535.309.01-0+deb12u1",
        "nvidia-persistenced": "535.171.04-1~deb12u1",
    }
    assert selections == {
        "nvidia-driver": "hold",
        "nvidia-kernel-dkms": "install",
        "nvidia-smi": "install",
        "libcuda1": "unknown",
        "nvidia-persistenced": "hold",
        "firmware-nvidia-gsp": "deinstall",
    }


@pytest.mark.parametrize(
    ("path", "rc", "state"),
    [
        (FIXTURES / "mokutil-test-key-enrolled.txt", 1, "enrolled"),
        (FIXTURES / "mokutil-test-key-not-enrolled.txt", 0, "not_enrolled"),
        # mokutil prints the same line for every command on a host without EFI variables.
        (FIXTURES.parent / "mokutil" / "no-efi.txt", 255, "unknown"),
    ],
)
def test_mok_key_state(path, rc, state):
    output = path.read_text()
    assert nd.mok_key_state(rc, output, "") == state
    assert nd.mok_key_state(rc, "", output) == state


@pytest.mark.parametrize("role", ["nvidia_driver", "nvidia_container_toolkit"])
def test_roles_validate_versions_with_the_same_pattern(role):
    """The roles check version pins in Jinja before any change; their pattern is this module's."""
    role_vars = yaml.safe_load((Path(__file__).parents[2] / "roles" / role / "vars" / "main.yml").read_text())
    assert role_vars["_%s_exact_version_regex" % role] == nd.EXACT_DEBIAN_VERSION.pattern


# Written in dpkg-query's format (Ubuntu's archive cannot be reached here): an Ubuntu 24.04
# laptop with two HWE kernels and an OEM kernel, a removed kernel (rc) and the module
# package of the older kernel only.
UBUNTU_KERNELS = "dpkg-query-kernels-ubuntu-24.04.txt"
PREFIX = "linux-modules-nvidia-580-open-"


def test_kernel_images_lists_bootable_kernels_oldest_first_and_followed_flavours():
    installed, _selections = nd.parse_dpkg_query(fixture(UBUNTU_KERNELS))
    releases, flavours = nd.kernel_images(installed)
    assert releases == ["6.8.0-49-generic", "6.8.0-51-generic", "6.11.0-1009-oem"]
    assert flavours == ["generic-hwe-24.04", "oem-24.04b"]


def test_kernel_module_plan_needs_a_module_for_every_bootable_kernel():
    installed, _selections = nd.parse_dpkg_query(fixture(UBUNTU_KERNELS))
    plan = nd.kernel_module_plan(PREFIX, "6.8.0-49-generic", installed)
    assert plan["packages"] == [PREFIX + "6.8.0-49-generic", PREFIX + "6.8.0-51-generic", PREFIX + "6.11.0-1009-oem"]
    # A kernel installed by an upgrade since the last run has no module yet.
    assert plan["missing"] == [PREFIX + "6.8.0-51-generic", PREFIX + "6.11.0-1009-oem"]
    assert plan["metapackages"] == [PREFIX + "generic-hwe-24.04", PREFIX + "oem-24.04b"]


@pytest.mark.parametrize(
    ("installed", "running", "kernels", "metapackages"),
    [
        # A container: no kernel packages, only the host's running kernel.
        ({}, "6.8.0-1017-azure", ["6.8.0-1017-azure"], []),
        # The running kernel's package was removed; it still needs its module until reboot.
        (
            {"linux-image-6.8.0-51-generic": "6.8.0-51.52"},
            "6.8.0-49-generic",
            ["6.8.0-49-generic", "6.8.0-51-generic"],
            [],
        ),
        # Metapackages that are not kernel flavours are not followed.
        (
            {"linux-image-extra-virtual": "1", "linux-image-unsigned-hwe": "1", "linux-image-virtual": "1"},
            "6.8.0-1-virtual",
            ["6.8.0-1-virtual"],
            [PREFIX + "virtual"],
        ),
    ],
)
def test_kernel_module_plan_cases(installed, running, kernels, metapackages):
    plan = nd.kernel_module_plan(PREFIX, running, installed)
    assert plan["kernels"] == kernels
    assert plan["packages"] == [PREFIX + kernel for kernel in kernels]
    assert plan["metapackages"] == metapackages
