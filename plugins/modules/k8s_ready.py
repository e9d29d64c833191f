#!/usr/bin/python
# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: k8s_ready
short_description: Wait until workloads are ready, or fail with their pods' own reasons
version_added: "0.2.0"
description:
  - Read-only. Polls the Deployments, StatefulSets and DaemonSets named in O(workloads)
    until every one has all its desired pods ready and up to date, or O(timeout) passes.
  - On timeout it fails with one line per workload that is not ready, carrying what its
    pods report (unschedulable and why, image pull errors, crash loops, exit codes), or
    the Warning events about it when it has no pods at all. A bare "timed out" is never
    the whole message.
  - Talks to the cluster through the kubernetes.core client, with the same connection
    options as M(kubernetes.core.k8s_info).
options:
  namespace:
    description: Namespace of the workloads.
    type: str
    required: true
  workloads:
    description:
      - Objects to wait for, each a mapping with C(kind) and C(metadata.name) (a release's
        manifest, as the monitoring role passes it), or C(kind) and C(name).
        Kinds other than Deployment, StatefulSet and DaemonSet are ignored.
    type: list
    elements: dict
    required: true
  timeout:
    description: Seconds to wait before failing.
    type: int
    default: 300
  interval:
    description: Seconds between polls.
    type: int
    default: 2
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
attributes:
  check_mode:
    description: Whether the module can run with C(--check) and report what it would change without changing it.
    support: full
  diff_mode:
    description: Whether the module returns a diff of what it changed with C(--diff).
    support: none
requirements:
  - kubernetes >= 24.2.0
author:
  - ODIN maintainers (@odin-stack)
"""

EXAMPLES = r"""
- name: Wait for the release's workloads
  odin.stack.k8s_ready:
    kubeconfig: /etc/rancher/k3s/k3s.yaml
    namespace: monitoring
    workloads: "{{ manifest_objects }}"
    timeout: 300
"""

RETURN = r"""
ready:
  description: Whether every workload was ready in time.
  returned: always
  type: bool
workloads:
  description: Each workload waited for, with its desired and ready pod counts at the end.
  returned: always
  type: list
  elements: dict
  sample: [{ref: Deployment/kube-prometheus-stack-grafana, desired: 1, ready: 1}]
problems:
  description: One line per workload that was not ready, with its pods' reasons.
  returned: always
  type: list
  elements: str
  sample: ["Deployment/grafana: 0/1 ready; pod grafana-6f7d: not scheduled: Unschedulable (0/1 nodes are available)"]
elapsed:
  description: Seconds spent waiting.
  returned: always
  type: float
"""

import copy
import time

from ansible_collections.kubernetes.core.plugins.module_utils.ansiblemodule import AnsibleModule
from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException

from ansible_collections.odin.stack.plugins.module_utils import _k8s_ready

_API = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1"}


def _names(workloads):
    wanted = []
    for item in workloads:
        kind = item.get("kind")
        name = item.get("name") or (item.get("metadata") or {}).get("name")
        if kind in _k8s_ready.WORKLOAD_KINDS and name and (kind, name) not in wanted:
            wanted.append((kind, name))
    return wanted


def _list(client, api_version, kind, namespace):
    resource = client.resource(kind, api_version)
    return [item.to_dict() for item in client.get(resource, namespace=namespace).items]


def _snapshot(client, namespace, wanted):
    lists = {kind: _list(client, _API[kind], kind, namespace) for kind in {kind for kind, _name in wanted}}
    found = []
    missing = []
    for kind, name in wanted:
        match = [obj for obj in lists[kind] if obj["metadata"]["name"] == name]
        if match:
            found.append(match[0])
        else:
            missing.append(f"{kind}/{name}: not found in namespace {namespace}")
    pods = _list(client, "v1", "Pod", namespace)
    return found, missing, pods


def main():
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(
        namespace=dict(type="str", required=True),
        workloads=dict(type="list", elements="dict", required=True),
        timeout=dict(type="int", default=300),
        interval=dict(type="int", default=2),
    )
    module = AnsibleK8SModule(module_class=AnsibleModule, argument_spec=spec, supports_check_mode=True)
    namespace = module.params["namespace"]
    wanted = _names(module.params["workloads"])
    if module.params["timeout"] < 0 or module.params["interval"] < 1:
        module.fail_json(msg="timeout must be 0 or more and interval 1 or more (seconds)")
    try:
        client = get_api_client(module)
        start = time.monotonic()
        while True:
            found, missing, pods = _snapshot(client, namespace, wanted)
            problems = missing + _k8s_ready.problems(found, pods)
            if not problems or time.monotonic() - start >= module.params["timeout"]:
                break
            time.sleep(module.params["interval"])
        if problems:
            events = _list(client, "v1", "Event", namespace)
            problems = missing + _k8s_ready.problems(found, pods, events)
    except CoreException as exc:
        module.fail_from_exception(exc)
    elapsed = round(time.monotonic() - start, 1)
    counts = []
    for obj in found:
        desired, ready = _k8s_ready.workload_counts(obj)
        counts.append({"ref": f"{obj['kind']}/{obj['metadata']['name']}", "desired": desired, "ready": max(ready, 0)})
    result = dict(changed=False, ready=not problems, workloads=counts, problems=problems, elapsed=elapsed)
    if problems:
        module.fail_json(
            msg=f"{len(problems)} workload(s) in namespace {namespace} not ready after {elapsed}s: "
            + " || ".join(problems),
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
