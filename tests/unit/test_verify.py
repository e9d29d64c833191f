"""Gate evaluation and report rendering behind odin.stack.stack_verify, on API responses under fixtures/verify/."""

import json
from pathlib import Path

import pytest

from ansible_collections.odin.stack.plugins.module_utils import _verify as v

FIXTURES = Path(__file__).parent / "fixtures" / "verify"
# The wildcard address as /proc/net/tcp reports it (the tests bind nothing).
ANY_V4 = "0.0.0.0"  # noqa: S104


def load(name):
    text = (FIXTURES / name).read_text()
    return json.loads(text) if name.endswith(".json") else text


# ---------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize(
    ("read", "items", "error"),
    [
        # A k8s_info result: its resources become the items the evaluators take.
        ({"resources": [{"metadata": {"name": "a"}}], "api_found": True}, ["a"], None),
        ({"resources": [], "api_found": True}, [], None),
        # Not read: the reason the caller gives.
        (None, None, "not read here"),
        ({"skipped": True, "skip_reason": "Conditional result was False"}, None, "not read here"),
        # A failed read (failed_when: false keeps its msg, without resources).
        (
            {"failed": False, "msg": "Failed to import the required Python library (kubernetes)"},
            None,
            "Reading the nodes failed: Failed to import the required Python library (kubernetes)",
        ),
        (
            {"resources": [], "api_found": False, "msg": 'Failed to find API for resource with apiVersion "v1"'},
            None,
            'Reading the nodes failed: Failed to find API for resource with apiVersion "v1"',
        ),
    ],
)
def test_k8s_items(read, items, error):
    if error:
        with pytest.raises(RuntimeError) as exc:
            v.k8s_items(read, "nodes", "not read here")
        assert str(exc.value) == error
    else:
        assert [i["metadata"]["name"] for i in v.k8s_items(read, "nodes", "unused")["items"]] == items


@pytest.mark.parametrize(
    ("pod", "ready", "problem"),
    [
        ({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}, True, None),
        (
            {
                "status": {
                    "phase": "Pending",
                    "conditions": [{"type": "Ready", "status": "False"}],
                    "containerStatuses": [{"name": "verify", "state": {"waiting": {"reason": "ErrImagePull"}}}],
                }
            },
            False,
            "Pending (ErrImagePull)",
        ),
        ({"status": {"phase": "Pending"}}, False, "Pending"),
        ({}, False, "Unknown"),
    ],
)
def test_pod_ready_and_problem(pod, ready, problem):
    assert v.pod_ready(pod) is ready
    assert v.pod_problem(pod) == problem


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2026-12-02T10:00:00Z", 1796205600),
        ("2026-12-02T10:00:00.250Z", 1796205600),
        ("", None),
        (None, None),
        ("2026-12-02 10:00:00", None),
    ],
)
def test_k8s_timestamp(value, seconds):
    assert v.k8s_timestamp(value) == seconds


@pytest.mark.parametrize(
    ("base", "path", "query", "url"),
    [
        (
            "http://127.0.0.1:9090/",
            "/api/v1/query",
            {"query": "up == 1"},
            "http://127.0.0.1:9090/api/v1/query?query=up+%3D%3D+1",
        ),
        ("https://grafana.lan", "/api/user", {}, "https://grafana.lan/api/user"),
        ("file:///etc/passwd", "/x", {}, None),
        ("127.0.0.1:9090", "/x", {}, None),
    ],
)
def test_api_url(base, path, query, url):
    assert v.api_url(base, path, **query) == url


def test_url_segment_quotes_a_dashboard_uid():
    assert v.url_segment("a/b c") == "a%2Fb%20c"


