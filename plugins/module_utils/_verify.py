# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Success gates behind odin.stack.stack_verify: evaluate API responses, build and render the report.

Plain Python with no Ansible imports. Every evaluator takes what an API, a command or a
kubernetes.core module returned (already decoded from JSON where the API speaks JSON)
and gives one check result: a dict with the check id, its status (pass, fail or skip),
the measured value, what was expected and a detail line an operator can act on.
"""

from __future__ import annotations

import calendar
import json
import re
from urllib import parse as urlparse

PASS = "pass"  # noqa: S105 (a check status, not a password)
FAIL = "fail"
SKIP = "skip"

# The gates and the checks each one is made of, in report order.
GATES = [
    {
        "id": "gate1",
        "title": "Cluster, GPU and storage",
        "checks": ["node_ready", "system_pods", "gpu_host", "gpu_allocatable", "storage_pvc"],
    },
    {
        "id": "gate2",
        "title": "Metrics and dashboards",
        "checks": ["prometheus_targets", "grafana_dashboards", "gpu_metrics", "data_retention"],
    },
    {
        "id": "gate3",
        "title": "Logs and alerts",
        "checks": ["loki_recent_logs", "loki_ingestion", "alertmanager_watchdog", "alert_notification"],
    },
    {
        "id": "gate4",
        "title": "Security",
        "checks": ["kubeconfig_mode", "grafana_default_password", "exposure", "secrets_encryption", "network_policies"],
    },
]
GATE_IDS = [gate["id"] for gate in GATES]

CHECK_TITLES = {
    "node_ready": "K3s nodes Ready",
    "system_pods": "System pods healthy",
    "gpu_host": "GPU visible on the host",
    "gpu_allocatable": "GPU allocatable in the cluster",
    "storage_pvc": "PVC provisioned, written and read by a pod",
    "prometheus_targets": "Every Prometheus target up",
    "grafana_dashboards": "Grafana dashboards load in time",
    "gpu_metrics": "GPU metrics present",
    "data_retention": "Oldest sample age (data persisting)",
    "loki_recent_logs": "Loki returns recent logs",
    "loki_ingestion": "Marker log line ingested by Loki in time",
    "alertmanager_watchdog": "Alertmanager receives the Watchdog alert",
    "alert_notification": "Test notification delivered to the receiver",
    "kubeconfig_mode": "kubeconfig readable by root only",
    "grafana_default_password": "Grafana default password rejected",
    "exposure": "Nothing exposed beyond the laptop",
    "secrets_encryption": "Secrets encrypted at rest",
    "network_policies": "NetworkPolicies present",
}


def result(check, status, measured=None, expected=None, detail=""):
    return {
        "id": check,
        "title": CHECK_TITLES.get(check, check),
        "status": status,
        "measured": measured,
        "expected": expected,
        "detail": detail,
    }


def skipped(check, reason):
    return result(check, SKIP, detail=reason)


def checks_for(gates):
    """Check ids of the selected gates, in report order."""
    ids = []
    for gate in GATES:
        if gate["id"] in gates:
            ids.extend(gate["checks"])
    return ids


def _fmt_seconds(value):
    return "%.2f s" % value


def _fmt_duration(seconds):
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return "%dd %dh %dm" % (days, hours, minutes)
    return "%dh %dm" % (hours, minutes)


# ---------------------------------------------------------------- Kubernetes


def _condition(obj, kind):
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def k8s_error(msg):
    """A kubernetes.core failure message on one line, with the API's own message instead of its headers.

    An API error reads "<what failed>: (500) Reason: ... HTTP response headers: {...}
    HTTP response body: {json}", sometimes followed by a traceback; the body's "message"
    says what went wrong.
    """
    text = str(msg or "")
    head, _sep, rest = text.partition("HTTP response headers:")
    _headers, found, body = rest.partition("HTTP response body:")
    if found:
        try:
            status, _end = json.JSONDecoder().raw_decode(body.strip())
            message = status.get("message")
        except (ValueError, AttributeError):
            message = None
        if message:
            text = "%s %s" % (head, message)
    return " ".join(text.split())


def k8s_items(read, what, missing):
    """The objects of a registered kubernetes.core.k8s_info result, as a {"items": [...]} list.

    read: the result (None or skipped when the role did not read `what`).
    missing: why it was not read, used when it was not. A failed read (its result has no
    resources, only the module's msg) raises RuntimeError saying what failed.
    """
    if not read or read.get("skipped"):
        raise RuntimeError(missing)
    if read.get("resources") is None or read.get("api_found") is False:
        raise RuntimeError(
            "Reading the %s failed: %s" % (what, k8s_error(read.get("msg") or "no resources returned")[:300])
        )
    return {"items": list(read["resources"])}


def pod_ready(pod):
    """Whether a pod object has condition Ready=True."""
    cond = _condition(pod or {}, "Ready")
    return bool(cond and cond.get("status") == "True")


def k8s_timestamp(value):
    """Seconds since the epoch of a Kubernetes timestamp (2026-12-02T10:00:00Z), or None."""
    match = re.match(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?Z$", value or "")
    if not match:
        return None
    return calendar.timegm(tuple(int(g) for g in match.groups()) + (0, 0, 0))


def eval_nodes(node_list):
    """Node objects ({"items": [...]}, see k8s_items): every node has condition Ready=True."""
    nodes = node_list.get("items") or []
    if not nodes:
        return result(
            "node_ready",
            FAIL,
            "0 nodes",
            ">= 1 node Ready",
            "The API server lists no node; check `systemctl status k3s`.",
        )
    not_ready = []
    for node in nodes:
        cond = _condition(node, "Ready")
        if not cond or cond.get("status") != "True":
            reason = (cond or {}).get("reason") or "no Ready condition"
            not_ready.append("%s (%s)" % (node["metadata"]["name"], reason))
    ready = len(nodes) - len(not_ready)
    measured = "%d/%d Ready" % (ready, len(nodes))
    if not_ready:
        return result("node_ready", FAIL, measured, "all Ready", "Not Ready: " + ", ".join(not_ready))
    return result("node_ready", PASS, measured, "all Ready", ", ".join(n["metadata"]["name"] for n in nodes))


def pod_problem(pod):
    """Why a pod is unhealthy, or None when it is Running and ready or has Succeeded."""
    status = pod.get("status") or {}
    phase = status.get("phase", "Unknown")
    if phase == "Succeeded":
        return None
    if phase == "Running":
        waiting = []
        for cstat in status.get("containerStatuses") or []:
            if not cstat.get("ready"):
                reason = ((cstat.get("state") or {}).get("waiting") or {}).get("reason") or "not ready"
                waiting.append("%s: %s" % (cstat.get("name"), reason))
        return "; ".join(waiting) if waiting else None
    reasons = [
        ((c.get("state") or {}).get("waiting") or {}).get("reason")
        for c in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
    ]
    reasons = [r for r in reasons if r]
    return phase + (" (" + ", ".join(reasons) + ")" if reasons else "")


def _owned_by_job(pod):
    return any(ref.get("kind") == "Job" for ref in (pod.get("metadata") or {}).get("ownerReferences") or [])


def eval_system_pods(pod_list, namespaces):
    """Pod objects of every namespace: pods in the system namespaces run and are ready.

    A failed pod of a Job is not counted: Jobs (the K3s Helm installers) retry with a
    new pod, and the Job's last pod decides.
    """
    pods = [p for p in pod_list.get("items") or [] if p["metadata"].get("namespace") in namespaces]
    if not pods:
        return result(
            "system_pods",
            FAIL,
            "0 pods",
            "all Running and ready",
            "No pod in %s; the cluster has not started its add-ons." % ", ".join(namespaces),
        )
    bad, ignored = [], 0
    for pod in pods:
        problem = pod_problem(pod)
        if problem is None:
            continue
        if _owned_by_job(pod) and (pod.get("status") or {}).get("phase") == "Failed":
            ignored += 1
            continue
        bad.append("%s/%s: %s" % (pod["metadata"]["namespace"], pod["metadata"]["name"], problem))
    counted = len(pods) - ignored
    measured = "%d/%d healthy" % (counted - len(bad), counted)
    if bad:
        return result("system_pods", FAIL, measured, "all Running and ready", "; ".join(bad))
    return result("system_pods", PASS, measured, "all Running and ready", "namespaces: " + ", ".join(namespaces))


def eval_gpu_host(gpu_resolved, gpu_result):
    """The registered result of odin.stack.gpu_validate."""
    if not gpu_resolved:
        return skipped(
            "gpu_host",
            "odin_gpu_resolved is false: no NVIDIA GPU is used on this host (odin_gpu_enabled or detection).",
        )
    if not gpu_result:
        return result("gpu_host", FAIL, None, ">= 1 GPU", "No odin.stack.gpu_validate result was passed in.")
    gpus = gpu_result.get("gpus") or []
    driver = gpu_result.get("driver_version")
    names = ", ".join(sorted({str(g.get("product_name") or g.get("name") or "?") for g in gpus}))
    measured = "%d GPU(s)%s%s" % (len(gpus), ": " + names if names else "", ", driver " + driver if driver else "")
    failed = gpu_result.get("failed_checks") or []
    if not gpus or failed or gpu_result.get("failed"):
        detail = "; ".join(
            "%s: expected %s, found %s" % (f.get("check"), f.get("expected"), f.get("found")) for f in failed
        )
        return result(
            "gpu_host",
            FAIL,
            measured,
            ">= 1 GPU, every gpu_validate check passed",
            detail or gpu_result.get("msg", "gpu_validate failed"),
        )
    return result("gpu_host", PASS, measured, ">= 1 GPU, every gpu_validate check passed")


def eval_gpu_allocatable(gpu_resolved, node_list, resource="nvidia.com/gpu"):
    if not gpu_resolved:
        return skipped("gpu_allocatable", "odin_gpu_resolved is false: the device plugin is not deployed.")
    per_node = []
    total = 0
    for node in node_list.get("items") or []:
        value = ((node.get("status") or {}).get("allocatable") or {}).get(resource, "0")
        try:
            count = int(value)
        except ValueError:
            count = 0
        total += count
        per_node.append("%s=%d" % (node["metadata"]["name"], count))
    measured = "%s: %d" % (resource, total)
    if total < 1:
        return result(
            "gpu_allocatable",
            FAIL,
            measured,
            ">= 1",
            "No node advertises %s; check the device plugin pods and the nvidia RuntimeClass." % resource,
        )
    return result("gpu_allocatable", PASS, measured, ">= 1", ", ".join(per_node))


def eval_pvc(pvc, pod_ready, log_text, token, storage_class, *, log_error=None, pod_error=None):
    """The test PVC is Bound and the pod read back the token it wrote to it.

    log_error: why the pod's log could not be read (the log is then not searched).
    pod_error: why the pod is not ready, when it is not.
    """
    phase = ((pvc or {}).get("status") or {}).get("phase", "absent")
    expected = "Bound on %s, token read back" % storage_class
    if phase != "Bound":
        return result(
            "storage_pvc",
            FAIL,
            "PVC %s" % phase,
            expected,
            "The PVC was not provisioned; check the local-path-provisioner pod in kube-system.",
        )
    if not pod_ready:
        return result(
            "storage_pvc",
            FAIL,
            "PVC Bound, pod not ready",
            expected,
            "The test pod did not start with the volume mounted" + (": %s" % pod_error if pod_error else "."),
        )
    if log_error:
        return result(
            "storage_pvc",
            FAIL,
            "PVC Bound, log not read",
            expected,
            "The test pod's log could not be read: %s" % k8s_error(log_error)[:300],
        )
    if ("read: %s" % token) not in (log_text or ""):
        return result(
            "storage_pvc",
            FAIL,
            "PVC Bound, token not read back",
            expected,
            "Pod log: %s" % (log_text or "").strip()[:200],
        )
    return result("storage_pvc", PASS, "PVC Bound, token read back", expected)


def eval_network_policies(policy_list, namespace):
    names = sorted(
        p["metadata"]["name"] for p in policy_list.get("items") or [] if p["metadata"].get("namespace") == namespace
    )
    measured = "%d in %s" % (len(names), namespace)
    if not names:
        return result(
            "network_policies",
            FAIL,
            measured,
            ">= 1",
            "No NetworkPolicy in namespace %s; re-run the monitoring layer." % namespace,
        )
    return result("network_policies", PASS, measured, ">= 1", ", ".join(names))


def eval_exposure(listeners, ports, service_list, opt_in, services_error=None):
    """Nothing listens beyond loopback on the monitoring ports, and no NodePort/LoadBalancer service exists.

    listeners: (address, port) pairs of listening TCP sockets (see parse_proc_net_tcp).
    services_error: why the services could not be listed; the check then fails.
    """
    if opt_in:
        return skipped(
            "exposure", "odin_listen_address is not a loopback address: exposure beyond the laptop is opted in."
        )
    open_ports = sorted({"%s:%d" % (addr, port) for addr, port in listeners if port in ports and not is_loopback(addr)})
    services = sorted(
        "%s/%s (%s)" % (s["metadata"]["namespace"], s["metadata"]["name"], s["spec"]["type"])
        for s in (service_list or {}).get("items") or []
        if (s.get("spec") or {}).get("type") in ("NodePort", "LoadBalancer")
    )
    exposed = open_ports + services
    measured = "%d exposed" % len(exposed)
    problems = []
    if exposed:
        problems.append("Reachable beyond the laptop: " + ", ".join(exposed))
    if services_error:
        problems.append("Services not checked: " + services_error)
    if problems:
        return result("exposure", FAIL, measured, "0 exposed", "; ".join(problems))
    return result("exposure", PASS, measured, "0 exposed", "ports checked: " + ", ".join(str(p) for p in sorted(ports)))


def is_loopback(address):
    return address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1") or address.startswith("::ffff:127.")


def _hex_to_ipv4(value):
    # /proc/net/tcp prints the address as the host-order (little-endian) hex of the 32-bit value.
    raw = bytes.fromhex(value)
    return ".".join(str(b) for b in reversed(raw))


def _hex_to_ipv6(value):
    raw = bytes.fromhex(value)
    # Four 32-bit words, each in host (little-endian) order.
    ordered = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    groups = ["%x" % int.from_bytes(ordered[i : i + 2], "big") for i in range(0, 16, 2)]
    text = ":".join(groups)
    if ordered[:12] == b"\x00" * 10 + b"\xff\xff":
        return "::ffff:" + ".".join(str(b) for b in ordered[12:])
    if ordered == b"\x00" * 15 + b"\x01":
        return "::1"
    if ordered == b"\x00" * 16:
        return "::"
    return text


def parse_proc_net_tcp(text, ipv6=False):
    """Listening sockets (state 0A) from /proc/net/tcp or /proc/net/tcp6 as (address, port)."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != "0A":
            continue
        addr_hex, _colon, port_hex = fields[1].partition(":")
        try:
            addr = _hex_to_ipv6(addr_hex) if ipv6 else _hex_to_ipv4(addr_hex)
            found.append((addr, int(port_hex, 16)))
        except ValueError:
            continue
    return found


def eval_kubeconfig_mode(path, mode):
    """mode: st_mode & 0o777 of the kubeconfig, or None when it does not exist."""
    if mode is None:
        return result("kubeconfig_mode", FAIL, "absent", "0600", "%s does not exist." % path)
    measured = "%04o" % mode
    if mode & 0o077:
        return result(
            "kubeconfig_mode",
            FAIL,
            measured,
            "0600",
            "%s is readable by group or others; run `chmod 0600 %s` and re-run the k3s layer." % (path, path),
        )
    return result("kubeconfig_mode", PASS, measured, "0600", path)


def parse_secrets_encrypt_status(output):
    """`k3s secrets-encrypt status`: the value after 'Encryption Status:', lower-cased."""
    match = re.search(r"^\s*Encryption Status:\s*(\S+)", output or "", re.MULTILINE)
    return match.group(1).lower() if match else None


def eval_secrets_encryption(rc, output, err=""):
    status = parse_secrets_encrypt_status(output) if rc == 0 else None
    if status == "enabled":
        return result("secrets_encryption", PASS, "Enabled", "Enabled")
    if status is None:
        return result(
            "secrets_encryption",
            FAIL,
            "unknown",
            "Enabled",
            "`k3s secrets-encrypt status` failed (rc=%s): %s" % (rc, (err or output or "").strip()[:200]),
        )
    return result(
        "secrets_encryption",
        FAIL,
        status.capitalize(),
        "Enabled",
        "Set secrets-encryption: true in the K3s config and re-run the k3s layer.",
    )


# ---------------------------------------------------------------- Prometheus


def eval_targets(targets_response):
    """/api/v1/targets: every active target's health is 'up'."""
    data = (targets_response or {}).get("data") or {}
    targets = data.get("activeTargets") or []
    if not targets:
        return result(
            "prometheus_targets",
            FAIL,
            "0 targets",
            "all up",
            "Prometheus has no active target; check its scrape configuration.",
        )
    down = []
    for target in targets:
        if target.get("health") != "up":
            labels = target.get("labels") or {}
            name = "%s %s" % (
                target.get("scrapePool") or labels.get("job", "?"),
                labels.get("instance") or target.get("scrapeUrl", ""),
            )
            down.append(
                "%s: %s%s"
                % (
                    name.strip(),
                    target.get("health"),
                    " (" + target["lastError"] + ")" if target.get("lastError") else "",
                )
            )
    up = len(targets) - len(down)
    measured = "%d/%d up" % (up, len(targets))
    if down:
        return result("prometheus_targets", FAIL, measured, "all up", "; ".join(down))
    return result("prometheus_targets", PASS, measured, "all up")


def query_vector(query_response):
    """Samples of an instant vector query as (labels, float value)."""
    data = (query_response or {}).get("data") or {}
    if (query_response or {}).get("status") != "success" or data.get("resultType") != "vector":
        raise ValueError("not a successful vector result: %s" % json.dumps(query_response)[:200])
    return [(item.get("metric") or {}, float(item["value"][1])) for item in data.get("result") or []]


def eval_gpu_metrics(gpu_resolved, query_response, metric):
    if not gpu_resolved:
        return skipped("gpu_metrics", "odin_gpu_resolved is false: no GPU exporter runs.")
    try:
        samples = query_vector(query_response)
    except ValueError as exc:
        return result("gpu_metrics", FAIL, None, "> 0 series of %s" % metric, str(exc))
    measured = "%d series" % len(samples)
    if not samples:
        return result(
            "gpu_metrics",
            FAIL,
            measured,
            "> 0 series of %s" % metric,
            "Prometheus has no %s; check the GPU exporter target." % metric,
        )
    return result("gpu_metrics", PASS, measured, "> 0 series of %s" % metric)


def eval_data_age(query_response, min_hours):
    """Query `time() - min(prometheus_tsdb_lowest_timestamp_seconds)`: the age of the oldest sample."""
    expected = ">= %g h" % min_hours
    try:
        samples = query_vector(query_response)
    except ValueError as exc:
        return result("data_retention", FAIL, None, expected, str(exc))
    if not samples:
        return result(
            "data_retention",
            FAIL,
            None,
            expected,
            "prometheus_tsdb_lowest_timestamp_seconds is missing: Prometheus does not scrape itself.",
        )
    age = max(value for _labels, value in samples)
    measured = _fmt_duration(age)
    if age < min_hours * 3600:
        return result(
            "data_retention",
            FAIL,
            measured,
            expected,
            "The oldest sample is younger than the gate asks; re-run verify once the stack has run that long.",
        )
    return result("data_retention", PASS, measured, expected)


def eval_dashboards(timings, max_seconds, search_error=None):
    """timings: [{uid, title, status, seconds}] from GET /api/dashboards/uid/<uid> per dashboard."""
    expected = "every dashboard < %s" % _fmt_seconds(max_seconds)
    if search_error:
        return result("grafana_dashboards", FAIL, None, expected, search_error)
    if not timings:
        return result(
            "grafana_dashboards",
            FAIL,
            "0 dashboards",
            expected,
            "Grafana lists no dashboard; check the dashboard provisioning.",
        )
    slow = [t for t in timings if t.get("status") != 200 or t["seconds"] >= max_seconds]
    slowest = max(timings, key=lambda t: t["seconds"])
    measured = "%d dashboards, slowest %s (%s)" % (len(timings), _fmt_seconds(slowest["seconds"]), slowest.get("title"))
    if slow:
        detail = "; ".join(
            "%s: HTTP %s in %s" % (t.get("title"), t.get("status"), _fmt_seconds(t["seconds"])) for t in slow
        )
        return result("grafana_dashboards", FAIL, measured, expected, detail)
    return result("grafana_dashboards", PASS, measured, expected)


def eval_default_password(status):
    """HTTP status of GET /api/user with admin:admin. 401 means the default password is rejected."""
    if status == 401:
        return result("grafana_default_password", PASS, "HTTP 401", "HTTP 401")
    if status == 200:
        return result(
            "grafana_default_password",
            FAIL,
            "HTTP 200",
            "HTTP 401",
            "Grafana accepts admin/admin: set the generated password and re-run the monitoring layer.",
        )
    return result(
        "grafana_default_password",
        FAIL,
        "HTTP %s" % status,
        "HTTP 401",
        "GET /api/user as admin/admin answered HTTP %s, neither 401 (rejected) nor 200 (accepted): is it Grafana?"
        % status,
    )


# ---------------------------------------------------------------- Loki


def loki_entries(query_response):
    """(timestamp_ns, line, stream labels) of a /loki/api/v1/query_range streams result."""
    data = (query_response or {}).get("data") or {}
    if (query_response or {}).get("status") != "success" or data.get("resultType") != "streams":
        raise ValueError("not a successful streams result: %s" % json.dumps(query_response)[:200])
    entries = []
    for stream in data.get("result") or []:
        for ts, line in stream.get("values") or []:
            entries.append((int(ts), line, stream.get("stream") or {}))
    return entries


def eval_loki_recent(query_response, window_seconds, query):
    expected = ">= 1 line in the last %d s" % window_seconds
    try:
        entries = loki_entries(query_response)
    except ValueError as exc:
        return result("loki_recent_logs", FAIL, None, expected, str(exc))
    measured = "%d lines" % len(entries)
    if not entries:
        return result(
            "loki_recent_logs",
            FAIL,
            measured,
            expected,
            "Query %s returned nothing; check the log collector pods." % query,
        )
    return result("loki_recent_logs", PASS, measured, expected, query)


def eval_ingestion(delay_seconds, max_seconds, waited_seconds=None, error=None):
    expected = "< %s" % _fmt_seconds(max_seconds)
    if error:
        return result("loki_ingestion", FAIL, None, expected, error)
    if delay_seconds is None:
        return result(
            "loki_ingestion",
            FAIL,
            "not found after %s" % _fmt_seconds(waited_seconds or 0),
            expected,
            "The marker line never reached Loki.",
        )
    measured = _fmt_seconds(delay_seconds)
    if delay_seconds >= max_seconds:
        return result(
            "loki_ingestion",
            FAIL,
            measured,
            expected,
            "Logs reach Loki too slowly; check the log collector's resources and Loki's ingester.",
        )
    return result("loki_ingestion", PASS, measured, expected)


# ---------------------------------------------------------------- Alertmanager


def eval_watchdog(alerts_response, alertname):
    """GET /api/v2/alerts: an active alert with the given alertname."""
    alerts = [a for a in alerts_response or [] if (a.get("labels") or {}).get("alertname") == alertname]
    active = [a for a in alerts if ((a.get("status") or {}).get("state")) == "active"]
    measured = "%d active" % len(active)
    if not active:
        return result(
            "alertmanager_watchdog",
            FAIL,
            measured,
            ">= 1 active %s" % alertname,
            "Alertmanager has no active %s: Prometheus does not reach Alertmanager or the rule is not loaded."
            % alertname,
        )
    return result(
        "alertmanager_watchdog",
        PASS,
        measured,
        ">= 1 active %s" % alertname,
        "since %s" % active[0].get("startsAt", "?"),
    )


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text, name):
    """Samples of one metric in the Prometheus text exposition format as [(labels, value)]."""
    samples = []
    for line in (text or "").splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match or match.group(1) != name:
            continue
        labels = dict(_LABEL.findall(match.group(2) or ""))
        try:
            samples.append((labels, float(match.group(3))))
        except ValueError:
            continue
    return samples


