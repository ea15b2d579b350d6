#!/bin/sh
# Installs the Debian packages tern needs to build and test, skipping what is
# already there. Safe to run repeatedly; run as root (or with sudo available).
set -eu

PKGS="build-essential cmake pkg-config libevent-dev libsqlite3-dev libssl-dev
      libargon2-dev libcrypt-dev openssl sqlite3 python3 python3-pytest curl
      swaks fetchmail procps"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
# pytest may come from pip rather than Debian; accept either.
if python3 -c 'import pytest' 2>/dev/null; then
	missing=$(echo "$missing" | sed 's/ python3-pytest//')
fi
# Java 17 and Maven fetch and run the real Cassandra for the tests; the
# machine may already have them from elsewhere than Debian.
command -v java >/dev/null 2>&1 || missing="$missing openjdk-17-jdk-headless"
command -v mvn >/dev/null 2>&1 || missing="$missing maven"
missing=$(echo $missing)
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing $missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing
