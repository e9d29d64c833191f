# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""Verified artifacts: sha256sum lists, and what a download must agree with before it is kept.

Plain Python with no Ansible imports, unit-tested on its own. The artifact_fetch module
runs it on the host; the artifact role's filters run it on the controller.
"""

from __future__ import annotations

import re

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def parse_checksum_list(text):
    """Parse sha256sum output ('<hash>  <name>' or '<hash> *<name>') into {name: hash}.

    Blank lines and '#' comments are ignored; any other line that is not a checksum
    entry raises ValueError, because a list that does not parse cannot be trusted.
    """
    entries = {}
    for number, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or not SHA256_RE.match(parts[0].lower()):
            raise ValueError(f"line {number} is not '<sha256>  <file name>': {raw!r}")
        name = parts[1].strip().lstrip("*")
        entries[name] = parts[0].lower()
    return entries


def checksum_for(text, name):
    """The sha256 recorded for `name` in a sha256sum list ('' when it is not listed)."""
    return parse_checksum_list(text).get(name, "")


def pin_problems(files):
    """Pins that are not a sha256: [{'name', 'reason', 'pinned', 'pinned_by'}]."""
    return [
        {"name": f["name"], "reason": "bad_pin", "pinned": f["sha256"], "pinned_by": f.get("pinned_by") or ""}
        for f in files
        if f.get("sha256") and not SHA256_RE.match(f["sha256"])
    ]


def list_problems(files, listed):
    """What a checksum list must agree with: every file listed, and listed as pinned.

    `files` are dicts with 'name', 'sha256' (the pin, '' for none) and 'pinned_by';
    `listed` is parse_checksum_list's result. Returns one dict per problem.
    """
    problems = []
    for entry in files:
        have = listed.get(entry["name"], "")
        if not have:
            problems.append({"name": entry["name"], "reason": "unlisted", "listed": "", "pinned": entry["sha256"]})
        elif entry["sha256"] and entry["sha256"] != have:
            problems.append(
                {
                    "name": entry["name"],
                    "reason": "pin_mismatch",
                    "listed": have,
                    "pinned": entry["sha256"],
                    "pinned_by": entry.get("pinned_by") or "",
                }
            )
    return problems


def describe(problem, source):
    """One sentence for a problem from pin_problems, list_problems or a refused download."""
    name, reason = problem["name"], problem["reason"]
    pinned_by = problem.get("pinned_by") or "the pin"
    if reason == "bad_pin":
        return f"{pinned_by} gives '{problem['pinned']}' for {name}, which is not a sha256 (64 hex digits)."
    if reason == "unlisted":
        return f"{source} has no entry for '{name}'."
    if reason == "pin_mismatch":
        return (
            f"{source} gives {problem['listed']} for {name}, but the pinned checksum is {problem['pinned']} "
            f"({pinned_by}): the source does not serve the official release."
        )
    if reason == "download_mismatch":
        return (
            f"{name} downloaded from {problem['url']} does not match sha256 {problem['listed']} "
            f"(it has {problem['got']})."
        )
    return f"{name}: {problem.get('detail', reason)}"
