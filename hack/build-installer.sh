#!/usr/bin/env bash
# Prints the one-file installer (make build-installer writes it to
# dist/install.yaml; make deploy applies it): config/default (namespace, CRD,
# RBAC, the operator Deployment and its metrics Service) with the operator
# running IMAGE and deploying WORKER_IMAGE for pipelines that name none.
# Either may be a tag (repo:tag) or a digest (repo@sha256:...).
#   hack/build-installer.sh IMAGE WORKER_IMAGE
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ $# -ne 2 || -z $1 || -z $2 ]]; then
  echo "usage: $0 IMAGE WORKER_IMAGE" >&2
  exit 2
fi
img=$1 worker=$2
KUSTOMIZE=${KUSTOMIZE:-kustomize}
# An overlay in a scratch folder under bin/, so that nothing tracked is edited.
mkdir -p "$ROOT/bin"
overlay=$(mktemp -d "$ROOT/bin/installer.XXXXXX")
trap 'rm -rf "$overlay"' EXIT
cat >"$overlay/kustomization.yaml" <<YAML
resources:
- ../../config/default
patches:
- path: worker-image.yaml
YAML
cat >"$overlay/worker-image.yaml" <<YAML
apiVersion: apps/v1
kind: Deployment
metadata:
  name: kafkasend-controller-manager
  namespace: kafkasend-system
spec:
  template:
    spec:
      containers:
      - name: manager
        env:
        - name: KAFKASEND_WORKER_IMAGE
          value: "$worker"
YAML
# config/manager names the image "controller" and renames it to
# kafkasend/operator; whichever name reaches here becomes IMAGE.
(cd "$overlay" && "$KUSTOMIZE" edit set image "controller=$img" "kafkasend/operator=$img")
echo "# kafkasend installer: operator $img, workers $worker"
"$KUSTOMIZE" build "$overlay"