@pytest.mark.parametrize(
    ("msg", "said"),
    [
        (
            "Unable to retrieve log from Pod due to: (500)\nReason: Internal Server Error\n"
            "HTTP response headers: HTTPHeaderDict({'Audit-Id': '6f1c', 'Content-Type': 'application/json'})\n"
            'HTTP response body: {"kind":"Status","apiVersion":"v1","status":"Failure","message":"Get '
            '\\"https://10.0.0.2:10250/containerLogs/odin-verify/odin-verify/verify\\": dial tcp 10.0.0.2:10250: '
            'connect: connection refused","code":500}\n',
            "Unable to retrieve log from Pod due to: (500) Reason: Internal Server Error Get "
            '"https://10.0.0.2:10250/containerLogs/odin-verify/odin-verify/verify": dial tcp 10.0.0.2:10250: '
            "connect: connection refused",
        ),
        (
            # As kubernetes.core.k8s_log 6.2 fails against a node without a kubelet (measured on the
            # test control plane).
            "Unable to retrieve log from Pod due to: 500\nReason: Internal Server Error\n"
            "HTTP response headers: HTTPHeaderDict({'Audit-Id': '59c7c155', 'Content-Length': '187'})\n"
            'HTTP response body: {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
            '"message":"Get \\"https://:10250/containerLogs/default/p/c\\": dial tcp :10250: connect: '
            'connection refused","code":500}\n\nOriginal traceback: \n  File "kubernetes/dynamic/client.py", '
            "line 54, in inner\n",
            "Unable to retrieve log from Pod due to: 500 Reason: Internal Server Error Get "
            '"https://:10250/containerLogs/default/p/c": dial tcp :10250: connect: connection refused',
        ),
        ("Failed to import the required Python library (kubernetes)\non this host", None),
        ("(403)\nReason: Forbidden\nHTTP response headers: {}\nHTTP response body: not json\n", None),
        (None, ""),
    ],
)
def test_k8s_error_is_one_line_with_the_api_message(msg, said):
    expected = said if said is not None else " ".join(str(msg).split())
    assert v.k8s_error(msg) == expected


def test_nodes_all_ready():
    res = v.eval_nodes(load("nodes-ready.json"))
    assert (res["status"], res["measured"]) == ("pass", "1/1 Ready")


def test_nodes_one_not_ready_names_it():
    res = v.eval_nodes(load("nodes-notready-nogpu.json"))
    assert (res["status"], res["measured"]) == ("fail", "1/2 Ready")
    assert "worker-1 (NodeStatusUnknown)" in res["detail"]


def test_nodes_empty_list_fails():
    assert v.eval_nodes({"items": []})["status"] == "fail"


def test_system_pods_reports_each_unhealthy_pod_and_ignores_retried_job_pods():
    res = v.eval_system_pods(load("pods.json"), ["kube-system"])
    assert res["status"] == "fail"
    # 6 kube-system pods, the failed Helm installer attempt is not counted.
    assert res["measured"] == "3/5 healthy"
    assert "metrics-server-54fd9b65b-7lp4c: metrics-server: CrashLoopBackOff" in res["detail"]
    assert "nvidia-device-plugin-daemonset-2r5wq: Pending (ImagePullBackOff)" in res["detail"]
    assert "helm-install" not in res["detail"]
    assert "grafana" not in res["detail"]


def test_system_pods_pass_when_unhealthy_pods_are_elsewhere():
    pods = load("pods.json")
    pods["items"] = [
        p
        for p in pods["items"]
        if "metrics-server" not in p["metadata"]["name"] and "nvidia" not in p["metadata"]["name"]
    ]
    res = v.eval_system_pods(pods, ["kube-system"])
    assert (res["status"], res["measured"]) == ("pass", "2/2 healthy")


def test_system_pods_none_in_namespace_fails():
    assert v.eval_system_pods(load("pods.json"), ["absent"])["status"] == "fail"


@pytest.mark.parametrize(
    ("fixture", "resolved", "status", "measured"),
    [
        ("nodes-ready.json", True, "pass", "nvidia.com/gpu: 1"),
        ("nodes-notready-nogpu.json", True, "fail", "nvidia.com/gpu: 0"),
        ("nodes-ready.json", False, "skip", None),
    ],
)
def test_gpu_allocatable(fixture, resolved, status, measured):
    res = v.eval_gpu_allocatable(resolved, load(fixture))
    assert (res["status"], res["measured"]) == (status, measured)


