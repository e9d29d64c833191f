# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Backups of an ODIN host: take, verify, prune, restore, and report them as metrics.

Plain Python 3 standard library and no Ansible imports: the modules stack_backup and
stack_restore call it, the backup role's systemd service runs it through a small command
line wrapper (the same file copied to the host), and pytest tests it against real SQLite
databases, a real Prometheus and real filesystems.

Layout of one backup (the shared convention)::

    <backup_dir>/odin-<YYYYmmddTHHMMSSZ>/      0700, complete and synced
        manifest.json                          {"format": 1, "created": ..., "components": [...]}
        manifest.sha256                        sha256 of manifest.json
        <component>/<file>                     0600, each listed in the manifest with size and sha256
        manifest.sig                           HMAC-SHA256 of manifest.json, when a signing key is set
    <backup_dir>/partial-odin-<time>/          a run where a component failed; never counts as a backup
    <backup_dir>/.tmp-*                        a backup being written or a restore's work directory;
                                               never counts, removed by the next run

Streaming steps (tar | zstd | age) run as subprocesses with argument lists because their
output is hashed and written as it flows; nothing goes through a shell.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import fnmatch
import glob
import hashlib
import hmac
import json
import os
import queue
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

FORMAT = 1
NAME_PREFIX = "odin-"
PARTIAL_PREFIX = "partial-"
TMP_PREFIX = ".tmp-"
NAME_RE = re.compile(r"^odin-(\d{8}T\d{6}Z)$")
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"
SIGNATURE = "manifest.sig"
LOCK = ".lock"
# Prometheus snapshots this collection asked for and has not removed yet (names only).
SNAPSHOT_LEDGER = ".prometheus-snapshots.json"
SNAPSHOT_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{16}$")
# Suffix of what a restore writes next to a destination before renaming it into place.
RESTORE_TMP = ".restore-tmp"
CHUNK = 1 << 20
ENV = {**os.environ, "LC_ALL": "C", "LANG": "C"}

COMPONENTS = ("k3s_datastore", "k3s_token", "k3s_config", "prometheus", "grafana", "volumes")
# Restoring these replaces what a running K3s server holds open: K3s is stopped around them.
K3S_COMPONENTS = ("k3s_datastore", "k3s_token", "k3s_config")
# What a restore of the cluster needs: a backup without them does not protect it.
CLUSTER_COMPONENTS = ("k3s_datastore", "k3s_token")
# Where the collection backs each component up from, unless configured otherwise.
DEFAULT_SOURCES = {
    "k3s_datastore": "/var/lib/rancher/k3s/server/db/state.db",
    "k3s_token": "/var/lib/rancher/k3s/server/token",
    "k3s_config": "/etc/rancher/k3s/config.yaml",
    "grafana_db": "/var/lib/rancher/k3s/storage/pvc-*_monitoring_*grafana*/grafana.db",
    "prometheus_data_dir": "/var/lib/rancher/k3s/storage/pvc-*_monitoring_prometheus-*/prometheus-db",
    "volumes": [],
}
# A clock a little ahead of the backup's host must not make a fresh backup look forged.
CLOCK_SKEW = dt.timedelta(minutes=5)


class BackupError(Exception):
    """A backup or restore step failed; the message says what, where and what to do."""


# ---------------------------------------------------------------------------- helpers


def utcnow():
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)  # noqa: UP017 - Python 3.10 (Ubuntu 22.04) has no dt.UTC


def backup_name(when):
    return NAME_PREFIX + when.strftime(TIME_FORMAT)


def parse_name(name):
    """Creation time of a complete backup's directory name, or None for anything else."""
    match = NAME_RE.match(name)
    if not match:
        return None
    return dt.datetime.strptime(match.group(1), TIME_FORMAT).replace(tzinfo=dt.timezone.utc)  # noqa: UP017 - Python 3.10 (Ubuntu 22.04) has no dt.UTC


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_path(path):
    """fsync a file or a directory (a directory's fsync makes renames inside it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _private_dir(path):
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


def _safe_relpath(rel):
    """A manifest path must stay inside the backup directory."""
    norm = os.path.normpath(rel)
    return not (os.path.isabs(rel) or norm.startswith("..") or norm == ".")


def tool_version(argv):
    """First line of `<tool> --version`, or None when it cannot be run."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else None


def owner_of(path):
    """Owner, group and permission bits of a source, as the manifest records them."""
    st = os.stat(path)
    return {"uid": st.st_uid, "gid": st.st_gid, "mode": "%04o" % stat.S_IMODE(st.st_mode)}


def _parse_owner(owner):
    """(uid, gid, mode) from a manifest's owner record, or None when there is none or it is malformed.

    Set-id bits are never restored: a backup cannot make a restored file setuid."""
    if not isinstance(owner, dict):
        return None
    uid, gid, mode = owner.get("uid"), owner.get("gid"), owner.get("mode")
    if not (isinstance(uid, int) and isinstance(gid, int) and uid >= 0 and gid >= 0 and isinstance(mode, str)):
        return None
    try:
        bits = int(mode, 8)
    except ValueError:
        return None
    return uid, gid, bits & 0o1777 & ~(stat.S_ISUID | stat.S_ISGID)


