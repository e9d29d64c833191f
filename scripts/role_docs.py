#!/usr/bin/env python3
"""Write the "## Variables" section of every role's README.md from its meta/argument_specs.yml.

    scripts/role_docs.py          # rewrite the sections that are not current
    scripts/role_docs.py --check  # exit 1 and name the READMEs that are not current
    scripts/role_docs.py k3s helm # only these roles

The section runs from its "## Variables" heading to the next "## " heading; the rest of each
README is written by hand. Edit the argument specs, then run this.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
HEADING = "## Variables"
NOTE = "<!-- Generated from meta/argument_specs.yml by scripts/role_docs.py; edit the specs, then run it. -->"
# A default longer than this is shown as a pointer to the role's defaults file.
MAX_DEFAULT = 48

_MARKUP = [
    (re.compile(r"[CMOVE]\(([^()]*)\)"), r"`\1`"),
    (re.compile(r"I\(([^()]*)\)"), r"*\1*"),
    (re.compile(r"B\(([^()]*)\)"), r"**\1**"),
    (re.compile(r"U\(([^()]*)\)"), r"\1"),
    (re.compile(r"L\(([^(),]*),\s*([^()]*)\)"), r"[\1](\2)"),
    (re.compile(r"R\(([^(),]*),\s*([^()]*)\)"), r"\1"),
]


def markdown(text):
    """Ansible documentation markup (C(), O(), I(), ...) as Markdown, one line, pipes escaped."""
    if isinstance(text, list):
        text = " ".join(str(part).strip() for part in text)
    text = " ".join(str(text).split())
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    return text.replace("|", "\\|")


def default_cell(spec):
    if spec.get("required"):
        return "required"
    if "default" not in spec:
        return ""
    value = spec["default"]
    shown = value if isinstance(value, str) else json.dumps(value)
    if isinstance(value, str) and (value == "" or value != value.strip()):
        shown = json.dumps(value)
    if len(shown) > MAX_DEFAULT:
        return "see `defaults/main.yml`"
    return "`%s`" % shown.replace("|", "\\|")


def type_cell(spec):
    kind = spec.get("type", "str")
    if kind == "list" and spec.get("elements"):
        kind = "list of %s" % spec["elements"]
    return kind


def section(specs):
    options = specs["argument_specs"]["main"].get("options", {})
    lines = [HEADING, "", NOTE, "", "| variable | type | default | description |", "|---|---|---|---|"]
    for name, spec in options.items():
        description = markdown(spec.get("description", ""))
        if spec.get("choices"):
            description += " Choices: %s." % ", ".join("`%s`" % c for c in spec["choices"])
        lines.append("| `%s` | %s | %s | %s |" % (name, type_cell(spec), default_cell(spec), description))
    return "\n".join(lines) + "\n"


def render(readme_text, specs):
    """The README with its Variables section replaced (or added at the end)."""
    new = section(specs)
    start = readme_text.find("\n" + HEADING + "\n")
    if start < 0:
        return readme_text.rstrip("\n") + "\n\n" + new
    start += 1
    following = re.search(r"^## ", readme_text[start + len(HEADING) :], re.M)
    end = start + len(HEADING) + following.start() if following else len(readme_text)
    tail = readme_text[end:]
    return readme_text[:start] + new + ("\n" + tail if tail else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--check", action="store_true", help="only report READMEs that are not current")
    parser.add_argument("roles", nargs="*", help="roles to process (default: every role)")
    args = parser.parse_args(argv)
    stale = []
    roles = [REPO / "roles" / name for name in args.roles] or (REPO / "roles").iterdir()
    for role in sorted(path for path in roles if path.is_dir()):
        specs_file, readme = role / "meta" / "argument_specs.yml", role / "README.md"
        if not specs_file.is_file() or not readme.is_file():
            stale.append("%s: needs meta/argument_specs.yml and README.md" % role.name)
            continue
        current = readme.read_text()
        wanted = render(current, yaml.safe_load(specs_file.read_text()))
        if wanted != current:
            stale.append(str(readme.relative_to(REPO)))
            if not args.check:
                readme.write_text(wanted)
    if stale:
        print(("not current:\n  " if args.check else "rewritten:\n  ") + "\n  ".join(stale))
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