GPU_OK = {
    "changed": False,
    "gpus": [{"index": 0, "product_name": "NVIDIA GeForce RTX 4090 Laptop GPU", "temperature": 45}],
    "driver_version": "550.127.05",
    "failed_checks": [],
}


@pytest.mark.parametrize(
    ("resolved", "gpu_result", "status", "needle"),
    [
        (True, GPU_OK, "pass", "1 GPU(s): NVIDIA GeForce RTX 4090 Laptop GPU, driver 550.127.05"),
        (
            True,
            dict(
                GPU_OK,
                failed=True,
                failed_checks=[{"check": "driver_version", "expected": ">= 550", "found": "535.183.01"}],
            ),
            "fail",
            "driver_version: expected >= 550, found 535.183.01",
        ),
        (True, {"gpus": [], "failed": True, "msg": "nvidia-smi not found"}, "fail", "nvidia-smi not found"),
        (True, None, "fail", "No odin.stack.gpu_validate result"),
        (False, None, "skip", "odin_gpu_resolved is false"),
    ],
)
def test_gpu_host(resolved, gpu_result, status, needle):
    res = v.eval_gpu_host(resolved, gpu_result)
    assert res["status"] == status
    assert needle in (res["measured"] or "") + res["detail"]


@pytest.mark.parametrize(
    ("pvc", "ready", "log", "status", "measured"),
    [
        (
            {"status": {"phase": "Bound"}},
            True,
            "read: abc123\nodin-verify-marker-x\n",
            "pass",
            "PVC Bound, token read back",
        ),
        ({"status": {"phase": "Pending"}}, False, "", "fail", "PVC Pending"),
        (None, False, "", "fail", "PVC absent"),
        ({"status": {"phase": "Bound"}}, False, "", "fail", "PVC Bound, pod not ready"),
        (
            {"status": {"phase": "Bound"}},
            True,
            "sh: can't create /data/token: Permission denied\n",
            "fail",
            "PVC Bound, token not read back",
        ),
    ],
)
def test_pvc(pvc, ready, log, status, measured):
    res = v.eval_pvc(pvc, ready, log, "abc123", "local-path")
    assert (res["status"], res["measured"]) == (status, measured)


def test_pvc_log_not_read_says_why_on_one_line():
    res = v.eval_pvc(
        {"status": {"phase": "Bound"}},
        True,
        None,
        "abc123",
        "local-path",
        log_error="Unable to retrieve log from Pod due to: 500\nReason: Internal Server Error",
    )
    assert (res["status"], res["measured"]) == ("fail", "PVC Bound, log not read")
    assert res["detail"] == (
        "The test pod's log could not be read: Unable to retrieve log from Pod due to: 500"
        " Reason: Internal Server Error"
    )


def test_network_policies():
    res = v.eval_network_policies(load("networkpolicies.json"), "monitoring")
    assert (res["status"], res["measured"]) == ("pass", "2 in monitoring")
    assert v.eval_network_policies(load("networkpolicies.json"), "logging")["status"] == "fail"


def test_proc_net_tcp_lists_listeners_only():
    assert v.parse_proc_net_tcp(load("proc-net-tcp.txt")) == [
        ("127.0.0.1", 3000),
        ("127.0.0.1", 9090),
        (ANY_V4, 9093),
        (ANY_V4, 22),
    ]


def test_proc_net_tcp6():
    assert v.parse_proc_net_tcp(load("proc-net-tcp6.txt"), ipv6=True) == [
        ("::1", 3100),
        ("::", 3100),
        ("::ffff:127.0.0.1", 9090),
    ]


