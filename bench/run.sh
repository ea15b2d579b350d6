#!/bin/sh
# bench/run.sh BUILD_DIR: tern and Dovecot side by side, same machine, same
# run, same load (issue 6). Called by `make bench` as `sh bench/run.sh build`.
#
# It installs Dovecot when missing (Debian: dovecot-pop3d, dovecot-lmtpd),
# configures it and tern in a temporary directory on loopback ports,
# provisions the same users (same password hashes) and the same messages
# (over LMTP) in both, runs the workloads with bench/loadgen.c, and prints
# one table: workload, tern, Dovecot, ratio, target. Every process it
# starts is stopped on exit; nothing listens beyond 127.0.0.1.
#
# Knobs (environment):
#   BENCH_QUICK=1          small sizes and short runs, to check the set-up
#   BENCH_USERS=100 BENCH_MSGS=50 BENCH_SIZE=10240    the POP3 mailboxes
#   BENCH_SECS=20          duration of each POP3 and ingest run
#   BENCH_ROUNDS=1         repeat those runs, alternating the servers; medians
#   BENCH_CONC="16 64"     POP3 concurrency levels; BENCH_INGEST_CONC=16
#   BENCH_IDLE=10000       idle sessions (BENCH_IDLE_DOVECOT, default the same)
#   BENCH_BIG=100000 BENCH_BIG_SIZE=2048 BENCH_BIG_DOVECOT=0   large mailbox
#   BENCH_HUGE=26214400    the single large message for the RSS check
#   BENCH_RETR_MIB="1 5 25"  RETR time of one message of each size (tern)
#   BENCH_SCHEME=argon2id  password hash both servers verify (argon2id as
#                          tern makes them, sha512-crypt, or sha512-crypt-1000:
#                          the fewest rounds, about the cost of no hash)
#   BENCH_DOVECOT_AUTH_CACHE=10M  Dovecot's auth_cache_size. The default is
#                          the fair comparison: tern caches successful
#                          password checks (auth cache_ttl, on by default),
#                          so Dovecot gets its cache as an operator tuning it
#                          would set it. 0 = Dovecot's own default (no cache);
#                          the table's title says which was run.
#   BENCH_PORT=20000       base port: tern on +25/+24/+110, Dovecot on +1110/+1024
#   BENCH_KEEP=1           keep the temporary directory (logs, databases)
#   BENCH_OUT=FILE         also write the table and the raw RESULT lines to FILE
set -eu

BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac

if [ "${BENCH_QUICK:-0}" = 1 ]; then
	: "${BENCH_USERS:=20}" "${BENCH_MSGS:=20}" "${BENCH_SECS:=5}" "${BENCH_IDLE:=500}"
	: "${BENCH_BIG:=5000}" "${BENCH_HUGE:=26214400}"
fi
USERS=${BENCH_USERS:-100}
MSGS=${BENCH_MSGS:-50}
SIZE=${BENCH_SIZE:-10240}
SECS=${BENCH_SECS:-20}
ROUNDS=${BENCH_ROUNDS:-1}
CONCS=${BENCH_CONC:-16 64}
ICONC=${BENCH_INGEST_CONC:-16}
IDLE=${BENCH_IDLE:-10000}
IDLE_DOVECOT=${BENCH_IDLE_DOVECOT:-$IDLE}
BIG=${BENCH_BIG:-100000}
BIG_SIZE=${BENCH_BIG_SIZE:-2048}
BIG_DOVECOT=${BENCH_BIG_DOVECOT:-0}
HUGE=${BENCH_HUGE:-26214400}
RETR_MIB=${BENCH_RETR_MIB:-1 5 25}
SCHEME=${BENCH_SCHEME:-argon2id}
D_AUTH_CACHE=${BENCH_DOVECOT_AUTH_CACHE:-10M}
PORT=${BENCH_PORT:-20000}
PASSWORD=bench-secret
DOMAIN=bench.test

T_SMTP=$((PORT + 25)); T_LMTP=$((PORT + 24)); T_POP3=$((PORT + 110))
D_POP3=$((PORT + 1110)); D_LMTP=$((PORT + 1024))

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }

[ -x "$BUILD/tern" ] || die "no $BUILD/tern: build it first (make build)"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

# ---- Dovecot, installed when missing ----
need=""
for p in dovecot-pop3d dovecot-lmtpd; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
	log "installing$need"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -qq $need >/dev/null
