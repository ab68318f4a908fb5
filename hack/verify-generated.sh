#!/usr/bin/env bash
# Regenerates deepcopy code, the CRD, RBAC and the chart's CRD copy, and fails
# when that changed anything: generated files must be committed up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
files=(api/v1alpha1/zz_generated.deepcopy.go config/crd/bases config/rbac/role.yaml charts/kafkasend/templates/crds charts/kafkasend/files/prometheus-rules.yaml)
snap=$(mktemp -d)
trap 'rm -rf "$snap"' EXIT
for f in "${files[@]}"; do mkdir -p "$snap/$(dirname "$f")"; cp -r "$f" "$snap/$f"; done
make --no-print-directory -s generate manifests >/dev/null
stale=0
for f in "${files[@]}"; do
  if ! diff -r "$snap/$f" "$f" >/dev/null; then
    echo "out of date: $f (run 'make generate manifests' and commit)" >&2
    diff -r "$snap/$f" "$f" | head -20 >&2 || true
    stale=1
  fi
done
if ! go mod tidy -diff >/dev/null 2>&1; then
  echo "out of date: go.mod/go.sum (run 'go mod tidy' and commit)" >&2
  go mod tidy -diff >&2 || true
  stale=1
fi
exit $stale