def _apply_owner(path, owner, fallback_mode):
    """Give path the recorded owner and mode; without a record, fallback_mode and the caller's owner."""
    parsed = _parse_owner(owner)
    if parsed is None:
        os.chmod(path, fallback_mode)
        return
    uid, gid, mode = parsed
    if (uid, gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(path, uid, gid)
        except PermissionError:
            raise BackupError(
                "Cannot give %s its recorded owner %d:%d without root; run the restore with become." % (path, uid, gid)
            ) from None
    os.chmod(path, mode)


def _copy_private(src, dest):
    """Copy src to a new file dest that is 0600 from its first byte (never readable by others)."""
    with open(src, "rb") as source:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as target:
            shutil.copyfileobj(source, target, CHUNK)
            target.flush()
            os.fsync(target.fileno())


def is_disk_full(exc):
    """True for ENOSPC/EDQUOT raised here or reported in a child process's or SQLite's message."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("no space left on device", "disk is full", "disk quota exceeded"))


# ---------------------------------------------------------------------------- signing


def read_signing_key(path):
    """The manifest signing key's bytes; the file must be private to its owner."""
    try:
        st = os.stat(path)
        with open(path, "rb") as handle:
            key = handle.read().strip()
    except OSError as exc:
        raise BackupError("Cannot read the backup signing key %s: %s" % (path, exc.strerror)) from None
    if st.st_mode & 0o077:
        raise BackupError(
            "The backup signing key %s is readable by others (mode %04o); chmod 600 it."
            % (path, stat.S_IMODE(st.st_mode))
        )
    if len(key) < 32:
        raise BackupError("The backup signing key %s holds %d bytes; it needs at least 32." % (path, len(key)))
    return key


def create_signing_key(path):
    """Write a new random signing key (64 hex characters, 0600) unless path exists; True when written."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(os.urandom(32).hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _signature(key, data):
    return "hmac-sha256 %s\n" % hmac.new(key, data, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------- writers


def sqlite_online_copy(src, dest):
    """Consistent copy of a live SQLite database through SQLite's online backup API.

    The copy is taken in one step under a read transaction, so it is the state at one
    committed point even while other connections write (WAL readers do not block writers).
    The copy is switched to rollback-journal mode so it is a single self-contained file, and
    its integrity is checked before it counts.
    """
    source = sqlite3.connect(src, timeout=60)
    try:
        target = sqlite3.connect(dest)
        try:
            source.backup(target, pages=-1)
            target.execute("PRAGMA journal_mode=DELETE")
            result = target.execute("PRAGMA integrity_check").fetchone()[0]
            target.commit()
        finally:
            target.close()
    finally:
        source.close()
    if result != "ok":
        raise BackupError("The copy of SQLite database %s failed integrity_check: %s" % (src, result))


class _Hasher(threading.Thread):
    """sha256 of the chunks it is given, computed beside the reader.

    hashlib releases the GIL on large buffers, so hashing one chunk overlaps with reading
    and writing the next instead of adding to the time the pipe stands still.
    """

    def __init__(self):
        super().__init__(daemon=True)
        self.digest = hashlib.sha256()
        self.chunks = queue.Queue(maxsize=16)

    def run(self):
        while (chunk := self.chunks.get()) is not None:
            self.digest.update(chunk)

    def hexdigest(self):
        self.chunks.put(None)
        self.join()
        return self.digest.hexdigest()


def _drain(source, dest):
    """Read a pipe to its end; write it to a new file dest (0600, fsynced) unless dest is None.

    os.read returns what the pipe holds instead of waiting for a full chunk, so hashing and
    writing here overlap with compression upstream rather than stalling it.
    Returns (size, sha256 hex).
    """
    hasher = _Hasher()
    hasher.start()
    size = 0
    out = None if dest is None else os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while chunk := os.read(source, CHUNK):
            size += len(chunk)
            if out is None:
                continue
            hasher.chunks.put(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view) :]
        if out is not None:
            os.fsync(out)
    finally:
        digest = hasher.hexdigest()
        if out is not None:
            os.close(out)
    return size, digest


def _widen_pipe(fd):
    """Give a pipe a buffer of CHUNK bytes (Linux): fewer wake-ups between the stages."""
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)


def _pipeline(commands, dest, cwd=None):
    """Run commands piped into each other; hash and write the last one's stdout to dest.

    With dest None the output is read and dropped (for a final command that writes files
    itself, such as tar --extract). Returns (size, sha256). Raises BackupError with the
    failing command's stderr, or OSError (e.g. ENOSPC) from writing dest.
    """
    procs = []
    stdin = None
    for argv in commands:
        # stderr goes to a file: a chatty tool must not block on a full stderr pipe nobody reads yet.
        errfile = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=errfile, cwd=cwd, env=ENV)
        proc.errfile = errfile
        _widen_pipe(proc.stdout.fileno())
        if stdin is not None:
            stdin.close()  # the next process owns the read end now
        stdin = proc.stdout
        procs.append(proc)
    try:
        size, digest = _drain(stdin.fileno(), dest)
    except BaseException:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
            proc.errfile.close()
        raise
    errors = []
    for argv, proc in zip(commands, procs, strict=True):
        rc = proc.wait()
        proc.errfile.seek(0)
        stderr = proc.errfile.read().decode(errors="replace").strip()
        proc.errfile.close()
        if rc != 0:
            errors.append("%s exited %s: %s" % (os.path.basename(argv[0]), proc.returncode, stderr))
    stdin.close()
    if errors:
        raise BackupError("; ".join(errors))
    return size, digest


class Tools:
    """Paths of the external programs a backup or restore uses (resolved by the caller)."""

    def __init__(self, *, tar="tar", zstd="zstd", age=None, promtool=None, zstd_level=3, zstd_threads=1):
        self.tar = tar
        self.zstd = zstd
        self.age = age
        self.promtool = promtool
        self.zstd_level = zstd_level
        self.zstd_threads = zstd_threads

    def compress(self):
        return [self.zstd, "-q", "-c", "-%d" % self.zstd_level, "-T%d" % self.zstd_threads]

    def encrypt(self, recipients):
        argv = [self.age, "--encrypt"]
        for recipient in recipients:
            argv += ["--recipient", recipient]
        return argv

    def versions(self, with_age):
        versions = {
            "python_sqlite": sqlite3.sqlite_version,
            "tar": tool_version([self.tar, "--version"]),
            "zstd": tool_version([self.zstd, "--version"]),
        }
        if with_age:
            versions["age"] = tool_version([self.age, "--version"])
        return versions


def archive_dir(src, dest, tools, recipients=()):
    """tar | zstd [| age] of a directory's contents into dest; returns (size, sha256)."""
    commands = [[tools.tar, "--create", "--file=-", "--numeric-owner", "-C", src, "."], tools.compress()]
    if recipients:
        commands.append(tools.encrypt(recipients))
    return _pipeline(commands, dest)


def encrypt_file(path, tools, recipients):
    """Replace path by its age-encrypted form path + '.age'; returns the new path."""
    dest = path + ".age"
    with open(path, "rb") as src:
        proc = subprocess.run(
            [*tools.encrypt(recipients), "--output", dest],
            stdin=src,
            capture_output=True,
            env=ENV,
            umask=0o077,
            check=False,
        )
    if proc.returncode != 0:
        raise BackupError("age could not encrypt %s: %s" % (path, proc.stderr.decode(errors="replace").strip()))
    os.chmod(dest, 0o600)
    os.unlink(path)
    return dest


# ---------------------------------------------------------------------------- prometheus


def _http_json(url, method="GET", timeout=60):
    request = urllib.request.Request(url, method=method)  # noqa: S310 - the URL is the configured Prometheus
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read().decode())


