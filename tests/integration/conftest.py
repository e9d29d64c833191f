"""Helpers for tests that run the real ansible-* commands against this checkout."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from backup_helpers import PROMETHEUS, PROMTOOL, Prometheus

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def ansible_env(**extra):
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    env.update(extra)
    return env


def run(args, timeout=600, **env):
    """Run an ansible-* command from the repository root; returns CompletedProcess."""
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=REPO,
        env=ansible_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def ansible():
    return run


def run_test_playbook(name, extra_vars, vars_file, *flags):
    """Run tests/integration/files/<name> on localhost with extra_vars (written to vars_file)."""
    vars_file.write_text(json.dumps(extra_vars))
    return run(
        [
            "ansible-playbook",
            str(REPO / "tests/integration/files" / name),
            "-i",
            "localhost,",
            "-e",
            "@%s" % vars_file,
            "-e",
            "ansible_python_interpreter=%s ansible_become=false" % sys.executable,
            *flags,
        ]
    )


@pytest.fixture
def prometheus(tmp_path):
    """A real Prometheus on 127.0.0.1 with its admin API, for the backup tests."""
    if not (PROMETHEUS and PROMTOOL):
        pytest.skip(
            "Debian's prometheus package (prometheus, promtool) is not installed; scripts/host-deps.sh installs it"
        )
    server = Prometheus(tmp_path / "prometheus-data", tmp_path)
    yield server
    server.stop()
