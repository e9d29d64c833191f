# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Checks of inventory settings that Jinja expresses badly: paths, URLs, addresses,
Kubernetes names, Prometheus durations and Alertmanager matchers.

Plain Python with no Ansible imports, so it can be unit-tested on its own; the
odin.stack settings filters and tests are thin wrappers around these functions.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

# Prometheus' duration syntax: units from the largest to the smallest, each at most once.
DURATION_RE = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
_DURATION_SECONDS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)

# RFC 1123 names as Kubernetes checks them (a label: namespaces; a subdomain: most objects).
K8S_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
K8S_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

# An Alertmanager matcher: a label name, an operator and a value, e.g. severity="critical".
# Unquoted names and values may not hold whitespace or any of {}!=~,\"'` (Alertmanager's
# reserved characters); quoted ones may, with \" and \\ escaped.
_AM_QUOTED = r'"(?:[^"\\]|\\.)*"'
_AM_UNQUOTED = r"[^\s{}!=~,\\\"'`]+"
MATCHER_RE = re.compile(
    rf"\s*(?:{_AM_QUOTED}|[A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*(?:{_AM_QUOTED}|{_AM_UNQUOTED})\s*"
)


def path_problems(paths, optional=()):
    """One message per setting in `paths` ({name: value}) that is not an absolute path.

    Names in `optional` may also be empty (the feature they configure is then off).
    """
    problems = []
    for name, value in paths.items():
        if name in optional and value in ("", None):
            continue
        if not isinstance(value, str) or not value.startswith("/"):
            empty = " (or leave it empty)" if name in optional else ""
            problems.append(
                f"{name}='{value}' is not an absolute path; set it to a path on the host that starts with /{empty}."
            )
    return problems


def is_http_url(value):
    """True for an http:// or https:// URL with a host (and a valid port, if any)."""
    if not isinstance(value, str) or not value or any(char.isspace() for char in value):
        return False
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0


def is_listen_address(value):
    """True for an IPv4 or IPv6 address, or localhost: what a port-forward can bind to."""
    if not isinstance(value, str):
        return False
    if value == "localhost":
        return True
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_k8s_label(value):
    """True for an RFC 1123 label (namespace names): lower case, digits and '-', at most 63."""
    return isinstance(value, str) and len(value) <= 63 and K8S_LABEL_RE.fullmatch(value) is not None


def is_k8s_subdomain(value):
    """True for an RFC 1123 subdomain (storage class and most object names), at most 253."""
    return isinstance(value, str) and len(value) <= 253 and K8S_SUBDOMAIN_RE.fullmatch(value) is not None


def duration_seconds(value):
    """Seconds in a Prometheus duration such as 15d or 1w2d; None when it is not one."""
    if not isinstance(value, str) or not value:
        return None
    match = DURATION_RE.fullmatch(value)
    if not match:
        return None
    return sum(int(part) * factor for part, factor in zip(match.groups(), _DURATION_SECONDS, strict=True) if part)


def is_alertmanager_matcher(value):
    """True for one Alertmanager matcher such as severity="critical" or alertname=~"Gpu.*"."""
    return isinstance(value, str) and MATCHER_RE.fullmatch(value) is not None


# Kubernetes quantities as the roles accept them (the suffixes resource requests and volume
# sizes use): decimal k, M, G, T, P, E, binary Ki ... Ei, and m for thousandths.
QUANTITY_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")
_QUANTITY_FACTOR = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
# Prometheus's --storage.tsdb.retention.size: B with a base-2 prefix, KB and KiB alike.
BYTE_SIZE_RE = re.compile(r"([0-9]*\.?[0-9]+)(?:([KMGTPE])i?)?B")
_BYTE_PREFIX = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50, "E": 2**60}


def quantity(value):
    """A Kubernetes quantity ("100m", "1", "512Mi", "10Gi") as a float (cores or bytes); None when it is not one."""
    match = QUANTITY_RE.fullmatch(str(value).strip()) if isinstance(value, (str, int, float)) else None
    if not match or isinstance(value, bool):
        return None
    return float(match.group(1)) * _QUANTITY_FACTOR[match.group(2) or ""]


def byte_size(value):
    """Bytes in a Prometheus byte size ("8GiB", "512MB", "0"); None when it is not one."""
    if not isinstance(value, str):
        return None
    if value == "0":
        return 0
    match = BYTE_SIZE_RE.fullmatch(value)
    if not match:
        return None
    return int(float(match.group(1)) * _BYTE_PREFIX[match.group(2) or ""])
