"""odin.stack.stack_verify against real Prometheus and Alertmanager (Debian packages) on 127.0.0.1.

Prometheus scrapes itself, Alertmanager and a port where nothing listens, and evaluates a
Watchdog rule that always fires; Alertmanager routes the test notification to a webhook
served by this test, and a second route to a webhook that refuses connections. The module
runs through ansible-playbook, so the pass and the fail path of each check go through the
same code as on a live stack.
"""

import json
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from localnet import free_port, get_json

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

pytestmark = pytest.mark.skipif(
    not (PROMETHEUS and ALERTMANAGER),
    reason="prometheus and prometheus-alertmanager are not installed (scripts/host-deps.sh installs them)",
)


def wait_for(what, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError("timed out waiting for %s (%s)" % (what, last))


class Webhook(BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Webhook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def prometheus_config(am_port, prom_port, dead_port):
    jobs = [
        {"job_name": "prometheus", "static_configs": [{"targets": ["127.0.0.1:%d" % prom_port]}]},
        {"job_name": "alertmanager", "static_configs": [{"targets": ["127.0.0.1:%d" % am_port]}]},
    ]
    if dead_port:
        jobs.append({"job_name": "dead-exporter", "static_configs": [{"targets": ["127.0.0.1:%d" % dead_port]}]})
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:%d" % am_port]}]}]},
        "scrape_configs": jobs,
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("verify-services")
    ports = {name: free_port() for name in ("prom", "am", "hook", "dead", "refused")}
    hook = ThreadingHTTPServer(("127.0.0.1", ports["hook"]), Webhook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()

    (tmp / "rules.yml").write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "meta",
                        "rules": [{"alert": "Watchdog", "expr": "vector(1)", "labels": {"severity": "none"}}],
                    }
                ]
            }
        )
    )
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(ports["am"], ports["prom"], ports["dead"])))
    # Shaped like the kube-prometheus-stack default: Watchdog goes to a receiver without
    # integrations, everything else to the configured receiver.
    (tmp / "alertmanager.yml").write_text(
        yaml.safe_dump(
            {
                "route": {
                    "receiver": "webhook",
                    "group_by": ["alertname"],
                    "group_wait": "1s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                    "routes": [
                        {"receiver": "null", "matchers": ['alertname="Watchdog"']},
                        {"receiver": "refused", "matchers": ['alertname="OdinVerifyRefused"']},
                    ],
                },
                "receivers": [
                    {"name": "null"},
                    {"name": "webhook", "webhook_configs": [{"url": "http://127.0.0.1:%d/hook" % ports["hook"]}]},
                    {"name": "refused", "webhook_configs": [{"url": "http://127.0.0.1:%d/hook" % ports["refused"]}]},
                ],
            }
        )
    )
    logs = {name: open(tmp / ("%s.log" % name), "w") for name in ("prometheus", "alertmanager")}  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [
                ALERTMANAGER,
                "--config.file=%s" % (tmp / "alertmanager.yml"),
                "--storage.path=%s" % (tmp / "am-data"),
                "--web.listen-address=127.0.0.1:%d" % ports["am"],
                "--cluster.listen-address=",
            ],
            stdout=logs["alertmanager"],
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [
                PROMETHEUS,
                "--config.file=%s" % (tmp / "prometheus.yml"),
                "--storage.tsdb.path=%s" % (tmp / "prom-data"),
                "--web.listen-address=127.0.0.1:%d" % ports["prom"],
                "--web.enable-lifecycle",
                # The first evaluation runs before Alertmanager is discovered and its alert is
                # dropped; the default 1m resend delay would hold the Watchdog back that long.
                "--rules.alert.resend-delay=1s",
            ],
            stdout=logs["prometheus"],
            stderr=subprocess.STDOUT,
        ),
    ]
    info = {
        "tmp": tmp,
        "ports": ports,
        "prometheus_url": "http://127.0.0.1:%d" % ports["prom"],
        "alertmanager_url": "http://127.0.0.1:%d" % ports["am"],
    }
    try:
        for name in ("prometheus_url", "alertmanager_url"):
            wait_for(name, lambda n=name: urllib.request.urlopen(info[n] + "/-/ready", timeout=2).status == 200)  # noqa: S310
        yield info
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        hook.shutdown()
        for handle in logs.values():
            handle.close()


