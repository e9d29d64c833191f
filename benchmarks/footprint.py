#!/usr/bin/env python3
"""Memory and CPU the monitoring layer asks Kubernetes for, from its rendered values.

Sums the requests and limits of every long-running monitoring container in the Helm
values the monitoring role renders, prints them against the layer's budget (2 GiB of
memory and 1.5 CPU requested in total) and against what the charts request when they
are installed with their own defaults.

    benchmarks/footprint.py                      # renders with the role's defaults first
    benchmarks/footprint.py /var/lib/odin/rendered/monitoring
    benchmarks/footprint.py --no-gpu --check     # exit 1 when over the budget

Pods of one-off Jobs (the operator's admission-webhook patch) and init containers are
left out: they do not run alongside the others.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# The collection's own quantity parser, the one the monitoring role checks settings with.
sys.path.insert(0, str(REPO / "collections"))
from ansible_collections.odin.stack.plugins.module_utils import _settings  # noqa: E402

BUDGET = {"cpu": 1.5, "memory": 2 * 1024**3}

# component, values file, path to its resources, containers using them, GPU only
COMPONENTS = [
    ("prometheus", "kube-prometheus-stack", "prometheus.prometheusSpec.resources", 1, False),
    (
        "prometheus config-reloader",
        "kube-prometheus-stack",
        "prometheusOperator.prometheusConfigReloader.resources",
        1,
        False,
    ),
    ("alertmanager", "kube-prometheus-stack", "alertmanager.alertmanagerSpec.resources", 1, False),
    (
        "alertmanager config-reloader",
        "kube-prometheus-stack",
        "prometheusOperator.prometheusConfigReloader.resources",
        1,
        False,
    ),
    ("prometheus-operator", "kube-prometheus-stack", "prometheusOperator.resources", 1, False),
    ("grafana", "kube-prometheus-stack", "grafana.resources", 1, False),
    ("grafana sidecars (dashboards, datasources)", "kube-prometheus-stack", "grafana.sidecar.resources", 2, False),
    ("kube-state-metrics", "kube-prometheus-stack", "kube-state-metrics.resources", 1, False),
    ("node-exporter (per node)", "kube-prometheus-stack", "prometheus-node-exporter.resources", 1, False),
    ("loki (single binary)", "loki", "singleBinary.resources", 1, False),
    ("alloy (per node)", "alloy", "alloy.resources", 1, False),
    ("alloy config-reloader (per node)", "alloy", "configReloader.resources", 1, False),
    ("dcgm-exporter (per GPU node)", "dcgm-exporter", "resources", 1, True),
]

# What the charts request with their own values, looked up in each chart's values.yaml
# at the versions the role pins. An empty dict means the chart sets no resources: the
# container runs BestEffort with no request and no limit.
CHART_DEFAULTS = {
    "source": {
        "kube-prometheus-stack 88.5.3": "prometheus-community/helm-charts charts/kube-prometheus-stack/values.yaml",
        "grafana 12.11.1": "grafana-community/helm-charts charts/grafana/values.yaml",
        "kube-state-metrics 8.4.0": "prometheus-community/helm-charts charts/kube-state-metrics/values.yaml",
        "node-exporter 4.56.1": "prometheus-community/helm-charts charts/prometheus-node-exporter/values.yaml",
        "loki 18.11.0": "grafana-community/helm-charts charts/loki/values.yaml, templates/memcached/",
        "alloy 1.11.1": "grafana/alloy operations/helm/charts/alloy/values.yaml",
        "dcgm-exporter 4.8.2": "NVIDIA/dcgm-exporter deployment/values.yaml",
    },
    "components": [
        ("prometheus", {}),
        ("prometheus config-reloader", {}),
        ("alertmanager", {}),
        ("alertmanager config-reloader", {}),
        ("prometheus-operator", {}),
        ("grafana", {}),
        ("grafana sidecars (dashboards, datasources)", {}),
        ("kube-state-metrics", {}),
        ("node-exporter (per node)", {}),
        ("loki (single binary)", {}),
        ("loki rules sidecar", {}),
        ("loki gateway (nginx)", {}),
        ("loki canary (per node)", {}),
        # memcached requests round(allocatedMemory * 1.2) Mi with allocatedMemory 8192 / 1024
        (
            "loki chunks-cache (memcached)",
            {"requests": {"cpu": "500m", "memory": "9830Mi"}, "limits": {"memory": "9830Mi"}},
        ),
        (
            "loki results-cache (memcached)",
            {"requests": {"cpu": "500m", "memory": "1229Mi"}, "limits": {"memory": "1229Mi"}},
        ),
        ("alloy (per node)", {}),
        ("alloy config-reloader (per node)", {"requests": {"cpu": "10m", "memory": "50Mi"}}),
        (
            "dcgm-exporter (per GPU node)",
            {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "200m", "memory": "512Mi"}},
        ),
    ],
}


def quantity(value):
    """A Kubernetes quantity ("100m", "1", "512Mi", "1.5Gi") as a float (cores or bytes)."""
    number = _settings.quantity(value)
    if number is None:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return number


def dig(data, dotted):
    node = data
    for key in dotted.split("."):
        node = (node or {}).get(key)
    return node or {}


def totals(rows):
    out = {"requests": {"cpu": 0.0, "memory": 0.0}, "limits": {"cpu": 0.0, "memory": 0.0}, "unbounded": []}
    for name, resources, count in rows:
        for kind in ("requests", "limits"):
            for res in ("cpu", "memory"):
                value = (resources.get(kind) or {}).get(res)
                if value is not None:
                    out[kind][res] += quantity(value) * count
        if not (resources.get("limits") or {}).get("memory"):
            out["unbounded"].append(name)
    return out


def rendered_rows(rendered_dir, gpu=True):
    files = {}
    rows = []
    for name, values, path, count, gpu_only in COMPONENTS:
        if gpu_only and not gpu:
            continue
        if values not in files:
            files[values] = yaml.safe_load((Path(rendered_dir) / f"{values}.values.yaml").read_text())
        rows.append((name, dig(files[values], path), count))
    return rows


def default_rows(gpu=True):
    return [(n, r, 1) for n, r in CHART_DEFAULTS["components"] if gpu or not n.startswith("dcgm")]


def render(target):
    """Run the role's validate and render phases with its defaults into target."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    bin_dir = Path(sys.executable).parent
    cmd = [
        str(bin_dir / "ansible-playbook"), "-i", "localhost,", "tests/integration/files/monitoring_render.yml",
        "-e", f"odin_state_dir={target}", "-e", f"_monitoring_unit_dir={target}",
        "-e", "odin_gpu_resolved=true", "-e", "ansible_become=false",
        "--tags", "monitoring_validate,monitoring_render",
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"rendering failed:\n{result.stdout}\n{result.stderr}")
    return Path(target) / "rendered" / "monitoring"


