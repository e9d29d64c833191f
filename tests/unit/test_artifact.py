"""The artifact role's logic: the catalog of pins, plans, refusals and their messages."""

from pathlib import Path

import pytest
import yaml

from ansible_collections.odin.stack.plugins.module_utils import _artifact as fetch_logic
from ansible_collections.odin.stack.plugins.plugin_utils import _artifact

REPO = Path(__file__).resolve().parents[2]
CATALOG = yaml.safe_load((REPO / "roles/artifact/vars/main.yml").read_text())["_artifact_catalog"]
K3S = "v1.36.3+k3s1"


def test_the_shipped_catalog_is_well_formed():
    assert _artifact.catalog_problems(CATALOG) == []


def test_the_catalog_pins_the_default_releases():
    k3s_default = yaml.safe_load((REPO / "roles/k3s/defaults/main.yml").read_text())["k3s_version"]
    helm_default = yaml.safe_load((REPO / "roles/helm/defaults/main.yml").read_text())["helm_version"]
    assert set(CATALOG["k3s"]["sha256"][k3s_default]["amd64"]) == {"binary", "images"}
    assert CATALOG["helm"]["sha256"][helm_default]["amd64"]["archive"]


@pytest.mark.parametrize(
    ("source", "arch", "kwargs", "base", "names"),
    [
        (
            "upstream",
            "amd64",
            {},
            "https://github.com/k3s-io/k3s/releases/download/v1.36.3%2Bk3s1",
            ["k3s", "k3s-airgap-images-amd64.tar.zst"],
        ),
        (
            "upstream",
            "arm64",
            {},
            "https://github.com/k3s-io/k3s/releases/download/v1.36.3%2Bk3s1",
            ["k3s-arm64", "k3s-airgap-images-arm64.tar.zst"],
        ),
        (
            "mirror",
            "amd64",
            {"mirror_url": "http://m.example/k3s//"},
            "http://m.example/k3s/v1.36.3%2Bk3s1",
            ["k3s", "k3s-airgap-images-amd64.tar.zst"],
        ),
        (
            "bundle",
            "amd64",
            {"bundle_dir": "/srv/odin bundle/k3s/"},
            "file:///srv/odin%20bundle/k3s",
            ["k3s", "k3s-airgap-images-amd64.tar.zst"],
        ),
    ],
)
def test_plan_sources_and_architectures(source, arch, kwargs, base, names):
    wanted = [{"key": "binary", "dest": "/usr/local/bin/k3s", "mode": "0755"}, {"key": "images", "dir": "/img/"}]
    plan = _artifact.plan(CATALOG, "k3s", K3S, arch, source=source, files=wanted, settings="k3s", **kwargs)
    assert plan["base_url"] == base
    assert plan["checksum_list"] == "sha256sum-%s.txt" % arch
    assert [f["name"] for f in plan["files"]] == names
    assert plan["files"][0]["dest"] == "/usr/local/bin/k3s" and plan["files"][0]["mode"] == "0755"
    assert plan["files"][1]["dest"] == "/img/" + names[1] and plan["files"][1]["mode"] == "0644"
    assert plan["files"][0]["sha256"] == CATALOG["k3s"]["sha256"][K3S][arch]["binary"]
    assert plan["files"][0]["pinned_by"] == "roles/artifact/vars/main.yml"


def test_plan_overrides_and_unpinned_versions():
    wanted = [{"key": "binary", "dest": "/b"}, {"key": "images", "dest": "/i"}]
    plan = _artifact.plan(
        CATALOG,
        "k3s",
        "v1.99.0+k3s1",
        "amd64",
        source="upstream",
        files=wanted,
        sha256={"binary": "AB" * 32, "images": ""},
        settings="k3s",
    )
    assert plan["files"][0]["sha256"] == "ab" * 32 and plan["files"][0]["pinned_by"] == "k3s_sha256"
    assert plan["files"][1]["sha256"] == "" and plan["files"][1]["pinned_by"] == ""
    plan = _artifact.plan(
        CATALOG, "k3s", K3S, "amd64", source="upstream", files=wanted, sha256={"images": "cd" * 32}, settings="k3s"
    )
    assert plan["files"][1]["pinned_by"] == "k3s_images_sha256"
    helm = _artifact.plan(
        CATALOG,
        "helm",
        "v3.21.4",
        "arm64",
        source="mirror",
        files=[{"key": "archive", "dir": "/c"}],
        mirror_url="https://h.example/helm",
        settings="helm",
    )
    assert helm["base_url"] == "https://h.example/helm"
    assert helm["checksum_list"] == "helm-v3.21.4-linux-arm64.tar.gz.sha256sum"
    assert helm["files"][0]["dest"] == "/c/helm-v3.21.4-linux-arm64.tar.gz"


