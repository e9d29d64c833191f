#!/usr/bin/env bash
# ansible-test sanity on the collection as users install it: the artifact
# `ansible-galaxy collection build` makes from this checkout, installed into
# <tmp>/ansible_collections/odin/stack beside the collections it uses (from the ansible package).
#   scripts/sanity.sh [ansible-test sanity options, e.g. --test validate-modules]
#
# ansible-test gives each sanity test a virtual environment of its own and bootstraps pip
# into it with a script it downloads from ci-files.testing.ansible.com. Where that host
# cannot be reached, this puts in the script's cache place (the path ansible-test names for
# a manual download) a bootstrap that installs the same pip release from PyPI; the
# packages each test needs come from PyPI with ansible-test's own constraints.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
python=${PYTHON_VERSION:-$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')}
ansible_test=$root/.venv/bin/ansible-test

work=$(mktemp -d "${TMPDIR:-/tmp}/odin-sanity.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$root/.venv/bin/ansible-galaxy" collection build --output-path "$work/build" "$root" >/dev/null
dest=$work/ansible_collections/odin/stack
mkdir -p "$dest"
tar -xzf "$work"/build/odin-stack-*.tar.gz -C "$dest"
galaxy=$("$root/.venv/bin/python" -c 'import ansible_collections; print(list(ansible_collections.__path__)[0])')
for dep in kubernetes/core community/general; do
  mkdir -p "$work/ansible_collections/${dep%/*}"
  ln -s "$galaxy/$dep" "$work/ansible_collections/$dep"
done

# The pip release ansible-test bootstraps (its get_venv_packages), and the bootstrap's cache place.
pip_version=$("$root/.venv/bin/python" -c '
import inspect, re
from ansible_test._internal import python_requirements
print(re.search(r"pip=.([0-9.]+).", inspect.getsource(python_requirements.get_venv_packages)).group(1))')
bootstrap=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [ ! -s "$bootstrap" ] && ! curl -fsS --max-time 20 -o "$bootstrap.download" \
  "https://ci-files.testing.ansible.com/ansible-test/get-pip-$pip_version.py" 2>/dev/null; then
  wheels=$HOME/.ansible/test/cache/pip-$pip_version
  mkdir -p "$wheels"
  "$root/.venv/bin/pip" download --quiet --no-deps --dest "$wheels" "pip==$pip_version"
  wheel=$(ls "$wheels"/pip-"$pip_version"-*.whl)
  cat > "$bootstrap.download" <<PY
# Installs pip $pip_version into the running Python from its wheel (PyPI), taking the
# arguments ansible-test gives get-pip.py.
import sys
sys.path.insert(0, "$wheel")
from pip._internal.cli.main import main
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--find-links", "$wheels"] + args))
PY
fi
[ -s "$bootstrap" ] || mv "$bootstrap.download" "$bootstrap"
rm -f "$bootstrap.download"

cd "$dest"
# ansible-test reads the collection's files from git when it is a repository.
git init --quiet && git add --all && git -c user.name=sanity -c user.email=sanity@localhost commit --quiet -m sanity
"$ansible_test" sanity --requirements --python "$python" --local --color no "$@"
