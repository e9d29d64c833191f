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

import re

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


# Container arguments and environment variables that name an image the workload starts
# itself (the Prometheus operator's config reloader, admission webhook patch jobs).
_IMAGE_ARG_RE = re.compile(r"^--?[A-Za-z0-9-]*(?:image|config-reloader)[A-Za-z0-9-]*=(\S+)$")
_IMAGE_ENV_RE = re.compile(r"IMAGE")
# An image reference with a registry or repository path (what a flag value must look like to count).
_IMAGE_REF_RE = re.compile(
    r"^[a-z0-9][a-z0-9._-]*(?::[0-9]+)?(?:/[a-z0-9._-]+)+(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)


def normalize_image(ref):
    """The fully qualified form containerd pulls: docker.io/library/busybox:latest for busybox."""
    name, _sep, digest = ref.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = ""
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = "docker.io/library/" + name
    elif not ("." in first or ":" in first or first == "localhost"):
        name = "docker.io/" + name
    if not tag and not digest:
        tag = "latest"
    return name + (":" + tag if tag else "") + ("@" + digest if digest else "")


def _walk_images(node, found, path):
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}"
            if key == "image" and isinstance(value, str) and value.strip():
                found.setdefault(value.strip(), here)
            elif key in ("args", "command") and isinstance(value, list):
                for arg in value:
                    match = _IMAGE_ARG_RE.match(arg) if isinstance(arg, str) else None
                    if match and _IMAGE_REF_RE.match(match.group(1)):
                        found.setdefault(match.group(1), here)
            elif key == "env" and isinstance(value, list):
                for var in value:
                    if (
                        isinstance(var, dict)
                        and _IMAGE_ENV_RE.search(str(var.get("name", "")))
                        and isinstance(var.get("value"), str)
                        and _IMAGE_REF_RE.match(var["value"])
                    ):
                        found.setdefault(var["value"], f"{here}[{var['name']}]")
            else:
                _walk_images(value, found, here)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _walk_images(item, found, f"{path}[{index}]")


def images_of(objects):
    """Every container image the objects start, as {normalized reference: where it was found}.

    Looks at every `image:` field at any depth (Pods and their controllers, CronJobs, the
    operator's Prometheus and Alertmanager resources), and at container arguments and
    environment variables that hand an image to the workload (--prometheus-config-reloader=...).
    """
    found = {}
    for obj in objects:
        where = "%s/%s" % (obj.get("kind", "?"), (obj.get("metadata") or {}).get("name", "?"))
        raw = {}
        _walk_images(obj, raw, where)
        for ref, path in raw.items():
            found.setdefault(normalize_image(ref), path)
    return dict(sorted(found.items()))
