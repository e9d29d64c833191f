#!/usr/bin/python
# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_verify
short_description: Measure ODIN's success gates against the live stack and write a report
version_added: "0.1.0"
description:
  - Checks each criterion of the four success gates and returns pass, fail or skip with the measured value.
  - C(gate1) cluster, GPU and storage. Every node Ready; pods in O(system_namespaces) running and ready;
    the GPU visible on the host (from the result of M(odin.stack.gpu_validate) passed in O(gpu_result));
    C(nvidia.com/gpu) allocatable on a node; a PVC on O(storage_class) provisioned, written and read back
    by a test pod, then removed.
  - C(gate2) metrics and dashboards. Every active Prometheus target up; each Grafana dashboard fetched
    through Grafana's API in less than O(dashboard_max_seconds); O(gpu_metric) present; the age of the
    oldest sample in Prometheus at least O(min_data_age_hours).
  - C(gate3) logs and alerts. A Loki query returning lines from the last O(loki_window_seconds); a marker
    line logged by the test pod found in Loki within O(ingestion_max_seconds) (the measured delay is the
    time from the line's timestamp to the first query that returns it); the O(watchdog_alertname) alert
    active in Alertmanager; a test alert posted to Alertmanager and delivered by the configured receiver
    (measured from Alertmanager's C(alertmanager_notification_requests_total) and
    C(alertmanager_notification_requests_failed_total) counters), then resolved.
  - C(gate4) security. The kubeconfig has no group or other permission bits; Grafana rejects
    C(admin)/C(admin); nothing listens beyond loopback on O(exposure_ports) and no NodePort or
    LoadBalancer service exists (skipped when O(exposure_opt_in)); C(k3s secrets-encrypt status) says
    Enabled; at least one NetworkPolicy in O(monitoring_namespace).
  - GPU checks are skipped, with the reason, when O(gpu_resolved) is false.
  - Kubernetes is read with C(kubectl) (or C(k3s kubectl)); HTTP APIs with timeouts of O(http_timeout) seconds.
  - The test pod and the test notification change the cluster for a moment, so they are skipped in check
    mode. Everything they create is deleted before the module returns. The module reports C(changed=false),
    because the report files are measurements rewritten on every run, not configuration.
options:
  gates:
    description: Gates to check.
    type: list
    elements: str
    choices: [gate1, gate2, gate3, gate4]
    default: [gate1, gate2, gate3, gate4]
  kubeconfig:
    description: kubeconfig used by kubectl; also the file whose mode C(kubeconfig_mode) checks.
    type: path
    default: /etc/rancher/k3s/k3s.yaml
  k3s_binary:
    description: The K3s binary, used for C(k3s secrets-encrypt status) and as C(k3s kubectl) when no kubectl is found.
    type: path
    default: /usr/local/bin/k3s
  system_namespaces:
    description: Namespaces whose pods must all be running and ready (or completed).
    type: list
    elements: str
    default: [kube-system]
  monitoring_namespace:
    description: Namespace of the monitoring stack; must hold at least one NetworkPolicy.
    type: str
    default: monitoring
  gpu_resolved:
    description: Whether this host uses its GPU (the C(odin_gpu_resolved) fact). When false, GPU checks are skipped.
    type: bool
    default: false
  gpu_result:
    description: The registered result of M(odin.stack.gpu_validate) (C(gpus), C(driver_version), C(failed_checks)).
    type: dict
  gpu_resource:
    description: Extended resource the NVIDIA device plugin advertises.
    type: str
    default: nvidia.com/gpu
  gpu_metric:
    description: Metric that must have at least one series in Prometheus when the GPU is used.
    type: str
    default: DCGM_FI_DEV_GPU_UTIL
  storage_class:
    description:
      - StorageClass of the test PVC. The PVC is deleted afterwards, so a class with reclaimPolicy
        Delete leaves nothing behind.
    type: str
    default: local-path
  test_namespace:
    description: Namespace created for the test pod and PVC, deleted afterwards.
    type: str
    default: odin-verify
  test_image:
    description: Image of the test pod (needs C(sh), C(cat) and C(sleep)). The default ships in the K3s airgap images.
    type: str
    default: docker.io/rancher/mirrored-library-busybox:1.36.1
  pod_timeout:
    description: Seconds to wait for the test pod to be ready.
    type: int
    default: 180
  prometheus_url:
    description: Base URL of Prometheus.
    type: str
    default: http://127.0.0.1:9090
  alertmanager_url:
    description: Base URL of Alertmanager.
    type: str
    default: http://127.0.0.1:9093
  grafana_url:
    description: Base URL of Grafana.
    type: str
    default: http://127.0.0.1:3000
  loki_url:
    description: Base URL of Loki.
    type: str
    default: http://127.0.0.1:3100
  grafana_user:
    description: Grafana admin user.
    type: str
    default: admin
  grafana_password_file:
    description: File holding the Grafana admin password. It is read here and never returned.
    type: path
    default: /var/lib/odin/secrets/grafana-admin-password
  dashboard_max_seconds:
    description: Each dashboard must load through Grafana's API faster than this.
    type: float
    default: 2.0
  min_data_age_hours:
    description: The oldest sample in Prometheus must be at least this old (data persisting).
    type: float
    default: 24
  loki_label:
    description: Stream label holding the Kubernetes namespace in Loki.
    type: str
    default: namespace
  loki_window_seconds:
    description: How far back the recent-logs query looks.
    type: int
    default: 300
  ingestion_max_seconds:
    description: The marker line must reach Loki faster than this.
    type: float
    default: 60
  watchdog_alertname:
    description: The always-firing alert that proves Prometheus reaches Alertmanager.
    type: str
    default: Watchdog
  notification_labels:
    description: Labels of the test alert posted to Alertmanager; the route they match decides the receiver.
    type: dict
    default: {alertname: OdinVerifyTestNotification, severity: warning}
  notification_timeout:
    description: Seconds to wait for the test notification to be sent (longer than the route's C(group_wait)).
    type: int
    default: 120
  exposure_ports:
    description: Host ports that must not listen beyond loopback.
    type: list
    elements: int
    default: [3000, 9090, 9093, 3100]
  exposure_opt_in:
    description: The inventory opted in to expose services beyond the laptop; the exposure check is skipped.
    type: bool
    default: false
  http_timeout:
    description: Timeout in seconds of each HTTP request.
    type: float
    default: 10
  report_dir:
    description: Directory for C(verify.json) and C(verify.md). Nothing is written when unset or in check mode.
    type: path
  host:
    description: Host name written in the report.
    type: str
    default: localhost
attributes:
  check_mode:
    support: partial
    details: The test pod, the PVC and the test notification are skipped, the report is not written.
  diff_mode:
    support: none
author:
  - ODIN maintainers
"""

EXAMPLES = r"""
- name: Check every gate
  odin.stack.stack_verify:
    gpu_resolved: "{{ odin_gpu_resolved }}"
    gpu_result: "{{ __gpu_validate }}"
    report_dir: /var/lib/odin/reports
  register: __verify

- name: Only the security gate
  odin.stack.stack_verify:
    gates: [gate4]
    exposure_opt_in: false
"""

RETURN = r"""
passed:
  description: True when no check failed.
  returned: always
  type: bool
summary:
  description: Number of checks per status.
  returned: always
  type: dict
  sample: {pass: 14, fail: 1, skip: 3}
gates:
  description: One entry per selected gate, with its checks.
  returned: always
  type: list
  elements: dict
  sample:
    - id: gate2
      title: Metrics and dashboards
      status: fail
      checks:
        - id: prometheus_targets
          title: Every Prometheus target up
          status: fail
          measured: 11/12 up
          expected: all up
          detail: "node-exporter 10.42.0.7:9100: down (connection refused)"
failed_checks:
  description: One line per failed check, as C(<gate> <check> - <detail>).
  returned: always
  type: list
  elements: str
report_json:
  description: Path of the JSON report, when written.
  returned: when report_dir is set and not in check mode
  type: str
  sample: /var/lib/odin/reports/verify.json
report_markdown:
  description: Path of the Markdown report, when written.
  returned: when report_dir is set and not in check mode
  type: str
  sample: /var/lib/odin/reports/verify.md
"""

import base64
import datetime
import json
import os
import tempfile
import time
import uuid
from urllib import error as urlerror
from urllib import parse as urlparse
from urllib import request as urlrequest

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.odin.stack.plugins.module_utils import _verify as v

# Seconds to keep watching Alertmanager's counters after the first notification was sent.
NOTIFICATION_SETTLE_SECONDS = 3

# datetime.UTC needs Python 3.11; Ubuntu 22.04 hosts run 3.10.
UTC = datetime.timezone.utc  # noqa: UP017

K8S_CHECKS = {
    "node_ready",
    "system_pods",
    "gpu_allocatable",
    "storage_pvc",
    "loki_ingestion",
    "exposure",
    "network_policies",
}


class HttpResult:
    def __init__(self, status, body, seconds, error=None):
        self.status, self.body, self.seconds, self.error = status, body, seconds, error

    def json(self):
        return json.loads(self.body.decode("utf-8"))


def http(method, url, timeout, auth=None, payload=None):
    """One HTTP request; HTTP error statuses are returned, connection errors are in .error."""
    headers = {"Accept": "application/json"}
    data = None
    if payload is not None:
        data = json.dumps(payload).encode("utf-8")
        headers["Content-Type"] = "application/json"
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % auth).encode("utf-8")).decode("ascii")
    if urlparse.urlsplit(url).scheme not in ("http", "https"):
        return HttpResult(None, b"", 0.0, "%s %s: only http and https URLs are supported" % (method, url))
    req = urlrequest.Request(url, data=data, headers=headers, method=method)  # noqa: S310 (scheme checked above)
    start = time.monotonic()
    try:
        with urlrequest.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (scheme checked above)
            body = resp.read()
            return HttpResult(resp.status, body, time.monotonic() - start)
    except urlerror.HTTPError as exc:
        return HttpResult(exc.code, exc.read() or b"", time.monotonic() - start)
    except (urlerror.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return HttpResult(None, b"", time.monotonic() - start, "%s %s: %s" % (method, url, reason))


class Verifier:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.env = {"LC_ALL": "C", "LANG": "C"}
        self.results = {}
        self.kubectl = self._kubectl()
        self.kube_error = None
        if self.kubectl is None:
            self.kube_error = "Neither kubectl nor %s was found: run the k3s layer first." % self.p["k3s_binary"]
        elif not os.path.exists(self.p["kubeconfig"]):
            self.kube_error = "The kubeconfig %s does not exist: run the k3s layer first." % self.p["kubeconfig"]
            self.kubectl = None
        self._k8s_cache = {}

    # -------------------------------------------------------------- helpers

    def _kubectl(self):
        kubectl = self.module.get_bin_path("kubectl", opt_dirs=["/usr/local/bin"])
        if kubectl:
            return [kubectl]
        if os.access(self.p["k3s_binary"], os.X_OK):
            return [self.p["k3s_binary"], "kubectl"]
        return None

    def kube(self, args, data=None):
        cmd = self.kubectl + ["--kubeconfig", self.p["kubeconfig"]] + args
        return self.module.run_command(cmd, data=data, environ_update=self.env, binary_data=False)

    def kube_json(self, args):
        """kubectl get ... -o json, cached; raises RuntimeError with what failed."""
        key = tuple(args)
        if key not in self._k8s_cache:
            rc, out, err = self.kube(args + ["-o", "json"])
            if rc != 0:
                raise RuntimeError("kubectl %s failed (rc=%d): %s" % (" ".join(args), rc, err.strip()[:300]))
            self._k8s_cache[key] = json.loads(out)
        return self._k8s_cache[key]

    def get(self, base, path, **query):
        url = self.p[base].rstrip("/") + path
        if query:
            url += "?" + urlparse.urlencode(query)
        return http("GET", url, self.p["http_timeout"])

    def get_json(self, base, path, **query):
        res = self.get(base, path, **query)
        if res.error:
            raise RuntimeError(res.error)
        if res.status != 200:
            raise RuntimeError(
                "GET %s%s returned HTTP %s: %s"
                % (self.p[base], path, res.status, res.body[:200].decode("utf-8", "replace"))
            )
        return res.json()

    def record(self, check_id, func):
        """Run one evaluation; an exception becomes a failed check that says what failed."""
        try:
            self.results[check_id] = func()
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            self.results[check_id] = v.result(check_id, v.FAIL, None, None, str(exc))

    # -------------------------------------------------------------- checks

    def _no_kubectl(self, checks):
        for check in K8S_CHECKS & set(checks):
            if check == "exposure" or (check == "gpu_allocatable" and not self.p["gpu_resolved"]):
                continue
            self.results[check] = v.result(
                check,
                v.FAIL,
                None,
                None,
                self.kube_error,
            )

    def run(self, checks):
        if self.kubectl is None:
            self._no_kubectl(checks)
        pod = None
        try:
            pod = self.run_pod_checks(checks)
            for check in checks:
                if check not in self.results:
                    getattr(self, "check_" + check)()
        finally:
            if pod:
                self.delete_test_namespace()
        return [self.results[c] for c in checks]

    def run_pod_checks(self, checks):
        """The PVC and log-ingestion checks share one test pod; returns it (None when not started)."""
        wanted = [c for c in ("loki_ingestion", "storage_pvc") if c in checks and c not in self.results]
        if not wanted:
            return None
        if self.module.check_mode:
            for check in wanted:
                self.results[check] = v.skipped(check, "Check mode: the test pod is not created.")
            return None
        pod = self.start_test_pod("storage_pvc" in wanted)
        # Loki is polled from the moment the pod runs (loki_ingestion first): a later first
        # query would add the time spent on other checks to the measured delay.
        for check in wanted:
            getattr(self, "check_" + check)(pod)
        return pod

    def check_node_ready(self):
        self.record("node_ready", lambda: v.eval_nodes(self.kube_json(["get", "nodes"])))

    def check_system_pods(self):
        self.record(
            "system_pods",
            lambda: v.eval_system_pods(
                self.kube_json(["get", "pods", "--all-namespaces"]), self.p["system_namespaces"]
            ),
        )

    def check_gpu_host(self):
        self.record("gpu_host", lambda: v.eval_gpu_host(self.p["gpu_resolved"], self.p["gpu_result"]))

    def check_gpu_allocatable(self):
        if not self.p["gpu_resolved"]:
            self.results["gpu_allocatable"] = v.eval_gpu_allocatable(False, {})
            return
        self.record(
            "gpu_allocatable",
            lambda: v.eval_gpu_allocatable(True, self.kube_json(["get", "nodes"]), self.p["gpu_resource"]),
        )

    def check_network_policies(self):
        ns = self.p["monitoring_namespace"]
        self.record(
            "network_policies",
            lambda: v.eval_network_policies(self.kube_json(["get", "networkpolicies", "-n", ns]), ns),
        )

    def check_exposure(self):
        listeners = []
        for path, ipv6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
            try:
                with open(path, encoding="ascii") as handle:
                    listeners += v.parse_proc_net_tcp(handle.read(), ipv6)
            except OSError:
                continue
        services, error = {}, None
        if not self.p["exposure_opt_in"]:
            if self.kubectl is None:
                error = self.kube_error
            else:
                try:
                    services = self.kube_json(["get", "services", "--all-namespaces"])
                except (RuntimeError, ValueError) as exc:
                    error = str(exc)
        ports = set(self.p["exposure_ports"])
        self.results["exposure"] = v.eval_exposure(listeners, ports, services, self.p["exposure_opt_in"], error)

    def check_kubeconfig_mode(self):
        path = self.p["kubeconfig"]
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = None
        self.results["kubeconfig_mode"] = v.eval_kubeconfig_mode(path, mode)

    def check_secrets_encryption(self):
        k3s = self.p["k3s_binary"]
        if not os.access(k3s, os.X_OK):
            self.results["secrets_encryption"] = v.result(
                "secrets_encryption", v.FAIL, None, "Enabled", "%s not found: run the k3s layer first." % k3s
            )
            return
        rc, out, err = self.module.run_command([k3s, "secrets-encrypt", "status"], environ_update=self.env)
        self.results["secrets_encryption"] = v.eval_secrets_encryption(rc, out, err)

    def check_prometheus_targets(self):
        self.record(
            "prometheus_targets",
            lambda: v.eval_targets(self.get_json("prometheus_url", "/api/v1/targets", state="active")),
        )

    def check_gpu_metrics(self):
        if not self.p["gpu_resolved"]:
            self.results["gpu_metrics"] = v.eval_gpu_metrics(False, None, self.p["gpu_metric"])
            return
        metric = self.p["gpu_metric"]
        self.record(
            "gpu_metrics",
            lambda: v.eval_gpu_metrics(True, self.get_json("prometheus_url", "/api/v1/query", query=metric), metric),
        )

    def check_data_retention(self):
        query = "time() - min(prometheus_tsdb_lowest_timestamp_seconds)"
        self.record(
            "data_retention",
            lambda: v.eval_data_age(
                self.get_json("prometheus_url", "/api/v1/query", query=query), self.p["min_data_age_hours"]
            ),
        )

    def _grafana_password(self):
        try:
            with open(self.p["grafana_password_file"], encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as exc:
            raise RuntimeError(
                "Cannot read the Grafana password file %s: %s" % (self.p["grafana_password_file"], exc.strerror)
            ) from None

    def check_grafana_dashboards(self):
        def evaluate():
            auth = (self.p["grafana_user"], self._grafana_password())
            base = self.p["grafana_url"].rstrip("/")
            res = http("GET", base + "/api/search?type=dash-db&limit=5000", self.p["http_timeout"], auth)
            if res.error or res.status != 200:
                return v.eval_dashboards(
                    [], self.p["dashboard_max_seconds"], res.error or "GET /api/search returned HTTP %s" % res.status
                )
            timings = []
            for dash in res.json():
                one = http(
                    "GET", base + "/api/dashboards/uid/" + urlparse.quote(dash["uid"]), self.p["http_timeout"], auth
                )
                timings.append(
                    {"uid": dash["uid"], "title": dash.get("title"), "status": one.status, "seconds": one.seconds}
                )
            return v.eval_dashboards(timings, self.p["dashboard_max_seconds"])

        self.record("grafana_dashboards", evaluate)

    def check_grafana_default_password(self):
        res = http("GET", self.p["grafana_url"].rstrip("/") + "/api/user", self.p["http_timeout"], ("admin", "admin"))
        if res.error:
            self.results["grafana_default_password"] = v.result(
                "grafana_default_password", v.FAIL, None, "HTTP 401", res.error
            )
        else:
            self.results["grafana_default_password"] = v.eval_default_password(res.status)

    def check_loki_recent_logs(self):
        query = v.loki_recent_query(self.p["loki_label"])
        window = self.p["loki_window_seconds"]

        def evaluate():
            now = time.time_ns()
            resp = self.get_json(
                "loki_url",
                "/loki/api/v1/query_range",
                query=query,
                start=now - window * 10**9,
                end=now,
                limit=20,
                direction="backward",
            )
            return v.eval_loki_recent(resp, window, query)

        self.record("loki_recent_logs", evaluate)

    def check_alertmanager_watchdog(self):
        name = self.p["watchdog_alertname"]
        self.record(
            "alertmanager_watchdog",
            lambda: v.eval_watchdog(self.get_json("alertmanager_url", "/api/v2/alerts", active="true"), name),
        )

    def check_alert_notification(self):
        if self.module.check_mode:
            self.results["alert_notification"] = v.skipped(
                "alert_notification", "Check mode: no test notification is sent."
            )
            return
        base = self.p["alertmanager_url"].rstrip("/")
        timeout = self.p["http_timeout"]
        before = http("GET", base + "/metrics", timeout)
        if before.error or before.status != 200:
            self.results["alert_notification"] = v.eval_notification(
                {}, 0, before.error or "GET %s/metrics returned HTTP %s" % (base, before.status)
            )
            return
        labels = dict(self.p["notification_labels"])
        labels.setdefault("odin_verify_run", uuid.uuid4().hex[:12])
        now = datetime.datetime.now(UTC)
        alert = {
            "labels": labels,
            "annotations": {"summary": "ODIN verification test notification; it resolves by itself."},
            "startsAt": now.isoformat(),
            "endsAt": (now + datetime.timedelta(seconds=self.p["notification_timeout"] + 60)).isoformat(),
        }
        posted = http("POST", base + "/api/v2/alerts", timeout, payload=[alert])
        if posted.error or posted.status != 200:
            self.results["alert_notification"] = v.eval_notification(
                {}, 0, posted.error or "POST %s/api/v2/alerts returned HTTP %s" % (base, posted.status)
            )
            return
        start = time.monotonic()
        receivers = self._receivers_of(labels["odin_verify_run"])
        delta, first_sent = {}, None
        while time.monotonic() - start < self.p["notification_timeout"]:
            after = http("GET", base + "/metrics", timeout)
            if after.status == 200:
                delta = v.notification_delta(before.body.decode("utf-8"), after.body.decode("utf-8"))
                if any(d["failed"] for d in delta.values()):
                    break
                if delta and first_sent is None:
                    first_sent = time.monotonic()
                # A failed attempt is counted after it was sent: give it a moment to show up.
                if first_sent is not None and time.monotonic() - first_sent >= NOTIFICATION_SETTLE_SECONDS:
                    break
            time.sleep(1)
        waited = (first_sent or time.monotonic()) - start
        # Resolve the test alert so it does not linger until endsAt.
        alert["endsAt"] = datetime.datetime.now(UTC).isoformat()
        http("POST", base + "/api/v2/alerts", timeout, payload=[alert])
        res = v.eval_notification(delta, waited)
        if receivers:
            res["detail"] = ("receiver: %s; " % ", ".join(receivers)) + res["detail"]
        self.results["alert_notification"] = res

    def _receivers_of(self, run_id):
        """Receivers Alertmanager routed the test alert to (empty when it cannot tell)."""
        matcher = 'odin_verify_run="%s"' % run_id
        for _ in range(5):
            try:
                alerts = self.get_json("alertmanager_url", "/api/v2/alerts", filter=matcher)
            except (RuntimeError, ValueError):
                return []
            if alerts:
                return sorted({r.get("name", "?") for a in alerts for r in a.get("receivers") or []})
            time.sleep(0.5)
        return []

    # -------------------------------------------------------------- test pod

    def delete_test_namespace(self):
        self.kube(
            ["delete", "namespace", self.p["test_namespace"], "--ignore-not-found", "--wait=true", "--timeout=120s"]
        )

    def start_test_pod(self, with_pvc):
        ns = self.p["test_namespace"]
        pod = {
            "name": "odin-verify",
            "token": uuid.uuid4().hex,
            "marker": "odin-verify-marker-" + uuid.uuid4().hex,
            "error": None,
        }
        # A namespace left by an interrupted run would keep the old pod; start clean.
        self.delete_test_namespace()
        manifest = v.test_pod_manifests(
            ns,
            pod["name"],
            self.p["test_image"],
            pod["token"],
            marker=pod["marker"],
            storage_class=self.p["storage_class"] if with_pvc else None,
        )
        rc, out, err = self.kube(["apply", "-f", "-"], data=json.dumps(manifest))
        if rc != 0:
            pod["error"] = "kubectl apply of the test pod failed (rc=%d): %s" % (rc, err.strip()[:300])
            return pod
        rc, out, err = self.kube(
            ["wait", "-n", ns, "--for=condition=Ready", "pod/" + pod["name"], "--timeout=%ds" % self.p["pod_timeout"]]
        )
        pod["ready"] = rc == 0
        pod["ready_at"] = time.time()
        if rc != 0:
            pod["error"] = "The test pod was not ready within %ds: %s" % (self.p["pod_timeout"], err.strip()[:300])
        return pod

    def check_storage_pvc(self, pod):
        def evaluate():
            if pod is None or "ready" not in pod:
                raise RuntimeError((pod or {}).get("error") or "The test pod was not started.")
            ns = self.p["test_namespace"]
            pvc = self.kube_json(["get", "pvc", "-n", ns, pod["name"]])
            logs = ""
            if pod.get("ready"):
                rc, logs, err = self.kube(["logs", "-n", ns, pod["name"]])
            return v.eval_pvc(pvc, pod.get("ready"), logs, pod["token"], self.p["storage_class"])

        self.record("storage_pvc", evaluate)

    def check_loki_ingestion(self, pod):
        max_s = self.p["ingestion_max_seconds"]
        if pod is None or not pod.get("ready"):
            self.results["loki_ingestion"] = v.eval_ingestion(
                None, max_s, error=(pod or {}).get("error") or "The test pod did not run."
            )
            return
        query = v.loki_marker_query(self.p["loki_label"], self.p["test_namespace"], pod["marker"])
        # Wait past the limit so a slow ingestion is measured (and fails) rather than reported as missing.
        deadline = time.monotonic() + max_s + 30
        start_ns = int((pod["ready_at"] - 600) * 10**9)
        waited_from = time.monotonic()
        last_error = None
        while time.monotonic() < deadline:
            res = self.get(
                "loki_url",
                "/loki/api/v1/query_range",
                query=query,
                start=start_ns,
                end=time.time_ns(),
                limit=5,
                direction="forward",
            )
            if res.status == 200:
                entries = v.loki_entries(res.json())
                if entries:
                    delay = time.time() - entries[0][0] / 1e9
                    self.results["loki_ingestion"] = v.eval_ingestion(delay, max_s)
                    return
                last_error = None
            else:
                last_error = res.error or "Loki returned HTTP %s: %s" % (
                    res.status,
                    res.body[:200].decode("utf-8", "replace"),
                )
            time.sleep(1)
        if last_error:
            self.results["loki_ingestion"] = v.eval_ingestion(None, max_s, error=last_error)
        else:
            self.results["loki_ingestion"] = v.eval_ingestion(
                None, max_s, waited_seconds=time.monotonic() - waited_from
            )


def write_atomic(path, text, mode=0o644):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            gates=dict(type="list", elements="str", choices=v.GATE_IDS, default=list(v.GATE_IDS)),
            kubeconfig=dict(type="path", default="/etc/rancher/k3s/k3s.yaml"),
            k3s_binary=dict(type="path", default="/usr/local/bin/k3s"),
            system_namespaces=dict(type="list", elements="str", default=["kube-system"]),
            monitoring_namespace=dict(type="str", default="monitoring"),
            gpu_resolved=dict(type="bool", default=False),
            gpu_result=dict(type="dict"),
            gpu_resource=dict(type="str", default="nvidia.com/gpu"),
            gpu_metric=dict(type="str", default="DCGM_FI_DEV_GPU_UTIL"),
            storage_class=dict(type="str", default="local-path"),
            test_namespace=dict(type="str", default="odin-verify"),
            test_image=dict(type="str", default="docker.io/rancher/mirrored-library-busybox:1.36.1"),
            pod_timeout=dict(type="int", default=180),
            prometheus_url=dict(type="str", default="http://127.0.0.1:9090"),
            alertmanager_url=dict(type="str", default="http://127.0.0.1:9093"),
            grafana_url=dict(type="str", default="http://127.0.0.1:3000"),
            loki_url=dict(type="str", default="http://127.0.0.1:3100"),
            grafana_user=dict(type="str", default="admin"),
            # A path, not the secret: the password itself is read from the file and never returned.
            grafana_password_file=dict(
                type="path", default="/var/lib/odin/secrets/grafana-admin-password", no_log=False
            ),
            dashboard_max_seconds=dict(type="float", default=2.0),
            min_data_age_hours=dict(type="float", default=24),
            loki_label=dict(type="str", default="namespace"),
            loki_window_seconds=dict(type="int", default=300),
            ingestion_max_seconds=dict(type="float", default=60),
            watchdog_alertname=dict(type="str", default="Watchdog"),
            notification_labels=dict(
                type="dict", default={"alertname": "OdinVerifyTestNotification", "severity": "warning"}
            ),
            notification_timeout=dict(type="int", default=120),
            exposure_ports=dict(type="list", elements="int", default=[3000, 9090, 9093, 3100]),
            exposure_opt_in=dict(type="bool", default=False),
            http_timeout=dict(type="float", default=10),
            report_dir=dict(type="path"),
            host=dict(type="str", default="localhost"),
        ),
        supports_check_mode=True,
    )
    gates = [g for g in v.GATE_IDS if g in module.params["gates"]]
    checks = v.checks_for(gates)
    results = Verifier(module).run(checks)
    created = datetime.datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    report = v.build_report(results, gates, module.params["host"], created)
    out = dict(
        changed=False,
        passed=report["passed"],
        summary=report["summary"],
        gates=report["gates"],
        failed_checks=v.failed_checks(report),
    )

    report_dir = module.params["report_dir"]
    if report_dir and not module.check_mode:
        try:
            os.makedirs(report_dir, mode=0o750, exist_ok=True)
            out["report_json"] = os.path.join(report_dir, "verify.json")
            out["report_markdown"] = os.path.join(report_dir, "verify.md")
            write_atomic(out["report_json"], json.dumps(report, indent=2, sort_keys=True) + "\n")
            write_atomic(out["report_markdown"], v.render_markdown(report))
        except OSError as exc:
            module.fail_json(
                msg="Cannot write the verification report to %s: %s. Check the directory's owner and free space."
                % (report_dir, exc),
                **out,
            )
    module.exit_json(**out)


def main():
    run_module()


if __name__ == "__main__":
    main()
