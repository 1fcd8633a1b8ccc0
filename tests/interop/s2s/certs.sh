#!/usr/bin/env bash
# A throw-away certificate authority and one certificate per XMPP domain,
# signed by it, for the federation tests (openssl only).
#
# usage: certs.sh DIR DOMAIN...
#
# Writes DIR/ca.pem and DIR/ca.key (made once, kept if present) and, for
# each DOMAIN, DIR/DOMAIN.pem (the certificate followed by the CA's, a
# chain servers can send whole) and DIR/DOMAIN.key. A domain's
# certificate names DOMAIN and *.DOMAIN as dNSName (RFC 6125; XEP-0178
# accepts them for server-to-server) and allows both TLS server and TLS
# client use: in server-to-server TLS the connecting server presents it
# as a client certificate, which OpenSSL-based servers check for the
# clientAuth purpose. Keys are P-256; everything is valid for 30 days.
#
# A server told to trust DIR/ca.pem can authenticate its peers with SASL
# EXTERNAL (XEP-0178); one that is not falls back to Server Dialback
# (XEP-0220). Nothing here is secret: never reuse these files elsewhere.
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 DIR DOMAIN..." >&2; exit 2; }
dir=$1
shift
mkdir -p "$dir"

if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/ca.key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 30 -subj "/CN=xmppd federation test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

for domain in "$@"; do
  [ -s "$dir/$domain.pem" ] && [ -s "$dir/$domain.key" ] && continue
  ext=$(mktemp)
  cat > "$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:$domain,DNS:*.$domain
EXT
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/$domain.key" -out "$dir/$domain.csr" -subj "/CN=$domain" 2>/dev/null
  openssl x509 -req -in "$dir/$domain.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 30 -extfile "$ext" -out "$dir/$domain.crt" 2>/dev/null
  cat "$dir/$domain.crt" "$dir/ca.pem" > "$dir/$domain.pem"
  rm -f "$ext" "$dir/$domain.csr" "$dir/$domain.crt"
  openssl verify -CAfile "$dir/ca.pem" -purpose sslclient "$dir/$domain.pem" >/dev/null
  openssl verify -CAfile "$dir/ca.pem" -purpose sslserver "$dir/$domain.pem" >/dev/null
done
