# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Whether a release's workloads are ready, and if not, the pods' own reasons.

Plain functions over Kubernetes objects as dicts (what the API returns), so they can be
tested on recorded objects without a cluster. Used by modules/k8s_ready.py.
"""

from __future__ import annotations

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


def _ref(obj):
    metadata = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')}/{metadata.get('name', '?')}"


def workload_counts(obj):
    """(desired, ready) pods of a Deployment, StatefulSet or DaemonSet.

    A workload whose controller has not yet seen its latest spec (observedGeneration
    behind generation) counts as not ready: its status describes an older spec.
    """
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if kind == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        ready = min(int(status.get("numberReady") or 0), int(status.get("updatedNumberScheduled") or 0))
    else:
        desired = int(spec.get("replicas", 1))
        ready = min(int(status.get("readyReplicas") or 0), int(status.get("updatedReplicas") or 0))
        if kind == "Deployment":
            ready = min(ready, int(status.get("availableReplicas") or 0))
    generation = (obj.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and (observed is None or int(observed) < int(generation)):
        ready = min(ready, desired - 1) if desired else -1
    return desired, ready


def selector_matches(selector, labels):
    """True when `labels` satisfy a LabelSelector (matchLabels and matchExpressions)."""
    labels = labels or {}
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, operator, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


def pod_ready(pod):
    status = pod.get("status") or {}
    if status.get("phase") == "Succeeded":
        return True
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def pod_reasons(pod, events=()):
    """Why a pod is not ready, in the pod's own words (scheduler, kubelet, events)."""
    status = pod.get("status") or {}
    reasons = []
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reasons.append(
                f"not scheduled: {condition.get('reason') or 'Pending'}"
                + (f" ({condition['message']})" if condition.get("message") else "")
            )
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(key) or []:
            state = container.get("state") or {}
            if "waiting" in state and state["waiting"].get("reason") not in (
                None,
                "ContainerCreating",
                "PodInitializing",
            ):
                waiting = state["waiting"]
                reasons.append(
                    f"container {container.get('name')} waiting: {waiting.get('reason')}"
                    + (f" ({waiting['message']})" if waiting.get("message") else "")
                )
            elif "terminated" in state and state["terminated"].get("exitCode", 0) != 0:
                terminated = state["terminated"]
                reasons.append(
                    f"container {container.get('name')} exited {terminated.get('exitCode')}:"
                    f" {terminated.get('reason') or ''} {terminated.get('message') or ''}".rstrip()
                )
    if not reasons:
        name = (pod.get("metadata") or {}).get("name")
        for event in events:
            involved = event.get("involvedObject") or {}
            if involved.get("kind") == "Pod" and involved.get("name") == name and event.get("type") == "Warning":
                reasons.append(f"{event.get('reason')}: {event.get('message')}")
        if not reasons:
            reasons.append(f"phase {status.get('phase') or 'Pending'}, not Ready")
    return reasons


def problems(workloads, pods, events=()):
    """One line per workload that is not ready, with the reasons of its pods.

    `workloads`: Deployment/StatefulSet/DaemonSet objects; `pods`: the pods in their
    namespace; `events`: that namespace's events (used when a pod says nothing itself).
    Workloads that create no pod at all get the Warning events about them.
    """
    lines = []
    for workload in workloads:
        desired, ready = workload_counts(workload)
        if ready >= desired:
            continue
        selector = (workload.get("spec") or {}).get("selector")
        own = [
            pod
            for pod in pods
            if selector_matches(selector, (pod.get("metadata") or {}).get("labels"))
            and not (pod.get("metadata") or {}).get("deletionTimestamp")
        ]
        details = []
        for pod in own:
            if not pod_ready(pod):
                details.append(f"pod {pod['metadata']['name']}: " + "; ".join(pod_reasons(pod, events)))
        if not own:
            name = (workload.get("metadata") or {}).get("name")
            for event in events:
                involved = event.get("involvedObject") or {}
                if event.get("type") == "Warning" and (involved.get("name") or "").startswith(name or "\0"):
                    details.append(
                        f"{involved.get('kind')}/{involved.get('name')}: {event.get('reason')}: {event.get('message')}"
                    )
            if not details:
                details.append("no pods created yet")
        lines.append(f"{_ref(workload)}: {max(ready, 0)}/{desired} ready; " + " | ".join(details))
    return lines
