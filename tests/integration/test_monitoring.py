"""The monitoring role's rendered output, checked with the real tools it is meant for.

The role's validate and render phases run on this machine (ansible-playbook, local
connection) into temporary state directories; promtool, amtool, kubernetes-validate and
a real Prometheus then check what came out. Applying to a cluster needs K3s and the
chart repositories, which this machine does not have: the e2e workflow covers it.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from localnet import free_port, get_json

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "monitoring"
RENDER = "tests/integration/files/monitoring_render.yml"
SECRET_MARK = "SECRET-4711"  # noqa: S105 (a marker the tests search outputs for)


def _tool(name):
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed (scripts/host-deps.sh installs it)")
    return path


def _playbook(args):
    """ansible-playbook from this venv against the checkout (usable from module fixtures)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(
        [str(Path(sys.executable).parent / args[0]), *args[1:]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _render(state, *extra, options=()):
    """Validate and render into state; unit files go next to it (state/../units)."""
    units = Path(state).parent / "units"
    args = [
        "ansible-playbook",
        "-i",
        "localhost,",
        RENDER,
        "-e",
        f"odin_state_dir={state}",
        "-e",
        f"_monitoring_unit_dir={units}",
        "-e",
        "odin_gpu_resolved=true",
        # The tests run as root without sudo; the role's become is for real hosts.
        "-e",
        "ansible_become=false",
    ]
    for item in extra:
        args += ["-e", item]
    units.mkdir(parents=True, exist_ok=True)
    return _playbook([*args, *options])


def _changed(output):
    for line in output.splitlines():
        if line.startswith("localhost") and "changed=" in line:
            return int(line.split("changed=")[1].split()[0])
    raise AssertionError(f"no recap in output:\n{output}")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    state = tmp_path_factory.mktemp("monitoring") / "state"
    # As verbose as a user debugging would run it: no secret may show even then.
    result = _render(state, f"@{FIXTURES / 'receivers.yml'}", options=("--diff", "-vvv"))
    assert result.returncode == 0, result.stdout + result.stderr
    return {"state": state, "dir": state / "rendered" / "monitoring", "output": result.stdout + result.stderr}


def _docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _dashboards(rendered):
    boards = {}
    for cm in _docs(rendered["dir"] / "dashboards.yaml"):
        for key, text in cm["data"].items():
            boards[key] = json.loads(text)
    return boards


def _rule_alerts(rendered):
    rules = yaml.safe_load((rendered["dir"] / "rules" / "odin.rules.yml").read_text())
    return [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]


# --- rendering ----------------------------------------------------------------------


def test_render_writes_every_file_private(rendered):
    expected = {
        "kube-prometheus-stack.values.yaml",
        "loki.values.yaml",
        "alloy.values.yaml",
        "dcgm-exporter.values.yaml",
        "namespace.yaml",
        "networkpolicies.yaml",
        "dashboards.yaml",
        "prometheusrule.yaml",
    }
    assert expected <= {p.name for p in rendered["dir"].iterdir()}
    for path in [*rendered["dir"].rglob("*"), rendered["state"] / "secrets" / "alertmanager.yaml"]:
        if path.is_file():
            assert oct(path.stat().st_mode & 0o777) == "0o600", path
    assert "SKIPPED applying the monitoring releases" in rendered["output"]


def test_second_render_changes_nothing_and_keeps_the_password(rendered):
    password_file = rendered["state"] / "secrets" / "grafana-admin-password"
    before = {p: p.read_bytes() for p in rendered["state"].rglob("*") if p.is_file()}
    result = _render(rendered["state"], f"@{FIXTURES / 'receivers.yml'}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert _changed(output) == 0, output
    after = {p: p.read_bytes() for p in rendered["state"].rglob("*") if p.is_file()}
    assert before == after
    password = password_file.read_text().strip()
    assert len(password) >= 24 and password != "admin"  # noqa: S105
    assert oct(password_file.stat().st_mode & 0o777) == "0o600"


def test_check_mode_on_a_fresh_host_writes_nothing(tmp_path):
    state = tmp_path / "state"
    result = _render(state, options=["--check"])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert _changed(output) > 0, output
    assert not state.exists(), sorted(str(p) for p in state.rglob("*"))


def test_control_plane_monitors_scrape_the_node_address_when_enabled(tmp_path):
    state = tmp_path / "state"
    result = _render(state, "monitoring_control_plane_monitors=true")
    assert result.returncode == 0, result.stdout + result.stderr
    kps = yaml.safe_load((state / "rendered/monitoring/kube-prometheus-stack.values.yaml").read_text())
    ports = {"kubeControllerManager": 10257, "kubeScheduler": 10259, "kubeProxy": 10249, "kubeEtcd": 2381}
    for monitor, port in ports.items():
        assert kps[monitor]["enabled"] is True
        assert kps[monitor]["service"]["port"] == port
        assert kps[monitor]["endpoints"] and kps[monitor]["endpoints"][0]
    assert kps["defaultRules"]["rules"]["etcd"] is True


def test_secrets_stay_out_of_output_and_values(rendered):
    password = (rendered["state"] / "secrets" / "grafana-admin-password").read_text().strip()
    assert password not in rendered["output"]
    assert SECRET_MARK not in rendered["output"]
    for path in rendered["dir"].rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert SECRET_MARK not in text, path
            assert password not in text, path
    # They are where Alertmanager needs them, and nowhere else.
    assert SECRET_MARK in (rendered["state"] / "secrets" / "alertmanager.yaml").read_text()


def test_changed_receiver_secrets_show_in_no_diff(rendered, tmp_path):
    """A re-render that changes every receiver secret, at -vvv --diff: neither old nor new shows."""
    receivers = yaml.safe_load((FIXTURES / "receivers.yml").read_text())
    changed = json.loads(json.dumps(receivers).replace("SECRET-4711", "SECRET-0042"))
    extra = tmp_path / "receivers.json"
    extra.write_text(json.dumps(changed))
    state = tmp_path / "state"
    first = _render(state, f"@{FIXTURES / 'receivers.yml'}")
    assert first.returncode == 0, first.stdout[-3000:]
    result = _render(state, f"@{extra}", options=("--diff", "-vvv"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert _changed(output) >= 1, "the secrets changed, so the Alertmanager configuration must be rewritten"
    assert "SECRET-4711" not in output and "SECRET-0042" not in output
    assert "SECRET-0042" in (state / "secrets" / "alertmanager.yaml").read_text()


# --- alerts -----------------------------------------------------------------------


def test_rules_pass_promtool_check(rendered):
    promtool = _tool("promtool")
    result = subprocess.run(
        [promtool, "check", "rules", str(rendered["dir"] / "rules" / "odin.rules.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_unit_test(rendered):
    tests = yaml.safe_load((FIXTURES / "alerts_test.yml").read_text())["tests"]
    cases = [c for group in tests for c in group["alert_rule_test"]]
    for alert in _rule_alerts(rendered):
        fires = [c for c in cases if c["alertname"] == alert and c["exp_alerts"]]
        silent = [c for c in cases if c["alertname"] == alert and not c["exp_alerts"]]
        assert fires, f"{alert} has no test where it fires"
        if alert != "Watchdog":
            assert silent, f"{alert} has no test where it stays silent"


def test_alert_unit_tests_pass(rendered, tmp_path):
    promtool = _tool("promtool")
    shutil.copy(rendered["dir"] / "rules" / "odin.rules.yml", tmp_path / "odin.rules.yml")
    shutil.copy(FIXTURES / "alerts_test.yml", tmp_path / "alerts_test.yml")
    result = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_prometheusrule_wraps_the_same_rules(rendered):
    (rule,) = _docs(rendered["dir"] / "prometheusrule.yaml")
    plain = yaml.safe_load((rendered["dir"] / "rules" / "odin.rules.yml").read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["spec"] == plain


def test_gpu_queries_use_metrics_geforce_cards_expose(rendered):
    rules = yaml.safe_load((rendered["dir"] / "rules" / "odin.rules.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    exprs += [t["expr"] for b in _dashboards(rendered).values() for p in b["panels"] for t in p["targets"]]
    assert any("DCGM_FI_DEV_GPU_TEMP" in e for e in exprs)
    assert not [e for e in exprs if "DCGM_FI_PROF_" in e]
    dcgm = yaml.safe_load((rendered["dir"] / "dcgm-exporter.values.yaml").read_text())
    lines = [line for line in dcgm["customMetrics"].splitlines() if line and not line.startswith("#")]
    fields = [line.split(",")[0].strip() for line in lines]
    assert "DCGM_FI_DEV_XID_ERRORS" in fields and "DCGM_EXP_CLOCK_EVENTS_COUNT" in fields
    assert all(f.startswith(("DCGM_FI_DEV_", "DCGM_FI_DRIVER_", "DCGM_EXP_")) for f in fields), fields


# --- alertmanager -----------------------------------------------------------------


def test_alertmanager_config_passes_amtool(rendered):
    amtool = _tool("amtool")
    config = rendered["state"] / "secrets" / "alertmanager.yaml"
    result = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["alertname=Watchdog", "severity=none"], "null"),
        (["alertname=GpuTemperatureCritical", "severity=critical"], "ops-phone,ops-chat"),
        (["alertname=NodeMemoryLow", "severity=warning"], "ops-mail"),
        (["alertname=GpuTemperatureHigh", "severity=warning"], "ops-chat"),
    ],
)
def test_alertmanager_routes_alerts_to_the_configured_receivers(rendered, labels, receivers):
    amtool = _tool("amtool")
    config = rendered["state"] / "secrets" / "alertmanager.yaml"
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={config}", *labels],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers


# --- dashboards -------------------------------------------------------------------


def test_dashboards_parse_with_unique_uids_and_panel_ids(rendered):
    boards = _dashboards(rendered)
    assert set(boards) == {f"odin-{n}.json" for n in ("gpu", "node", "cluster", "logs", "backups")}
    uids = [b["uid"] for b in boards.values()]
    assert len(uids) == len(set(uids))
    for name, board in boards.items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        assert board["panels"], name
    # Grafana's own {{label}} legends pass through Ansible's templating untouched.
    legends = [t.get("legendFormat") for p in boards["odin-gpu.json"]["panels"] for t in p["targets"]]
    assert "{{gpu}} {{modelName}}" in legends


def test_dashboard_promql_parses(rendered, tmp_path):
    promtool = _tool("promtool")
    rules = []
    for name, board in _dashboards(rendered).items():
        for panel in board["panels"]:
            for target in panel["targets"]:
                if target["datasource"]["type"] == "prometheus":
                    assert target["expr"].strip(), f"{name} panel {panel['id']}"
                    record = f"dashboard:{name.split('.')[0].replace('-', '_')}:{panel['id']}"
                    rules.append({"record": record, "expr": target["expr"]})
    assert len(rules) > 20
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_logql_is_present_and_typed(rendered):
    logs = _dashboards(rendered)["odin-logs.json"]
    loki_targets = [t for p in logs["panels"] for t in p["targets"] if t["datasource"]["type"] == "loki"]
    assert len(loki_targets) >= 3
    for target in loki_targets:
        assert target["datasource"]["uid"] == "loki"
        assert target["queryType"] == "range"
        assert "{" in target["expr"] and "}" in target["expr"]
    assert any('unit=~"k3s' in t["expr"] for t in loki_targets), "the K3s journal has no panel"


def test_datasource_uids_match_the_dashboards(rendered):
    values = yaml.safe_load((rendered["dir"] / "kube-prometheus-stack.values.yaml").read_text())
    grafana = values["grafana"]
    uids = {grafana["sidecar"]["datasources"]["uid"], grafana["sidecar"]["datasources"]["alertmanager"]["uid"]}
    uids |= {d["uid"] for d in grafana["additionalDataSources"]}
    used = {t["datasource"]["uid"] for b in _dashboards(rendered).values() for p in b["panels"] for t in p["targets"]}
    assert used <= uids
    assert uids == {"prometheus", "alertmanager", "loki"}


def test_prometheus_serves_the_snapshot_api_the_backups_use(rendered):
    values = yaml.safe_load((rendered["dir"] / "kube-prometheus-stack.values.yaml").read_text())
    spec = values["prometheus"]["prometheusSpec"]
    assert spec["enableAdminAPI"] is True
    backup_defaults = yaml.safe_load((REPO / "roles/backup/defaults/main.yml").read_text())
    # The backup role finds the TSDB in the PVC that this storage class provisions.
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "local-path-retain"
    assert "_monitoring_prometheus-" in backup_defaults["backup_prometheus_data_dir"]


# --- footprint -----------------------------------------------------------------------


def test_default_footprint_is_within_the_budget(rendered, capsys):
    spec = importlib.util.spec_from_file_location("footprint", REPO / "benchmarks" / "footprint.py")
    footprint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(footprint)
    assert footprint.main([str(rendered["dir"]), "--check"]) == 0
    ours = footprint.totals(footprint.rendered_rows(rendered["dir"]))
    assert ours["requests"]["memory"] <= 2 * 1024**3
    assert ours["requests"]["cpu"] <= 1.5
    assert not ours["unbounded"]
    print(capsys.readouterr().out)


# --- Kubernetes manifests and values ------------------------------------------------


def _kubernetes_version():
    k3s_defaults = REPO / "roles" / "k3s" / "defaults" / "main.yml"
    version = yaml.safe_load(k3s_defaults.read_text())["k3s_version"]
    return version.lstrip("v").split("+")[0]


def test_manifests_pass_kubernetes_validate(rendered):
    version = _kubernetes_version()
    checked = 0
    for name in ("namespace.yaml", "networkpolicies.yaml", "dashboards.yaml"):
        for doc in _docs(rendered["dir"] / name):
            kubernetes_validate.validate(doc, version, strict=True)
            checked += 1
    assert checked >= 12
    (rule,) = _docs(rendered["dir"] / "prometheusrule.yaml")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    print(
        f"validated {checked} manifests against Kubernetes {version}; the PrometheusRule is a CRD kind"
        " (no schema offline): its rules are checked with promtool instead"
    )


def test_network_policies_deny_by_default(rendered):
    policies = {p["metadata"]["name"]: p for p in _docs(rendered["dir"] / "networkpolicies.yaml")}
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    loki = policies["allow-loki-push-and-query"]["spec"]
    assert loki["ingress"][0]["ports"] == [{"port": 3100, "protocol": "TCP"}]


def test_namespace_has_pod_security_labels(rendered):
    (ns,) = _docs(rendered["dir"] / "namespace.yaml")
    labels = ns["metadata"]["labels"]
    assert ns["metadata"]["name"] == "monitoring"
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/warn"] == "baseline"


def test_values_follow_the_k3s_and_laptop_rules(rendered):
    kps = yaml.safe_load((rendered["dir"] / "kube-prometheus-stack.values.yaml").read_text())
    spec = kps["prometheus"]["prometheusSpec"]
    for key in (
        "serviceMonitorSelectorNilUsesHelmValues",
        "podMonitorSelectorNilUsesHelmValues",
        "ruleSelectorNilUsesHelmValues",
        "probeSelectorNilUsesHelmValues",
        "scrapeConfigSelectorNilUsesHelmValues",
    ):
        assert spec[key] is False, key
    assert kps["kubeApiServer"]["enabled"] and kps["kubelet"]["enabled"]
    for monitor in ("kubeControllerManager", "kubeScheduler", "kubeProxy", "kubeEtcd"):
        assert kps[monitor]["enabled"] is False, monitor
    assert {"kubernetes-pods", "kubernetes-service-endpoints"} == {
        j["job_name"] for j in spec["additionalScrapeConfigs"]
    }
    assert spec["retention"] == "15d" and spec["retentionSize"] == "8GiB"
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["storageClassName"] == "local-path-retain"
    assert kps["crds"]["enabled"] is False
    assert kps["alertmanager"]["alertmanagerSpec"]["useExistingSecret"] is True
    assert "--collector.textfile.directory=/host/textfile_collector" in kps["prometheus-node-exporter"]["extraArgs"]
    mount = kps["prometheus-node-exporter"]["extraHostVolumeMounts"][0]
    assert mount["hostPath"] == "/var/lib/node_exporter/textfile_collector"

    loki = yaml.safe_load((rendered["dir"] / "loki.values.yaml").read_text())
    assert loki["deploymentMode"] == "Monolithic"
    assert loki["loki"]["storage"]["type"] == "filesystem"
    assert loki["chunksCache"]["enabled"] is False and loki["resultsCache"]["enabled"] is False
    assert loki["singleBinary"]["persistence"]["storageClass"] == "local-path-retain"

    dcgm = yaml.safe_load((rendered["dir"] / "dcgm-exporter.values.yaml").read_text())
    assert dcgm["runtimeClassName"] == "nvidia" and dcgm["serviceMonitor"]["enabled"] is True

    alloy = yaml.safe_load((rendered["dir"] / "alloy.values.yaml").read_text())
    content = alloy["alloy"]["configMap"]["content"]
    assert "loki.source.journal" in content and "_SYSTEMD_UNIT=k3s.service" in content
    assert "http://loki.monitoring.svc:3100/loki/api/v1/push" in content


def test_port_forward_units_bind_to_the_listen_address(rendered):
    units = rendered["state"].parent / "units"
    expected = {"grafana": 3000, "prometheus": 9090, "alertmanager": 9093, "loki": 3100}
    for name, port in expected.items():
        text = (units / f"odin-monitoring-{name}.service").read_text()
        assert "--address 127.0.0.1 " in text
        assert f" {port}:" in text
    analyze = shutil.which("systemd-analyze")
    if analyze:
        # Syntax only: the ExecStart binary (k3s) does not exist on this machine.
        result = subprocess.run(
            [analyze, "verify", "--man=no", *[str(units / f"odin-monitoring-{n}.service") for n in expected]],
            capture_output=True,
            text=True,
            check=False,
        )
        problems = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if line.strip() and "/usr/local/bin/k3s" not in line and "k3s.service" not in line
        ]
        assert not problems, problems


# --- bad input fails before anything is written -------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            '{"monitoring_alertmanager_receivers": [{"name": "x", "type": "pager", "url": "https://p.test/SECRET-4711"}]}',
            "pager",
        ),
        (
            '{"monitoring_alertmanager_receivers": [{"name": "y", "type": "slack", "url": "SECRET-4711"}]}',
            "need an http(s) url",
        ),
        (
            '{"monitoring_alertmanager_smtp": {"smart_host": "smtp.test:587", "auth_password": "SECRET-4711"}}',
            "smart_host",
        ),
        ("monitoring_prometheus_retention='15 days'", "monitoring_prometheus_retention"),
        ("monitoring_prometheus_retention_size=8gigs", "monitoring_prometheus_retention_size"),
        ("monitoring_prometheus_retention_size=12GiB", "does not fit on the volume"),
        ("monitoring_kube_prometheus_stack_version=88.*", "monitoring_kube_prometheus_stack_version"),
        ("monitoring_loki_version=latest", "monitoring_loki_version"),
        ('{"monitoring_alertmanager_routes": [{"receiver": "nobody", "matchers": ["a=\\"b\\""]}]}', "nobody"),
    ],
)
def test_bad_input_fails_before_any_change(tmp_path, extra, expected):
    state = tmp_path / "state"
    result = _render(state, extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert expected in output, output
    assert SECRET_MARK not in output
    assert _changed(output) == 0, output
    assert not state.exists() or not any((state / "rendered").glob("**/*")), "files were written"


# --- a real Prometheus evaluates the rules ------------------------------------------

TEST_METRICS = """\
# TYPE DCGM_FI_DEV_GPU_TEMP gauge
DCGM_FI_DEV_GPU_TEMP{Hostname="laptop",gpu="0",modelName="NVIDIA GeForce RTX 4090 Laptop GPU"} 95
DCGM_FI_DEV_FB_USED{Hostname="laptop",gpu="0",modelName="NVIDIA GeForce RTX 4090 Laptop GPU"} 1000
DCGM_FI_DEV_FB_FREE{Hostname="laptop",gpu="0",modelName="NVIDIA GeForce RTX 4090 Laptop GPU"} 15000
DCGM_FI_DEV_XID_ERRORS{Hostname="laptop",gpu="0",modelName="NVIDIA GeForce RTX 4090 Laptop GPU"} 43
DCGM_EXP_CLOCK_EVENTS_COUNT{Hostname="laptop",gpu="0",clock_event="gpu_idle"} 1
node_memory_MemAvailable_bytes 8e9
node_memory_MemTotal_bytes 16e9
odin_backup_last_success 1
odin_backup_last_success_timestamp_seconds {now}
"""


class _Metrics(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = TEST_METRICS.replace("{now}", str(int(time.time()))).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_real_prometheus_loads_the_rules_and_evaluates_them(rendered, tmp_path):
    prometheus = _tool("prometheus")
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    port = free_port()
    rules = tmp_path / "odin.rules.yml"
    shutil.copy(rendered["dir"] / "rules" / "odin.rules.yml", rules)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {
                        "job_name": "dcgm-exporter",
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter.server_port}"]}],
                    }
                ],
            }
        )
    )
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "w"),  # noqa: SIM115 (closed with the process)
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 60
        groups, alerts, targets = [], [], []
        while time.monotonic() < deadline:
            time.sleep(1)
            try:
                groups = get_json(f"{base}/rules")["data"]["groups"]
                targets = get_json(f"{base}/targets")["data"]["activeTargets"]
                alerts = get_json(f"{base}/alerts")["data"]["alerts"]
            except OSError:
                continue
            evaluated = groups and all(r.get("lastEvaluation", "").startswith("20") for g in groups for r in g["rules"])
            if (
                evaluated
                and targets
                and targets[0]["health"] == "up"
                and any(a["labels"]["alertname"] == "GpuXidError" for a in alerts)
            ):
                break
        log = (tmp_path / "prometheus.log").read_text()
        names = {g["name"] for g in groups}
        assert names == {"odin.gpu", "odin.exporters", "odin.node", "odin.k3s", "odin.backup", "odin.meta"}, log
        for group in groups:
            for rule in group["rules"]:
                assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
        assert targets[0]["health"] == "up", targets
        state = {a["labels"]["alertname"]: a["state"] for a in alerts}
        # No 'for': fire at once. With a 'for': pending. Healthy series: nothing.
        assert state.get("Watchdog") == "firing", state
        assert state.get("GpuXidError") == "firing", state
        assert state.get("GpuTemperatureCritical") == "pending", state
        assert state.get("GpuTemperatureHigh") == "pending", state
        for quiet in ("GpuMemoryNearFull", "GpuThermalThrottling", "NodeMemoryLow", "BackupStale", "BackupFailed"):
            assert quiet not in state, state
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        exporter.shutdown()
