"""Every module, filter and test plugin of the collection has documentation ansible-doc shows."""

import importlib
import json
import pkgutil

import pytest
from conftest import REPO


def registered(kind):
    """Names that the plugins/<kind>/*.py modules register (FilterModule or TestModule)."""
    names = []
    package = "ansible_collections.odin.stack.plugins.%s" % kind
    for info in pkgutil.iter_modules([str(REPO / "plugins" / kind)]):
        module = importlib.import_module("%s.%s" % (package, info.name))
        holder = getattr(module, "FilterModule" if kind == "filter" else "TestModule")()
        names += sorted((holder.filters() if kind == "filter" else holder.tests()).keys())
    return names


@pytest.mark.parametrize("kind", ["filter", "test"])
def test_every_plugin_has_documentation(ansible, kind):
    names = registered(kind)
    if not names:
        pytest.skip("the collection registers no %s plugins" % kind)
    result = ansible(["ansible-doc", "-t", kind, "--json", *("odin.stack.%s" % name for name in names)])
    assert result.returncode == 0, result.stderr
    docs = json.loads(result.stdout)
    for name in names:
        entry = docs.get("odin.stack.%s" % name)
        assert entry and entry.get("doc"), "%s %s has no documentation" % (kind, name)
        assert entry["doc"].get("short_description"), name
        assert entry["doc"].get("options", {}).get("_input"), "%s %s does not document its input" % (kind, name)
        assert entry.get("return", {}).get("_value"), "%s %s does not document what it returns" % (kind, name)
        assert entry.get("examples"), name


def test_every_module_has_documentation_examples_and_returns(ansible):
    names = sorted(path.stem for path in (REPO / "plugins" / "modules").glob("*.py") if path.stem != "__init__")
    result = ansible(["ansible-doc", "-t", "module", "--json", *("odin.stack.%s" % name for name in names)])
    assert result.returncode == 0, result.stderr
    assert "ERROR" not in result.stderr, result.stderr
    docs = json.loads(result.stdout)
    for name in names:
        entry = docs.get("odin.stack.%s" % name)
        assert entry and entry.get("doc"), "module %s has no documentation ansible-doc can read" % name
        assert entry["doc"].get("short_description"), name
        assert entry.get("examples"), "module %s has no examples" % name
        assert entry.get("return"), "module %s documents no return values" % name
