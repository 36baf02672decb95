#!/usr/bin/env bash
# Makes a cluster CA and node certificates for TLS with openssl.
#
#   scripts/gen-tls.sh DIR NAME...   DIR/ca.pem (+ ca.key), and DIR/NAME.pem + DIR/NAME.key each
#
# The CA is created once and reused by later calls on the same DIR. Every node certificate
# carries subjectAltName DNS:tessera (the fixed name clients verify servers against, see
# rpc/src/tls.rs) plus IP:127.0.0.1, and both extended key usages, serverAuth and clientAuth,
# since every node both accepts and opens connections. Keys are ECDSA P-256. DAYS (3650) sets
# the validity. For a real cluster use your own CA and keep ca.key off the nodes.
set -euo pipefail

dir=${1:?usage: gen-tls.sh DIR NAME...}
shift
(($# > 0)) || { echo "gen-tls: name at least one node certificate" >&2; exit 1; }
days=${DAYS:-3650}
command -v openssl >/dev/null || { echo "gen-tls: openssl not found (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [[ ! -f $dir/ca.pem ]]; then
  key "$dir/ca.key"
  # A name of its own, so a certificate from another cluster's CA is told apart by issuer.
  openssl req -x509 -new -key "$dir/ca.key" -days "$days" \
    -subj "/CN=Tessera cluster CA $(openssl rand -hex 4)" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.pem" 2>/dev/null
fi

ext=$(mktemp)
trap 'rm -f "$ext"' EXIT
cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:tessera,IP:127.0.0.1
EXT
for name in "$@"; do
  key "$dir/$name.key"
  openssl req -new -key "$dir/$name.key" -subj "/CN=$name" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days "$days" -extfile "$ext" -out "$dir/$name.pem" 2>/dev/null
  rm -f "$dir/$name.csr"
done
chmod 644 "$dir"/*.pem
