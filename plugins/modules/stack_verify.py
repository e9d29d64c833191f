#!/usr/bin/python
# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_verify
short_description: Measure ODIN's success gates against the live stack and return the report
version_added: "0.1.0"
description:
  - Checks each criterion of the four success gates and returns pass, fail or skip with the measured value,
    and the report as a document and as Markdown. It only measures; it writes no file and creates nothing in
    the cluster (the one test alert it posts to Alertmanager is resolved before it returns). The role
    C(odin.stack.verify) reads the cluster, runs the test pod, passes what it found in and writes the report.
  - C(gate1) cluster, GPU and storage. Every node Ready (O(nodes)); pods in O(system_namespaces) running and
    ready (O(pods)); the GPU visible on the host (from the result of M(odin.stack.gpu_validate) passed in
    O(gpu_result)); C(nvidia.com/gpu) allocatable on a node; a PVC on O(storage_class) provisioned, written
    and read back by the test pod (O(test_pod)).
  - C(gate2) metrics and dashboards. Every active Prometheus target up; each Grafana dashboard fetched
    through Grafana's API in less than O(dashboard_max_seconds); O(gpu_metric) present; the age of the
    oldest sample in Prometheus at least O(min_data_age_hours).
  - C(gate3) logs and alerts. A Loki query returning lines from the last O(loki_window_seconds); the marker
    line logged by the test pod found in Loki within O(ingestion_max_seconds) (the measured delay is the
    time from the line's timestamp to the first query that returns it; Loki is polled first, as soon as
    the module starts); the O(watchdog_alertname) alert active in Alertmanager; a test alert posted to
    Alertmanager and delivered by the configured receiver (measured from Alertmanager's
    C(alertmanager_notification_requests_total) and C(alertmanager_notification_requests_failed_total)
    counters), then resolved.
  - C(gate4) security. The kubeconfig has no group or other permission bits; Grafana rejects
    C(admin)/C(admin); nothing listens beyond loopback on O(exposure_ports) and no NodePort or
    LoadBalancer service exists (O(services); skipped when O(exposure_opt_in)); C(k3s secrets-encrypt status)
    says Enabled (O(secrets_encrypt_status)); at least one NetworkPolicy in O(monitoring_namespace)
    (O(network_policies)).
  - GPU checks are skipped, with the reason, when O(gpu_resolved) is false.
  - Cluster objects come in as registered results of M(kubernetes.core.k8s_info). A result that is missing
    or skipped fails its checks with the reason (the kubeconfig does not exist, or it was not read); a
    failed read fails them with the module's message.
  - HTTP APIs are read through Ansible's URL library with timeouts of O(http_timeout) seconds.
  - The test notification changes Alertmanager for a moment, so it is skipped in check mode; so are the
    test pod's checks, since the role creates no pod in check mode. The module reports C(changed=false).
options:
  gates:
    description: Gates to check.
    type: list
    elements: str
    choices: [gate1, gate2, gate3, gate4]
    default: [gate1, gate2, gate3, gate4]
  host:
    description: Host name written in the report.
    type: str
    default: localhost
  kubeconfig:
    description:
      - The kubeconfig the cluster was read with. Its mode is checked (C(kubeconfig_mode)); when it does not
        exist, the cluster checks say so.
    type: path
    default: /etc/rancher/k3s/k3s.yaml
  nodes:
    description: Registered result of M(kubernetes.core.k8s_info) for kind C(Node).
    type: dict
  pods:
    description: Registered result of M(kubernetes.core.k8s_info) for kind C(Pod) in every namespace.
    type: dict
  network_policies:
    description: Registered result of M(kubernetes.core.k8s_info) for kind C(NetworkPolicy) in O(monitoring_namespace).
    type: dict
  services:
    description: Registered result of M(kubernetes.core.k8s_info) for kind C(Service) in every namespace.
    type: dict
  k3s_binary:
    description: The K3s binary, named in the failure when O(secrets_encrypt_status) is not given.
    type: path
    default: /usr/local/bin/k3s
  secrets_encrypt_status:
    description:
      - Registered result of C(k3s secrets-encrypt status) (C(rc), C(stdout), C(stderr)).
      - When missing or skipped, C(secrets_encryption) fails saying that O(k3s_binary) was not found.
    type: dict
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
    description: StorageClass of the test PVC, shown in the expected value of C(storage_pvc).
    type: str
    default: local-path
  test_namespace:
    description: Namespace of the test pod; its marker line is searched in Loki under this namespace label.
    type: str
    default: odin-verify
  test_pod:
    description:
      - What the role found running the test pod (see the filter C(odin.stack.verify_test_pod)). Used by
        C(storage_pvc) and C(loki_ingestion); when missing, both fail with the reason.
    type: dict
    suboptions:
      created:
        description: Registered result of M(kubernetes.core.k8s) creating the namespace, PVC and pod.
        type: dict
      pod:
        description: Registered result of M(kubernetes.core.k8s_info) reading the pod after waiting for it to be Ready.
        type: dict
      pvc:
        description: Registered result of M(kubernetes.core.k8s_info) reading the PVC.
        type: dict
      log:
        description: Registered result of M(kubernetes.core.k8s_log) reading the pod's log.
        type: dict
      token:
        description: "The token the pod wrote to the PVC; C(read: <token>) in the log proves it was read back."
        type: str
      marker:
        description: The unique line the pod logged, searched in Loki.
        type: str
      wait_seconds:
        description: How long the role waited for the pod to be Ready, named when it was not.
        type: int
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
attributes:
  check_mode:
    description: Whether the module can run with C(--check) and report what it would change without changing it.
    support: full
    details: The test notification is not sent and the test pod's checks are skipped.
  diff_mode:
    description: Whether the module returns a diff of what it changed with C(--diff).
    support: none
