"""Backups against real services: Prometheus with its admin API, live SQLite writers, a full filesystem.

Prometheus is Debian's `prometheus` started by the test on 127.0.0.1 with a temporary data
directory; the modules run through real `ansible` commands.
"""

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from backup_helpers import (
    AGE_KEYGEN,
    TOOLS,
    Prometheus,
    age_key,
    make_k3s_tree,
    mounted_tmpfs,
    query,
    run_module,
)
from localnet import free_port

from ansible_collections.odin.stack.plugins.module_utils import _backup as backup


def test_prometheus_snapshot_backup_restores_into_a_queryable_tsdb(prometheus, tmp_path):
    # Let it scrape itself for a while, then fix a point in time all samples before it must survive.
    deadline = time.monotonic() + 30
    at = None
    while time.monotonic() < deadline:
        time.sleep(1)
        at = time.time()
        counted = query(prometheus.url, 'count_over_time(up{job="self"}[5m])', at)
        if counted and int(float(counted[0]["value"][1])) >= 5:
            break
    before = query(prometheus.url, 'count_over_time(up{job="self"}[5m])', at)
    samples_before = int(float(before[0]["value"][1]))
    assert samples_before >= 5

    config = {
        "backup_dir": str(tmp_path / "backups"),
        "components": ["prometheus"],
        "prometheus_url": prometheus.url,
        "prometheus_data_dir": str(prometheus.data_dir),
    }
    taken = backup.take_backup(config, TOOLS)
    component = taken["manifest"]["components"][0]
    assert component["name"] == "prometheus"
    assert component["prometheus_version"].startswith("2.")
    assert component["snapshot_seconds"] >= 0
    # The snapshot is removed once archived: it would pin disk space in the live TSDB.
    assert not os.listdir(prometheus.data_dir / "snapshots")

    path = backup.resolve_backup(config["backup_dir"], "latest")
    manifest = backup.load_manifest(path)
    assert backup.verify_backup(path, manifest) == []
    scratch = tmp_path / "scratch"
    restored, _ = backup.restore(path, manifest["components"], TOOLS, target_root=str(scratch))
    report, problems = backup.drill(restored, TOOLS)
    assert problems == []
    assert report[0]["check"] == "tsdb" and report[0]["blocks"] >= 1 and report[0]["series"] > 0

    # A second Prometheus on the restored directory answers with the same samples.
    second = Prometheus(restored[0]["destination"], tmp_path)
    try:
        after = query(second.url, 'count_over_time(up{job="self"}[5m])', at)
    finally:
        second.stop()
    assert after, "the restored TSDB has no up{job='self'} samples"
    assert int(float(after[0]["value"][1])) == samples_before


def test_sqlite_backup_is_consistent_while_another_thread_writes(tmp_path):
    db = tmp_path / "state.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE kine (id INTEGER PRIMARY KEY, batch INTEGER NOT NULL, value BLOB)")
    conn.commit()
    conn.close()
    batch_size = 50
    stop = threading.Event()
    written = []

    def writer():
        # Each transaction inserts a full batch: a copy at a committed point holds whole batches only.
        wconn = sqlite3.connect(db, timeout=30)
        batch = 0
        while not stop.is_set():
            batch += 1
            with wconn:
                wconn.executemany(
                    "INSERT INTO kine (batch, value) VALUES (?, ?)", [(batch, os.urandom(256))] * batch_size
                )
            written.append(batch)
        wconn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 20:
            time.sleep(0.01)
        copies = []
        for i in range(3):
            dest = tmp_path / ("copy-%d.db" % i)
            backup.sqlite_online_copy(str(db), str(dest))
            copies.append(dest)
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()

    final_rows = len(written) * batch_size
    counts = []
    for dest in copies:
        check = backup.sqlite_check(str(dest))
        assert check["integrity"] == "ok"
        rows = check["tables"]["kine"]
        conn = sqlite3.connect(dest)
        max_batch, batches, max_id = conn.execute(
            "SELECT max(batch), count(DISTINCT batch), max(id) FROM kine"
        ).fetchone()
        per_batch = {n for (n,) in conn.execute("SELECT count(*) FROM kine GROUP BY batch")}
        conn.close()
        assert rows % batch_size == 0, "copy holds part of a transaction"
        assert per_batch == {batch_size}
        assert batches == max_batch == rows // batch_size and max_id == rows
        assert not Path(str(dest) + "-wal").exists(), "the copy must be a single self-contained file"
        counts.append(rows)
    assert 0 < counts[0] <= counts[-1] < final_rows, "copies were not taken while the writer ran"


