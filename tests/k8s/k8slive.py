"""Helpers for the stage that runs the Kubernetes layers against a real control plane."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TEST_CHARTS = REPO / "tests" / "charts"
HOST = "odin-test-host"


def say(message):
    """A line for the stage log (pytest runs this stage with -s)."""
    print(f"[k8s-live] {message}", flush=True)


def package_charts(plane, dest, versions, source=TEST_CHARTS):
    """Package the test charts at the versions the roles pin and write SHA256SUMS."""
    dest.mkdir(parents=True, exist_ok=True)
    helm = str(plane.bin / "helm")
    for chart, version in versions.items():
        proc = subprocess.run(
            [helm, "package", str(source / chart), "--version", version, "--destination", str(dest)],
            env=plane.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
    lines = []
    for archive in sorted(dest.glob("*.tgz")):
        lines.append(f"{hashlib.sha256(archive.read_bytes()).hexdigest()}  {archive.name}\n")
    (dest / "SHA256SUMS").write_text("".join(lines))
    return dest


class Playbook:
    """Runs a playbook of the collection against this host; returns a Run."""

    def __init__(self, plane, workdir, extra_vars):
        self.plane = plane
        self.workdir = workdir
        self.extra_vars = extra_vars
        self.inventory = workdir / "inventory.yml"
        self.inventory.write_text(
            json.dumps(
                {
                    "all": {
                        "children": {
                            "k3s_server": {
                                "hosts": {
                                    HOST: {
                                        "ansible_connection": "local",
                                        "ansible_python_interpreter": sys.executable,
                                    }
                                }
                            },
                            "k3s_agent": {"hosts": {}},
                        }
                    }
                }
            )
        )

    def env(self):
        env = self.plane.env()
        env.update(
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            PATH=f"{VENV_BIN}{os.pathsep}{env['PATH']}",
        )
        # No network but loopback: any HTTP(S) request for a host other than 127.0.0.1 or
        # localhost goes to a proxy port where nothing listens, and fails. The layers must
        # run from local sources (the chart directory, the bundle) alone.
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            env[name] = "http://127.0.0.1:9"
        env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
        return env

    def __call__(self, playbook, *args, extra=None, check=True, label=None):
        vars_file = self.workdir / "extra-vars.json"
        vars_file.write_text(json.dumps({**self.extra_vars, **(extra or {})}))
        env = self.env()
        start = time.monotonic()
        proc = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory), "-e", f"@{vars_file}", playbook, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        run = Run(playbook, proc, time.monotonic() - start)
        say(f"{label or playbook} {' '.join(args)}: {run.summary()}")
        if check and (proc.returncode != 0):
            raise AssertionError(f"{playbook} failed (rc={proc.returncode}):\n{run.failures()}\n{proc.stderr[-3000:]}")
        return run


class Run:
    def __init__(self, playbook, proc, seconds):
        self.playbook = playbook
        self.proc = proc
        self.seconds = seconds
        # The json callback's document, between the profile_tasks lines around it.
        try:
            self.data, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{") :])
        except ValueError as exc:
            raise AssertionError(f"{playbook}: no JSON result in its output ({exc}):\n{proc.stdout[-3000:]}") from exc

    @property
    def rc(self):
        return self.proc.returncode

    @property
    def stats(self):
        return self.data.get("stats", {}).get(HOST, {})

    @property
    def changed(self):
        return self.stats.get("changed", 0)

    def tasks(self):
        for play in self.data.get("plays", []):
            for task in play.get("tasks", []):
                result = task.get("hosts", {}).get(HOST)
                if result is not None:
                    # "odin.stack.k3s : Apply ..." -> "Apply ..."
                    yield task["task"]["name"].split(" : ", 1)[-1], result

    def changed_tasks(self):
        return [name for name, result in self.tasks() if result.get("changed")]

    def result(self, name):
        """The (last) result of the task called `name`."""
        found = None
        for task_name, result in self.tasks():
            if task_name == name:
                found = result
        assert found is not None, f"task {name!r} did not run; tasks: {[n for n, _ in self.tasks()]}"
        return found

    def messages(self):
        out = []
        for name, result in self.tasks():
            for item in result.get("results", [result]):
                if isinstance(item, dict) and item.get("msg") and not item.get("skipped"):
                    out.append(f"{name}: {item['msg']}")
        return out

    def failures(self):
        out = []
        for name, result in self.tasks():
            if result.get("failed") or any(isinstance(i, dict) and i.get("failed") for i in result.get("results", [])):
                items = [i for i in result.get("results", [result]) if isinstance(i, dict) and i.get("failed")]
                out.append(f"FAILED {name}: " + " | ".join(str(i.get("msg", ""))[:2000] for i in items or [result]))
        return "\n".join(out)

    def summary(self):
        changed = self.changed_tasks()
        return f"rc={self.rc} changed={self.changed} in {self.seconds:.1f}s" + (
            f" ({'; '.join(changed)})" if changed else ""
        )
