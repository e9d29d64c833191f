#!/usr/bin/env bash
# What `make setup` needs before it creates .venv: git, and a Python 3.11 or newer
# (ansible-core 2.19's minimum) whose venv module can install pip (ensurepip). Stops
# with one message naming every missing piece and the apt packages that provide them.
#   scripts/setup-check.sh [PYTHON]     (default: python3, as make setup uses)
set -uo pipefail

python=${1:-python3}
problems=()

if ! command -v git >/dev/null 2>&1; then
  problems+=("git is not installed")
fi

if ! command -v "$python" >/dev/null 2>&1; then
  problems+=("$python is not installed")
elif ! version=$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null); then
  problems+=("$python does not run")
elif ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  problems+=("$python is Python $version; ansible-core 2.19 needs Python 3.11 or newer")
elif ! "$python" -c 'import venv, ensurepip' 2>/dev/null || ! "$python" -m ensurepip --version >/dev/null 2>&1; then
  problems+=("$python (Python $version) has no working venv module with ensurepip, so it cannot create .venv")
fi

if [ ${#problems[@]} -eq 0 ]; then
  exit 0
fi

# Builtins only from here: the PATH may lack coreutils too.
{
  echo "make setup cannot start:"
  printf '  - %s\n' "${problems[@]}"
  printf '%s\n' \
    "Install what it needs, then run make setup again:" \
    "  Debian 12, Ubuntu 24.04:" \
    "    sudo apt-get install -y python3-venv git make" \
    "  Ubuntu 22.04 (its python3 is 3.10; python3.11 is in the universe component):" \
    "    sudo apt-get install -y python3.11 python3.11-venv git make" \
    "    make setup PYTHON=python3.11" \
    "  (or a Python 3.11+ from the deadsnakes PPA or pyenv, passed as PYTHON=...)"
} >&2
exit 1