def prometheus_snapshot(url, data_dir, timeout=300):
    """Ask Prometheus for a TSDB snapshot; returns the snapshot's directory on disk."""
    endpoint = url.rstrip("/") + "/api/v1/admin/tsdb/snapshot"
    try:
        answer = _http_json(endpoint, method="POST", timeout=timeout)
    except urllib.error.HTTPError as exc:
        hint = " Start Prometheus with --web.enable-admin-api." if exc.code in (404, 405) else ""
        raise BackupError("Prometheus snapshot at %s failed: HTTP %s.%s" % (endpoint, exc.code, hint)) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise BackupError("Prometheus snapshot at %s failed: %s. Is Prometheus running?" % (endpoint, exc)) from None
    name = (answer.get("data") or {}).get("name")
    if answer.get("status") != "success" or not name:
        raise BackupError("Prometheus snapshot at %s answered %s" % (endpoint, answer))
    path = os.path.join(data_dir, "snapshots", name)
    if not os.path.isdir(path):
        raise BackupError(
            "Prometheus made snapshot %s but %s does not exist: prometheus_data_dir must be the "
            "directory Prometheus writes (its --storage.tsdb.path) as seen from this host." % (name, path)
        )
    return path


def prometheus_version(url):
    with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
        return (_http_json(url.rstrip("/") + "/api/v1/status/buildinfo", timeout=10).get("data") or {}).get("version")
    return None


# ---------------------------------------------------------------------------- backup


def _entry(backup_path, path, kind, restore_to):
    rel = os.path.relpath(path, backup_path)
    return {
        "path": rel,
        "size": os.path.getsize(path),
        "sha256": sha256_file(path),
        "kind": kind,
        "restore_to": restore_to,
        "owner": owner_of(restore_to),
    }


def _component_dir(tmp, name):
    path = os.path.join(tmp, name)
    _private_dir(path)
    return path


def _backup_sqlite(tmp, name, src, tools, recipients):
    dest = os.path.join(_component_dir(tmp, name), os.path.basename(src))
    sqlite_online_copy(src, dest)
    os.chmod(dest, 0o600)
    if recipients:
        dest = encrypt_file(dest, tools, recipients)
    return [_entry(tmp, dest, "sqlite", src)]


def _backup_files(tmp, name, sources, tools, recipients):
    entries = []
    directory = _component_dir(tmp, name)
    for src in sources:
        dest = os.path.join(directory, os.path.basename(src))
        shutil.copyfile(src, dest)
        os.chmod(dest, 0o600)
        if recipients:
            dest = encrypt_file(dest, tools, recipients)
        entries.append(_entry(tmp, dest, "file", src))
    return entries


def _backup_archive(tmp, name, src, file_name, *, tools, recipients):
    dest = os.path.join(_component_dir(tmp, name), file_name + (".tar.zst.age" if recipients else ".tar.zst"))
    size, digest = archive_dir(src, dest, tools, recipients)
    return {"path": os.path.relpath(dest, tmp), "size": size, "sha256": digest, "kind": "tar.zst"}


# ---------------------------------------------------------------------------- leftovers of killed runs


def _read_ledger(backup_dir):
    try:
        with open(os.path.join(backup_dir, SNAPSHOT_LEDGER)) as handle:
            names = json.load(handle)
    except (OSError, ValueError):
        return []
    return [n for n in names if isinstance(n, str) and SNAPSHOT_RE.match(n)] if isinstance(names, list) else []


