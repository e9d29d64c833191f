"""No K3s secret in any output: diffs of config.yaml and error messages, at -vvv --diff."""

import json
import sys
from pathlib import Path

import pytest
from conftest import run_test_playbook

OLD = "K10old-Secret-Token-7f3a91"
NEW = "K10new-Secret-Token-c02e55"


def configure(tmp_path, config, *flags):
    result = run_test_playbook(
        "k3s_configure.yml", {"_dir": str(tmp_path / "k3s"), "k3s_config": config}, tmp_path / "vars.json", *flags
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return result.stdout + result.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="the role renders Linux paths")
def test_config_diff_never_shows_a_token(tmp_path):
    config_file = tmp_path / "k3s/etc/config.yaml"
    configure(tmp_path, {"token": OLD})
    assert OLD in config_file.read_text()

    # The token removed from k3s_config: the old file held it, so no diff is shown.
    output = configure(tmp_path, {}, "--diff", "-vvv")
    assert OLD not in output
    assert "token" not in config_file.read_text()

    # A diff is shown when neither side holds a secret...
    output = configure(tmp_path, {"node-label": ["odin.dev/role=laptop"]}, "--diff", "-vvv")
    assert "+node-label:" in output or "odin.dev/role=laptop" in output

    # ... and hidden again when the new file gets one, in check mode too.
    for flags in (("--diff", "-vvv", "--check"), ("--diff", "-vvv")):
        output = configure(tmp_path, {"token": NEW, "agent-token": OLD}, *flags)
        assert NEW not in output and OLD not in output
    assert NEW in config_file.read_text()


def test_a_token_of_the_wrong_type_is_refused_without_its_value(ansible, tmp_path):
    result = ansible(
        [
            "ansible-playbook",
            str(Path("playbooks/validate.yml")),
            "-i",
            "inventories/laptop",
            "-vvv",
            "-e",
            json.dumps(
                {
                    "k3s_config": {"token": [NEW], "agent-token": {"value": OLD}},
                    "odin_gpu_resolved": False,
                    "odin_state_dir": str(tmp_path / "state"),
                    "ansible_become": False,
                }
            ),
        ]
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "k3s_config['token'] is a list (value hidden)" in output, output[-3000:]
    assert "k3s_config['agent-token']" in output
    assert NEW not in output and OLD not in output
    assert not (tmp_path / "state").exists()
