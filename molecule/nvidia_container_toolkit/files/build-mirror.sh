#!/usr/bin/env bash
# Builds a local mirror of NVIDIA's container toolkit repository for the test: the four
# toolkit packages at two versions (real .deb files built with dpkg-deb, with stand-in
# programs), a flat repository index signed with a throw-away key, and a second key that
# stands for a key swapped on a compromised mirror. Serves it on 127.0.0.1 only.
set -euo pipefail

root=/srv/odin-local-mirror
repo=$root/stable/deb/amd64
build=$(mktemp -d)
export GNUPGHOME=$build/gnupg
mkdir -m 0700 "$GNUPGHOME"
mkdir -p "$repo"

apt-get update -qq
apt-get install -y -qq --no-install-recommends apt-utils gnupg >/dev/null

package() { # name version depends files...
  local name=$1 version=$2 depends=$3 dir=$build/$1_$2
  shift 3
  mkdir -p "$dir/DEBIAN"
  {
    echo "Package: $name"
    echo "Version: $version"
    echo "Architecture: amd64"
    echo "Maintainer: ODIN test mirror <odin@example.invalid>"
    [ -z "$depends" ] || echo "Depends: $depends"
    echo "Description: stand-in for $name (ODIN local mirror test package)"
  } >"$dir/DEBIAN/control"
  while [ $# -gt 0 ]; do
    mkdir -p "$dir/$(dirname "$1")"
    printf '%s' "$2" >"$dir/$1"
    chmod "$3" "$dir/$1"
    shift 3
  done
  dpkg-deb --root-owner-group --build "$dir" "$repo/${name}_${version}_amd64.deb" >/dev/null
}

for version in 1.17.8-1 1.18.0-1; do
  upstream=${version%-*}
  package libnvidia-container1 "$version" "" \
    usr/lib/x86_64-linux-gnu/libnvidia-container.so.1 "stand-in $upstream" 0644
  package libnvidia-container-tools "$version" "libnvidia-container1 (= $version)" \
    usr/bin/nvidia-container-cli "#!/bin/sh
echo 'cli-version: $upstream'
" 0755
  base_files=(usr/bin/nvidia-ctk "#!/bin/sh
# stand-in: 'cdi generate --output=FILE' writes an empty CDI specification
for a in \"\$@\"; do case \$a in --output=*) mkdir -p \"\$(dirname \"\${a#--output=}\")\"; echo 'cdiVersion: 0.5.0' >\"\${a#--output=}\";; esac; done
echo 'NVIDIA Container Toolkit CLI version $upstream'
" 0755)
  if [ "$version" = 1.18.0-1 ]; then
    # 1.18 is the first release that ships the CDI refresh units.
    base_files+=(usr/lib/systemd/system/nvidia-cdi-refresh.service "[Unit]
Description=Refresh the NVIDIA CDI specification
[Service]
Type=oneshot
ExecStart=/usr/bin/nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml
[Install]
WantedBy=multi-user.target
" 0644 usr/lib/systemd/system/nvidia-cdi-refresh.path "[Unit]
Description=Watch for NVIDIA driver changes
[Path]
PathChanged=/usr/bin/nvidia-smi
[Install]
WantedBy=multi-user.target
" 0644)
  fi
  package nvidia-container-toolkit-base "$version" "" "${base_files[@]}"
  package nvidia-container-toolkit "$version" \
    "nvidia-container-toolkit-base (= $version), libnvidia-container-tools (= $version)" \
    usr/bin/nvidia-container-runtime "#!/bin/sh
echo 'runc stand-in $upstream'
" 0755
done

gpg --batch --passphrase '' --quick-gen-key "ODIN local mirror test key <mirror@example.invalid>" ed25519 sign never 2>/dev/null
gpg --batch --passphrase '' --quick-gen-key "Swapped key <swapped@example.invalid>" ed25519 sign never 2>/dev/null
fingerprint() { gpg --with-colons --list-keys "$1" | awk -F: '$1 == "fpr" { print $10; exit }'; }
fingerprint mirror@example.invalid >"$root/fingerprint"
gpg --armor --export mirror@example.invalid >"$root/gpgkey"
gpg --armor --export swapped@example.invalid >"$root/swapped-gpgkey"

cd "$repo"
apt-ftparchive packages . >Packages
apt-ftparchive release . >Release
gpg --batch --yes --local-user mirror@example.invalid --clearsign -o InRelease Release
gpg --batch --yes --local-user mirror@example.invalid -abs -o Release.gpg Release
rm -rf "$build"

cat >/etc/systemd/system/odin-local-mirror.service <<UNIT
[Unit]
Description=ODIN local mirror for the container toolkit test
[Service]
ExecStart=/usr/bin/python3 -m http.server 8089 --bind 127.0.0.1 --directory $root
UNIT
# A stand-in K3s server unit: the role must restart it when the toolkit changes.
cat >/etc/systemd/system/k3s.service <<UNIT
[Unit]
Description=stand-in for the K3s server (ODIN test)
[Service]
ExecStart=/bin/sleep infinity
UNIT
systemctl daemon-reload
systemctl start odin-local-mirror.service k3s.service
systemctl show --property=InvocationID --value k3s.service >"$root/k3s-invocation-prepare"
for _ in $(seq 50); do
  python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:8089/gpgkey")' 2>/dev/null && exit 0
  sleep 0.2
done
echo "the local mirror did not start" >&2
exit 1