def test_modules_back_up_verify_drill_and_restore_a_k3s_tree(ansible, tmp_path):
    sources = make_k3s_tree(tmp_path / "host")
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    backup_dir = tmp_path / "backups"
    args = {
        "backup_dir": str(backup_dir),
        "components": ["k3s_datastore", "k3s_token", "k3s_config", "grafana"],
        "grafana_db": str(tmp_path / "nowhere/grafana.db"),
        "textfile_dir": str(textfile),
        **sources,
    }
    checked = run_module(ansible, "stack_backup", args, check=True)
    assert checked["changed"] and not backup_dir.exists(), checked
    assert checked["missing_components"][0]["component"] == "grafana"

    taken = run_module(ansible, "stack_backup", args)
    assert taken["changed"], taken.get("msg")
    path = Path(taken["path"])
    assert path.name.startswith("odin-") and path.parent == backup_dir
    assert oct(path.stat().st_mode & 0o777) == "0o700"
    assert {c["name"] for c in taken["manifest"]["components"]} == {"k3s_datastore", "k3s_token", "k3s_config"}
    assert taken["missing_components"] == [
        {"component": "grafana", "source": args["grafana_db"], "reason": "file not found"}
    ]
    for file in path.rglob("*"):
        assert oct(file.stat().st_mode & 0o777) == ("0o700" if file.is_dir() else "0o600"), file
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == 1 and manifest["created"].endswith("Z")
    assert manifest["tools"]["python_sqlite"]
    metrics = (textfile / "odin_backup.prom").read_text()
    assert "odin_backup_last_success 1\n" in metrics
    assert "odin_backup_last_size_bytes %d\n" % taken["size_bytes"] in metrics
    assert oct((textfile / "odin_backup.prom").stat().st_mode & 0o777) == "0o644"

    # Drift on the host, then ask what a restore would do, without doing it.
    Path(sources["k3s_token"]).write_text("changed\n")
    plan = run_module(ansible, "stack_restore", {"backup_dir": str(backup_dir), **sources}, check=True)
    actions = {Path(p["destination"]).name: p["action"] for p in plan["plan"]}
    assert actions == {"state.db": "replace", "token": "replace", "config.yaml": "unchanged"}
    assert Path(sources["k3s_token"]).read_text() == "changed\n"

    drilled = run_module(
        ansible,
        "stack_restore",
        {"backup_dir": str(backup_dir), "mode": "drill", "scratch_dir": str(tmp_path / "drill")},
    )
    assert not drilled.get("failed"), drilled.get("msg")
    sqlite_report = next(r for r in drilled["drill"] if r["check"] == "sqlite")
    assert sqlite_report["integrity"] == "ok" and sqlite_report["tables"]["kine"] == 200
    assert not (tmp_path / "drill").exists()

    restored = run_module(ansible, "stack_restore", {"backup_dir": str(backup_dir), "manage_k3s": False, **sources})
    assert restored["changed"], restored.get("msg")
    assert Path(sources["k3s_token"]).read_text() == "K10abc::server:0123456789abcdef\n"
    assert any(p.endswith(".pre-restore-" + p.rsplit("-", 1)[-1]) for p in restored["moved_aside"])
    assert backup.sqlite_check(sources["k3s_datastore"])["tables"]["kine"] == 200


def test_a_failing_optional_component_does_not_cost_the_others(ansible, tmp_path):
    sources = make_k3s_tree(tmp_path / "host")
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    tsdb = tmp_path / "host/prometheus-db"
    tsdb.mkdir()
    args = {
        "backup_dir": str(tmp_path / "backups"),
        "components": ["k3s_datastore", "k3s_token", "prometheus"],
        "required_components": ["k3s_datastore", "k3s_token"],
        # Nothing listens there: the snapshot fails as it does when Prometheus is down.
        "prometheus_url": "http://127.0.0.1:%d" % free_port(),
        "prometheus_data_dir": str(tsdb),
        "textfile_dir": str(textfile),
        **sources,
    }
    result = run_module(ansible, "stack_backup", args)
    assert result["failed"]
    assert "everything except prometheus" in result["msg"] and "Is Prometheus running?" in result["msg"]
    assert "does not count as a backup" in result["msg"]
    assert [f["component"] for f in result["failed_components"]] == ["prometheus"]
    # Kept under a name nothing takes for a complete backup, but restorable by name.
    assert backup.list_backups(args["backup_dir"]) == []
    with pytest.raises(backup.BackupError, match="No complete backup"):
        backup.resolve_backup(args["backup_dir"], "latest")
    [(partial, _created)] = backup.list_partials(args["backup_dir"])
    assert result["partial"] and result["name"] == partial and partial.startswith("partial-odin-")
    path = backup.resolve_backup(args["backup_dir"], partial)
    manifest = backup.load_manifest(path)
    assert manifest["partial"] is True
    assert [c["name"] for c in manifest["components"]] == ["k3s_datastore", "k3s_token"]
    assert manifest["failed"][0]["component"] == "prometheus"
    assert not Path(path, "prometheus").exists()
    assert "odin_backup_last_success 0\n" in (textfile / "odin_backup.prom").read_text()

    # The same failure on a required component ends the run with no backup marked complete.
    args["required_components"] = ["prometheus"]
    args["backup_dir"] = str(tmp_path / "backups2")
    result = run_module(ansible, "stack_backup", args)
    assert result["failed"] and "no backup was marked complete" in result["msg"]
    assert backup.list_backups(args["backup_dir"]) == []