def test_exposure_fails_on_wildcard_listener_and_nodeport():
    listeners = v.parse_proc_net_tcp(load("proc-net-tcp.txt")) + v.parse_proc_net_tcp(load("proc-net-tcp6.txt"), True)
    res = v.eval_exposure(listeners, {3000, 9090, 9093, 3100}, load("services.json"), False)
    assert (res["status"], res["measured"]) == ("fail", "3 exposed")
    assert ANY_V4 + ":9093" in res["detail"]
    assert ":::3100" in res["detail"]
    assert "monitoring/loki-gateway (NodePort)" in res["detail"]
    # Port 22 listens on every address but is not a monitoring port.
    assert ":22" not in res["detail"]


def test_exposure_passes_on_loopback_only():
    listeners = [("127.0.0.1", 3000), ("::1", 3100), ("::ffff:127.0.0.1", 9090), (ANY_V4, 22)]
    res = v.eval_exposure(listeners, {3000, 9090, 9093, 3100}, {"items": []}, False)
    assert (res["status"], res["measured"]) == ("pass", "0 exposed")


def test_exposure_opt_in_skips():
    assert v.eval_exposure([(ANY_V4, 3000)], {3000}, {}, True)["status"] == "skip"


@pytest.mark.parametrize(
    ("mode", "status", "measured"),
    [
        (0o600, "pass", "0600"),
        (0o400, "pass", "0400"),
        (0o644, "fail", "0644"),
        (0o640, "fail", "0640"),
        (None, "fail", "absent"),
    ],
)
def test_kubeconfig_mode(mode, status, measured):
    res = v.eval_kubeconfig_mode("/etc/rancher/k3s/k3s.yaml", mode)
    assert (res["status"], res["measured"]) == (status, measured)


@pytest.mark.parametrize(
    ("rc", "fixture", "status", "measured"),
    [
        (0, "secrets-encrypt-enabled.txt", "pass", "Enabled"),
        (0, "secrets-encrypt-disabled.txt", "fail", "Disabled"),
        (1, "secrets-encrypt-enabled.txt", "fail", "unknown"),
    ],
)
def test_secrets_encryption(rc, fixture, status, measured):
    res = v.eval_secrets_encryption(rc, load(fixture))
    assert (res["status"], res["measured"]) == (status, measured)


def test_secrets_encryption_unparsable_output():
    res = v.eval_secrets_encryption(0, "", 'time=... level=fatal msg="secrets-encrypt: not a server"')
    assert res["status"] == "fail"
    assert "not a server" in res["detail"]


# ---------------------------------------------------------------- Prometheus and Grafana


def test_targets_down_target_is_named_with_its_error():
    res = v.eval_targets(load("targets-mixed.json"))
    assert (res["status"], res["measured"]) == ("fail", "1/2 up")
    assert "serviceMonitor/monitoring/dcgm-exporter/0 10.42.0.20:9400: down" in res["detail"]
    assert "connection refused" in res["detail"]


def test_targets_all_up():
    resp = load("targets-mixed.json")
    resp["data"]["activeTargets"] = resp["data"]["activeTargets"][:1]
    assert v.eval_targets(resp)["status"] == "pass"


def test_targets_none_fails():
    assert v.eval_targets({"status": "success", "data": {"activeTargets": []}})["status"] == "fail"


@pytest.mark.parametrize(
    ("fixture", "resolved", "status"),
    [
        ("query-gpu-util.json", True, "pass"),
        ("query-empty.json", True, "fail"),
        ("query-error.json", True, "fail"),
        ("query-empty.json", False, "skip"),
    ],
)
def test_gpu_metrics(fixture, resolved, status):
    assert v.eval_gpu_metrics(resolved, load(fixture), "DCGM_FI_DEV_GPU_UTIL")["status"] == status


@pytest.mark.parametrize(
    ("min_hours", "status"),
    [(24, "pass"), (26, "pass"), (27, "fail")],
)
def test_data_age(min_hours, status):
    # 93784.5 s is 26 h 3 m.
    res = v.eval_data_age(load("query-data-age.json"), min_hours)
    assert (res["status"], res["measured"]) == (status, "1d 2h 3m")