def _write_ledger(backup_dir, names):
    path = os.path.join(backup_dir, SNAPSHOT_LEDGER)
    if not names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    tmp = os.path.join(backup_dir, "%sledger-%d" % (TMP_PREFIX, os.getpid()))
    with open(tmp, "w") as handle:
        json.dump(sorted(set(names)), handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(tmp, path)


def remove_stale_snapshots(backup_dir, data_dir):
    """Remove Prometheus snapshots an interrupted backup asked for and never removed.

    Only names from the ledger, in Prometheus' snapshot name format, directly under
    <data_dir>/snapshots/ are removed: snapshots made by anything else stay."""
    removed = []
    for name in _read_ledger(backup_dir):
        path = os.path.join(data_dir, "snapshots", name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    _write_ledger(backup_dir, [])
    return removed


def remove_restore_leftovers(paths):
    """Remove what a killed restore wrote next to these destinations (<path>.restore-tmp)."""
    removed = []
    for path in paths:
        tmp = path.rstrip("/") + RESTORE_TMP
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            os.unlink(tmp)
        else:
            continue
        removed.append(tmp)
    return removed


def _volume_file_name(path):
    return "volume-" + (re.sub(r"[^A-Za-z0-9._-]+", "_", path.strip("/")) or "root")


def resolve_source(path):
    """A configured source path, which may be a glob (local-path volume names carry a PVC UID).

    Returns (path or None, reason when None)."""
    if not path:
        return None, "no source configured"
    if not any(ch in path for ch in "*?["):
        return path, None
    matches = sorted(glob.glob(path))
    if len(matches) == 1:
        return matches[0], None
    if not matches:
        return None, "nothing matches"
    return None, "%d paths match (%s); set the exact path" % (len(matches), ", ".join(matches))


def plan_sources(config):
    """Which components have a source on this host: (present {name: source}, missing [..])."""
    present, missing = {}, []
    wanted = config.get("components", list(COMPONENTS))
    for name in wanted:
        if name not in COMPONENTS:
            raise BackupError("Unknown backup component %r; choose from %s." % (name, ", ".join(COMPONENTS)))
    checks = {
        "k3s_datastore": config.get("k3s_datastore", DEFAULT_SOURCES["k3s_datastore"]),
        "k3s_token": config.get("k3s_token", DEFAULT_SOURCES["k3s_token"]),
        "k3s_config": config.get("k3s_config", DEFAULT_SOURCES["k3s_config"]),
        "grafana": config.get("grafana_db"),
        "prometheus": config.get("prometheus_data_dir"),
    }
    for name in wanted:
        if name == "volumes":
            for path in config.get("volumes", []):
                if os.path.isdir(path):
                    present.setdefault("volumes", []).append(path)
                else:
                    missing.append({"component": "volumes", "source": path, "reason": "directory not found"})
            continue
        source, reason = resolve_source(checks[name])
        if not source:
            missing.append({"component": name, "source": checks[name], "reason": reason})
        elif name == "prometheus" and not os.path.isdir(source):
            missing.append({"component": name, "source": source, "reason": "directory not found"})
        elif name != "prometheus" and not os.path.isfile(source):
            missing.append({"component": name, "source": source, "reason": "file not found"})
        else:
            present[name] = source
    return present, missing


def _lock(backup_dir):
    handle = open(os.path.join(backup_dir, LOCK), "a")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise BackupError(
            "Another backup is running in %s (its lock %s is held); wait for it to finish." % (backup_dir, LOCK)
        ) from None
    return handle


def remove_stale_tmp(backup_dir):
    """Remove .tmp-* directories left by interrupted runs (called with the lock held)."""
    removed = []
    for name in os.listdir(backup_dir):
        if name.startswith(TMP_PREFIX):
            shutil.rmtree(os.path.join(backup_dir, name), ignore_errors=True)
            removed.append(name)
    return removed


def _back_up_component(tmp, name, source, config, *, tools, recipients):
    """Write one component into tmp; returns (entries, extra manifest fields)."""
    if name in ("k3s_datastore", "grafana"):
        return _backup_sqlite(tmp, name, source, tools, recipients), {}
    if name == "k3s_token":
        return _backup_files(tmp, name, [source], tools, recipients), {}
    if name == "k3s_config":
        registries = os.path.join(os.path.dirname(source), "registries.yaml")
        files = [source, registries] if os.path.isfile(registries) else [source]
        return _backup_files(tmp, name, files, tools, recipients), {}
    if name == "prometheus":
        url = config.get("prometheus_url", "http://127.0.0.1:9090")
        started = time.monotonic()
        snapshot = prometheus_snapshot(url, source)
        snapshot_seconds = time.monotonic() - started
        # A snapshot is hard links into the live TSDB; left behind it pins disk space. The
        # ledger lets the next run remove it when this one is killed before it does.
        ledger = [*_read_ledger(config["backup_dir"]), os.path.basename(snapshot)]
        _write_ledger(config["backup_dir"], ledger)
        try:
            entry = _backup_archive(tmp, name, snapshot, "tsdb-snapshot", tools=tools, recipients=recipients)
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)
            _write_ledger(config["backup_dir"], ledger[:-1])
        entry["restore_to"] = source
        entry["owner"] = owner_of(source)
        return [entry], {"prometheus_version": prometheus_version(url), "snapshot_seconds": round(snapshot_seconds, 3)}
    entries = []
    for path in source:
        entry = _backup_archive(tmp, name, path, _volume_file_name(path), tools=tools, recipients=recipients)
        entry["restore_to"] = path
        entry["owner"] = owner_of(path)
        entries.append(entry)
    return entries, {}


def _back_up_all(tmp, present, config, tools, recipients):
    """Back up every present component into tmp; returns (components, failed)."""
    components = []
    failed = []
    required = required_components(config)
    for cname in COMPONENTS:
        if cname not in present:
            continue
        try:
            entries, extra = _back_up_component(tmp, cname, present[cname], config, tools=tools, recipients=recipients)
        except (BackupError, OSError, sqlite3.Error) as exc:
            reason = _os_error(exc, config["backup_dir"]) if isinstance(exc, OSError) else str(exc)
            # A full disk (also when a child process such as age reports it) or a required
            # component ends the run. Any other component's failure must not cost the rest (a
            # Prometheus problem must not leave K3s unprotected): the run is kept as a partial
            # backup, never under a complete backup's name.
            if cname in required or is_disk_full(exc):
                raise BackupError("Backing up %s failed: %s" % (cname, reason)) from exc
            shutil.rmtree(os.path.join(tmp, cname), ignore_errors=True)
            failed.append({"component": cname, "source": present[cname], "reason": reason})
            continue
        components.append({"name": cname, "source": present[cname], "files": entries, **extra})
    if not components:
        raise BackupError(
            "Every component failed: %s" % "; ".join("%s: %s" % (f["component"], f["reason"]) for f in failed)
        )
    return components, failed


def required_components(config):
    """Components whose failure ends a run: the configured list, else the cluster's own (when backed up)."""
    required = config.get("required_components")
    if required is None:
        wanted = config.get("components", list(COMPONENTS))
        return [c for c in CLUSTER_COMPONENTS if c in wanted]
    return list(required)


def take_backup(config, tools, now=None):
    """Take one backup. Returns the result dict; raises BackupError (nothing is left marked complete).

    A run where an optional component failed is kept as partial-odin-<time>/, which no
    listing, retention or reset check counts as a backup.

    config keys: backup_dir, components, k3s_datastore, k3s_token, k3s_config, grafana_db,
    prometheus_url, prometheus_data_dir, volumes, age_recipients, required_components
    (default: k3s_datastore and k3s_token), signing_key (path of the manifest signing key).
    """
    started = time.monotonic()
    now = now or utcnow()
    backup_dir = config["backup_dir"]
    recipients = list(config.get("age_recipients") or [])
    if recipients and not tools.age:
        raise BackupError("age_recipients is set but the age binary was not found; install age.")
    key = read_signing_key(config["signing_key"]) if config.get("signing_key") else None
    present, missing = plan_sources(config)
    required_missing = [m for m in missing if m["component"] in required_components(config)]
    if required_missing:
        raise BackupError(
            "Required backup components have no source: %s. Fix the paths or remove them from required_components."
            % "; ".join("%s (%s: %s)" % (m["component"], m["source"], m["reason"]) for m in required_missing)
        )
    if not present:
        raise BackupError(
            "Nothing to back up: no component has a source on this host (%s)."
            % "; ".join("%s: %s %s" % (m["component"], m["source"], m["reason"]) for m in missing)
        )
    _private_dir(backup_dir)
    name = backup_name(now)
    final = os.path.join(backup_dir, name)
    lock = _lock(backup_dir)
    tmp = None
    try:
        stale = remove_stale_tmp(backup_dir)
        stale += remove_restore_leftovers(_source_paths(present))
        if "prometheus" in present:
            stale += remove_stale_snapshots(backup_dir, present["prometheus"])
        if os.path.exists(final):
            raise BackupError("Backup %s already exists; run again a second later." % final)
        tmp = os.path.join(backup_dir, "%s%s-%d" % (TMP_PREFIX, name, os.getpid()))
        os.mkdir(tmp, 0o700)
        components, failed = _back_up_all(tmp, present, config, tools, recipients)
        if failed:
            final = os.path.join(backup_dir, PARTIAL_PREFIX + name)
        manifest = {
            "format": FORMAT,
            "created": now.isoformat().replace("+00:00", "Z"),
            "name": name,
            "host": socket.gethostname(),
            "components": components,
            "missing": missing,
            "failed": failed,
            "encryption": {"tool": "age", "recipients": recipients} if recipients else None,
            "tools": tools.versions(bool(recipients)),
        }
        manifest["size_bytes"] = sum(f["size"] for c in components for f in c["files"])
        if failed:
            manifest["partial"] = True
        _write_manifest(tmp, manifest, key)
        _sync_tree(tmp)
        os.rename(tmp, final)
        tmp = None
        fsync_path(backup_dir)
    except OSError as exc:
        raise BackupError("Writing the backup failed: %s" % _os_error(exc, backup_dir)) from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        lock.close()
    return {
        "path": final,
        "name": os.path.basename(final),
        "partial": bool(failed),
        "created": manifest["created"],
        "size_bytes": manifest["size_bytes"],
        "duration_seconds": round(time.monotonic() - started, 3),
        "components": [c["name"] for c in components],
        "missing": missing,
        "failed": failed,
        "stale_removed": stale,
        "manifest": manifest,
    }


def _os_error(exc, backup_dir):
    if exc.errno == errno.ENOSPC:
        return "%s: no space left on the filesystem of %s; free space or move odin_backup_dir." % (exc, backup_dir)
    return str(exc)


def _source_paths(present):
    paths = []
    for source in present.values():
        paths += source if isinstance(source, list) else [source]
    return paths


def _write_private(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_manifest(directory, manifest, key=None):
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    _write_private(os.path.join(directory, MANIFEST), data)
    _write_private(
        os.path.join(directory, MANIFEST_SUM), ("%s  %s\n" % (hashlib.sha256(data).hexdigest(), MANIFEST)).encode()
    )
    if key is not None:
        _write_private(os.path.join(directory, SIGNATURE), _signature(key, data).encode())


def _sync_tree(root):
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            fsync_path(os.path.join(dirpath, name))
        fsync_path(dirpath)


# ---------------------------------------------------------------------------- listing and retention


def list_backups(backup_dir):
    """Complete backups, newest first: [(name, created datetime)]. .tmp-* never counts."""
    try:
        names = os.listdir(backup_dir)
    except FileNotFoundError:
        return []
    found = [(n, parse_name(n)) for n in names if os.path.isdir(os.path.join(backup_dir, n))]
    return sorted(((n, t) for n, t in found if t is not None), key=lambda item: item[1], reverse=True)


def retention(backups, keep_daily, keep_weekly):
    """Split backups (newest first, as list_backups returns) into (keep, delete) name lists.

    Keeps the newest backup of each of the keep_daily most recent days that have one, and the
    newest of each of the keep_weekly most recent ISO weeks that have one. The newest backup is
    always kept.
    """
    keep = set()
    if backups:
        keep.add(backups[0][0])
    days, weeks = [], []
    for name, created in backups:
        day = created.date()
        if day not in days:
            days.append(day)
            if len(days) <= keep_daily:
                keep.add(name)
        week = created.isocalendar()[:2]
        if week not in weeks:
            weeks.append(week)
            if len(weeks) <= keep_weekly:
                keep.add(name)
    kept = [name for name, _stamp in backups if name in keep]
    deleted = [name for name, _stamp in backups if name not in keep]
    return kept, deleted


def list_partials(backup_dir):
    """Partial runs (partial-odin-<time>/), newest first: [(name, created datetime)]."""
    try:
        names = os.listdir(backup_dir)
    except FileNotFoundError:
        return []
    found = [(n, parse_name(n[len(PARTIAL_PREFIX) :])) for n in names if n.startswith(PARTIAL_PREFIX)]
    found = [(n, t) for n, t in found if t is not None and os.path.isdir(os.path.join(backup_dir, n))]
    return sorted(found, key=lambda item: item[1], reverse=True)


def prune(backup_dir, keep_daily, keep_weekly, dry_run=False):
    """Apply retention. Of the partial runs only the newest is kept, and only while no complete
    backup is newer (it may hold the only copy of what did succeed since)."""
    backups = list_backups(backup_dir)
    kept, deleted = retention(backups, keep_daily, keep_weekly)
    newest = backups[0][1] if backups else None
    for index, (name, created) in enumerate(list_partials(backup_dir)):
        if index > 0 or (newest is not None and created <= newest):
            deleted.append(name)
    if not dry_run:
        # Each backup leaves its name in one atomic rename before its files go: a run killed
        # while deleting leaves a .tmp-* directory (removed by the next run), never a backup
        # whose name says complete with files missing.
        doomed = []
        for name in deleted:
            target = os.path.join(backup_dir, "%sprune-%s" % (TMP_PREFIX, name))
            os.rename(os.path.join(backup_dir, name), target)
            doomed.append(target)
        if doomed:
            fsync_path(backup_dir)
        for target in doomed:
            shutil.rmtree(target)
    return kept, deleted


# ---------------------------------------------------------------------------- metrics

METRIC_HELP = {
    "odin_backup_last_success_timestamp_seconds": "Unix time of the last successful ODIN backup.",
    "odin_backup_last_run_timestamp_seconds": "Unix time of the last ODIN backup attempt.",
    "odin_backup_last_success": "1 if the last ODIN backup attempt succeeded, else 0.",
    "odin_backup_last_size_bytes": "Size in bytes of the last successful ODIN backup.",
    "odin_backup_last_duration_seconds": "Duration in seconds of the last ODIN backup attempt.",
}
METRICS_FILE = "odin_backup.prom"


def read_metrics(path):
    values = {}
    with contextlib.suppress(FileNotFoundError), open(path) as handle:
        for line in handle:
            parts = line.split()
            if len(parts) == 2 and parts[0] in METRIC_HELP:
                with contextlib.suppress(ValueError):
                    values[parts[0]] = float(parts[1])
    return values


def render_metrics(values):
    lines = []
    for name, help_text in METRIC_HELP.items():
        if name not in values:
            continue
        lines += ["# HELP %s %s" % (name, help_text), "# TYPE %s gauge" % name, "%s %s" % (name, _num(values[name]))]
    return "\n".join(lines) + "\n"


def _num(value):
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_metrics(textfile_dir, success, run_time, duration, size_bytes=None):
    """Write the textfile collector metrics atomically (0644); keeps the last success on failure."""
    path = os.path.join(textfile_dir, METRICS_FILE)
    values = read_metrics(path)
    values["odin_backup_last_run_timestamp_seconds"] = int(run_time)
    values["odin_backup_last_success"] = 1 if success else 0
    values["odin_backup_last_duration_seconds"] = round(duration, 3)
    if success:
        values["odin_backup_last_success_timestamp_seconds"] = int(run_time)
        values["odin_backup_last_size_bytes"] = int(size_bytes or 0)
    # The collector reads only *.prom, so the temporary name is never scraped half-written.
    tmp = os.path.join(textfile_dir, ".%s.%d.tmp" % (METRICS_FILE, os.getpid()))
    with open(tmp, "w") as handle:
        handle.write(render_metrics(values))
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)
    return values


# ---------------------------------------------------------------------------- verify and restore


def resolve_backup(backup_dir, backup):
    """A backup given as 'latest', a name, or a path -> its directory."""
    if backup in (None, "", "latest"):
        backups = list_backups(backup_dir)
        if not backups:
            raise BackupError("No complete backup in %s to restore." % backup_dir)
        return os.path.join(backup_dir, backups[0][0])
    path = backup if os.path.isabs(backup) else os.path.join(backup_dir, backup)
    if os.path.basename(path.rstrip("/")).startswith(TMP_PREFIX):
        raise BackupError("%s is an incomplete backup (.tmp-*) and cannot be restored." % path)
    if not os.path.isdir(path):
        raise BackupError("Backup %s does not exist." % path)
    return path


def load_manifest(path, key=None):
    """Read and check a backup's manifest against its recorded checksum, and against its
    signature when a signing key is given; raises BackupError."""
    manifest_path = os.path.join(path, MANIFEST)
    try:
        with open(manifest_path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise BackupError(
            "Backup %s has no readable %s (%s): it is not a complete backup." % (path, MANIFEST, exc)
        ) from None
    try:
        with open(os.path.join(path, MANIFEST_SUM)) as handle:
            recorded = handle.read().split()[0]
    except (OSError, IndexError):
        raise BackupError("Backup %s has no %s, so its manifest cannot be trusted." % (path, MANIFEST_SUM)) from None
    if hashlib.sha256(data).hexdigest() != recorded:
        raise BackupError("The manifest of %s does not match its recorded sha256: it was altered or damaged." % path)
    if key is not None:
        try:
            with open(os.path.join(path, SIGNATURE)) as handle:
                signature = handle.read()
        except OSError:
            raise BackupError(
                "Backup %s has no %s but a signing key is set: it was not written by a host holding the key "
                "(forged, or taken before signing was enabled)." % (path, SIGNATURE)
            ) from None
        if not hmac.compare_digest(signature.strip(), _signature(key, data).strip()):
            raise BackupError(
                "The signature of %s does not match the signing key: the manifest was forged or signed "
                "with another key." % path
            )
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise BackupError("The manifest of %s is not valid JSON: %s" % (path, exc)) from None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("components"), list):
        raise BackupError(
            "The manifest of %s has format %r; this collection reads format %d."
            % (path, manifest.get("format"), FORMAT)
        )
    for component in manifest["components"]:
        for entry in component.get("files", []):
            if not _safe_relpath(entry.get("path", "")):
                raise BackupError("The manifest of %s names a file outside the backup: %r" % (path, entry.get("path")))
    return manifest


def verify_backup(path, manifest):
    """Every file the manifest lists exists with its size and sha256. Returns a list of problems."""
    problems = []
    for component in manifest["components"]:
        for entry in component["files"]:
            file_path = os.path.join(path, entry["path"])
            if not os.path.isfile(file_path):
                problems.append("%s: missing" % entry["path"])
                continue
            size = os.path.getsize(file_path)
            if size != entry["size"]:
                problems.append("%s: size %d, manifest says %d" % (entry["path"], size, entry["size"]))
                continue
            digest = sha256_file(file_path)
            if digest != entry["sha256"]:
                problems.append("%s: sha256 %s, manifest says %s" % (entry["path"], digest, entry["sha256"]))
    return problems


def _glob_match(path, pattern):
    """path matches pattern segment by segment (a * never spans a /)."""
    parts, pattern_parts = path.split("/"), pattern.split("/")
    return len(parts) == len(pattern_parts) and all(
        fnmatch.fnmatchcase(part, pat) for part, pat in zip(parts, pattern_parts, strict=True)
    )


def allowed_destinations(sources):
    """Patterns of where each component may be restored to: where the collection backs it up from."""
    sources = {**DEFAULT_SOURCES, **{k: v for k, v in (sources or {}).items() if v is not None}}
    config_dir = os.path.dirname(sources["k3s_config"])
    return {
        "k3s_datastore": [sources["k3s_datastore"]],
        "k3s_token": [sources["k3s_token"]],
        "k3s_config": [sources["k3s_config"], os.path.join(config_dir, "registries.yaml")],
        "grafana": [sources["grafana_db"]],
        "prometheus": [sources["prometheus_data_dir"]],
        "volumes": list(sources["volumes"]),
    }


def confine_restore(components, sources, destinations=None):
    """Problems with where a backup asks its files to go: each restore_to must be a normalised
    absolute path matching where this collection backs that component up from, unless the
    caller maps it somewhere explicitly. A forged manifest cannot make a restore write elsewhere."""
    allowed = allowed_destinations(sources)
    destinations = destinations or {}
    problems = []
    for component in components:
        for entry in component["files"]:
            target = entry.get("restore_to")
            if target in destinations.get(component["name"], {}):
                continue
            if not isinstance(target, str) or not os.path.isabs(target) or os.path.normpath(target) != target:
                problems.append("%s: restore_to %r is not a plain absolute path" % (entry.get("path"), target))
            elif not any(_glob_match(target, pattern) for pattern in allowed.get(component["name"], [])):
                problems.append(
                    "%s: restore_to %s is not where the collection backs %s up from (%s)"
                    % (
                        entry.get("path"),
                        target,
                        component["name"],
                        ", ".join(allowed.get(component["name"], [])) or "none set",
                    )
                )
    return problems


def backup_time(path, manifest):
    """The backup's creation time, which its directory name and manifest must agree on."""
    base = os.path.basename(path.rstrip("/"))
    named = parse_name(base[len(PARTIAL_PREFIX) :] if base.startswith(PARTIAL_PREFIX) else base)
    created = manifest.get("created")
    try:
        stamp = dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)  # noqa: UP017 - Python 3.10 (Ubuntu 22.04) has no dt.UTC
    except (TypeError, ValueError):
        raise BackupError(
            "The manifest of %s has no creation time in the format it is written in: %r" % (path, created)
        ) from None
    if named is not None and named != stamp:
        raise BackupError(
            "The manifest of %s says it was created %s but the backup is named for %s: it was edited."
            % (path, created, named.strftime("%Y-%m-%dT%H:%M:%SZ"))
        )
    return stamp


