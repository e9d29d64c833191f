"""Logic behind the k3s role: versions, checksum lists, config.yaml types, backup age."""

from pathlib import Path

import pytest

from ansible_collections.odin.stack.plugins.module_utils import _artifact
from ansible_collections.odin.stack.plugins.plugin_utils import _k3s

FIXTURES = Path(__file__).parent / "fixtures" / "k3s"


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("v1.34.2+k3s1", (1, 34, 2, 1)),
        ("v1.33.10+k3s2", (1, 33, 10, 2)),
        (" v1.34.2+k3s1\n", (1, 34, 2, 1)),
    ],
)
def test_parse_version(version, expected):
    assert _k3s.parse_version(version) == expected


@pytest.mark.parametrize("version", ["1.34.2+k3s1", "v1.34.2", "v1.34+k3s1", "v1.34.2-k3s1", "latest", "", None])
def test_parse_version_rejects(version):
    with pytest.raises(ValueError, match="K3s release version"):
        _k3s.parse_version(version)


def test_release_tag_is_exact():
    assert _k3s.is_release_tag("v1.34.2+k3s1")
    # parse_version reads a tag out of command output; a setting must be the tag itself.
    for version in ("v1.34.2+k3s1 ", " v1.34.2+k3s1", "v1.34.2+k3s1\n", "1.34.2+k3s1", None):
        assert not _k3s.is_release_tag(version), repr(version)


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("v1.34.2+k3s1", "v1.34.2+k3s1", 0),
        ("v1.33.9+k3s1", "v1.34.1+k3s1", -1),
        # Numeric, not lexical: 10 > 9.
        ("v1.34.10+k3s1", "v1.34.9+k3s1", 1),
        ("v1.34.2+k3s2", "v1.34.2+k3s1", 1),
    ],
)
def test_compare_versions(left, right, expected):
    assert _k3s.compare_versions(left, right) == expected


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [("k3s-version.txt", "v1.34.2+k3s1"), ("k3s-version-unexpected.txt", None)],
)
def test_version_from_output(fixture, expected):
    assert _k3s.version_from_output((FIXTURES / fixture).read_text()) == expected


def test_version_from_no_output():
    assert _k3s.version_from_output("") is None


@pytest.mark.parametrize(
    ("fixture", "name", "expected"),
    [
        ("sha256sum-amd64.txt", "k3s", "15811d34187e03fe29d0e46108c42cc33e62cec1b3d9d80f50944536ebcad40a"),
        (
            "sha256sum-amd64.txt",
            "k3s-airgap-images-amd64.tar.zst",
            "24359781bd775f513691e98031853d79eac53e265f7d72d1e7325df4f3b18eb0",
        ),
        ("sha256sum-amd64.txt", "k3s-arm64", ""),
        (
            "sha256sum-binary-mode.txt",
            "helm-v3.19.0-linux-amd64.tar.gz",
            "a7f81ce08007091b86d8bd696eb4d86b8d0f2e1b9f6c714be62f82f96a594496",
        ),
    ],
)
def test_checksum_for(fixture, name, expected):
    assert _artifact.checksum_for((FIXTURES / fixture).read_text(), name) == expected


