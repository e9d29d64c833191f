"""Logic behind the k3s role: versions, checksum lists, config.yaml types, backup age."""

from pathlib import Path

import pytest

from ansible_collections.odin.stack.plugins.module_utils import _k3s

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
    assert _k3s.checksum_for((FIXTURES / fixture).read_text(), name) == expected


def test_garbled_checksum_list_is_refused():
    with pytest.raises(ValueError, match="line 2"):
        _k3s.parse_checksum_list((FIXTURES / "sha256sum-garbled.txt").read_text())


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
