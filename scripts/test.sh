#!/usr/bin/env bash
# The project's test command (`make test` runs `scripts/test.sh all`).
# Runs every stage even when one fails, then prints a timing summary and exits
# non-zero if any stage failed.
#   scripts/test.sh all | lint | sanity | unit | integration | k8s | molecule [scenario...]
set -uo pipefail

cd "$(dirname "$0")/.." || exit
root=$(pwd)
export PATH="$root/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$root/ansible.cfg"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 ANSIBLE_NOCOLOR=1 NO_COLOR=1
export MOLECULE_IMAGE=${MOLECULE_IMAGE:-odin-test/debian12:latest}

names=() results=() seconds=()

stage() {
  local name=$1
  shift
  echo
  echo "=============================== stage: $name ==============================="
  local start=$SECONDS rc=0
  "$@" || rc=$?
  names+=("$name")
  seconds+=($((SECONDS - start)))
  if [ "$rc" -eq 0 ]; then results+=(passed); else results+=("FAILED (rc=$rc)"); fi
  return 0
}

summary() {
  local failed=0 passed=0 i
  echo
  echo "=============================== timing summary ==============================="
  for i in "${!names[@]}"; do
    printf '%-34s %6ss  %s\n' "${names[$i]}" "${seconds[$i]}" "${results[$i]}"
    if [ "${results[$i]}" = passed ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  done
  printf '%-34s %6ss\n' total "$SECONDS"
  echo "stages: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

molecule_scenarios() {
  local dir
  for dir in molecule/*/; do
    [ -f "$dir/molecule.yml" ] && basename "$dir"
  done
}

# Remove what a scenario left behind if it died before its destroy step. Only the
# containers of the scenarios this run started (odin-<scenario>, see .config/molecule).
cleanup_containers() {
  local s
  for s in "$@"; do
    docker rm -f "odin-$s" >/dev/null 2>&1 || true
  done
}

run_lint() {
  stage yamllint yamllint --strict .
  stage ansible-lint ansible-lint --offline
  stage syntax-check syntax_check
  stage ruff sh -c 'ruff check . && ruff format --check .'
  stage actionlint actionlint
  stage sanity scripts/sanity.sh
}

syntax_check() {
  local rc=0 playbook
  for playbook in site.yml playbooks/*.yml; do
    ansible-playbook -i inventories/laptop --syntax-check "$playbook" || rc=1
  done
  return $rc
}

run_pytest() {
  local dir=$1 rc=0
  pytest -q -rs "$dir" || rc=$?
  # pytest exits 5 when a directory holds no tests yet: not a failure of the code.
  [ "$rc" -eq 5 ] && { echo "no tests collected in $dir"; return 0; }
  return $rc
}

# The test control plane: built (or taken from the cache, keyed by version) in its own
# stage so that the timing summary shows the build apart from the run.
run_k8s_live() {
  stage controlplane-build scripts/controlplane-build.sh
  stage k8s-live k8s_live
}

# Its own temp root: pytest prunes old /tmp/pytest-of-<user>/ runs, which would pull the
# files from under another run's control plane on the same machine.
k8s_live() {
  local tmp rc=0
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/odin-k8s-live-XXXXXX")
  pytest -q -s -rs -p no:cacheprovider --basetemp "$tmp" tests/k8s || rc=$?
  rm -rf "$tmp"
  return $rc
}

# The test image is needed by integration (a fresh host from git clone) and by molecule.
run_services_prep() {
  stage host-packages scripts/host-deps.sh
  stage docker-engine scripts/start-docker.sh
  stage test-image scripts/build-test-image.sh
}

run_molecule() {
  local scenarios=("$@") s
  [ ${#scenarios[@]} -gt 0 ] || mapfile -t scenarios < <(molecule_scenarios)
  # shellcheck disable=SC2064 # expand the list now
  trap "cleanup_containers ${scenarios[*]}" EXIT
  for s in "${scenarios[@]}"; do
    stage "molecule:$s" molecule test -s "$s"
  done
  cleanup_containers "${scenarios[@]}"
}

target=${1:-all}
shift || true
case "$target" in
  all)
    run_services_prep
    run_lint
    stage unit run_pytest tests/unit
    stage integration run_pytest tests/integration
    run_k8s_live
    run_molecule
    ;;
  lint) run_lint ;;
  sanity) stage sanity scripts/sanity.sh ;;
  k8s)
    stage host-packages scripts/host-deps.sh
    run_k8s_live
    ;;
  unit) stage unit run_pytest tests/unit ;;
  integration)
    run_services_prep
    stage integration run_pytest tests/integration
    ;;
  molecule)
    run_services_prep
    run_molecule "$@"
    ;;
  *)
    echo "usage: $0 all|lint|unit|integration|k8s|molecule [scenario...]" >&2
    exit 2
    ;;
esac
summary
