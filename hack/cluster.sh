#!/usr/bin/env bash
# A real single-node Kubernetes cluster for the e2e tests (hack/e2e.sh): etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and a kubelet
# running pods with containerd, runc and the CNI bridge plugin.
#
#   hack/cluster.sh deps          install the Debian packages it needs (root), or name them
#   hack/cluster.sh up IMAGE.tar...  start it, importing the image archives (the pause
#                                 image among them); prints the admin kubeconfig
#   hack/cluster.sh down          stop it and remove what it created (also after a failure)
#   hack/cluster.sh env           print the settings the tests read (KEY=VALUE lines)
#
# Everything lives under $CLUSTER_DIR (default bin/cluster): PKI, kubeconfigs,
# etcd data, containerd's root and state, the kubelet's root, logs and pids.
# The host is left as it was: the cluster brings its own bridge ($BRIDGE, the
# node IP and the pods' subnet), the CNI plugin runs with isGateway=false and
# ipMasq=false (no sysctl, no iptables rule, nothing routed off the machine),
# the kubelet keeps off iptables (makeIPTablesUtilChains: false) and runs in
# its own mount namespace where the /proc/sys files it would write are masked
# by files holding the values it wants, and pods' cgroups go under
# $CGROUP_ROOT. `down` stops everything by pid, removes the pods' containers,
# network namespaces, mounts, cgroups and the bridge.
#
# Limits: no kube-proxy (Service ClusterIPs, kubernetes.default included, do
# not route; pods that call the API server use KUBERNETES_SERVICE_HOST=$NODE_IP
# and KUBERNETES_SERVICE_PORT=$API_PORT), no cluster DNS, no hostPort. Pods
# reach the host on $NODE_IP. Needs root.
#
# Every folder, address and port below is an environment variable, so two
# clusters can share a machine when they differ.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
K8S_VERSION=${K8S_VERSION:-v1.37.2}
D=${CLUSTER_DIR:-$ROOT/bin/cluster}
BIN=${CLUSTER_BIN_DIR:-$ROOT/bin/k8s/$K8S_VERSION/cluster}
NODE_NAME=${NODE_NAME:-kafkasend-e2e}
BRIDGE=${BRIDGE:-kse2e0}
POD_SUBNET=${POD_SUBNET:-10.247.0.0/24}
NODE_IP=${NODE_IP:-10.247.0.1}
SVC_RANGE=${SVC_RANGE:-10.97.0.0/16}
SVC_IP=${SVC_IP:-10.97.0.1}
ETCD_PORT=${ETCD_PORT:-24379}
API_PORT=${API_PORT:-24443}
KUBELET_PORT=${KUBELET_PORT:-24250}
KCM_PORT=${KCM_PORT:-24257}
SCHED_PORT=${SCHED_PORT:-24259}
PAUSE_IMAGE=${PAUSE_IMAGE:-localhost/pause:3.10}
CGROUP_ROOT=${CGROUP_ROOT:-/kafkasend-e2e}
# How often the kubelet resyncs pods; mounted Secrets are refreshed at that pace.
KUBELET_SYNC=${KUBELET_SYNC:-10s}
STOP_GRACE_S=${STOP_GRACE_S:-5}
CTR=(ctr -a "$D/containerd/containerd.sock" -n k8s.io)
KUBECONFIG_ADMIN=$D/kubeconfig/admin.kubeconfig

t_start=$(date +%s%N)
log() { echo "cluster.sh: [$((($(date +%s%N) - t_start) / 1000000))ms] $*" >&2; }
die() { log "$*"; exit 1; }

# Debian packages and the commands that show they are there.
PKGS=(containerd runc containernetworking-plugins iproute2 openssl curl util-linux mount)
need_cmds() {
  local c
  for c in containerd containerd-shim-runc-v2 ctr runc ip openssl curl unshare mountpoint mount; do
    command -v "$c" >/dev/null || echo "$c"
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local ]] || echo "/usr/lib/cni/bridge"
}

deps() {
  local missing
  missing=$(need_cmds | tr '\n' ' ')
  [[ -z $missing ]] && return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing ${PKGS[*]} (missing: $missing)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null; }; then
      die "apt-get install ${PKGS[*]} failed; install them by hand (missing: $missing)"
    fi
    missing=$(need_cmds | tr '\n' ' ')
    [[ -z $missing ]] || die "still missing after apt-get install: $missing"
    return 0
  fi
  die "missing $missing: install the Debian packages ${PKGS[*]} (as root: apt-get install --no-install-recommends ${PKGS[*]})"
}

require_root() {
  [[ $(id -u) == 0 ]] || die "needs root: it runs containerd and a kubelet and creates the network bridge $BRIDGE (run as root, e.g. in CI)"
}

