"""odin.stack.nvidia_driver_state reads the kernels and prebuilt module packages through real
dpkg-query, over a dpkg database written the way dpkg writes one for an Ubuntu 24.04 laptop
(a kernel update installed since the last run, an OEM kernel, a removed kernel)."""

import shutil

import pytest
from backup_helpers import run_module
from conftest import run

PREFIX = "linux-modules-nvidia-580-open-"
PACKAGES = [
    # (name, version, status)
    ("nvidia-headless-no-dkms-580-open", "580.95.05-0ubuntu0.24.04.2", "hold ok installed"),
    ("nvidia-utils-580", "580.95.05-0ubuntu0.24.04.2", "hold ok installed"),
    ("linux-image-6.8.0-49-generic", "6.8.0-49.49", "install ok installed"),
    ("linux-image-6.8.0-51-generic", "6.8.0-51.52", "install ok installed"),
    ("linux-image-6.8.0-9-generic", "6.8.0-9.9", "deinstall ok config-files"),
    ("linux-image-generic-hwe-24.04", "6.8.0-51.52", "install ok installed"),
    ("linux-image-unsigned-6.11.0-1009-oem", "6.11.0-1009.9", "install ok installed"),
    ("linux-image-oem-24.04b", "6.11.0-1009.9", "install ok installed"),
    (PREFIX + "6.8.0-49-generic", "6.8.0-49.49+1", "hold ok installed"),
    (PREFIX + "generic-hwe-24.04", "6.8.0-49.49+1", "install ok installed"),
]


def _dpkg_db(root):
    (root / "updates").mkdir(parents=True)
    (root / "info").mkdir()
    stanzas = [
        "Package: %s\nStatus: %s\nMaintainer: Ubuntu Kernel Team <kernel-team@lists.ubuntu.com>\n"
        "Architecture: amd64\nVersion: %s\nDescription: %s\n" % (name, status, version, name)
        for name, version, status in PACKAGES
    ]
    (root / "status").write_text("\n".join(stanzas))
    return root


def _state(**args):
    return run_module(run, "nvidia_driver_state", args)


@pytest.mark.skipif(not shutil.which("dpkg-query"), reason="needs dpkg-query (Debian or Ubuntu)")
def test_every_bootable_kernel_gets_its_module_package(tmp_path):
    db = _dpkg_db(tmp_path / "dpkg")
    state = _state(
        packages=["nvidia-headless-no-dkms-580-open", "nvidia-utils-580"],
        kernel_modules_prefix=PREFIX,
        kernel_release="6.8.0-49-generic",
        dpkg_admindir=str(db),
        proc_version_path=str(tmp_path / "absent"),
    )
    assert not state.get("failed"), state.get("msg")
    plan = state["kernel_modules"]
    assert plan["kernels"] == ["6.8.0-49-generic", "6.8.0-51-generic", "6.11.0-1009-oem"]
    assert plan["missing"] == [PREFIX + "6.8.0-51-generic", PREFIX + "6.11.0-1009-oem"]
    assert plan["metapackages"] == [PREFIX + "generic-hwe-24.04", PREFIX + "oem-24.04b"]
    # The module packages join the packages' state, so the role re-holds them after a failure.
    assert state["selections"][PREFIX + "6.8.0-49-generic"] == "hold"
    assert state["installed"][PREFIX + "generic-hwe-24.04"] == "6.8.0-49.49+1"
    assert state["selections"]["nvidia-utils-580"] == "hold"
    assert not any(name.startswith("linux-image") for name in state["installed"])


@pytest.mark.skipif(not shutil.which("dpkg-query"), reason="needs dpkg-query (Debian or Ubuntu)")
def test_a_host_without_kernel_packages_needs_the_running_kernels_module(tmp_path):
    db = tmp_path / "dpkg"
    (db / "updates").mkdir(parents=True)
    (db / "status").write_text("")
    state = _state(kernel_modules_prefix=PREFIX, kernel_release="6.8.0-1017-azure", dpkg_admindir=str(db))
    assert not state.get("failed"), state.get("msg")
    assert state["kernel_modules"] == {
        "kernels": ["6.8.0-1017-azure"],
        "packages": [PREFIX + "6.8.0-1017-azure"],
        "missing": [PREFIX + "6.8.0-1017-azure"],
        "metapackages": [],
    }


def test_without_a_prefix_no_kernel_is_read(tmp_path):
    state = _state(packages=[], proc_version_path=str(tmp_path / "absent"))
    assert not state.get("failed"), state.get("msg")
    assert state["kernel_modules"] is None
