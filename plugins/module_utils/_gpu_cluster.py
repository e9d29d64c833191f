# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Cluster half of odin.stack.gpu_validate: can Kubernetes schedule onto the host's GPUs?

The checks work on plain API objects (dicts as the Kubernetes API returns them) through a
small client interface, so they are unit-tested on recorded API responses. The module
provides the real client, built on the ``kubernetes`` Python package.

Client interface (all methods take and return plain dicts / strings):
  list_nodes() -> NodeList, list_runtime_classes() -> RuntimeClassList,
  create_pod(namespace, body), read_pod(namespace, name) -> Pod,
  read_pod_log(namespace, name) -> str, delete_pod(namespace, name).
"""

from __future__ import annotations

import time

from ansible_collections.odin.stack.plugins.module_utils import _nvidia_smi as smi

GPU_RESOURCE = "nvidia.com/gpu"


def allocatable_gpus(node_list, node_name=None):
    """{node name: allocatable nvidia.com/gpu as int} for every node (or just node_name)."""
    result = {}
    for node in node_list.get("items", []):
        name = node.get("metadata", {}).get("name")
        if node_name and name != node_name:
            continue
        value = node.get("status", {}).get("allocatable", {}).get(GPU_RESOURCE, "0")
        try:
            result[name] = int(str(value))
        except ValueError:
            result[name] = 0
    return result


def runtime_class_handler(runtime_class_list, name):
    """The handler of RuntimeClass ``name``, or None when it does not exist."""
    for item in runtime_class_list.get("items", []):
        if item.get("metadata", {}).get("name") == name:
            return item.get("handler")
    return None


def pod_manifest(name, namespace, *, image, runtime_class, gpu_count, node_name=None):
    """A pod that lists the GPUs it was given, then exits."""
    spec = {
        "restartPolicy": "Never",
        "runtimeClassName": runtime_class,
        "activeDeadlineSeconds": 300,
        "containers": [
            {
                "name": "nvidia-smi",
                "image": image,
                "command": ["nvidia-smi", "-L"],
                "env": [{"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "utility"}],
                "resources": {"limits": {GPU_RESOURCE: str(gpu_count)}},
            }
        ],
    }
    if node_name:
        spec["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "odin.stack.gpu_validate"},
        },
        "spec": spec,
    }


def _wait_for_pod(client, namespace, name, *, timeout, sleep, clock):
    deadline = clock() + timeout
    phase = None
    while clock() < deadline:
        pod = client.read_pod(namespace, name)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return phase
        sleep(2)
    return phase


def check_cluster(
    client,
    host_uuids,
    *,
    image,
    pod_name,
    runtime_class="nvidia",
    namespace="default",
    node_name=None,
    timeout=180,
    sleep=time.sleep,
    clock=time.monotonic,
):
    """Run the cluster checks; returns (facts, failed_checks). The test pod is always deleted."""
    failed = []
    facts = {"allocatable": {}, "runtime_class_handler": None, "pod_uuids": [], "pod_phase": None}

    def fail(name, expected, found):
        failed.append({"check": name, "gpu": None, "expected": expected, "found": found})

    facts["allocatable"] = allocatable_gpus(client.list_nodes(), node_name)
    if node_name and node_name not in facts["allocatable"]:
        fail("cluster_node", "node %s registered" % node_name, "no such node")
    elif not any(facts["allocatable"].values()):
        fail("cluster_allocatable", "%s > 0 on a node" % GPU_RESOURCE, facts["allocatable"] or "no nodes")

    facts["runtime_class_handler"] = runtime_class_handler(client.list_runtime_classes(), runtime_class)
    if facts["runtime_class_handler"] is None:
        fail("cluster_runtime_class", "RuntimeClass %s" % runtime_class, "absent")

    if failed:
        # Without an allocatable GPU or the runtime class the pod can never start.
        return facts, failed

    gpu_count = len(host_uuids) or 1
    body = pod_manifest(
        pod_name, namespace, image=image, runtime_class=runtime_class, gpu_count=gpu_count, node_name=node_name
    )
    try:
        client.create_pod(namespace, body)
        facts["pod_phase"] = _wait_for_pod(client, namespace, pod_name, timeout=timeout, sleep=sleep, clock=clock)
        if facts["pod_phase"] != "Succeeded":
            fail("cluster_pod", "pod %s Succeeded within %ss" % (pod_name, timeout), facts["pod_phase"])
        else:
            facts["pod_uuids"] = smi.uuids_from_list(client.read_pod_log(namespace, pod_name))
            if sorted(facts["pod_uuids"]) != sorted(host_uuids):
                fail("cluster_pod_uuids", sorted(host_uuids), sorted(facts["pod_uuids"]))
    finally:
        client.delete_pod(namespace, pod_name)
    return facts, failed
