# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Logic behind the k3s role: release versions, checksum lists, config.yaml checks.

Plain Python with no Ansible imports, so it can be unit-tested on its own; the
odin.stack k3s filters are thin wrappers around these functions.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

VERSION_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)\+k3s(\d+)$")
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
    """'v1.36.3+k3s1' -> (1, 34, 2, 1). Raises ValueError on any other shape."""
    match = VERSION_RE.match(str(version).strip()) if version is not None else None
    if not match:
        raise ValueError(f"'{version}' is not a K3s release version like v1.36.3+k3s1")
    return tuple(int(part) for part in match.groups())


def is_release_tag(version):
    """True when `version` is exactly a release tag like v1.36.3+k3s1, with nothing around it.

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


# registries.yaml (https://docs.k3s.io/installation/private-registry): the keys K3s reads.
_REGISTRY_TOP_KEYS = ("mirrors", "configs")
_MIRROR_KEYS = ("endpoint", "rewrite")
_CONFIG_KEYS = ("auth", "tls")
_AUTH_KEYS = ("username", "password", "auth", "identity_token")
_TLS_KEYS = ("ca_file", "cert_file", "key_file", "insecure_skip_verify")
REGISTRY_HOST_RE = re.compile(
    r"^(\*|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:[0-9]{1,5})?)$"
)


def _endpoint_ok(url):
    if not isinstance(url, str) or url != url.strip():
        return False
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query and not parts.fragment


def _unknown_keys(where, value, allowed):
    return [
        f"{where}: key {key!r} is not one K3s reads; use {', '.join(allowed)}."
        for key in sorted(set(value) - set(allowed), key=str)
    ]


def _rewrite_problems(where, rewrite):
    if not isinstance(rewrite, dict):
        return [f"{where}.rewrite must be a dict of regular expression to replacement."]
    problems = []
    for pattern, replacement in rewrite.items():
        if not isinstance(pattern, str) or not isinstance(replacement, str):
            problems.append(f"{where}.rewrite: {pattern!r} must map a string to a string.")
            continue
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"{where}.rewrite: {pattern!r} is not a regular expression ({exc}).")
    return problems


def _mirror_problems(where, mirror):
    if not isinstance(mirror, dict):
        return [f"{where} must be a dict with 'endpoint' (a list of URLs), got a {_kind(mirror)}."]
    problems = _unknown_keys(where, mirror, _MIRROR_KEYS)
    endpoints = mirror.get("endpoint")
    if not isinstance(endpoints, list) or not endpoints:
        problems.append(
            f"{where}.endpoint must be a non-empty list of http(s) URLs, e.g. ['https://mirror.example.com']."
        )
    else:
        problems += [
            f"{where}.endpoint entry {url!r} is not an http(s) URL with a host; "
            "write it with its scheme, e.g. https://mirror.example.com:5000."
            for url in endpoints
            if not _endpoint_ok(url)
        ]
    return problems + _rewrite_problems(where, mirror.get("rewrite", {}))


def _auth_problems(where, auth):
    if not isinstance(auth, dict):
        return [f"{where}.auth must be a dict (username/password, auth or identity_token)."]
    problems = _unknown_keys(f"{where}.auth", auth, _AUTH_KEYS)
    problems += [
        f"{where}.auth.{key} must be a non-empty string (value hidden)."
        for key in _AUTH_KEYS
        if key in auth and (not isinstance(auth[key], str) or not auth[key])
    ]
    if ("username" in auth) != ("password" in auth):
        problems.append(f"{where}.auth: set username and password together (value hidden).")
    return problems


def _tls_problems(where, tls):
    if not isinstance(tls, dict):
        return [f"{where}.tls must be a dict (ca_file, cert_file, key_file, insecure_skip_verify)."]
    problems = _unknown_keys(f"{where}.tls", tls, _TLS_KEYS)
    problems += [
        f"{where}.tls.{key} {tls[key]!r} is not an absolute path on the host."
        for key in ("ca_file", "cert_file", "key_file")
        if key in tls and not (isinstance(tls[key], str) and tls[key].startswith("/"))
    ]
    if ("cert_file" in tls) != ("key_file" in tls):
        problems.append(f"{where}.tls: set cert_file and key_file together (a client certificate needs its key).")
    if "insecure_skip_verify" in tls and not isinstance(tls["insecure_skip_verify"], bool):
        problems.append(
            f"{where}.tls.insecure_skip_verify is a {_kind(tls['insecure_skip_verify'])}; set true or false."
        )
    return problems


def _registry_config_problems(where, config):
    if not isinstance(config, dict):
        return [f"{where} must be a dict with 'auth' and/or 'tls', got a {_kind(config)}."]
    return (
        _unknown_keys(where, config, _CONFIG_KEYS)
        + _auth_problems(where, config.get("auth", {}))
        + _tls_problems(where, config.get("tls", {}))
    )


def registries_problems(registries, variable="k3s_registries"):
    """Every problem with a registries.yaml dict; secrets (auth values) are never shown."""
    if registries in (None, {}):
        return []
    if not isinstance(registries, dict):
        return [f"{variable} must be a dict with 'mirrors' and/or 'configs', got a {_kind(registries)}."]
    problems = _unknown_keys(variable, registries, _REGISTRY_TOP_KEYS)
    sections = {
        "mirrors": (
            "registry name to mirror",
            "is not a registry name; use a host[:port] such as docker.io, or '*'",
            _mirror_problems,
        ),
        "configs": (
            "registry host to auth/tls",
            "is not a registry host; use host[:port], e.g. registry.example.com:5000",
            _registry_config_problems,
        ),
    }
    for section, (what, bad_name, check) in sections.items():
        entries = registries.get(section, {})
        if not isinstance(entries, dict):
            problems.append(f"{variable}.{section} must be a dict of {what}, got a {_kind(entries)}.")
            continue
        for name in sorted(entries, key=str):
            where = f"{variable}.{section}[{name!r}]"
            if not isinstance(name, str) or not REGISTRY_HOST_RE.match(name) or (section == "configs" and name == "*"):
                problems.append(f"{where}: {name!r} {bad_name}.")
            else:
                problems += check(where, entries[name])
    return problems


INTERFACE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$")
# Ranges K3s uses itself unless cluster-cidr / service-cidr say otherwise.
_K3S_DEFAULT_CIDRS = {"cluster-cidr": "10.42.0.0/16", "service-cidr": "10.43.0.0/16"}
# config.yaml flags the stable address sets itself.
STABLE_ADDRESS_FLAGS = ("node-ip", "advertise-address", "flannel-iface", "node-external-ip")


def _address_problems(address, config):
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) and "/" not in address else None
    except ValueError:
        ip = None
    if ip is None or ip.version != 4:
        return [f"k3s_stable_address {address!r} is not an IPv4 address; use one such as 172.31.254.1."]
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return [
            f"k3s_stable_address {address} is a loopback, link-local, multicast or reserved address, which the "
            "kubelet refuses as a node IP; use a private address such as 172.31.254.1."
        ]
    cidrs = []
    for key, default in _K3S_DEFAULT_CIDRS.items():
        value = config.get(key, default)
        cidrs += [v.strip() for v in value.split(",")] if isinstance(value, str) else [default]
    problems = []
    for cidr in cidrs:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        if net.version == 4 and ip in net:
            problems.append(
                f"k3s_stable_address {address} lies in {cidr}, which K3s uses for pods or services; "
                "use an address outside it, such as 172.31.254.1."
            )
    return problems


def stable_address_problems(address, interface, kind, enabled, *, agents=(), config=None):
    """Problems with the stable node address settings (empty when fine or when it is off)."""
    if not isinstance(enabled, bool):
        return [f"k3s_stable_address_enabled is a {_kind(enabled)} ({enabled!r}); set true or false."]
    if not enabled:
        return []
    config = config or {}
    problems = []
    if agents:
        problems.append(
            f"k3s_stable_address_enabled is true but the inventory has K3s agents ({', '.join(sorted(agents))}); "
            "agents must reach the server on a routable address: set k3s_stable_address_enabled: false."
        )
    problems += _address_problems(address, config)
    if not isinstance(interface, str) or not INTERFACE_RE.match(interface) or interface in ("lo", "all", "default"):
        problems.append(
            f"k3s_stable_interface {interface!r} is not a name for a new interface (1-15 letters, digits, '_', '.', "
            "'-', not lo); keep the default odin0."
        )
    if kind not in ("dummy", "bridge"):
        problems.append(f"k3s_stable_interface_kind {kind!r} must be 'dummy' (default) or 'bridge'.")
    problems += [
        f"k3s_config['{key}'] is set while k3s_stable_address_enabled is true, which sets it; "
        "remove it from k3s_config or set k3s_stable_address_enabled: false."
        for key in STABLE_ADDRESS_FLAGS
        if key in config
    ]
    return problems