@pytest.mark.parametrize(
    ("args", "kwargs", "expect"),
    [
        (("nope", K3S, "amd64"), {}, "no artifact 'nope'"),
        (("k3s", K3S, "s390x"), {}, "not for 's390x'"),
        (("k3s", K3S, "amd64"), {"source": "ftp"}, "source 'ftp' is not one of"),
        (("k3s", "", "amd64"), {}, "no version given"),
        (("k3s", K3S, "amd64"), {"source": "mirror", "settings": "k3s"}, "k3s_mirror_url"),
        (
            ("k3s", K3S, "amd64"),
            {"source": "bundle", "bundle_dir": "relative/dir", "settings": "k3s"},
            "k3s_bundle_dir",
        ),
    ],
)
def test_plan_refuses_bad_input(args, kwargs, expect):
    with pytest.raises(ValueError, match=expect):
        _artifact.plan(CATALOG, *args, files=[{"key": "binary", "dest": "/b"}], **{"source": "upstream", **kwargs})


def test_plan_refuses_unknown_files_and_missing_destinations():
    with pytest.raises(ValueError, match="has no file 'manpage'"):
        _artifact.plan(CATALOG, "k3s", K3S, "amd64", source="upstream", files=[{"key": "manpage", "dest": "/m"}])
    with pytest.raises(ValueError, match="give its dest"):
        _artifact.plan(CATALOG, "k3s", K3S, "amd64", source="upstream", files=[{"key": "binary"}])


def test_catalog_problems_are_found():
    broken = {"k3s": {**CATALOG["k3s"], "sha256": {K3S: {"riscv64": {"binary": "x"}, "amd64": {"docs": "a" * 64}}}}}
    problems = _artifact.catalog_problems(broken)
    assert any("'riscv64'" in p for p in problems)
    assert any("'x' is not a sha256" in p for p in problems)
    assert any("no file 'docs'" in p for p in problems)


def test_list_problems_and_messages():
    files = [
        {"name": "k3s", "sha256": "a" * 64, "pinned_by": "k3s_sha256"},
        {"name": "images", "sha256": ""},
        {"name": "extra", "sha256": ""},
    ]
    problems = fetch_logic.list_problems(files, {"k3s": "b" * 64, "images": "c" * 64})
    assert [(p["name"], p["reason"]) for p in problems] == [("k3s", "pin_mismatch"), ("extra", "unlisted")]
    text = fetch_logic.describe(problems[0], "http://m/list.txt")
    assert "gives %s for k3s, but the pinned checksum is %s (k3s_sha256)" % ("b" * 64, "a" * 64) in text
    assert fetch_logic.describe(problems[1], "http://m/list.txt") == "http://m/list.txt has no entry for 'extra'."
    assert fetch_logic.pin_problems([{"name": "k3s", "sha256": "zz"}])[0]["reason"] == "bad_pin"


@pytest.mark.parametrize(
    ("reason", "settings", "expect"),
    [
        (
            "unreachable",
            "k3s",
            [
                "the mirror source could not be reached (boom)",
                "Nothing was changed",
                "k3s_source: bundle with k3s_bundle_dir",
            ],
        ),
        ("unreachable", "", ["could not be reached (boom)", "Check this machine's network"]),
        (
            "refused",
            "helm",
            [
                "was refused: boom",
                "Nothing was changed",
                "helm_version",
                "do not install an artifact that fails verification",
            ],
        ),
        ("write", "k3s", ["K3s v1.36.3+k3s1 (amd64) from the mirror source: boom Nothing was changed."]),
    ],
)
def test_failure_messages(reason, settings, expect):
    plan = {"title": "K3s", "version": K3S, "arch": "amd64", "source": "mirror", "settings": settings}
    message = _artifact.failure_message({"reason": reason, "msg": "boom"}, plan)
    for text in expect:
        assert text in message, message


def test_listed_files_from_a_bundle_list():
    text = "%s  b.tar\n%s  a.tar\n%s  notes.txt\n" % ("1" * 64, "2" * 64, "3" * 64)
    chosen = _artifact.listed_files(text, "/img/", prefix="odin-bundle-", pattern="[.]tar$")
    assert [(f["name"], f["dest"], f["sha256"]) for f in chosen] == [
        ("a.tar", "/img/odin-bundle-a.tar", "2" * 64),
        ("b.tar", "/img/odin-bundle-b.tar", "1" * 64),
    ]
    with pytest.raises(ValueError, match="not a plain file name"):
        _artifact.listed_files("%s  ../etc.tar\n" % ("1" * 64), "/img")
    with pytest.raises(ValueError, match="line 1"):
        _artifact.listed_files("garbage\n", "/img")
