"""Shared by the backup tests: a real Prometheus, a K3s-shaped tree, module runs, a small tmpfs."""

import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from localnet import free_port

from ansible_collections.odin.stack.plugins.module_utils import _backup as backup

PROMETHEUS = shutil.which("prometheus")
AGE_KEYGEN = shutil.which("age-keygen")
PROMTOOL = shutil.which("promtool")
TOOLS = backup.Tools(tar=shutil.which("tar"), zstd=shutil.which("zstd"), age=shutil.which("age"), promtool=PROMTOOL)


def http_json(url, data=None):
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")  # noqa: S310 - local test server
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def query(base, expr, at):
    url = "%s/api/v1/query?%s" % (base, urllib.parse.urlencode({"query": expr, "time": at}))
    return http_json(url)["data"]["result"]


class Prometheus:
    """A real Prometheus on 127.0.0.1 that scrapes itself every second."""

    def __init__(self, data_dir, workdir):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        config = Path(workdir) / ("prometheus-%d.yml" % self.port)
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: self\n"
            "    static_configs: [{targets: ['127.0.0.1:%d']}]\n" % self.port
        )
        self.log = open(Path(workdir) / ("prometheus-%d.log" % self.port), "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                "--config.file=%s" % config,
                "--storage.tsdb.path=%s" % self.data_dir,
                "--web.listen-address=127.0.0.1:%d" % self.port,
                "--web.enable-admin-api",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/-/ready", timeout=2).read()  # noqa: S310
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("prometheus did not become ready; see %s" % self.log.name)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def make_k3s_tree(root):
    """A K3s-shaped server directory: a real SQLite state.db in WAL mode, token and config."""
    db_dir = root / "var/lib/rancher/k3s/server/db"
    db_dir.mkdir(parents=True)
    conn = sqlite3.connect(db_dir / "state.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE kine (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, value BLOB)")
    conn.executemany(
        "INSERT INTO kine (name, value) VALUES (?, ?)", [("/registry/k%d" % i, b"v" * 64) for i in range(200)]
    )
    conn.commit()
    conn.close()
    (root / "var/lib/rancher/k3s/server/token").write_text("K10abc::server:0123456789abcdef\n")
    (root / "etc/rancher/k3s").mkdir(parents=True)
    (root / "etc/rancher/k3s/config.yaml").write_text("write-kubeconfig-mode: '0600'\ndisable: [traefik]\n")
    return {
        "k3s_datastore": str(db_dir / "state.db"),
        "k3s_token": str(root / "var/lib/rancher/k3s/server/token"),
        "k3s_config": str(root / "etc/rancher/k3s/config.yaml"),
    }


def age_key(tmp_path):
    """A new age identity under tmp_path: (identity file, public recipient, secret key line)."""
    identity = tmp_path / "key.txt"
    subprocess.run([AGE_KEYGEN, "-o", str(identity)], check=True, capture_output=True)
    lines = identity.read_text().splitlines()
    recipient = next(line.split(": ", 1)[1] for line in lines if line.startswith("# public key:"))
    secret = next(line for line in lines if line.startswith("AGE-SECRET-KEY-"))
    return identity, recipient, secret


def run_module(ansible, name, args, check=False):
    cmd = ["ansible", "localhost", "-c", "local", "-i", "localhost,", "-m", "odin.stack.%s" % name]
    cmd += ["-e", "ansible_python_interpreter=%s" % sys.executable]
    cmd += ["-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    result = ansible(cmd, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    # The json callback's document comes first; callbacks enabled in ansible.cfg may print after it.
    payload, _end = json.JSONDecoder().raw_decode(result.stdout[result.stdout.index("{") :])
    return payload["plays"][0]["tasks"][0]["hosts"]["localhost"]


@contextlib.contextmanager
def mounted_tmpfs(mountpoint, size):
    """A tmpfs of `size` (mount's syntax, e.g. 2m) at mountpoint; skips the test where none can be mounted."""
    mountpoint = Path(mountpoint)
    mountpoint.mkdir(parents=True, exist_ok=True)
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if not (mount and umount):
        pytest.skip("mount/umount are not installed; the ENOSPC path is not exercised")
    proc = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip("cannot mount a %s tmpfs here (%s); the ENOSPC path is not exercised" % (size, proc.stderr.strip()))
    try:
        yield mountpoint
    finally:
        subprocess.run([umount, str(mountpoint)], check=False)
