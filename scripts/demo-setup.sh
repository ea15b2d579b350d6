#!/bin/sh
# Prepares the demo: a self-signed certificate under ./var/tls and an admin
# API token in ./var/admin.token when they are missing, and a hint on how
# to add a user, connect, and reach the admin API.
set -eu
BUILD=${1:-build}
CONFIG=${2:-etc/tern-demo.conf}
mkdir -p var/tls
if [ ! -f var/tls/cert.pem ] || [ ! -f var/tls/key.pem ]; then
	echo "demo: generating a self-signed certificate in var/tls/"
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=localhost" \
		-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout var/tls/key.pem -out var/tls/cert.pem 2>/dev/null
	chmod 600 var/tls/key.pem
fi
if [ ! -s var/admin.token ]; then
	echo "demo: generating an admin API token in var/admin.token"
	(umask 077 && openssl rand -hex 32 > var/admin.token)
fi
chmod 600 var/admin.token
cat <<HINT

tern is starting with $CONFIG (data in ./var). In another terminal:

  $BUILD/tern -c $CONFIG domain add example.test
  echo 'secret' | $BUILD/tern -c $CONFIG user add alice@example.test
  swaks --server 127.0.0.1:2525 --to alice@example.test --from bob@example.org
  curl -s pop3://127.0.0.1:1110/1 -u alice@example.test:secret

The admin HTTP API (docs/admin-api.md) listens on 127.0.0.1:8080:

  curl -s -H "Authorization: Bearer \$(cat var/admin.token)" http://127.0.0.1:8080/domains
  curl -s -X PUT -H "Authorization: Bearer \$(cat var/admin.token)" \\
       -d '{"password": "secret"}' http://127.0.0.1:8080/users/bob@example.test

POP3 1110 (STLS) and 1995 (TLS), SMTP 2525 (STARTTLS), LMTP 2424, admin 8080.
Stop with Ctrl-C.

HINT
