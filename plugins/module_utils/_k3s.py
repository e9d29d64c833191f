# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Logic behind the k3s role: release versions, checksum lists, config.yaml checks.

Plain Python with no Ansible imports, so it can be unit-tested on its own; the
odin.stack k3s filters are thin wrappers around these functions.
"""

from __future__ import annotations

import re

VERSION_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)\+k3s(\d+)$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CONFIG_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")

# Types of the K3s configuration keys ODIN sets or users commonly set. A key not listed
# here is passed through as long as its value is a string, number, bool or list of those.
# Repeatable flags (StringSlice in K3s) are lists so one entry cannot silently replace
# another; write-kubeconfig-mode must be a string because YAML reads 0600 as the
# integer 384.
CONFIG_KEY_TYPES = {
    "bool": (
        "secrets-encryption",
        "cluster-init",
        "disable-network-policy",
        "disable-kube-proxy",
        "disable-cloud-controller",
        "disable-helm-controller",
        "disable-apiserver",
        "disable-scheduler",
        "disable-controller-manager",
        "disable-etcd",
        "embedded-registry",
        "protect-kernel-defaults",
        "selinux",
        "rootless",
        "prefer-bundled-bin",
        "flannel-ipv6-masq",
        "debug",
    ),
    "list": (
        "disable",
        "node-label",
        "node-taint",
        "kubelet-arg",
        "kube-apiserver-arg",
        "kube-controller-manager-arg",
        "kube-scheduler-arg",
        "kube-proxy-arg",
        "kube-cloud-controller-manager-arg",
        "etcd-arg",
        "tls-san",
    ),
    "str": (
        "write-kubeconfig-mode",
        "write-kubeconfig",
        "default-local-storage-path",
        "data-dir",
        "node-name",
        "node-ip",
        "node-external-ip",
        "advertise-address",
        "bind-address",
        "flannel-backend",
        "cluster-cidr",
        "service-cidr",
        "cluster-dns",
        "cluster-domain",
        "server",
        "token",
        "token-file",
        "agent-token",
        "private-registry",
        "snapshotter",
        "container-runtime-endpoint",
        "resolv-conf",
    ),
    "int": (
        "https-listen-port",
        "etcd-snapshot-retention",
    ),
}
_TYPE_OF_KEY = {key: kind for kind, keys in CONFIG_KEY_TYPES.items() for key in keys}
# Flags whose values are secrets: never shown in a message or a diff.
SECRET_KEYS = ("token", "agent-token", "datastore-endpoint", "etcd-s3-access-key", "etcd-s3-secret-key")


def _shown(key, value):
    return "value hidden" if key in SECRET_KEYS else repr(value)


def parse_version(version):
    """'v1.34.2+k3s1' -> (1, 34, 2, 1). Raises ValueError on any other shape."""
    match = VERSION_RE.match(str(version).strip()) if version is not None else None
    if not match:
        raise ValueError(f"'{version}' is not a K3s release version like v1.34.2+k3s1")
    return tuple(int(part) for part in match.groups())


def is_release_tag(version):
    """True when `version` is exactly a release tag like v1.34.2+k3s1, with nothing around it.

    A setting with a stray space would end up in download URLs and file names, so it is
    refused rather than stripped.
    """
    return isinstance(version, str) and VERSION_RE.fullmatch(version) is not None


def version_from_output(output):
    """The release version in `k3s --version` output, or None when there is none."""
    for line in (output or "").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "k3s" and parts[1] == "version":
            try:
                parse_version(parts[2])
            except ValueError:
                return None
            return parts[2]
    return None


def compare_versions(left, right):
    """-1, 0 or 1 as release `left` is older than, equal to or newer than `right`."""
    a, b = parse_version(left), parse_version(right)
    return (a > b) - (a < b)


def parse_checksum_list(text):
    """Parse sha256sum output ('<hash>  <name>' or '<hash> *<name>') into {name: hash}.

    Blank lines and '#' comments are ignored; any other line that is not a checksum
    entry raises ValueError, because a list that does not parse cannot be trusted.
    """
    entries = {}
    for number, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or not SHA256_RE.match(parts[0].lower()):
            raise ValueError(f"line {number} is not '<sha256>  <file name>': {raw!r}")
        name = parts[1].strip().lstrip("*")
        entries[name] = parts[0].lower()
    return entries


def checksum_for(text, name):
    """The sha256 recorded for `name` in a sha256sum list ('' when it is not listed)."""
    return parse_checksum_list(text).get(name, "")


def _type_ok(kind, value):
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "list":
        return isinstance(value, list) and all(isinstance(item, (str, int, float)) for item in value)
    return False


def _kind(value):
    """A YAML-level name for the type of `value` (Ansible wraps values in its own subclasses)."""
    for kind, types in (("bool", bool), ("number", (int, float)), ("string", str), ("list", list), ("dict", dict)):
        if isinstance(value, types):
            return kind
    return type(value).__name__


def _is_scalar(value):
    return isinstance(value, (str, int, float, bool))


def config_problems(config, variable="k3s_config"):
    """Every problem with a K3s config.yaml dict, each naming the key, the value and the fix."""
    if not isinstance(config, dict):
        return [f"{variable} must be a dict of K3s flags (without leading --), got a {_kind(config)}."]
    problems = []
    for key in sorted(config, key=str):
        value = config[key]
        if not isinstance(key, str) or not CONFIG_KEY_RE.match(key):
            problems.append(
                f"{variable}: key {key!r} is not a K3s flag name; use the flag without leading dashes, "
                "in lower case with '-' (e.g. node-label)."
            )
            continue
        kind = _TYPE_OF_KEY.get(key)
        if kind is None:
            if not (_is_scalar(value) or (isinstance(value, list) and all(_is_scalar(v) for v in value))):
                problems.append(
                    f"{variable}['{key}'] is a {_kind(value)} ({_shown(key, value)}); K3s flags take a string, "
                    "number, bool or a list of those."
                )
            continue
        if not _type_ok(kind, value):
            hint = {
                "bool": "true or false",
                "int": "a whole number",
                "str": "a quoted string",
                "list": "a list of strings, e.g. ['value']",
            }[kind]
            problems.append(f"{variable}['{key}'] is a {_kind(value)} ({_shown(key, value)}); set it to {hint}.")
    return problems
