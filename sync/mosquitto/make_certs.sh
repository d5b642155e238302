#!/usr/bin/env bash
# Make a test CA, a broker certificate (SAN localhost, 127.0.0.1, ::1) and device/client certificates.
# Usage: make_certs.sh OUT_DIR [CN ...]      e.g. make_certs.sh certs s001.d001 s001.d002 cloud
# Also makes rogue.{crt,key}: a self-signed "device" certificate from a foreign CA (must be refused).
# Test material only: keys are unencrypted, the CA key sits next to the certificates.
set -euo pipefail
out=${1:?usage: make_certs.sh OUT_DIR [CN ...]}
shift
mkdir -p "$out"
cd "$out"
days=825
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt -subj "/CN=storefront-edge test CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
printf "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days $days -out server.crt -extfile server.ext 2>/dev/null
printf "extendedKeyUsage=clientAuth\n" > client.ext
for cn in "$@"; do
  openssl req -newkey rsa:2048 -nodes -keyout "$cn.key" -out "$cn.csr" -subj "/CN=$cn" 2>/dev/null
  openssl x509 -req -in "$cn.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days $days -out "$cn.crt" -extfile client.ext 2>/dev/null
  rm -f "$cn.csr"
done
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -keyout rogue.key -out rogue.crt -subj "/CN=${1:-rogue}" 2>/dev/null
rm -f server.csr server.ext client.ext
chmod 600 ./*.key
echo "certificates in $(pwd): ca.crt server.{crt,key} ${*/%/.crt} rogue.crt"