fi
DOVECOT=$(command -v dovecot || echo /usr/sbin/dovecot)
[ -x "$DOVECOT" ] || die "dovecot is not installed"

WORK=$(mktemp -d /tmp/tern-bench.XXXXXX)
# Dovecot's unprivileged processes read the users file and the mail below.
chmod 755 "$WORK"
TERN_PID=""
LG_PID=""
D_CONF=$WORK/dovecot/dovecot.conf

stop_tern() {
	if [ -n "$TERN_PID" ] && kill -0 "$TERN_PID" 2>/dev/null; then
		kill -TERM "$TERN_PID" 2>/dev/null || true
		i=0
		while kill -0 "$TERN_PID" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$TERN_PID" 2>/dev/null || true
		wait "$TERN_PID" 2>/dev/null || true
	fi
	TERN_PID=""
}
stop_dovecot() {
	if [ -f "$WORK/dovecot/run/master.pid" ]; then
		pid=$(cat "$WORK/dovecot/run/master.pid")
		kill -TERM "$pid" 2>/dev/null || true
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done
		kill -KILL "$pid" 2>/dev/null || true
		rm -f "$WORK/dovecot/run/master.pid"
	fi
}
cleanup() {
	trap - EXIT INT TERM
	[ -n "$LG_PID" ] && kill -TERM "$LG_PID" 2>/dev/null || true
	stop_tern
	stop_dovecot
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the load generator ----
LOADGEN=$BUILD/bench/tern-loadgen
if [ ! -x "$LOADGEN" ]; then
	# Not in the CMake tree of this build: compile it on the side.
	LOADGEN=$WORK/tern-loadgen
	${CC:-cc} -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -o "$LOADGEN" "$ROOT/bench/loadgen.c" ||
		die "cannot build the load generator"
fi

RESULTS=$WORK/results.txt
: >"$RESULTS"
ERRORS=0

# lg NAME ARGS...: runs the load generator, keeps its RESULT line as NAME.
# (sh has no local variables: the helpers use prefixed names.)
lg() {
	lg_name=$1
	shift
	lg_out=$WORK/lg-$lg_name.out
	if "$LOADGEN" "$@" -l "$lg_name" >"$lg_out" 2>"$WORK/lg-$lg_name.err"; then :; else
		log "$lg_name: the load generator reported errors:"
		grep -v '^RESULT' "$lg_out" >&2 || true
		head -5 "$WORK/lg-$lg_name.err" >&2 || true
		ERRORS=$((ERRORS + 1))
	fi
	grep '^RESULT' "$lg_out" >>"$RESULTS" || die "$lg_name: no result (see $lg_out)"
}
# lgc NAME PIDS-COMMAND ARGS...: lg, and the server's CPU seconds during the
# run (all its processes, see cpu_ticks) as NAME's server_cpu_s; with the
# load generator's own cpu_user_s + cpu_sys_s, CPU per 1,000 messages for
# each side (cpu_per_k).
lgc() {
	lgc_name=$1 lgc_pids=$2
	shift 2
	# shellcheck disable=SC2046
	lgc_a=$(cpu_ticks $($lgc_pids))
	lg "$lgc_name" "$@"
	# shellcheck disable=SC2046
	lgc_b=$(cpu_ticks $($lgc_pids))
	set_val "$lgc_name" server_cpu_s "$(awk -v a="$lgc_a" -v b="$lgc_b" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / t }')"
}
# cpu_per_k NAME SIDE: CPU seconds per 1,000 messages of the median round of
# NAME (SIDE server or loadgen).
cpu_per_k() {
	awk -v n="label=$1-r" -v side="$2" '
		{ found = 0; for (i = 2; i <= NF; i++) if (index($i, n) == 1) { found = 1; l = substr($i, 7) } }
		found { for (i = 2; i <= NF; i++) { split($i, kv, "="); f[l, kv[1]] = kv[2] } ls[l] = 1 }
		END {
			m = 0
			for (l in ls) {
				c = side == "server" ? f[l, "server_cpu_s"] : f[l, "cpu_user_s"] + f[l, "cpu_sys_s"]
				if (f[l, "messages"] + 0 > 0 && c != "") v[m++] = c * 1000 / f[l, "messages"]
			}
			if (m == 0) { print "-"; exit }
			for (i = 1; i < m; i++) for (j = i; j > 0 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
			x = m % 2 ? v[(m - 1) / 2] : (v[m / 2 - 1] + v[m / 2]) / 2
			printf "%.3f\n", x
		}' "$RESULTS"
}
# get NAME KEY: a value from NAME's RESULT line.
get() {
	awk -v n="label=$1" -v k="$2" '
		{ found = 0; for (i = 2; i <= NF; i++) if ($i == n) found = 1 }
		found { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) v = kv[2] } }
		END { print (v == "" ? "-" : v) }' "$RESULTS"
}
# med NAME KEY: the median of KEY over the rounds NAME-r1, NAME-r2, ...
med() {
	awk -v n="label=$1-r" -v k="$2" '
		{ found = 0; for (i = 2; i <= NF; i++) if (index($i, n) == 1) found = 1 }
		found { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) v[m++] = kv[2] + 0 } }
		END {
			if (m == 0) { print "-"; exit }
			for (i = 1; i < m; i++) for (j = i; j > 0 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
			x = m % 2 ? v[(m - 1) / 2] : (v[m / 2 - 1] + v[m / 2]) / 2
			print x
		}' "$RESULTS"
}
# set_val NAME KEY VALUE: a figure the script measured itself.
set_val() { echo "RESULT label=$1 $2=$3" >>"$RESULTS"; }

