"""Pure logic behind the backup modules: names, retention, metrics, manifest checks, source planning."""

import datetime as dt
import errno
import json
import os

import pytest

from ansible_collections.odin.stack.plugins.module_utils import _backup as backup

UTC = dt.timezone.utc  # noqa: UP017 - same spelling as the module, which runs on Python 3.10 hosts


def at(text):
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("odin-20261121T031500Z", at("2026-11-21 03:15")),
        (".tmp-odin-20261121T031500Z-123", None),
        ("odin-20261121T0315Z", None),
        ("odin-latest", None),
        ("manifest.json", None),
    ],
)
def test_parse_name(name, expected):
    assert backup.parse_name(name) == expected


def test_backup_name_round_trips():
    when = at("2026-01-02 03:04")
    assert backup.backup_name(when) == "odin-20260102T030400Z"
    assert backup.parse_name(backup.backup_name(when)) == when


def series(*stamps):
    """Backups as list_backups returns them: newest first."""
    items = [(backup.backup_name(at(s)), at(s)) for s in stamps]
    return sorted(items, key=lambda item: item[1], reverse=True)


@pytest.mark.parametrize(
    ("stamps", "daily", "weekly", "kept"),
    [
        pytest.param([], 7, 4, [], id="nothing"),
        pytest.param(["2026-11-21 03:00"], 0, 0, ["2026-11-21 03:00"], id="newest-always-kept"),
        pytest.param(
            ["2026-11-21 03:00", "2026-11-21 15:00", "2026-11-20 03:00"],
            7,
            0,
            ["2026-11-21 15:00", "2026-11-20 03:00"],
            id="one-per-day-newest-of-the-day",
        ),
        pytest.param(
            ["2026-11-%02d 03:00" % d for d in range(1, 22)],
            3,
            0,
            ["2026-11-21 03:00", "2026-11-20 03:00", "2026-11-19 03:00"],
            id="three-dailies",
        ),
        pytest.param(
            # 2026-11-21 is a Saturday (ISO week 47); weeks 47, 46, 45, 44 end on Sundays 22, 15, 8, 1.
            ["2026-11-%02d 03:00" % d for d in range(1, 22)],
            2,
            3,
            ["2026-11-21 03:00", "2026-11-20 03:00", "2026-11-15 03:00", "2026-11-08 03:00"],
            id="dailies-plus-weeklies",
        ),
        pytest.param(
            ["2026-11-21 03:00", "2026-10-01 03:00", "2026-09-01 03:00"],
            1,
            2,
            ["2026-11-21 03:00", "2026-10-01 03:00"],
            id="weeklies-count-weeks-that-have-backups",
        ),
    ],
)
def test_retention(stamps, daily, weekly, kept):
    backups = series(*stamps)
    keep, delete = backup.retention(backups, daily, weekly)
    assert keep == [backup.backup_name(at(s)) for s in kept]
    assert sorted(keep + delete) == sorted(n for n, _ in backups)


def test_list_and_prune_ignore_incomplete_and_foreign_entries(tmp_path):
    for name in ("odin-20261119T030000Z", "odin-20261120T030000Z", "odin-20261121T030000Z"):
        (tmp_path / name).mkdir()
    (tmp_path / ".tmp-odin-20261122T030000Z-99").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "odin-20261118T030000Z").write_text("a file, not a backup")
    assert [n for n, _ in backup.list_backups(tmp_path)] == [
        "odin-20261121T030000Z",
        "odin-20261120T030000Z",
        "odin-20261119T030000Z",
    ]
    kept, deleted = backup.prune(tmp_path, 1, 0, dry_run=True)
    assert deleted == ["odin-20261120T030000Z", "odin-20261119T030000Z"]
    assert (tmp_path / "odin-20261119T030000Z").exists()
    backup.prune(tmp_path, 1, 0)
    assert sorted(os.listdir(tmp_path)) == [
        ".tmp-odin-20261122T030000Z-99",
        "notes",
        "odin-20261118T030000Z",
        "odin-20261121T030000Z",
    ]
    assert kept == ["odin-20261121T030000Z"]


def test_metrics_success_then_failure_keeps_last_success(tmp_path):
    backup.write_metrics(tmp_path, True, 1700000000, 12.5, 4096)
    values = backup.write_metrics(tmp_path, False, 1700086400, 0.25)
    text = (tmp_path / "odin_backup.prom").read_text()
    assert values["odin_backup_last_success_timestamp_seconds"] == 1700000000
    assert "odin_backup_last_success 0\n" in text
    assert "odin_backup_last_run_timestamp_seconds 1700086400\n" in text
    assert "odin_backup_last_size_bytes 4096\n" in text
    assert "odin_backup_last_duration_seconds 0.25\n" in text
    assert "# TYPE odin_backup_last_success gauge" in text
    assert oct((tmp_path / "odin_backup.prom").stat().st_mode & 0o777) == "0o644"
    assert os.listdir(tmp_path) == ["odin_backup.prom"]


