"""scripts/role_docs.py: each role README's Variables section is generated from its argument specs."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("role_docs", REPO / "scripts" / "role_docs.py")
role_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(role_docs)

SPECS = {
    "argument_specs": {
        "main": {
            "options": {
                "demo_mode": {"type": "str", "choices": ["a", "b"], "default": "a", "description": "How C(demo) runs."},
                "demo_items": {
                    "type": "list",
                    "elements": "str",
                    "default": [],
                    "description": ["Items;", "O(demo_mode) a|b."],
                },
                "demo_name": {"type": "str", "required": True, "description": "I(Required) name."},
                "demo_big": {"type": "dict", "default": {"key": "x" * 60}, "description": "Large."},
                "demo_empty": {"type": "str", "default": "", "description": "Empty."},
            }
        }
    }
}


def test_every_role_readme_is_current():
    assert role_docs.main(["--check"]) == 0, "run scripts/role_docs.py"


def test_section_renders_types_defaults_choices_and_markup():
    text = role_docs.section(SPECS)
    assert "| `demo_mode` | str | `a` | How `demo` runs. Choices: `a`, `b`. |" in text
    assert "| `demo_items` | list of str | `[]` | Items; `demo_mode` a\\|b. |" in text
    assert "| `demo_name` | str | required | *Required* name. |" in text
    assert "| `demo_big` | dict | see `defaults/main.yml` | Large. |" in text
    assert '| `demo_empty` | str | `""` | Empty. |' in text


@pytest.mark.parametrize(
    ("readme", "kept"),
    [
        ("# r\n\nintro\n\n## Variables\n\nold table\n\n## Tags\n\ntags\n", ["# r\n\nintro\n\n", "\n## Tags\n\ntags\n"]),
        ("# r\n\n## Variables\n\nold\n", ["# r\n\n"]),
        ("# r\n\nno section\n", ["# r\n\nno section\n"]),
    ],
)
def test_render_replaces_only_the_variables_section(readme, kept):
    out = role_docs.render(readme, SPECS)
    assert "old" not in out and "| `demo_mode` |" in out
    for part in kept:
        assert part in out
    assert role_docs.render(out, SPECS) == out
