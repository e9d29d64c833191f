"""site.yml against this machine: preflight must stop a bad run before anything changes."""

from pathlib import Path

import pytest


def _host_has_nvidia_gpu():
    devices = Path("/sys/bus/pci/devices")
    if not devices.is_dir():
        return False
    for func in devices.iterdir():
        try:
            vendor = (func / "vendor").read_text().strip()
            pci_class = (func / "class").read_text().strip()
        except OSError:
            continue
        if vendor == "0x10de" and pci_class.startswith("0x03"):
            return True
    return False


def _changed_total(output):
    return sum(int(part.split("=")[1]) for part in output.split() if part.startswith("changed="))


def test_site_syntax(ansible):
    result = ansible(["ansible-playbook", "-i", "inventories/laptop", "--syntax-check", "site.yml"])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(_host_has_nvidia_gpu(), reason="this machine has an NVIDIA GPU; the no-GPU path cannot be shown")
def test_gpu_required_without_gpu_stops_in_preflight(ansible, tmp_path):
    state = tmp_path / "state"
    result = ansible(
        [
            "ansible-playbook",
            "-i",
            "inventories/laptop",
            "site.yml",
            "-e",
            "odin_gpu_enabled=true",
            "-e",
            f"odin_state_dir={state}",
        ]
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "odin_gpu_enabled is true but no NVIDIA GPU" in output
    assert "odin_gpu_enabled: false" in output
    assert "PLAY RECAP" in output
    assert _changed_total(output) == 0, output
    assert not state.exists()


def test_bad_variable_is_named(ansible, tmp_path):
    result = ansible(
        [
            "ansible-playbook",
            "-i",
            "inventories/laptop",
            "site.yml",
            "-e",
            "odin_gpu_enabled=maybe",
            "-e",
            f"odin_state_dir={tmp_path / 'state'}",
        ]
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "odin_gpu_enabled" in output
    assert "maybe" in output
    assert _changed_total(output) == 0
    assert not (tmp_path / "state").exists()
