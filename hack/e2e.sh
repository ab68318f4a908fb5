#!/usr/bin/env bash
# `make e2e`: the operator, its worker pods and real jobs on a real
# single-node Kubernetes cluster (hack/cluster.sh), with a real Apache Kafka
# broker (hack/kafka.sh) on the cluster's bridge address.
#
#  1. the Debian packages the cluster needs (installed when root and missing;
#     otherwise a failure naming them), the cluster binaries
#     (hack/cluster-bins.sh), helm, the kafkasend CLI, and the operator,
#     portal and pause images (hack/images.sh);
#  2. the cluster up, the images imported, the broker started;
#  3. go test ./test/e2e (KAFKASEND_E2E=1 and the cluster's settings), which
#     also runs Debian's prometheus against the cluster and applies
#     dist/install.yaml (make build-installer with the images of step 1);
#  4. broker and cluster stopped, and the host checked to be as before
#     (sysctls, firewall rules, links, network namespaces, mounts, cgroups):
#     on success and on failure alike.
#
# Environment: HELM (the helm binary; default: make tools), E2E_RUN (go test -run pattern, default
# TestOperatorOnARealCluster), E2E_TIMEOUT (go test -timeout,
# default 12m), IMAGE_TAG (default e2e), and hack/cluster.sh's settings.
# Needs root. Stops this checkout's loopback broker first (one broker per
# checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export IMAGE_TAG=${IMAGE_TAG:-e2e}
t0=$(date +%s)
step() { echo "e2e: $* ($(($(date +%s) - t0))s)" >&2; }
die() { echo "e2e: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root: the test cluster runs containerd and a kubelet and creates a network bridge (CI runs as root)"
step "Debian packages"
hack/cluster.sh deps
# The real Prometheus the suite scrapes the pods with (Debian's prometheus
# package, which also ships the promtool of hack/test.sh).
if ! command -v prometheus >/dev/null && command -v apt-get >/dev/null; then
  step "installing Debian package prometheus"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
command -v prometheus >/dev/null || die "prometheus is missing: install Debian's prometheus package (apt-get install prometheus) or put it on PATH"

step "cluster binaries"
CLUSTER_BIN_DIR=$(hack/cluster-bins.sh)
export CLUSTER_BIN_DIR

step "helm, kafkasend CLI"
if [[ -z ${HELM:-} ]]; then
  make --no-print-directory tools >/dev/null
  HELM=$(ls "$ROOT"/bin/helm-v* | tail -n1)
fi
[[ -x $HELM ]] || die "helm not found at $HELM"
mkdir -p bin/e2e
go build -o bin/e2e/kafkasend ./cmd/kafkasend

step "images"
archives=$(hack/images.sh "$ROOT/bin/images")
mapfile -t images <<<"$archives"

# The one-file installer, as a user builds it, with the images above.
step "make build-installer"
make --no-print-directory build-installer IMG="localhost/kafkasend/operator:$IMAGE_TAG" \
  WORKER_IMG="localhost/kafkasend/portal:$IMAGE_TAG" >/dev/null

step "Kafka jars"
hack/kafka.sh libs

# What the run must leave as it found it. Only what this machine's other
# users are unlikely to change at the same time: sysctls, firewall rules,
# links named like ours, network namespaces, mounts under our folders,
# cgroups under our root.
eval "$(hack/cluster.sh env | sed 's/^/export /')"
bridge=${BRIDGE:-kse2e0}
cgroot=${CGROUP_ROOT:-/kafkasend-e2e}
fingerprint() {
  sysctl -n vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
    kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables 2>/dev/null
  local c
  for c in iptables-save ip6tables-save; do
    command -v "$c" >/dev/null && $c 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
  done
  ip -o link | awk '{print $2}' | grep -E "^($bridge|veth)" || true
  local ns
  for ns in /run/netns/cni-*; do [[ -e $ns ]] && echo "$ns"; done
  awk -v d="$KAFKASEND_E2E_CLUSTER_DIR" '$2 ~ "^"d || $2 ~ "^/run/netns/" || $2 ~ "^/proc/sys/" {print $2}' /proc/mounts
  ls -d /sys/fs/cgroup/*"$cgroot" 2>/dev/null || true
  ls -d /var/lib/kubelet /var/lib/cni /var/log/containers /run/containerd 2>/dev/null || true
}
before=$(fingerprint)

finish() {
  local rc=$?
  set +e
  step "tear-down"
  hack/kafka.sh stop >/dev/null 2>&1
  hack/cluster.sh down
  local after
  after=$(fingerprint)
  if [[ $after != "$before" ]]; then
    echo "e2e: the host is not as before the run:" >&2
    diff <(echo "$before") <(echo "$after") >&2
    rc=1
  else
    step "host state as before"
  fi
  if ((rc)); then step "FAILED (logs: $KAFKASEND_E2E_CLUSTER_DIR/logs, bin/kafka/run)"; else step "passed"; fi
  exit "$rc"
}
trap finish EXIT

# The broker starts beside the cluster once the cluster's bridge carries the
# node IP (it binds there, so that pods reach it).
step "cluster up, broker start"
hack/cluster.sh up "${images[@]}" >/dev/null &
up_pid=$!
for _ in $(seq 300); do
  ip -o addr show dev "$bridge" 2>/dev/null | grep -qF " $KAFKASEND_E2E_NODE_IP/" && break
  kill -0 "$up_pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$up_pid" 2>/dev/null || { wait "$up_pid" || die "the cluster did not start (logs: $KAFKASEND_E2E_CLUSTER_DIR/logs)"; }
# One broker per checkout: the loopback one (if any) makes way.
hack/kafka.sh stop >/dev/null 2>&1 || true
brokers=$(KAFKA_HOST=$KAFKASEND_E2E_NODE_IP hack/kafka.sh start) || { wait "$up_pid"; die "the broker did not start"; }
step "broker at $brokers"
wait "$up_pid" || die "the cluster did not start (logs: $KAFKASEND_E2E_CLUSTER_DIR/logs)"
step "cluster ready"

step "go test ./test/e2e"
KAFKASEND_E2E=1 KAFKASEND_E2E_BROKERS=$brokers KAFKASEND_E2E_HELM=$HELM \
  KAFKASEND_E2E_KAFKASEND=$ROOT/bin/e2e/kafkasend KAFKASEND_E2E_IMAGE_TAG=$IMAGE_TAG \
  KAFKASEND_E2E_INSTALLER=$ROOT/dist/install.yaml \
  go test -count=1 -v -timeout "${E2E_TIMEOUT:-12m}" ./test/e2e/ -run "${E2E_RUN:-TestOperatorOnARealCluster}"
