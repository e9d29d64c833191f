"""No K3s secret in any output: diffs of config.yaml and error messages, at -vvv --diff."""

import json
import sys
from pathlib import Path

import pytest
import yaml
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


def validate(ansible, tmp_path, settings):
    """playbooks/validate.yml at -vvv with the given settings; state goes under tmp_path."""
    extra = {**settings, "odin_gpu_resolved": False, "odin_state_dir": str(tmp_path / "state"), "ansible_become": False}
    return ansible(
        [
            "ansible-playbook",
            str(Path("playbooks/validate.yml")),
            "-i",
            "inventories/laptop",
            "-vvv",
            "-e",
            json.dumps(extra),
        ]
    )


def test_a_token_of_the_wrong_type_is_refused_without_its_value(ansible, tmp_path):
    result = validate(ansible, tmp_path, {"k3s_config": {"token": [NEW], "agent-token": {"value": OLD}}})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "k3s_config['token'] is a list (value hidden)" in output, output[-3000:]
    assert "k3s_config['agent-token']" in output
    assert NEW not in output and OLD not in output
    assert not (tmp_path / "state").exists()


MIRROR_PASSWORD = "Mirror-Pass-9d41e0"  # noqa: S105 (a marker the test searches the output for)


def registries(tmp_path, value, *flags):
    result = run_test_playbook(
        "k3s_configure.yml",
        {"_dir": str(tmp_path / "k3s"), "k3s_config": {}, "k3s_registries": value},
        tmp_path / "vars.json",
        *flags,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return result.stdout + result.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="the role renders Linux paths")
def test_registries_rendered_private_idempotent_without_the_password_and_removed(tmp_path):
    file = tmp_path / "k3s/etc/registries.yaml"
    value = {
        "mirrors": {"docker.io": {"endpoint": ["https://mirror.example.test:5000"]}},
        "configs": {"mirror.example.test:5000": {"auth": {"username": "odin", "password": MIRROR_PASSWORD}}},
    }
    output = registries(tmp_path, value, "--diff", "-vvv")
    assert MIRROR_PASSWORD not in output
    assert yaml.safe_load(file.read_text()) == value
    assert oct(file.stat().st_mode & 0o777) == "0o600"
    assert "changed=0" not in output

    # The same mirrors again: nothing changes (so no K3s restart is notified).
    again = registries(tmp_path, value, "--diff", "-vvv")
    assert MIRROR_PASSWORD not in again
    assert "changed=0" in again

    # Credentials removed: the old file held them, so its diff stays hidden.
    public = {"mirrors": {"ghcr.io": {"endpoint": ["https://ghcr-mirror.example.test"]}}}
    output = registries(tmp_path, public, "--diff", "-vvv")
    assert MIRROR_PASSWORD not in output
    assert yaml.safe_load(file.read_text()) == public
    # Neither side has credentials now: the diff is shown.
    changed = {"mirrors": {"ghcr.io": {"endpoint": ["https://other.example.test"]}}}
    assert "other.example.test" in registries(tmp_path, changed, "--diff")

    # Empty: the file ODIN rendered is removed; a file ODIN did not write is left alone.
    registries(tmp_path, {})
    assert not file.exists()
    file.write_text("mirrors: {}\n")
    registries(tmp_path, {})
    assert file.read_text() == "mirrors: {}\n"


def test_a_bad_registry_setting_is_refused_without_the_password(ansible, tmp_path):
    registries_setting = {
        "configs": {"registry.example.test": {"auth": {"password": MIRROR_PASSWORD}}},
        "mirrors": {"docker.io": {"endpoint": ["mirror.example.test"]}},
    }
    result = validate(ansible, tmp_path, {"k3s_registries": registries_setting})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "k3s_registries.configs['registry.example.test'].auth: set username and password together" in output
    assert "k3s_registries.mirrors['docker.io'].endpoint entry 'mirror.example.test' is not an http(s) URL" in output
    assert MIRROR_PASSWORD not in output
    assert not (tmp_path / "state").exists()