def verify(ansible, tmp, name, **args):
    """Run the module through ansible-playbook; returns its registered result."""
    out = tmp / ("%s.json" % name)
    playbook = tmp / ("%s.yml" % name)
    args.setdefault("kubeconfig", str(tmp / "no-such-kubeconfig"))
    args.setdefault("k3s_binary", str(tmp / "no-such-k3s"))
    args.setdefault("http_timeout", 5)
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Verify",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {"name": "Check", "odin.stack.stack_verify": args, "register": "__verify"},
                        {
                            "name": "Save",
                            "ansible.builtin.copy": {"content": "{{ __verify | to_json }}", "dest": str(out)},
                        },
                    ],
                }
            ]
        )
    )
    res = ansible(
        [
            "ansible-playbook",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            "ansible_python_interpreter=" + os.sys.executable,
            str(playbook),
        ],
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(out.read_text())


def checks(result):
    return {c["id"]: c for gate in result["gates"] for c in gate["checks"]}


def scraped(url):
    targets = get_json(url + "/api/v1/targets?state=active")["data"]["activeTargets"]
    return targets and all(t["health"] != "unknown" for t in targets)


def test_metrics_gate_fail_then_pass(ansible, stack):
    tmp, url = stack["tmp"], stack["prometheus_url"]
    wait_for("every target scraped once", lambda: scraped(url))
    wait_for(
        "the lowest-timestamp metric",
        lambda: get_json(url + "/api/v1/query?query=prometheus_tsdb_lowest_timestamp_seconds")["data"]["result"],
    )

    res = verify(
        ansible,
        tmp,
        "gate2-down",
        gates=["gate2"],
        prometheus_url=url,
        grafana_url="http://127.0.0.1:%d" % stack["ports"]["refused"],
        gpu_resolved=True,
        gpu_metric="up",
        min_data_age_hours=24,
    )
    found = checks(res)
    assert res["passed"] is False
    assert found["prometheus_targets"]["status"] == "fail"
    assert found["prometheus_targets"]["measured"] == "2/3 up"
    assert "dead-exporter 127.0.0.1:%d: down" % stack["ports"]["dead"] in found["prometheus_targets"]["detail"]
    assert "connection refused" in found["prometheus_targets"]["detail"]
    # `up` has a series per target: the query path of the GPU metric check.
    assert (found["gpu_metrics"]["status"], found["gpu_metrics"]["measured"]) == ("pass", "3 series")
    # A fresh TSDB is minutes old, not 24 h.
    assert found["data_retention"]["status"] == "fail"
    assert found["data_retention"]["measured"] == "0h 0m"
    assert found["grafana_dashboards"]["status"] == "fail"
    assert "Cannot read the Grafana password file" in found["grafana_dashboards"]["detail"]

    # Drop the dead target and reload: every target is up.
    config = prometheus_config(stack["ports"]["am"], stack["ports"]["prom"], None)
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    urllib.request.urlopen(urllib.request.Request(url + "/-/reload", method="POST"), timeout=10)  # noqa: S310
    wait_for(
        "the dead target to go",
        lambda: len(get_json(url + "/api/v1/targets?state=active")["data"]["activeTargets"]) == 2,
    )
    wait_for("every target scraped once", lambda: scraped(url))

    res = verify(
        ansible, tmp, "gate2-up", gates=["gate2"], prometheus_url=url, gpu_resolved=False, min_data_age_hours=0
    )
    found = checks(res)
    assert (found["prometheus_targets"]["status"], found["prometheus_targets"]["measured"]) == ("pass", "2/2 up")
    assert found["data_retention"]["status"] == "pass"
    assert found["gpu_metrics"]["status"] == "skip"
    assert "odin_gpu_resolved is false" in found["gpu_metrics"]["detail"]


def test_alerts_gate_watchdog_and_notification(ansible, stack):
    tmp, am = stack["tmp"], stack["alertmanager_url"]
    wait_for(
        "Watchdog in Alertmanager",
        lambda: any(a["labels"]["alertname"] == "Watchdog" for a in get_json(am + "/api/v2/alerts")),
    )
    Webhook.received.clear()
    res = verify(
        ansible,
        tmp,
        "gate3-ok",
        gates=["gate3"],
        alertmanager_url=am,
        loki_url="http://127.0.0.1:%d" % stack["ports"]["refused"],
        notification_timeout=30,
        host="test-host",
    )
    found = checks(res)
    assert found["alertmanager_watchdog"]["status"] == "pass"
    assert found["alert_notification"]["status"] == "pass", found["alert_notification"]
    assert found["alert_notification"]["measured"].startswith("1 delivered, 0 failed")
    delivered = [a["labels"] for msg in Webhook.received for a in msg["alerts"]]
    assert any(labels["alertname"] == "OdinVerifyTestNotification" for labels in delivered)
    # Nothing listens on the Loki URL and the kubeconfig does not exist.
    assert found["loki_recent_logs"]["status"] == "fail"
    assert "Connection refused" in found["loki_recent_logs"]["detail"]
    assert found["loki_ingestion"]["status"] == "fail"
    assert "no-such-kubeconfig does not exist: run the k3s layer first." in found["loki_ingestion"]["detail"]

    # The module returns the report; the verify role writes it (test_verify_playbook.py).
    assert res["report"]["gates"] == res["gates"]
    assert res["report"]["host"] == "test-host"
    markdown = res["markdown"]
    assert "## Gate 3: Logs and alerts (FAIL)" in markdown
    assert "| Alertmanager receives the Watchdog alert | PASS | 1 active |" in markdown
    assert found["alert_notification"]["detail"].startswith("receiver: webhook; ")

    # The module resolved its test alert; let that notification go out before the next run
    # so the counters below only see the refused deliveries.
    wait_for(
        "the resolved test notification",
        lambda: any(
            m["status"] == "resolved" and m["commonLabels"].get("alertname") == "OdinVerifyTestNotification"
            for m in Webhook.received
        ),
    )
    res = verify(
        ansible,
        tmp,
        "gate3-bad",
        gates=["gate3"],
        alertmanager_url=am,
        watchdog_alertname="NoSuchAlert",
        notification_labels={"alertname": "OdinVerifyRefused"},
        notification_timeout=30,
    )
    found = checks(res)
    assert found["alertmanager_watchdog"]["status"] == "fail"
    assert found["alert_notification"]["status"] == "fail"
    assert found["alert_notification"]["detail"].startswith("receiver: refused; Delivery failed (webhook: ")


def test_security_gate_on_host_files_and_sockets(ansible, stack):
    tmp = stack["tmp"]
    kubeconfig = tmp / "k3s.yaml"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    kubeconfig.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    wide_port = free_port()
    with socket.socket() as wide:
        wide.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        wide.bind(("", wide_port))
        wide.listen()
        res = verify(
            ansible,
            tmp,
            "gate4",
            gates=["gate4"],
            kubeconfig=str(kubeconfig),
            grafana_url="http://127.0.0.1:%d" % stack["ports"]["refused"],
            exposure_ports=[stack["ports"]["prom"], wide_port],
            exposure_opt_in=True,
        )
        found = checks(res)
        assert (found["kubeconfig_mode"]["status"], found["kubeconfig_mode"]["measured"]) == ("fail", "0644")
        assert found["exposure"]["status"] == "skip"
        assert found["secrets_encryption"]["status"] == "fail"
        assert "no-such-k3s not found" in found["secrets_encryption"]["detail"]
        assert found["grafana_default_password"]["status"] == "fail"

        kubeconfig.chmod(stat.S_IRUSR | stat.S_IWUSR)
        res = verify(
            ansible, tmp, "gate4-mode", gates=["gate4"], kubeconfig=str(kubeconfig), exposure_ports=[wide_port]
        )
        found = checks(res)
        assert (found["kubeconfig_mode"]["status"], found["kubeconfig_mode"]["measured"]) == ("pass", "0600")
        # The wildcard listener is found (the services query also fails without a cluster).
        assert found["exposure"]["status"] == "fail"
        assert "Reachable beyond the laptop: 0.0.0.0:%d" % wide_port in found["exposure"]["detail"]


def test_exposure_passes_for_loopback_listeners(ansible, stack):
    """Prometheus listens on 127.0.0.1 only; with no cluster the NodePort query is the only failure."""
    res = verify(ansible, stack["tmp"], "exposure", gates=["gate4"], exposure_ports=[stack["ports"]["prom"]])
    found = checks(res)["exposure"]
    assert found["measured"] == "0 exposed"
    assert found["detail"].startswith("Services not checked: ")
    assert "Reachable" not in found["detail"]
