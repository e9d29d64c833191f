"""A real Kubernetes control plane for the test suite, on 127.0.0.1 only.

kine keeps the cluster state in SQLite (the datastore K3s uses by default), the real
kube-apiserver serves it with secrets encrypted at rest and a service-account signing
key, kube-controller-manager and kube-scheduler run their controllers, and kwok plays
the kubelet for one node: pods are scheduled, marked Running and Ready (or Succeeded
for Jobs), but no container runs. The binaries come from scripts/controlplane-build.sh.

Run by hand (prints a kubeconfig path and waits until Ctrl-C):
    python tests/controlplane/cluster.py
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "controlplane-build.sh"
NODE_NAME = "odin-test-node"
# kwok manages only the nodes carrying this annotation.
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
# What the simulated node advertises: a laptop-sized machine.
NODE_CAPACITY = {"cpu": "16", "memory": "32Gi", "pods": "110", "ephemeral-storage": "500Gi"}


def build(env=None):
    """Build the control plane or reuse the cached build; returns (bin_dir, seconds, reused)."""
    start = time.monotonic()
    proc = subprocess.run(
        [str(BUILD_SCRIPT)], cwd=REPO, capture_output=True, text=True, env=env or os.environ.copy(), check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"controlplane-build.sh failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    bin_dir = Path(proc.stdout.strip().splitlines()[-1])
    return bin_dir, time.monotonic() - start, "reusing" in proc.stderr


def _die_with_parent():
    """In the child: get SIGKILL when the process that started it dies (even by kill -9).

    An orphaned component is killed outright: with SIGTERM, a component of the 1.36 control
    plane outlived its killed parent by more than 30 s (tests/k8s/test_controlplane.py).
    stop() still shuts the components down with SIGTERM first.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ControlPlane:
    """Start with `start()`, stop with `stop()` (or use it as a context manager)."""

    def __init__(self, bin_dir, workdir=None):
        self.bin = Path(bin_dir)
        self._own_workdir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="odin-controlplane-"))
        self.procs = {}
        self.ports = {}
        self.kubeconfig = self.dir / "admin.kubeconfig"
        self.startup_seconds = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self, timeout=120):
        started = time.monotonic()
        self._write_credentials()
        self.ports = {name: _free_port() for name in ("kine", "apiserver", "kcm", "scheduler", "kwok")}
        self._spawn(
            "kine",
            [
                "--endpoint",
                f"sqlite://{self.dir}/state.db?_journal=WAL&cache=shared&_busy_timeout=30000",
                "--listen-address",
                f"127.0.0.1:{self.ports['kine']}",
                "--metrics-bind-address",
                "127.0.0.1:0",
            ],
        )
        self._wait_tcp(self.ports["kine"], timeout)
        self._spawn("kube-apiserver", self._apiserver_args())
        self._wait_ready(timeout)
        self._write_kubeconfig()
        component_kubeconfig = str(self.kubeconfig)
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={component_kubeconfig}",
                f"--authentication-kubeconfig={component_kubeconfig}",
                f"--authorization-kubeconfig={component_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['kcm']}",
                "--leader-elect=false",
                f"--service-account-private-key-file={self.dir / 'sa.key'}",
                f"--root-ca-file={self.dir / 'certs' / 'apiserver.crt'}",
                "--use-service-account-credentials=false",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
                "--cluster-cidr=10.42.0.0/16",
                "--service-cluster-ip-range=10.43.0.0/16",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={component_kubeconfig}",
                f"--authentication-kubeconfig={component_kubeconfig}",
                f"--authorization-kubeconfig={component_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['scheduler']}",
                "--leader-elect=false",
            ],
        )
        self._spawn(
            "kwok",
            [
                f"--kubeconfig={component_kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                "--node-ip=127.0.0.1",
                "--cidr=10.42.0.0/24",
                f"--server-address=127.0.0.1:{self.ports['kwok']}",
                f"--config={Path(__file__).resolve().parent / 'kwok-stages.yaml'}",
            ],
        )
        self.add_node()
        self.wait_for(self._node_ready, timeout, f"node {NODE_NAME} to become Ready (kwok)")
        self.wait_for(self._default_service_account, timeout, "the default service account (controller-manager)")
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self):
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for handle in getattr(self, "_logs", {}).values():
            handle.close()
        if self._own_workdir and os.environ.get("ODIN_KEEP_CONTROLPLANE") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- what tests use ----------------------------------------------------------------

    @property
    def server(self):
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def env(self):
        """Environment for kubectl, helm and the kubernetes.core modules."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["HELM_CACHE_HOME"] = str(self.dir / "helm" / "cache")
        env["HELM_CONFIG_HOME"] = str(self.dir / "helm" / "config")
        env["HELM_DATA_HOME"] = str(self.dir / "helm" / "data")
        return env

    def kubectl(self, *args, check=True, input=None, timeout=120):
        proc = subprocess.run(
            [str(self.bin / "kubectl"), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed (rc={proc.returncode}): {proc.stderr}")
        return proc

    def get(self, *args):
        """`kubectl get ... -o json` as a dict (None when it is not found)."""
        proc = self.kubectl("get", *args, "-o", "json", check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr or "not found" in proc.stderr:
                return None
            raise RuntimeError(f"kubectl get {' '.join(args)}: {proc.stderr}")
        return json.loads(proc.stdout)

    def apply(self, manifest, server_side=True):
        args = ["apply", "-f", "-"]
        if server_side:
            args[1:1] = ["--server-side", "--force-conflicts"]
        return self.kubectl(*args, input=manifest)

    def add_node(self, name=NODE_NAME, extra_capacity=None, labels=None):
        capacity = dict(NODE_CAPACITY, **(extra_capacity or {}))
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "node-role.kubernetes.io/control-plane": "true",
                    "type": "kwok",
                    **(labels or {}),
                },
            },
            "spec": {},
            "status": {"capacity": capacity, "allocatable": capacity},
        }
        self.kubectl("create", "-f", "-", input=json.dumps(node))

    def set_gpus(self, count, name=NODE_NAME):
        """Advertise `count` nvidia.com/gpu on the node, as the device plugin would."""
        patch = {"status": {"capacity": {"nvidia.com/gpu": str(count)}, "allocatable": {"nvidia.com/gpu": str(count)}}}
        self.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(patch))

    def wait_for(self, predicate, timeout, what, interval=0.5):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if predicate():
                    return
            except (RuntimeError, OSError, ValueError) as exc:
                last = exc
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last})\n{self.logs_tail()}")

    def logs_tail(self, lines=20):
        out = []
        for name in self.procs:
            path = self.dir / f"{name}.log"
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name} ---\n" + "\n".join(text))
        return "\n".join(out)

    def rss_mib(self):
        """Resident memory of each component in MiB, from /proc."""
        sizes = {}
        for name, proc in self.procs.items():
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    sizes[name] = int(line.split()[1]) / 1024
        return sizes

    # -- internals --------------------------------------------------------------------

    def _spawn(self, name, args):
        self._logs = getattr(self, "_logs", {})
        log = open(self.dir / f"{name}.log", "w")  # noqa: SIM115 # closed in stop()
        self._logs[name] = log
        self.procs[name] = subprocess.Popen(  # noqa: S603 # our own built binaries
            [str(self.bin / name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 # no threads have started in the child
        )

    def _check_alive(self):
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with rc={proc.returncode}\n{self.logs_tail(40)}")

    def _wait_tcp(self, port, timeout):
        def listening():
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        self.wait_for(listening, timeout, f"port {port}", interval=0.1)

    def _wait_ready(self, timeout):
        def ready():
            if not (self.dir / "certs" / "apiserver.crt").exists():
                return False
            context = ssl.create_default_context(cafile=str(self.dir / "certs" / "apiserver.crt"))
            request = urllib.request.Request(f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.token}"})  # noqa: S310
            with urllib.request.urlopen(request, timeout=3, context=context) as response:  # noqa: S310 (https on loopback)
                return response.status == 200

        self.wait_for(ready, timeout, "kube-apiserver /readyz", interval=0.2)

    def _node_ready(self):
        node = self.get("node", NODE_NAME)
        conditions = (node or {}).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _default_service_account(self):
        return self.get("serviceaccount", "default", "-n", "default") is not None

    def _write_credentials(self):
        (self.dir / "certs").mkdir(parents=True, exist_ok=True)
        self.token = secrets.token_hex(24)
        (self.dir / "tokens.csv").write_text(f'{self.token},odin-test-admin,odin-test-admin,"system:masters"\n')
        openssl = shutil.which("openssl") or "openssl"
        subprocess.run([openssl, "genrsa", "-out", str(self.dir / "sa.key"), "2048"], check=True, capture_output=True)  # noqa: S603
        subprocess.run(  # noqa: S603
            [openssl, "rsa", "-in", str(self.dir / "sa.key"), "-pubout", "-out", str(self.dir / "sa.pub")],
            check=True,
            capture_output=True,
        )
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        (self.dir / "encryption.yaml").write_text(
            "apiVersion: apiserver.config.k8s.io/v1\n"
            "kind: EncryptionConfiguration\n"
            "resources:\n"
            "  - resources: [secrets]\n"
            "    providers:\n"
            "      - aescbc:\n"
            "          keys:\n"
            f"            - name: odin-test\n              secret: {key}\n"
            "      - identity: {}\n"
        )
        for name in ("tokens.csv", "sa.key", "encryption.yaml"):
            (self.dir / name).chmod(0o600)

    def _apiserver_args(self):
        return [
            f"--etcd-servers=http://127.0.0.1:{self.ports['kine']}",
            "--storage-backend=etcd3",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            f"--cert-dir={self.dir / 'certs'}",
            f"--token-auth-file={self.dir / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.dir / 'sa.pub'}",
            f"--service-account-signing-key-file={self.dir / 'sa.key'}",
            "--service-cluster-ip-range=10.43.0.0/16",
            f"--encryption-provider-config={self.dir / 'encryption.yaml'}",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--enable-admission-plugins=NodeRestriction",
            "--profiling=false",
        ]

    def _write_kubeconfig(self):
        ca = base64.b64encode((self.dir / "certs" / "apiserver.crt").read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "odin-test", "cluster": {"server": self.server, "certificate-authority-data": ca}}],
            "users": [{"name": "odin-test-admin", "user": {"token": self.token}}],
            "contexts": [{"name": "odin-test", "context": {"cluster": "odin-test", "user": "odin-test-admin"}}],
            "current-context": "odin-test",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    def etcd_secret_value(self, namespace, name):
        """The raw bytes kine stored for a Secret (to check encryption at rest)."""
        with sqlite3.connect(f"file:{self.dir / 'state.db'}?mode=ro", uri=True) as db:
            row = db.execute(
                "SELECT value FROM kine WHERE name = ? ORDER BY id DESC LIMIT 1",
                (f"/registry/secrets/{namespace}/{name}",),
            ).fetchone()
        return row[0] if row else None


def main():
    bin_dir, seconds, reused = build()
    print(f"control plane binaries in {bin_dir} ({'reused' if reused else 'built'} in {seconds:.0f}s)")
    plane = ControlPlane(bin_dir)
    plane.start()
    print(f"ready in {plane.startup_seconds:.1f}s; KUBECONFIG={plane.kubeconfig}")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())