author:
  - ODIN maintainers (@odin-stack)
"""

EXAMPLES = r"""
- name: Read the nodes
  kubernetes.core.k8s_info:
    kind: Node
  register: __nodes
  failed_when: false

- name: Read secrets encryption
  ansible.builtin.command:
    argv: [/usr/local/bin/k3s, secrets-encrypt, status]
  register: __secrets_encrypt
  changed_when: false
  check_mode: false
  failed_when: false

- name: Check gates 1 and 4
  odin.stack.stack_verify:
    gates: [gate1, gate4]
    nodes: "{{ __nodes }}"
    secrets_encrypt_status: "{{ __secrets_encrypt }}"
    gpu_resolved: "{{ odin_gpu_resolved }}"
  register: __verify

- name: Write the Markdown report
  ansible.builtin.copy:
    content: "{{ __verify.markdown }}"
    dest: /var/lib/odin/reports/verify.md
    mode: "0640"
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
report:
  description:
    - The report document (C(format), C(created), C(host), C(passed), C(summary), C(gates)), as C(verify.json)
      holds it.
  returned: always
  type: dict
markdown:
  description: The report as Markdown, one table per gate, as C(verify.md) holds it.
  returned: always
  type: str
"""

import datetime
import json
import os
import time
import uuid

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import ConnectionError as UrlConnectionError
from ansible.module_utils.urls import open_url

from ansible_collections.odin.stack.plugins.module_utils import _verify as v

# Seconds to keep watching Alertmanager's counters after the first notification was sent.
NOTIFICATION_SETTLE_SECONDS = 3
# How far before the test pod started the marker query looks (clock differences, slow starts).
MARKER_LOOKBACK_SECONDS = 600

# datetime.UTC needs Python 3.11; Ubuntu 22.04 hosts run 3.10.
UTC = datetime.timezone.utc  # noqa: UP017

# The cluster reads each check needs: option name and what it holds, in words.
K8S_READS = {"nodes": "nodes", "pods": "pods", "network_policies": "NetworkPolicies", "services": "services"}


class HttpResult:
    def __init__(self, status, body, seconds, error=None):
        self.status, self.body, self.seconds, self.error = status, body, seconds, error

    def json(self):
        return json.loads(self.body.decode("utf-8"))


def http(method, url, timeout, auth=None, payload=None):
    """One request through ansible.module_utils.urls; HTTP error statuses are returned, failures are in .error."""
    if url is None:
        return HttpResult(None, b"", 0.0, "%s: only http and https URLs are supported" % method)
    headers = {"Accept": "application/json"}
    data = None
    if payload is not None:
        data = json.dumps(payload)
        headers["Content-Type"] = "application/json"
    start = time.monotonic()
    try:
        resp = open_url(
            url,
            data=data,
            headers=headers,
            method=method,
            timeout=timeout,
            url_username=auth[0] if auth else None,
            url_password=auth[1] if auth else None,
            force_basic_auth=bool(auth),
            use_netrc=False,
        )
        body = resp.read()
        return HttpResult(resp.status, body, time.monotonic() - start)
    except OSError as exc:
        # An HTTP error status arrives as an exception that carries the status and the body.
        if isinstance(getattr(exc, "code", None), int) and hasattr(exc, "read"):
            try:
                body = exc.read() or b""
            except (OSError, AttributeError):
                body = b""
            return HttpResult(exc.code, body, time.monotonic() - start)
        reason = getattr(exc, "reason", exc)
        return HttpResult(None, b"", time.monotonic() - start, "%s %s: %s" % (method, url, reason))
    except (UrlConnectionError, ValueError) as exc:
        return HttpResult(None, b"", time.monotonic() - start, "%s %s: %s" % (method, url, exc))


class Verifier:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.results = {}
        self.kubeconfig_exists = os.path.exists(self.p["kubeconfig"])

    # -------------------------------------------------------------- inputs

    def not_read(self, what):
        """Why `what` is missing from the inputs."""
        if not self.kubeconfig_exists:
            return "The kubeconfig %s does not exist: run the k3s layer first." % self.p["kubeconfig"]
        return "The %s were not read from the cluster." % what

    def k8s(self, option):
        """{"items": [...]} of a k8s_info result passed in; raises RuntimeError saying what is missing or failed."""
        what = K8S_READS[option]
        return v.k8s_items(self.p[option], what, self.not_read(what))

    def test_pod(self):
        """(pod object, None) of a test pod that is Ready, or (pod object or None, why it did not run)."""
        given = self.p["test_pod"]
        if not given:
            return None, self.not_read("test pod") if not self.kubeconfig_exists else "The test pod was not started."
        created = given.get("created") or {}
        if created.get("failed"):
            return None, "Creating the test namespace, PVC and pod failed: %s" % v.k8s_error(created.get("msg"))[:300]
        try:
            pods = v.k8s_items(given.get("pod"), "test pod", "The test pod was not read after it was created.")
            pod = pods["items"][0]
        except RuntimeError as exc:
            return None, str(exc)
        except IndexError:
            return None, "The test pod does not exist after it was created."
        if v.pod_ready(pod):
            return pod, None
        waited = given.get("wait_seconds")
        return pod, "The test pod was not Ready%s: %s" % (
            " within %ds" % waited if waited else "",
            v.pod_problem(pod) or "no Ready condition",
        )

    # -------------------------------------------------------------- helpers

    def get(self, base, path, **query):
        return http("GET", v.api_url(self.p[base], path, **query), self.p["http_timeout"])

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

    def run(self, checks):
        # Loki is polled first, from the moment the module starts: a later first query would
        # add the time spent on the other checks to the measured ingestion delay.
        order = [c for c in ("loki_ingestion", "storage_pvc") if c in checks]
        order += [c for c in checks if c not in order]
        for check in order:
            getattr(self, "check_" + check)()
        return [self.results[c] for c in checks]

    def check_node_ready(self):
        self.record("node_ready", lambda: v.eval_nodes(self.k8s("nodes")))

    def check_system_pods(self):
        self.record("system_pods", lambda: v.eval_system_pods(self.k8s("pods"), self.p["system_namespaces"]))

    def check_gpu_host(self):
        self.record("gpu_host", lambda: v.eval_gpu_host(self.p["gpu_resolved"], self.p["gpu_result"]))

    def check_gpu_allocatable(self):
        if not self.p["gpu_resolved"]:
            self.results["gpu_allocatable"] = v.eval_gpu_allocatable(False, {})
            return
        self.record(
            "gpu_allocatable",
            lambda: v.eval_gpu_allocatable(True, self.k8s("nodes"), self.p["gpu_resource"]),
        )

    def check_network_policies(self):
        ns = self.p["monitoring_namespace"]
        self.record("network_policies", lambda: v.eval_network_policies(self.k8s("network_policies"), ns))

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
            try:
                services = self.k8s("services")
            except RuntimeError as exc:
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
        status = self.p["secrets_encrypt_status"]
        if not status or status.get("skipped") or status.get("rc") is None:
            self.results["secrets_encryption"] = v.result(
                "secrets_encryption",
                v.FAIL,
                None,
                "Enabled",
                "%s not found: run the k3s layer first." % self.p["k3s_binary"],
            )
            return
        self.results["secrets_encryption"] = v.eval_secrets_encryption(
            status["rc"], status.get("stdout") or "", status.get("stderr") or status.get("msg") or ""
        )

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
                password = handle.read().strip()
        except OSError as exc:
            raise RuntimeError(
                "Cannot read the Grafana password file %s: %s" % (self.p["grafana_password_file"], exc.strerror)
            ) from None
        if password:
            self.module.no_log_values.add(password)
        return password

    def check_grafana_dashboards(self):
        def evaluate():
            auth = (self.p["grafana_user"], self._grafana_password())
            base, timeout = self.p["grafana_url"], self.p["http_timeout"]
            res = http("GET", v.api_url(base, "/api/search", type="dash-db", limit=5000), timeout, auth)
            if res.error or res.status != 200:
                return v.eval_dashboards(
                    [], self.p["dashboard_max_seconds"], res.error or "GET /api/search returned HTTP %s" % res.status
                )
            timings = []
            for dash in res.json():
                one = http("GET", v.api_url(base, "/api/dashboards/uid/" + v.url_segment(dash["uid"])), timeout, auth)
                timings.append(
                    {"uid": dash["uid"], "title": dash.get("title"), "status": one.status, "seconds": one.seconds}
                )
            return v.eval_dashboards(timings, self.p["dashboard_max_seconds"])

        self.record("grafana_dashboards", evaluate)

    def check_grafana_default_password(self):
        res = http("GET", v.api_url(self.p["grafana_url"], "/api/user"), self.p["http_timeout"], ("admin", "admin"))
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
        base, timeout = self.p["alertmanager_url"], self.p["http_timeout"]
        metrics_url, alerts_url = v.api_url(base, "/metrics"), v.api_url(base, "/api/v2/alerts")
        before = http("GET", metrics_url, timeout)
        if before.error or before.status != 200:
            self.results["alert_notification"] = v.eval_notification(
                {}, 0, before.error or "GET %s returned HTTP %s" % (metrics_url, before.status)
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
        posted = http("POST", alerts_url, timeout, payload=[alert])
        if posted.error or posted.status != 200:
            self.results["alert_notification"] = v.eval_notification(
                {}, 0, posted.error or "POST %s returned HTTP %s" % (alerts_url, posted.status)
            )
            return
        start = time.monotonic()
        receivers = self._receivers_of(labels["odin_verify_run"])
        delta, first_sent = {}, None
        while time.monotonic() - start < self.p["notification_timeout"]:
            after = http("GET", metrics_url, timeout)
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
        http("POST", alerts_url, timeout, payload=[alert])
        res = v.eval_notification(delta, waited)
        if receivers:
            res["detail"] = ("receiver: %s; " % ", ".join(receivers)) + res["detail"]
        self.results["alert_notification"] = res

    def _receivers_of(self, run_id):
        """Receivers Alertmanager routed the test alert to (empty when it cannot tell)."""
        matcher = 'odin_verify_run="%s"' % run_id
        for _attempt in range(5):
            try:
                alerts = self.get_json("alertmanager_url", "/api/v2/alerts", filter=matcher)
            except (RuntimeError, ValueError):
                return []
            if alerts:
                return sorted({r.get("name", "?") for a in alerts for r in a.get("receivers") or []})
            time.sleep(0.5)
        return []

    # -------------------------------------------------------------- the test pod's checks

    def check_storage_pvc(self):
        if self.module.check_mode:
            self.results["storage_pvc"] = v.skipped("storage_pvc", "Check mode: the test pod is not created.")
            return

        def evaluate():
            pod, error = self.test_pod()
            if pod is None:
                raise RuntimeError(error)
            given = self.p["test_pod"]
            pvcs = v.k8s_items(given.get("pvc"), "test PVC", "The test PVC was not read.")
            pvc = pvcs["items"][0] if pvcs["items"] else None
            ready = error is None
            log, log_error = "", None
            if ready:
                read = given.get("log") or {}
                log = read.get("log")
                if log is None:
                    log_error = read.get("msg") or "the log was not read"
            token = given.get("token") or ""
            return v.eval_pvc(pvc, ready, log, token, self.p["storage_class"], log_error=log_error, pod_error=error)

        self.record("storage_pvc", evaluate)

    def check_loki_ingestion(self):
        max_s = self.p["ingestion_max_seconds"]
        if self.module.check_mode:
            self.results["loki_ingestion"] = v.skipped("loki_ingestion", "Check mode: the test pod is not created.")
            return
        pod, error = self.test_pod()
        if error:
            self.results["loki_ingestion"] = v.eval_ingestion(None, max_s, error=error)
            return
        marker = self.p["test_pod"].get("marker")
        if not marker:
            self.results["loki_ingestion"] = v.eval_ingestion(None, max_s, error="No marker line was given.")
            return
        query = v.loki_marker_query(self.p["loki_label"], self.p["test_namespace"], marker)
        started = v.k8s_timestamp((pod.get("status") or {}).get("startTime")) or time.time()
        start_ns = int((started - MARKER_LOOKBACK_SECONDS) * 10**9)
        # Wait past the limit so a slow ingestion is measured (and fails) rather than reported as missing.
        deadline = time.monotonic() + max_s + 30
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


ARGUMENT_SPEC = dict(
    gates=dict(type="list", elements="str", choices=v.GATE_IDS, default=list(v.GATE_IDS)),
    host=dict(type="str", default="localhost"),
    kubeconfig=dict(type="path", default="/etc/rancher/k3s/k3s.yaml"),
    nodes=dict(type="dict"),
    pods=dict(type="dict"),
    network_policies=dict(type="dict"),
    services=dict(type="dict"),
    k3s_binary=dict(type="path", default="/usr/local/bin/k3s"),
    # The output of `k3s secrets-encrypt status`: the encryption state, no key material.
    secrets_encrypt_status=dict(type="dict", no_log=False),
    system_namespaces=dict(type="list", elements="str", default=["kube-system"]),
    monitoring_namespace=dict(type="str", default="monitoring"),
    gpu_resolved=dict(type="bool", default=False),
    gpu_result=dict(type="dict"),
    gpu_resource=dict(type="str", default="nvidia.com/gpu"),
    gpu_metric=dict(type="str", default="DCGM_FI_DEV_GPU_UTIL"),
    storage_class=dict(type="str", default="local-path"),
    test_namespace=dict(type="str", default="odin-verify"),
    test_pod=dict(
        type="dict",
        options=dict(
            created=dict(type="dict"),
            pod=dict(type="dict"),
            pvc=dict(type="dict"),
            log=dict(type="dict"),
            # A random string the pod writes and reads back, not a credential.
            token=dict(type="str", no_log=False),
            marker=dict(type="str"),
            wait_seconds=dict(type="int"),
        ),
    ),
    prometheus_url=dict(type="str", default="http://127.0.0.1:9090"),
    alertmanager_url=dict(type="str", default="http://127.0.0.1:9093"),
    grafana_url=dict(type="str", default="http://127.0.0.1:3000"),
    loki_url=dict(type="str", default="http://127.0.0.1:3100"),
    grafana_user=dict(type="str", default="admin"),
    # A path, not the secret: the password itself is read from the file and never returned.
    grafana_password_file=dict(type="path", default="/var/lib/odin/secrets/grafana-admin-password", no_log=False),
    dashboard_max_seconds=dict(type="float", default=2.0),
    min_data_age_hours=dict(type="float", default=24),
    loki_label=dict(type="str", default="namespace"),
    loki_window_seconds=dict(type="int", default=300),
    ingestion_max_seconds=dict(type="float", default=60),
    watchdog_alertname=dict(type="str", default="Watchdog"),
    notification_labels=dict(type="dict", default={"alertname": "OdinVerifyTestNotification", "severity": "warning"}),
    notification_timeout=dict(type="int", default=120),
    exposure_ports=dict(type="list", elements="int", default=[3000, 9090, 9093, 3100]),
    exposure_opt_in=dict(type="bool", default=False),
    http_timeout=dict(type="float", default=10),
)


def run_module():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    gates = [g for g in v.GATE_IDS if g in module.params["gates"]]
    results = Verifier(module).run(v.checks_for(gates))
    created = datetime.datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    report = v.build_report(results, gates, module.params["host"], created)
    module.exit_json(
        changed=False,
        passed=report["passed"],
        summary=report["summary"],
        gates=report["gates"],
        failed_checks=v.failed_checks(report),
        report=report,
        markdown=v.render_markdown(report),
    )


def main():
    run_module()


if __name__ == "__main__":
    main()
