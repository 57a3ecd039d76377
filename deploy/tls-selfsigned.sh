#!/bin/sh
# Run by the nginx image before nginx starts (mounted in /docker-entrypoint.d/):
# when no certificate is in place, makes a self-signed one so that
# `docker compose up` serves HTTPS at once. For a real deployment put your
# certificate and key in the `tls` volume as tls.crt and tls.key (or mount a
# directory holding them at /etc/nginx/tls); this script then does nothing.
set -eu
dir="${TLS_DIR:-/etc/nginx/tls}"
name="${TLS_COMMON_NAME:-localhost}"
if [ -s "$dir/tls.crt" ] && [ -s "$dir/tls.key" ]; then
  exit 0
fi
mkdir -p "$dir"
names="DNS:localhost,IP:127.0.0.1"
if [ "$name" != localhost ]; then
  names="DNS:$name,$names"
fi
umask 077
openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=$name" \
  -addext "subjectAltName=$names" \
  -keyout "$dir/tls.key" -out "$dir/tls.crt" 2>/dev/null
chmod 644 "$dir/tls.crt"
echo "$0: made a self-signed certificate for $name in $dir (browsers will warn; replace it for production)"
