"""Checks of inventory settings: paths, URLs, listen addresses, names, durations, matchers."""

import pytest

from ansible_collections.odin.stack.plugins.module_utils import _settings


def test_path_problems_name_each_relative_setting():
    problems = _settings.path_problems(
        {"odin_state_dir": "/var/lib/odin", "odin_backup_dir": "backups", "k3s_bundle_dir": "", "odin_kubeconfig": ""},
        optional=["k3s_bundle_dir"],
    )
    assert problems == [
        "odin_backup_dir='backups' is not an absolute path; set it to a path on the host that starts with /.",
        "odin_kubeconfig='' is not an absolute path; set it to a path on the host that starts with /.",
    ]


def test_path_problems_optional_setting_must_still_be_absolute():
    (problem,) = _settings.path_problems({"k3s_bundle_dir": "bundle"}, optional=["k3s_bundle_dir"])
    assert problem.startswith("k3s_bundle_dir='bundle' is not an absolute path")
    assert problem.endswith("(or leave it empty).")


@pytest.mark.parametrize(
    "url",
    [
        "http://deb.debian.org/debian",
        "https://nvidia.github.io/x/$(ARCH)",
        "http://127.0.0.1:9090",
        "http://[::1]:3000/",
    ],
)
def test_http_url(url):
    assert _settings.is_http_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "deb.debian.org/debian",
        "ftp://deb.debian.org/debian",
        "file:///srv/repo",
        "http://",
        "https:///path",
        "http://host:99999",
        "http://host:0",
        "http://[::1",
        "https://example.com/a b",
        "https://example.com ",
        "",
        None,
        8080,
    ],
)
def test_not_http_url(url):
    assert not _settings.is_http_url(url)


ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (a setting under test; nothing binds here)


@pytest.mark.parametrize("address", ["127.0.0.1", ALL_INTERFACES, "192.168.1.50", "::1", "::", "fe80::1", "localhost"])
def test_listen_address(address):
    assert _settings.is_listen_address(address)


@pytest.mark.parametrize(
    "address", ["192.168.1.300", "127.0.0.1:3000", "laptop.lan", "", " 127.0.0.1", "[::1]", 2130706433, None]
)
def test_not_listen_address(address):
    assert not _settings.is_listen_address(address)


@pytest.mark.parametrize(
    ("name", "label", "subdomain"),
    [
        ("nvidia-device-plugin", True, True),
        ("local-path-retain", True, True),
        ("kube-system", True, True),
        ("a", True, True),
        ("rook-ceph.block", False, True),
        ("Local_Path", False, False),
        ("local path", False, False),
        ("-local", False, False),
        ("local-", False, False),
        ("", False, False),
        ("a" * 63, True, True),
        ("a" * 64, False, True),
        (".".join(["a" * 63] * 4), False, False),
        (None, False, False),
    ],
)
def test_k8s_names(name, label, subdomain):
    assert _settings.is_k8s_label(name) is label
    assert _settings.is_k8s_subdomain(name) is subdomain


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [
        ("15d", 15 * 86400),
        ("1w2d", 9 * 86400),
        ("90m", 5400),
        ("5ms", 0.005),
        ("1h30m", 5400),
        ("100y", 100 * 365 * 86400),
        ("0s", 0),
    ],
)
def test_duration_seconds(duration, seconds):
    assert _settings.duration_seconds(duration) == pytest.approx(seconds)


@pytest.mark.parametrize("duration", ["", "30", "-15d", "15 days", "2d1w", "15D", "1.5h", None, 15])
def test_duration_seconds_refuses(duration):
    assert _settings.duration_seconds(duration) is None


@pytest.mark.parametrize(
    "matcher",
    [
        'severity="critical"',
        "severity=critical",
        'alertname = "Watchdog"',
        'alertname=~"Gpu.*|Node.*"',
        'severity!="info"',
        "namespace!~kube-.*",
        'msg="with \\"quotes\\" and spaces"',
        'empty=""',
    ],
)
def test_alertmanager_matcher(matcher):
    assert _settings.is_alertmanager_matcher(matcher)


@pytest.mark.parametrize(
    "matcher",
    ["severity critical", 'severity="critical', "=critical", "severity=", "severity==critical", "a=b,c=d", "", None],
)
def test_not_alertmanager_matcher(matcher):
    assert not _settings.is_alertmanager_matcher(matcher)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1.0),
        ("100m", 0.1),
        ("1.5", 1.5),
        ("512Mi", 512 * 2**20),
        ("10Gi", 10 * 2**30),
        ("10G", 10e9),
        ("2k", 2000.0),
        ("1Ei", 2.0**60),
        (3, 3.0),
        (" 20Gi ", 20 * 2**30),
    ],
)
def test_quantity(value, expected):
    assert _settings.quantity(value) == expected


@pytest.mark.parametrize("value", ["", "Gi", "10gi", "10 Gi", "-1", "10GB", "1e3", "ten", None, True, [], "0x10"])
def test_not_a_quantity(value):
    assert _settings.quantity(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("8GiB", 8 * 2**30),
        ("8GB", 8 * 2**30),
        ("512MB", 512 * 2**20),
        ("1.5KB", 1536),
        ("100B", 100),
        (".5TB", 2**39),
    ],
)
def test_byte_size(value, expected):
    assert _settings.byte_size(value) == expected


@pytest.mark.parametrize("value", ["", "8G", "8Gi", "8 GB", "GB", "-1GB", "8gb", "1XB", None, 8])
def test_not_a_byte_size(value):
    assert _settings.byte_size(value) is None