# wait_port PORT: until something listens on 127.0.0.1:PORT (from
# /proc/net/tcp, so nothing beyond procps is needed).
wait_port() {
	hex=$(printf '0100007F:%04X' "$1")
	i=0
	until awk -v a="$hex" '$2 == a && $4 == "0A" { f = 1 } END { exit !f }' /proc/net/tcp; do
		i=$((i + 1))
		[ $i -gt 150 ] && die "nothing listens on 127.0.0.1:$1"
		sleep 0.1
	done
}

# pss_kib PID...: proportional set size summed over the processes, in KiB.
pss_kib() {
	total=0
	for p in "$@"; do
		v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
		total=$((total + ${v:-0}))
	done
	echo $total
}
# dovecot_pids: the master and every process below it.
dovecot_pids() {
	master=$(cat "$WORK/dovecot/run/master.pid")
	echo "$master"
	ps -e -o pid=,ppid= | awk -v m="$master" '$2 == m { print $1 }'
}
tern_pids() { echo "$TERN_PID"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# cpu_ticks PID...: CPU time (utime + stime, clock ticks) of the processes,
# plus the reaped children of the first one (fields 16 and 17): Dovecot's
# per-session processes end during a run, and the master reaps them, so a
# delta of this sum over a run is the CPU every process spent in it.
cpu_ticks() {
	first=1
	total=0
	for p in "$@"; do
		v=$(awk -v f=$first '{ sub(/^.*\) /, ""); t = $12 + $13; if (f) t += $14 + $15; print t }' \
			"/proc/$p/stat" 2>/dev/null || echo 0)
		total=$((total + ${v:-0}))
		first=0
	done
	echo $total
}
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# ---- configuration ----
mkdir -p "$WORK/tern/data" "$WORK/dovecot/run" "$WORK/dovecot/state" "$WORK/dovecot/mail"
cat >"$WORK/tern/tern.conf" <<EOF
[server]
hostname = bench.test
data_dir = $WORK/tern/data

[smtp]
listen = 127.0.0.1:$T_SMTP
max_message_size = 64M

[lmtp]
listen = 127.0.0.1:$T_LMTP

[pop3]
listen = 127.0.0.1:$T_POP3
EOF
# The same with raised connection limits, used only when the defaults
# cannot hold the idle sessions (the table says so).
cp "$WORK/tern/tern.conf" "$WORK/tern/tern-raised.conf"
printf '\n[limits]\nmax_connections = %s\n' $((IDLE + 200)) >>"$WORK/tern/tern-raised.conf"
TERN="$BUILD/tern -c $WORK/tern/tern.conf"

start_tern() {
	conf=${1:-$WORK/tern/tern.conf}
	"$BUILD/tern" -c "$conf" serve >>"$WORK/tern/tern.log" 2>&1 &
	TERN_PID=$!
	wait_port "$T_POP3"
	wait_port "$T_LMTP"
}

# Mail belongs to an ordinary user: Dovecot refuses UID 0 for mail. As
# root that is Debian's "mail" user; otherwise whoever runs the script.
if [ "$(id -u)" -eq 0 ]; then
	D_LOGIN_USER=dovenull
	D_INTERNAL_USER=dovecot
	MAIL_UID=$(id -u mail)
	MAIL_GID=$(id -g mail)
else
	D_LOGIN_USER=$(id -un)
	D_INTERNAL_USER=$(id -un)
	MAIL_UID=$(id -u)
	MAIL_GID=$(id -g)
fi
D_MAXPROC=$((IDLE_DOVECOT + 500))
cat >"$D_CONF" <<EOF
# Dovecot for tern's benchmark: defaults, except what a side-by-side on
# loopback needs and the limits that would otherwise refuse the load.
base_dir = $WORK/dovecot/run
state_dir = $WORK/dovecot/state
instance_name = tern-bench
log_path = $WORK/dovecot/dovecot.log
protocols = pop3 lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
# 0 is Dovecot's default; the fair comparison sets it (BENCH_DOVECOT_AUTH_CACHE).
auth_cache_size = $D_AUTH_CACHE
default_login_user = $D_LOGIN_USER
default_internal_user = $D_INTERNAL_USER
first_valid_uid = $MAIL_UID
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = $WORK/dovecot/users
}
userdb {
  driver = passwd-file
  args = $WORK/dovecot/users
}
default_process_limit = $D_MAXPROC
default_client_limit = $((D_MAXPROC + 1000))
default_vsz_limit = 1G
mail_max_userip_connections = $((IDLE_DOVECOT + 100))
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $D_POP3
  }
  inet_listener pop3s {
    port = 0
  }
}
service pop3 {
  process_limit = $D_MAXPROC
}
service lmtp {
  process_limit = 200
  inet_listener lmtp {
    address = 127.0.0.1
    port = $D_LMTP
  }
}
service anvil {
  client_limit = $((D_MAXPROC + 1000))
}
service auth {
  client_limit = $((D_MAXPROC + 1000))
}
EOF

