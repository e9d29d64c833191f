#!/usr/bin/env bash
# Install the Debian packages the test suite runs for real: Docker for the molecule
# hosts, debootstrap for the test image, and the services and tools the integration
# tests start (Prometheus, promtool, Alertmanager, amtool, SQLite, zstd, age), and what
# the test control plane needs (openssl for its keys, gcc for kine's SQLite), and skopeo
# with a local docker-registry for the offline bundle's images, sshd for a play over SSH, and
# ShellCheck for ansible-test sanity.
# A tool that is already on PATH (e.g. Docker CE on a CI runner) is left alone.
set -euo pipefail

# command -> Debian package that provides it
declare -A provides=(
  [dockerd]=docker.io
  [debootstrap]=debootstrap
  [prometheus]=prometheus
  [promtool]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [amtool]=prometheus-alertmanager
  [sqlite3]=sqlite3
  [zstd]=zstd
  [age]=age
  [mokutil]=mokutil
  [lspci]=pciutils
  [openssl]=openssl
  [gcc]=gcc
  [skopeo]=skopeo
  [docker-registry]=docker-registry
  [sshd]=openssh-server
  [shellcheck]=shellcheck
)

missing=()
for cmd in "${!provides[@]}"; do
  if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1; then
    pkg=${provides[$cmd]}
    [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "host tools present: ${!provides[*]}"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages start their own services where an init system runs; the tests start
# their own instances on other ports and temp directories.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
done
