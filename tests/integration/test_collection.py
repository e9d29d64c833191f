"""The checkout works as the odin.stack collection, both in place and as a built artifact."""

import json
import re
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))


def test_modules_resolve_by_fqcn_from_checkout(ansible):
    result = ansible(["ansible-doc", "odin.stack.host_probe"])
    assert result.returncode == 0, result.stderr
    assert "pci_devices_path" in result.stdout


@pytest.mark.parametrize("module", MODULES)
def test_every_module_has_its_manual(ansible, module):
    result = ansible(["ansible-doc", "--json", f"odin.stack.{module}"])
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)[f"odin.stack.{module}"]
    assert doc["doc"]["short_description"]
    assert doc["doc"].get("options"), f"{module} documents no options"
    assert doc["examples"].strip(), f"{module} has no EXAMPLES"
    assert doc["return"], f"{module} has no RETURN"


def test_roles_resolve_by_fqcn_from_checkout(ansible):
    result = ansible(["ansible-doc", "-t", "role", "odin.stack.preflight"])
    assert result.returncode == 0, result.stderr
    assert "odin_gpu_enabled" in result.stdout


def _plays(output):
    return [line.strip() for line in output.splitlines() if line.strip().startswith("play #")]


def test_site_runs_from_checkout_and_by_fqcn(ansible):
    collections = str(REPO / "collections")
    from_checkout = ansible(["ansible-playbook", "site.yml", "-i", "inventories/laptop", "--list-tasks"])
    assert from_checkout.returncode == 0, from_checkout.stderr
    by_fqcn = ansible(
        ["ansible-playbook", "odin.stack.site", "-i", "inventories/laptop", "--list-tasks"],
        ANSIBLE_COLLECTIONS_PATH=collections,
    )
    assert by_fqcn.returncode == 0, by_fqcn.stderr
    assert "ansible_collections/odin/stack/playbooks/site.yml" in by_fqcn.stdout
    plays = _plays(from_checkout.stdout)
    assert plays == _plays(by_fqcn.stdout)
    assert plays[0].endswith("Preflight\tTAGS: []")
    assert plays[-1].endswith("Hosts waiting for a reboot\tTAGS: []")
    # Both list every task of every layer, in the same order.
    assert from_checkout.stdout.split("\n", 2)[2] == by_fqcn.stdout.split("\n", 2)[2]


def test_site_lists_the_layers_once():
    top = yaml.safe_load((REPO / "site.yml").read_text())
    assert [play.get("ansible.builtin.import_playbook") for play in top] == ["playbooks/site.yml"]
    layers = [
        play["ansible.builtin.import_playbook"]
        for play in yaml.safe_load((REPO / "playbooks/site.yml").read_text())
        if "ansible.builtin.import_playbook" in play
    ]
    assert layers[0] == "preflight.yml"
    assert all((REPO / "playbooks" / layer).is_file() for layer in layers)


def test_build_leaves_tests_and_ci_out(ansible, tmp_path):
    result = ansible(["ansible-galaxy", "collection", "build", "--output-path", str(tmp_path), str(REPO)])
    assert result.returncode == 0, result.stderr
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    artifact = tmp_path / f"odin-stack-{version}.tar.gz"
    with tarfile.open(artifact) as tar:
        names = tar.getnames()
    assert "roles/preflight/tasks/main.yml" in names
    assert "plugins/modules/host_probe.py" in names
    assert "meta/runtime.yml" in names
    # galaxy.yml and every file header name the Apache License 2.0; the artifact carries it.
    assert "LICENSE" in names
    assert "Apache License" in (REPO / "LICENSE").read_text().splitlines()[1]
    for excluded in (
        "tests/unit",
        "tests/integration",
        "tests/k8s",
        "tests/charts",
        "tests/controlplane",
        "molecule",
        ".ci",
        ".github",
        "collections",
        ".venv",
        "scripts",
        "benchmarks",
    ):
        assert not any(n == excluded or n.startswith(excluded + "/") for n in names), excluded
    # Only ansible-test's ignore file ships from tests/.
    assert [n for n in names if n.startswith("tests/")] == ["tests/sanity", "tests/sanity/ignore-2.19.txt"]


def test_every_role_has_argument_specs_matching_defaults():
    for role in sorted((REPO / "roles").iterdir()):
        specs_file = role / "meta" / "argument_specs.yml"
        assert specs_file.is_file(), f"{role.name} has no meta/argument_specs.yml"
        options = yaml.safe_load(specs_file.read_text())["argument_specs"]["main"].get("options", {})
        defaults_file = role / "defaults" / "main.yml"
        defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else {}
        defaults = defaults or {}
        missing = sorted(set(defaults) - set(options))
        assert not missing, f"{role.name}: defaults without argument spec: {missing}"
        for name, spec in options.items():
            assert spec.get("description"), f"{role.name}: {name} has no description"
            assert spec.get("type"), f"{role.name}: {name} has no type"
            if name in defaults and "default" in spec:
                assert spec["default"] == defaults[name], f"{role.name}: {name} default differs from defaults/main.yml"


def test_every_role_option_is_documented_in_the_role_readme():
    for role in sorted((REPO / "roles").iterdir()):
        readme = role / "README.md"
        assert readme.is_file(), f"{role.name} has no README.md"
        text = readme.read_text()
        specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        undocumented = sorted(
            f"{entry}:{name}"
            for entry, spec in specs.items()
            for name in (spec.get("options") or {})
            if f"`{name}`" not in text
        )
        assert not undocumented, f"{role.name}/README.md does not mention: {undocumented}"


def test_runtime_claims_the_ansible_core_that_is_tested():
    """meta/runtime.yml's minimum is the ansible-core series `make setup` pins and CI tests."""
    claim = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())["requires_ansible"]
    pinned = next(
        line.split("==", 1)[1]
        for line in (REPO / "requirements" / "constraints.txt").read_text().splitlines()
        if line.startswith("ansible-core==")
    )
    assert claim == ">=%s.0" % ".".join(pinned.split(".")[:2]), (claim, pinned)


def test_workflow_actions_are_pinned_by_commit():
    """A tag can be moved to other code; a commit cannot. The comment names the release it is."""
    uses = []
    for workflow in sorted((REPO / ".github/workflows").glob("*.yml")):
        for number, line in enumerate(workflow.read_text().splitlines(), start=1):
            if line.strip().startswith(("uses:", "- uses:")):
                uses.append((f"{workflow.name}:{number}", line.split("uses:", 1)[1].strip()))
    assert uses, "no workflow uses an action"
    loose = [
        (where, ref)
        for where, ref in uses
        if not re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", ref) and not ref.startswith("./")
    ]
    assert not loose, f"actions not pinned to a commit with its version: {loose}"