start_dovecot() {
	# Room for the client limits above (root may raise the hard limit).
	(ulimit -n $((D_MAXPROC * 4)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$DOVECOT" -c "$D_CONF") || die "dovecot did not start (see $WORK/dovecot/dovecot.log)"
	wait_port "$D_POP3"
	wait_port "$D_LMTP"
}

# ---- users: the same password hash in both servers ----
log "work directory $WORK"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
$TERN domain add "$DOMAIN" >/dev/null
case $SCHEME in
argon2id)
	# tern's own hash (argon2id t=2 m=19 MiB), which Dovecot also verifies.
	echo "$PASSWORD" | $TERN user add "hash@$DOMAIN" >/dev/null
	HASH="{ARGON2ID}$(sqlite3 "$WORK/tern/data/tern.db" "SELECT password FROM users WHERE address = 'hash@$DOMAIN'")"
	$TERN user del "hash@$DOMAIN" >/dev/null
	;;
sha512-crypt)
	HASH=$(doveadm pw -s SHA512-CRYPT -p "$PASSWORD")
	;;
sha512-crypt-1000)
	# crypt's fewest rounds (well under a millisecond): the login's hash
	# nearly out of both servers. Dovecot 2.3's auth cache keeps the hash
	# and verifies every cached login against it again, so with argon2id
	# its auth_cache_size saves the passdb lookup but not the hashing.
	HASH=$(doveadm pw -s SHA512-CRYPT -r 1000 -p "$PASSWORD")
	;;
*) die "BENCH_SCHEME is argon2id, sha512-crypt or sha512-crypt-1000" ;;
esac
case $HASH in "{"*"}\$"*) ;; *) die "could not make a password hash: $HASH" ;; esac

D_USERS=$WORK/dovecot/users
: >"$D_USERS"
add_user() {
	echo "$HASH" | $TERN user add "$1@$DOMAIN" >/dev/null
	mkdir -p "$WORK/dovecot/mail/$1"
	printf '%s@%s:%s:%s:%s::%s/dovecot/mail/%s::\n' "$1" "$DOMAIN" "$HASH" "$MAIL_UID" "$MAIL_GID" "$WORK" "$1" >>"$D_USERS"
	chown "$MAIL_UID:$MAIL_GID" "$WORK/dovecot/mail/$1"
}
log "creating $USERS users ($SCHEME), 16 ingest sinks, big, huge"
i=1
while [ $i -le "$USERS" ]; do add_user "user$i"; i=$((i + 1)); done
i=1
while [ $i -le "$ICONC" ]; do add_user "sink$i"; i=$((i + 1)); done
add_user big
add_user huge
for m in $RETR_MIB; do add_user "retr$m"; done

