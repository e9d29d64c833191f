"""odin.stack.stack_verify run as Ansible runs it (module args in, JSON out), on input tables.

The cluster reads, the test pod and k3s's answer come in as the role passes them (registered
results of kubernetes.core and ansible.builtin.command). HTTP goes through a stand-in for
ansible.module_utils.urls.open_url that answers like it: a response object, HTTPError for an
error status, URLError when nothing listens. Time is a fake clock, so the Loki and
Alertmanager polling loops run at once.
"""

import io
import json
import urllib.error
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.odin.stack.plugins.modules import stack_verify

FIXTURES = Path(__file__).parent / "fixtures" / "verify"
POD_START = "2026-12-02T10:00:00Z"
POD_START_S = 1796205600
MARKER = "odin-verify-marker-0123456789abcdef"
TOKEN = "0123456789abcdef0123456789abcdef"  # noqa: S105 (the test pod's token, not a secret)
GRAFANA_PASSWORD = "generated-grafana-password-7f3a"  # noqa: S105 (a test value)


def load(name):
    text = (FIXTURES / name).read_text()
    return json.loads(text) if name.endswith(".json") else text


def read(fixture):
    """A kubernetes.core.k8s_info result holding the objects of a fixture list."""
    return {"changed": False, "api_found": True, "resources": load(fixture)["items"]}


def read_one(obj):
    return {"changed": False, "api_found": True, "resources": [obj]}


class FakeClock:
    """time.monotonic/time/time_ns/sleep where sleeping moves the clock on."""

    def __init__(self, now):
        self.now = float(now)

    def monotonic(self):
        return self.now

    def time(self):
        return self.now

    def time_ns(self):
        return int(self.now * 10**9)

    def sleep(self, seconds):
        self.now += seconds


class Response:
    def __init__(self, status, body):
        self.status, self._body = status, body

    def read(self):
        return self._body


def _bytes(body):
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


class FakeHttp:
    """Answers open_url calls from routes {(method, url prefix): answer}.

    An answer is (status, body), an exception to raise, or a callable taking the call
    number of that route and returning either. Unrouted URLs refuse the connection.
    """

    def __init__(self, routes=None):
        self.routes = routes or {}
        self.calls = []
        self.counts = {}

    def __call__(self, url, data=None, headers=None, method=None, **kwargs):
        self.calls.append({"url": url, "method": method, "data": data, **kwargs})
        for (route_method, prefix), route in self.routes.items():
            if method == route_method and url.startswith(prefix):
                count = self.counts[(route_method, prefix)] = self.counts.get((route_method, prefix), 0) + 1
                answer = route(count) if callable(route) else route
                if isinstance(answer, Exception):
                    raise answer
                status, body = answer
                if status >= 400:
                    raise urllib.error.HTTPError(url, status, "error", {}, io.BytesIO(_bytes(body)))
                return Response(status, _bytes(body))
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))


@pytest.fixture
def run(monkeypatch, tmp_path, capsys):
    """run(args, http=FakeHttp(...), check=False, kubeconfig=True) -> the module's JSON result."""

    def run_module(args, http=None, check=False, kubeconfig=True):
        path = tmp_path / "k3s.yaml"
        if kubeconfig:
            path.write_text("apiVersion: v1\nkind: Config\n")
            path.chmod(0o600)
        clock = FakeClock(POD_START_S + 30)
        monkeypatch.setattr(stack_verify, "time", clock)
        monkeypatch.setattr(stack_verify, "open_url", http or FakeHttp())
        module_args = {"kubeconfig": str(path), "exposure_ports": [1], **args}
        if check:
            module_args["_ansible_check_mode"] = True
        with patch_module_args(module_args), pytest.raises(SystemExit):
            stack_verify.main()
        result = json.loads(capsys.readouterr().out)
        result["checks"] = {c["id"]: c for gate in result["gates"] for c in gate["checks"]}
        return result

    return run_module


def said(check):
    return "%s | %s" % (check["measured"], check["detail"])


# ---------------------------------------------------------------- cluster reads and k3s


