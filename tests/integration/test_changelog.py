"""Release notes: changelogs/fragments/ and the generated CHANGELOG.md (antsibull-changelog).

Every commit since the last release that changes what a user runs (plugins/, roles/,
playbooks/, site.yml, meta/) carries a fragment in the same commit; fragments and
changelog.yaml lint; CHANGELOG.md is what antsibull-changelog generates from changelog.yaml.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

TOOL = str(Path(sys.executable).parent / "antsibull-changelog")
SHIPPED = ("plugins/", "roles/", "playbooks/", "site.yml", "meta/")
GIT = shutil.which("git")


def tool(*args, cwd=REPO):
    return subprocess.run([TOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def git(*args):
    return subprocess.run([GIT, *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=True).stdout


def copy_release_files(dest):
    for name in ("galaxy.yml", "CHANGELOG.md"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "changelogs", dest / "changelogs")
    return dest


def test_fragments_and_changelog_yaml_lint():
    res = tool("lint")
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr
    res = tool("lint-changelog-yaml", "changelogs/changelog.yaml")
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr


def test_a_bad_fragment_is_caught(tmp_path):
    work = copy_release_files(tmp_path)
    (work / "changelogs/fragments/bad.yml").write_text("new_stuff:\n  - not a section antsibull knows\n")
    res = tool("lint", cwd=work)
    assert "bad.yml" in res.stdout and "new_stuff" in res.stdout, res.stdout + res.stderr


def test_changelog_md_is_generated_from_changelog_yaml(tmp_path):
    work = copy_release_files(tmp_path)
    res = tool("generate", cwd=work)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (work / "CHANGELOG.md").read_text() == (REPO / "CHANGELOG.md").read_text(), (
        "CHANGELOG.md is not current: run antsibull-changelog generate"
    )


def test_every_change_since_the_last_release_carries_a_fragment():
    if GIT is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the history cannot be read")
    if git("rev-parse", "--is-shallow-repository").strip() == "true":
        pytest.skip("a shallow clone has not the history since the last release")
    release = git("log", "-1", "--format=%H", "--", "changelogs/changelog.yaml").strip()
    assert release, "changelogs/changelog.yaml has no history"
    missing = []
    for commit in git("rev-list", "%s..HEAD" % release).split():
        changed = git("show", "--format=", "--name-only", commit).split()
        shipped = [path for path in changed if path.startswith(SHIPPED)]
        if shipped and not any(path.startswith("changelogs/fragments/") for path in changed):
            missing.append(
                "%s (%s)" % (git("log", "-1", "--format=%h %s", commit).strip()[:90], ", ".join(shipped[:3]))
            )
    assert not missing, "commits that change what users run without a changelog fragment:\n" + "\n".join(missing)