def trust_problems(path, manifest, required):
    """Why a verified manifest's backup cannot be relied on to rebuild the cluster ([] when it can)."""
    problems = verify_backup(path, manifest)
    if problems:
        return problems
    held = {c["name"]: c for c in manifest["components"]}
    for name in required:
        files = held.get(name, {}).get("files") or []
        if not files:
            problems.append("%s: not in the backup" % name)
            continue
        for entry in files:
            if entry.get("size", 0) <= 0:
                problems.append("%s: empty" % entry["path"])
            elif entry.get("kind") == "sqlite" and not entry["path"].endswith(".age"):
                try:
                    integrity = sqlite_check(os.path.join(path, entry["path"]))["integrity"]
                except sqlite3.Error as exc:
                    integrity = str(exc)
                if integrity != "ok":
                    problems.append("%s: SQLite integrity_check says %s" % (entry["path"], integrity))
    return problems


def trusted_backup(backup_dir, *, backup="latest", required=CLUSTER_COMPONENTS, max_age_hours=None, key=None, now=None):
    """The newest backup a restore could rely on, verified as a restore verifies it.

    A backup counts when its manifest matches manifest.sha256 (and its signature when key is
    given), its name and creation time agree, every file matches its size and sha256, and each
    required component is in it, non-empty and, for a plain SQLite file, passes integrity_check.
    With backup="latest" the complete backups are tried newest first, within max_age_hours.
    Returns {"trusted", "backup", "name", "created", "age_hours", "rejected": [[name, reason]]}.
    """
    now = now or utcnow()
    if backup in (None, "", "latest"):
        candidates = [os.path.join(backup_dir, name) for name, _stamp in list_backups(backup_dir)]
    else:
        candidates = [resolve_backup(backup_dir, backup)]
    rejected = []
    result = {"trusted": False, "backup": None, "name": None, "created": None, "age_hours": None, "rejected": rejected}
    for path in candidates:
        name = os.path.basename(path.rstrip("/"))
        try:
            manifest = load_manifest(path, key)
            created = backup_time(path, manifest)
        except BackupError as exc:
            rejected.append([name, str(exc)])
            continue
        age_hours = round((now - created).total_seconds() / 3600, 2)
        if created > now + CLOCK_SKEW:
            rejected.append([name, "created %s, in the future of this host's clock" % manifest["created"]])
            continue
        if max_age_hours is not None and age_hours > max_age_hours:
            rejected.append([name, "%.1f hours old (the limit is %s)" % (age_hours, max_age_hours)])
            break  # newest first: every later one is older still
        problems = trust_problems(path, manifest, required)
        if problems:
            rejected.append([name, "; ".join(problems)])
            continue
        result.update(trusted=True, backup=path, name=name, created=manifest["created"], age_hours=age_hours)
        break
    return result


