#!/usr/bin/env bash
# Install the Debian packages the test suite runs for real: Docker for the molecule
# hosts, debootstrap for the test image, and the services and tools the integration
# tests start (Prometheus, promtool, Alertmanager, amtool, SQLite, zstd, age).
set -euo pipefail

packages=(docker.io debootstrap prometheus prometheus-alertmanager sqlite3 zstd age mokutil pciutils)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "host packages present: ${packages[*]}"
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
# The Debian packages start their services; the tests start their own instances.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
  $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
done
