#!/usr/bin/env bash
# Builds the binaries of the e2e test cluster (hack/cluster.sh) from Go
# modules and prints the folder holding them: kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet and kubectl, linked with
# their version strings (without them the components report
# v0.0.0-master+$Format:%H$ and `kubectl version` cannot parse the node's
# version), plus etcd taken from hack/envtest-assets.sh.
#
# Cached: bin/k8s/<k8s-version>/cluster/ while the pinned versions match, with
# a machine-wide copy in ~/.cache/kafkasend/k8s/<k8s>-etcd-<etcd>/cluster/
# beside the envtest binaries. Cold Go build cache: about 25 minutes on 2
# cores (the kubelet alone about 13); with the Go build cache warm from
# hack/envtest-assets.sh, about a minute per binary (mostly linking).
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=${CLUSTER_BIN_DIR:-$ROOT/bin/k8s/$K8S_VERSION/cluster}
SHARED=${KAFKASEND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kafkasend}/k8s/$K8S_VERSION-etcd-$ETCD_VERSION/cluster

log() { echo "cluster-bins: $*" >&2; }

KUBE=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
BINS=("${KUBE[@]}" etcd)
# A binary counts only when it reports the pinned version.
good() {
  local f=$1/$2
  [[ -x $f ]] || return 1
  case $2 in
  etcd) return 0 ;;
  kubectl) [[ $("$f" version --client 2>/dev/null) == *"$K8S_VERSION"* ]] ;;
  *) [[ $("$f" --version 2>/dev/null) == *"$K8S_VERSION"* ]] ;;
  esac
}

mkdir -p "$DEST"
missing=()
for b in "${BINS[@]}"; do
  good "$DEST" "$b" && continue
  if good "$SHARED" "$b"; then
    cp "$SHARED/$b" "$DEST/$b.tmp" && mv "$DEST/$b.tmp" "$DEST/$b"
    continue
  fi
  missing+=("$b")
done
((${#missing[@]})) || { echo "$DEST"; exit 0; }
log "building ${missing[*]}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local}

kube=()
for b in "${missing[@]}"; do [[ $b == etcd ]] || kube+=("$b"); done
if ((${#kube[@]})); then
  mkdir -p "$work/kube/tools"
  cd "$work/kube"
  # k8s.io/kubernetes replaces its staging modules with local paths: map each
  # to its published v0.X.Y version.
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module local/kubetools"; echo; echo "go 1.26.0"; echo
    echo "require k8s.io/kubernetes $K8S_VERSION"; echo; echo "replace ("
    grep '=> ./staging' "$gomod" | awk -v v="v0.${K8S_VERSION#v1.}" '{print "\t"$1" => "$1" "v}'
    echo ")"
  } >go.mod
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for b in "${kube[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$b"; done
    printf ')\n'
  } >tools/tools.go
  go mod tidy >&2
  minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  for b in "${kube[@]}"; do
    t0=$(date +%s)
    CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$DEST/$b.tmp" "k8s.io/kubernetes/cmd/$b"
    mv "$DEST/$b.tmp" "$DEST/$b"
    log "$b built in $(($(date +%s) - t0))s"
  done
  cd "$ROOT"
fi
if [[ " ${missing[*]} " == *" etcd "* ]]; then
  envtest=$(K8S_VERSION=$K8S_VERSION ETCD_VERSION=$ETCD_VERSION "$ROOT/hack/envtest-assets.sh")
  cp "$envtest/etcd" "$DEST/etcd.tmp" && mv "$DEST/etcd.tmp" "$DEST/etcd"
fi
for b in "${BINS[@]}"; do good "$DEST" "$b" || { log "$DEST/$b does not report $K8S_VERSION"; exit 1; }; done
mkdir -p "$SHARED" && for b in "${missing[@]}"; do cp "$DEST/$b" "$SHARED/$b.tmp.$$" && mv "$SHARED/$b.tmp.$$" "$SHARED/$b"; done || true
echo "$DEST"
