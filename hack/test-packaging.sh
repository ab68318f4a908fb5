#!/usr/bin/env bash
# Checks the packaging without a cluster: the kustomize configs build and hold
# the CRD, the operator Deployment and its ClusterRole; the Helm chart passes
# `helm lint --strict` and renders with its default values and with every
# optional feature on (test/packaging/testdata/values-all.yaml).
# kustomize and helm are built into bin/ by the Makefile's tool targets when
# missing. Prints one line on success, everything it knows on failure.
# (test/packaging also installs the chart into a real API server.)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
t0=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
  echo "test-packaging: FAIL: $1" >&2
  shift
  for f in "$@"; do
    [[ -s $f ]] || continue
    echo "----- $(basename "$f")" >&2
    cat "$f" >&2
  done
  exit 1
}

# run NAME CMD...: runs CMD with its stdout in $work/NAME.out and its stderr in
# $work/NAME.err; on failure shows both and stops.
run() {
  local name=$1
  shift
  if ! "$@" >"$work/$name.out" 2>"$work/$name.err"; then
    fail "$name: $*" "$work/$name.err" "$work/$name.out"
  fi
}

# makevar NAME: the value of a Makefile variable (honours environment overrides).
# shellcheck disable=SC2016 # $(...) is for make, not the shell
makevar() {
  make --no-print-directory -s -f Makefile -f <(printf 'print-%%:\n\t@echo $($*)\n') "print-$1"
}

# tool VAR: the path of the tool the Makefile's $(VAR) names, built if missing.
tool() {
  local path
  path=$(makevar "$1")
  [[ -n $path ]] || fail "the Makefile defines no $1"
  if [[ ! -x $path ]]; then
    run "make-$1" make --no-print-directory "$path"
  fi
  echo "$path"
}

# expect FILE KIND NAME...: FILE (a multi-document YAML stream) holds an object
# of kind KIND with metadata.name NAME, for each NAME.
expect() {
  local file=$1 kind=$2
  shift 2
  local have
  have=$(awk '
    /^---/ { kind = ""; inmeta = 0; next }
    /^kind: / { kind = $2 }
    /^metadata:/ { inmeta = 1; next }
    /^[^ ]/ { inmeta = 0 }
    inmeta && /^  name: / { print kind "/" $2; inmeta = 0 }
  ' "$file" | tr -d '"'"'")
  for name in "$@"; do
    grep -qxF "$kind/$name" <<<"$have" || fail "$(basename "$file") has no $kind $name; it has:
$have"
  done
}

# expect_none FILE KIND: FILE holds no object of kind KIND.
expect_none() {
  if grep -qx "kind: $2" "$1"; then
    fail "$(basename "$1") has a $2 it should not have" "$1"
  fi
}

# expect_text FILE TEXT: FILE holds the line fragment TEXT.
expect_text() {
  grep -qF -- "$2" "$1" || fail "$(basename "$1") lacks \"$2\"" "$1"
}

KUSTOMIZE=$(tool KUSTOMIZE)
HELM=$(tool HELM)
# Keep helm away from the user's configuration and caches.
export HELM_CACHE_HOME=$work/helm/cache HELM_CONFIG_HOME=$work/helm/config HELM_DATA_HOME=$work/helm/data

run kustomize-default "$KUSTOMIZE" build config/default
f=$work/kustomize-default.out
expect "$f" CustomResourceDefinition portalpipelines.kafkasend.io
expect "$f" Deployment kafkasend-controller-manager
expect "$f" ClusterRole kafkasend-manager-role kafkasend-portalpipeline-editor-role kafkasend-portalpipeline-viewer-role
expect "$f" ClusterRoleBinding kafkasend-manager-rolebinding
expect "$f" ServiceAccount kafkasend-controller-manager
expect "$f" Service kafkasend-controller-manager-metrics
expect_text "$f" "namespace: kafkasend-system"

run kustomize-samples "$KUSTOMIZE" build config/samples
expect "$work/kustomize-samples.out" PortalPipeline orders

run installer env KUSTOMIZE="$KUSTOMIZE" hack/build-installer.sh reg.example/op:v1 reg.example/portal:v1
f=$work/installer.out
expect "$f" CustomResourceDefinition portalpipelines.kafkasend.io
expect "$f" Deployment kafkasend-controller-manager
expect_text "$f" "image: reg.example/op:v1"
expect_text "$f" "value: reg.example/portal:v1"

chart=charts/kafkasend
all=test/packaging/testdata/values-all.yaml
run helm-lint "$HELM" lint --strict "$chart"
run helm-lint-all "$HELM" lint --strict "$chart" -f "$all"

run helm-default "$HELM" template kafkasend "$chart" -n kafkasend-system --include-crds
f=$work/helm-default.out
expect "$f" CustomResourceDefinition portalpipelines.kafkasend.io
expect "$f" Deployment kafkasend-controller-manager
expect "$f" ServiceAccount kafkasend-controller-manager
expect "$f" ClusterRole kafkasend-manager-role kafkasend-portalpipeline-editor-role kafkasend-portalpipeline-viewer-role
expect "$f" ClusterRoleBinding kafkasend-manager-rolebinding
expect "$f" Role kafkasend-leader-election-role
expect "$f" RoleBinding kafkasend-leader-election-rolebinding
expect "$f" Service kafkasend-controller-manager-metrics
expect_text "$f" 'image: "kafkasend/operator:0.1.0"'
expect_text "$f" "- --leader-elect"
expect_text "$f" "- --worker-image=kafkasend/portal:0.1.0"
expect_none "$f" ServiceMonitor
expect_none "$f" PodDisruptionBudget
expect_none "$f" PodMonitor
expect_none "$f" PrometheusRule
expect "$f" Pod kafkasend-selftest

run helm-all "$HELM" template kafkasend "$chart" -n kafkasend-system -f "$all"
f=$work/helm-all.out
expect "$f" ServiceMonitor kafkasend-controller-manager
expect "$f" PodDisruptionBudget kafkasend-controller-manager
expect "$f" PodMonitor kafkasend-workers
expect "$f" PrometheusRule kafkasend-alerts
expect "$f" ConfigMap kafkasend-dashboard
expect "$f" ClusterRole kafkasend-metrics-auth-role kafkasend-metrics-reader
expect_text "$f" "- --metrics-secure"
expect "$f" ServiceAccount kafkasend-operator
expect "$f" Role kafkasend-leader-election-role
expect_text "$f" "namespace: kafkasend-leases"
expect_text "$f" "- --watch-namespaces=team-a,team-b"
expect_text "$f" "- --leader-election-namespace=kafkasend-leases"
expect_text "$f" "- --zap-log-level=debug"
expect_text "$f" 'image: "registry.example/kafkasend/operator:v9.9.9"'

# The schema must reject a mistyped value rather than ignore it.
if "$HELM" template kafkasend "$chart" --set replicaCount=two >"$work/helm-bad.out" 2>&1; then
  fail "helm template accepted replicaCount=two (values.schema.json not applied?)" "$work/helm-bad.out"
fi
if "$HELM" template kafkasend "$chart" --set metrics.serviceMonitor.enable=true >"$work/helm-typo.out" 2>&1; then
  fail "helm template accepted the unknown key metrics.serviceMonitor.enable" "$work/helm-typo.out"
fi

echo "test-packaging: ok: kustomize config/default and config/samples, the installer, helm lint and template ($(( $(date +%s) - t0 ))s)"
