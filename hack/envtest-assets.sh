#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and etcd for envtest from Go
# modules (release binaries cannot be downloaded on the build machines) and
# prints the folder holding them. The controller manager runs only the garbage
# collector, Deployment and ReplicaSet controllers in tests, so that owner
# references, rollouts and Pod Security admission are exercised for real.
# Cached: bin/k8s/<k8s-version>/ is reused while the pinned versions match.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=${ENVTEST_ASSETS_DIR:-$ROOT/bin/k8s/$K8S_VERSION}
# A machine-wide cache lets a fresh clone on the same machine skip the build.
SHARED=${KAFKASEND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kafkasend}/k8s/$K8S_VERSION-etcd-$ETCD_VERSION

log() { echo "envtest-assets: $*" >&2; }

BINS=(kube-apiserver kube-controller-manager etcd)
have_all() { for b in "${BINS[@]}"; do [[ -x $1/$b ]] || return 1; done; }

if have_all "$DEST"; then
  echo "$DEST"; exit 0
fi
mkdir -p "$DEST"
if have_all "$SHARED"; then
  for b in "${BINS[@]}"; do cp "$SHARED/$b" "$DEST/"; done
  log "copied from $SHARED"
  echo "$DEST"; exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local}

start=$(date +%s)
log "building kube-apiserver and kube-controller-manager $K8S_VERSION (several minutes on a cold cache)"
mkdir -p "$work/kube/tools"
[[ -x $DEST/kube-apiserver && -x $DEST/kube-controller-manager ]] || (
  cd "$work/kube"
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module local/kubetools"; echo; echo "go 1.26.0"; echo
    echo "require k8s.io/kubernetes $K8S_VERSION"; echo; echo "replace ("
    grep '=> ./staging' "$gomod" | awk -v v="v0.${K8S_VERSION#v1.}" '{print "\t"$1" => "$1" "v}'
    echo ")"
  } > go.mod
  printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kube-controller-manager"\n)\n' > tools/tools.go
  go mod tidy >&2
  for b in kube-apiserver kube-controller-manager; do
    [[ -x $DEST/$b ]] && continue
    CGO_ENABLED=0 go build -trimpath -o "$DEST/$b.tmp" "k8s.io/kubernetes/cmd/$b"
    mv "$DEST/$b.tmp" "$DEST/$b"
  done
)
log "kube-apiserver and kube-controller-manager ready after $(( $(date +%s) - start ))s"

start=$(date +%s)
log "building etcd $ETCD_VERSION"
mkdir -p "$work/etcd"
[[ -x $DEST/etcd ]] || (
  cd "$work/etcd"
  printf 'module local/etcdtools\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
  go mod tidy >&2
  CGO_ENABLED=0 go build -trimpath -o "$DEST/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$DEST/etcd.tmp" "$DEST/etcd"
)
log "etcd built in $(( $(date +%s) - start ))s"

mkdir -p "$SHARED" && for b in "${BINS[@]}"; do cp "$DEST/$b" "$SHARED/"; done || true
echo "$DEST"
