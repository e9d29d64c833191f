"""The laptop inventory: a broken hosts.yml stops every command; the SSH example in it is complete."""

import re
import shutil

import pytest
import yaml
from conftest import REPO

INVENTORY = REPO / "inventories" / "laptop"


@pytest.fixture
def broken_inventory(tmp_path):
    inventory = tmp_path / "laptop"
    shutil.copytree(INVENTORY, inventory)
    hosts = inventory / "hosts.yml"
    # A colon left out: "ansible_connection local" is no longer a key of the host's mapping.
    hosts.write_text(hosts.read_text().replace("  ansible_connection: local\n", "  ansible_connection local\n"))
    assert "  ansible_connection local\n" in hosts.read_text()
    return inventory


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["ansible-inventory", "--list", "-i", "{inventory}"], id="ansible-inventory"),
        pytest.param(
            ["ansible-playbook", "-i", "{inventory}", "playbooks/validate.yml", "--list-hosts"], id="playbook"
        ),
    ],
)
def test_broken_hosts_yml_is_an_error(ansible, broken_inventory, command):
    result = ansible([part.format(inventory=broken_inventory) for part in command])
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"{broken_inventory}/hosts.yml" in output
    assert "Completely failed to parse inventory source" in output


def test_laptop_inventory_parses(ansible):
    result = ansible(["ansible-inventory", "--list", "-i", "inventories/laptop"])
    assert result.returncode == 0, result.stderr
    assert "laptop" in result.stdout


def _ssh_example():
    """The commented k3s_server entry in hosts.yml that provisions a machine over SSH."""
    text = (INVENTORY / "hosts.yml").read_text()
    comment = "\n".join(line[1:] for line in text.splitlines() if line.startswith("#"))
    block = re.search(r"^( +k3s_server:\n(?: {9,}.*\n?)+)", comment, re.M)
    assert block, "hosts.yml shows no k3s_server entry for SSH"
    return yaml.safe_load(block.group(1))["k3s_server"]


def test_ssh_example_replaces_the_local_connection(ansible, tmp_path):
    example = _ssh_example()
    (host, host_vars), *others = example["hosts"].items()
    assert not others
    assert {"ansible_host", "ansible_user", "ansible_ssh_private_key_file"} <= set(host_vars)
    assert not {"ansible_connection", "ansible_python_interpreter"} & set(host_vars)

    inventory = tmp_path / "remote"
    shutil.copytree(INVENTORY, inventory)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    hosts["all"]["children"]["odin"]["children"]["k3s_server"] = example
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    result = ansible(["ansible-inventory", "-i", str(inventory), "--host", host])
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["ansible_host"] == host_vars["ansible_host"]
    assert "ansible_connection" not in shown
    assert "ansible_python_interpreter" not in shown