def _by_integration(text, name):
    totals = {}
    for labels, value in parse_metrics(text, name):
        key = labels.get("integration", "?")
        totals[key] = totals.get(key, 0.0) + value
    return totals


def notification_delta(before_text, after_text):
    """Notification requests sent and failed per integration between two scrapes of Alertmanager's /metrics.

    The per-request counters (Alertmanager 0.21+) count a failed request as soon as it
    fails; the per-notification ones only once every retry gave up, minutes later.
    """
    delta = {}
    for name, field in (
        ("alertmanager_notification_requests_total", "sent"),
        ("alertmanager_notification_requests_failed_total", "failed"),
    ):
        before, after = _by_integration(before_text, name), _by_integration(after_text, name)
        for integration, value in after.items():
            diff = value - before.get(integration, 0.0)
            if diff > 0:
                delta.setdefault(integration, {"sent": 0, "failed": 0})[field] = int(diff)
    return delta


def eval_notification(delta, waited_seconds, error=None):
    """delta from notification_delta taken once the test alert went out (or the wait ended)."""
    expected = ">= 1 delivered, 0 failed"
    if error:
        return result("alert_notification", FAIL, None, expected, error)
    sent = sum(v["sent"] for v in delta.values())
    failed = sum(v["failed"] for v in delta.values())
    delivered = sent - failed
    per = ", ".join("%s: %d sent, %d failed" % (k, v["sent"], v["failed"]) for k, v in sorted(delta.items()))
    measured = "%d delivered, %d failed in %s" % (delivered, failed, _fmt_seconds(waited_seconds))
    if failed:
        return result(
            "alert_notification",
            FAIL,
            measured,
            expected,
            "Delivery failed (%s); check the receiver's URL and credentials in Alertmanager's logs." % per,
        )
    if delivered < 1:
        return result(
            "alert_notification",
            FAIL,
            measured,
            expected,
            "Alertmanager sent no notification: the route for the test alert ends at a receiver without"
            " integrations, or its group_wait is longer than the wait.",
        )
    return result("alert_notification", PASS, measured, expected, per)