start_tern
start_dovecot
log "tern pid $TERN_PID, dovecot master $(cat "$WORK/dovecot/run/master.pid")"

# ---- provisioning: the same messages, over LMTP, to both ----
N=$((USERS * MSGS))
log "delivering $N messages of $SIZE octets to each server"
lg prov-tern lmtp -p "$T_LMTP" -c 8 -d 3600 -n "$N" -U "$USERS" -u "user{n}@$DOMAIN" -s "$SIZE"
lg prov-dovecot lmtp -p "$D_LMTP" -c 8 -d 3600 -n "$N" -U "$USERS" -u "user{n}@$DOMAIN" -s "$SIZE"
for s in prov-tern prov-dovecot; do
	if [ "$(get $s errors)" != 0 ]; then
		tail -n 5 "$WORK/dovecot/dovecot.log" "$WORK/tern/tern.log" >&2
		die "$s: provisioning failed; nothing to compare"
	fi
done
log "warming up (one download per user)"
lg warm-tern pop3 -p "$T_POP3" -c 4 -n "$USERS" -U "$USERS" -u "user{n}@$DOMAIN" -w "$PASSWORD" -e "$MSGS"
lg warm-dovecot pop3 -p "$D_POP3" -c 4 -n "$USERS" -U "$USERS" -u "user{n}@$DOMAIN" -w "$PASSWORD" -e "$MSGS"

# ---- 1. POP3 download, 2. ingest ----
# The machine may be shared: with BENCH_ROUNDS=N each measurement is taken
# N times, the servers alternating which goes first, and the table shows
# the median of the rounds.
pop3_tern() { lgc "pop3-$c-tern-r$r" tern_pids pop3 -p "$T_POP3" -c "$c" -d "$SECS" -U "$USERS" -u "user{n}@$DOMAIN" -w "$PASSWORD" -e "$MSGS"; }
pop3_dovecot() { lgc "pop3-$c-dovecot-r$r" dovecot_pids pop3 -p "$D_POP3" -c "$c" -d "$SECS" -U "$USERS" -u "user{n}@$DOMAIN" -w "$PASSWORD" -e "$MSGS"; }
ingest_tern() {
	lgc "ingest-lmtp-tern-r$r" tern_pids lmtp -p "$T_LMTP" -c "$ICONC" -d "$SECS" -U "$ICONC" -u "sink{n}@$DOMAIN" -s "$SIZE"
	lgc "ingest-smtp-tern-r$r" tern_pids smtp -p "$T_SMTP" -c "$ICONC" -d "$SECS" -U "$ICONC" -u "sink{n}@$DOMAIN" -s "$SIZE"
}
ingest_dovecot() { lgc "ingest-lmtp-dovecot-r$r" dovecot_pids lmtp -p "$D_LMTP" -c "$ICONC" -d "$SECS" -U "$ICONC" -u "sink{n}@$DOMAIN" -s "$SIZE"; }
# One session, one RETR after the other: the machine is not saturated, so
# RETR p50 is the cost of a RETR itself, not the time it waits behind the
# other sessions' (which is what p50 under 16 or 64 sessions shows).
lat_tern() { lgc "pop3-lat-tern-r$r" tern_pids pop3 -p "$T_POP3" -c 1 -d "$SECS" -U "$USERS" -u "user{n}@$DOMAIN" -w "$PASSWORD" -e "$MSGS"; }
lat_dovecot() { lgc "pop3-lat-dovecot-r$r" dovecot_pids pop3 -p "$D_POP3" -c 1 -d "$SECS" -U "$USERS" -u "user{n}@$DOMAIN" -w "$PASSWORD" -e "$MSGS"; }
r=1
while [ $r -le "$ROUNDS" ]; do
	log "POP3 download, 1 session (RETR latency), $SECS s each (round $r of $ROUNDS)"
	if [ $((r % 2)) = 1 ]; then lat_tern; lat_dovecot; else lat_dovecot; lat_tern; fi
	for c in $CONCS; do
		log "POP3 download, $c sessions, $SECS s each (round $r of $ROUNDS)"
		if [ $((r % 2)) = 1 ]; then pop3_tern; pop3_dovecot; else pop3_dovecot; pop3_tern; fi
	done
	log "ingest, $ICONC sessions, $SECS s each (round $r of $ROUNDS)"
	if [ $((r % 2)) = 1 ]; then ingest_tern; ingest_dovecot; else ingest_dovecot; ingest_tern; fi
	r=$((r + 1))
done