start() { # name cmd...: in the background, pid in $D/pids/name
  local n=$1
  shift
  nohup "$@" >"$D/logs/$n.log" 2>&1 </dev/null &
  echo $! >"$D/pids/$n"
}

wait_for() { # desc timeout_s cmd...
  local desc=$1 to=$2 i
  shift 2
  for ((i = 0; i < to * 5; i++)); do
    "$@" >/dev/null 2>&1 && { log "$desc ok"; return 0; }
    sleep 0.2
  done
  log "timed out after ${to}s waiting for $desc; last lines of the logs:"
  tail -n 15 "$D"/logs/*.log >&2 2>/dev/null || true
  return 1
}

gen_pki() {
  local pki=$D/pki
  mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt \
      -days 7 -subj "/CN=kafkasend-e2e-ca" 2>/dev/null
    cert() { # name CN O SANs EKU
      local subj="/CN=$2"
      [[ -n $3 ]] && subj="/O=$3/CN=$2"
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" -out "$1.csr" -subj "$subj" 2>/dev/null
      {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$5"
        [[ -n $4 ]] && echo "subjectAltName=$4"
      } >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 7 -extfile "$1.ext" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    cert apiserver kube-apiserver "" "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$NODE_IP,IP:$SVC_IP" serverAuth
    cert admin admin system:masters "" clientAuth
    cert controller-manager system:kube-controller-manager "" "" clientAuth
    cert scheduler system:kube-scheduler "" "" clientAuth
    cert kubelet "system:node:$NODE_NAME" system:nodes "" clientAuth
    cert kubelet-serving "$NODE_NAME" "" "DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP" serverAuth
    cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters "" clientAuth
    # service-account token signing key (ES256)
    openssl ecparam -name prime256v1 -genkey -noout -out sa.key 2>/dev/null
    openssl ec -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  local n u
  for n in admin:admin controller-manager:controller-manager scheduler:scheduler kubelet:kubelet; do
    u=${n#*:} n=${n%%:*}
    cat >"$D/kubeconfig/$n.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "https://$NODE_IP:$API_PORT", certificate-authority: "$D/pki/ca.crt"}}]
users: [{name: $n, user: {client-certificate: "$D/pki/$u.crt", client-key: "$D/pki/$u.key"}}]
contexts: [{name: e2e, context: {cluster: e2e, user: $n}}]
current-context: e2e
YAML
  done
}

up() {
  require_root
  deps
  local b
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
    [[ -x $BIN/$b ]] || die "$BIN/$b missing: run hack/cluster-bins.sh"
  done
  [[ -e $D/pids ]] && { log "$D holds a previous cluster; taking it down first"; down; }
  # never rm -rf through live mounts: down unmounted everything under $D
  if awk -v d="$D" '$2 ~ "^"d"(/|$)" {f=1} END {exit !f}' /proc/mounts; then
    die "mounts under $D remain; run hack/cluster.sh down"
  fi
  rm -rf "$D"
  mkdir -p "$D"/{logs,pids,etcd,kubelet,containerd,cni/net.d,cni/ipam,kubeconfig,pod-logs}
  echo "$CGROUP_ROOT" >"$D/cgroup-root"
  echo "$BRIDGE" >"$D/bridge"
  # A failed start leaves nothing behind.
  trap 'rc=$?; if ((rc)); then log "start failed; tearing down"; down; fi' EXIT

  # 1. network: our own bridge with the node IP (the kubelet refuses a loopback node IP)
  ip link show "$BRIDGE" >/dev/null 2>&1 && die "a link named $BRIDGE exists already; set BRIDGE to another name"
  ip link add "$BRIDGE" type bridge
  ip addr add "$NODE_IP/${POD_SUBNET#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  cat >"$D/cni/net.d/10-kafkasend-e2e.conflist" <<JSON
{"cniVersion":"1.0.0","name":"kafkasend-e2e","plugins":[
 {"type":"bridge","bridge":"$BRIDGE","isGateway":false,"ipMasq":false,"hairpinMode":true,
  "ipam":{"type":"host-local","dataDir":"$D/cni/ipam","ranges":[[{"subnet":"$POD_SUBNET","gateway":"$NODE_IP"}]]}}]}
JSON

  # 2. PKI and kubeconfigs
  gen_pki
  export KUBECONFIG=$KUBECONFIG_ADMIN
  log "PKI and kubeconfigs ready"

  # 3. containerd with its own root, state and socket; images imported, never pulled
  cat >"$D/containerd/config.toml" <<TOML
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
[grpc]
  address = "$D/containerd/containerd.sock"
[ttrpc]
  address = "$D/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Without CAP_SYS_RESOURCE runc cannot set the negative oom_score_adj the
  # kubelet asks for sandboxes: clamp it to containerd's own score.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "${SNAPSHOTTER:-overlayfs}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$D/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/cni/net.d"
TOML
  start containerd containerd --config "$D/containerd/config.toml"
  wait_for containerd 30 "${CTR[@]}" version
  local t
  for t in "$@"; do "${CTR[@]}" images import "$t" >/dev/null || die "importing $t failed"; done
  local refs
  refs=$("${CTR[@]}" images ls -q | grep -v '^sha256:')
  log "images: $(echo "$refs" | tr '\n' ' ')"
  grep -qxF "$PAUSE_IMAGE" <<<"$refs" || die "the pause image $PAUSE_IMAGE is not among the imported archives"

  # 4. etcd: one member, no fsync (test data)
  start etcd "$BIN/etcd" --name e2e --data-dir "$D/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "e2e=http://127.0.0.1:$((ETCD_PORT + 1))" --unsafe-no-fsync --quota-backend-bytes=$((2 * 1024 * 1024 * 1024))
  wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

  # 5. kube-apiserver on the node IP
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
    --tls-cert-file "$D/pki/apiserver.crt" --tls-private-key-file "$D/pki/apiserver.key" --client-ca-file "$D/pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$D/pki/sa.pub" --service-account-signing-key-file "$D/pki/sa.key" \
    --service-cluster-ip-range "$SVC_RANGE" --authorization-mode Node,RBAC --allow-privileged=true \
    --kubelet-client-certificate "$D/pki/apiserver-kubelet-client.crt" --kubelet-client-key "$D/pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$D/pki/ca.crt" --kubelet-preferred-address-types InternalIP,Hostname \
    --cert-dir "$D/apiserver-certs"
  wait_for kube-apiserver 90 "$BIN/kubectl" get --raw /readyz

  # 6. controller-manager (default controllers) and scheduler; one replica each
  start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$D/kubeconfig/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$D/kubeconfig/controller-manager.kubeconfig" --authorization-kubeconfig "$D/kubeconfig/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file "$D/pki/sa.key" --root-ca-file "$D/pki/ca.crt" \
    --cluster-signing-cert-file "$D/pki/ca.crt" --cluster-signing-key-file "$D/pki/ca.key" \
    --flex-volume-plugin-dir "$D/kcm-flexvolume"
  start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$D/kubeconfig/scheduler.kubeconfig" \
    --authentication-kubeconfig "$D/kubeconfig/scheduler.kubeconfig" --authorization-kubeconfig "$D/kubeconfig/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false

  # 7. kubelet: cgroupfs driver under our own cgroup root, cgroup v1 allowed,
  #    no swap check, image GC and eviction effectively off, no iptables chains
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -e $h/cgroup.procs ]] || continue
    mkdir -p "$h${CGROUP_ROOT#/}"
    if [[ -e $h/cpuset.cpus && -z $(cat "$h${CGROUP_ROOT#/}/cpuset.cpus") ]]; then
      cat "$h/cpuset.cpus" >"$h${CGROUP_ROOT#/}/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h${CGROUP_ROOT#/}/cpuset.mems"
    fi
  done
  cat >"$D/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
failSwapOn: false
containerRuntimeEndpoint: unix://$D/containerd/containerd.sock
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $((KUBELET_PORT - 2))
tlsCertFile: $D/pki/kubelet-serving.crt
tlsPrivateKeyFile: $D/pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $D/pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
podLogsDir: $D/pod-logs
volumePluginDir: $D/kubelet/volume-plugins
syncFrequency: $KUBELET_SYNC
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
makeIPTablesUtilChains: false
maxPods: 110
YAML
  # The kubelet writes vm.overcommit_memory, vm.panic_on_oom, kernel.panic,
  # kernel.panic_on_oops and kernel.keys.root_max* host-wide (or refuses to
  # start with protectKernelDefaults). In its own mount namespace those files
  # are masked by files holding the wanted values. Its root dir is an rshared
  # bind mount first, so that the volumes it mounts there reach runc.
  mkdir -p "$D/kubelet/root" "$D/kubelet/sysctl"
  mount --bind "$D/kubelet/root" "$D/kubelet/root"
  mount --make-rshared "$D/kubelet/root"
  local masks="" kv k v f
  for kv in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 \
    kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
    k=${kv%=*} v=${kv#*=}
    [[ $(cat "/proc/sys/$k") == "$v" ]] && continue
    f=$D/kubelet/sysctl/${k//\//.}
    echo "$v" >"$f"
    masks+="mount --bind $f /proc/sys/$k && "
  done
  start kubelet unshare -m --propagation unchanged sh -c "${masks}exec \"\$0\" \"\$@\"" \
    "$BIN/kubelet" --config "$D/kubelet/config.yaml" --kubeconfig "$D/kubeconfig/kubelet.kubeconfig" \
    --root-dir "$D/kubelet/root" --cert-dir "$D/kubelet/pki" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" -v=1
  wait_for "node $NODE_NAME Ready" 120 "$BIN/kubectl" wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
  # pods can be created once the default ServiceAccount exists
  wait_for "default ServiceAccount" 60 "$BIN/kubectl" get serviceaccount default -n default
  print_env >"$D/env"
  trap - EXIT
  log "cluster up"
  echo "$KUBECONFIG_ADMIN"
}

print_env() {
  cat <<EOF
KUBECONFIG=$KUBECONFIG_ADMIN
KAFKASEND_E2E_KUBECTL=$BIN/kubectl
KAFKASEND_E2E_NODE_IP=$NODE_IP
KAFKASEND_E2E_API_PORT=$API_PORT
KAFKASEND_E2E_NODE_NAME=$NODE_NAME
KAFKASEND_E2E_CLUSTER_DIR=$D
EOF
}

stop() { # names...: SIGTERM, then SIGKILL after STOP_GRACE_S
  local n p pids=() alive i
  for n in "$@"; do
    [[ -f $D/pids/$n ]] && pids+=("$(cat "$D/pids/$n")")
    rm -f "$D/pids/$n"
  done
  ((${#pids[@]})) || return 0
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for ((i = 0; i < STOP_GRACE_S * 10; i++)); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  log "stopped $*"
}

down() {
  set +e # remove as much as possible, whatever fails
  [[ -d $D ]] || { log "nothing to take down in $D"; return 0; }
  require_root
  local bridge=$BRIDGE cr=""
  [[ -f $D/bridge ]] && bridge=$(cat "$D/bridge")
  [[ -f $D/cgroup-root ]] && cr=$(cat "$D/cgroup-root")
  # the kubelet first, so that it restarts nothing; then every pod container
  stop kubelet
  local netns_inodes="" ids="" pid c
  if [[ -S $D/containerd/containerd.sock ]] && command -v ctr >/dev/null; then
    ids=$("${CTR[@]}" containers ls -q 2>/dev/null || true)
    # the pods' network namespaces, by inode, before their processes go
    for pid in $("${CTR[@]}" tasks ls 2>/dev/null | awk 'NR>1 {print $2}'); do
      netns_inodes+=" $(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null || true)"
    done
    for c in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true; done
    sleep 1
    for c in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks delete -f "$c" >/dev/null 2>&1 || true; done
    for c in $("${CTR[@]}" containers ls -q 2>/dev/null); do "${CTR[@]}" containers delete "$c" >/dev/null 2>&1 || true; done
  fi
  stop kube-scheduler kube-controller-manager kube-apiserver
  stop etcd containerd
  # shims outlive containerd: end those of our containerd, by pid
  local p
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "containerd-shim.*-address $D/containerd/containerd.sock"; then
      kill -9 "${p#/proc/}" 2>/dev/null
    fi
  done
  sleep 0.5
  # our pods' network namespaces: the /run/netns/cni-* files with an inode we saw
  local host_netns ns ino
  host_netns=$(stat -L -c %i /proc/self/ns/net)
  for ns in /run/netns/cni-*; do
    [[ -e $ns ]] || continue
    ino=$(stat -L -c %i "$ns" 2>/dev/null) || continue
    if [[ $ino != "$host_netns" && " $netns_inodes " == *" $ino "* ]]; then
      umount "$ns" 2>/dev/null || true
      rm -f "$ns"
    fi
  done
  # every mount under $D, deepest first
  awk -v d="$D" '$2 ~ "^"d"(/|$)" {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  ip link del "$bridge" 2>/dev/null || true
  # the pods' cgroups, empty now, deepest first
  if [[ -n ${cr#/} ]]; then
    for h in /sys/fs/cgroup/*/; do
      [[ -d $h${cr#/} ]] && find "$h${cr#/}" -depth -type d -exec rmdir {} + 2>/dev/null
    done
  fi
  find /var/log/containers -maxdepth 1 -lname "$D/*" -delete 2>/dev/null || true
  # libcni's result cache (fixed at /var/lib/cni) of sandboxes killed without CNI DEL
  for c in $ids; do rm -f /var/lib/cni/results/*-"$c"-* 2>/dev/null || true; done
  # folders the kubelet and containerd create at fixed places, when empty
  rm -f /var/lib/kubelet/device-plugins/kubelet.sock
  local d
  for d in /var/lib/kubelet/device-plugins /var/lib/kubelet /var/log/containers /var/lib/cni/results /var/lib/cni \
    /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd/s /run/containerd/fifo /run/containerd /run/netns; do
    rmdir "$d" 2>/dev/null || true
  done
  rm -rf "$D/pids"
  log "down"
}

cmd=${1:-}
shift || true
case $cmd in
deps) deps ;;
up) up "$@" ;;
down) down ;;
env) print_env ;;
*)
  echo "usage: $0 deps | up IMAGE.tar... | down | env" >&2
  exit 2
  ;;
esac