CLUSTER_CASES = [
    ("nodes read", {"gates": ["gate1"], "nodes": read("nodes-ready.json")}, True, "node_ready", "pass", "1/1 Ready"),
    (
        "node not ready",
        {"gates": ["gate1"], "nodes": read("nodes-notready-nogpu.json")},
        True,
        "node_ready",
        "fail",
        "worker-1 (NodeStatusUnknown)",
    ),
    (
        "nodes not passed in",
        {"gates": ["gate1"]},
        True,
        "node_ready",
        "fail",
        "The nodes were not read from the cluster.",
    ),
    (
        "no kubeconfig",
        {"gates": ["gate1"]},
        False,
        "node_ready",
        "fail",
        "k3s.yaml does not exist: run the k3s layer first.",
    ),
    (
        "read skipped",
        {"gates": ["gate1"], "nodes": {"skipped": True, "skip_reason": "Conditional result was False"}},
        False,
        "system_pods",
        "fail",
        "does not exist: run the k3s layer first.",
    ),
    (
        "read failed",
        {
            "gates": ["gate1"],
            "pods": {"failed": False, "msg": "Failed to import the required Python library (kubernetes)"},
        },
        True,
        "system_pods",
        "fail",
        "Reading the pods failed: Failed to import the required Python library (kubernetes)",
    ),
    ("system pods", {"gates": ["gate1"], "pods": read("pods.json")}, True, "system_pods", "fail", "3/5 healthy"),
    (
        "gpu allocatable",
        {"gates": ["gate1"], "gpu_resolved": True, "nodes": read("nodes-ready.json")},
        True,
        "gpu_allocatable",
        "pass",
        "nvidia.com/gpu: 1",
    ),
    (
        "gpu not used",
        {"gates": ["gate1"], "nodes": read("nodes-ready.json")},
        True,
        "gpu_allocatable",
        "skip",
        "odin_gpu_resolved is false",
    ),
    (
        "network policies",
        {"gates": ["gate4"], "network_policies": read("networkpolicies.json")},
        True,
        "network_policies",
        "pass",
        "2 in monitoring",
    ),
    (
        "nodeport service",
        {"gates": ["gate4"], "services": read("services.json")},
        True,
        "exposure",
        "fail",
        "monitoring/loki-gateway (NodePort)",
    ),
    (
        "services not read",
        {"gates": ["gate4"]},
        True,
        "exposure",
        "fail",
        "Services not checked: The services were not read from the cluster.",
    ),
    (
        "exposure opted in",
        {"gates": ["gate4"], "exposure_opt_in": True},
        True,
        "exposure",
        "skip",
        "exposure beyond the laptop is opted in",
    ),
    (
        "secrets encrypted",
        {
            "gates": ["gate4"],
            "secrets_encrypt_status": {"rc": 0, "stdout": load("secrets-encrypt-enabled.txt"), "stderr": ""},
        },
        True,
        "secrets_encryption",
        "pass",
        "Enabled",
    ),
    (
        "secrets not encrypted",
        {
            "gates": ["gate4"],
            "secrets_encrypt_status": {"rc": 0, "stdout": load("secrets-encrypt-disabled.txt"), "stderr": ""},
        },
        True,
        "secrets_encryption",
        "fail",
        "Set secrets-encryption: true",
    ),
    (
        "k3s refuses",
        {
            "gates": ["gate4"],
            "secrets_encrypt_status": {"rc": 1, "stdout": "", "stderr": "secrets-encrypt: not a server"},
        },
        True,
        "secrets_encryption",
        "fail",
        "`k3s secrets-encrypt status` failed (rc=1): secrets-encrypt: not a server",
    ),
    (
        "k3s binary missing",
        {"gates": ["gate4"], "k3s_binary": "/opt/k3s", "secrets_encrypt_status": {"skipped": True}},
        True,
        "secrets_encryption",
        "fail",
        "/opt/k3s not found: run the k3s layer first.",
    ),
    ("kubeconfig 0600", {"gates": ["gate4"]}, True, "kubeconfig_mode", "pass", "0600"),
    ("kubeconfig missing", {"gates": ["gate4"]}, False, "kubeconfig_mode", "fail", "absent"),
]


@pytest.mark.parametrize("case", CLUSTER_CASES, ids=[case[0] for case in CLUSTER_CASES])
def test_cluster_and_k3s_inputs(run, case):
    _, args, kubeconfig, check, status, needle = case
    result = run(args, kubeconfig=kubeconfig)
    assert result["changed"] is False
    assert result["checks"][check]["status"] == status, result["checks"][check]
    assert needle in said(result["checks"][check])


# ---------------------------------------------------------------- the test pod


def pod(ready=True, waiting=None, phase="Running"):
    status = {"phase": phase, "startTime": POD_START, "conditions": [{"type": "Ready", "status": str(ready)}]}
    if waiting:
        status["containerStatuses"] = [{"name": "verify", "ready": False, "state": {"waiting": {"reason": waiting}}}]
    return {"metadata": {"name": "odin-verify", "namespace": "odin-verify"}, "status": status}


def pvc(phase="Bound"):
    return {"metadata": {"name": "odin-verify", "namespace": "odin-verify"}, "status": {"phase": phase}}


