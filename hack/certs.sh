#!/usr/bin/env bash
# Makes the test PKI and Kafka users of the secured test broker
# (hack/kafka.sh), laid out the way Strimzi hands them to applications:
#
#   bin/certs/cluster-ca-cert/ca.crt           cluster CA (Secret <cluster>-cluster-ca-cert, key ca.crt)
#   bin/certs/kafkasend-mtls/user.crt,user.key  TLS KafkaUser (Secret keys user.crt, user.key, ca.crt)
#   bin/certs/kafkasend-mtls/ca.crt
#   bin/certs/kafkasend-scram/password          SCRAM-SHA-512 KafkaUser (Secret key password)
#   bin/certs/broker/broker.pem                 the broker's key and certificate (PEM keystore)
#   bin/certs/ca/ca.key                         the CA key (signs the others; never mounted)
#
#   hack/certs.sh [DIR]   make what is missing or expires within a day; print DIR
#
# The certificates are valid for 30 days for 127.0.0.1, ::1 and localhost
# (KAFKA_CERT_HOSTS adds names or addresses, comma-separated). Needs openssl.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${1:-$ROOT/bin/certs}
DAYS=30
MTLS_USER=kafkasend-mtls
SCRAM_USER=kafkasend-scram

log() { echo "certs.sh: $*" >&2; }
die() { log "$*"; exit 1; }

command -v openssl >/dev/null || die "openssl not found: install it (apt-get install openssl)"

# fresh reports whether a certificate exists and is valid for one more day.
fresh() { [[ -f $1 ]] && openssl x509 -checkend 86400 -noout -in "$1" >/dev/null 2>&1; }

san() {
  local s="DNS:localhost,IP:127.0.0.1,IP:::1" h
  IFS=, read -ra extra <<<"${KAFKA_CERT_HOSTS:-}"
  for h in "${extra[@]}"; do
    [[ -n $h ]] || continue
    if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then s+=",IP:$h"; else s+=",DNS:$h"; fi
  done
  echo "$s"
}

# sign NAME SUBJECT EXT OUTDIR: a P-256 key (PKCS#8, unencrypted) and a
# certificate signed by the CA.
sign() {
  local name=$1 subj=$2 ext=$3 out=$4 tmp
  tmp=$(mktemp -d)
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/key" 2>/dev/null
  openssl req -new -key "$tmp/key" -subj "$subj" -out "$tmp/csr" 2>/dev/null
  printf '%s\n' "$ext" >"$tmp/ext"
  openssl x509 -req -in "$tmp/csr" -CA "$DIR/ca/ca.crt" -CAkey "$DIR/ca/ca.key" -CAcreateserial \
    -days "$DAYS" -sha256 -extfile "$tmp/ext" -out "$tmp/crt" 2>/dev/null
  mkdir -p "$out"
  chmod 600 "$tmp/key"
  mv "$tmp/key" "$out/$name.key"
  mv "$tmp/crt" "$out/$name.crt"
  rm -rf "$tmp"
}

mkdir -p "$DIR"
umask 077
renewed=0
if ! fresh "$DIR/ca/ca.crt"; then
  log "making a test CA in $DIR/ca"
  rm -rf "$DIR/ca"
  mkdir -p "$DIR/ca"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$DIR/ca/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$DIR/ca/ca.key" -subj "/O=kafkasend test/CN=kafkasend test cluster CA" \
    -days $((DAYS + 1)) -sha256 -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$DIR/ca/ca.crt" 2>/dev/null
  renewed=1
fi
mkdir -p "$DIR/cluster-ca-cert"
cp "$DIR/ca/ca.crt" "$DIR/cluster-ca-cert/ca.crt"

hosts=$(san)
if [[ $renewed == 1 ]] || ! fresh "$DIR/broker/broker.crt" || [[ $(cat "$DIR/broker/hosts" 2>/dev/null) != "$hosts" ]]; then
  sign broker "/O=kafkasend test/CN=kafka-broker" \
    "subjectAltName=$hosts
extendedKeyUsage=serverAuth
keyUsage=critical,digitalSignature" "$DIR/broker"
  cat "$DIR/broker/broker.key" "$DIR/broker/broker.crt" >"$DIR/broker/broker.pem"
  echo "$hosts" >"$DIR/broker/hosts"
fi
if [[ $renewed == 1 ]] || ! fresh "$DIR/$MTLS_USER/user.crt"; then
  # Strimzi names a TLS user's certificate CN=<user name>.
  sign user "/CN=$MTLS_USER" "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature" "$DIR/$MTLS_USER"
fi
cp "$DIR/ca/ca.crt" "$DIR/$MTLS_USER/ca.crt"
if [[ ! -s $DIR/$SCRAM_USER/password ]]; then
  mkdir -p "$DIR/$SCRAM_USER"
  # Strimzi's generated passwords are 32 alphanumeric characters, no newline.
  printf '%s' "$(openssl rand -hex 16)" >"$DIR/$SCRAM_USER/password"
fi
echo "$DIR"
