"""No secret of the backup layer in any output, at -vvv --diff.

playbooks/backup.yml and playbooks/restore.yml run on this machine against a K3s-shaped
tree whose token, config.yaml and Grafana database hold marker secrets, with age
encryption and a manifest signing key: a backup, a check-mode backup, a drill, the
restore plan in check mode, and a real restore after the token drifted. Every output is
searched for every secret: the K3s tokens, the Grafana password hash, the signing key and
the age identity.
"""

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from backup_helpers import AGE_KEYGEN, age_key, make_k3s_tree
from conftest import run

from ansible_collections.odin.stack.plugins.module_utils import _backup as backup

# Markers the test searches the output for.
TOKEN = "K10backup-Secret-Token-4c1d7e::server:9f0a"  # noqa: S105
DRIFTED_TOKEN = "K10drifted-Secret-Token-2b8c51::server:77d3"  # noqa: S105
CONFIG_TOKEN = "K10config-Secret-Token-a6e093"  # noqa: S105
GRAFANA_HASH = "grafana-Admin-Hash-5b2f0c91d4"  # noqa: S105


def _host(tmp_path):
    sources = make_k3s_tree(tmp_path / "host")
    Path(sources["k3s_token"]).write_text(TOKEN + "\n")
    Path(sources["k3s_config"]).write_text("token: %s\nwrite-kubeconfig-mode: '0600'\n" % CONFIG_TOKEN)
    grafana = tmp_path / "host/grafana/grafana.db"
    grafana.parent.mkdir(parents=True)
    with sqlite3.connect(grafana) as conn:
        conn.execute("CREATE TABLE user (login TEXT, password TEXT)")
        conn.execute("INSERT INTO user VALUES ('admin', ?)", (GRAFANA_HASH,))
    conn.close()
    return sources, grafana


@pytest.mark.skipif(sys.platform != "linux" or not AGE_KEYGEN, reason="needs Linux and age (scripts/host-deps.sh)")
def test_backup_and_restore_runs_print_no_secret(tmp_path):
    sources, grafana = _host(tmp_path)
    identity, recipient, age_secret = age_key(tmp_path)
    key = tmp_path / "signing.key"
    backup.create_signing_key(str(key))
    secrets = [TOKEN, DRIFTED_TOKEN, CONFIG_TOKEN, GRAFANA_HASH, key.read_text().strip(), age_secret]

    backup_dir = tmp_path / "backups"
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
        "odin_state_dir": str(tmp_path / "state"),
        "odin_backup_dir": str(backup_dir),
        "odin_textfile_dir": str(tmp_path / "textfile"),
        "odin_kubeconfig": str(tmp_path / "no-cluster/k3s.yaml"),
        "odin_backup_signing_key": str(key),
        "backup_components": ["k3s_datastore", "k3s_token", "k3s_config", "grafana"],
        "backup_k3s_datastore": sources["k3s_datastore"],
        "backup_k3s_token": sources["k3s_token"],
        "backup_k3s_config": sources["k3s_config"],
        "backup_grafana_db": str(grafana),
        "backup_age_recipients": [recipient],
        "backup_restore_age_identity": str(identity),
        "backup_restore_scratch_dir": str(tmp_path / "drill"),
    }
    (tmp_path / "textfile").mkdir()
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"children": {"k3s_server": {"hosts": {"laptop": host}}}}}))

    def playbook(name, *flags):
        result = run(["ansible-playbook", "-i", str(inventory), "playbooks/%s" % name, "-vvv", "--diff", *flags])
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-4000:]
        leaked = [index for index, secret in enumerate(secrets) if secret in output]
        assert not leaked, "%s %s printed secret(s) number %s" % (name, " ".join(flags), leaked)
        return output

    playbook("backup.yml", "--check")
    assert not backup_dir.exists()
    playbook("backup.yml")
    (taken,) = [path for path in backup_dir.iterdir() if path.name.startswith("odin-")]
    assert (taken / "manifest.sig").is_file()
    assert not any(
        secret.encode() in file.read_bytes() for file in taken.rglob("*") if file.is_file() for secret in secrets
    )

    playbook("restore.yml")
    assert not (tmp_path / "drill").exists()

    Path(sources["k3s_token"]).write_text(DRIFTED_TOKEN + "\n")
    plan = playbook("restore.yml", "--check", "-e", "backup_restore_mode=restore")
    assert "replace: %s (k3s_token)" % sources["k3s_token"] in plan
    assert Path(sources["k3s_token"]).read_text() == DRIFTED_TOKEN + "\n"

    playbook("restore.yml", "-e", "backup_restore_mode=restore")
    assert Path(sources["k3s_token"]).read_text() == TOKEN + "\n"
    with sqlite3.connect(grafana) as conn:
        assert conn.execute("SELECT password FROM user").fetchall() == [(GRAFANA_HASH,)]
    conn.close()
    # The state the restore replaced was backed up first, encrypted like every backup.
    assert len([path for path in backup_dir.iterdir() if path.name.startswith("odin-")]) == 2
