"""Every role variable the docs name exists: README.md, docs/**/*.md and each role's README.

A backticked name with a role prefix must be a variable of some role (defaults/main.yml,
vars/main.yml or meta/argument_specs.yml) or of a playbook (its play `vars:`), unless the
project defines it as something else: a tag, an inventory group, a choice of an argument
spec, a filter or test plugin, or a backup metric. Fenced blocks are checked for the
variables they set (`name:` keys), as inventory snippets do.
"""

import ast
import functools
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"

PREFIXES = (
    "odin_",
    "k3s_",
    "helm_",
    "gpu_k8s_",
    "monitoring_",
    "backup_",
    "verify_",
    "nvidia_driver_",
    "nvidia_container_toolkit_",
    "preflight_",
)

# Names the docs rightly show that no role declares, each with where it comes from. The
# file named must still mention the name, so the list cannot outlive what it excuses.
NOT_DECLARED = {
    "odin_gpu_present": ("fact set by the preflight role", "roles/preflight/tasks/facts.yml"),
    "odin_gpu_devices": ("fact set by the preflight role", "roles/preflight/tasks/facts.yml"),
    "odin_gpu_resolved": ("fact set by the preflight role", "roles/preflight/tasks/facts.yml"),
    "odin_secure_boot": ("fact set by the preflight role", "roles/preflight/tasks/facts.yml"),
    "k3s_version_before": ("field of the upgrade record playbooks/upgrade.yml writes", "playbooks/upgrade.yml"),
    "odin_bundle_pull_images": ("setting of playbooks/bundle.yml, given with -e", "playbooks/bundle.yml"),
    "odin_bundle_registries_conf": ("setting of playbooks/bundle.yml, given with -e", "playbooks/bundle.yml"),
    "odin_bundle_arch": ("setting of playbooks/bundle.yml, given with -e", "playbooks/bundle.yml"),
    "odin_bundle_k3s_mirror_url": ("setting of playbooks/bundle.yml, given with -e", "playbooks/bundle.yml"),
    "odin_bundle_helm_mirror_url": ("setting of playbooks/bundle.yml, given with -e", "playbooks/bundle.yml"),
}

_PREFIX = "|".join(PREFIXES)
# Not part of a longer name, path or FQCN (`odin.stack.k3s_version_*`, `k3s_config/config.yaml`,
# `__k3s_result`); a trailing `*` names a family of variables.
INLINE_NAME = re.compile(r"(?<![\w./-])((?:%s)\w*)(?![\w/.(-])(\*?)" % _PREFIX)
YAML_KEY = re.compile(r"^[ \t]*(?:-[ \t]+)?((?:%s)\w*):(?:[ \t]|$)" % _PREFIX, re.M)
FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")


class _AnyTagLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """Reads task files that carry `!unsafe` and other local tags."""


_AnyTagLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _load(path):
    return yaml.load(path.read_text(), Loader=_AnyTagLoader)  # noqa: S506 - a SafeLoader subclass


def _walk(node):
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _argument_specs():
    for role in sorted(ROLES.iterdir()):
        specs = role / "meta" / "argument_specs.yml"
        if specs.is_file():
            yield from (_load(specs) or {}).get("argument_specs", {}).values()


@functools.cache
def declared_variables():
    names = set()
    for role in sorted(ROLES.iterdir()):
        for name in ("defaults/main.yml", "vars/main.yml"):
            path = role / name
            if path.is_file():
                names |= set(_load(path) or {})
    for entry in _argument_specs():
        names |= set(entry.get("options") or {})
    for playbook in sorted((REPO / "playbooks").glob("*.yml")):
        for play in _load(playbook) or []:
            names |= set(play.get("vars") or {})
    return names


