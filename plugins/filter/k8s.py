# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Filters for the Kubernetes layers; the logic lives in plugin_utils/_k8s_yaml.py."""

from __future__ import annotations

import base64

from ansible.errors import AnsibleFilterError

from ansible_collections.odin.stack.plugins.plugin_utils import _k8s_yaml


def k8s_documents(data, source="<string>"):
    """The Kubernetes objects in multi-document YAML text, read as the API server reads them.

    `data` is YAML text, or the result of ansible.builtin.slurp (content in base64), or
    the results of a slurp loop (their objects in order).
    """
    if isinstance(data, dict) and "results" in data:
        data = data["results"]
    if isinstance(data, list):
        objects = []
        for entry in data:
            objects.extend(k8s_documents(entry, source))
        return objects
    if isinstance(data, dict) and "content" in data:
        source = data.get("source") or data.get("item") or source
        data = base64.b64decode(data["content"]).decode("utf-8")
    try:
        return _k8s_yaml.load_documents(data, str(source))
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def k8s_helm_owned(objects, release, namespace):
    """The objects with the annotations Helm uses to recognise them as the release's own.

    An object that was deleted and is re-created from the release manifest would
    otherwise be refused by the next `helm upgrade` ("invalid ownership metadata").
    """
    owned = []
    for source in objects or []:
        obj = dict(source)
        metadata = dict(obj.get("metadata") or {})
        annotations = dict(metadata.get("annotations") or {})
        annotations["meta.helm.sh/release-name"] = release
        annotations["meta.helm.sh/release-namespace"] = namespace
        metadata["annotations"] = annotations
        obj["metadata"] = metadata
        owned.append(obj)
    return owned


def k8s_release_objects(manifest_results, namespace):
    """Every object of several releases, from a loop of `helm get manifest` results.

    Each result's `item.name` is the release; its objects get that release's ownership
    annotations (see k8s_helm_owned), so they can be applied in one call.
    """
    if isinstance(manifest_results, dict):
        manifest_results = manifest_results.get("results")
    objects = []
    for entry in manifest_results or []:
        release = entry["item"]["name"]
        objects.extend(k8s_helm_owned(k8s_documents(entry.get("stdout", ""), release), release, namespace))
    return objects


def k8s_changed_by_release(result):
    """{release: [Kind/namespace/name, ...]} of the objects a kubernetes.core.k8s call changed."""
    by_release = {}
    if not isinstance(result, dict):
        return by_release
    inner = result.get("result") or {}
    entries = inner.get("results") if isinstance(inner, dict) and "results" in inner else [result]
    for entry in entries:
        obj = entry.get("result")
        if entry.get("changed") and isinstance(obj, dict):
            annotations = (obj.get("metadata") or {}).get("annotations") or {}
            release = annotations.get("meta.helm.sh/release-name", "?")
            by_release.setdefault(release, []).append(_k8s_yaml.object_ref(obj))
    return by_release


def k8s_storageclass_drift(live, wanted):
    """Fields a StorageClass cannot change in place on which `live` differs from `wanted`."""
    return _k8s_yaml.storageclass_fixed_drift(live or {}, wanted or {})


def k8s_images(objects):
    """Every container image the objects start: {fully qualified reference: where it is named}."""
    return _k8s_yaml.images_of(objects)


class FilterModule:
    def filters(self):
        return {
            "k8s_documents": k8s_documents,
            "k8s_images": k8s_images,
            "k8s_helm_owned": k8s_helm_owned,
            "k8s_release_objects": k8s_release_objects,
            "k8s_changed_by_release": k8s_changed_by_release,
            "k8s_storageclass_drift": k8s_storageclass_drift,
        }