def pod_inputs(**overrides):
    given = {
        "created": {"changed": True, "result": {"results": []}},
        "pod": read_one(pod()),
        "pvc": read_one(pvc()),
        "log": {"changed": False, "log": "read: %s\n%s\n" % (TOKEN, MARKER)},
        "token": TOKEN,
        "marker": MARKER,
        "wait_seconds": 180,
    }
    given.update(overrides)
    return given


PVC_CASES = [
    ("token read back", {"test_pod": pod_inputs()}, True, False, "pass", "PVC Bound, token read back"),
    ("check mode", {}, True, True, "skip", "Check mode: the test pod is not created."),
    ("not started", {}, True, False, "fail", "The test pod was not started."),
    ("no kubeconfig", {}, False, False, "fail", "does not exist: run the k3s layer first."),
    (
        "create failed",
        {"test_pod": pod_inputs(created={"failed": True, "msg": 'namespaces "odin-verify" is forbidden'})},
        True,
        False,
        "fail",
        'Creating the test namespace, PVC and pod failed: namespaces "odin-verify" is forbidden',
    ),
    (
        "image not pulled",
        {"test_pod": pod_inputs(pod=read_one(pod(ready=False, waiting="ErrImagePull", phase="Pending")))},
        True,
        False,
        "fail",
        "The test pod was not Ready within 180s: Pending (ErrImagePull)",
    ),
    (
        "pod gone",
        {"test_pod": pod_inputs(pod={"changed": False, "api_found": True, "resources": []})},
        True,
        False,
        "fail",
        "The test pod does not exist after it was created.",
    ),
    (
        "pvc pending",
        {"test_pod": pod_inputs(pvc=read_one(pvc("Pending")))},
        True,
        False,
        "fail",
        "PVC Pending",
    ),
    (
        "log not read",
        {"test_pod": pod_inputs(log={"failed": False, "msg": "Unable to retrieve log from Pod due to: 500"})},
        True,
        False,
        "fail",
        "The test pod's log could not be read: Unable to retrieve log from Pod due to: 500",
    ),
    (
        "token not in the log",
        {"test_pod": pod_inputs(log={"log": "sh: can't create /data/token: Permission denied\n"})},
        True,
        False,
        "fail",
        "PVC Bound, token not read back",
    ),
]


@pytest.mark.parametrize("case", PVC_CASES, ids=[case[0] for case in PVC_CASES])
def test_storage_pvc_from_the_test_pod(run, case):
    _, args, kubeconfig, check, status, needle = case
    result = run({"gates": ["gate1"], **args}, kubeconfig=kubeconfig, check=check)
    found = result["checks"]["storage_pvc"]
    assert found["status"] == status, found
    assert needle in said(found)


def loki_streams(*entries):
    values = [[str(ts), line] for ts, line in entries]
    stream = {"stream": {"namespace": "odin-verify", "pod": "odin-verify"}, "values": values}
    return {"status": "success", "data": {"resultType": "streams", "result": [stream] if values else []}}


MARKER_TS = (POD_START_S + 28) * 10**9

INGESTION_CASES = [
    # The clock starts at pod start + 30 s; the marker was logged at + 28 s; each poll sleeps 1 s.
    ("found at once", lambda n: (200, loki_streams((MARKER_TS, MARKER))), "pass", "2.00 s"),
    (
        "found on the third query",
        lambda n: (200, loki_streams((MARKER_TS, MARKER)) if n >= 3 else loki_streams()),
        "pass",
        "4.00 s",
    ),
    ("too slow", lambda n: (200, loki_streams((MARKER_TS, MARKER)) if n >= 60 else loki_streams()), "fail", "61.00 s"),
    ("never arrives", lambda n: (200, loki_streams()), "fail", "not found after 90.00 s"),
    ("Loki errors", lambda n: (500, "too many outstanding requests"), "fail", "Loki returned HTTP 500"),
    ("nothing listens", None, "fail", "[Errno 111] Connection refused"),
]


@pytest.mark.parametrize(
    ("answer", "status", "needle"), [case[1:] for case in INGESTION_CASES], ids=[case[0] for case in INGESTION_CASES]
)
def test_loki_ingestion_of_the_marker_line(run, answer, status, needle):
    http = FakeHttp({("GET", "http://127.0.0.1:3100/loki/api/v1/query_range"): answer} if answer else {})
    result = run({"gates": ["gate3"], "test_pod": pod_inputs(), "notification_timeout": 1}, http=http)
    found = result["checks"]["loki_ingestion"]
    assert found["status"] == status, found
    assert needle in said(found)
    first = http.calls[0]
    # Loki is asked for the marker first, before any other check spends time.
    assert first["url"].startswith("http://127.0.0.1:3100/loki/api/v1/query_range?query=")
    assert "%7Bnamespace%3D%22odin-verify%22%7D+%7C%3D+%22" + MARKER in first["url"]
    assert "start=%d" % ((POD_START_S - 600) * 10**9) in first["url"]