# ---- 5. RETR of one large message: tern's RSS while it streams ----
log "RETR of a $HUGE-octet message"
lg huge-deliver lmtp -p "$T_LMTP" -c 1 -n 1 -U 1 -u "huge@$DOMAIN" -s "$HUGE"
stop_tern
start_tern
# Concurrent small sessions first, so that every worker thread has hashed
# a password and the baseline includes what the allocator keeps of that
# (argon2id: 19 MiB per thread); the growth is then the RETR's own.
lg huge-warm pop3 -p "$T_POP3" -c 16 -n 32 -U 1 -u "user1@$DOMAIN" -w "$PASSWORD" -e "$MSGS"
sleep 0.5
RSS0=$(rss_kib "$TERN_PID")
# A client reading at 8 MiB/s: a server that does not stream buffers the rest.
"$LOADGEN" pop3 -p "$T_POP3" -c 1 -n 1 -U 1 -u "huge@$DOMAIN" -w "$PASSWORD" -e 1 -r 8388608 -t 120 -l huge-retr \
	>"$WORK/lg-huge-retr.out" 2>"$WORK/lg-huge-retr.err" &
LG_PID=$!
RSSMAX=$RSS0
while kill -0 "$LG_PID" 2>/dev/null; do
	r=$(rss_kib "$TERN_PID")
	[ "$r" -gt "$RSSMAX" ] && RSSMAX=$r
	sleep 0.02
done
wait "$LG_PID" || { log "huge-retr: errors"; ERRORS=$((ERRORS + 1)); }
LG_PID=""
grep '^RESULT' "$WORK/lg-huge-retr.out" >>"$RESULTS" || true
set_val huge tern_rss_growth_mib "$(awk -v a="$RSS0" -v b="$RSSMAX" 'BEGIN { printf "%.1f", (b - a) / 1024 }')"
log "tern RSS ${RSS0} KiB before, ${RSSMAX} KiB at most while serving"

# RETR time against size: one message of each size, read as fast as
# loopback allows, 5 sessions each; linear means the per-MiB figure holds.
for m in $RETR_MIB; do
	lg "retr-deliver-$m" lmtp -p "$T_LMTP" -c 1 -n 1 -U 1 -u "retr$m@$DOMAIN" -s $((m * 1048576))
	lg "retr-$m" pop3 -p "$T_POP3" -c 1 -n 5 -U 1 -u "retr$m@$DOMAIN" -w "$PASSWORD" -e 1 -t 120
done

# ---- 4. large mailbox ----
log "large mailbox: delivering $BIG messages of $BIG_SIZE octets to big@"
lg big-deliver-tern lmtp -p "$T_LMTP" -c 16 -d 36000 -n "$BIG" -U 1 -u "big@$DOMAIN" -s "$BIG_SIZE"
lg big-tern bigbox -p "$T_POP3" -n 5 -U 1 -u "big@$DOMAIN" -w "$PASSWORD" -e "$BIG" -t 60
if [ "$BIG_DOVECOT" = 1 ]; then
	lg big-deliver-dovecot lmtp -p "$D_LMTP" -c 16 -d 36000 -n "$BIG" -U 1 -u "big@$DOMAIN" -s "$BIG_SIZE"
	lg big-dovecot bigbox -p "$D_POP3" -n 5 -U 1 -u "big@$DOMAIN" -w "$PASSWORD" -e "$BIG" -t 60
fi