# ---------------------------------------------------------------- URLs and Loki queries


def api_url(base, path, **query):
    """base URL + path + the query string (values URL-encoded); None when base is not http(s)."""
    if urlparse.urlsplit(base).scheme not in ("http", "https"):
        return None
    url = base.rstrip("/") + path
    if query:
        url += "?" + urlparse.urlencode(query)
    return url


def url_segment(value):
    """One path segment, quoted (a Grafana dashboard uid)."""
    return urlparse.quote(str(value), safe="")


def loki_marker_query(label, namespace, marker):
    return '{%s="%s"} |= "%s"' % (label, namespace, marker)


def loki_recent_query(label):
    return '{%s=~".+"}' % label


# ---------------------------------------------------------------- gates and report


def gate_status(checks):
    statuses = {c["status"] for c in checks}
    if FAIL in statuses:
        return FAIL
    if statuses == {SKIP} or not statuses:
        return SKIP
    return PASS


def build_report(results, gates, host, created):
    """Assemble check results (any order) into the report for the selected gates."""
    by_id = {r["id"]: r for r in results}
    report_gates = []
    for gate in GATES:
        if gate["id"] not in gates:
            continue
        checks = [by_id[c] for c in gate["checks"] if c in by_id]
        report_gates.append({"id": gate["id"], "title": gate["title"], "status": gate_status(checks), "checks": checks})
    counts = {PASS: 0, FAIL: 0, SKIP: 0}
    for gate in report_gates:
        for check in gate["checks"]:
            counts[check["status"]] += 1
    return {
        "format": 1,
        "created": created,
        "host": host,
        "passed": counts[FAIL] == 0,
        "summary": counts,
        "gates": report_gates,
    }