def test_first_failure_has_no_success_timestamp(tmp_path):
    backup.write_metrics(tmp_path, False, 1700000000, 1)
    text = (tmp_path / "odin_backup.prom").read_text()
    assert "odin_backup_last_success_timestamp_seconds" not in text
    assert "odin_backup_last_success 0" in text


def write_backup(path, manifest, files):
    path.mkdir()
    for rel, data in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    (path / "manifest.json").write_text(json.dumps(manifest))
    data = (path / "manifest.json").read_bytes()
    (path / "manifest.sha256").write_text("%s  manifest.json\n" % backup.hashlib.sha256(data).hexdigest())


def entry(rel, data):
    return {
        "path": rel,
        "size": len(data),
        "sha256": backup.hashlib.sha256(data).hexdigest(),
        "kind": "file",
        "restore_to": "/x/" + rel,
    }


@pytest.mark.parametrize(
    ("manifest", "error"),
    [
        pytest.param({"format": 2, "components": []}, "format 2", id="future-format"),
        pytest.param({"format": 1}, "format 1", id="no-components"),
        pytest.param(
            {"format": 1, "components": [{"name": "k3s_token", "files": [entry("../etc/passwd", b"x")]}]},
            "outside the backup",
            id="path-escape",
        ),
    ],
)
def test_load_manifest_rejects(tmp_path, manifest, error):
    write_backup(tmp_path / "b", manifest, {})
    with pytest.raises(backup.BackupError, match=error):
        backup.load_manifest(tmp_path / "b")


def test_verify_reports_each_problem(tmp_path):
    files = {"k3s_token/token": b"secret", "k3s_config/config.yaml": b"a: 1\n", "k3s_config/registries.yaml": b"r"}
    manifest = {
        "format": 1,
        "components": [
            {"name": "k3s_token", "files": [entry("k3s_token/token", b"secret")]},
            {"name": "k3s_config", "files": [entry(k, v) for k, v in files.items() if k.startswith("k3s_config")]},
        ],
    }
    write_backup(tmp_path / "b", manifest, files)
    loaded = backup.load_manifest(tmp_path / "b")
    assert backup.verify_backup(tmp_path / "b", loaded) == []
    (tmp_path / "b/k3s_token/token").write_bytes(b"SECRET")
    (tmp_path / "b/k3s_config/config.yaml").write_bytes(b"a: 12\n")
    (tmp_path / "b/k3s_config/registries.yaml").unlink()
    problems = backup.verify_backup(tmp_path / "b", loaded)
    assert problems[0].startswith("k3s_token/token: sha256")
    assert problems[1] == "k3s_config/config.yaml: size 6, manifest says 5"
    assert problems[2] == "k3s_config/registries.yaml: missing"


def test_resolve_backup(tmp_path):
    with pytest.raises(backup.BackupError, match="No complete backup"):
        backup.resolve_backup(tmp_path, "latest")
    (tmp_path / "odin-20261120T030000Z").mkdir()
    (tmp_path / "odin-20261121T030000Z").mkdir()
    (tmp_path / ".tmp-odin-20261122T030000Z-1").mkdir()
    assert backup.resolve_backup(tmp_path, "latest") == str(tmp_path / "odin-20261121T030000Z")
    assert backup.resolve_backup(tmp_path, "odin-20261120T030000Z") == str(tmp_path / "odin-20261120T030000Z")
    with pytest.raises(backup.BackupError, match="incomplete"):
        backup.resolve_backup(tmp_path, ".tmp-odin-20261122T030000Z-1")


def test_plan_sources_reports_missing_and_resolves_globs(tmp_path):
    storage = tmp_path / "storage"
    (storage / "pvc-1234_monitoring_prometheus-k-db-prometheus-k-0/prometheus-db").mkdir(parents=True)
    (storage / "pvc-5678_monitoring_kube-grafana").mkdir(parents=True)
    (storage / "pvc-5678_monitoring_kube-grafana/grafana.db").write_bytes(b"")
    (storage / "pvc-9_other_a").mkdir()
    (storage / "pvc-9_other_b").mkdir()
    present, missing = backup.plan_sources(
        {
            "components": ["k3s_datastore", "prometheus", "grafana", "volumes"],
            "k3s_datastore": str(tmp_path / "none/state.db"),
            "prometheus_data_dir": str(storage / "pvc-*_monitoring_prometheus-*/prometheus-db"),
            "grafana_db": str(storage / "pvc-*_monitoring_*grafana*/grafana.db"),
            "volumes": [str(storage / "pvc-9_other_a"), str(tmp_path / "gone")],
        }
    )
    assert present["prometheus"].endswith("prometheus-k-db-prometheus-k-0/prometheus-db")
    assert present["grafana"].endswith("kube-grafana/grafana.db")
    assert present["volumes"] == [str(storage / "pvc-9_other_a")]
    assert [(m["component"], m["reason"]) for m in missing] == [
        ("k3s_datastore", "file not found"),
        ("volumes", "directory not found"),
    ]
    _present, missing = backup.plan_sources(
        {"components": ["prometheus"], "prometheus_data_dir": str(storage / "pvc-9_other_*")}
    )
    assert "2 paths match" in missing[0]["reason"]


