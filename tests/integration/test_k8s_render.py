"""The K3s and GPU layers' rendered manifests and values, validated offline.

Runs the real gpu_k8s role (render phase; the cluster phase skips and says why) and the
k3s role's storage class template with ansible-playbook on this machine, into a temp
state directory, then validates every manifest against the Kubernetes schemas with
kubernetes-validate.
"""

import json
import os
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.36.0"

PLAYBOOK = """
- name: Render the K3s and GPU layers' Kubernetes files
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
    odin_gpu_resolved: true
    gpu_k8s_cluster_checks: false
  tasks:
    - name: Render the k3s role's Retain storage class
      ansible.builtin.template:
        src: "{{ repo }}/roles/k3s/templates/storageclass-local-path-retain.yaml.j2"
        dest: "{{ odin_state_dir }}/storageclass-local-path-retain.yaml"
        mode: "0600"

    - name: Run the gpu_k8s role
      ansible.builtin.include_role:
        name: odin.stack.gpu_k8s
"""


def render(ansible, tmp_path, **extra):
    state = tmp_path / "state"
    state.mkdir()
    playbook = tmp_path / "render.yml"
    playbook.write_text(PLAYBOOK)
    args = [
        "ansible-playbook",
        "-i",
        "localhost,",
        str(playbook),
        "-e",
        f"odin_state_dir={state}",
        "-e",
        f"repo={REPO}",
    ]
    if extra:
        args += ["-e", json.dumps(extra)]
    result = ansible(args)
    assert result.returncode == 0, result.stdout + result.stderr
    return state, result.stdout


def validate_all(paths):
    for path in paths:
        for document in yaml.safe_load_all(path.read_text()):
            if document is None:
                continue
            kubernetes_validate.validate(document, K8S_VERSION, strict=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="the roles write root-owned files (become) into the state directory")
def test_rendered_without_sharing(ansible, tmp_path):
    state, stdout = render(ansible, tmp_path)
    rendered = state / "rendered" / "gpu_k8s"
    assert sorted(p.name for p in rendered.iterdir()) == [
        "device-plugin-config.yaml",
        "device-plugin-values.yaml",
        "namespace.yaml",
        "runtimeclass-nvidia.yaml",
    ]
    validate_all(
        [
            state / "storageclass-local-path-retain.yaml",
            rendered / "runtimeclass-nvidia.yaml",
            rendered / "namespace.yaml",
            rendered / "device-plugin-config.yaml",
        ]
    )
    storage = yaml.safe_load((state / "storageclass-local-path-retain.yaml").read_text())
    assert storage["metadata"]["name"] == "local-path-retain"
    assert storage["reclaimPolicy"] == "Retain"
    assert storage["provisioner"] == "rancher.io/local-path"
    runtime = yaml.safe_load((rendered / "runtimeclass-nvidia.yaml").read_text())
    assert runtime["handler"] == "nvidia"
    values = yaml.safe_load((rendered / "device-plugin-values.yaml").read_text())
    assert values == {"runtimeClassName": "nvidia"}
    # The skipped cluster phase says why.
    assert "gpu_k8s_cluster_checks is false" in stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the roles write root-owned files (become) into the state directory")
def test_rendered_with_time_slicing(ansible, tmp_path):
    state, _ = render(ansible, tmp_path, gpu_k8s_time_slicing_replicas=4, gpu_k8s_namespace="gpu")
    rendered = state / "rendered" / "gpu_k8s"
    validate_all(sorted(p for p in rendered.iterdir() if p.name != "device-plugin-values.yaml"))
    values = yaml.safe_load((rendered / "device-plugin-values.yaml").read_text())
    assert values["runtimeClassName"] == "nvidia"
    assert values["config"] == {"name": "nvidia-device-plugin-config", "default": "default"}
    config_map = yaml.safe_load((rendered / "device-plugin-config.yaml").read_text())
    assert config_map["metadata"] == {
        "name": "nvidia-device-plugin-config",
        "namespace": "gpu",
        "labels": {"app.kubernetes.io/managed-by": "odin"},
    }
    plugin_config = yaml.safe_load(config_map["data"]["default"])
    assert plugin_config["version"] == "v1"
    assert plugin_config["flags"] == {"migStrategy": "none"}
    assert plugin_config["sharing"]["timeSlicing"]["resources"] == [{"name": "nvidia.com/gpu", "replicas": 4}]


def test_schema_validation_catches_a_broken_manifest():
    broken = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "x"}, "reclaimPolicy": 5}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="the roles write root-owned files (become) into the state directory")
def test_nothing_rendered_without_a_gpu(ansible, tmp_path):
    state, stdout = render(ansible, tmp_path, odin_gpu_resolved=False)
    assert not (state / "rendered" / "gpu_k8s").exists()
    assert "Skipped: odin_gpu_resolved is false" in stdout
