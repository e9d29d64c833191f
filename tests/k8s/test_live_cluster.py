"""Every Kubernetes layer against a real API server: apply, re-run, drift, rollback.

The tests run in file order and build on each other (one cluster for the module):
K3s cluster objects, then the GPU in Kubernetes, then monitoring, then rollback.
What needs a real kubelet, a GPU or the K3s binary is not here: pods are simulated by
kwok (scheduled, Running and Ready, Jobs Succeeded, no container runs), the device
plugin's nvidia.com/gpu advertisement is made by the test, and the local-path
provisioner is stood in for by pre-created volumes of its storage class. The GitHub
Actions e2e workflow runs the same playbooks on a real K3s.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cluster
import pytest
import yaml
from k8slive import REPO, Playbook, package_charts, say

K3S_DEFAULTS = yaml.safe_load((REPO / "roles/k3s/defaults/main.yml").read_text())
MON_DEFAULTS = yaml.safe_load((REPO / "roles/monitoring/defaults/main.yml").read_text())
GPU_DEFAULTS = yaml.safe_load((REPO / "roles/gpu_k8s/defaults/main.yml").read_text())
NS = "monitoring"

# What K3s writes when it finds the NVIDIA container runtime (the part the role checks).
CONTAINERD_WITH_NVIDIA = """\
version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia']
  runtime_type = "io.containerd.runc.v2"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia'.options]
  BinaryName = "/usr/bin/nvidia-container-runtime"
  SystemdCgroup = true