def test_data_age_missing_metric_and_error():
    assert "does not scrape itself" in v.eval_data_age(load("query-empty.json"), 24)["detail"]
    assert v.eval_data_age(load("query-error.json"), 24)["status"] == "fail"


def test_dashboards():
    fast = [
        {"uid": "a", "title": "Nodes", "status": 200, "seconds": 0.31},
        {"uid": "b", "title": "GPU", "status": 200, "seconds": 1.2},
    ]
    res = v.eval_dashboards(fast, 2.0)
    assert (res["status"], res["measured"]) == ("pass", "2 dashboards, slowest 1.20 s (GPU)")
    slow = fast + [
        {"uid": "c", "title": "Loki", "status": 200, "seconds": 2.4},
        {"uid": "d", "title": "Gone", "status": 404, "seconds": 0.1},
    ]
    res = v.eval_dashboards(slow, 2.0)
    assert res["status"] == "fail"
    assert res["detail"] == "Loki: HTTP 200 in 2.40 s; Gone: HTTP 404 in 0.10 s"
    assert v.eval_dashboards([], 2.0)["status"] == "fail"
    assert (
        v.eval_dashboards([], 2.0, "GET /api/search returned HTTP 401")["detail"] == "GET /api/search returned HTTP 401"
    )


@pytest.mark.parametrize(("code", "status"), [(401, "pass"), (200, "fail"), (500, "fail")])
def test_default_password(code, status):
    assert v.eval_default_password(code)["status"] == status


# ---------------------------------------------------------------- Loki and Alertmanager


def test_loki_entries_and_recent():
    entries = v.loki_entries(load("loki-streams.json"))
    assert entries[0] == (
        1795384801250000000,
        "odin-verify-marker-4f1c",
        {"namespace": "odin-verify", "pod": "odin-verify", "container": "verify"},
    )
    assert len(entries) == 3
    assert v.eval_loki_recent(load("loki-streams.json"), 300, '{namespace=~".+"}')["measured"] == "3 lines"
    assert v.eval_loki_recent(load("loki-empty.json"), 300, '{namespace=~".+"}')["status"] == "fail"
    assert v.eval_loki_recent(load("query-gpu-util.json"), 300, "q")["status"] == "fail"


def test_loki_queries():
    assert v.loki_marker_query("namespace", "odin-verify", "m-1") == '{namespace="odin-verify"} |= "m-1"'
    assert v.loki_recent_query("k8s_namespace_name") == '{k8s_namespace_name=~".+"}'


@pytest.mark.parametrize(
    ("delay", "waited", "error", "status", "measured"),
    [
        (4.25, None, None, "pass", "4.25 s"),
        (61.0, None, None, "fail", "61.00 s"),
        (None, 90.0, None, "fail", "not found after 90.00 s"),
        (None, None, "GET http://127.0.0.1:3100/...: Connection refused", "fail", None),
    ],
)
def test_ingestion(delay, waited, error, status, measured):
    res = v.eval_ingestion(delay, 60, waited, error)
    assert (res["status"], res["measured"]) == (status, measured)


def test_watchdog():
    alerts = load("am-alerts.json")
    assert v.eval_watchdog(alerts, "Watchdog")["status"] == "pass"
    # Suppressed alerts are not active.
    assert v.eval_watchdog(alerts, "KubeMemoryOvercommit")["status"] == "fail"
    assert v.eval_watchdog([], "Watchdog")["status"] == "fail"


def test_parse_metrics():
    samples = v.parse_metrics(load("am-metrics-before.txt"), "alertmanager_notification_requests_failed_total")
    assert samples == [({"integration": "email"}, 0.0), ({"integration": "webhook"}, 1.0)]
    labelled = v.parse_metrics('m{a="x\\"y",b="2"} 3.5\nm 1e3\n', "m")
    assert labelled == [({"a": 'x\\"y', "b": "2"}, 3.5), ({}, 1000.0)]


