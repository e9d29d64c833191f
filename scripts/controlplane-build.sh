#!/usr/bin/env bash
# Builds the test control plane into a cache directory keyed by what goes into it,
# and prints that directory's bin/ path on the last line of stdout. A warm cache is
# reused without touching the network.
#
#   scripts/controlplane-build.sh            # build or reuse, print the bin dir
#   ODIN_CACHE_DIR=/path scripts/...         # cache root (default ~/.cache/odin)
#
# What it builds, each from the Go module proxy:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
#       k8s.io/kubernetes at the Kubernetes version of the pinned K3s release,
#       through tests/controlplane/kubernetes (a wrapper module)
#   kine   github.com/k3s-io/kine, K3s's SQLite datastore shim (cgo)
#   kwok   sigs.k8s.io/kwok, nodes and pod lifecycle without a kubelet
#   helm   helm.sh/helm/v3 at the helm role's pinned version
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)

# The Kubernetes version follows roles/k3s/defaults/main.yml (v1.36.3+k3s1 -> v1.36.3);
# tests/integration/test_controlplane.py fails when the wrapper's go.mod disagrees.
k3s_version=$(sed -n 's/^k3s_version: *"\{0,1\}\(v[0-9][^"+ ]*\).*/\1/p' roles/k3s/defaults/main.yml)
helm_version=$(sed -n 's/^helm_version: *"\{0,1\}\(v[0-9][^" ]*\).*/\1/p' roles/helm/defaults/main.yml)
kube_version=$(sed -n 's/^require k8s.io\/kubernetes \(v[^ ]*\)$/\1/p' tests/controlplane/kubernetes/go.mod)
KINE_VERSION=${KINE_VERSION:-v0.17.5}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}

if [ -z "$k3s_version" ] || [ "$k3s_version" != "$kube_version" ]; then
  echo "controlplane-build: tests/controlplane/kubernetes/go.mod requires k8s.io/kubernetes" \
    "'$kube_version' but the pinned K3s is '$k3s_version'; bump the wrapper module" >&2
  exit 1
fi

go_version=$(go env GOVERSION)
inputs=$(cat tests/controlplane/kubernetes/go.mod tests/controlplane/kubernetes/go.sum \
  tests/controlplane/kubernetes/tools.go "$0" | sha256sum | cut -c1-12)
key="k8s-${kube_version}_kine-${KINE_VERSION}_kwok-${KWOK_VERSION}_helm-${helm_version}_${go_version}_${inputs}"
cache_root=${ODIN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/odin}
dest="$cache_root/controlplane/$key"

if [ -f "$dest/.complete" ]; then
  echo "controlplane-build: reusing $dest" >&2
  echo "$dest/bin"
  exit 0
fi

mkdir -p "$cache_root/controlplane"
work=$(mktemp -d "$cache_root/controlplane/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
export CGO_ENABLED=1 GOFLAGS=-buildvcs=false

major=${kube_version#v}; major=${major%%.*}
minor=${kube_version#v*.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

timed() {
  local what=$1 start=$SECONDS
  shift
  "$@"
  echo "controlplane-build: $what built in $((SECONDS - start))s" >&2
}

GOBIN="$work/bin" timed kine go install -trimpath -ldflags "-s -w" "github.com/k3s-io/kine@$KINE_VERSION"
GOBIN="$work/bin" timed kwok go install -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" \
  "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
GOBIN="$work/bin" timed helm go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version" \
  "helm.sh/helm/v3/cmd/helm@$helm_version"

(cd tests/controlplane/kubernetes && timed kubernetes go build -trimpath -ldflags "$ldflags" \
  -o "$work/bin/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
touch "$work/.complete"
rm -rf "$dest"
mv "$work" "$dest"
trap - EXIT
echo "controlplane-build: built $dest" >&2
echo "$dest/bin"
