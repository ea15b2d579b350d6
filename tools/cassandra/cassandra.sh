#!/bin/sh
# Runs a real Apache Cassandra (jars from Maven Central) for tern's tests.
#
#   cassandra.sh fetch                 resolve the pinned jars (reused when present)
#   cassandra.sh start-single DIR [auth]   one node: 127.0.0.1:9042, dc1; with
#                                      "auth", PasswordAuthenticator (cassandra/cassandra)
#   cassandra.sh start-two-dc DIR [relay]  node1 127.0.0.1 dc1, node2 127.0.0.2 dc2; with
#                                      "relay", the nodes talk to each other only through
#                                      relays (node1 as 127.0.0.3, node2 as 127.0.0.4) that
#                                      "cut" and "heal" switch (cutrelay.py)
#   cassandra.sh cut DIR / heal DIR    partition the two datacenters / end it (relay only)
#   cassandra.sh stop DIR              stop every node started under DIR
#   cassandra.sh stop-node DIR N       stop node N only (kill: SIGKILL at once)
#   cassandra.sh start-node DIR N      start node N again on its existing data
#   cassandra.sh nodetool DIR N ARGS   nodetool against node N (JMX on 127.0.0.1,
#                                      port 7300+N, local connections only)
#   cassandra.sh status DIR            print each node's pid and state
#
# Invariants: DIR is wiped before a fresh start; a node is stopped only through
# the pid this script recorded in DIR/nodeN/pid, and only if that pid is still
# the java process launched with DIR's config; a start that does not reach
# "CQL answers and the peers are known" fails with the log tail.
#
# Environment: TERN_CASSANDRA_LIB (jar directory, default <repo>/build/cassandra/lib),
# TERN_CASSANDRA_HEAP (default 512m), TERN_CASSANDRA_START_TIMEOUT (s, default 180),
# TERN_CASSANDRA_COMMITLOG_SYNC (periodic (default, Cassandra's own: every 10 s),
# batch or group: start-single's node and start-two-dc's node1, whose periodic
# log is compressed). start-two-dc's
# node2 (dc2) always runs commitlog_sync: group, so one cluster shows both.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LIB=${TERN_CASSANDRA_LIB:-$REPO/build/cassandra/lib}
HEAP=${TERN_CASSANDRA_HEAP:-512m}
START_TIMEOUT=${TERN_CASSANDRA_START_TIMEOUT:-180}
PING="python3 $HERE/cqlping.py"
AUTHENTICATOR=AllowAllAuthenticator

die() { echo "cassandra.sh: $*" >&2; exit 1; }

need_tools() {
	command -v java >/dev/null 2>&1 || die "java not found: install OpenJDK 17 (apt-get install openjdk-17-jdk-headless), or set TERN_SKIP_CASSANDRA=1 to skip the Cassandra tests"
	command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven (apt-get install maven), or set TERN_SKIP_CASSANDRA=1 to skip the Cassandra tests"
	jv=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
	[ "$jv" = 17 ] || die "Cassandra 5.0 needs Java 17, found '$jv' (set JAVA_HOME/PATH to a JDK 17)"
}

version() { sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' "$HERE/pom.xml"; }

cmd_fetch() {
	need_tools
	v=$(version)
	if [ -f "$LIB/.fetched-$v" ] && [ -f "$LIB/cassandra-all-$v.jar" ]; then
		return 0
	fi
	mkdir -p "$LIB"
	rm -f "$LIB"/*.jar "$LIB"/.fetched-*
	echo "cassandra.sh: fetching cassandra-all $v and its dependencies with Maven" >&2
	if ! mvn -B -q -f "$HERE/pom.xml" \
		org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
		-DoutputDirectory="$LIB" >"$LIB/../fetch.log" 2>&1; then
		tail -n 40 "$LIB/../fetch.log" >&2
		die "maven could not fetch cassandra-all $v"
	fi
	[ -f "$LIB/cassandra-all-$v.jar" ] || die "cassandra-all-$v.jar missing after fetch"
	touch "$LIB/.fetched-$v"
}

# The commitlog_sync lines of cassandra.yaml for MODE: periodic (fsync every
# 10 s: a power loss forgets up to 10 s of acknowledged writes, a kill -9 up
# to the 100 ms between the log's sync markers), periodic-lz4 (the same with
# a compressed log, whose markers are written only at each sync: a kill -9
# forgets up to 10 s too), batch or group (fsync before the
# acknowledgement; group every 10 ms). With batch and group,
# commitlog_sync_period must be absent.
commitlog_lines() {
	case "$1" in
	periodic) printf 'commitlog_sync: periodic\ncommitlog_sync_period: 10000ms\n' ;;
	periodic-lz4)
		commitlog_lines periodic
		printf 'commitlog_compression:\n  - class_name: LZ4Compressor\n'
		;;
	batch) printf 'commitlog_sync: batch\n' ;;
	group) printf 'commitlog_sync: group\ncommitlog_sync_group_window: 10ms\n' ;;
	*) die "commitlog_sync must be periodic, batch or group, not '$1'" ;;
	esac
}

# write_node DIR N ADDR DC TOKEN SEEDS [COMMITLOG_SYNC [BROADCAST]]
write_node() {
	sync_lines=$(commitlog_lines "${7:-periodic}")
	broadcast_lines=""
	[ -n "${8:-}" ] && broadcast_lines="broadcast_address: $8
broadcast_rpc_address: $3"
	node=$1/node$2
	rm -rf "$node"
	mkdir -p "$node/conf" "$node/data" "$node/commitlog" "$node/hints" \
		"$node/saved_caches" "$node/cdc_raw" "$node/logs" "$node/triggers"
	cat >"$node/conf/cassandra.yaml" <<EOF
cluster_name: terntest
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
num_tokens: 1
initial_token: $5
auto_bootstrap: false
endpoint_snitch: GossipingPropertyFileSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$6"
listen_address: $3
rpc_address: $3
storage_port: 7000
native_transport_port: 9042
start_native_transport: true
data_file_directories: [ $node/data ]
commitlog_directory: $node/commitlog
hints_directory: $node/hints
saved_caches_directory: $node/saved_caches
cdc_raw_directory: $node/cdc_raw
$sync_lines
$broadcast_lines
commitlog_segment_size: 32MiB
memtable_allocation_type: heap_buffers
memtable_heap_space: 64MiB
concurrent_compactors: 1
disk_access_mode: standard
auto_snapshot: false
incremental_backups: false
phi_convict_threshold: 5
authenticator: $AUTHENTICATOR
authorizer: AllowAllAuthorizer
storage_compatibility_mode: NONE
client_encryption_options:
  enabled: true
  optional: true
  ssl_context_factory:
    class_name: org.apache.cassandra.security.PEMBasedSslContextFactory
  keystore: $1/tls/node.pem
  require_client_auth: false
EOF
	[ "$AUTHENTICATOR" = PasswordAuthenticator ] && echo cassandra:cassandra >"$node/credentials"
	printf 'dc=%s\nrack=rack1\n' "$4" >"$node/conf/cassandra-rackdc.properties"
	cat >"$node/conf/logback.xml" <<'EOF'
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>${cassandra.logdir}/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE" /></root>
</configuration>
EOF
	echo "$3" >"$node/address"
}

# start_relay DIR N LISTEN TARGET: node N's relay (its pid in DIR/relayN.pid).
start_relay() {
	stop_relay "$1" "$2"
	rm -f "$1/cut"
	python3 "$HERE/cutrelay.py" "$3:7000" "$4:7000" "$1/cut" >"$1/relay$2.log" 2>&1 </dev/null &
	echo $! >"$1/relay$2.pid"
	i=0
	until python3 -c "import socket,sys; socket.create_connection(('$3', 7000), 1).close()" \
		2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 100 ] || die "relay $3:7000 did not start: $(cat "$1/relay$2.log")"
		sleep 0.1
	done
}

# wait_relays DIR -f|!: until both relays say they cut (-f) or healed (!).
wait_relays() {
	i=0
	while :; do
		n=0
		for h in 127.0.0.3 127.0.0.4; do
			if [ "$2" = -f ]; then [ -f "$1/cut.$h" ] && n=$((n + 1)); else
				[ -f "$1/cut.$h" ] || n=$((n + 1)); fi
		done
		[ $n -eq 2 ] && return 0
		i=$((i + 1))
		[ $i -lt 200 ] || die "the relays did not follow $1/cut"
		sleep 0.05
	done
}

stop_relay() {
	pidf=$1/relay$2.pid
	[ -f "$pidf" ] || return 0
	pid=$(cat "$pidf")
	if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "cutrelay.py .* $1/cut"; then
		kill -TERM "$pid" 2>/dev/null || true
	fi
	rm -f "$pidf"
}

# What Cassandra needs of the JDK 17 module system (its own jvm17 options).
JAVA_MODULES="--add-exports java.base/jdk.internal.misc=ALL-UNNAMED \
	--add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED \
	--add-exports java.management/com.sun.jmx.remote.security=ALL-UNNAMED \
	--add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED \
	--add-exports java.rmi/sun.rmi.server=ALL-UNNAMED \
	--add-exports java.sql/java.sql=ALL-UNNAMED \
	--add-exports java.base/java.lang.ref=ALL-UNNAMED \
	--add-exports jdk.unsupported/sun.misc=ALL-UNNAMED \
	--add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED \
	--add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED \
	--add-opens java.base/java.lang.module=ALL-UNNAMED \
	--add-opens java.base/jdk.internal.loader=ALL-UNNAMED \
	--add-opens java.base/jdk.internal.ref=ALL-UNNAMED \
	--add-opens java.base/jdk.internal.reflect=ALL-UNNAMED \
	--add-opens java.base/jdk.internal.math=ALL-UNNAMED \
	--add-opens java.base/jdk.internal.module=ALL-UNNAMED \
	--add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED \
	--add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED \
	--add-opens java.base/sun.nio.ch=ALL-UNNAMED \
	--add-opens java.base/java.io=ALL-UNNAMED \
	--add-opens java.base/java.lang.reflect=ALL-UNNAMED \
	--add-opens java.base/java.lang=ALL-UNNAMED \
	--add-opens java.base/java.util=ALL-UNNAMED \
	--add-opens java.base/java.nio=ALL-UNNAMED \
	--add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED"

launch_node() {
	node=$1/node$2
	addr=$(cat "$node/address")
	[ -f "$LIB/jamm-0.4.0.jar" ] || die "jars missing in $LIB: run '$0 fetch'"
	if $PING "$addr" 9042 --quick 2>/dev/null; then
		die "something already answers CQL on $addr:9042; stop it first"
	fi
	(
		cd "$node"
		exec java -Xms$HEAP -Xmx$HEAP -Xss256k -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
			-ea -da:net.openhft... -javaagent:"$LIB/jamm-0.4.0.jar" \
			-Djava.net.preferIPv4Stack=true -Djdk.attach.allowAttachSelf=true \
			-Dio.netty.tryReflectionSetAccessible=true \
			-Dio.netty.allocator.useCacheForAllThreads=true -Dio.netty.allocator.maxOrder=11 \
			-Dchronicle.analytics.disable=true -Dchronicle.announcer.disable=true \
			$JAVA_MODULES \
			-Dcassandra-foreground=yes \
			-Dcassandra.config="file://$node/conf/cassandra.yaml" \
			-Dcassandra-rackdc.properties="file://$node/conf/cassandra-rackdc.properties" \
			-Dcassandra.storagedir="$node" -Dcassandra.logdir="$node/logs" \
			-Dcassandra.triggers_dir="$node/triggers" \
			-Dlogback.configurationFile="$node/conf/logback.xml" \
			-Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=1000 \
			-Dcassandra.skip_sync=true -Dcassandra.unsafesystem=true \
			-Dcassandra.superuser_setup_delay_ms=0 -Dcassandra.available_processors=2 \
			-Dcassandra.jmx.local.port=$((7300 + $2)) \
			-Dtern.node="$node" \
			-cp "$node/conf:$LIB/*" org.apache.cassandra.service.CassandraDaemon \
			>"$node/logs/stdout.log" 2>&1 </dev/null
	) &
	echo $! >"$node/pid"
	date +%s.%N >"$node/started"
}

node_alive() {
	pidf=$1/pid
	[ -f "$pidf" ] || return 1
	pid=$(cat "$pidf")
	kill -0 "$pid" 2>/dev/null || return 1
	# Only our own JVM: its command line names this node's directory.
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-Dtern.node=$1 " || return 1
}

fail_node() {
	node=$1
	echo "cassandra.sh: $2; last lines of $node/logs:" >&2
	tail -n 30 "$node/logs/stdout.log" >&2 2>/dev/null || true
	tail -n 40 "$node/logs/system.log" >&2 2>/dev/null || true
	exit 1
}

# A self-signed certificate for 127.0.0.1 and 127.0.0.2 in DIR/tls: node.pem
# (key + certificate, the nodes' keystore) and ca.pem (what clients trust).
write_tls() {
	mkdir -p "$1/tls"
	[ -f "$1/tls/node.pem" ] && return 0
	command -v openssl >/dev/null 2>&1 || die "openssl not found (apt-get install openssl)"
	openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=tern-test-cassandra \
		-addext "subjectAltName=IP:127.0.0.1,IP:127.0.0.2" \
		-keyout "$1/tls/key.pem" -out "$1/tls/ca.pem" >/dev/null 2>&1 ||
		die "openssl could not make a test certificate"
	cat "$1/tls/key.pem" "$1/tls/ca.pem" >"$1/tls/node.pem"
}

# wait_node DIR N PEERS: CQL answers on the node and it knows PEERS peers.
wait_node() {
	node=$1/node$2
	addr=$(cat "$node/address")
	auth=""
	[ -f "$node/credentials" ] && auth="--auth $(cat "$node/credentials")"
	deadline=$(($(date +%s) + START_TIMEOUT))
	while :; do
		node_alive "$node" || fail_node "$node" "node$2 ($addr) exited during start-up"
		if $PING "$addr" 9042 --peers "$3" $auth 2>/dev/null; then
			break
		fi
		[ "$(date +%s)" -lt "$deadline" ] || fail_node "$node" "node$2 ($addr) not ready after ${START_TIMEOUT}s"
		sleep 0.5
	done
	t0=$(cat "$node/started")
	t1=$(date +%s.%N)
	rss=$(awk '/VmRSS/ {print $2}' "/proc/$(cat "$node/pid")/status" 2>/dev/null || echo 0)
	printf 'cassandra.sh: node%s %s ready in %.1fs, RSS %d MiB\n' "$2" "$addr" \
		"$(awk "BEGIN {print $t1 - $t0}")" $((rss / 1024)) >&2
}

stop_node() {
	node=$1/node$2
	node_alive "$node" || { rm -f "$node/pid"; return 0; }
	pid=$(cat "$node/pid")
	if [ "${3:-term}" = kill ]; then
		kill -KILL "$pid" 2>/dev/null || true
	else
		kill -TERM "$pid" 2>/dev/null || true
	fi
	i=0
	while kill -0 "$pid" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -ge 300 ]; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
		sleep 0.1
	done
	rm -f "$node/pid"
}

abs_dir() {
	[ -n "${1:-}" ] || die "missing DIR"
	mkdir -p "$1"
	cd "$1" && pwd
}

cmd=${1:-}
case "$cmd" in
fetch)
	cmd_fetch
	;;
start-single)
	dir=$(abs_dir "${2:-}")
	cmd_fetch
	[ -d "$dir" ] && sh "$0" stop "$dir"
	rm -rf "$dir"/node* "$dir/tls"
	[ "${3:-}" = auth ] && AUTHENTICATOR=PasswordAuthenticator
	write_tls "$dir"
	write_node "$dir" 1 127.0.0.1 dc1 -9223372036854775808 "127.0.0.1:7000" \
		"${TERN_CASSANDRA_COMMITLOG_SYNC:-periodic}"
	launch_node "$dir" 1
	wait_node "$dir" 1 0
	;;
start-two-dc)
	dir=$(abs_dir "${2:-}")
	cmd_fetch
	sh "$0" stop "$dir"
	rm -rf "$dir"/node* "$dir/tls"
	write_tls "$dir"
	seeds="127.0.0.1:7000,127.0.0.2:7000"
	b1="" b2=""
	if [ "${3:-}" = relay ]; then
		seeds="127.0.0.3:7000,127.0.0.4:7000"
		b1=127.0.0.3 b2=127.0.0.4
		start_relay "$dir" 1 127.0.0.3 127.0.0.1
		start_relay "$dir" 2 127.0.0.4 127.0.0.2
	fi
	# dc1's periodic log is compressed: a kill -9 there loses what a power
	# cut would (the crash test in tests/cassandra/test_two_dc.py).
	sync1=${TERN_CASSANDRA_COMMITLOG_SYNC:-periodic}
	[ "$sync1" = periodic ] && sync1=periodic-lz4
	write_node "$dir" 1 127.0.0.1 dc1 -9223372036854775808 "$seeds" "$sync1" $b1
	write_node "$dir" 2 127.0.0.2 dc2 -9223372036854775708 "$seeds" group $b2
	launch_node "$dir" 1
	wait_node "$dir" 1 0
	launch_node "$dir" 2
	wait_node "$dir" 2 1
	wait_node "$dir" 1 1
	;;
start-node)
	dir=$(abs_dir "${2:-}")
	n=${3:?node number}
	node_alive "$dir/node$n" && exit 0
	peers=$(($(ls -d "$dir"/node* | wc -l) - 1))
	launch_node "$dir" "$n"
	wait_node "$dir" "$n" "$peers"
	;;
nodetool)
	dir=$(abs_dir "${2:-}")
	n=${3:?node number}
	shift 3
	node_alive "$dir/node$n" || die "node$n is not running"
	# shellcheck disable=SC2086
	exec java -Xmx256m $JAVA_MODULES -Dcassandra.storagedir="$dir/node$n" \
		-Dcassandra.logdir="$dir/node$n/logs" \
		-Dlogback.configurationFile="$dir/node$n/conf/logback.xml" \
		-cp "$dir/node$n/conf:$LIB/*" org.apache.cassandra.tools.NodeTool \
		-h 127.0.0.1 -p $((7300 + n)) "$@"
	;;
stop-node)
	dir=$(abs_dir "${2:-}")
	stop_node "$dir" "${3:?node number}" "${4:-term}"
	;;
stop)
	dir=$(abs_dir "${2:-}")
	for node in "$dir"/node*; do
		[ -d "$node" ] || continue
		stop_node "$dir" "${node##*/node}"
	done
	stop_relay "$dir" 1
	stop_relay "$dir" 2
	rm -f "$dir/cut" "$dir"/cut.127.*
	;;
cut)
	dir=$(abs_dir "${2:-}")
	[ -f "$dir/relay1.pid" ] || die "$dir was not started with relays (start-two-dc DIR relay)"
	touch "$dir/cut"
	wait_relays "$dir" -f
	;;
heal)
	dir=$(abs_dir "${2:-}")
	rm -f "$dir/cut"
	wait_relays "$dir" !
	;;
status)
	dir=$(abs_dir "${2:-}")
	for node in "$dir"/node*; do
		[ -d "$node" ] || continue
		if node_alive "$node"; then
			echo "${node##*/}: running pid $(cat "$node/pid") on $(cat "$node/address")"
		else
			echo "${node##*/}: stopped"
		fi
	done
	;;
*)
	sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