@pytest.mark.parametrize(
    ("after", "delta", "status"),
    [
        ("am-metrics-before.txt", {}, "fail"),
        ("am-metrics-delivered.txt", {"webhook": {"sent": 1, "failed": 0}}, "pass"),
        ("am-metrics-failed.txt", {"webhook": {"sent": 2, "failed": 1}}, "fail"),
    ],
)
def test_notification(after, delta, status):
    found = v.notification_delta(load("am-metrics-before.txt"), load(after))
    assert found == delta
    assert v.eval_notification(found, 2.5)["status"] == status


def test_notification_error():
    res = v.eval_notification({}, 0, "POST http://127.0.0.1:9093/api/v2/alerts: Connection refused")
    assert (res["status"], res["detail"]) == ("fail", "POST http://127.0.0.1:9093/api/v2/alerts: Connection refused")


# ---------------------------------------------------------------- gates and report


def test_checks_for_selected_gates_in_order():
    assert v.checks_for(["gate4", "gate1"]) == v.GATES[0]["checks"] + v.GATES[3]["checks"]
    assert all(c in v.CHECK_TITLES for gate in v.GATES for c in gate["checks"])


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [(["pass", "skip"], "pass"), (["pass", "fail", "skip"], "fail"), (["skip", "skip"], "skip"), ([], "skip")],
)
def test_gate_status(statuses, expected):
    assert v.gate_status([{"status": s} for s in statuses]) == expected


def mixed_results():
    return [
        v.eval_nodes(load("nodes-ready.json")),
        v.eval_system_pods(load("pods.json"), ["kube-system"]),
        v.eval_gpu_host(False, None),
        v.eval_gpu_allocatable(False, {}),
        v.eval_pvc({"status": {"phase": "Bound"}}, True, "read: t\n", "t", "local-path"),
        v.eval_targets(load("targets-mixed.json")),
        v.eval_kubeconfig_mode("/etc/rancher/k3s/k3s.yaml", 0o600),
        v.eval_exposure([], {3000}, {"items": []}, False),
    ]


def test_report_for_mixed_result():
    report = v.build_report(mixed_results(), ["gate1", "gate2", "gate4"], "laptop", "2026-11-21T22:00:00Z")
    assert report["format"] == 1
    assert report["passed"] is False
    assert report["summary"] == {"pass": 4, "fail": 2, "skip": 2}
    assert [(g["id"], g["status"]) for g in report["gates"]] == [
        ("gate1", "fail"),
        ("gate2", "fail"),
        ("gate4", "pass"),
    ]
    # Checks that did not run are left out rather than reported as passed.
    assert [c["id"] for c in report["gates"][1]["checks"]] == ["prometheus_targets"]
    assert v.failed_checks(report)[0].startswith("gate1 system_pods - kube-system/metrics-server")
    json.dumps(report)


def test_markdown_has_a_table_per_gate_and_escapes_pipes():
    results = mixed_results() + [v.result("network_policies", "fail", "0 in monitoring", ">= 1", "a | b")]
    report = v.build_report(results, ["gate1", "gate2", "gate4"], "laptop", "2026-11-21T22:00:00Z")
    text = v.render_markdown(report)
    assert "- Result: **FAIL** (4 passed, 3 failed, 2 skipped)" in text
    assert "## Gate 1: Cluster, GPU and storage (FAIL)" in text
    assert "## Gate 4: Security (FAIL)" in text
    assert text.count("| Check | Status | Measured | Expected | Detail |") == 3
    assert "| K3s nodes Ready | PASS | 1/1 Ready | all Ready | laptop |" in text
    assert "| GPU visible on the host | SKIP | - | - | odin_gpu_resolved is false" in text
    assert "a \\| b" in text
    for line in text.splitlines():
        if line.startswith("| ") and "---" not in line:
            assert line.count(" | ") == 4, line