def select_components(manifest, wanted):
    available = [c["name"] for c in manifest["components"]]
    if not wanted:
        return list(manifest["components"])
    unknown = [w for w in wanted if w not in available]
    if unknown:
        raise BackupError(
            "The backup holds no %s; it holds %s." % (", ".join(unknown), ", ".join(available) or "nothing")
        )
    return [c for c in manifest["components"] if c["name"] in wanted]


def _destination(entry, component, target_root, destinations):
    if target_root:
        base = os.path.basename(entry["restore_to"].rstrip("/")) or component["name"]
        return os.path.join(target_root, component["name"], base)
    return destinations.get(component["name"], {}).get(entry["restore_to"], entry["restore_to"])


def plan_restore(path, manifest, components, target_root=None, destinations=None):
    """What a restore would change: [{component, file, destination, action}]; reads only."""
    destinations = destinations or {}
    encrypted = bool(manifest.get("encryption"))
    plan = []
    for component in components:
        for entry in component["files"]:
            dest = _destination(entry, component, target_root, destinations)
            if entry["kind"] == "tar.zst":
                action = "replace directory" if os.path.isdir(dest) and os.listdir(dest) else "create directory"
            elif not os.path.exists(dest):
                action = "create"
            elif not encrypted and entry["kind"] == "file" and sha256_file(dest) == entry["sha256"]:
                action = "unchanged"
            else:
                action = "replace"
            plan.append({"component": component["name"], "file": entry["path"], "destination": dest, "action": action})
    return plan