def test_restore_refuses_a_corrupted_backup_and_changes_nothing(ansible, tmp_path):
    sources = make_k3s_tree(tmp_path / "host")
    backup_dir = tmp_path / "backups"
    taken = backup.take_backup(
        {"backup_dir": str(backup_dir), "components": ["k3s_datastore", "k3s_token"], **sources}, TOOLS
    )
    db_file = Path(taken["path"]) / "k3s_datastore/state.db"
    data = bytearray(db_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit's worth of damage, same size
    db_file.write_bytes(bytes(data))
    before = Path(sources["k3s_datastore"]).read_bytes()

    result = run_module(ansible, "stack_restore", {"backup_dir": str(backup_dir), "manage_k3s": False})
    assert result["failed"]
    assert "Refusing to restore" in result["msg"] and "k3s_datastore/state.db: sha256" in result["msg"]
    assert Path(sources["k3s_datastore"]).read_bytes() == before

    # A manifest edited to match the damaged file is caught by manifest.sha256.
    manifest_path = Path(taken["path"]) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["components"][0]["files"][0]["sha256"] = backup.sha256_file(db_file)
    manifest_path.write_text(json.dumps(manifest))
    result = run_module(ansible, "stack_restore", {"backup_dir": str(backup_dir), "mode": "drill"}, check=True)
    assert result["failed"] and "does not match its recorded sha256" in result["msg"]


def test_age_encrypted_backup_restores_only_with_the_identity(tmp_path):
    if not (TOOLS.age and AGE_KEYGEN):
        pytest.skip("age is not installed; scripts/host-deps.sh installs it")
    identity, recipient, _secret = age_key(tmp_path)
    sources = make_k3s_tree(tmp_path / "host")
    volume = tmp_path / "host/volume"
    (volume / "sub").mkdir(parents=True)
    (volume / "sub/data.txt").write_text("volume data\n")
    config = {
        "backup_dir": str(tmp_path / "backups"),
        "components": ["k3s_datastore", "k3s_token", "volumes"],
        "volumes": [str(volume)],
        "age_recipients": [recipient],
        **sources,
    }
    taken = backup.take_backup(config, TOOLS)
    files = [f["path"] for c in taken["manifest"]["components"] for f in c["files"]]
    assert files and all(f.endswith(".age") for f in files)
    assert b"/registry/k1" not in (Path(taken["path"]) / files[0]).read_bytes()

    manifest = backup.load_manifest(taken["path"])
    with pytest.raises(backup.BackupError, match="identity"):
        backup.restore(taken["path"], manifest["components"], TOOLS, target_root=str(tmp_path / "s1"))
    restored, _ = backup.restore(
        taken["path"], manifest["components"], TOOLS, target_root=str(tmp_path / "s2"), identity=str(identity)
    )
    report, problems = backup.drill(restored, TOOLS)
    assert problems == []
    assert (tmp_path / "s2/volumes/volume/sub/data.txt").read_text() == "volume data\n"
    assert next(r for r in report if r["check"] == "sqlite")["tables"]["kine"] == 200


@pytest.fixture
def small_fs(tmp_path):
    with mounted_tmpfs(tmp_path / "small", "2m") as mountpoint:
        yield mountpoint


def test_a_full_filesystem_leaves_no_backup_marked_complete(small_fs, tmp_path):
    sources = make_k3s_tree(tmp_path / "host")
    volume = tmp_path / "host/volume"
    volume.mkdir()
    # Random data does not compress: the archive needs more room than the 2 MiB filesystem has.
    (volume / "blob.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    backup_dir = small_fs / "backups"
    config = {
        "backup_dir": str(backup_dir),
        "components": ["k3s_datastore", "k3s_token", "volumes"],
        "volumes": [str(volume)],
        **sources,
    }
    with pytest.raises(backup.BackupError, match="no space left"):
        backup.take_backup(config, TOOLS)
    assert backup.list_backups(str(backup_dir)) == []
    assert [n for n in os.listdir(backup_dir) if n != ".lock"] == []

    # The same filesystem still takes a backup that fits, and only that one counts.
    (volume / "blob.bin").unlink()
    (volume / "small.txt").write_text("fits\n")
    taken = backup.take_backup(config, TOOLS)
    assert [n for n, _ in backup.list_backups(str(backup_dir))] == [taken["name"]]
