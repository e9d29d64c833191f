"""The SSH instructions in inventories/laptop/hosts.yml, followed to the letter, reach a host.

The host is this machine's own sshd, started in a network namespace of its own and reached
over a veth pair at 10.250.0.2, so the play really goes over SSH (with the documented
entry: ansible_host, ansible_user, ansible_ssh_private_key_file, and no local-connection
lines). The play is playbooks/validate.yml: every layer's settings checked on the remote
host, which changes nothing there.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest
import yaml
from conftest import REPO, run

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
IP = shutil.which("ip") or "/usr/sbin/ip"
KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
KEYSCAN = shutil.which("ssh-keyscan") or "/usr/bin/ssh-keyscan"
HOST_ADDRESS = "10.250.0.2"
pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0 or not os.path.exists(SSHD) or not shutil.which("ssh"),
    reason="needs Linux, root, iproute2 and openssh-server (scripts/host-deps.sh installs it)",
)


def documented_entry():
    """The SSH entry the comment in hosts.yml gives, as YAML."""
    text = (REPO / "inventories/laptop/hosts.yml").read_text()
    lines = [line[1:] for line in text.splitlines() if re.match(r"^#\s{8,}\S", line)]
    return yaml.safe_load("\n".join(lines))


def test_documented_entry_is_complete():
    entry = documented_entry()
    host = entry["k3s_server"]["hosts"]["laptop"]
    assert set(host) == {"ansible_host", "ansible_user", "ansible_ssh_private_key_file"}
    assert "ansible_connection" not in host and "ansible_python_interpreter" not in host


@pytest.fixture
def ssh_host(tmp_path):
    """sshd in its own network namespace on 10.250.0.2:22, accepting one key for root."""
    ns = f"odin-ssh-{uuid.uuid4().hex[:6]}"
    veth = f"vs{uuid.uuid4().hex[:6]}"
    key = tmp_path / "id_ed25519"
    subprocess.run([KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    subprocess.run([KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "host_key")], check=True)
    (tmp_path / "authorized_keys").write_text((tmp_path / "id_ed25519.pub").read_text())
    log = tmp_path / "sshd.log"
    (tmp_path / "sshd_config").write_text(
        f"ListenAddress {HOST_ADDRESS}\nHostKey {tmp_path / 'host_key'}\n"
        f"AuthorizedKeysFile {tmp_path / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nUsePAM no\nStrictModes no\nLogLevel INFO\n"
        f"PidFile {tmp_path / 'sshd.pid'}\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)
    subprocess.run([IP, "netns", "add", ns], check=True)
    sshd = None
    try:
        subprocess.run([IP, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns], check=True)
        subprocess.run([IP, "addr", "add", "10.250.0.1/30", "dev", veth], check=True)
        subprocess.run([IP, "link", "set", veth, "up"], check=True)
        for cmd in (["addr", "add", f"{HOST_ADDRESS}/30", "dev", "eth0"], ["link", "set", "eth0", "up"]):
            subprocess.run([IP, "netns", "exec", ns, IP, *cmd], check=True)
        subprocess.run([IP, "netns", "exec", ns, IP, "link", "set", "lo", "up"], check=True)
        sshd = subprocess.Popen(
            [IP, "netns", "exec", ns, SSHD, "-D", "-e", "-f", str(tmp_path / "sshd_config")],
            stderr=log.open("w"),
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection((HOST_ADDRESS, 22), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("sshd did not start: " + log.read_text()) from None
                time.sleep(0.2)
        yield key, log
    finally:
        if sshd:
            sshd.terminate()
            sshd.wait(timeout=10)
        subprocess.run([IP, "link", "del", veth], capture_output=True, check=False)
        subprocess.run([IP, "netns", "del", ns], capture_output=True, check=False)


def test_a_play_over_ssh_with_the_documented_entry(ssh_host, tmp_path):
    key, log = ssh_host
    entry = documented_entry()
    host = entry["k3s_server"]["hosts"]["laptop"]
    host.update(ansible_host=HOST_ADDRESS, ansible_user="root", ansible_ssh_private_key_file=str(key))
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventories/laptop", inventory)
    (inventory / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"children": {"odin": {"children": {**entry, "k3s_agent": {"hosts": {}}}}}}})
    )
    state = tmp_path / "remote-state"
    known_hosts = tmp_path / "known_hosts"
    scan = subprocess.run(
        [KEYSCAN, "-T", "5", "-t", "ed25519", HOST_ADDRESS], capture_output=True, text=True, check=True
    )
    known_hosts.write_text(scan.stdout)
    result = run(
        [
            "ansible-playbook",
            str(REPO / "playbooks/validate.yml"),
            "-i",
            str(inventory),
            "-vvv",
            "-e",
            f"odin_gpu_resolved=false odin_state_dir={state}",
        ],
        # The host key is checked against a known_hosts of the test's own (taken with ssh-keyscan).
        ANSIBLE_SSH_ARGS=f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes "
        "-o ControlMaster=auto -o ControlPersist=30s",
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(tmp_path / "cp"),
        # The test host shares this machine's file system, whose login PATH puts pyenv's shims
        # before /usr/bin; a stock host has only /usr/bin/python3, which discovery finds.
        ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "ESTABLISH SSH CONNECTION FOR USER: root" in output
    assert re.search(r"laptop\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", output), output[-2000:]
    assert "Accepted publickey for root" in log.read_text()
    # Over SSH the remote Python is the host's own, not this checkout's .venv.
    assert "/usr/bin/python3" in output
    assert not state.exists()