def _decrypted(src, tools, identity, workdir):
    """Path of a plaintext copy of an age-encrypted file (written into workdir)."""
    if not src.endswith(".age"):
        return src
    if not identity:
        raise BackupError("The backup is encrypted with age; give the identity file (age_identity) to restore it.")
    dest = os.path.join(workdir, os.path.basename(src)[: -len(".age")])
    proc = subprocess.run(
        [tools.age, "--decrypt", "--identity", identity, "--output", dest, src],
        capture_output=True,
        env=ENV,
        umask=0o077,
        check=False,
    )
    if proc.returncode != 0:
        raise BackupError("age could not decrypt %s: %s" % (src, proc.stderr.decode(errors="replace").strip()))
    return dest


def _move_aside(dest, stamp):
    if not os.path.lexists(dest):
        return None
    aside = "%s.pre-restore-%s" % (dest, stamp)
    count = 0
    while os.path.lexists(aside):  # two restores within a second must not overwrite the first one's
        count += 1
        aside = "%s.pre-restore-%s.%d" % (dest, stamp, count)
    os.rename(dest, aside)
    return aside


def _owner_or_current(owner, dest):
    """The manifest's owner record, or (for backups without one) that of the path being replaced."""
    if _parse_owner(owner) is not None:
        return owner
    with contextlib.suppress(FileNotFoundError):
        return owner_of(dest)
    return None