def test_unknown_component_is_an_error():
    with pytest.raises(backup.BackupError, match="Unknown backup component 'etcd'"):
        backup.plan_sources({"components": ["etcd"]})


def test_nothing_to_back_up_fails_before_writing(tmp_path):
    config = {"backup_dir": str(tmp_path / "b"), "components": ["k3s_token"], "k3s_token": str(tmp_path / "no")}
    # The token is required by default: a backup without it cannot rebuild the cluster.
    with pytest.raises(backup.BackupError, match="Required backup components"):
        backup.take_backup(config, backup.Tools())
    config["required_components"] = []
    with pytest.raises(backup.BackupError, match="Nothing to back up"):
        backup.take_backup(config, backup.Tools())
    assert not (tmp_path / "b").exists()


def test_restored_file_keeps_the_replaced_files_owner_and_mode(tmp_path):
    src = tmp_path / "grafana.db"
    src.write_bytes(b"restored")
    live = tmp_path / "live/grafana.db"
    live.parent.mkdir()
    live.write_bytes(b"old")
    live.chmod(0o640)
    # Grafana's user in its image; only root can hand a file to another user.
    owner = (472, 472) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    os.chown(live, *owner)
    aside = backup._restore_file(str(src), str(live), "sqlite", "20261121T030000Z")
    assert live.read_bytes() == b"restored"
    assert oct(live.stat().st_mode & 0o777) == "0o640"
    assert (live.stat().st_uid, live.stat().st_gid) == owner
    assert aside == [str(live) + ".pre-restore-20261121T030000Z"]
    new = tmp_path / "new/grafana.db"
    backup._restore_file(str(src), str(new), "sqlite", "20261121T030000Z")
    assert oct(new.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("path", "name"),
    [("/var/lib/data", "volume-var_lib_data"), ("/srv/a b/", "volume-srv_a_b"), ("/", "volume-root")],
)
def test_volume_file_name(path, name):
    assert backup._volume_file_name(path) == name


@pytest.mark.parametrize(
    ("component", "restore_to", "allowed"),
    [
        ("k3s_datastore", "/var/lib/rancher/k3s/server/db/state.db", True),
        ("k3s_datastore", "/var/lib/rancher/k3s/server/db/other.db", False),
        ("k3s_config", "/etc/rancher/k3s/registries.yaml", True),
        ("k3s_config", "/etc/rancher/k3s/../../shadow", False),
        ("grafana", "/var/lib/rancher/k3s/storage/pvc-1a_monitoring_kps-grafana/grafana.db", True),
        # A * stands for one path segment, never several.
        ("grafana", "/var/lib/rancher/k3s/storage/pvc-1/etc/x_monitoring_grafana/grafana.db", False),
        ("prometheus", "/var/lib/rancher/k3s/storage/pvc-2_monitoring_prometheus-db/prometheus-db", True),
        ("volumes", "/srv/data", False),
        ("k3s_token", "relative/token", False),
    ],
)
def test_confine_restore(component, restore_to, allowed):
    components = [{"name": component, "files": [{"path": "%s/f" % component, "restore_to": restore_to}]}]
    problems = backup.confine_restore(components, {})
    assert (problems == []) is allowed, problems
    # A destination the caller maps explicitly is the caller's choice.
    assert backup.confine_restore(components, {}, {component: {restore_to: "/srv/restored/x"}}) == []


@pytest.mark.parametrize(
    ("exc", "full"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
        (backup.BackupError("age exited 1: age: error: write /b/x.age: no space left on device"), True),
        (backup.BackupError("The copy failed: database or disk is full"), True),
        (OSError(errno.EACCES, "Permission denied"), False),
        (backup.BackupError("Prometheus snapshot failed: HTTP 500"), False),
    ],
)
def test_is_disk_full(exc, full):
    assert backup.is_disk_full(exc) is full


@pytest.mark.parametrize(
    ("owner", "parsed"),
    [
        ({"uid": 472, "gid": 472, "mode": "0640"}, (472, 472, 0o640)),
        ({"uid": 0, "gid": 0, "mode": "4755"}, (0, 0, 0o755)),  # set-id bits are never restored
        ({"uid": 0, "gid": 0, "mode": "2750"}, (0, 0, 0o750)),
        ({"uid": -1, "gid": 0, "mode": "0600"}, None),
        ({"uid": "0", "gid": 0, "mode": "0600"}, None),
        ({"uid": 0, "gid": 0, "mode": "rwx"}, None),
        (None, None),
    ],
)
def test_parse_owner(owner, parsed):
    assert backup._parse_owner(owner) == parsed
