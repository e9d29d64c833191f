"""The first play of playbooks/upgrade.yml: record what runs, back up, and refuse without a backup.

Runs with `--tags upgrade`, so only that play's tasks run (the layer playbooks it imports
need K3s and the charts; the e2e workflow runs them). The backup is a real one taken by
odin.stack.stack_backup from a SQLite datastore, token and config made by the test.
"""

import json
import sqlite3
import sys

import pytest


@pytest.fixture
def k3s_files(tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    with sqlite3.connect(server / "state.db") as db:
        db.execute("CREATE TABLE kine (id INTEGER PRIMARY KEY, name TEXT, value BLOB)")
        db.execute("INSERT INTO kine (name, value) VALUES ('/registry/namespaces/default', x'00')")
    (server / "token").write_text("K10test::server:secret\n")
    (tmp_path / "config.yaml").write_text("write-kubeconfig-mode: '0600'\n")
    # The backup layer creates the textfile collector directory on a real host.
    (tmp_path / "textfile").mkdir()
    return tmp_path


def upgrade(ansible, tmp, datastore):
    return ansible(
        [
            "ansible-playbook",
            "-i",
            "inventories/laptop",
            "playbooks/upgrade.yml",
            "--tags",
            "upgrade",
            "-e",
            "ansible_python_interpreter=" + sys.executable,
            "-e",
            "odin_gpu_resolved=false",
            "-e",
            "odin_state_dir=%s odin_backup_dir=%s odin_textfile_dir=%s"
            % (tmp / "state", tmp / "backups", tmp / "textfile"),
            "-e",
            "backup_k3s_datastore=%s backup_k3s_token=%s backup_k3s_config=%s"
            % (datastore, tmp / "server" / "token", tmp / "config.yaml"),
            "-e",
            '{"backup_components": ["k3s_datastore", "k3s_token", "k3s_config"]}',
        ],
        timeout=300,
    )


def test_backup_then_record(ansible, k3s_files):
    res = upgrade(ansible, k3s_files, k3s_files / "server" / "state.db")
    assert res.returncode == 0, res.stdout + res.stderr
    backups = sorted((k3s_files / "backups").glob("odin-*"))
    assert len(backups) == 1
    manifest = json.loads((backups[0] / "manifest.json").read_text())
    assert manifest["format"] == 1
    records = list((k3s_files / "state" / "reports").glob("upgrade-*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["backup"] == str(backups[0])
    # Neither K3s nor Helm is installed on this machine.
    assert record["k3s_version_before"] == "not installed"
    assert record["helm_releases_before"] == []


def test_no_backup_no_upgrade(ansible, k3s_files):
    res = upgrade(ansible, k3s_files, k3s_files / "server" / "missing.db")
    assert res.returncode == 2
    assert not (k3s_files / "state" / "reports").exists() or not list(
        (k3s_files / "state" / "reports").glob("upgrade-*")
    )
    assert not list((k3s_files / "backups").glob("odin-*"))
