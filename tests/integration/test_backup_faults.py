"""Faults injected for real into backups, restores and the reset guard.

Damaged, hand-made and forged backups; age filling a tmpfs; kill -9 of the backup program
(the same files the backup role installs) at each step; a Prometheus snapshot left by a
killed run; owners lost with the destination. Every test checks the file system afterwards.
"""

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from backup_helpers import AGE_KEYGEN, TOOLS, age_key, http_json, make_k3s_tree, mounted_tmpfs, run_module
from conftest import REPO, run_test_playbook

from ansible_collections.odin.stack.plugins.module_utils import _backup as backup

AGE = shutil.which("age")
needs_age = pytest.mark.skipif(
    not (AGE and AGE_KEYGEN), reason="age is not installed; scripts/host-deps.sh installs it"
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving files other owners needs root")
NOW = backup.utcnow()


def rehash(path, manifest):
    """Rewrite a manifest and a manifest.sha256 that agree with it, as a forger would."""
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    Path(path, "manifest.json").write_bytes(data)
    Path(path, "manifest.sha256").write_text("%s  manifest.json\n" % hashlib.sha256(data).hexdigest())


def manifest_of(path):
    return json.loads(Path(path, "manifest.json").read_text())


def entry_of(manifest, component):
    return next(c for c in manifest["components"] if c["name"] == component)["files"][0]


def take(tmp_path, when=NOW, key=None, backup_dir=None):
    sources = make_k3s_tree(tmp_path / ("host-%s" % when.strftime("%H%M%S%f")))
    config = {"backup_dir": str(backup_dir or tmp_path / "backups"), "components": ["k3s_datastore", "k3s_token"]}
    if key:
        config["signing_key"] = str(key)
    return backup.take_backup({**config, **sources}, TOOLS, now=when)


def signing_key(path):
    backup.create_signing_key(str(path))
    return path


# ---------------------------------------------------------------------------- damage


def flip_datastore_byte(path, _tmp):
    db_file = Path(path, "k3s_datastore/state.db")
    data = bytearray(db_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    db_file.write_bytes(bytes(data))


def delete_datastore_and_token(path, _tmp):
    shutil.rmtree(Path(path, "k3s_datastore"))
    shutil.rmtree(Path(path, "k3s_token"))


def drop_datastore_and_token_from_manifest(path, _tmp):
    manifest = manifest_of(path)
    manifest["components"] = []
    rehash(path, manifest)


def wrong_manifest_sum(path, _tmp):
    Path(path, "manifest.sha256").write_text("0" * 64 + "  manifest.json\n")


def missing_manifest_sum(path, _tmp):
    Path(path, "manifest.sha256").unlink()


def hand_made(path, _tmp):
    shutil.rmtree(path)
    Path(path).mkdir()
    created = NOW.isoformat().replace("+00:00", "Z")
    Path(path, "manifest.json").write_text(json.dumps({"format": 1, "created": created, "components": []}))


def hand_made_with_sum(path, tmp):
    hand_made(path, tmp)
    rehash(path, manifest_of(path))


def datastore_not_a_database(path, _tmp):
    db_file = Path(path, "k3s_datastore/state.db")
    db_file.write_bytes(os.urandom(db_file.stat().st_size))
    manifest = manifest_of(path)
    entry_of(manifest, "k3s_datastore")["sha256"] = backup.sha256_file(db_file)
    rehash(path, manifest)


def empty_token(path, _tmp):
    token = Path(path, "k3s_token/token")
    token.write_bytes(b"")
    manifest = manifest_of(path)
    entry_of(manifest, "k3s_token").update(size=0, sha256=backup.sha256_file(token))
    rehash(path, manifest)


def created_edited_to_now(path, _tmp):
    manifest = manifest_of(path)
    manifest["created"] = NOW.isoformat().replace("+00:00", "Z")
    rehash(path, manifest)


def forged_with_another_key(path, tmp):
    other = backup.read_signing_key(str(signing_key(tmp / "other.key")))
    manifest_data = Path(path, "manifest.json").read_bytes()
    Path(path, "manifest.sig").write_text(backup._signature(other, manifest_data))


DAMAGE = [
    # (id, how the backup was taken, damage, signing key given to the check, expected reason)
    ("flipped-byte-in-state-db", {}, flip_datastore_byte, False, "k3s_datastore/state.db: sha256"),
    ("datastore-and-token-deleted", {}, delete_datastore_and_token, False, "k3s_datastore/state.db: missing"),
    ("datastore-and-token-left-out", {}, drop_datastore_and_token_from_manifest, False, "k3s_datastore: not in"),
    ("wrong-manifest-sha256", {}, wrong_manifest_sum, False, "does not match its recorded sha256"),
    ("missing-manifest-sha256", {}, missing_manifest_sum, False, "has no manifest.sha256"),
    ("hand-made-manifest", {}, hand_made, False, "has no manifest.sha256"),
    ("hand-made-manifest-and-sum", {}, hand_made_with_sum, False, "k3s_datastore: not in the backup"),
    ("datastore-not-a-database", {}, datastore_not_a_database, False, "integrity_check"),
    ("empty-token", {}, empty_token, False, "k3s_token/token: empty"),
    ("48h-old-created-edited", {"hours": -48}, created_edited_to_now, False, "it was edited"),
    ("48h-old", {"hours": -48}, None, False, "hours old"),
    ("created-in-the-future", {"hours": 2}, None, False, "in the future"),
    ("unsigned-with-key-set", {}, None, True, "no manifest.sig"),
    ("signed-with-another-key", {"signed": True}, forged_with_another_key, True, "does not match the signing key"),
]


@pytest.mark.parametrize(
    ("taken_as", "damage", "with_key", "reason"), [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE]
)
def test_trust_refuses_a_damaged_or_forged_backup(tmp_path, taken_as, damage, with_key, reason):
    key_file = signing_key(tmp_path / "signing.key")
    key = backup.read_signing_key(str(key_file))
    when = NOW + dt.timedelta(hours=taken_as.get("hours", 0))
    taken = take(tmp_path, when=when, key=key_file if taken_as.get("signed") else None)
    good = backup.trusted_backup(str(tmp_path / "backups"), max_age_hours=24, now=NOW)
    assert good["trusted"] is (taken_as.get("hours", 0) == 0), good
    if damage:
        damage(taken["path"], tmp_path)
    found = backup.trusted_backup(str(tmp_path / "backups"), max_age_hours=24, key=key if with_key else None, now=NOW)
    assert found["trusted"] is False, found
    [[name, why]] = found["rejected"]
    assert name == taken["name"] and reason in why, why


def test_a_signed_backup_is_trusted_with_its_key_and_the_newest_good_one_is_used(tmp_path):
    key_file = signing_key(tmp_path / "signing.key")
    older = take(tmp_path, when=NOW - dt.timedelta(hours=2), key=key_file)
    newer = take(tmp_path, when=NOW - dt.timedelta(hours=1), key=key_file)
    key = backup.read_signing_key(str(key_file))
    assert backup.trusted_backup(str(tmp_path / "backups"), key=key, now=NOW)["name"] == newer["name"]
    flip_datastore_byte(newer["path"], tmp_path)
    found = backup.trusted_backup(str(tmp_path / "backups"), max_age_hours=24, key=key, now=NOW)
    assert found["trusted"] and found["name"] == older["name"] and found["age_hours"] == 2.0
    assert [name for name, _ in found["rejected"]] == [newer["name"]]


@pytest.mark.parametrize(
    ("content", "mode", "reason"),
    [("k" * 64, 0o644, "readable by others"), ("short", 0o600, "at least 32")],
    ids=["world-readable", "too-short"],
)
def test_a_weak_signing_key_is_refused(tmp_path, content, mode, reason):
    key = tmp_path / "key"
    key.write_text(content)
    key.chmod(mode)
    with pytest.raises(backup.BackupError, match=reason) as refused:
        backup.read_signing_key(str(key))
    assert content not in str(refused.value)


def test_the_reset_guard_refuses_every_damaged_backup(tmp_path):
    """The k3s role's reset guard, run by Ansible, against one backup directory per case."""
    key_file = signing_key(tmp_path / "signing.key")
    cases = []
    for case_id, taken_as, damage, with_key, reason in [
        ("good", {}, None, False, None),
        ("good-signed", {"signed": True}, None, True, None),
        *DAMAGE,
    ]:
        case_dir = tmp_path / case_id
        when = NOW + dt.timedelta(hours=taken_as.get("hours", 0))
        taken = take(case_dir, when=when, key=key_file if taken_as.get("signed") else None, backup_dir=case_dir / "b")
        if damage:
            damage(taken["path"], case_dir)
        case = {"name": case_id, "dir": str(case_dir / "b"), "reason": reason}
        if with_key:
            case["key"] = str(key_file)
        cases.append(case)
    # A directory holding only a partial run, and an empty one.
    partial_dir = tmp_path / "partial/b"
    taken = take(tmp_path / "partial", backup_dir=partial_dir)
    os.rename(taken["path"], partial_dir / ("partial-" + taken["name"]))
    (tmp_path / "empty").mkdir()
    cases += [
        {"name": "only-a-partial-run", "dir": str(partial_dir), "reason": "there is no complete backup"},
        {"name": "no-backup", "dir": str(tmp_path / "empty"), "reason": "there is no complete backup"},
    ]
    report = tmp_path / "report.json"
    result = run_test_playbook(
        "reset_guard_cases.yml", {"_cases": cases, "_report": str(report)}, tmp_path / "vars.json"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    outcome = {r["name"]: r for r in json.loads(report.read_text())}
    assert len(outcome) == len(cases)
    for case in cases:
        said = outcome[case["name"]]
        if case["reason"] is None:
            assert said["passed"], said
            continue
        assert not said["passed"], said
        assert "Refusing to uninstall K3s" in said["msg"] and "k3s_reset_force: true" in said["msg"], said
        assert case["reason"] in said["msg"], said
    for case in cases:
        # Nothing the guard looked at was changed or removed.
        assert Path(case["dir"]).is_dir()


# ---------------------------------------------------------------------------- partial backups


@needs_age
def test_age_filling_the_disk_leaves_no_backup_of_any_name(tmp_path):
    _identity, recipient, _secret = age_key(tmp_path)
    sources = make_k3s_tree(tmp_path / "host")
    # An optional Grafana database that fits on the disk once, but not a second time as age's output.
    grafana = tmp_path / "host/grafana.db"
    conn = sqlite3.connect(grafana)
    conn.execute("CREATE TABLE blob (data BLOB)")
    conn.execute("INSERT INTO blob VALUES (?)", (os.urandom(1200 * 1024),))
    conn.commit()
    conn.close()
    with mounted_tmpfs(tmp_path / "small", "2m") as small:
        backup_dir = small / "backups"
        config = {
            "backup_dir": str(backup_dir),
            "components": ["k3s_datastore", "k3s_token", "grafana"],
            "grafana_db": str(grafana),
            "age_recipients": [recipient],
            "required_components": [],
            **sources,
        }
        with pytest.raises(backup.BackupError, match="(?i)no space left") as failure:
            backup.take_backup(config, TOOLS)
        assert "grafana" in str(failure.value)
        assert sorted(os.listdir(backup_dir)) == [".lock"]
        # Room again: the same settings give a complete backup, the only one there.
        config["components"] = ["k3s_datastore", "k3s_token"]
        taken = backup.take_backup(config, TOOLS)
        assert [n for n, _ in backup.list_backups(str(backup_dir))] == [taken["name"]]
        assert sorted(os.listdir(backup_dir)) == [".lock", taken["name"]]


def test_prune_keeps_only_a_partial_run_newer_than_every_backup(tmp_path):
    names = {
        "odin-20261120T031500Z": True,
        "partial-odin-20261119T031500Z": False,
        "partial-odin-20261121T031500Z": False,
        "partial-odin-20261122T031500Z": True,
    }
    for name in names:
        (tmp_path / name).mkdir()
    kept, deleted = backup.prune(str(tmp_path), keep_daily=7, keep_weekly=4)
    assert kept == ["odin-20261120T031500Z"]
    assert sorted(deleted) == ["partial-odin-20261119T031500Z", "partial-odin-20261121T031500Z"]
    assert sorted(os.listdir(tmp_path)) == sorted(n for n, keep in names.items() if keep)


_PRUNE_KILLED_MIDWAY = """
import os, shutil, signal, sys
sys.path.insert(0, sys.argv[2])
from ansible_collections.odin.stack.plugins.module_utils import _backup as backup
real_unlink = os.unlink
def unlink_then_die(path, *args, **kwargs):
    real_unlink(path, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
os.unlink = unlink_then_die
backup.prune(sys.argv[1], keep_daily=7, keep_weekly=4)
"""


def test_kill_9_while_retention_deletes_leaves_no_backup_with_missing_files(tmp_path):
    """Retention deleting the older backup of a day is killed after its first file is gone."""
    backups = tmp_path / "backups"
    day = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    older = take(tmp_path, when=day + dt.timedelta(seconds=1), backup_dir=backups)
    newer = take(tmp_path, when=day + dt.timedelta(seconds=2), backup_dir=backups)
    proc = subprocess.run(
        [sys.executable, "-c", _PRUNE_KILLED_MIDWAY, str(backups), str(REPO / "collections")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # The older backup lost its name before a file went; the newer one is whole.
    assert [name for name, _created in backup.list_backups(str(backups))] == [os.path.basename(newer["path"])]
    for name, _created in backup.list_backups(str(backups)):
        path = os.path.join(str(backups), name)
        assert backup.trust_problems(path, backup.load_manifest(path), ["k3s_datastore", "k3s_token"]) == []
    leftovers = [n for n in os.listdir(backups) if n.startswith(backup.TMP_PREFIX)]
    assert leftovers == [backup.TMP_PREFIX + "prune-" + os.path.basename(older["path"])]
    # The next run's clean-up removes what the killed one left.
    assert backup.remove_stale_tmp(str(backups)) == leftovers
    assert sorted(os.listdir(backups)) == sorted(n for n in os.listdir(backups) if not n.startswith(backup.TMP_PREFIX))


# ---------------------------------------------------------------------------- ownership and confinement


@needs_root
def test_restore_gives_back_owner_and_mode_where_nothing_is_left(ansible, tmp_path):
    sources = make_k3s_tree(tmp_path / "host")
    grafana = tmp_path / "host/grafana/grafana.db"
    grafana.parent.mkdir()
    sqlite3.connect(grafana).execute("CREATE TABLE dashboard (id INTEGER)").connection.commit()
    os.chown(grafana, 472, 472)
    grafana.chmod(0o640)
    volume = tmp_path / "host/volume"
    (volume / "sub").mkdir(parents=True)
    (volume / "sub/data.txt").write_text("volume data\n")
    os.chown(volume / "sub/data.txt", 1000, 1000)
    os.chown(volume, 65534, 65534)
    volume.chmod(0o750)
    args = {
        "backup_dir": str(tmp_path / "backups"),
        "components": ["k3s_datastore", "k3s_token", "grafana", "volumes"],
        "grafana_db": str(grafana),
        "volumes": [str(volume)],
        **sources,
    }
    taken = run_module(ansible, "stack_backup", args)
    assert taken["changed"] and not taken.get("failed"), taken.get("msg")
    assert entry_of(taken["manifest"], "grafana")["owner"] == {"uid": 472, "gid": 472, "mode": "0640"}

    # After a reset: the database and the volume are gone.
    grafana.unlink()
    shutil.rmtree(volume)
    restore_args = {
        "backup_dir": args["backup_dir"],
        "components": ["grafana", "volumes"],
        "manage_k3s": False,
        "grafana_db": str(grafana),
        "volumes": [str(volume)],
    }
    restored = run_module(ansible, "stack_restore", restore_args)
    assert restored["changed"] and not restored.get("failed"), restored.get("msg")
    st = grafana.stat()
    assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o7777)) == (472, 472, "0o640")
    st = volume.stat()
    assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o7777)) == (65534, 65534, "0o750")
    assert (volume / "sub/data.txt").stat().st_uid == 1000
    assert not list(tmp_path.rglob("*.restore-tmp"))
    assert [n for n in os.listdir(args["backup_dir"]) if n.startswith(".tmp-")] == []


@pytest.mark.parametrize(
    "restore_to",
    ["{tmp}/etc/cron.d/evil", "{tmp}/host/var/lib/rancher/k3s/server/../../../../../etc/token"],
    ids=["elsewhere", "dot-dot"],
)
def test_a_manifest_naming_another_destination_is_refused(ansible, tmp_path, restore_to):
    sources = make_k3s_tree(tmp_path / "host")
    taken = backup.take_backup({"backup_dir": str(tmp_path / "backups"), **sources}, TOOLS)
    manifest = manifest_of(taken["path"])
    target = restore_to.format(tmp=tmp_path)
    entry_of(manifest, "k3s_token")["restore_to"] = target
    rehash(taken["path"], manifest)
    before = {p: p.read_bytes() for p in (tmp_path / "host").rglob("*") if p.is_file()}
    for check in (True, False):
        result = run_module(
            ansible, "stack_restore", {"backup_dir": str(tmp_path / "backups"), "manage_k3s": False, **sources}, check
        )
        assert result["failed"] and "outside what this collection backs up" in result["msg"], result.get("msg")
        assert target in result["msg"]
    assert not Path(os.path.normpath(target)).exists()
    assert {p: p.read_bytes() for p in (tmp_path / "host").rglob("*") if p.is_file()} == before


def test_a_signed_backup_restores_only_with_its_key(ansible, tmp_path):
    sources = make_k3s_tree(tmp_path / "host")
    key = signing_key(tmp_path / "signing.key")
    args = {"backup_dir": str(tmp_path / "backups"), "components": ["k3s_datastore", "k3s_token"], **sources}
    taken = run_module(ansible, "stack_backup", {**args, "signing_key": str(key)})
    assert taken["changed"] and Path(taken["path"], "manifest.sig").is_file(), taken.get("msg")
    assert key.read_text().strip() not in json.dumps(taken)
    restore_args = {"backup_dir": args["backup_dir"], "manage_k3s": False, "signing_key": str(key), **sources}
    assert not run_module(ansible, "stack_restore", restore_args, check=True).get("failed")
    # Re-written by someone without the key: consistent checksums, no valid signature.
    rehash(taken["path"], {**manifest_of(taken["path"]), "host": "forged"})
    refused = run_module(ansible, "stack_restore", restore_args, check=True)
    assert refused["failed"] and "does not match the signing key" in refused["msg"]
    verified = run_module(ansible, "stack_restore", {**restore_args, "mode": "verify"})
    assert verified["failed"] and verified["trusted"] is False and "does not match the signing key" in verified["msg"]


# ---------------------------------------------------------------------------- kill -9


def install_backup_program(tmp_path):
    """The backup program as the backup role installs it: odin-backup beside _backup.py."""
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(REPO / "plugins/module_utils/_backup.py", lib / "_backup.py")
    shutil.copy(REPO / "roles/backup/files/odin-backup", lib / "odin-backup")
    return lib


def tool_that_hangs(bin_dir, name, when, marker):
    """A wrapper for tool `name` that, when its arguments contain `when`, signals `marker` and hangs
    (before doing anything, or with `when` prefixed by 'after:' once the real tool has run)."""
    real = shutil.which(name)
    bin_dir.mkdir(exist_ok=True)
    after = when.startswith("after:")
    word = when.removeprefix("after:")
    script = bin_dir / name
    script.write_text(
        "#!/bin/sh\n"
        'case " $* " in\n'
        '  *" %s "*)\n'
        % word
        + ('    "%s" "$@" || exit $?\n' % real if after else "")
        + '    echo $$ > "%s"; exec sleep 300 ;;\n' % marker
        + "esac\n"
        + 'exec "%s" "$@"\n' % real
    )
    script.chmod(0o755)


def start_and_kill(argv, marker, env=None, timeout=60):
    """Start argv in its own process group, wait for marker to appear, then kill -9 the whole group."""
    proc = subprocess.Popen(
        argv, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + timeout
    while not Path(marker).exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.stdout.read() if proc.poll() is not None else ""
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("the step to kill was never reached: %s" % out)
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    Path(marker).unlink()
    return proc.pid


def backup_config(tmp_path, sources, **extra):
    textfile = tmp_path / "textfile"
    textfile.mkdir(exist_ok=True)
    config = {
        "backup_dir": str(tmp_path / "backups"),
        "textfile_dir": str(textfile),
        "components": ["k3s_datastore", "k3s_token"],
        "required_components": ["k3s_datastore", "k3s_token"],
        "keep_daily": 7,
        "keep_weekly": 4,
        **sources,
        **extra,
    }
    path = tmp_path / "backup.json"
    path.write_text(json.dumps(config))
    return path, config


def run_backup_program(lib, config_path, env=None):
    proc = subprocess.run(
        [sys.executable, str(lib / "odin-backup"), "--config", str(config_path)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return proc


def entries(directory):
    return sorted(os.listdir(directory))


def plaintext_files(root, needle):
    """Files under root whose bytes contain needle (plaintext that should not be there)."""
    return [p for p in Path(root).rglob("*") if p.is_file() and needle in p.read_bytes()]


@needs_age
def test_a_killed_encryption_leaves_no_plaintext_after_the_next_run(tmp_path):
    lib = install_backup_program(tmp_path)
    identity, recipient, _secret = age_key(tmp_path)
    sources = make_k3s_tree(tmp_path / "host")
    config_path, config = backup_config(tmp_path, sources, age_recipients=[recipient])
    marker = tmp_path / "reached"
    tool_that_hangs(tmp_path / "bin", "age", "--encrypt", marker)
    env = {**os.environ, "PATH": "%s:%s" % (tmp_path / "bin", os.environ["PATH"])}
    start_and_kill([sys.executable, str(lib / "odin-backup"), "--config", str(config_path)], marker, env)

    # What the kill left: the plaintext copy, private, in a work directory nothing counts.
    [work] = [n for n in entries(config["backup_dir"]) if n.startswith(".tmp-")]
    plain = Path(config["backup_dir"], work, "k3s_datastore/state.db")
    assert plain.is_file() and plain.stat().st_mode & 0o077 == 0
    assert Path(config["backup_dir"], work).stat().st_mode & 0o777 == 0o700
    assert backup.list_backups(config["backup_dir"]) == []

    done = run_backup_program(lib, config_path)
    assert done.returncode == 0, done.stdout + done.stderr
    [name] = [n for n, _ in backup.list_backups(config["backup_dir"])]
    assert entries(config["backup_dir"]) == [".lock", name]
    assert plaintext_files(config["backup_dir"], b"/registry/k1") == []


@needs_age
def test_a_killed_encrypted_restore_leaves_no_plaintext_after_the_next_run(tmp_path):
    lib = install_backup_program(tmp_path)
    identity, recipient, _secret = age_key(tmp_path)
    sources = make_k3s_tree(tmp_path / "host")
    config_path, config = backup_config(tmp_path, sources, age_recipients=[recipient])
    assert run_backup_program(lib, config_path).returncode == 0
    marker = tmp_path / "reached"
    tool_that_hangs(tmp_path / "bin", "age", "after:--decrypt", marker)
    restore_code = (
        "import sys; sys.path.insert(0, %r); import _backup as b, shutil; "
        "p = b.resolve_backup(%r, 'latest'); m = b.load_manifest(p); "
        "t = b.Tools(tar=shutil.which('tar'), zstd=shutil.which('zstd'), age=shutil.which('age')); "
        "b.restore(p, m['components'], t, identity=%r)" % (str(lib), config["backup_dir"], str(identity))
    )
    env = {**os.environ, "PATH": "%s:%s" % (tmp_path / "bin", os.environ["PATH"])}
    for next_run in ("backup", "restore"):
        pid = start_and_kill([sys.executable, "-c", restore_code], marker, env)
        work = Path(config["backup_dir"], ".tmp-restore-%d" % pid)
        [plain] = plaintext_files(work, b"/registry/k1")
        assert work.stat().st_mode & 0o777 == 0o700 and plain.stat().st_mode & 0o077 == 0
        if next_run == "backup":
            time.sleep(1.01)  # one backup name per second
            assert run_backup_program(lib, config_path).returncode == 0
        else:
            subprocess.run([sys.executable, "-c", restore_code], check=True, capture_output=True)
        assert not work.exists()
        assert [n for n in entries(config["backup_dir"]) if n.startswith(".tmp-")] == []
        assert plaintext_files(config["backup_dir"], b"/registry/k1") == []
    assert backup.sqlite_check(sources["k3s_datastore"])["tables"]["kine"] == 200


def test_kill_9_at_any_moment_of_a_backup_or_restore_loses_nothing(tmp_path):
    lib = install_backup_program(tmp_path)
    sources = make_k3s_tree(tmp_path / "host")
    volume = tmp_path / "host/volume"
    volume.mkdir()
    for index in range(40):
        (volume / ("part-%02d.bin" % index)).write_bytes(os.urandom(512 * 1024))
    config_path, config = backup_config(tmp_path, sources, components=["k3s_datastore", "k3s_token", "volumes"])
    config["volumes"] = [str(volume)]
    config_path.write_text(json.dumps(config))
    argv = [sys.executable, str(lib / "odin-backup"), "--config", str(config_path)]
    started = time.monotonic()
    assert run_backup_program(lib, config_path).returncode == 0
    full_run = time.monotonic() - started
    killed_at = []
    for step in range(8):
        delay = full_run * step / 8
        proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at.append((round(delay, 3), any(n.startswith(".tmp-") for n in entries(config["backup_dir"]))))
        # Whatever carries a complete backup's name verifies in full.
        for name, _ in backup.list_backups(config["backup_dir"]):
            path = os.path.join(config["backup_dir"], name)
            assert backup.trust_problems(path, backup.load_manifest(path), backup.CLUSTER_COMPONENTS) == [], name
        time.sleep(1.01)  # one backup name per second
    # At least one kill landed while a backup was being written.
    assert any(leftover for _, leftover in killed_at), killed_at

    # Restores killed at any moment: each destination is the old file, the restored one, or
    # moved aside beside it; never gone.
    restore_code = (
        "import sys; sys.path.insert(0, %r); import _backup as b, shutil; "
        "p = b.resolve_backup(%r, 'latest'); m = b.load_manifest(p); "
        "t = b.Tools(tar=shutil.which('tar'), zstd=shutil.which('zstd')); "
        "b.restore(p, m['components'], t)" % (str(lib), config["backup_dir"])
    )
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", restore_code], check=True)
    full_restore = time.monotonic() - started
    destinations = [sources["k3s_datastore"], sources["k3s_token"], str(volume)]
    for step in range(8):
        proc = subprocess.Popen([sys.executable, "-c", restore_code], start_new_session=True)
        time.sleep(full_restore * step / 8)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for dest in destinations:
            parent = Path(dest).parent
            assert Path(dest).exists() or any(parent.glob(Path(dest).name + ".pre-restore-*")), dest

    # A restore run to the end puts everything back and clears what the killed ones left.
    subprocess.run([sys.executable, "-c", restore_code], check=True)
    assert list((tmp_path / "host").rglob("*" + backup.RESTORE_TMP)) == []
    assert backup.sqlite_check(sources["k3s_datastore"])["tables"]["kine"] == 200
    done = run_backup_program(lib, config_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [n for n in entries(config["backup_dir"]) if n.startswith(".tmp-")] == []
    assert list((tmp_path / "host").rglob("*" + backup.RESTORE_TMP)) == []
    newest = os.path.join(config["backup_dir"], backup.list_backups(config["backup_dir"])[0][0])
    assert backup.trust_problems(newest, backup.load_manifest(newest), backup.CLUSTER_COMPONENTS) == []
    assert sorted(os.listdir(volume)) == ["part-%02d.bin" % i for i in range(40)]


def test_a_snapshot_left_by_a_killed_backup_is_removed_by_the_next_run(prometheus, tmp_path):
    lib = install_backup_program(tmp_path)
    sources = make_k3s_tree(tmp_path / "host")
    time.sleep(2)  # a few samples in the head block
    # A snapshot someone else made: it is not the backup's to remove.
    theirs = http_json(prometheus.url + "/api/v1/admin/tsdb/snapshot", data=b"")["data"]["name"]
    config_path, config = backup_config(
        tmp_path,
        sources,
        components=["k3s_datastore", "k3s_token", "prometheus"],
        prometheus_url=prometheus.url,
        prometheus_data_dir=str(prometheus.data_dir),
    )
    marker = tmp_path / "reached"
    tool_that_hangs(tmp_path / "bin", "tar", "--create", marker)
    env = {**os.environ, "PATH": "%s:%s" % (tmp_path / "bin", os.environ["PATH"])}
    start_and_kill([sys.executable, str(lib / "odin-backup"), "--config", str(config_path)], marker, env)
    snapshots = prometheus.data_dir / "snapshots"
    leaked = sorted(set(os.listdir(snapshots)) - {theirs})
    assert len(leaked) == 1, os.listdir(snapshots)
    assert json.loads(Path(config["backup_dir"], backup.SNAPSHOT_LEDGER).read_text()) == leaked

    done = run_backup_program(lib, config_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert os.listdir(snapshots) == [theirs]
    [name] = [n for n, _ in backup.list_backups(config["backup_dir"])]
    assert entries(config["backup_dir"]) == [".lock", name]
