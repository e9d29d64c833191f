"""A fresh Debian 12 host gets from `git clone` to the first layer with the README's commands.

The host is the project's Debian 12 systemd test image (debootstrap's minbase, as a fresh
install has it, plus sudo). In it, as a normal user with sudo rights: the README's apt line,
`git clone` of this checkout, `make setup`, and the first layer (preflight) with the README's
inventory. Needs Docker, the test image (scripts/build-test-image.sh) and the Debian and
PyPI archives the image's apt and pip reach.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid

import pytest
from conftest import REPO

GIT = shutil.which("git") or "/usr/bin/git"

IMAGE = "odin-test/debian12:latest"
DOCKER = shutil.which("docker") or "/usr/bin/docker"


def _docker(*args, timeout=900, check=False):
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=check)


def readme_apt_line():
    """The first command of the README's "Use it" block."""
    text = (REPO / "README.md").read_text()
    block = text.split("## Use it", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    line = block.strip().splitlines()[0]
    return line.split("#", 1)[0].strip()


def test_readme_starts_with_the_packages_setup_needs():
    line = readme_apt_line()
    assert line.startswith("sudo apt-get install -y ")
    assert {"python3-venv", "git", "make"} <= set(line.split()[4:])


@pytest.fixture
def fresh_host(tmp_path):
    if not shutil.which("docker") or _docker("image", "inspect", IMAGE).returncode != 0:
        pytest.skip(f"Docker and the {IMAGE} image are needed (scripts/build-test-image.sh builds it)")
    name = f"odin-fresh-{uuid.uuid4().hex[:6]}"
    # The checkout's committed HEAD, as a remote would serve it.
    subprocess.run([GIT, "-C", str(REPO), "bundle", "create", str(tmp_path / "odin.git"), "HEAD"], check=True)
    tmp_path.chmod(0o755)  # the host's user reads it through the bind mount
    (tmp_path / "odin.git").chmod(0o644)
    # Where this machine reaches PyPI through a proxy with its own CA (PIP_CERT), the host gets
    # the same trust; elsewhere nothing is passed.
    cert = os.environ.get("PIP_CERT", "")
    trust = (
        ["-v", f"{cert}:/etc/odin-host-ca.crt:ro", "-e", "PIP_CERT=/etc/odin-host-ca.crt"]
        if os.path.isfile(cert)
        else []
    )
    started = _docker(
        "run", "-d", "--name", name, "--label", "odin.test=fresh-host",
        "--cap-add", "SYS_ADMIN", "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--tmpfs", "/run", "--tmpfs", "/run/lock", "-v", f"{tmp_path}:/src:ro", *trust, IMAGE, "/lib/systemd/systemd",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        yield name
    finally:
        _docker("rm", "-f", name)


def test_git_clone_to_the_first_layer_with_the_readme_commands(fresh_host):
    host = fresh_host
    # A fresh install has a user with sudo rights; the minimal image is given one.
    prepare = _docker(
        "exec", host, "sh", "-c",
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo >/dev/null "
        "&& useradd -m -s /bin/bash odin && echo 'odin ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/odin",
    )  # fmt: skip
    assert prepare.returncode == 0, prepare.stdout + prepare.stderr
    script = " && ".join(
        [
            "set -e",
            "export DEBIAN_FRONTEND=noninteractive",
            readme_apt_line() + " >/dev/null",
            "git clone -q /src/odin.git odin",
            "cd odin",
            "make setup",
            ". .venv/bin/activate",
            # The test machine's disk and memory are below the laptop's defaults.
            "ansible-playbook playbooks/preflight.yml -i inventories/laptop -e preflight_min_disk_free_gb=1"
            " -e preflight_min_memory_mb=512",
        ]
    )
    env = ["-e", "PIP_CERT=/etc/odin-host-ca.crt"] if os.path.isfile(os.environ.get("PIP_CERT", "")) else []
    result = _docker("exec", *env, "-u", "odin", "-w", "/home/odin", host, "bash", "-c", script, timeout=1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "TASK [odin.stack.preflight" in output
    assert re.search(r"laptop\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", output), output[-3000:]
