"""Reading Kubernetes YAML, Helm ownership, storage-class drift and workload readiness."""

import base64
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.odin.stack.plugins.filter import k8s as k8s_filters
from ansible_collections.odin.stack.plugins.module_utils import _k8s_ready
from ansible_collections.odin.stack.plugins.plugin_utils import _k8s_yaml

REPO = Path(__file__).resolve().parents[2]
ALERTMANAGERCONFIG_CRD = REPO / "tests/charts/kube-prometheus-stack/charts/crds/crds/crd-alertmanagerconfigs.yaml"


def test_pyyaml_alone_cannot_read_the_value_indicator():
    # The defect the loader exists for: PyYAML's SafeLoader (what kubernetes.core's src:
    # uses) refuses a CRD with plain `- =` enum items.
    with pytest.raises(yaml.constructor.ConstructorError, match="tag:yaml.org,2002:value"):
        yaml.safe_load(ALERTMANAGERCONFIG_CRD.read_text())


def test_crd_with_value_indicator_loads_as_strings():
    (crd,) = _k8s_yaml.load_documents(ALERTMANAGERCONFIG_CRD.read_text(), "crd")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    enum = schema["properties"]["spec"]["properties"]["inhibitRules"]["items"]["properties"]["sourceMatch"]["items"][
        "properties"
    ]["matchType"]["enum"]
    assert enum == ["!=", "=", "=~", "!~"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: =\n", {"a": "="}),
        ("- =\n- '='\n- =~\n", ["=", "=", "=~"]),
        ("a: yes\nb: 010\nc: 1e3\n", {"a": True, "b": 8, "c": "1e3"}),  # other YAML 1.1 rules are kept
    ],
)
def test_loader_scalars(text, expected):
    assert yaml.load(text, Loader=_k8s_yaml.KubernetesYamlLoader) == expected  # noqa: S506


def test_documents_skip_empty_and_flatten_lists():
    text = (
        "---\n# only a comment\n---\napiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
        "---\napiVersion: v1\nkind: Secret\nmetadata: {name: b, namespace: n}\n"
    )
    objects = _k8s_yaml.load_documents(text)
    assert [_k8s_yaml.object_ref(o) for o in objects] == ["ConfigMap/a", "Secret/n/b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [1, 2\n", "not valid YAML"),
        ("- 1\n- 2\n", "document 1 is not a Kubernetes object"),
        ("apiVersion: v1\nmetadata: {}\n", "document 1 is not a Kubernetes object"),
        ("kind: x\n---\n!!python/object:os.system {}\n", "not valid YAML"),
    ],
)
def test_documents_refuse_bad_input(text, message):
    with pytest.raises(ValueError, match=message):
        _k8s_yaml.load_documents(text, "src.yaml")


def test_filter_reads_slurp_results_in_order():
    def slurped(text, name):
        return {"content": base64.b64encode(text.encode()).decode(), "item": name}

    results = {
        "results": [
            slurped("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n", "/a.yaml"),
            slurped(ALERTMANAGERCONFIG_CRD.read_text(), "/b.yaml"),
        ]
    }
    objects = k8s_filters.k8s_documents(results)
    assert [o["metadata"]["name"] for o in objects] == ["one", "alertmanagerconfigs.monitoring.coreos.com"]
    with pytest.raises(AnsibleFilterError, match="/bad.yaml"):
        k8s_filters.k8s_documents([slurped("- 1\n", "/bad.yaml")])


def test_helm_owned_adds_annotations_without_touching_the_input():
    source = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "annotations": {"x": "y"}}}]
    owned = k8s_filters.k8s_helm_owned(source, "loki", "monitoring")
    assert owned[0]["metadata"]["annotations"] == {
        "x": "y",
        "meta.helm.sh/release-name": "loki",
        "meta.helm.sh/release-namespace": "monitoring",
    }
    assert source[0]["metadata"]["annotations"] == {"x": "y"}


WANTED_SC = {
    "provisioner": "rancher.io/local-path",
    "reclaimPolicy": "Retain",
    "volumeBindingMode": "WaitForFirstConsumer",
}


@pytest.mark.parametrize(
    ("live", "drift"),
    [
        (dict(WANTED_SC, allowVolumeExpansion=True, metadata={"labels": {}}), []),
        (dict(WANTED_SC, reclaimPolicy="Delete"), ["reclaimPolicy"]),
        ({"provisioner": "rancher.io/local-path"}, ["reclaimPolicy", "volumeBindingMode"]),
        (dict(WANTED_SC, parameters={"nodePath": "/x"}), ["parameters"]),
        (dict(WANTED_SC, provisioner="other"), ["provisioner"]),
    ],
)
def test_storageclass_drift(live, drift):
    assert k8s_filters.k8s_storageclass_drift(live, WANTED_SC) == drift


