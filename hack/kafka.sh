#!/usr/bin/env bash
# Runs a single-node Apache Kafka broker (KRaft, broker+controller in one JVM)
# on 127.0.0.1 for tests and benchmarks, assembled from Maven Central jars.
#
#   hack/kafka.sh libs     fetch the broker jars into bin/kafka/libs (cached)
#   hack/kafka.sh start    start the broker (fresh data), print 127.0.0.1:PORT
#   hack/kafka.sh stop     stop it and remove its data
#   hack/kafka.sh status   print the address and pid; exit 1 when not running
#   hack/kafka.sh restart  stop the broker's JVM and start it again on the same
#                          data and ports (a broker restart, for chaos runs)
#   hack/kafka.sh env      print the test environment of the running broker,
#                          KEY=VALUE lines (see "Secured listeners" below)
#
# Environment:
#   KAFKA_PORT             client port (default: a free port)
#   KAFKA_CONTROLLER_PORT  KRaft controller port (default: a free port)
#   KAFKA_HEAP             JVM heap flags (default: -Xms64m -Xmx256m)
#   KAFKA_START_TIMEOUT    seconds to wait for the first metadata answer (default 90)
#   KAFKA_STOP_TIMEOUT     seconds between SIGTERM and SIGKILL (default 30)
#   KAFKA_HOST             address the plaintext client listener binds and
#                          advertises (default 127.0.0.1; hack/e2e.sh uses the
#                          test cluster's bridge address so that pods reach it)
#   KAFKA_SECURED          1 (default): also run the secured listeners; 0: plaintext only
#
# Secured listeners (KAFKA_SECURED=1): besides PLAINTEXT, a SASL_SSL listener
# (SCRAM-SHA-512; the user kafkasend-scram is created when the storage is
# formatted) and an mTLS listener (SSL, client certificate required), with
# the test CA and certificates of hack/certs.sh (bin/certs/, Strimzi layout).
# "env" prints KAFKASEND_TEST_BROKERS, KAFKASEND_TEST_SASL_BROKERS,
# KAFKASEND_TEST_MTLS_BROKERS, KAFKASEND_TEST_KAFKA_CA (the cluster CA file),
# KAFKASEND_TEST_SCRAM_USER, KAFKASEND_TEST_SCRAM_SECRET (directory with the
# key "password") and KAFKASEND_TEST_MTLS_SECRET (directory with user.crt,
# user.key, ca.crt).
#
# Needs OpenJDK 17+, Maven (for "libs") and Go (for the readiness probe).
# Everything lives under bin/kafka/: libs/ (jars), run/ (config, data, logs,
# pid file, bootstrap address).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
POM=$ROOT/hack/kafka/pom.xml
LOG4J=$ROOT/hack/kafka/log4j2.xml
BASE=$ROOT/bin/kafka
LIBS=$BASE/libs
RUN=$BASE/run
PROBE=$BASE/kafkaprobe
PIDFILE=$RUN/kafka.pid
BOOTSTRAP=$RUN/bootstrap
CONF=$RUN/server.properties
SECURED=${KAFKA_SECURED:-1}
CERTS=$ROOT/bin/certs
SCRAM_USER=kafkasend-scram
MTLS_USER=kafkasend-mtls
START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
HEAP=${KAFKA_HEAP:--Xms64m -Xmx256m}
HOST=${KAFKA_HOST:-127.0.0.1}

log() { echo "kafka.sh: $*" >&2; }
die() { log "$*"; exit 1; }

pom_sum() { sha256sum "$POM" | cut -d' ' -f1; }

# libs makes sure bin/kafka/libs holds the jars of hack/kafka/pom.xml. A stamp
# with the pom's checksum marks a complete copy; a changed pom refetches.
libs() {
  local sum stamp=$LIBS/.pom.sha256
  sum=$(pom_sum)
  if [[ -f $stamp && $(cat "$stamp") == "$sum" ]] && compgen -G "$LIBS/kafka_2.13-*.jar" >/dev/null; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found: install Maven (and OpenJDK 17+)"
  log "fetching Kafka jars with Maven into $LIBS"
  local tmp=$BASE/libs.tmp.$$
  rm -rf "$tmp"
  mkdir -p "$BASE"
  # -B: no progress bars; -q: errors only. Maven 3.8 still prints stray colour
  # resets, hence the sed (pipefail keeps mvn's exit status).
  if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" -DincludeScope=runtime 2>&1 | sed -e 's/\x1b\[[0-9;]*m//g' -e '/^$/d' >&2; then
    rm -rf "$tmp"
    die "mvn dependency:copy-dependencies failed"
  fi
  echo "$sum" >"$tmp/.pom.sha256"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
}

# probe builds the readiness probe when its source or the module changed.
probe() {
  local src=$ROOT/hack/kafka/kafkaprobe/main.go
  if [[ ! -x $PROBE || $src -nt $PROBE || $ROOT/go.mod -nt $PROBE || $ROOT/go.sum -nt $PROBE ]]; then
    (cd "$ROOT" && go build -o "$PROBE.tmp" ./hack/kafka/kafkaprobe) || die "building kafkaprobe failed"
    mv "$PROBE.tmp" "$PROBE"
  fi
}