# ---- 3. idle sessions ----
# idle_run NAME PORT COUNT PIDS-COMMAND: holds COUNT sessions, measures the
# server's PSS before and while they are held.
idle_run() {
	name=$1 port=$2 count=$3 pids=$4
	# Logins first, so the baseline holds what the password hashing keeps
	# allocated (argon2id: 19 MiB per hashing thread) and the per-session
	# figure is what a held session costs.
	lg "$name-warm" pop3 -p "$port" -c 32 -n 64 -U "$USERS" -u "user{n}@$DOMAIN" -w "$PASSWORD" -e "$MSGS"
	sleep 1
	# shellcheck disable=SC2046
	before=$(pss_kib $($pids))
	out=$WORK/lg-$name.out
	: >"$out"
	"$LOADGEN" idle -p "$port" -c 32 -n "$count" -d 3600 -H 600 -t 60 -U "$USERS" -u "user{n}@$DOMAIN" \
		-w "$PASSWORD" -l "$name" >"$out" 2>"$WORK/lg-$name.err" &
	LG_PID=$!
	while kill -0 "$LG_PID" 2>/dev/null && ! grep -q '^READY' "$out"; do sleep 0.5; done
	sleep 2
	# shellcheck disable=SC2046
	during=$(pss_kib $($pids))
	nproc_=$($pids | wc -l)
	kill -USR1 "$LG_PID" 2>/dev/null || true
	wait "$LG_PID" || ERRORS=$((ERRORS + 1))
	LG_PID=""
	grep '^RESULT' "$out" >>"$RESULTS" || die "$name: no result"
	held=$(get "$name" held)
	log "$name: $held held; PSS $before KiB before, $during KiB during, $nproc_ processes"
	set_val "$name" pss_per_conn_kib "$(awk -v a="$before" -v b="$during" -v n="$held" \
		'BEGIN { if (n > 0) printf "%.1f", (b - a) / n; else print "-" }')"
}
log "idle: $IDLE POP3 sessions on tern with its default settings"
stop_tern
start_tern
idle_run idle-tern "$T_POP3" "$IDLE" tern_pids
TERN_IDLE_DEFAULT=$(get idle-tern held)
if [ "$TERN_IDLE_DEFAULT" != "$IDLE" ]; then
	log "tern's defaults held $TERN_IDLE_DEFAULT of $IDLE; again with [limits] max_connections raised"
	ERRORS=$((ERRORS - 1)) # the refusals were the finding, shown in the table
	stop_tern
	start_tern "$WORK/tern/tern-raised.conf"
	idle_run idle-tern-raised "$T_POP3" "$IDLE" tern_pids
fi
log "idle: $IDLE_DOVECOT POP3 sessions on Dovecot"
idle_run idle-dovecot "$D_POP3" "$IDLE_DOVECOT" dovecot_pids

stop_tern
stop_dovecot

# ---- the table ----
TABLE=$WORK/table.txt
row() { # label tern dovecot ratio-kind target
	awk -v l="$1" -v t="$2" -v d="$3" -v k="$4" -v g="$5" 'BEGIN {
		r = "-"; met = "";
		if (t != "-" && d != "-" && d + 0 > 0) {
			x = t / d; r = sprintf(x < 0.1 ? "%.3f" : "%.2f", x);
			if (k == "min") met = (x >= g ? "yes" : "NO");
			if (k == "max") met = (x <= g ? "yes" : "NO");
		}
		if (k == "abs" && t != "-") met = (t + 0 <= g ? "yes" : "NO");
		if (k == "min") tg = ">= " g "x"; else if (k == "max") tg = "<= " g "x"; else if (k == "abs") tg = "< " g; else tg = "";
		if (k == "held") { tg = "all held"; met = (t == g ? "yes" : "NO") }
		printf "%-46s %12s %12s %8s  %-12s %s\n", l, t, d, r, tg, met }'
}
# ingest_rows PROTO NAME: tern's ingest over PROTO against Dovecot's LMTP.
ingest_rows() {
	row "Ingest $1 ${SIZE} B, $ICONC sessions: messages/s" "$(med "$2" msgs_per_s)" \
		"$(med ingest-lmtp-dovecot msgs_per_s)" min 5
	row "  delivery p50 (ms)" "$(med "$2" op_p50_ms)" "$(med ingest-lmtp-dovecot op_p50_ms)" info 0
	row "  delivery p99 (ms)" "$(med "$2" op_p99_ms)" "$(med ingest-lmtp-dovecot op_p99_ms)" info 0
	row "  server CPU s / 1000 messages" "$(cpu_per_k "$2" server)" \
		"$(cpu_per_k ingest-lmtp-dovecot server)" info 0
	row "  load generator CPU s / 1000 messages" "$(cpu_per_k "$2" loadgen)" \
		"$(cpu_per_k ingest-lmtp-dovecot loadgen)" info 0
}
if [ "$D_AUTH_CACHE" = 0 ]; then
	D_CACHE_NOTE="Dovecot auth_cache_size = 0 (its default: every login hashes); tern caches"
else
	D_CACHE_NOTE="Dovecot auth_cache_size = $D_AUTH_CACHE (fair: both servers cache logins)"