# -- readiness ------------------------------------------------------------------------


def deployment(name, replicas=1, ready=1, generation=1, observed=1):
    return {
        "kind": "Deployment",
        "metadata": {"name": name, "generation": generation},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
        "status": {
            "observedGeneration": observed,
            "readyReplicas": ready,
            "updatedReplicas": ready,
            "availableReplicas": ready,
        },
    }


def pod(name, app, ready=False, **status):
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}] + status.pop("conditions", [])
    return {
        "metadata": {"name": name, "labels": {"app": app}},
        "status": {"phase": "Running", "conditions": conditions, **status},
    }


def test_ready_workloads_have_no_problems():
    assert _k8s_ready.problems([deployment("grafana")], [pod("grafana-1", "grafana", ready=True)]) == []


@pytest.mark.parametrize(
    ("pod_status", "expected"),
    [
        (
            {
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/1 nodes are available: 1 node(s) had untolerated taint",
                    }
                ]
            },
            "not scheduled: Unschedulable (0/1 nodes are available: 1 node(s) had untolerated taint)",
        ),
        (
            {
                "containerStatuses": [
                    {
                        "name": "grafana",
                        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}},
                    }
                ]
            },
            "container grafana waiting: ImagePullBackOff (Back-off pulling image)",
        ),
        (
            {"containerStatuses": [{"name": "grafana", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]},
            "container grafana exited 1: Error",
        ),
        ({}, "phase Running, not Ready"),
    ],
)
def test_problems_carry_the_pods_reason(pod_status, expected):
    lines = _k8s_ready.problems([deployment("grafana", ready=0)], [pod("grafana-1", "grafana", **pod_status)])
    assert lines == [f"Deployment/grafana: 0/1 ready; pod grafana-1: {expected}"]


def test_workload_without_pods_reports_its_warning_events():
    events = [
        {
            "type": "Warning",
            "reason": "FailedCreate",
            "message": 'pods "dcgm-exporter-" is forbidden: RuntimeClass "nvidia" not found',
            "involvedObject": {"kind": "DaemonSet", "name": "dcgm-exporter"},
        }
    ]
    ds = {
        "kind": "DaemonSet",
        "metadata": {"name": "dcgm-exporter"},
        "spec": {"selector": {"matchLabels": {"app": "dcgm"}}},
        "status": {"desiredNumberScheduled": 1, "numberReady": 0, "updatedNumberScheduled": 0},
    }
    (line,) = _k8s_ready.problems([ds], [], events)
    assert line.startswith("DaemonSet/dcgm-exporter: 0/1 ready;")
    assert 'RuntimeClass "nvidia" not found' in line
    assert _k8s_ready.problems([ds], []) == ["DaemonSet/dcgm-exporter: 0/1 ready; no pods created yet"]


def test_status_of_an_older_spec_is_not_ready():
    assert _k8s_ready.workload_counts(deployment("g", generation=3, observed=2)) == (1, 0)
    assert _k8s_ready.problems([deployment("g", generation=3, observed=2)], [pod("g-1", "g", ready=True)])


def test_scaled_to_zero_is_ready_and_other_pods_do_not_count():
    assert _k8s_ready.problems([deployment("g", replicas=0, ready=0)], []) == []
    lines = _k8s_ready.problems([deployment("g", ready=0)], [pod("other", "loki")])
    assert lines == ["Deployment/g: 0/1 ready; no pods created yet"]


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
        ({}, {"a": "1"}, False),
    ],
)
def test_selector_matches(selector, labels, expected):
    assert _k8s_ready.selector_matches(selector, labels) is expected


def test_release_objects_carry_their_own_release():
    results = {
        "results": [
            {"item": {"name": "loki"}, "stdout": "---\napiVersion: v1\nkind: Service\nmetadata: {name: loki}\n"},
            {"item": {"name": "alloy"}, "stdout": "---\n# Source: x\n"},
            {
                "item": {"name": "kube-prometheus-stack"},
                "stdout": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n"
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: b}\n",
            },
        ]
    }
    objects = k8s_filters.k8s_release_objects(results, "monitoring")
    assert k8s_filters.k8s_release_objects(results["results"], "monitoring") == objects
    assert [(o["kind"], o["metadata"]["annotations"]["meta.helm.sh/release-name"]) for o in objects] == [
        ("Service", "loki"),
        ("ConfigMap", "kube-prometheus-stack"),
        ("ClusterRole", "kube-prometheus-stack"),
    ]


