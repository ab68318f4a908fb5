#!/usr/bin/env bash
# `make test`: everything a change must pass, on a fresh machine.
#  1. generated files up to date, gofmt, go vet and golangci-lint clean;
#  2. unit tests with the race detector (Kafka-using ones on in-process kfake);
#  3. envtest (real kube-apiserver, etcd, kube-controller-manager built by
#     hack/envtest-assets.sh) and integration tests against a real Apache
#     Kafka broker started by hack/kafka.sh;
#  4. the packaging: kustomize builds and the Helm chart renders;
#  5. end to end on a real single-node cluster (hack/e2e.sh);
#  6. the alert rules: promtool check rules and promtool test rules.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
t0=$(date +%s)
step() { echo; echo "==> $* ($(( $(date +%s) - t0 ))s)"; }

step "generated files"
hack/verify-generated.sh

step "gofmt, go vet"
make --no-print-directory vet

# kcat (librdkafka's CLI) proves a non-Go requester can speak the wire
# format. Installed the way CI does (apt-get) when missing and root;
# otherwise make test fails naming it, rather than skipping its test.
if ! command -v kcat >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    step "installing kcat (apt-get)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null) ||
      echo "apt-get install kcat failed" >&2
  fi
  if ! command -v kcat >/dev/null; then
    echo "kcat is missing: install it (Debian/Ubuntu: apt-get install kcat) and run make test again" >&2
    exit 1
  fi
fi

# promtool (Debian's prometheus package) checks and unit-tests the alert
# rules; it is required, so it is installed when missing where that is
# possible, and its absence fails the run otherwise.
if ! command -v promtool >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  step "installing promtool (Debian package prometheus)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
if ! command -v promtool >/dev/null; then
  echo "test.sh: promtool is missing: install Debian's prometheus package (apt-get install prometheus) or put promtool on PATH" >&2
  exit 1
fi

step "alert rules (promtool)"
promtool check rules config/prometheus/rules.yaml
promtool test rules config/prometheus/rules_test.yaml

step "tools (controller-gen, kustomize, helm, golangci-lint; cached in bin/)"
make --no-print-directory tools >/dev/null

step "golangci-lint"
make --no-print-directory lint

step "envtest assets"
KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)
export KUBEBUILDER_ASSETS

step "Apache Kafka"
hack/kafka.sh libs
trap 'hack/kafka.sh stop >/dev/null 2>&1 || true' EXIT
brokers=$(hack/kafka.sh start)
echo "broker at $brokers"
# The secured listeners (SASL_SSL, mTLS) and their Strimzi-style credentials.
mapfile -t kafka_env < <(hack/kafka.sh env)
printf '  %s\n' "${kafka_env[@]}"

integration=(./controllers/... ./test/...)
unit=$(go list ./... | grep -v -e '/controllers$' -e '/test/')

step "unit tests (race detector, embedded kfake)"
# shellcheck disable=SC2086
env -u KAFKASEND_TEST_BROKERS go test -count=1 -race -timeout 15m $unit

step "fuzz targets, 2000 inputs each (make fuzz for longer runs)"
make --no-print-directory fuzz FUZZTIME="${KAFKASEND_FUZZTIME:-2000x}"

step "envtest and Apache Kafka integration tests"
env "${kafka_env[@]}" KAFKASEND_TEST_BROKERS="$brokers" KAFKASEND_REQUIRE_REAL_KAFKA=1 KAFKASEND_REQUIRE_ENVTEST=1 \
  go test -count=1 -timeout 20m "${integration[@]}"

if [[ -x hack/test-packaging.sh ]]; then
  step "packaging"
  hack/test-packaging.sh
fi

# A real single-node cluster (root; installs its Debian packages when
# missing): helm install, worker pods answering jobs, autoscaling, rollouts.
step "e2e on a real cluster (hack/e2e.sh)"
hack/kafka.sh stop >/dev/null
hack/e2e.sh

step "done in $(( $(date +%s) - t0 ))s"