"""

# The K3s HelmChart CRD (helm.cattle.io/v1), as a small structural schema: the k3s role
# deletes the traefik HelmCharts a K3s that ran with Traefik left behind.
HELMCHART_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: helmcharts.helm.cattle.io
  annotations: {odin.test/fixture: "K3s helm-controller HelmChart CRD, structural schema only"}
spec:
  group: helm.cattle.io
  scope: Namespaced
  names: {kind: HelmChart, listKind: HelmChartList, plural: helmcharts, singular: helmchart}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
            status: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


def standin_volumes(sizes):
    """PersistentVolumes of the local-path-retain class, standing in for its provisioner."""
    docs = []
    for index, size in enumerate(sizes):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"odin-test-local-path-standin-{index}", "labels": {"odin.test/stand-in": "true"}},
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "local-path-retain",
                    "local": {"path": f"/var/lib/rancher/k3s/storage/odin-test-{index}"},
                    "nodeAffinity": {
                        "required": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {
                                            "key": "kubernetes.io/hostname",
                                            "operator": "In",
                                            "values": ["odin-test-node"],
                                        }
                                    ]
                                }
                            ]
                        }
                    },
                },
            }
        )
    return "\n---\n".join(json.dumps(d) for d in docs)


@pytest.fixture(scope="module")
def env(plane, tmp_path_factory):
    work = tmp_path_factory.mktemp("k8s-live")
    state = work / "state"
    charts = package_charts(
        plane,
        work / "charts",
        {
            "kube-prometheus-stack": MON_DEFAULTS["monitoring_kube_prometheus_stack_version"],
            "loki": MON_DEFAULTS["monitoring_loki_version"],
            "alloy": MON_DEFAULTS["monitoring_alloy_version"],
            "dcgm-exporter": MON_DEFAULTS["monitoring_dcgm_exporter_version"],
            "nvidia-device-plugin": GPU_DEFAULTS["gpu_k8s_chart_version"],
        },
    )
    containerd = work / "containerd-config.toml"
    containerd.write_text(CONTAINERD_WITH_NVIDIA)
    units = work / "units"
    units.mkdir()
    extra_vars = {
        "odin_state_dir": str(state),
        "odin_kubeconfig": str(plane.kubeconfig),
        "odin_gpu_resolved": True,
        "odin_backup_dir": str(work / "backups"),
        "k3s_cluster_checks": True,
        "_monitoring_helm_binary": str(plane.bin / "helm"),
        "_monitoring_unit_dir": str(units),
        "_monitoring_k3s_binary": str(plane.bin / "kubectl"),
        "monitoring_chart_source": "directory",
        "monitoring_chart_dir": str(charts),
        "monitoring_release_timeout": 120,
        "_gpu_k8s_helm_bin": str(plane.bin / "helm"),
        "gpu_k8s_chart_path": str(charts / f"nvidia-device-plugin-{GPU_DEFAULTS['gpu_k8s_chart_version']}.tgz"),
        "gpu_k8s_containerd_config": str(containerd),
        "gpu_k8s_timeout": 60,
        "monitoring_rollback_helm": str(plane.bin / "helm"),
    }
    return {"work": work, "charts": charts, "run": Playbook(plane, work, extra_vars)}


def _tree_digest(root):
    """Path, mode and sha256 of every file under root."""
    return {
        str(path.relative_to(root)): (path.stat().st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _names(plane, kind, namespace=None):
    args = [kind] + (["-n", namespace] if namespace else [])
    return sorted(item["metadata"]["name"] for item in plane.get(*args)["items"])


# -- K3s layer: the Retain storage class, Traefik removed ------------------------------


def test_k3s_cluster_objects(plane, env):
    run = env["run"]
    plane.apply(HELMCHART_CRD)
    plane.wait_for(lambda: plane.get("crd", "helmcharts.helm.cattle.io") is not None, 30, "HelmChart CRD")
    time.sleep(1)
    # A K3s that once ran with Traefik: the HelmCharts its deploy controller created.
    for name in ("traefik", "traefik-crd"):
        plane.apply(
            json.dumps(
                {
                    "apiVersion": "helm.cattle.io/v1",
                    "kind": "HelmChart",
                    "metadata": {"name": name, "namespace": "kube-system"},
                    "spec": {"chart": name},
                }
            )
        )

    first = run("playbooks/k3s.yml", "--tags", "k3s_cluster", label="k3s cluster objects, first run")
    assert first.changed > 0
    sc = plane.get("storageclass", "local-path-retain")
    assert sc["reclaimPolicy"] == "Retain"
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc["provisioner"] == "rancher.io/local-path"
    assert _names(plane, "helmcharts.helm.cattle.io", "kube-system") == []

    second = run("playbooks/k3s.yml", "--tags", "k3s_cluster", label="k3s cluster objects, second run")
    assert second.changed == 0, second.changed_tasks()

    # Drift: the class re-created by hand with a Delete policy (a field that cannot be
    # changed in place) and a label removed.
    plane.kubectl("delete", "storageclass", "local-path-retain")
    plane.apply(
        json.dumps(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": "local-path-retain"},
                "provisioner": "rancher.io/local-path",
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer",
            }
        ),
        server_side=False,
    )
    third = run("playbooks/k3s.yml", "--tags", "k3s_cluster", label="k3s drift: storage class changed")
    assert set(third.changed_tasks()) == {
        "Delete a storage class whose fixed fields have drifted",
        "Apply the Retain storage class",
    }
    sc = plane.get("storageclass", "local-path-retain")
    assert sc["reclaimPolicy"] == "Retain"
    assert sc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "odin"
    fourth = run("playbooks/k3s.yml", "--tags", "k3s_cluster", label="k3s after drift")
    assert fourth.changed == 0, fourth.changed_tasks()


# -- GPU in Kubernetes ---------------------------------------------------------------


def test_gpu_k8s(plane, env):
    run = env["run"]
    # K3s' node label for GPU hosts, and the GPU the device plugin would advertise.
    plane.kubectl("label", "node", "odin-test-node", "nvidia.com/gpu.present=true", "--overwrite")
    plane.set_gpus(1)
    say("nvidia.com/gpu: 1 set on the kwok node by the test (the device plugin's part; no GPU here)")

    first = run("playbooks/gpu_k8s.yml", label="gpu_k8s first run")
    assert "Create the nvidia RuntimeClass if it is missing" in first.changed_tasks()
    assert "Deploy the NVIDIA device plugin" in first.changed_tasks()
    assert plane.get("runtimeclass", "nvidia")["handler"] == "nvidia"
    ds = plane.get("daemonset", GPU_DEFAULTS["gpu_k8s_release_name"], "-n", GPU_DEFAULTS["gpu_k8s_namespace"])
    assert ds["spec"]["template"]["spec"]["runtimeClassName"] == "nvidia"
    assert ds["status"]["numberReady"] == 1

    second = run("playbooks/gpu_k8s.yml", label="gpu_k8s second run")
    assert second.changed == 0, second.changed_tasks()

    plane.kubectl("delete", "runtimeclass", "nvidia")
    third = run("playbooks/gpu_k8s.yml", label="gpu_k8s drift: RuntimeClass deleted")
    assert third.changed_tasks() == ["Create the nvidia RuntimeClass if it is missing"]
    assert plane.get("runtimeclass", "nvidia") is not None

    fourth = run("playbooks/gpu_k8s.yml", label="gpu_k8s after drift")
    assert fourth.changed == 0, fourth.changed_tasks()


# -- Monitoring ------------------------------------------------------------------------


def test_monitoring_first_run_and_rerun(plane, env):
    run = env["run"]
    plane.apply(standin_volumes(["10Gi", "10Gi", "1Gi", "1Gi", "1Gi", "10Gi"]))

    # The playbooks run with no network but loopback (see Playbook.env): a request for
    # any other host fails there, so the runs below prove the layer needs none.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import urllib.request; urllib.request.urlopen('https://charts.example.org/', timeout=10)",
        ],
        env=run.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode != 0 and "Connection refused" in probe.stderr, probe.stderr[-500:]

    first = run("playbooks/monitoring.yml", label="monitoring first run (loopback only)")
    assert first.changed > 0
    releases = json.loads(plane_helm(plane, "list", "-n", NS, "-o", "json").stdout)
    assert sorted(r["name"] for r in releases) == ["alloy", "dcgm-exporter", "kube-prometheus-stack", "loki"]
    assert all(r["status"] == "deployed" for r in releases), releases
    # The CRD file with `- =` enum items was applied intact.
    crd = plane.get("crd", "alertmanagerconfigs.monitoring.coreos.com")
    enum = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["inhibitRules"][
        "items"
    ]["properties"]["sourceMatch"]["items"]["properties"]["matchType"]["enum"]
    assert enum == ["!=", "=", "=~", "!~"]
    # Workloads ran (as kwok runs them), PVCs bound on the Retain class.
    ready = first.result("Wait for the releases' workloads to become ready")
    assert ready["ready"] is True and len(ready["workloads"]) >= 6, ready
    pvcs = plane.get("pvc", "-n", NS)["items"]
    assert pvcs and all(p["status"]["phase"] == "Bound" for p in pvcs), [p["status"] for p in pvcs]
    assert {p["spec"]["storageClassName"] for p in pvcs} == {"local-path-retain"}
    assert plane.get("servicemonitor", "loki", "-n", NS) is not None
    assert plane.get("prometheusrule", "-n", NS)["items"]
    # Secrets are encrypted at rest in the datastore (K3s' secrets-encryption).
    raw = plane.etcd_secret_value(NS, "odin-grafana-admin")
    assert raw is not None and raw.startswith(b"k8s:enc:aescbc:v1:"), raw[:40] if raw else raw
    assert "SKIPPED starting the host port-forwards" in "\n".join(first.messages())

    second = run("playbooks/monitoring.yml", label="monitoring second run")
    assert second.changed == 0, second.changed_tasks()


def plane_helm(plane, *args, check=True):
    proc = subprocess.run(
        [str(plane.bin / "helm"), *args], env=plane.env(), capture_output=True, text=True, check=False
    )
    assert not check or proc.returncode == 0, proc.stderr
    return proc


def test_monitoring_drift_is_corrected_by_one_run(plane, env):
    """Four kinds of drift at once; one run changes exactly the drifted objects."""
    run = env["run"]
    policies = _names(plane, "networkpolicy", NS)
    assert policies, "the role applies NetworkPolicies"
    policy = policies[0]
    policy_before = plane.get("networkpolicy", policy, "-n", NS)["spec"]
    untouched = {
        name: plane.get("configmap", name, "-n", NS)["metadata"]["resourceVersion"]
        for name in _names(plane, "configmap", NS)
        if name != "kube-prometheus-stack-grafana"
    }

    plane.kubectl("delete", "configmap", "kube-prometheus-stack-grafana", "-n", NS)
    plane.kubectl("scale", "deployment", "kube-prometheus-stack-grafana", "-n", NS, "--replicas=0")
    plane.kubectl(
        "patch", "networkpolicy", policy, "-n", NS, "--type=merge", "-p", json.dumps({"spec": {"ingress": []}})
    )
    plane_helm(plane, "uninstall", "alloy", "-n", NS, "--wait")
    say(
        "drift: ConfigMap kube-prometheus-stack-grafana deleted, Grafana scaled to 0, "
        f"NetworkPolicy {policy} emptied, release alloy uninstalled"
    )

    predicted = run("playbooks/monitoring.yml", "--check", label="monitoring drift, check mode")
    assert {
        "Apply the network policies, dashboards and alert rules",
        "Install or upgrade the releases",
        "Correct drift in the releases' objects",
    } <= set(predicted.changed_tasks()), predicted.changed_tasks()
    assert plane.get("configmap", "kube-prometheus-stack-grafana", "-n", NS) is None, "check mode changed the cluster"
    assert plane_helm(plane, "status", "alloy", "-n", NS, check=False).returncode != 0

    corrected = run("playbooks/monitoring.yml", label="monitoring drift correction")
    assert set(corrected.changed_tasks()) == {
        "Apply the network policies, dashboards and alert rules",
        "Install or upgrade the releases",
        "Correct drift in the releases' objects",
    }, corrected.changed_tasks()
    # Only alloy was re-installed; only the drifted objects of the others were re-applied.
    helm_results = corrected.result("Install or upgrade the releases")["results"]
    assert [r["item"]["name"] for r in helm_results if r["changed"]] == ["alloy"]
    manifests = corrected.result("Apply the network policies, dashboards and alert rules")["results"]
    assert [r["item"] for r in manifests if r["changed"]] == ["networkpolicies.yaml"]
    drift = "\n".join(m for m in corrected.messages() if m.startswith("Say what drift was corrected"))
    say(drift)
    assert "kube-prometheus-stack: re-applied" in drift
    assert "ConfigMap/monitoring/kube-prometheus-stack-grafana" in drift
    assert "Deployment/monitoring/kube-prometheus-stack-grafana" in drift
    kps_line = [line for line in drift.splitlines() if "kube-prometheus-stack:" in line][0]
    assert kps_line.count("/") == 4, kps_line  # exactly those two objects
    assert "loki:" not in drift and "dcgm-exporter:" not in drift

    assert plane.get("networkpolicy", policy, "-n", NS)["spec"] == policy_before
    grafana = plane.get("deployment", "kube-prometheus-stack-grafana", "-n", NS)
    assert grafana["spec"]["replicas"] == 1 and grafana["status"].get("readyReplicas") == 1
    restored = plane.get("configmap", "kube-prometheus-stack-grafana", "-n", NS)
    assert restored["metadata"]["annotations"]["meta.helm.sh/release-name"] == "kube-prometheus-stack"
    assert plane.get("daemonset", "alloy", "-n", NS)["status"]["numberReady"] == 1
    for name, version in untouched.items():
        if name != "alloy":
            assert plane.get("configmap", name, "-n", NS)["metadata"]["resourceVersion"] == version, name

    again = run("playbooks/monitoring.yml", label="monitoring after drift correction")
    assert again.changed == 0, again.changed_tasks()


def test_release_that_cannot_become_ready_fails_with_the_pods_reason(plane, env):
    run = env["run"]
    plane.kubectl("taint", "node", "odin-test-node", "odin.test/blocked=true:NoSchedule")
    try:
        plane_helm(plane, "uninstall", "loki", "-n", NS, "--wait")
        start = time.monotonic()
        failed = run(
            "playbooks/monitoring.yml",
            extra={"monitoring_release_timeout": 20},
            check=False,
            label="monitoring with the node tainted (timeout 20s)",
        )
        elapsed = time.monotonic() - start
        assert failed.rc != 0
        message = failed.failures()
        assert "Wait for the releases' workloads to become ready" in message
        assert "StatefulSet/loki: 0/1 ready" in message
        assert "Unschedulable" in message and "untolerated taint" in message, message
        say(f"failed in {elapsed:.0f}s with: {message[:400]}")
        assert elapsed < 120
    finally:
        plane.kubectl("taint", "node", "odin-test-node", "odin.test/blocked=true:NoSchedule-")
    # The release was installed; once the node takes pods again the scheduler places
    # loki-0 by itself (the next test's runs then wait for it like every workload).
    plane.wait_for(
        lambda: plane.get("statefulset", "loki", "-n", NS)["status"].get("readyReplicas") == 1, 60, "loki-0 Ready"
    )


# -- Rollback ------------------------------------------------------------------------


def test_rollback(plane, env):
    run = env["run"]

    def retention():
        sts = plane.get("statefulset", "prometheus-kube-prometheus-stack-prometheus", "-n", NS)
        return [a for a in sts["spec"]["template"]["spec"]["containers"][0]["args"] if "retention.time" in a][0]

    assert retention().endswith("=" + MON_DEFAULTS["monitoring_prometheus_retention"])
    upgraded = run(
        "playbooks/monitoring.yml", extra={"monitoring_prometheus_retention": "9d"}, label="monitoring, retention 9d"
    )
    assert "Install or upgrade the releases" in upgraded.changed_tasks()
    assert retention().endswith("=9d")
    revision = lambda: int(  # noqa: E731
        json.loads(plane_helm(plane, "history", "kube-prometheus-stack", "-n", NS, "-o", "json").stdout)[-1]["revision"]
    )
    before = revision()

    rolled = run(
        "playbooks/rollback.yml", extra={"monitoring_rollback_release": "kube-prometheus-stack"}, label="rollback kps"
    )
    assert rolled.changed_tasks() == ["Roll back to the previous revision"]
    assert revision() == before + 1
    assert retention().endswith("=" + MON_DEFAULTS["monitoring_prometheus_retention"])

    # dcgm-exporter was installed once: there is nothing to go back to, and it says so.
    none = run("playbooks/rollback.yml", extra={"monitoring_rollback_release": "dcgm-exporter"}, label="rollback dcgm")
    assert none.changed == 0
    assert any("no earlier revision" in m for m in none.messages()), none.messages()

    unknown = run(
        "playbooks/rollback.yml", extra={"monitoring_rollback_release": "nope"}, check=False, label="rollback unknown"
    )
    assert unknown.rc != 0 and "is not a release" in unknown.failures()

    # An inventory that still asks for 9d upgrades the release again on the next run.
    nine = {"monitoring_prometheus_retention": "9d"}
    back = run("playbooks/monitoring.yml", extra=nine, label="monitoring after rollback, inventory still 9d")
    assert "Install or upgrade the releases" in back.changed_tasks()
    assert retention().endswith("=9d")
    assert revision() == before + 2
    again = run("playbooks/monitoring.yml", extra=nine, label="monitoring after rollback, again")
    assert again.changed == 0, again.changed_tasks()


def test_restore_grafana_into_the_running_stack(plane, env, tmp_path):
    """A real restore scales Grafana down, writes its database, and scales it back."""
    run = env["run"]
    (tmp_path / "textfile").mkdir()
    volume = tmp_path / "storage" / "pvc-1234_monitoring_kube-prometheus-stack-grafana"
    volume.mkdir(parents=True)
    db = volume / "grafana.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE dashboard (id INTEGER PRIMARY KEY, title TEXT)")
        conn.execute("INSERT INTO dashboard (title) VALUES ('GPU')")
    os.chown(db, 472, 472)
    db.chmod(0o640)
    settings = {
        "odin_backup_dir": str(tmp_path / "backups"),
        "odin_textfile_dir": str(tmp_path / "textfile"),
        "backup_components": ["grafana"],
        "backup_required_components": ["grafana"],
        "backup_grafana_db": str(tmp_path / "storage" / "pvc-*_monitoring_*grafana*" / "grafana.db"),
    }
    run("playbooks/backup.yml", extra=settings, label="backup of Grafana")
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO dashboard (title) VALUES ('written after the backup')")
    sts_before = plane.get("statefulset", "prometheus-kube-prometheus-stack-prometheus", "-n", NS)

    restore = {
        **settings,
        "backup_restore_mode": "restore",
        "backup_restore_components": ["grafana"],
        "backup_restore_backup_first": False,
    }
    restored = run("playbooks/restore.yml", extra=restore, label="restore Grafana into the running stack")
    changed = restored.changed_tasks()
    assert "Scale them to 0" in changed and "Scale the workloads back to their replicas" in changed, changed
    down = restored.result("Wait until their pods are gone")["results"]
    assert [r["item"]["name"] for r in down] == ["kube-prometheus-stack-grafana"]
    assert all(r["resources"][0]["status"].get("replicas", 0) == 0 for r in down)
    grafana = plane.get("deployment", "kube-prometheus-stack-grafana", "-n", NS)
    assert grafana["spec"]["replicas"] == 1 and grafana["status"].get("readyReplicas") == 1
    with sqlite3.connect(db) as conn:
        assert [row[0] for row in conn.execute("SELECT title FROM dashboard")] == ["GPU"]
    assert (db.stat().st_uid, db.stat().st_gid) == (472, 472)
    # Prometheus' data was not restored: its workload was left alone.
    sts_after = plane.get("statefulset", "prometheus-kube-prometheus-stack-prometheus", "-n", NS)
    assert sts_after["metadata"]["generation"] == sts_before["metadata"]["generation"]
    say("restore: Grafana 1 -> 0 -> 1 around the write; Prometheus untouched")

    # A backup that fails verification is refused before anything is scaled down.
    backups = sorted((tmp_path / "backups").glob("odin-*"))
    target = next(
        p for p in backups[-1].rglob("*") if p.is_file() and p.name != "manifest.json" and "sha256" not in p.name
    )
    target.write_bytes(target.read_bytes() + b"x")
    refused = run("playbooks/restore.yml", extra=restore, check=False, label="restore of a damaged backup")
    assert refused.rc != 0
    assert "Scale them to 0" not in refused.changed_tasks()
    assert plane.get("deployment", "kube-prometheus-stack-grafana", "-n", NS)["spec"]["replicas"] == 1


def test_verify_cluster_checks(plane, env, tmp_path):
    """verify.yml's cluster checks measure the real cluster; what needs a kubelet fails here."""
    run = env["run"]
    settings = {
        "odin_gpu_resolved": False,
        "verify_gates": ["gate1", "gate4"],
        "verify_fail_on_failure": False,
        "verify_report_dir": str(tmp_path / "reports"),
        # K3s's own local-path class is not in the test cluster; its Retain sibling is.
        "verify_storage_class": "local-path-retain",
    }
    # K3s runs CoreDNS, metrics-server and the local-path provisioner in kube-system; this
    # cluster has none, which system_pods rightly fails. A test stand-in stands for them.
    plane.apply(
        json.dumps(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "odin-test-addon-standin", "namespace": "kube-system"},
                "spec": {
                    "selector": {"matchLabels": {"app": "odin-test-addon-standin"}},
                    "template": {
                        "metadata": {"labels": {"app": "odin-test-addon-standin"}},
                        "spec": {"containers": [{"name": "standin", "image": "registry.invalid/odin-test/addon:0"}]},
                    },
                },
            }
        )
    )
    plane.wait_for(
        lambda: (
            plane.get("deployment", "odin-test-addon-standin", "-n", "kube-system")["status"].get("readyReplicas") == 1
        ),
        60,
        "the kube-system stand-in",
    )
    measured = run("playbooks/verify.yml", extra=settings, label="verify gate1 and gate4")
    checks = {c["id"]: c for gate in measured.result("Measure the gates")["gates"] for c in gate["checks"]}
    # The test namespace, PVC and pod came and went, and the report was written: only the
    # reports directory, created on this first run, is a change.
    assert measured.changed_tasks() == ["Create the reports directory"], measured.changed_tasks()
    for check in ("node_ready", "system_pods", "network_policies", "kubeconfig_mode", "exposure"):
        assert checks[check]["status"] == "pass", checks[check]
    assert checks["gpu_host"]["status"] == "skip" and checks["gpu_allocatable"]["status"] == "skip"
    # Boundaries of this test cluster, measured as failures rather than skipped:
    # kwok runs no container, so the test pod writes no log; there is no K3s binary and no
    # Grafana listening. The e2e workflow passes these on a real K3s.
    for check in ("storage_pvc", "secrets_encryption", "grafana_default_password"):
        assert checks[check]["status"] == "fail", checks[check]
        say(f"verify {check}: fail here as expected ({checks[check]['detail'][:160]})")
    # The role created the PVC and the pod with kubernetes.core and kwok made the pod Ready:
    # only its log, which no kubelet serves here, is missing.
    assert checks["storage_pvc"]["measured"] == "PVC Bound, log not read", checks["storage_pvc"]
    assert (
        plane.get("namespace", "odin-verify") is None
        or plane.get("namespace", "odin-verify")["status"]["phase"] == "Terminating"
    )
    report = json.loads(next((tmp_path / "reports").glob("*.json")).read_text())
    assert {c["id"] for g in report["gates"] for c in g["checks"]} >= set(checks)

    # What breaks: with the NetworkPolicies gone the check fails and says what to do.
    policies = plane.get("networkpolicy", "-n", NS)
    plane.kubectl("delete", "networkpolicy", "--all", "-n", NS)
    broken = run("playbooks/verify.yml", extra={**settings, "verify_gates": ["gate4"]}, label="verify without policies")
    # A re-run: the report is rewritten, yet nothing changed.
    assert broken.changed == 0, broken.changed_tasks()
    checks = {c["id"]: c for gate in broken.result("Measure the gates")["gates"] for c in gate["checks"]}
    assert checks["network_policies"]["status"] == "fail"
    assert "re-run the monitoring layer" in checks["network_policies"]["detail"]
    for item in policies["items"]:
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
            item["metadata"].pop(key, None)
    plane.kubectl("create", "-f", "-", input=json.dumps(policies))