def test_changed_by_release_groups_what_changed():
    def entry(kind, name, release, changed):
        annotations = {"meta.helm.sh/release-name": release}
        return {"changed": changed, "result": {"kind": kind, "metadata": {"name": name, "annotations": annotations}}}

    result = {
        "changed": True,
        "result": {
            "results": [
                entry("ConfigMap", "a", "kps", True),
                entry("Deployment", "g", "kps", True),
                entry("Service", "l", "loki", False),
            ]
        },
    }
    assert k8s_filters.k8s_changed_by_release(result) == {"kps": ["ConfigMap/a", "Deployment/g"]}
    assert k8s_filters.k8s_changed_by_release({"changed": False, "result": {"results": []}}) == {}


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.38.0", "docker.io/library/busybox:1.38.0"),
        ("grafana/grafana:13.2.0", "docker.io/grafana/grafana:13.2.0"),
        ("quay.io/prometheus/prometheus:v3.14.0-distroless", "quay.io/prometheus/prometheus:v3.14.0-distroless"),
        ("localhost:5000/odin/x", "localhost:5000/odin/x:latest"),
        ("registry.local:5000/x:1", "registry.local:5000/x:1"),
        ("ghcr.io/a/b:1@sha256:" + "a" * 64, "ghcr.io/a/b:1@sha256:" + "a" * 64),
        ("ghcr.io/a/b@sha256:" + "a" * 64, "ghcr.io/a/b@sha256:" + "a" * 64),
    ],
)
def test_image_references_are_fully_qualified(ref, expected):
    assert _k8s_yaml.normalize_image(ref) == expected


def test_images_found_in_every_place_a_workload_names_one():
    text = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: operator}
spec:
  template:
    spec:
      initContainers:
        - {name: init, image: "busybox:1.38.0"}
      containers:
        - name: operator
          image: quay.io/prometheus-operator/prometheus-operator:v0.93.1
          args:
            - --prometheus-config-reloader=quay.io/prometheus-operator/prometheus-config-reloader:v0.93.1
            - --image-pull-policy=IfNotPresent
            - --log-level=info
          env:
            - {name: RELATED_IMAGE_SIDECAR, value: "nvcr.io/nvidia/sidecar:1.0"}
            - {name: IMAGE_PULL_POLICY, value: Always}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: janitor}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: j, image: "registry.k8s.io/kubectl:v1.36.3"}]
          ephemeralContainers: [{name: dbg, image: "ghcr.io/odin/debug:2"}]
---
apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {name: k8s}
spec: {image: "quay.io/prometheus/prometheus:v3.14.0-distroless"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: no-images}
data: {image: ""}
"""
    images = _k8s_yaml.images_of(_k8s_yaml.load_documents(text))
    assert images == {
        "docker.io/library/busybox:1.38.0": "Deployment/operator.spec.template.spec.initContainers[0].image",
        "ghcr.io/odin/debug:2": "CronJob/janitor.spec.jobTemplate.spec.template.spec.ephemeralContainers[0].image",
        "nvcr.io/nvidia/sidecar:1.0": "Deployment/operator.spec.template.spec.containers[0].env[RELATED_IMAGE_SIDECAR]",
        "quay.io/prometheus-operator/prometheus-config-reloader:v0.93.1": (
            "Deployment/operator.spec.template.spec.containers[0].args"
        ),
        "quay.io/prometheus-operator/prometheus-operator:v0.93.1": (
            "Deployment/operator.spec.template.spec.containers[0].image"
        ),
        "quay.io/prometheus/prometheus:v3.14.0-distroless": "Prometheus/k8s.spec.image",
        "registry.k8s.io/kubectl:v1.36.3": "CronJob/janitor.spec.jobTemplate.spec.template.spec.containers[0].image",
    }


def test_the_same_image_named_twice_is_listed_once():
    objects = [
        {"kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [{"image": "busybox"}]}},
        {
            "kind": "Pod",
            "metadata": {"name": "b"},
            "spec": {"containers": [{"image": "docker.io/library/busybox:latest"}]},
        },
    ]
    assert list(_k8s_yaml.images_of(objects)) == ["docker.io/library/busybox:latest"]
