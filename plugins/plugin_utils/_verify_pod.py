# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""The short-lived workload of the verify role's storage and log-ingestion checks.

Controller-side only: the verify_test_pod filter hands these objects to
kubernetes.core.k8s, and odin.stack.stack_verify evaluates what the pod did.
"""

from __future__ import annotations

LABELS = {"app.kubernetes.io/name": "odin-verify", "app.kubernetes.io/managed-by": "odin.stack"}

# Writes the token to the volume and reads it back (when one is mounted), logs the marker,
# then keeps running so that its log stays on the node until the log collector shipped it.
SCRIPT = (
    'if [ -d /data ]; then echo "$TOKEN" > /data/token && echo "read: $(cat /data/token)"; fi; '
    'echo "$MARKER"; exec sleep 600'
)


def test_pod_objects(namespace, *, pod_name, image, token, marker, storage_class=None):
    """Namespace, PVC (when storage_class is set) and the pod, in the order they are created."""
    items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": dict(LABELS)}}]
    volumes, mounts = [], []
    if storage_class:
        items.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": pod_name, "namespace": namespace, "labels": dict(LABELS)},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": storage_class,
                    "resources": {"requests": {"storage": "16Mi"}},
                },
            }
        )
        volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": pod_name}}]
        mounts = [{"name": "data", "mountPath": "/data"}]
    items.append(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": namespace, "labels": dict(LABELS)},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "verify",
                        "image": image,
                        "command": ["sh", "-c", SCRIPT],
                        "env": [{"name": "TOKEN", "value": token}, {"name": "MARKER", "value": marker}],
                        "volumeMounts": mounts,
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
                    }
                ],
                "volumes": volumes,
            },
        }
    )
    return items
