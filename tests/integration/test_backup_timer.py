"""The backup role enables its daily timer only where the K3s files every backup needs exist."""

import json
import sys

import pytest
from conftest import REPO

PLAYBOOK = REPO / "tests" / "integration" / "files" / "backup_timer.yml"
NOT_ENABLED = "The backup timer is installed but not enabled on localhost"


def decide(ansible, tmp_path, **extra):
    k3s = tmp_path / "k3s"
    k3s.mkdir(exist_ok=True)
    settings = {
        "backup_k3s_datastore": str(k3s / "state.db"),
        "backup_k3s_token": str(k3s / "token"),
        "backup_k3s_config": str(k3s / "config.yaml"),
        **extra,
    }
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(settings))
    result = ansible(
        [
            "ansible-playbook",
            str(PLAYBOOK),
            "-i",
            "localhost,",
            "--check",
            "-e",
            "@%s" % vars_file,
            "-e",
            "ansible_python_interpreter=%s ansible_become=false" % sys.executable,
        ]
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


@pytest.mark.skipif(sys.platform != "linux", reason="the role reads Linux paths")
def test_without_k3s_the_timer_is_not_enabled_and_says_why(ansible, tmp_path):
    (tmp_path / "k3s").mkdir()
    (tmp_path / "k3s" / "token").write_text("K10token\n")
    output = decide(ansible, tmp_path)
    assert "timer enabled: False" in output
    (message,) = [line for line in output.splitlines() if NOT_ENABLED in line]
    assert f"(backup_k3s_datastore: {tmp_path}/k3s/state.db)" in message
    assert "backup_k3s_token" not in message
    assert "re-run playbooks/backup_setup.yml, which enables the timer" in message


@pytest.mark.skipif(sys.platform != "linux", reason="the role reads Linux paths")
def test_with_k3s_the_timer_is_enabled(ansible, tmp_path):
    (tmp_path / "k3s").mkdir()
    for name in ("state.db", "token"):
        (tmp_path / "k3s" / name).write_text("x\n")
    output = decide(ansible, tmp_path)
    assert "timer enabled: True" in output
    assert NOT_ENABLED not in output


@pytest.mark.skipif(sys.platform != "linux", reason="the role reads Linux paths")
def test_only_required_components_count(ansible, tmp_path):
    output = decide(ansible, tmp_path, backup_components=["k3s_config"], backup_required_components=[])
    assert "timer enabled: True" in output
    assert NOT_ENABLED not in output


@pytest.mark.skipif(sys.platform != "linux", reason="the role reads Linux paths")
def test_timer_switched_off_needs_no_reason(ansible, tmp_path):
    output = decide(ansible, tmp_path, backup_timer_enabled=False)
    assert "timer enabled: False" in output
    assert NOT_ENABLED not in output
