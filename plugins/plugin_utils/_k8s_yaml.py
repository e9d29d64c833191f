# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Reading Kubernetes YAML the way the API server's own decoder reads it.

PyYAML follows YAML 1.1 to the letter and resolves a plain `=` to the "value" type
(tag:yaml.org,2002:value), for which it has no constructor: a file with `- =` in a
list (the enum of match operators in prometheus-operator's AlertmanagerConfig CRD)
fails to load with "could not determine a constructor for the tag". Go's YAML
decoders, and so every Kubernetes client, read it as the string "=". This loader
does the same and keeps every other YAML 1.1 rule of PyYAML's SafeLoader.
"""

from __future__ import annotations

import yaml

_VALUE_TAG = "tag:yaml.org,2002:value"


class KubernetesYamlLoader(yaml.SafeLoader):
    """SafeLoader that reads the YAML 1.1 value indicator `=` as a plain string."""


def _construct_value_as_string(loader, node):
    return loader.construct_scalar(node)


KubernetesYamlLoader.add_constructor(_VALUE_TAG, _construct_value_as_string)


def load_documents(text, source="<string>"):
    """Every non-empty document in `text`, `kind: List` items flattened.

    Raises ValueError naming `source` when the text is not YAML or a document is
    not a Kubernetes object (a mapping with apiVersion and kind).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        documents = list(yaml.load_all(text, Loader=KubernetesYamlLoader))  # noqa: S506 # SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not valid YAML: {exc}") from exc
    objects = []
    for index, document in enumerate(documents):
        if document is None:
            continue
        if not isinstance(document, dict) or not document.get("apiVersion") or not document.get("kind"):
            raise ValueError(
                f"{source}: document {index + 1} is not a Kubernetes object (a mapping with apiVersion and kind)"
            )
        if document["kind"] == "List" and isinstance(document.get("items"), list):
            objects.extend(item for item in document["items"] if item)
        else:
            objects.append(document)
    return objects


def object_ref(obj):
    """`Kind/namespace/name` (or `Kind/name` for cluster objects) of a Kubernetes object."""
    metadata = obj.get("metadata") or {}
    parts = [str(obj.get("kind", "?"))]
    if metadata.get("namespace"):
        parts.append(str(metadata["namespace"]))
    parts.append(str(metadata.get("name", "?")))
    return "/".join(parts)


# The API server's defaults for the StorageClass fields that are immutable after creation.
_STORAGECLASS_FIXED = {
    "provisioner": None,
    "parameters": {},
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "Immediate",
}


def storageclass_fixed_drift(live, wanted):
    """Names of the immutable StorageClass fields on which `live` differs from `wanted`."""
    drift = []
    for field, default in _STORAGECLASS_FIXED.items():
        if (live.get(field) or default) != (wanted.get(field) or default):
            drift.append(field)
    return drift