def test_loki_ingestion_check_mode_and_pod_not_ready(run):
    assert run({"gates": ["gate3"]}, check=True)["checks"]["loki_ingestion"]["status"] == "skip"
    not_ready = pod_inputs(pod=read_one(pod(ready=False, waiting="ContainerCreating", phase="Pending")))
    http = FakeHttp()
    found = run({"gates": ["gate3"], "test_pod": not_ready, "notification_timeout": 1}, http=http)["checks"]
    assert found["loki_ingestion"]["status"] == "fail"
    assert found["loki_ingestion"]["detail"] == "The test pod was not Ready within 180s: Pending (ContainerCreating)"
    assert not any("query_range" in c["url"] and "marker" in c["url"] for c in http.calls)


# ---------------------------------------------------------------- HTTP APIs


PROM = "http://127.0.0.1:9090"
GRAFANA = "http://127.0.0.1:3000"
AM = "http://127.0.0.1:9093"

HTTP_CASES = [
    (
        "targets down",
        {("GET", PROM + "/api/v1/targets?state=active"): (200, load("targets-mixed.json"))},
        "prometheus_targets",
        "fail",
        "connection refused",
    ),
    (
        "prometheus error status",
        {("GET", PROM + "/api/v1/targets"): (503, "Service Unavailable")},
        "prometheus_targets",
        "fail",
        "GET http://127.0.0.1:9090/api/v1/targets returned HTTP 503: Service Unavailable",
    ),
    (
        "prometheus down",
        {},
        "prometheus_targets",
        "fail",
        "/api/v1/targets?state=active: [Errno 111] Connection refused",
    ),
    (
        "data age",
        {("GET", PROM + "/api/v1/query"): (200, load("query-data-age.json"))},
        "data_retention",
        "pass",
        "",
    ),
    (
        "dashboards load",
        {
            ("GET", GRAFANA + "/api/search"): (200, [{"uid": "gpu/1", "title": "GPU"}]),
            ("GET", GRAFANA + "/api/dashboards/uid/gpu%2F1"): (200, {"dashboard": {}}),
        },
        "grafana_dashboards",
        "pass",
        "1 dashboards",
    ),
    (
        "dashboard missing",
        {
            ("GET", GRAFANA + "/api/search"): (200, [{"uid": "gpu", "title": "GPU"}]),
            ("GET", GRAFANA + "/api/dashboards/uid/gpu"): (404, {"message": "Dashboard not found"}),
        },
        "grafana_dashboards",
        "fail",
        "GPU: HTTP 404",
    ),
    (
        "grafana search refused",
        {("GET", GRAFANA + "/api/search"): (401, {"message": "Invalid username or password"})},
        "grafana_dashboards",
        "fail",
        "GET /api/search returned HTTP 401",
    ),
    (
        "default password rejected",
        {("GET", GRAFANA + "/api/user"): (401, {"message": "Invalid username or password"})},
        "grafana_default_password",
        "pass",
        "HTTP 401",
    ),
    (
        "default password accepted",
        {("GET", GRAFANA + "/api/user"): (200, {"login": "admin"})},
        "grafana_default_password",
        "fail",
        "Grafana accepts admin/admin",
    ),
    (
        "watchdog",
        {("GET", AM + "/api/v2/alerts?active=true"): (200, load("am-alerts.json"))},
        "alertmanager_watchdog",
        "pass",
        "1 active",
    ),
]


@pytest.mark.parametrize("case", HTTP_CASES, ids=[case[0] for case in HTTP_CASES])
def test_http_checks(run, tmp_path, case):
    _, routes, check, status, needle = case
    password_file = tmp_path / "grafana-admin-password"
    password_file.write_text(GRAFANA_PASSWORD + "\n")
    gate = next(g["id"] for g in stack_verify.v.GATES if check in g["checks"])
    http = FakeHttp(routes)
    result = run(
        {"gates": [gate], "grafana_password_file": str(password_file), "notification_timeout": 1, "http_timeout": 3},
        http=http,
    )
    found = result["checks"][check]
    assert found["status"] == status, found
    assert needle in said(found)
    assert all(c["timeout"] == 3 for c in http.calls)
    assert all(c["use_netrc"] is False for c in http.calls)
    assert GRAFANA_PASSWORD not in json.dumps(result)