def _cell(value):
    if value is None or value == "":
        return "-"
    return str(value).replace("|", "\\|").replace("\n", " ")


_BADGE = {PASS: "PASS", FAIL: "FAIL", SKIP: "SKIP"}


def render_markdown(report):
    lines = [
        "# ODIN verification report",
        "",
        "- Host: %s" % report["host"],
        "- Created: %s" % report["created"],
        "- Result: **%s** (%d passed, %d failed, %d skipped)"
        % (
            "PASS" if report["passed"] else "FAIL",
            report["summary"][PASS],
            report["summary"][FAIL],
            report["summary"][SKIP],
        ),
    ]
    for gate in report["gates"]:
        lines += [
            "",
            "## %s: %s (%s)" % (gate["id"].replace("gate", "Gate "), gate["title"], _BADGE[gate["status"]]),
            "",
            "| Check | Status | Measured | Expected | Detail |",
            "|---|---|---|---|---|",
        ]
        for check in gate["checks"]:
            lines.append(
                "| %s | %s | %s | %s | %s |"
                % (
                    _cell(check["title"]),
                    _BADGE[check["status"]],
                    _cell(check["measured"]),
                    _cell(check["expected"]),
                    _cell(check["detail"]),
                )
            )
    return "\n".join(lines) + "\n"


def failed_checks(report):
    return [
        "%s %s - %s" % (g["id"], c["id"], c["detail"] or c["measured"])
        for g in report["gates"]
        for c in g["checks"]
        if c["status"] == FAIL
    ]
