#!/usr/bin/env bash
# Builds the operator and portal images without a container engine or a
# registry: static binaries in one-layer FROM-scratch OCI archives, for
# `ctr -n k8s.io images import` (hack/cluster.sh). Prints the archives.
#
#   hack/images.sh [OUT]     default OUT: bin/images
#
#   OUT/operator.tar  localhost/kafkasend/operator:$IMAGE_TAG
#   OUT/portal.tar    localhost/kafkasend/portal:$IMAGE_TAG
#   OUT/pause.tar     localhost/pause:3.10 (the pod sandbox, hack/cluster/pause)
#
# The images follow the Dockerfile, read here at build time so that the two
# cannot drift: the `go build` flags and binaries of its build stage, and for
# the `operator` and `portal` stages every COPY (destination and mode), USER
# and ENTRYPOINT. An instruction this script does not know fails the build.
# Needs go, tar and sha256sum.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/bin/images}
TAG=${IMAGE_TAG:-e2e}
REPO=${IMAGE_REPO:-localhost/kafkasend}
PAUSE_IMAGE=${PAUSE_IMAGE:-localhost/pause:3.10}
DOCKERFILE=$ROOT/Dockerfile

log() { echo "images.sh: $*" >&2; }
die() { log "$*"; exit 1; }

mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The build stage's loop: "for b in A B C; do go build FLAGS -o /out/$b ./cmd/$b; done".
bins=$(sed -n 's/^RUN for b in \(.*\); do \\$/\1/p' "$DOCKERFILE")
flags=$(sed -n 's|^ *go build \(.*\) -o /out/\$b \./cmd/\$b; \\$|\1|p' "$DOCKERFILE")
[[ -n $bins && -n $flags ]] || die "cannot find the go build loop of the Dockerfile's build stage"
# shellcheck disable=SC2034 # VERSION and REVISION are read by the eval below, as the Dockerfile's ARGs.
VERSION=$TAG
# shellcheck disable=SC2034
REVISION=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
buildflags=()
eval "buildflags=($flags)"
mkdir -p "$work/out"
for b in $bins; do
  (cd "$ROOT" && CGO_ENABLED=0 go build "${buildflags[@]}" -o "$work/out/$b" "./cmd/$b")
done
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/pause" ./hack/cluster/pause)

# mkimage OUT.tar REF ROOTFS USER ENTRYPOINT_JSON: one layer holding ROOTFS.
mkimage() {
  local out=$1 ref=$2 rootfs=$3 user=$4 ep=$5 w
  w=$(mktemp -d -p "$work")
  mkdir -p "$w/blobs/sha256"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$w/layer.tar" .
  blob() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" "$w/blobs/sha256/$d"; echo "$d"; }
  local ld cd md
  ld=$(blob "$w/layer.tar")
  local userf=""
  [[ -n $user ]] && userf="\"User\":\"$user\","
  printf '{"architecture":"%s","os":"linux","config":{%s"Entrypoint":%s,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$(go env GOARCH)" "$userf" "$ep" "$ld" >"$w/config.json"
  cd=$(blob "$w/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$cd" "$(stat -c %s "$w/config.json")" "$ld" "$(stat -c %s "$w/layer.tar")" >"$w/manifest.json"
  md=$(blob "$w/manifest.json")
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$md" "$(stat -c %s "$w/manifest.json")" "$ref" "$ref" >"$w/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$w/oci-layout"
  tar -C "$w" -cf "$out.tmp" oci-layout index.json blobs && mv "$out.tmp" "$out"
}

# stage TARGET: the image of the Dockerfile's "FROM scratch AS TARGET" stage.
stage() {
  local target=$1 rootfs=$work/rootfs-$1 user="" ep="" line instr rest src dst
  mkdir -p "$rootfs"
  local body
  body=$(awk -v t="$target" 'tolower($1)=="from" { on = (tolower($3)=="as" && $4==t && $2=="scratch"); next } on' "$DOCKERFILE")
  [[ -n $body ]] || die "the Dockerfile has no 'FROM scratch AS $target' stage"
  while IFS= read -r line; do
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    instr=${line%% *}
    rest=${line#* }
    case ${instr^^} in
    COPY)
      [[ $rest =~ ^--from=build[[:space:]]+([^[:space:]]+)[[:space:]]+([^[:space:]]+)$ ]] ||
        die "stage $target: COPY form not supported here: $line"
      src=${BASH_REMATCH[1]} dst=${BASH_REMATCH[2]}
      [[ $dst == */ ]] && dst=$dst$(basename "$src")
      case $src in
      /out/*) install -D -m 0755 "$work/out/${src#/out/}" "$rootfs$dst" ;;
      /etc/ssl/certs/ca-certificates.crt)
        [[ -f $src ]] || die "stage $target copies $src: install the ca-certificates package"
        install -D -m 0644 "$src" "$rootfs$dst"
        ;;
      *) die "stage $target: COPY of $src not supported here" ;;
      esac
      ;;
    USER) user=$rest ;;
    ENTRYPOINT) ep=$rest ;;
    *) die "stage $target: instruction ${instr^^} not supported here; teach hack/images.sh" ;;
    esac
  done <<<"$body"
  [[ -n $ep ]] || die "stage $target has no ENTRYPOINT"
  mkimage "$OUT/$target.tar" "$REPO/$target:$TAG" "$rootfs" "$user" "$ep"
}

stage operator
stage portal
mkdir -p "$work/rootfs-pause"
install -m 0755 "$work/pause" "$work/rootfs-pause/pause"
mkimage "$OUT/pause.tar" "$PAUSE_IMAGE" "$work/rootfs-pause" "65535:65535" '["/pause"]'
log "$REPO/operator:$TAG $REPO/portal:$TAG $PAUSE_IMAGE in $OUT"
ls "$OUT"/operator.tar "$OUT"/portal.tar "$OUT"/pause.tar