fi
{
	echo "== $SCHEME hashes; $D_CACHE_NOTE =="
	printf '%-46s %12s %12s %8s  %-12s %s\n' "workload" "tern" "Dovecot" "ratio" "target" "met"
	row "POP3, 1 session (unsaturated): messages/s" "$(med pop3-lat-tern msgs_per_s)" \
		"$(med pop3-lat-dovecot msgs_per_s)" info 0
	row "  RETR p50 (ms)" "$(med pop3-lat-tern op_p50_ms)" "$(med pop3-lat-dovecot op_p50_ms)" max 1
	row "  RETR p99 (ms)" "$(med pop3-lat-tern op_p99_ms)" "$(med pop3-lat-dovecot op_p99_ms)" info 0
	row "  server CPU s / 1000 messages" "$(cpu_per_k pop3-lat-tern server)" \
		"$(cpu_per_k pop3-lat-dovecot server)" info 0
	for c in $CONCS; do
		row "POP3 download, $c sessions: messages/s" "$(med "pop3-$c-tern" msgs_per_s)" \
			"$(med "pop3-$c-dovecot" msgs_per_s)" min 3
		row "  login p50 (ms)" "$(med "pop3-$c-tern" login_p50_ms)" \
			"$(med "pop3-$c-dovecot" login_p50_ms)" info 0
		row "  login p99 (ms)" "$(med "pop3-$c-tern" login_p99_ms)" \
			"$(med "pop3-$c-dovecot" login_p99_ms)" max 0.2
		row "  RETR p50 (ms)" "$(med "pop3-$c-tern" op_p50_ms)" \
			"$(med "pop3-$c-dovecot" op_p50_ms)" max 1
		row "  RETR p99 (ms)" "$(med "pop3-$c-tern" op_p99_ms)" \
			"$(med "pop3-$c-dovecot" op_p99_ms)" info 0
		row "  server CPU s / 1000 messages" "$(cpu_per_k "pop3-$c-tern" server)" \
			"$(cpu_per_k "pop3-$c-dovecot" server)" info 0
		row "  load generator CPU s / 1000 messages" "$(cpu_per_k "pop3-$c-tern" loadgen)" \
			"$(cpu_per_k "pop3-$c-dovecot" loadgen)" info 0
	done
	ingest_rows LMTP ingest-lmtp-tern
	ingest_rows SMTP ingest-smtp-tern
	row "Idle: sessions held, tern defaults (of $IDLE)" "$TERN_IDLE_DEFAULT" "$(get idle-dovecot held)" held "$IDLE"
	if [ "$TERN_IDLE_DEFAULT" = "$IDLE" ]; then tn=idle-tern; else tn=idle-tern-raised; fi
	row "Idle: PSS per session (KiB)" "$(get $tn pss_per_conn_kib)" "$(get idle-dovecot pss_per_conn_kib)" max 0.033
	row "Large mailbox $BIG msgs: login+STAT+UIDL p50 (ms)" "$(get big-tern total_p50_ms)" \
		"$(get big-dovecot total_p50_ms)" abs 50
	row "  of which STAT + UIDL p50 (ms)" \
		"$(awk -v a="$(get big-tern stat_p50_ms)" -v b="$(get big-tern uidl_p50_ms)" 'BEGIN { printf "%.1f", a + b }')" \
		"-" info 0
	row "RETR of $HUGE octets: tern RSS growth (MiB)" "$(get huge tern_rss_growth_mib)" "-" abs 2
	for m in $RETR_MIB; do
		row "RETR of one $m MiB message, p50 (ms)" "$(get "retr-$m" op_p50_ms)" "-" info 0
	done
} >"$TABLE"
[ "$TERN_IDLE_DEFAULT" = "$IDLE" ] || echo "(idle PSS for tern measured with [limits] max_connections = $((IDLE + 200)))" >>"$TABLE"
{
	echo "ratio = tern / Dovecot. Load generator runs with errors: $ERRORS (see the RESULT lines)."
	echo "password hashes: $SCHEME; $USERS users x $MSGS messages of $SIZE octets; runs of $SECS s, median of $ROUNDS round(s)"
	echo "machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM; $(uname -sr)"
	echo "load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
	if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
		echo "tern $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src || echo ' (with uncommitted changes in src/)'), $("$DOVECOT" --version | sed 's/^/Dovecot /')"
	else
		echo "tern (not a git checkout), $("$DOVECOT" --version | sed 's/^/Dovecot /')"
	fi
} >>"$TABLE"

echo
cat "$TABLE"
echo
cat "$RESULTS"
if [ -n "${BENCH_OUT:-}" ]; then
	{ cat "$TABLE"; echo; cat "$RESULTS"; } >"$BENCH_OUT"
fi
