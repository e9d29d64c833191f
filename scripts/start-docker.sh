#!/usr/bin/env bash
# Make sure a Docker engine answers; start dockerd in the background when none runs
# (CI machines have no init system managing it).
set -euo pipefail

if docker info >/dev/null 2>&1; then
  echo "docker engine already running"
  exit 0
fi
log=${DOCKERD_LOG:-/var/log/odin-dockerd.log}
echo "starting dockerd (log: $log)"
nohup dockerd >"$log" 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "docker engine ready"
    exit 0
  fi
  sleep 1
done
echo "dockerd did not answer within 60 s; last lines of $log:" >&2
tail -n 20 "$log" >&2
exit 1