def _plugin_names():
    names = set()
    for path in sorted((REPO / "plugins").glob("*/*.py")):
        if path.parent.name not in ("filter", "test"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name in ("filters", "tests"):
                names |= {
                    key.value
                    for dict_node in ast.walk(node)
                    if isinstance(dict_node, ast.Dict)
                    for key in dict_node.keys
                    if isinstance(key, ast.Constant)
                }
    return names


@functools.cache
def other_names():
    """Names the project defines as something other than a variable."""
    names = set()
    task_files = [*ROLES.glob("*/tasks/*.yml"), *ROLES.glob("*/handlers/*.yml"), *(REPO / "playbooks").glob("*.yml")]
    for path in task_files:
        for node in _walk(_load(path)):
            if isinstance(node, dict) and isinstance(node.get("tags"), list | str):
                tags = node["tags"]
                names |= {tags} if isinstance(tags, str) else set(tags)
    for node in _walk(_load(REPO / "inventories" / "laptop" / "hosts.yml")):
        if isinstance(node, dict) and isinstance(node.get("children"), dict):
            names |= set(node["children"])
    for entry in _argument_specs():
        for node in _walk(entry.get("options") or {}):
            if isinstance(node, dict) and isinstance(node.get("choices"), list):
                names |= {str(choice) for choice in node["choices"]}
    names |= _plugin_names()
    metrics = ast.parse((REPO / "plugins" / "module_utils" / "_backup.py").read_text())
    for node in metrics.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "METRIC_HELP" for t in node.targets):
            names |= {key.value for key in node.value.keys}
    return names


def doc_files():
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *sorted(ROLES.glob("*/README.md"))]


def named_variables(text):
    """(name, is_family) for each variable-like name: inline code spans and fenced `name:` keys."""
    found = []
    for _, body in FENCE.findall(text):
        found += [(name, False) for name in YAML_KEY.findall(body)]
    for span in SPAN.findall(FENCE.sub("", text)):
        found += [(name, bool(star)) for name, star in INLINE_NAME.findall(span)]
    return found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("set `k3s_config` and `monitoring_grafana_*`", [("k3s_config", False), ("monitoring_grafana_", True)]),
        ("`odin.stack.k3s_version_compare`, `__k3s_out`, `k3s_config/config.yaml`", []),
        ("`-e backup_restore_mode=drill`", [("backup_restore_mode", False)]),
        (
            "```yaml\nk3s_config:\n  tls-san: [x]\nhelm_sha256: ''\n```\n",
            [("k3s_config", False), ("helm_sha256", False)],
        ),
        ("```sh\nsudo cat x.json   # k3s_version_before\n```\n", []),
        ("`KUBECONFIG=/etc/rancher/k3s/k3s.yaml`, `odin-backup.timer`", []),
    ],
)
def test_named_variables(text, expected):
    assert named_variables(text) == expected


def test_docs_name_only_variables_that_exist():
    declared = declared_variables()
    excused = other_names() | set(NOT_DECLARED)

    def exists(name, family):
        if family:
            return any(known.startswith(name) for known in declared)
        return name in declared or name in excused

    missing = [
        f"{doc.relative_to(REPO)}: `{name}{'*' if family else ''}`"
        for doc in doc_files()
        for name, family in named_variables(doc.read_text())
        if not exists(name, family)
    ]
    assert not missing, "the docs name variables no role or playbook declares:\n" + "\n".join(sorted(set(missing)))


@pytest.mark.parametrize("name", sorted(NOT_DECLARED))
def test_every_excused_name_is_still_real(name):
    reason, source = NOT_DECLARED[name]
    assert name not in declared_variables(), f"{name} is now declared; drop it from NOT_DECLARED ({reason})"
    assert re.search(r"\b%s\b" % name, (REPO / source).read_text()), f"{source} no longer has {name} ({reason})"


def test_the_check_sees_the_docs():
    names = {name for doc in doc_files() for name, _ in named_variables(doc.read_text())}
    assert {"k3s_config", "helm_sha256", "monitoring_chart_repositories", "backup_k3s_datastore"} <= names
