#!/usr/bin/env python3
"""What a no-change re-run of each layer costs, against its first converge, in the same run.

    .venv/bin/python benchmarks/rerun.py [--runs 2] [--logs DIR] [scenario ...]

For each layer that has a molecule scenario (in site.yml's order, or the ones named), on a
fresh systemd test container: `molecule create` and `molecule prepare` (not timed), one
timed `molecule converge` (the first converge), then --runs timed converges more, which
change nothing on a converged host (the no-op runs), then `molecule destroy`. From each
run's PLAY RECAP it counts the tasks run (ok + changed + failed + skipped) and the changes.

It prints per layer, twice: for the `molecule converge` command's wall time (molecule's
own start-up included) and for ansible-playbook's own time (the profile_tasks callback's
total), the first converge's seconds, the no-op runs' median and their ratio (no-op /
converge); then the tasks and changes of the first converge and of the no-op runs. A no-op run that changes anything is
marked, as it is not a no-op. With --logs, each converge's output (with the per-task
times of the profile_tasks callback) is kept as DIR/<layer>-<run>.log for profiling.

Figures, not a pass/fail test: they depend on the machine and on what else runs on it.
Needs what `make molecule` needs (Docker, the test image); it starts them the same way.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
# site.yml's order; each scenario converges its layer (and what the layer needs first).
LAYERS = ["preflight", "nvidia_driver", "nvidia_container_toolkit", "k3s", "monitoring", "backup", "verify"]
# profile_tasks' summary line: "Monday ... (0:00:00.067)       0:00:26.936 ****": the play's time.
PLAY_TIME = re.compile(r"\(\d+:\d+:[\d.]+\)\s+(\d+):(\d+):([\d.]+)\s+\*+\s*$", re.MULTILINE)
RECAP = re.compile(
    r"^\S+\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)", re.MULTILINE
)


def environment():
    env = dict(os.environ)
    env.update(
        {
            "PATH": "%s%s%s" % (BIN, os.pathsep, env.get("PATH", "")),
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "PY_COLORS": "0",
            "NO_COLOR": "1",
            "MOLECULE_IMAGE": env.get("MOLECULE_IMAGE", "odin-test/debian12:latest"),
        }
    )
    return env


def molecule(env, action, scenario):
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "molecule"), action, "-s", scenario],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    if result.returncode != 0:
        sys.stderr.write(output[-6000:])
        raise SystemExit("molecule %s -s %s failed (rc=%d)" % (action, scenario, result.returncode))
    return seconds, output


def recap(output):
    """(tasks, changed) summed over every PLAY RECAP line of a converge's output."""
    tasks = changed = 0
    for ok, chg, _unreachable, failed, skipped in RECAP.findall(output):
        tasks += int(ok) + int(chg) + int(failed) + int(skipped)
        changed += int(chg)
    return tasks, changed


def play_seconds(output):
    """ansible-playbook's own time, from the last profile_tasks summary line (None if absent)."""
    found = PLAY_TIME.findall(output)
    if not found:
        return None
    hours, minutes, seconds = found[-1]
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def measure(env, scenario, runs, logs):
    molecule(env, "destroy", scenario)
    try:
        molecule(env, "create", scenario)
        molecule(env, "prepare", scenario)
        first_s, first_out = molecule(env, "converge", scenario)
        again = [molecule(env, "converge", scenario) for _ in range(runs)]
    finally:
        molecule(env, "destroy", scenario)
    if logs:
        for index, output in enumerate([first_out] + [output for _seconds, output in again]):
            (logs / ("%s-%s.log" % (scenario, "converge" if index == 0 else "noop%d" % index))).write_text(output)
    noop = [recap(output) for _seconds, output in again]
    return {
        "layer": scenario,
        "converge_s": first_s,
        "noop_s": statistics.median(seconds for seconds, _output in again),
        "converge_play_s": play_seconds(first_out),
        "noop_play_s": statistics.median(play_seconds(output) or 0.0 for _seconds, output in again),
        "first": recap(first_out),
        "noop_tasks": max(tasks for tasks, _changed in noop),
        "noop_changed": max(changed for _tasks, changed in noop),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help="layers to measure (default: every layer, in site.yml order)")
    parser.add_argument("--runs", type=int, default=2, help="no-op runs after the first converge (default 2)")
    parser.add_argument("--logs", type=Path, help="keep each converge's output in this directory")
    args = parser.parse_args()
    unknown = sorted(set(args.scenarios) - set(LAYERS))
    if unknown:
        parser.error("no such layer: %s (choose from %s)" % (", ".join(unknown), ", ".join(LAYERS)))
    if args.runs < 1:
        parser.error("--runs must be 1 or more")
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    env = environment()
    for script in ("host-deps.sh", "start-docker.sh", "build-test-image.sh"):
        subprocess.run([str(REPO / "scripts" / script)], cwd=REPO, env=env, check=True, capture_output=True)

    rows = []
    for scenario in args.scenarios or LAYERS:
        print("measuring %s ..." % scenario, file=sys.stderr, flush=True)
        rows.append(measure(env, scenario, args.runs, args.logs))

    header = "%-26s %21s %21s %13s %9s" % ("", "molecule converge", "ansible-playbook", "tasks", "changed")
    sub = "%-26s %7s %7s %5s %7s %7s %5s %13s %9s" % (
        "layer",
        "1st s",
        "no-op s",
        "ratio",
        "1st s",
        "no-op s",
        "ratio",
        "1st/no-op",
        "1st/no-op",
    )
    print(header)
    print(sub)
    print("-" * len(sub))
    for row in rows:
        first_tasks, first_changed = row["first"]
        play_first, play_noop = row["converge_play_s"], row["noop_play_s"]
        print(
            "%-26s %7.1f %7.1f %5.2f %7.1f %7.1f %5.2f %6d/%-6d %4d/%-4d%s"
            % (
                row["layer"],
                row["converge_s"],
                row["noop_s"],
                row["noop_s"] / row["converge_s"],
                play_first or 0.0,
                play_noop,
                play_noop / play_first if play_first else 0.0,
                first_tasks,
                row["noop_tasks"],
                first_changed,
                row["noop_changed"],
                "  (the no-op run changed something)" if row["noop_changed"] else "",
            )
        )
    total = {
        key: sum(row[key] or 0.0 for row in rows) for key in ("converge_s", "noop_s", "converge_play_s", "noop_play_s")
    }
    print(
        "%-26s %7.1f %7.1f %5.2f %7.1f %7.1f %5.2f"
        % (
            "all layers measured",
            total["converge_s"],
            total["noop_s"],
            total["noop_s"] / total["converge_s"],
            total["converge_play_s"],
            total["noop_play_s"],
            total["noop_play_s"] / total["converge_play_s"] if total["converge_play_s"] else 0.0,
        )
    )
    print(
        "molecule converge: the command's wall time (molecule's own start included); "
        "ansible-playbook: the play's time as profile_tasks measures it."
    )
    print(
        "site.yml as one run: not measured here. Its K3s, GPU and monitoring layers need a real K3s "
        "and GPU, which each scenario replaces with its own stand-in; the e2e workflow runs site.yml."
    )


if __name__ == "__main__":
    main()