def _fmt_cpu(v):
    return f"{v * 1000:.0f}m"


def _fmt_mem(v):
    return f"{v / 1024**2:.0f}Mi"


def report(rows, defaults):
    width = max(len(f"{r[0]} x{r[2]}") for r in rows + defaults) + 2
    print(f"{'component':<{width}}{'req cpu':>9}{'req mem':>10}{'lim cpu':>9}{'lim mem':>10}")
    for name, res, count in rows:
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        cells = [req.get("cpu"), req.get("memory"), lim.get("cpu"), lim.get("memory")]
        label = f"{name} x{count}" if count > 1 else name
        print(
            f"{label:<{width}}" + "".join(f"{str(c or '-'):>{w}}" for c, w in zip(cells, (9, 10, 9, 10), strict=True))
        )
    ours, theirs = totals(rows), totals(defaults)
    print()
    print(f"{'':<{width}}{'requests':>19}{'limits':>19}")
    for label, t in (("rendered (ODIN)", ours), ("chart defaults", theirs)):
        req = f"{_fmt_cpu(t['requests']['cpu'])} {_fmt_mem(t['requests']['memory'])}"
        lim = f"{_fmt_cpu(t['limits']['cpu'])} {_fmt_mem(t['limits']['memory'])}"
        print(f"{label:<{width}}{req:>19}{lim:>19}")
    print(f"{'budget':<{width}}{_fmt_cpu(BUDGET['cpu']) + ' ' + _fmt_mem(BUDGET['memory']):>19}")
    print()
    print(
        f"requests use {ours['requests']['cpu'] / BUDGET['cpu']:.0%} of the CPU budget and "
        f"{ours['requests']['memory'] / BUDGET['memory']:.0%} of the memory budget"
    )
    unbounded = ", ".join(theirs["unbounded"])
    print(f"chart defaults: {len(theirs['unbounded'])} containers without a memory limit: {unbounded}")
    if ours["unbounded"]:
        print(f"rendered: containers without a memory limit: {', '.join(ours['unbounded'])}")
    print("sources of the chart defaults:")
    for chart, where in CHART_DEFAULTS["source"].items():
        print(f"  {chart}: {where}")
    return ours


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rendered", nargs="?", help="rendered/monitoring directory (default: render into a temp dir)")
    parser.add_argument("--no-gpu", action="store_true", help="leave dcgm-exporter out (a host without GPU)")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when requests exceed the budget or a limit is missing"
    )
    parser.add_argument("--json", action="store_true", help="print the totals as JSON instead of a table")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rendered = Path(args.rendered) if args.rendered else render(tmp)
        rows = rendered_rows(rendered, gpu=not args.no_gpu)
        defaults = default_rows(gpu=not args.no_gpu)
        if args.json:
            ours = totals(rows)
            print(json.dumps({"rendered": ours, "chart_defaults": totals(defaults), "budget": BUDGET}, indent=2))
        else:
            ours = report(rows, defaults)
    if args.check:
        over = [r for r in ("cpu", "memory") if ours["requests"][r] > BUDGET[r]]
        if over or ours["unbounded"]:
            print(f"over budget: {over}; without limits: {ours['unbounded']}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