# pid prints the broker's pid when the pid file names a live broker of ours.
pid() {
  [[ -f $PIDFILE ]] || return 1
  local p
  p=$(cat "$PIDFILE")
  [[ $p =~ ^[0-9]+$ ]] || return 1
  # Guard against a recycled pid: the process must run our config file.
  tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "kafka.Kafka $CONF" || return 1
  echo "$p"
}

healthy() {
  [[ -f $BOOTSTRAP ]] && "$PROBE" wait -timeout "${1:-5s}" "$(cat "$BOOTSTRAP")" 2>/dev/null
}

# write_secured_config appends the SASL_SSL and mTLS listeners to the
# PLAINTEXT configuration written by write_config.
write_secured_config() {
  local sport=$1 mport=$2
  sed -i \
    -e "s|^listeners=\(.*\)$|listeners=\1,SASL_SSL://127.0.0.1:$sport,MTLS://127.0.0.1:$mport|" \
    -e "s|^advertised.listeners=\(.*\)$|advertised.listeners=\1,SASL_SSL://127.0.0.1:$sport,MTLS://127.0.0.1:$mport|" \
    -e "s|^listener.security.protocol.map=\(.*\)$|listener.security.protocol.map=\1,SASL_SSL:SASL_SSL,MTLS:SSL|" \
    "$CONF"
  cat >>"$CONF" <<EOF

# Secured listeners (hack/kafka.sh write_secured_config), certificates from
# hack/certs.sh. No authorizer: authenticated principals may do anything.
ssl.keystore.type=PEM
ssl.keystore.location=$CERTS/broker/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$CERTS/cluster-ca-cert/ca.crt
listener.name.mtls.ssl.client.auth=required
listener.name.sasl_ssl.ssl.client.auth=none
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
}