def test_monitoring_refuses_altered_chart_archive(plane, env):
    run = env["run"]
    archive = next(Path(env["charts"]).glob("loki-*.tgz"))
    original = archive.read_bytes()
    try:
        archive.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        state = Path(env["work"]) / "state"
        before = _tree_digest(state)
        refused = run("playbooks/monitoring.yml", check=False, label="monitoring with a corrupted chart archive")
        assert _tree_digest(state) == before, "files under odin_state_dir changed before the refusal"
        assert refused.rc != 0
        assert "does not match" in refused.failures() and archive.name in refused.failures()
        assert refused.changed_tasks() == [], refused.changed_tasks()
    finally:
        archive.write_bytes(original)
    assert os.path.getsize(archive) == len(original)


# -- The real upstream charts (opt-in) ------------------------------------------------

UPSTREAM = os.environ.get("ODIN_UPSTREAM_CHARTS", "")


@pytest.mark.skipif(
    not UPSTREAM,
    reason="ODIN_UPSTREAM_CHARTS is not set: chart repositories cannot be reached here, so the real "
    "kube-prometheus-stack, loki, alloy and dcgm-exporter charts are applied only when a directory of "
    "their archives at the pinned versions is given (the e2e workflow fills one with playbooks/bundle.yml)",
)
def test_upstream_charts_apply_and_rerun(plane, tmp_path):
    """The real charts at the pinned versions, on a second, fresh control plane."""
    source = Path(UPSTREAM)
    charts = tmp_path / "charts"
    charts.mkdir()
    wanted = {
        "kube-prometheus-stack": MON_DEFAULTS["monitoring_kube_prometheus_stack_version"],
        "loki": MON_DEFAULTS["monitoring_loki_version"],
        "alloy": MON_DEFAULTS["monitoring_alloy_version"],
        "dcgm-exporter": MON_DEFAULTS["monitoring_dcgm_exporter_version"],
    }
    lines = []
    for chart, version in wanted.items():
        archive = source / f"{chart}-{version}.tgz"
        assert archive.is_file(), f"ODIN_UPSTREAM_CHARTS={source} has no {archive.name}"
        shutil.copy(archive, charts / archive.name)
        lines.append(f"{hashlib.sha256(archive.read_bytes()).hexdigest()}  {archive.name}\n")
    (charts / "SHA256SUMS").write_text("".join(lines))

    with cluster.ControlPlane(plane.bin, workdir=tmp_path / "plane") as upstream:
        upstream.apply(HELMCHART_CRD)
        upstream.apply(standin_volumes(["10Gi", "10Gi", "1Gi", "1Gi", "1Gi", "10Gi"]))
        run = Playbook(
            upstream,
            tmp_path,
            {
                "odin_state_dir": str(tmp_path / "state"),
                "odin_kubeconfig": str(upstream.kubeconfig),
                "odin_gpu_resolved": False,
                "k3s_cluster_checks": True,
                "_monitoring_helm_binary": str(upstream.bin / "helm"),
                "_monitoring_unit_dir": str(tmp_path),
                "monitoring_chart_source": "directory",
                "monitoring_chart_dir": str(charts),
            },
        )
        run("playbooks/k3s.yml", "--tags", "k3s_cluster", label="upstream charts: k3s cluster objects")
        first = run("playbooks/monitoring.yml", label="upstream charts: monitoring first run")
        assert first.changed > 0
        second = run("playbooks/monitoring.yml", label="upstream charts: monitoring second run")
        assert second.changed == 0, second.changed_tasks()