def _restore_file(src, dest, kind, stamp, owner=None):
    """Put one file in place atomically; the old file and a SQLite's stale WAL/SHM are moved aside.

    The restored file gets the owner and mode recorded when it was backed up (Grafana's
    database belongs to Grafana's user, not root), whether or not a file is there now; a
    backup without that record takes the replaced file's, or 0600 when there is none."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + RESTORE_TMP
    remove_restore_leftovers([dest])
    _copy_private(src, tmp)
    _apply_owner(tmp, _owner_or_current(owner, dest), 0o600)
    aside = [_move_aside(dest, stamp)]
    if kind == "sqlite":
        # A WAL left from the replaced database would be replayed into the restored one.
        aside += [_move_aside(dest + suffix, stamp) for suffix in ("-wal", "-shm")]
    os.rename(tmp, dest)
    fsync_path(os.path.dirname(dest))
    return [a for a in aside if a]


def _restore_archive(src, dest, tools, stamp, *, identity, owner=None):
    staging = dest.rstrip("/") + RESTORE_TMP
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging, mode=0o700)
    commands = []
    if src.endswith(".age"):
        if not identity:
            raise BackupError("The backup is encrypted with age; give the identity file (age_identity) to restore it.")
        commands.append([tools.age, "--decrypt", "--identity", identity, src])
        commands.append([tools.zstd, "-q", "-d", "-c"])
    else:
        commands.append([tools.zstd, "-q", "-d", "-c", src])
    commands.append([tools.tar, "--extract", "--file=-", "--numeric-owner", "--same-permissions", "-C", staging])
    try:
        _pipeline(commands, None)
        # The archive's root entry carries the snapshot's mode, not the data directory's.
        _apply_owner(staging, _owner_or_current(owner, dest.rstrip("/")), 0o700)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    aside = _move_aside(dest.rstrip("/"), stamp)
    os.rename(staging, dest.rstrip("/"))
    return [aside] if aside else []


def restore(path, components, tools, *, target_root=None, destinations=None, identity=None):
    """Restore the components' files. The caller verified checksums and stopped what must be stopped.

    Runs under the backup directory's lock, so no backup runs meanwhile. Decrypted files are
    written only into a 0700 work directory in the backup directory (.tmp-restore-<pid>),
    removed on the way out; what a killed run left there, or beside a destination, is removed
    first."""
    destinations = destinations or {}
    stamp = utcnow().strftime(TIME_FORMAT)
    restored, moved_aside = [], []
    backup_dir = os.path.dirname(path.rstrip("/"))
    lock = _lock(backup_dir)
    workdir = None
    try:
        remove_stale_tmp(backup_dir)
        workdir = os.path.join(backup_dir, "%srestore-%d" % (TMP_PREFIX, os.getpid()))
        os.mkdir(workdir, 0o700)
        for component in components:
            for entry in component["files"]:
                src = os.path.join(path, entry["path"])
                dest = _destination(entry, component, target_root, destinations)
                owner = entry.get("owner")
                if entry["kind"] == "tar.zst":
                    moved_aside += _restore_archive(src, dest, tools, stamp, identity=identity, owner=owner)
                else:
                    plain = _decrypted(src, tools, identity, workdir)
                    moved_aside += _restore_file(plain, dest, entry["kind"], stamp, owner)
                    if plain != src:
                        os.unlink(plain)
                restored.append({"component": component["name"], "destination": dest, "kind": entry["kind"]})
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        lock.close()
    return restored, moved_aside


def sqlite_check(path):
    """integrity_check and table row counts of a SQLite file (opened read-only)."""
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {t: conn.execute('SELECT count(*) FROM "%s"' % t.replace('"', '""')).fetchone()[0] for t in tables}  # noqa: S608
    finally:
        conn.close()
    return {"integrity": integrity, "tables": counts}


def tsdb_check(path, promtool):
    """List the TSDB's blocks with promtool; returns {blocks, series} or raises BackupError."""
    proc = subprocess.run([promtool, "tsdb", "list", path], capture_output=True, text=True, env=ENV, check=False)
    if proc.returncode != 0:
        raise BackupError("promtool cannot read the restored TSDB %s: %s" % (path, proc.stderr.strip()))
    lines = [line for line in proc.stdout.splitlines()[1:] if line.strip()]
    series = 0
    for line in lines:
        fields = line.split()
        with contextlib.suppress(IndexError, ValueError):
            series += int(fields[5])
    return {"blocks": len(lines), "series": series}


def drill(restored, tools):
    """Check what a restore into a scratch directory produced; returns (report, problems)."""
    report, problems = [], []
    for item in restored:
        dest = item["destination"]
        if item["kind"] == "sqlite":
            result = sqlite_check(dest)
            if result["integrity"] != "ok":
                problems.append("%s: integrity_check says %s" % (dest, result["integrity"]))
            report.append({"destination": dest, "check": "sqlite", **result})
        elif item["component"] == "prometheus":
            if not tools.promtool:
                problems.append("%s: promtool not found, the TSDB cannot be checked" % dest)
                continue
            try:
                result = tsdb_check(dest, tools.promtool)
            except BackupError as exc:
                problems.append(str(exc))
                continue
            if result["blocks"] == 0:
                problems.append("%s: the restored TSDB holds no block" % dest)
            report.append({"destination": dest, "check": "tsdb", **result})
        elif item["kind"] == "tar.zst":
            count = sum(len(files) for _d, _s, files in os.walk(dest))
            report.append({"destination": dest, "check": "files", "files": count})
        else:
            size = os.path.getsize(dest)
            if size == 0:
                problems.append("%s: empty" % dest)
            report.append({"destination": dest, "check": "file", "size": size})
    return report, problems