def test_grafana_credentials_go_through_basic_auth(run, tmp_path):
    password_file = tmp_path / "grafana-admin-password"
    password_file.write_text(GRAFANA_PASSWORD + "\n")
    http = FakeHttp(
        {
            ("GET", GRAFANA + "/api/search"): (200, [{"uid": "gpu", "title": "GPU"}]),
            ("GET", GRAFANA + "/api/dashboards/uid/gpu"): (200, {}),
            ("GET", GRAFANA + "/api/user"): (401, {}),
        }
    )
    run({"gates": ["gate2", "gate4"], "grafana_password_file": str(password_file)}, http=http)
    auth = {c["url"].split("?")[0]: (c["url_username"], c["url_password"], c["force_basic_auth"]) for c in http.calls}
    assert auth[GRAFANA + "/api/search"] == ("admin", GRAFANA_PASSWORD, True)
    assert auth[GRAFANA + "/api/dashboards/uid/gpu"] == ("admin", GRAFANA_PASSWORD, True)
    assert auth[GRAFANA + "/api/user"] == ("admin", "admin", True)
    assert auth[PROM + "/api/v1/targets"] == (None, None, False)


def test_grafana_password_file_missing(run, tmp_path):
    found = run({"gates": ["gate2"], "grafana_password_file": str(tmp_path / "absent")})["checks"]
    assert found["grafana_dashboards"]["detail"] == (
        "Cannot read the Grafana password file %s: No such file or directory" % (tmp_path / "absent")
    )


def test_only_http_urls_are_requested(run):
    http = FakeHttp()
    found = run({"gates": ["gate2"], "prometheus_url": "file:///etc/passwd"}, http=http)["checks"]
    assert found["prometheus_targets"]["detail"] == "GET: only http and https URLs are supported"
    assert not any(c["url"].startswith("file:") for c in http.calls)


def alertmanager(after_text):
    return {
        ("GET", AM + "/metrics"): lambda n: (200, load("am-metrics-before.txt") if n == 1 else load(after_text)),
        ("POST", AM + "/api/v2/alerts"): (200, ""),
        ("GET", AM + "/api/v2/alerts?filter="): (200, [{"receivers": [{"name": "webhook"}]}]),
    }


NOTIFICATION_CASES = [
    ("delivered", alertmanager("am-metrics-delivered.txt"), False, "pass", "receiver: webhook; webhook: 1 sent"),
    ("refused", alertmanager("am-metrics-failed.txt"), False, "fail", "receiver: webhook; Delivery failed (webhook: "),
    ("nothing sent", alertmanager("am-metrics-before.txt"), False, "fail", "Alertmanager sent no notification"),
    ("alertmanager down", {}, False, "fail", "GET http://127.0.0.1:9093/metrics: [Errno 111] Connection refused"),
    ("check mode", alertmanager("am-metrics-delivered.txt"), True, "skip", "Check mode: no test notification is sent."),
]


@pytest.mark.parametrize(
    ("routes", "check", "status", "needle"),
    [case[1:] for case in NOTIFICATION_CASES],
    ids=[case[0] for case in NOTIFICATION_CASES],
)
def test_alert_notification(run, routes, check, status, needle):
    http = FakeHttp(routes)
    result = run({"gates": ["gate3"], "notification_timeout": 10, "loki_url": "http://127.0.0.1:9"}, http, check)
    found = result["checks"]["alert_notification"]
    assert found["status"] == status, found
    assert needle in said(found)
    posts = [json.loads(c["data"])[0] for c in http.calls if c["method"] == "POST"]
    if check or not routes:
        assert posts == []
    else:
        # Posted, then resolved: the second post ends the alert.
        assert [p["labels"]["alertname"] for p in posts] == ["OdinVerifyTestNotification"] * 2
        assert posts[1]["endsAt"] < posts[0]["endsAt"]


# ---------------------------------------------------------------- the report


def test_report_and_markdown_are_returned_not_written(run, tmp_path):
    result = run({"gates": ["gate1", "gate4"], "host": "laptop", "nodes": read("nodes-ready.json")}, kubeconfig=True)
    report = result["report"]
    assert report["format"] == 1 and report["host"] == "laptop"
    assert report["gates"] == result["gates"]
    assert report["summary"] == result["summary"]
    assert report["passed"] is result["passed"] is False
    assert result["failed_checks"][0].startswith("gate1 system_pods - The pods were not read")
    assert "## Gate 1: Cluster, GPU and storage (FAIL)" in result["markdown"]
    assert "| K3s nodes Ready | PASS | 1/1 Ready | all Ready | laptop |" in result["markdown"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k3s.yaml"]