def test_garbled_checksum_list_is_refused():
    with pytest.raises(ValueError, match="line 2"):
        _artifact.parse_checksum_list((FIXTURES / "sha256sum-garbled.txt").read_text())


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, []),
        (
            {
                "disable": ["traefik"],
                "write-kubeconfig-mode": "0600",
                "secrets-encryption": True,
                "node-label": ["nvidia.com/gpu.present=true"],
                "https-listen-port": 6443,
                "flannel-backend": "vxlan",
                # Unknown to the table: passed through when it is a plain value.
                "egress-selector-mode": "agent",
            },
            [],
        ),
        (
            {"secrets-encryption": "yes"},
            ["k3s_config['secrets-encryption'] is a string ('yes'); set it to true or false."],
        ),
        # YAML reads an unquoted 0600 as the integer 384.
        (
            {"write-kubeconfig-mode": 384},
            ["k3s_config['write-kubeconfig-mode'] is a number (384); set it to a quoted string."],
        ),
        (
            {"disable": "traefik"},
            ["k3s_config['disable'] is a string ('traefik'); set it to a list of strings, e.g. ['value']."],
        ),
        ({"https-listen-port": True}, ["k3s_config['https-listen-port'] is a bool (True); set it to a whole number."]),
        ({"--disable": ["traefik"]}, ["k3s_config: key '--disable' is not a K3s flag name"]),
        ({"some-flag": {"nested": 1}}, ["k3s_config['some-flag'] is a dict"]),
        (["disable"], ["k3s_config must be a dict of K3s flags (without leading --), got a list."]),
    ],
)
def test_config_problems(config, expected):
    problems = _k3s.config_problems(config)
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), problem


GOOD_REGISTRIES = {
    "mirrors": {
        "docker.io": {"endpoint": ["https://mirror.example.test:5000"], "rewrite": {"^library/(.*)": "hub/$1"}},
        "*": {"endpoint": ["http://10.0.0.5:5000"]},
    },
    "configs": {
        "mirror.example.test:5000": {
            "auth": {"username": "odin", "password": "pw-1"},
            "tls": {"ca_file": "/etc/ssl/mirror.pem", "cert_file": "/etc/ssl/c.pem", "key_file": "/etc/ssl/k.pem"},
        },
        "ghcr-mirror.example.test": {"auth": {"identity_token": "tok-1"}, "tls": {"insecure_skip_verify": True}},
    },
}


@pytest.mark.parametrize("value", [{}, None, GOOD_REGISTRIES])
def test_registries_accepts_what_k3s_reads(value):
    assert _k3s.registries_problems(value) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("docker.io", "must be a dict with 'mirrors' and/or 'configs', got a string"),
        ({"mirror": {}}, "key 'mirror' is not one K3s reads"),
        ({"mirrors": []}, "k3s_registries.mirrors must be a dict"),
        ({"configs": "x"}, "k3s_registries.configs must be a dict"),
        ({"mirrors": {"docker io": {"endpoint": ["https://m"]}}}, "'docker io' is not a registry name"),
        ({"mirrors": {"docker.io": ["https://m"]}}, "must be a dict with 'endpoint'"),
        ({"mirrors": {"docker.io": {"endpoints": ["https://m"]}}}, "key 'endpoints' is not one K3s reads"),
        ({"mirrors": {"docker.io": {"endpoint": []}}}, "endpoint must be a non-empty list"),
        ({"mirrors": {"docker.io": {"endpoint": "https://m"}}}, "endpoint must be a non-empty list"),
        ({"mirrors": {"docker.io": {"endpoint": ["m.example.test"]}}}, "entry 'm.example.test' is not an http(s) URL"),
        ({"mirrors": {"docker.io": {"endpoint": ["ftp://m"]}}}, "entry 'ftp://m' is not an http(s) URL"),
        ({"mirrors": {"docker.io": {"endpoint": [" https://m"]}}}, "entry ' https://m' is not an http(s) URL"),
        ({"mirrors": {"docker.io": {"endpoint": ["https://m"], "rewrite": {"(": "x"}}}}, "is not a regular expression"),
        ({"mirrors": {"docker.io": {"endpoint": ["https://m"], "rewrite": ["x"]}}}, "rewrite must be a dict"),
        ({"configs": {"reg/x": {}}}, "'reg/x' is not a registry host"),
        ({"configs": {"r.test": {"tls": {"ca_file": "ca.pem"}}}}, "tls.ca_file 'ca.pem' is not an absolute path"),
        ({"configs": {"r.test": {"tls": {"cert_file": "/c.pem"}}}}, "set cert_file and key_file together"),
        ({"configs": {"r.test": {"tls": {"insecure_skip_verify": "yes"}}}}, "insecure_skip_verify is a string"),
        ({"configs": {"r.test": {"tls": {"verify": True}}}}, "key 'verify' is not one K3s reads"),
        ({"configs": {"r.test": {"auth": {"user": "odin"}}}}, "key 'user' is not one K3s reads"),
        ({"configs": {"r.test": {"credentials": {}}}}, "key 'credentials' is not one K3s reads"),
        ({"configs": {"r.test": ["x"]}}, "must be a dict with 'auth' and/or 'tls'"),
    ],
)
def test_registries_refuses_each_mistake(value, expected):
    problems = _k3s.registries_problems(value)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    "auth",
    [{"password": "S3cret-pw"}, {"username": "odin"}, {"username": "odin", "password": ""}, {"auth": 12345}],
)
def test_registry_credentials_never_appear_in_a_problem(auth):
    problems = _k3s.registries_problems({"configs": {"r.test": {"auth": auth}}})
    assert problems
    for secret in ("S3cret-pw", "12345"):
        assert not any(secret in p for p in problems), problems


