#!/usr/bin/env bash
# Make test PKI for prod.conf: the fleet CA (ca.{crt,key}: signs the broker and every device), a separate
# services CA (services-ca.{crt,key}: signs cloud services), the broker certificate (SAN localhost, 127.0.0.1, ::1)
# and one client certificate per CN.
# Usage: make_certs.sh OUT_DIR [CN ...]   e.g. make_certs.sh certs s001/d001 s001/d002 cloud fleet-admin
#   CN with a "/" (STORE/DEVICE): a device certificate from the fleet CA, files STORE_DEVICE.{crt,key}
#   CN without "/" (cloud, fleet-admin): a service certificate from the services CA, files CN.{crt,key}
# Also makes rogue.{crt,key}: a self-signed certificate with the first CN from a foreign CA (must be refused).
# More devices later: `edge fleet provision STORE/DEVICE --ca-dir OUT_DIR` (same fleet CA, Python).
# Test material only: keys are unencrypted, the CA keys sit next to the certificates.
set -euo pipefail
out=${1:?usage: make_certs.sh OUT_DIR [CN ...]}
shift
mkdir -p "$out"
cd "$out"
days=825
subj() { printf '/CN=%s' "${1//\//\\/}"; }  # a "/" inside a CN value is escaped for -subj
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt -subj "/CN=storefront-edge test fleet CA" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout services-ca.key -out services-ca.crt -subj "/CN=storefront-edge test services CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
printf "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days $days -out server.crt -extfile server.ext 2>/dev/null
printf "extendedKeyUsage=clientAuth\n" > client.ext
for cn in "$@"; do
  if [[ "$cn" == */* ]]; then ca=ca; f=${cn//\//_}; else ca=services-ca; f=$cn; fi
  openssl req -newkey rsa:2048 -nodes -keyout "$f.key" -out "$f.csr" -subj "$(subj "$cn")" 2>/dev/null
  openssl x509 -req -in "$f.csr" -CA $ca.crt -CAkey $ca.key -CAcreateserial -days $days -out "$f.crt" -extfile client.ext 2>/dev/null
  rm -f "$f.csr"
done
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -keyout rogue.key -out rogue.crt -subj "$(subj "${1:-rogue}")" 2>/dev/null
rm -f server.csr server.ext client.ext
chmod 600 ./*.key
echo "certificates in $(pwd): ca.crt services-ca.crt server.{crt,key} rogue.crt and $# client certificate(s)"
