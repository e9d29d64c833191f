"""scripts/setup-check.sh: `make setup` stops up front, naming the apt packages, when the host lacks them."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "setup-check.sh"
APT_LINE = "sudo apt-get install -y python3-venv git make"
JAMMY_LINE = "sudo apt-get install -y python3.11 python3.11-venv git make"


def _executable(path, text):
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def host(tmp_path):
    """A PATH of its own (python3 and git only) and a PYTHONPATH to change what that python3 has."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    site = tmp_path / "site"
    site.mkdir()
    _executable(bin_dir / "python3", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    _executable(bin_dir / "git", "#!/bin/sh\nexit 0\n")

    def run(*args):
        return subprocess.run(
            ["/bin/bash", str(SCRIPT), *args],
            env={"PATH": str(bin_dir), "PYTHONPATH": str(site), "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run, bin_dir, site


def test_complete_host_passes_silently(host):
    run, _, _ = host
    result = run()
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""


def test_missing_git_is_named_with_the_apt_packages(host):
    run, bin_dir, _ = host
    (bin_dir / "git").unlink()
    result = run()
    assert result.returncode == 1
    assert "make setup cannot start:\n  - git is not installed\n" in result.stderr
    assert APT_LINE in result.stderr
    assert JAMMY_LINE in result.stderr
    assert "venv" not in result.stderr.split("Install")[0]


def test_python_without_ensurepip_is_named(host):
    run, _, site = host
    (site / "ensurepip.py").write_text("raise ModuleNotFoundError(\"No module named 'ensurepip'\")\n")
    result = run()
    assert result.returncode == 1
    assert "python3 (Python 3." in result.stderr
    assert "no working venv module with ensurepip" in result.stderr
    assert "git is not installed" not in result.stderr
    assert APT_LINE in result.stderr


def test_python_310_points_to_python311(host):
    run, _, site = host
    (site / "sitecustomize.py").write_text("import sys\nsys.version_info = (3, 10, 12, 'final', 0)\n")
    result = run()
    assert result.returncode == 1
    assert "python3 is Python 3.10.12; ansible-core 2.19 needs Python 3.11 or newer" in result.stderr
    assert JAMMY_LINE in result.stderr
    assert "make setup PYTHON=python3.11" in result.stderr


def test_every_problem_in_one_message(host):
    run, bin_dir, _ = host
    (bin_dir / "git").unlink()
    result = run("python3.11")
    assert result.returncode == 1
    assert "  - git is not installed\n  - python3.11 is not installed\n" in result.stderr
    assert result.stderr.count("make setup cannot start") == 1


def test_make_setup_runs_the_check_before_the_venv():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("$(VENV)/.installed:", 1)[1]
    assert recipe.index("scripts/setup-check.sh $(PYTHON)") < recipe.index("$(PYTHON) -m venv")