def test_stable_address_default_is_accepted_and_off_checks_nothing():
    assert _k3s.stable_address_problems("172.31.254.1", "odin0", "dummy", True) == []
    assert _k3s.stable_address_problems("172.31.254.1", "odin0", "bridge", True) == []
    assert _k3s.stable_address_problems("not-an-address", "lo", "tap", False) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("172.31.254", "odin0", "dummy", True), "is not an IPv4 address"),
        (("172.31.254.1/32", "odin0", "dummy", True), "is not an IPv4 address"),
        (("fd00::1", "odin0", "dummy", True), "is not an IPv4 address"),
        ((172, "odin0", "dummy", True), "is not an IPv4 address"),
        (("127.0.0.5", "odin0", "dummy", True), "loopback, link-local"),
        (("169.254.3.3", "odin0", "dummy", True), "loopback, link-local"),
        (("0.0.0.0", "odin0", "dummy", True), "loopback, link-local"),  # noqa: S104
        (("10.42.7.1", "odin0", "dummy", True), "lies in 10.42.0.0/16"),
        (("10.43.0.1", "odin0", "dummy", True), "lies in 10.43.0.0/16"),
        (("172.31.254.1", "lo", "dummy", True), "k3s_stable_interface 'lo'"),
        (("172.31.254.1", "a-name-over-15-chars", "dummy", True), "k3s_stable_interface 'a-name-over-15-chars'"),
        (("172.31.254.1", "", "dummy", True), "k3s_stable_interface ''"),
        (("172.31.254.1", "odin0", "tap", True), "k3s_stable_interface_kind 'tap'"),
        (("172.31.254.1", "odin0", "dummy", "yes"), "k3s_stable_address_enabled is a string"),
    ],
)
def test_stable_address_refuses_each_mistake(args, expected):
    problems = _k3s.stable_address_problems(*args)
    assert any(expected in p for p in problems), problems


def test_stable_address_follows_custom_cluster_ranges_and_flags():
    config = {"cluster-cidr": "172.31.0.0/16", "service-cidr": "10.96.0.0/12"}
    problems = _k3s.stable_address_problems("172.31.254.1", "odin0", "dummy", True, config=config)
    assert any("lies in 172.31.0.0/16" in p for p in problems), problems
    # 10.42/16 is no longer K3s's pod range with cluster-cidr set.
    assert _k3s.stable_address_problems("10.42.0.9", "odin0", "dummy", True, config=config) == []
    problems = _k3s.stable_address_problems(
        "172.31.254.1", "odin0", "dummy", True, agents=["agent1"], config={"flannel-iface": "wlan0"}
    )
    assert any("inventory has K3s agents (agent1)" in p for p in problems)
    assert any("k3s_config['flannel-iface'] is set" in p for p in problems)
