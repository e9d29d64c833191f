#!/usr/bin/python
# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_validate
short_description: Check that the NVIDIA GPUs, driver, container runtime and cluster are usable
version_added: "0.1.0"
description:
  - Runs C(nvidia-smi -q -x) once and parses every GPU it reports (product, UUID, driver and
    CUDA versions, memory, temperature, power, clock throttle/event reasons, ECC, retired pages,
    remapped rows, PCIe link, persistence and compute mode).
  - Accepts the XML layouts of old and new drivers (C(clocks_throttle_reasons) or
    C(clocks_event_reasons), C(power_readings) or C(gpu_power_readings), C(N/A) fields).
  - Compares what it found with the options and fails with every failed check at once, each
    with what was expected and what was found.
  - Fails with a specific message and fix when nvidia-smi is missing or may not be run, the driver
    and library versions do not match, a GPU fell off the bus, the driver is not loaded, the GPU
    devices may not be opened, no device is found, nvidia-smi hangs, or its XML is malformed;
    RV(error_kind) names the case.
  - Names GPUs by index, PCI bus id and UUID, as far as nvidia-smi reported them.
  - Optionally checks the container runtime (C(nvidia-container-cli info)) and the cluster
    (allocatable C(nvidia.com/gpu), RuntimeClass, and a short-lived pod running C(nvidia-smi -L)
    that must see the host's GPU UUIDs; the pod is always deleted).
  - Changes nothing on the host; the cluster check creates and deletes a pod, and is skipped in
    check mode.
options:
  min_driver_version:
    description: Lowest acceptable driver version, for example C(535.104).
    type: str
  expected_gpu_count:
    description: Number of GPUs nvidia-smi must report. Not checked when omitted.
    type: int
  product_pattern:
    description: Regular expression every GPU's product name must match (Python C(re.search)).
    type: str
  max_temperature:
    description: Highest acceptable GPU core temperature in degrees Celsius.
    type: int
  require_persistence_mode:
    description: Fail when persistence mode is not C(Enabled) on a GPU.
    type: bool
    default: false
  check_pcie_width:
    description:
      - Fail when a GPU's PCIe link runs narrower than its maximum width.
      - The link generation is reported but not checked, because GPUs lower it at idle to save power.
    type: bool
    default: true
  check_memory_health:
    description: Fail on pages pending retirement, rows pending remapping or a row remapping failure.
    type: bool
    default: true
  timeout:
    description:
      - Seconds nvidia-smi (and nvidia-container-cli) may take before the check fails with
        RV(error_kind=timeout).
      - The command is stopped with C(SIGTERM), then C(SIGKILL) 5 seconds later, with every process it started.
    type: int
    default: 30
  nvidia_smi_path:
    description:
      - Path of the nvidia-smi to run.
      - When omitted, nvidia-smi is looked up on E(PATH) and in C(/sbin), C(/usr/sbin) and C(/usr/local/sbin).
    type: path
  check_container_runtime:
    description: Also run C(nvidia-container-cli info) and require it to see the same GPUs and driver.
    type: bool
    default: false
  check_cluster:
    description:
      - Also check the cluster through the Kubernetes API with the C(kubernetes) Python package.
      - Requires allocatable C(nvidia.com/gpu) on a node, the RuntimeClass, and a pod with that
        runtime class whose C(nvidia-smi -L) lists exactly the host's GPU UUIDs.
    type: bool
    default: false
  kubeconfig:
    description: Kubeconfig used by the cluster check.
    type: path
    default: /etc/rancher/k3s/k3s.yaml
  runtime_class:
    description: RuntimeClass the cluster check requires and runs its pod with.
    type: str
    default: nvidia
  namespace:
    description: Namespace of the cluster check's pod.
    type: str
    default: default
  node_name:
    description: Node whose allocatable GPUs are checked and where the pod runs. Any node when omitted.
    type: str
  pod_image:
    description: Image of the cluster check's pod. The NVIDIA runtime injects C(nvidia-smi) into it.
    type: str
    default: nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04
  pod_timeout:
    description: Seconds the cluster check's pod may take to complete.
    type: int
    default: 180
attributes:
  check_mode:
    description: Whether the module can run with C(--check) and report what it would change without changing it.
    support: full
    details: The cluster check's pod is not created in check mode; every read-only check runs.
  diff_mode:
    description: Whether the module returns a diff of what it changed with C(--diff).
    support: none
requirements:
  - nvidia-smi on the host
  - the kubernetes Python package for I(check_cluster)
author:
  - ODIN maintainers (@odin-stack)
"""

EXAMPLES = r"""
- name: The laptop's GPU is healthy and recent enough
  odin.stack.gpu_validate:
    min_driver_version: "535"
    expected_gpu_count: 1
    product_pattern: "RTX .* Laptop GPU"
    max_temperature: 85
  register: __gpu

- name: Show what was found
  ansible.builtin.debug:
    msg: "{{ __gpu.gpus | map(attribute='product_name') | list }} on driver {{ __gpu.driver_version }}"

- name: The container runtime and the cluster see the same GPUs
  odin.stack.gpu_validate:
    check_container_runtime: true
    check_cluster: true
    kubeconfig: /etc/rancher/k3s/k3s.yaml
"""

RETURN = r"""
driver_version:
  description: Driver version reported by nvidia-smi.
  returned: when nvidia-smi answered
  type: str
  sample: "550.120"
cuda_version:
  description: Highest CUDA version the driver supports.
  returned: when nvidia-smi answered
  type: str
  sample: "12.4"
gpus:
  description:
    - One entry per GPU, in nvidia-smi's order; C(index) is nvidia-smi's GPU index.
    - Unknown (C(N/A)) values are null.
  returned: when nvidia-smi answered
  type: list
  elements: dict
  sample:
    - index: 0
      pci_bus_id: "00000000:01:00.0"
      product_name: NVIDIA GeForce RTX 4090 Laptop GPU
      product_brand: GeForce
      uuid: GPU-3f2a1c9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b
      persistence_mode: Enabled
      compute_mode: Default
      memory_total_mib: 16376
      memory_used_mib: 9
      temperature_c: 41
      power: {source: gpu_power_readings, draw_watts: 6.2, limit_watts: 175.0, max_limit_watts: 175.0}
      clock_reasons: {source: clocks_event_reasons, active: [gpu_idle]}
      ecc_mode: null
      retired_pages: {pending: null, single_bit: null, double_bit: null}
      remapped_rows: {pending: null, failure: null, correctable: null, uncorrectable: null}
      pcie: {current_gen: 1, max_gen: 4, current_width: 16, max_width: 16}
failed_checks:
  description:
    - Every check that failed, with what was expected and what was found. Empty on success.
    - C(gpu) is the GPU's UUID (its bus id when the UUID is unknown); C(gpu), C(gpu_index) and
      C(pci_bus_id) are null for host-wide checks.
  returned: always
  type: list
  elements: dict
  sample:
    - check: temperature
      gpu: GPU-3f2a1c9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b
      gpu_index: 0
      pci_bus_id: "00000000:01:00.0"
      expected: "<= 85 C"
      found: "93 C"
error_kind:
  description:
    - Why nvidia-smi could not report; the message says what happened, which GPU and what to do.
    - C(missing) - nvidia-smi is not installed (or not at O(nvidia_smi_path)), or could not be started.
    - C(permission_denied) - nvidia-smi is not executable, or it may not open C(/dev/nvidia*).
    - C(timeout) - nvidia-smi did not answer within O(timeout) seconds and was stopped.
    - C(gpu_lost) - a GPU fell off the bus or became inaccessible (nvidia-smi rc 15).
    - C(driver_library_mismatch), C(driver_not_loaded), C(no_devices), C(malformed_xml), and
      C(failed) for any other error (with the meaning of nvidia-smi's return code).
  returned: when nvidia-smi could not report the GPUs
  type: str
  sample: gpu_lost
error_gpus:
  description: The GPUs the failure names, each with C(index), C(pci_bus_id) and C(uuid) (null when unknown).
  returned: when nvidia-smi could not report the GPUs
  type: list
  elements: dict
  sample:
    - {index: null, pci_bus_id: "0000:01:00.0", uuid: null}
warnings_found:
  description: Conditions worth knowing that do not fail validation (clock slowdowns, unreported temperature).
  returned: always
  type: list
  elements: str
container_runtime:
  description: What C(nvidia-container-cli info) reported.
  returned: when check_container_runtime is true
  type: dict
  sample: {nvrm_version: "550.120", cuda_version: "12.4", uuids: [GPU-3f2a1c9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b]}
cluster:
  description: What the cluster check found (allocatable GPUs per node, runtime class handler, pod UUIDs).
  returned: when check_cluster is true
  type: dict
"""

import errno
import os
import re
import time
import uuid as uuidlib

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.odin.stack.plugins.module_utils import _gpu_cluster as cluster
from ansible_collections.odin.stack.plugins.module_utils import _nvidia_smi as smi

ENV = {"LC_ALL": "C", "LANG": "C"}

# Seconds between the SIGTERM at the time limit and the SIGKILL for a command that ignores it.
KILL_AFTER = 5


def _run(module, args, timeout):
    """Run a command under coreutils timeout so a hung driver cannot hang the play.

    `timeout` signals the command's whole process group, so nothing it started is left behind.
    Returns (rc, stdout, stderr, timed_out); raises OSError when the command cannot be executed.
    """
    timeout_bin = module.get_bin_path("timeout")
    if timeout_bin:
        args = [timeout_bin, "--kill-after=%d" % KILL_AFTER, str(timeout), *args]
    started = time.monotonic()
    rc, out, err = module.run_command(args, environ_update=ENV, handle_exceptions=False)
    return rc, out, err, smi.timed_out(rc, time.monotonic() - started, timeout)


def locate_nvidia_smi(module):
    """Path of the nvidia-smi to run; raises NvidiaSmiError when there is none that may be executed."""
    path = module.params["nvidia_smi_path"]
    if path:
        if not os.path.isfile(path):
            raise smi.missing_error(path)
        if not os.access(path, os.X_OK):
            raise smi.not_executable_error(path, os.stat(path).st_mode & 0o7777)
        return path
    found = module.get_bin_path("nvidia-smi")
    if found:
        return found
    # get_bin_path skips files without an execute bit; such a file is a permission problem, not a missing tool.
    for directory in [*os.environ.get("PATH", "").split(os.pathsep), *smi.SBIN_DIRS]:
        candidate = os.path.join(directory, "nvidia-smi")
        if directory and os.path.isfile(candidate):
            raise smi.not_executable_error(candidate, os.stat(candidate).st_mode & 0o7777)
    raise smi.missing_error()


def run_nvidia_smi(module, path):
    """Run `nvidia-smi -q -x`; returns (rc, stdout, stderr, timed_out), raises NvidiaSmiError when it cannot start."""
    try:
        return _run(module, [path, "-q", "-x"], module.params["timeout"])
    except OSError as exc:
        rc = smi.NOT_FOUND_RC if exc.errno == errno.ENOENT else smi.CANNOT_EXECUTE_RC
        raise smi.cannot_run_error(path, exc.strerror, rc) from None


class KubernetesClient:
    """The client interface of _gpu_cluster on top of the kubernetes package."""

    def __init__(self, kubeconfig):
        from kubernetes import client, config  # noqa: PLC0415 - only needed for the cluster check

        api = config.new_client_from_config(config_file=kubeconfig)
        self._api = api
        self._core = client.CoreV1Api(api)
        self._node = client.NodeV1Api(api)
        self._exceptions = __import__("kubernetes.client.exceptions", fromlist=["ApiException"])

    def _dict(self, obj):
        return self._api.sanitize_for_serialization(obj)

    def list_nodes(self):
        return self._dict(self._core.list_node())

    def list_runtime_classes(self):
        return self._dict(self._node.list_runtime_class())

    def create_pod(self, namespace, body):
        self._core.create_namespaced_pod(namespace, body)

    def read_pod(self, namespace, name):
        return self._dict(self._core.read_namespaced_pod(name, namespace))

    def read_pod_log(self, namespace, name):
        return self._core.read_namespaced_pod_log(name, namespace)

    def delete_pod(self, namespace, name):
        try:
            self._core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except self._exceptions.ApiException as exc:
            if exc.status != 404:
                raise


def _failure(check, expected, found):
    return {"check": check, "gpu": None, "expected": expected, "found": found}


def check_container_runtime(module, host_uuids, result):
    cli = module.get_bin_path("nvidia-container-cli")
    if not cli:
        return [_failure("container_runtime", "nvidia-container-cli installed", "not on PATH")]
    try:
        rc, out, err, timed_out = _run(module, [cli, "info"], module.params["timeout"])
    except OSError as exc:
        return [_failure("container_runtime", "nvidia-container-cli info runs", "%s: %s" % (cli, exc.strerror))]
    if timed_out:
        found = "no answer within %s seconds (timeout)" % module.params["timeout"]
        return [_failure("container_runtime", "nvidia-container-cli info rc=0", found)]
    if rc != 0:
        return [_failure("container_runtime", "nvidia-container-cli info rc=0", "rc=%s: %s" % (rc, (err or out)[:400]))]
    info = smi.parse_container_cli_info(out)
    result["container_runtime"] = info
    if sorted(info["uuids"]) != sorted(host_uuids):
        return [_failure("container_runtime_uuids", sorted(host_uuids), sorted(info["uuids"]))]
    return []


def check_cluster(module, host_uuids, result):
    p = module.params
    try:
        client = KubernetesClient(p["kubeconfig"])
        facts, failed = cluster.check_cluster(
            client,
            host_uuids,
            image=p["pod_image"],
            pod_name="odin-gpu-validate-%s" % uuidlib.uuid4().hex[:8],
            runtime_class=p["runtime_class"],
            namespace=p["namespace"],
            node_name=p["node_name"],
            timeout=p["pod_timeout"],
        )
    except ImportError:
        module.fail_json(
            msg="check_cluster needs the kubernetes Python package on the managed host; "
            "install python3-kubernetes or pip install kubernetes.",
            **result,
        )
    except Exception as exc:  # noqa: BLE001 - any API or config error ends the check with its text
        module.fail_json(
            msg="The cluster check could not talk to the Kubernetes API with kubeconfig %s: %s. "
            "Check that K3s runs and the kubeconfig is readable." % (p["kubeconfig"], exc),
            **result,
        )
    result["cluster"] = facts
    return failed


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            min_driver_version=dict(type="str"),
            expected_gpu_count=dict(type="int"),
            product_pattern=dict(type="str"),
            max_temperature=dict(type="int"),
            require_persistence_mode=dict(type="bool", default=False),
            check_pcie_width=dict(type="bool", default=True),
            check_memory_health=dict(type="bool", default=True),
            timeout=dict(type="int", default=30),
            nvidia_smi_path=dict(type="path"),
            check_container_runtime=dict(type="bool", default=False),
            check_cluster=dict(type="bool", default=False),
            kubeconfig=dict(type="path", default="/etc/rancher/k3s/k3s.yaml"),
            runtime_class=dict(type="str", default="nvidia"),
            namespace=dict(type="str", default="default"),
            node_name=dict(type="str"),
            pod_image=dict(type="str", default="nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"),
            pod_timeout=dict(type="int", default=180),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False, "failed_checks": [], "warnings_found": []}

    if p["product_pattern"]:
        try:
            re.compile(p["product_pattern"])
        except re.error as exc:
            module.fail_json(
                msg="product_pattern %r is not a valid regular expression (%s); fix the pattern."
                % (p["product_pattern"], exc),
                **result,
            )

    ran = {}
    try:
        nvidia_smi = locate_nvidia_smi(module)
        rc, out, err, timed_out = run_nvidia_smi(module, nvidia_smi)
        ran = {"rc": rc, "stderr": err}
        error = smi.classify_failure(rc, out, err, timed_out=timed_out, timeout=p["timeout"], path=nvidia_smi)
        if error:
            raise error
        report = smi.parse(out)
    except smi.NvidiaSmiError as exc:
        module.fail_json(msg=str(exc), error_kind=exc.kind, error_gpus=exc.gpus, **ran, **result)
    result.update(report)

    failed, warnings = smi.check(
        report,
        min_driver_version=p["min_driver_version"],
        expected_gpu_count=p["expected_gpu_count"],
        product_pattern=p["product_pattern"],
        max_temperature=p["max_temperature"],
        require_persistence_mode=p["require_persistence_mode"],
        check_pcie_width=p["check_pcie_width"],
        check_memory_health=p["check_memory_health"],
    )
    host_uuids = [gpu["uuid"] for gpu in report["gpus"] if gpu.get("uuid")]

    if p["check_container_runtime"]:
        failed.extend(check_container_runtime(module, host_uuids, result))
    if p["check_cluster"]:
        if module.check_mode:
            warnings.append("check mode: the cluster check creates a pod, so it was not run")
        else:
            failed.extend(check_cluster(module, host_uuids, result))

    result["failed_checks"] = failed
    result["warnings_found"] = warnings
    for warning in warnings:
        module.warn(warning)
    if failed:
        module.fail_json(
            msg="GPU validation failed (%d check(s)): %s" % (len(failed), smi.failure_summary(failed)),
            **result,
        )
    module.exit_json(**result)


def main():
    run_module()


if __name__ == "__main__":
    main()
