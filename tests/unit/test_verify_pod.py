"""The verify role's test workload, built by the odin.stack.verify_test_pod filter."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.odin.stack.plugins.filter import verify as verify_filters

BUILD = verify_filters.FilterModule().filters()["verify_test_pod"]
ARGS = {"name": "odin-verify", "image": "busybox:1.36", "token": "tok", "marker": "m-1"}


@pytest.mark.parametrize(
    ("storage_class", "kinds", "volumes"),
    [
        ("local-path", ["Namespace", "PersistentVolumeClaim", "Pod"], [("data", "odin-verify")]),
        ("", ["Namespace", "Pod"], []),
        (None, ["Namespace", "Pod"], []),
    ],
)
def test_objects_with_and_without_pvc(storage_class, kinds, volumes):
    objects = BUILD("odin-verify", storage_class=storage_class, **ARGS)
    assert [o["kind"] for o in objects] == kinds
    assert {o["metadata"].get("namespace", "odin-verify") for o in objects} == {"odin-verify"}
    pod = objects[-1]
    assert [(v["name"], v["persistentVolumeClaim"]["claimName"]) for v in pod["spec"]["volumes"]] == volumes
    container = pod["spec"]["containers"][0]
    assert {e["name"]: e["value"] for e in container["env"]} == {"TOKEN": "tok", "MARKER": "m-1"}
    assert [m["mountPath"] for m in container["volumeMounts"]] == (["/data"] if volumes else [])
    if storage_class:
        assert objects[1]["spec"]["storageClassName"] == storage_class


@pytest.mark.parametrize(
    ("namespace", "overrides", "message"),
    [
        ("", {}, "namespace must be a non-empty string"),
        ("odin-verify", {"token": ""}, "token must be a non-empty string"),
        ("odin-verify", {"marker": None}, "marker must be a non-empty string"),
        ("odin-verify", {"image": 5}, "image must be a non-empty string"),
    ],
)
def test_missing_values_are_refused(namespace, overrides, message):
    with pytest.raises(AnsibleFilterError, match=message):
        BUILD(namespace, **{**ARGS, **overrides})


def test_objects_validate_against_kubernetes_schemas():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for item in BUILD("odin-verify", storage_class="local-path", **ARGS):
        kubernetes_validate.validate(item, "1.30", strict=True)