# wait_port waits until addr accepts TCP connections.
wait_port() {
  local addr=$1 i
  for ((i = 0; i < START_TIMEOUT * 10; i++)); do
    if (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

write_config() {
  local port=$1 cport=$2
  cat >"$CONF" <<EOF
# Generated by hack/kafka.sh: single-node KRaft broker for tests, loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://$HOST:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://$HOST:$port,CONTROLLER://127.0.0.1:$cport
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$RUN/data
metadata.log.dir=$RUN/meta

# Tests create their topics explicitly.
auto.create.topics.enable=false
delete.topic.enable=true
num.partitions=1
default.replication.factor=1
min.insync.replicas=1

# Internal topics on one broker.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# Small machine: few threads, small buffers.
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608

# Short-lived data: small segments, bounded retention.
log.segment.bytes=16777216
log.retention.ms=3600000
log.retention.bytes=536870912
log.retention.check.interval.ms=60000
log.segment.delete.delay.ms=1000
file.delete.delay.ms=1000
EOF
}

start() {
  libs
  probe
  local p
  if p=$(pid); then
    if healthy "${START_TIMEOUT}s"; then
      cat "$BOOTSTRAP"
      return 0
    fi
    log "broker pid $p does not answer; restarting it"
    stop_broker
  fi
  command -v java >/dev/null || die "java not found: install OpenJDK 17+"

  rm -rf "$RUN"
  mkdir -p "$RUN"
  local port=${KAFKA_PORT:-} cport=${KAFKA_CONTROLLER_PORT:-} free
  mapfile -t free < <("$PROBE" ports 4)
  if [[ -z $port || -z $cport ]]; then
    port=${port:-${free[0]}}
    cport=${cport:-${free[1]}}
  fi
  [[ $port != "$cport" ]] || die "client and controller ports are both $port"
  write_config "$port" "$cport"
  local scram=()
  if [[ $SECURED == 1 ]]; then
    "$ROOT/hack/certs.sh" "$CERTS" >/dev/null || die "making the test certificates failed (hack/certs.sh)"
    write_secured_config "${free[2]}" "${free[3]}"
    echo "127.0.0.1:${free[2]}" >"$RUN/sasl_bootstrap"
    echo "127.0.0.1:${free[3]}" >"$RUN/mtls_bootstrap"
    scram=(--add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$(cat "$CERTS/$SCRAM_USER/password")]")
  fi

  local began cluster_id
  began=$(date +%s%N)
  # A Kafka cluster id is 16 random bytes in unpadded URL-safe base64; Kafka's
  # own generator avoids a leading "-" so that the id never looks like a flag.
  cluster_id=-
  while [[ $cluster_id == -* ]]; do
    cluster_id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  done
  local jvm=(java -Dlog4j2.configurationFile="$LOG4J" -Dkafka.logs.dir="$RUN" -Djava.awt.headless=true)
  if ! "${jvm[@]}" -Xmx128m -XX:TieredStopAtLevel=1 -cp "$LIBS/*" kafka.tools.StorageTool \
    format --standalone --cluster-id "$cluster_id" --config "$CONF" "${scram[@]}" >"$RUN/format.log" 2>&1; then
    cat "$RUN/format.log" >&2
    die "formatting the storage failed"
  fi

  local formatted
  formatted=$(date +%s%N)

  echo "$HOST:$port" >"$BOOTSTRAP"
  : >"$RUN/kafka.out"
  launch || die "broker did not start"
  local ready
  ready=$(date +%s%N)
  log "broker pid $(cat "$PIDFILE") ready on $HOST:$port: format $(((formatted - began) / 1000000)) ms, start to first metadata answer $(((ready - formatted) / 1000000)) ms"
  cat "$BOOTSTRAP"
}

# launch starts the broker's JVM on the configuration and data in $RUN and
# waits until every listener answers.
launch() {
  # -XX:+ExitOnOutOfMemoryError: a broken broker must fail loudly, not linger.
  # "9>&-": the broker must not inherit (and so hold) the lock.
  local jvm=(java -Dlog4j2.configurationFile="$LOG4J" -Dkafka.logs.dir="$RUN" -Djava.awt.headless=true)
  # shellcheck disable=SC2086 # HEAP holds several flags.
  nohup "${jvm[@]}" $HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -cp "$LIBS/*" kafka.Kafka "$CONF" </dev/null >>"$RUN/kafka.out" 2>&1 9>&- &
  echo $! >"$PIDFILE"
  if ! "$PROBE" wait -timeout "${START_TIMEOUT}s" "$(cat "$BOOTSTRAP")" 2>"$RUN/probe.log"; then
    cat "$RUN/probe.log" >&2
    tail -n 30 "$RUN/kafka.out" "$RUN/server.log" >&2 2>/dev/null || true
    stop_broker
    log "broker did not answer a metadata request within ${START_TIMEOUT}s"
    return 1
  fi
  local f
  for f in "$RUN/sasl_bootstrap" "$RUN/mtls_bootstrap"; do
    [[ -f $f ]] || continue
    if ! wait_port "$(cat "$f")"; then
      tail -n 30 "$RUN/server.log" >&2 2>/dev/null || true
      stop_broker
      log "secured listener $(cat "$f") did not open within ${START_TIMEOUT}s"
      return 1
    fi
  done
}

# kill_jvm sends SIGTERM, waits, then SIGKILL; the data stays.
kill_jvm() {
  local p i
  if p=$(pid); then
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$p" 2>/dev/null; then
      log "broker pid $p ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$p" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
      done
    fi
    kill -0 "$p" 2>/dev/null && die "broker pid $p survived SIGKILL"
  fi
  rm -f "$PIDFILE"
}

# stop_broker stops the JVM and removes the broker's data.
stop_broker() {
  kill_jvm
  # Keep the logs for a post-mortem; drop data, addresses and pid.
  rm -rf "$RUN/data" "$RUN/meta" "$BOOTSTRAP" "$RUN/sasl_bootstrap" "$RUN/mtls_bootstrap"
}

# restart stops the running broker's JVM and starts it again on its data.
restart() {
  pid >/dev/null || die "no broker running to restart"
  local began
  began=$(date +%s%N)
  kill_jvm
  launch || die "broker did not come back"
  log "broker restarted in $((($(date +%s%N) - began) / 1000000)) ms"
}

# print_env prints the test environment of the running broker.
print_env() {
  pid >/dev/null || die "no broker running"
  echo "KAFKASEND_TEST_BROKERS=$(cat "$BOOTSTRAP")"
  if [[ -f $RUN/sasl_bootstrap ]]; then
    echo "KAFKASEND_TEST_SASL_BROKERS=$(cat "$RUN/sasl_bootstrap")"
    echo "KAFKASEND_TEST_MTLS_BROKERS=$(cat "$RUN/mtls_bootstrap")"
    echo "KAFKASEND_TEST_KAFKA_CA=$CERTS/cluster-ca-cert/ca.crt"
    echo "KAFKASEND_TEST_SCRAM_USER=$SCRAM_USER"
    echo "KAFKASEND_TEST_SCRAM_SECRET=$CERTS/$SCRAM_USER"
    echo "KAFKASEND_TEST_MTLS_SECRET=$CERTS/$MTLS_USER"
  fi
}

status() {
  local p
  if p=$(pid); then
    probe
    if healthy 5s; then
      echo "running $(cat "$BOOTSTRAP") pid $p"
      return 0
    fi
    echo "unhealthy pid $p"
    return 1
  fi
  echo "stopped"
  return 1
}

main() {
  local cmd=${1:-}
  case $cmd in
  libs | start | stop | status | restart | env) ;;
  *)
    echo "usage: $0 libs|start|stop|status|restart|env" >&2
    exit 2
    ;;
  esac
  mkdir -p "$BASE"
  # One command at a time: concurrent starts would race on bin/kafka/run.
  exec 9>"$BASE/.lock"
  flock -w $((START_TIMEOUT + STOP_TIMEOUT + 600)) 9 || die "another hack/kafka.sh holds $BASE/.lock"
  case $cmd in
  libs) libs ;;
  start) start ;;
  stop) stop_broker ;;
  status) status ;;
  restart) restart ;;
  env) print_env ;;
  esac
}

main "$@"
