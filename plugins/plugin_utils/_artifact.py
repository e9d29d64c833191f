# Copyright: ODIN maintainers
# Apache License 2.0 (see LICENSE)
"""The artifact role's logic: which files of a pinned release to fetch, from where, verified
by which checksum, and what to tell the user when a source refuses.

Plain Python with no Ansible imports; the odin.stack artifact filters wrap these functions.
"""

from __future__ import annotations

import re
import urllib.parse

from ansible_collections.odin.stack.plugins.module_utils._artifact import SHA256_RE, parse_checksum_list

SOURCES = ("upstream", "mirror", "bundle")
CATALOG_FILE = "roles/artifact/vars/main.yml"


def _fill(template, version, arch):
    return template.replace("{version}", version).replace("{arch}", arch)


def _base_url(entry, source, version, arch, *, mirror_url, bundle_dir, settings):
    quoted = urllib.parse.quote(version, safe="")
    hint = settings or entry["title"].lower()
    if source == "upstream":
        return _fill(entry["upstream_url"], quoted, arch)
    if source == "mirror":
        if not mirror_url:
            raise ValueError(f"{entry['title']}: the mirror source needs a mirror URL ({hint}_mirror_url)")
        path = _fill(entry.get("mirror_path", ""), quoted, arch)
        return mirror_url.rstrip("/") + ("/" + path if path else "")
    if not bundle_dir or not bundle_dir.startswith("/"):
        raise ValueError(
            f"{entry['title']}: the bundle source needs the absolute path of a bundle directory "
            f"({hint}_bundle_dir), not '{bundle_dir}'"
        )
    return "file://" + urllib.parse.quote(bundle_dir.rstrip("/"))


def _resolve_file(entry, wanted, version, arch, *, pins, overrides, settings):
    key = wanted["key"]
    if key not in entry["files"]:
        raise ValueError(f"{entry['title']} has no file '{key}' (known: {', '.join(sorted(entry['files']))})")
    if "dest" not in wanted and "dir" not in wanted:
        raise ValueError(f"{entry['title']} file '{key}': give its dest (a path) or dir (a directory)")
    named = entry["files"][key]
    named = _fill(named[arch] if isinstance(named, dict) else named, version, arch)
    override = (overrides.get(key) or "").strip().lower()
    if override:
        pin = override
        pinned_by = f"{settings}_sha256" if key == entry["primary"] else f"{settings}_{key}_sha256"
    else:
        pin, pinned_by = pins.get(key, ""), CATALOG_FILE
    return {
        "name": named,
        "dest": wanted["dest"] if "dest" in wanted else wanted["dir"].rstrip("/") + "/" + named,
        "mode": wanted.get("mode", "0644"),
        "sha256": pin,
        "pinned_by": pinned_by if pin else "",
    }


def plan(catalog, name, version, arch, *, source, files, mirror_url="", bundle_dir="", sha256=None, settings=""):
    """Resolve what artifact_fetch needs for `files` ([{key, dest or dir, mode}]) of release `version`.

    Returns {title, version, arch, source, settings, base_url, checksum_list, files}, where each
    file is {name, dest, mode, sha256, pinned_by}: the catalog's pin, or the override in
    `sha256` ({key: checksum}, empty for none) named '<settings>_sha256' or, for other keys,
    '<settings>_<key>_sha256'. Raises ValueError naming what is wrong.
    """
    if name not in catalog:
        raise ValueError(f"no artifact '{name}' in {CATALOG_FILE} (known: {', '.join(sorted(catalog))})")
    entry = catalog[name]
    if source not in SOURCES:
        raise ValueError(f"source '{source}' is not one of {', '.join(SOURCES)}")
    if arch not in entry["arches"]:
        raise ValueError(f"{entry['title']} is published for {', '.join(entry['arches'])}, not for '{arch}'")
    if not version:
        raise ValueError(f"{entry['title']}: no version given")
    base = _base_url(entry, source, version, arch, mirror_url=mirror_url, bundle_dir=bundle_dir, settings=settings)
    pins = (entry.get("sha256") or {}).get(version, {}).get(arch, {})
    return {
        "title": entry["title"],
        "version": version,
        "arch": arch,
        "source": source,
        "settings": settings,
        "base_url": base,
        "checksum_list": _fill(entry["checksum_list"], version, arch),
        "files": [
            _resolve_file(entry, wanted, version, arch, pins=pins, overrides=sha256 or {}, settings=settings)
            for wanted in files
        ],
    }


def catalog_problems(catalog):
    """Every pin in the catalog that is not a sha256 or names an unknown architecture or file."""
    problems = []
    for name, entry in catalog.items():
        for version, by_arch in (entry.get("sha256") or {}).items():
            for arch, pins in by_arch.items():
                if arch not in entry["arches"]:
                    problems.append(f"{name} {version}: architecture '{arch}' is not one of {entry['arches']}")
                for key, value in pins.items():
                    if key not in entry["files"] or (
                        isinstance(entry["files"][key], dict) and arch not in entry["files"][key]
                    ):
                        problems.append(f"{name} {version} {arch}: no file '{key}'")
                    if not SHA256_RE.match(str(value)):
                        problems.append(f"{name} {version} {arch} {key}: '{value}' is not a sha256")
    return problems


def failure_message(result, plan_):
    """What to tell the user when artifact_fetch failed: what, from where, and what to change."""
    what = f"{plan_['title']} {plan_['version']} ({plan_['arch']})"
    source, prefix = plan_["source"], plan_["settings"]
    reason = result.get("reason", "")
    detail = result.get("msg", "")
    if reason == "unreachable":
        if prefix:
            advice = (
                f"Check the host's network and proxy, or install without it: set {prefix}_source: mirror with a "
                f"reachable {prefix}_mirror_url, or {prefix}_source: bundle with {prefix}_bundle_dir pointing at a "
                "bundle from playbooks/bundle.yml (docs/upgrade-and-rollback.md)."
            )
        else:
            advice = "Check this machine's network and proxy."
        return f"{what}: the {source} source could not be reached ({detail}). Nothing was changed. {advice}"
    if reason == "refused":
        return (
            f"{what} from the {source} source was refused: {detail} Nothing was changed. Check the {source} source"
            f"{' and ' + prefix + '_version' if prefix else ''}; do not install an artifact that fails verification."
        )
    return f"{what} from the {source} source: {detail} Nothing was changed."


def listed_files(text, directory, prefix="", pattern="", mode="0644"):
    """artifact_fetch's files for every entry of a sha256sum list whose name matches `pattern`.

    Each is kept in `directory` as `prefix` + its name, with its listed checksum as its pin.
    A name with a slash or starting with a dot is refused (ValueError): a list must not place
    files outside the directory.
    """
    chosen = []
    for name, digest in sorted(parse_checksum_list(text).items()):
        if pattern and not re.search(pattern, name):
            continue
        if "/" in name or name.startswith("."):
            raise ValueError(f"the list names '{name}', which is not a plain file name")
        chosen.append(
            {
                "name": name,
                "dest": directory.rstrip("/") + "/" + prefix + name,
                "sha256": digest,
                "pinned_by": "the checksum list",
                "mode": mode,
            }
        )
    return chosen
