/*
 * store-cassandra: the distributed backend, on Apache Cassandra through
 * lib-cql. Every tern node is stateless; several nodes, in several
 * datacenters, serve the same mailboxes.
 *
 * Invariants (design.md):
 * - In pop3_ids = messageid mode no statement is conditional and no read is
 *   SERIAL: delivery and POP3 never use a lightweight transaction. lib-cql
 *   counts both; the counts are logged when the store closes.
 * - Every write is idempotent: rows are keyed by ids the writer chose before
 *   the first attempt (the message's TimeUUID, the mailbox's name-based
 *   UUID), so a retried statement rewrites the same cells.
 * - A body is keyed by its body id (the delivery's TimeUUID); a listing row
 *   by its listing id, which is the body id unless the listing write would
 *   start more than REMINT_BOUND_US after that id was minted: then it is
 *   minted again, before anything is listed under it. body_refs records
 *   the listing id, the listing row the body id.
 * - Deliveries are refused (TEMPFAIL), and a QUIT deletes row by row
 *   instead of by range, while this node's clock is more than
 *   MAX_CLOCK_SKEW_US away from a local Cassandra node's. With the two
 *   bounds, a listing row written in this datacenter is acknowledged
 *   before any session that logs in later than RANGE_DELETE_MARGIN_US
 *   after its id can read the listing (docs/cassandra-store.md gives the
 *   arithmetic). No bound holds for a row written in another datacenter
 *   (a partition can hold it back for hours), so a keyspace replicated in
 *   more than one datacenter, or whose replication could not be read, is
 *   never range-deleted: every deleted row gets its own tombstone. Either
 *   way a range delete covers only rows its session was shown
 *   (invariant 12).
 * - store_open says once whether an acknowledged write survives one node
 *   crash (commitlog_sync, replicas, write consistency), and refuses to open
 *   with [cassandra] require_durable = yes when it does not.
 * - Delivery writes the body chunks (at most 1 MiB each, cut from the common
 *   header followed by the body, which may be read from a file: a message
 *   is never held whole in memory), then per recipient a body_refs row and
 *   the listing row, all synchronously at the write consistency before the
 *   store answers: a listed message has its body in the writer's datacenter.
 * - The listing (mailbox_id → message_id, size, uidl) is one partition,
 *   ordered by message id: STAT/LIST/UIDL are one paged partition read.
 * - A body is deleted only after the last body_refs row naming it is gone.
 * - A message cursor reads the listing row once, then each chunk once, in
 *   order, and holds at most one chunk (1 MiB) in memory.
 * - The outbound queue follows the same rules: no LWT, no counter, writes
 *   keyed by the entry's TimeUUID, partitions bounded by hour (see "the
 *   outbound queue" below).
 *
 * Quotas need no counter and no LWT: a recipient's own limits are two
 * columns of the users row that RCPT (or the delivery) reads anyway, and
 * only when a limit applies is the mailbox's usage read, as count(size)
 * and sum(size) over its listing partition at the read consistency. That is exact to within
 * the deliveries in flight (two nodes that each see room can both write)
 * and replication (a listing row not yet in the local datacenter).
 *
 * Download-and-delete: POP3 clients delete what they downloaded, a prefix
 * of the time-ordered listing. When the deleted messages form a prefix, the
 * prefix is removed with one range tombstone instead of one tombstone per
 * row, so a mailbox that has received and deleted 100,000 messages still
 * reads in one fast slice (row tombstones would pile up until gc_grace and
 * trip tombstone_failure_threshold). The range never reaches ids minted in
 * the last RANGE_DELETE_MARGIN before the session logged in, so a delivery
 * still writing its listing row cannot be covered by it; messages younger
 * than that are deleted row by row (in single-partition unlogged batches:
 * one request, applied atomically, per ROW_DELETE_BATCH rows). Only in a
 * keyspace replicated in one datacenter: across datacenters every deleted
 * row is deleted that way.
 */
#include "store-private.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "cql.h"
#include "log.h"
#include "metrics.h"

#define CHUNK_SIZE (1024 * 1024)
#define LISTING_PAGE 5000
#define RANGE_DELETE_MARGIN_US (60LL * 1000000)
#define ROW_DELETE_BATCH 100
#define UID_CAS_ATTEMPTS 20
/* A domain found in `domains` is taken as local, without reading it again,
 * for this long (every RCPT asks): a domain deleted on another node can
 * still be taken for a local one for that long (its users and aliases are
 * gone by then: domain del refuses otherwise). A domain not found is
 * asked again every time, so one just added is local at once. */
#define DOMAIN_CACHE_US (5LL * 1000000)
#define DOMAIN_CACHE_SIZE 16

struct cass_store {
	struct store store;
	struct cql_session *session;
	enum cql_consistency read_cl, write_cl;
	char keyspace[64];
	char dc[64];                /* the local datacenter: queue_nodes' partition */
	bool require_durable;
	/* Under lock: the durability check's last result, and the clocks'. */
	pthread_mutex_t lock;
	int durable;                /* 1 yes, 0 no */
	char durable_line[1024];    /* "yes: ..." / "no: ..." */
	int64_t durable_checked_us;
	bool durable_checking;
	/* Whether a downloaded prefix may go with one range tombstone: only
	 * when the keyspace's replication was read and names one datacenter
	 * (-1 before the first check). */
	int range_by_replication;
	int replication_dcs;        /* datacenters with replicas, -1 unknown */
	bool clock_ok, clock_checking, clock_warned;
	int64_t clock_skew_us;      /* the largest measured, -1: none answered */
	int64_t clock_checked_us;
	/* Relaxed atomics: listing ids minted again because the listing write
	 * started too late after minting, deliveries refused for the clock,
	 * prefixes removed with one range tombstone, and prefixes deleted row
	 * by row instead because the clock was not known to agree, or because
	 * the keyspace spans datacenters. */
	uint64_t remints, clock_refusals, range_deletes, range_deletes_declined;
	uint64_t range_deletes_declined_dcs;
	/* Local domains found lately (DOMAIN_CACHE_US), under domain_lock. */
	pthread_mutex_t domain_lock;
	struct {
		char name[256];
		int64_t until_us;
	} domains_seen[DOMAIN_CACHE_SIZE];
};

/* A statement text with "{ks}" replaced by the keyspace, into out (512
 * bytes: every statement here fits). */
static const char *expand(const struct cass_store *c, const char *tmpl, char *out, size_t size)
{
	size_t o = 0;
	for (const char *p = tmpl; *p != '\0' && o + 1 < size;) {
		if (strncmp(p, "{ks}", 4) == 0) {
			size_t n = strlen(c->keyspace);
			if (o + n + 1 >= size)
				break;
			memcpy(out + o, c->keyspace, n);
			o += n;
			p += 4;
		} else {
			out[o++] = *p++;
		}
	}
	out[o] = '\0';
	return out;
}
#define Q(c, buf, tmpl) expand((c), (tmpl), (buf), sizeof(buf))

static enum store_status status_from_error(const struct cql_error *err, const char *what)
{
	log_error("cassandra: %s: %s: %s", what, cql_error_kind_name(err->kind), err->message);
	if (cql_error_is_uncertain(err))
		return STORE_UNCERTAIN;
	if (cql_error_is_temporary(err))
		return STORE_TEMPFAIL;
	return STORE_PERM;
}

/* Runs a statement (prepared, cached by lib-cql) with the given values,
 * written at ts_us (0: now, from lib-cql's generator). Writes are
 * idempotent by construction, so every statement is marked so. */
static enum store_status run_at(struct cass_store *c, const char *cql, const struct cql_values *v,
				enum cql_consistency cl, int64_t ts_us, struct cql_result **result_r)
{
	struct cql_error err;
	struct cql_prepared *stmt = cql_prepare(c->session, cql, &err);
	if (stmt == NULL)
		return status_from_error(&err, cql);
	struct cql_query_opts opts;
	cql_query_opts_init(&opts);
	opts.consistency = cl;
	opts.idempotent = true;
	opts.timestamp_us = ts_us;
	struct cql_result *res = NULL;
	if (cql_execute(c->session, stmt, v, &opts, &res, &err) < 0)
		return status_from_error(&err, cql);
	if (result_r != NULL)
		*result_r = res;
	else
		cql_result_free(&res);
	return STORE_OK;
}

static enum store_status run(struct cass_store *c, const char *cql, const struct cql_values *v,
			     enum cql_consistency cl, struct cql_result **result_r)
{
	return run_at(c, cql, v, cl, 0, result_r);
}

static enum store_status run_ddl(struct cass_store *c, const char *cql)
{
	struct cql_error err;
	struct cql_result *res = NULL;
	struct cql_query_opts opts;
	cql_query_opts_init(&opts);
	opts.timeout_ms = 60000;
	if (cql_query(c->session, cql, NULL, &opts, &res, &err) < 0)
		return status_from_error(&err, cql);
	cql_result_free(&res);
	return STORE_OK;
}

/* "dc1:3, dc2:3" → "'dc1': 3, 'dc2': 3"; -1 on a malformed value. */
static int replication_map(const char *spec, struct buf *out)
{
	const char *p = spec;
	int n = 0;
	while (*p != '\0') {
		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		const char *name = p;
		while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		       (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.')
			p++;
		size_t nlen = (size_t)(p - name);
		if (nlen == 0 || *p != ':')
			return -1;
		p++;
		char *end;
		long rf = strtol(p, &end, 10);
		if (end == p || rf < 1 || rf > 99)
			return -1;
		p = end;
		while (*p == ' ')
			p++;
		if (*p != '\0' && *p != ',')
			return -1;
		buf_printf(out, "%s'%.*s': %ld", n > 0 ? ", " : "", (int)nlen, name, rf);
		n++;
	}
	return n > 0 ? 0 : -1;
}

static bool valid_identifier(const char *s)
{
	if (*s == '\0' || strlen(s) > 48)
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

static const char *const schema[] = {
	"CREATE TABLE IF NOT EXISTS {ks}.meta (key text PRIMARY KEY, value text)",
	"CREATE TABLE IF NOT EXISTS {ks}.domains (name text PRIMARY KEY)",
	"CREATE TABLE IF NOT EXISTS {ks}.users (address text PRIMARY KEY, domain text,"
	" password text, quota_messages bigint, quota_octets bigint, expire_days bigint)",
	/* An alias row is replaced whole: targets is the '\n'-terminated list. */
	"CREATE TABLE IF NOT EXISTS {ks}.aliases (address text PRIMARY KEY, domain text,"
	" targets text)",
	"CREATE TABLE IF NOT EXISTS {ks}.users_by_domain (domain text, address text,"
	" PRIMARY KEY ((domain), address))",
	/* One partition per mailbox, clustered by arrival. Leveled compaction
	 * keeps a mailbox's rows in few sstables, so a listing read touches
	 * little data and range tombstones meet the rows they shadow soon. */
	"CREATE TABLE IF NOT EXISTS {ks}.listing (mailbox_id uuid, message_id timeuuid,"
	" size bigint, uidl text, prefix blob, body_size bigint, chunks int, body_id timeuuid,"
	" PRIMARY KEY ((mailbox_id), message_id))"
	" WITH CLUSTERING ORDER BY (message_id ASC)"
	" AND compaction = {'class': 'LeveledCompactionStrategy'}",
	/* One partition per chunk: a 25 MiB message is 25 small partitions. */
	"CREATE TABLE IF NOT EXISTS {ks}.bodies (message_id timeuuid, chunk int, data blob,"
	" PRIMARY KEY ((message_id, chunk)))",
	/* Who references a body, with what the listing row needs, so repair
	 * can re-list a message whose listing row is missing. */
	"CREATE TABLE IF NOT EXISTS {ks}.body_refs (message_id timeuuid, mailbox_id uuid,"
	" size bigint, uidl text, prefix blob, body_size bigint, chunks int, deleted boolean,"
	" listing_id timeuuid,"
	" PRIMARY KEY ((message_id), mailbox_id))",
	/* LOGIN-DELAY: the last POP3 login, a plain write per login
	 * (last-write-wins across datacenters). */
	"CREATE TABLE IF NOT EXISTS {ks}.pop3_logins (address text PRIMARY KEY, last_login bigint)",
	/* EXPIRE: one row per (message, retrieval time), so that a later
	 * retrieval never hides the first one whatever the write order: the
	 * first clustering row of a message is its earliest retrieval. */
	"CREATE TABLE IF NOT EXISTS {ks}.retrieved (mailbox_id uuid, message_id timeuuid,"
	" retrieved_at bigint, PRIMARY KEY ((mailbox_id), message_id, retrieved_at))",
	/* uid mode only: the per-mailbox counter, advanced by compare-and-set. */
	"CREATE TABLE IF NOT EXISTS {ks}.mailbox_uids (mailbox_id uuid PRIMARY KEY,"
	" next_uid bigint)",
	/* The outbound queue (see "the outbound queue" below): entries by
	 * owner and hour of queueing, the hours that have entries, the
	 * owner of each id, the messages in chunks, and the heartbeats. */
	"CREATE TABLE IF NOT EXISTS {ks}.queue (owner text, bucket bigint, id timeuuid,"
	" sender blob, queued_us bigint, next_attempt_us bigint, attempts int, size bigint,"
	" rcpts blob, PRIMARY KEY ((owner, bucket), id))",
	"CREATE TABLE IF NOT EXISTS {ks}.queue_buckets (owner text, bucket bigint,"
	" PRIMARY KEY ((owner), bucket))",
	"CREATE TABLE IF NOT EXISTS {ks}.queue_by_id (id timeuuid PRIMARY KEY, owner text,"
	" bucket bigint)",
	"CREATE TABLE IF NOT EXISTS {ks}.queue_chunks (id timeuuid, n int, data blob,"
	" PRIMARY KEY ((id), n))",
	"CREATE TABLE IF NOT EXISTS {ks}.queue_nodes (dc text, node text, heartbeat_us bigint,"
	" PRIMARY KEY ((dc), node))",
};

/* Whether the table has the column: 1 / 0 / -1 (system_schema is local to
 * each node, so this needs no replica). */
static int has_column(struct cass_store *c, const char *table, const char *column)
{
	struct cql_values *v = cql_values_create();
	cql_values_add_text(v, c->keyspace);
	cql_values_add_text(v, table);
	cql_values_add_text(v, column);
	struct cql_result *res = NULL;
	struct cql_error err;
	struct cql_query_opts opts;
	cql_query_opts_init(&opts);
	opts.consistency = CQL_ONE;
	int rc = cql_query(c->session, "SELECT column_name FROM system_schema.columns"
				       " WHERE keyspace_name = ? AND table_name = ? AND column_name = ?",
			   v, &opts, &res, &err);
	cql_values_free(&v);
	if (rc < 0) {
		status_from_error(&err, "read system_schema.columns");
		return -1;
	}
	int found = cql_result_next_row(res) ? 1 : 0;
	cql_result_free(&res);
	return found;
}

/* A keyspace made by an earlier version gets the columns added since:
 * the users' quotas and own EXPIRE policy, and the ids that let a listing row and its body have
 * different ids (a row without them has one id for both). Nodes starting
 * together may both add a column: the loser's error is harmless once the
 * column is there. */
static enum store_status migrate_users(struct cass_store *c)
{
	static const char *const columns[][3] = {
		{ "users", "quota_messages", "bigint" },
		{ "users", "quota_octets", "bigint" },
		{ "users", "expire_days", "bigint" },
		{ "listing", "body_id", "timeuuid" },
		{ "body_refs", "listing_id", "timeuuid" },
	};
	for (size_t i = 0; i < sizeof(columns) / sizeof(columns[0]); i++) {
		int has = has_column(c, columns[i][0], columns[i][1]);
		if (has != 0) {
			if (has < 0)
				return STORE_TEMPFAIL;
			continue;
		}
		char tmpl[128], stmt[512];
		snprintf(tmpl, sizeof(tmpl), "ALTER TABLE {ks}.%s ADD %s %s", columns[i][0],
			 columns[i][1], columns[i][2]);
		if (run_ddl(c, expand(c, tmpl, stmt, sizeof(stmt))) != STORE_OK &&
		    has_column(c, columns[i][0], columns[i][1]) != 1)
			return STORE_TEMPFAIL;
	}
	return STORE_OK;
}

/* The [cassandra] section (store_option_lookup). */
static const char *const consistency_choices[] = {
	"ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM",
	"LOCAL_ONE", NULL
};

static const char *const yes_no[] = { "yes", "no", NULL };

#define SECTION "cassandra"
static const struct store_option_def cass_options[] = {
	{ "contact_points", STORE_OPTION_STRING, NULL, false },
	{ "local_dc", STORE_OPTION_STRING, NULL, false },
	{ "keyspace", STORE_OPTION_STRING, NULL, false },
	{ "replication", STORE_OPTION_STRING, NULL, false },
	{ "username", STORE_OPTION_STRING, NULL, false },
	{ "password", STORE_OPTION_STRING, NULL, true },
	{ "read_consistency", STORE_OPTION_ENUM, consistency_choices, false },
	{ "write_consistency", STORE_OPTION_ENUM, consistency_choices, false },
	{ "require_durable", STORE_OPTION_ENUM, yes_no, false },
	{ NULL, STORE_OPTION_STRING, NULL, false },
};

static const char *option(const struct store_settings *set, const char *key)
{
	return store_settings_get(set, SECTION, key);
}

/* --- durability and clocks --- */

/* Whether an acknowledged write survives the crash of one node (kill -9,
 * power loss) of the local datacenter, as the nodes and the keyspace are
 * configured now: yes when every local node syncs its commit log before it
 * acknowledges (commitlog_sync batch or group), or when the write
 * consistency waits for at least two replicas (two nodes would have to
 * crash within the same commitlog_sync_period). Unreadable settings count
 * as "not synced", so an unknown node never makes the answer yes. */
#define DURABLE_RECHECK_US (60LL * 1000000)
#define NODE_QUERY_TIMEOUT_MS 5000
#define MAX_LOCAL_NODES 32

/* One row of system_views.settings on one node, into out; -1 when unreadable. */
static int node_setting(struct cass_store *c, const char *host, const char *name, char *out,
			size_t size)
{
	struct cql_values *v = cql_values_create();
	cql_values_add_text(v, name);
	struct cql_query_opts opts;
	cql_query_opts_init(&opts);
	opts.consistency = CQL_ONE;
	opts.idempotent = true;
	opts.timeout_ms = NODE_QUERY_TIMEOUT_MS;
	opts.host = host;
	struct cql_result *res = NULL;
	struct cql_error err;
	int rc = cql_query(c->session, "SELECT value FROM system_views.settings WHERE name = ?", v,
			   &opts, &res, &err);
	cql_values_free(&v);
	if (rc < 0) {
		snprintf(out, size, "%s", cql_error_kind_name(err.kind));
		return -1;
	}
	struct cql_slice s;
	out[0] = '\0';
	if (cql_result_next_row(res) && cql_result_get_text(res, 0, &s) == 1)
		snprintf(out, size, "%.*s", (int)s.len, (const char *)s.data);
	cql_result_free(&res);
	return 0;
}

/* The replicas per datacenter of the keyspace: local_r (of local_dc),
 * total_r, per-DC quorums summed (each_quorum_r) and the datacenters that
 * hold replicas (dcs_r). -1 when unreadable. */
static int keyspace_replicas(struct cass_store *c, const char *local_dc, int *local_r,
			     int *total_r, int *each_quorum_r, int *dcs_r)
{
	struct cql_values *v = cql_values_create();
	cql_values_add_text(v, c->keyspace);
	struct cql_query_opts opts;
	cql_query_opts_init(&opts);
	opts.consistency = CQL_ONE;
	opts.idempotent = true;
	opts.timeout_ms = NODE_QUERY_TIMEOUT_MS;
	struct cql_result *res = NULL;
	struct cql_error err;
	int rc = cql_query(c->session, "SELECT replication FROM system_schema.keyspaces"
				       " WHERE keyspace_name = ?", v, &opts, &res, &err);
	cql_values_free(&v);
	if (rc < 0)
		return -1;
	*local_r = *total_r = *each_quorum_r = *dcs_r = 0;
	bool nts = false;
	struct cql_collection coll;
	if (cql_result_next_row(res) && cql_result_get_collection(res, 0, &coll) == 1) {
		struct cql_slice k, val;
		while (cql_collection_next(&coll, &k) == 1 && cql_collection_next(&coll, &val) == 1) {
			char key[64], num[64];
			snprintf(key, sizeof(key), "%.*s", (int)k.len, (const char *)k.data);
			snprintf(num, sizeof(num), "%.*s", (int)val.len, (const char *)val.data);
			if (strcmp(key, "class") == 0) {
				/* SimpleStrategy places replicas whatever their
				 * datacenter: how many it spans is unknown. */
				nts = strstr(num, "NetworkTopologyStrategy") != NULL;
				continue;
			}
			int rf = atoi(num);
			if (rf > 0)
				(*dcs_r)++;
			*total_r += rf;
			*each_quorum_r += rf / 2 + 1;
			if (local_dc != NULL && strcmp(key, local_dc) == 0)
				*local_r = rf;
		}
	}
	cql_result_free(&res);
	if (!nts)
		*dcs_r = -1;
	return 0;
}

/* How many replicas acknowledge a write at cl. */
static int write_acks(enum cql_consistency cl, int local_rf, int total_rf, int each_quorum)
{
	switch (cl) {
	case CQL_LOCAL_QUORUM: return local_rf / 2 + 1;
	case CQL_EACH_QUORUM: return each_quorum;
	case CQL_QUORUM: return total_rf / 2 + 1;
	case CQL_ALL: return total_rf;
	case CQL_TWO: return 2;
	case CQL_THREE: return 3;
	default: return 1;
	}
}

/* The local DC's name, as the session sees it ("addr dc up local" lines). */
static void local_dc_name(struct cass_store *c, char *out, size_t size)
{
	char lines[MAX_LOCAL_NODES][128];
	unsigned n = cql_session_hosts(c->session, lines, MAX_LOCAL_NODES);
	out[0] = '\0';
	for (unsigned i = 0; i < n && i < MAX_LOCAL_NODES; i++) {
		char addr[64], dc[64];
		if (strstr(lines[i], " local") != NULL &&
		    sscanf(lines[i], "%63s %63s", addr, dc) == 2) {
			snprintf(out, size, "%s", dc);
			return;
		}
	}
}

/* replication_dcs when the replication could not be read at all. */
#define REPLICATION_UNREAD (-2)

/* How QUIT deletes in a keyspace whose replication spans dcs datacenters
 * (-1: a strategy that does not say, REPLICATION_UNREAD), one line. */
static void delete_mode_line(const struct cass_store *c, int dcs, char *out, size_t size)
{
	if (dcs == 1)
		snprintf(out, size, "by range (keyspace %s is replicated in one datacenter):"
			 " a download-and-delete removes its prefix with one range tombstone",
			 c->keyspace);
	else if (dcs > 1)
		snprintf(out, size, "row by row (keyspace %s is replicated in %d datacenters):"
			 " every deleted message leaves a tombstone in the listing, as a range"
			 " delete could hide mail that another datacenter wrote during a partition",
			 c->keyspace, dcs);
	else if (dcs == REPLICATION_UNREAD)
		snprintf(out, size, "row by row (the replication of keyspace %s could not be read)",
			 c->keyspace);
	else
		snprintf(out, size, "row by row (keyspace %s does not use NetworkTopologyStrategy:"
			 " the datacenters it spans are unknown)", c->keyspace);
}

/* Runs the check; sets c->durable and c->durable_line ("yes: ..." / "no: ..."),
 * and the delete mode the keyspace's replication allows. */
static void durability_refresh(struct cass_store *c)
{
	char hosts[MAX_LOCAL_NODES][64];
	unsigned n = cql_session_local_hosts(c->session, hosts, MAX_LOCAL_NODES);
	if (n > MAX_LOCAL_NODES)
		n = MAX_LOCAL_NODES;
	struct buf unsynced, synced;
	buf_init(&unsynced, 0);
	buf_init(&synced, 0);
	char mode[64] = "";
	for (unsigned i = 0; i < n; i++) {
		char sync[64], period[64] = "";
		if (node_setting(c, hosts[i], "commitlog_sync", sync, sizeof(sync)) < 0) {
			buf_printf(&unsynced, "%scould not read commitlog_sync on %s (%s)",
				   unsynced.len > 0 ? ", " : "", hosts[i], sync);
			continue;
		}
		if (strcmp(sync, "batch") == 0 || strcmp(sync, "group") == 0) {
			buf_printf(&synced, "%s%s", synced.len > 0 ? ", " : "", hosts[i]);
			snprintf(mode, sizeof(mode), "%s", sync);
			continue;
		}
		node_setting(c, hosts[i], "commitlog_sync_period", period, sizeof(period));
		buf_printf(&unsynced, "%scommitlog_sync %s%s%s%s on %s", unsynced.len > 0 ? ", " : "",
			   sync[0] != '\0' ? sync : "unknown", period[0] != '\0' ? " (every " : "",
			   period, period[0] != '\0' ? ")" : "", hosts[i]);
	}
	char dc[64];
	local_dc_name(c, dc, sizeof(dc));
	int local_rf = 0, total_rf = 0, each_quorum = 0, dcs = REPLICATION_UNREAD;
	bool rf_known = keyspace_replicas(c, dc, &local_rf, &total_rf, &each_quorum, &dcs) == 0;
	if (!rf_known)
		dcs = REPLICATION_UNREAD;
	int acks = rf_known ? write_acks(c->write_cl, local_rf, total_rf, each_quorum) : 0;
	const char *cl = cql_consistency_name(c->write_cl);

	struct buf line;
	buf_init(&line, 0);
	int durable;
	if (n > 0 && unsynced.len == 0) {
		durable = 1;
		buf_printf(&line, "yes: an acknowledged write survives one node crash"
			   " (commitlog_sync %s on %s)", mode, synced.data);
	} else if (acks >= 2) {
		durable = 1;
		buf_printf(&line, "yes: an acknowledged write survives one node crash"
			   " (write_consistency %s waits for %d replicas; %s has %d)",
			   cl, acks, dc, local_rf);
	} else {
		durable = 0;
		buf_printf(&line, "no: an acknowledged write can be lost when one node crashes (");
		if (n == 0)
			buf_printf(&line, "no node of the local datacenter is known");
		else
			buf_append_str(&line, unsynced.data);
		if (rf_known)
			buf_printf(&line, "; write_consistency %s waits for %d replica%s, %s has %d)",
				   cl, acks, acks == 1 ? "" : "s", dc, local_rf);
		else
			buf_printf(&line, "; the replication of keyspace %s could not be read)",
				   c->keyspace);
		buf_printf(&line, "; set commitlog_sync: group (or batch) in every %s node's"
			   " cassandra.yaml, or give %s 3 replicas (ALTER KEYSPACE %s, then"
			   " nodetool repair) with write_consistency LOCAL_QUORUM", dc, dc, c->keyspace);
	}
	pthread_mutex_lock(&c->lock);
	c->durable = durable;
	snprintf(c->durable_line, sizeof(c->durable_line), "%s", line.data);
	c->durable_checked_us = clock_wall_us();
	bool first = c->range_by_replication < 0;
	int was_dcs = c->replication_dcs;
	/* A replication read that fails later keeps the mode last read: the
	 * replication changes only by an operator's hand. */
	if (dcs != REPLICATION_UNREAD || first)
		c->replication_dcs = dcs;
	c->range_by_replication = c->replication_dcs == 1;
	dcs = c->replication_dcs;
	pthread_mutex_unlock(&c->lock);
	if (!first && was_dcs != dcs) {
		char deletes[512];
		delete_mode_line(c, dcs, deletes, sizeof(deletes));
		log_info("cassandra: deletes: %s", deletes);
	}
	buf_deinit(&line);
	buf_deinit(&unsynced);
	buf_deinit(&synced);
}

/* The cached result, refreshed when older than DURABLE_RECHECK_US (the
 * settings and the replication change only by an operator's hand; one
 * caller at a time refreshes, the others use the last result). */
static int durability(struct cass_store *c, struct buf *line)
{
	pthread_mutex_lock(&c->lock);
	bool stale = clock_wall_us() - c->durable_checked_us > DURABLE_RECHECK_US &&
		     !c->durable_checking;
	if (stale)
		c->durable_checking = true;
	pthread_mutex_unlock(&c->lock);
	if (stale) {
		durability_refresh(c);
		pthread_mutex_lock(&c->lock);
		c->durable_checking = false;
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_lock(&c->lock);
	int d = c->durable;
	if (line != NULL)
		buf_append_str(line, c->durable_line);
	pthread_mutex_unlock(&c->lock);
	return d;
}

static int cass_durability(struct store *store, struct buf *line)
{
	return durability((struct cass_store *)store, line);
}

/* Whether the keyspace's replication allows range deletes (one
 * datacenter), as last checked (refreshed like durability()). */
static bool replication_allows_range(struct cass_store *c)
{
	durability(c, NULL);
	pthread_mutex_lock(&c->lock);
	bool ok = c->range_by_replication == 1;
	pthread_mutex_unlock(&c->lock);
	return ok;
}

/*
 * Clocks. A listing id is a TimeUUID from this node's clock and a range
 * delete spares ids younger than RANGE_DELETE_MARGIN_US before a login
 * timed by another node's clock: both clocks must be close to the
 * Cassandra nodes' (invariant 12). Every CLOCK_CHECK_US one caller (the
 * next delivery) reads toUnixTimestamp(now()) on each local node and
 * compares it with the midpoint of the request's round trip; while some
 * node differs by more than MAX_CLOCK_SKEW_US (or none could be read),
 * deliveries answer TEMPFAIL (451).
 */
#define CLOCK_CHECK_US (30LL * 1000000)
#define MAX_CLOCK_SKEW_US (10LL * 1000000)

/* The largest |skew| over the local nodes, in µs; -1 when none answered. */
static int64_t measure_skew(struct cass_store *c)
{
	char hosts[MAX_LOCAL_NODES][64];
	unsigned n = cql_session_local_hosts(c->session, hosts, MAX_LOCAL_NODES);
	if (n > MAX_LOCAL_NODES)
		n = MAX_LOCAL_NODES;
	int64_t worst = -1;
	for (unsigned i = 0; i < n; i++) {
		struct cql_query_opts opts;
		cql_query_opts_init(&opts);
		opts.consistency = CQL_ONE;
		opts.idempotent = true;
		opts.timeout_ms = NODE_QUERY_TIMEOUT_MS;
		opts.host = hosts[i];
		struct cql_result *res = NULL;
		struct cql_error err;
		int64_t t0 = clock_wall_us();
		int rc = cql_query(c->session, "SELECT toUnixTimestamp(now()) FROM system.local", NULL,
				   &opts, &res, &err);
		int64_t t1 = clock_wall_us();
		int64_t ms = 0;
		if (rc < 0 || !cql_result_next_row(res) || cql_result_get_bigint(res, 0, &ms) != 1) {
			cql_result_free(&res);
			continue;
		}
		cql_result_free(&res);
		/* The node read its clock somewhere in [t0, t1]: the midpoint is
		 * off by at most half the round trip, counted against us (and
		 * the node's millisecond). */
		int64_t skew = ms * 1000 - (t0 + t1) / 2;
		int64_t abs_skew = (skew < 0 ? -skew : skew) + (t1 - t0) / 2 + 1000;
		if (abs_skew > worst)
			worst = abs_skew;
	}
	return worst;
}

static void clock_refresh(struct cass_store *c)
{
	int64_t skew = measure_skew(c);
	bool ok = skew >= 0 && skew <= MAX_CLOCK_SKEW_US;
	pthread_mutex_lock(&c->lock);
	bool was_ok = c->clock_ok;
	c->clock_ok = ok;
	c->clock_skew_us = skew;
	c->clock_checked_us = clock_wall_us();
	pthread_mutex_unlock(&c->lock);
	if (!ok && (was_ok || !c->clock_warned)) {
		if (skew < 0)
			log_error("cassandra: could not read the clock of any local node:"
				  " deliveries answer 451 until one answers");
		else
			log_error("cassandra: this node's clock differs from a local Cassandra node's"
				  " by %.1f s (at most %.0f s allowed): deliveries answer 451 until"
				  " the clocks agree (check NTP)", (double)skew / 1e6,
				  (double)MAX_CLOCK_SKEW_US / 1e6);
		c->clock_warned = true;
	} else if (ok && !was_ok && c->clock_warned) {
		log_info("cassandra: clocks agree again (skew %.3f s)", (double)skew / 1e6);
		c->clock_warned = false;
	}
}

/* Whether deliveries may mint ids now; re-measures when the last
 * measurement is older than CLOCK_CHECK_US (one caller at a time, the
 * others use the last result). */
static bool clock_ok(struct cass_store *c)
{
	pthread_mutex_lock(&c->lock);
	bool due = clock_wall_us() - c->clock_checked_us > CLOCK_CHECK_US && !c->clock_checking;
	if (due)
		c->clock_checking = true;
	pthread_mutex_unlock(&c->lock);
	if (due) {
		clock_refresh(c);
		pthread_mutex_lock(&c->lock);
		c->clock_checking = false;
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_lock(&c->lock);
	bool ok = c->clock_ok;
	pthread_mutex_unlock(&c->lock);
	return ok;
}

static struct store *cass_open(const struct store_settings *set, const char **error_r)
{
	static char errbuf[1400];
	struct cass_store *c = xcalloc(1, sizeof(*c));
	const char *ks = option(set, "keyspace") != NULL ? option(set, "keyspace") : "tern";
	const char *read_cl = option(set, "read_consistency");
	const char *write_cl = option(set, "write_consistency");
	const char *replication = option(set, "replication");
	c->read_cl = c->write_cl = CQL_LOCAL_QUORUM;
	c->require_durable = option(set, "require_durable") != NULL &&
			     strcmp(option(set, "require_durable"), "yes") == 0;
	c->range_by_replication = -1;
	c->replication_dcs = REPLICATION_UNREAD;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->domain_lock, NULL);
	if (!valid_identifier(ks)) {
		*error_r = "[cassandra] keyspace must be lower-case letters, digits and _";
		free(c);
		return NULL;
	}
	str_copy(c->keyspace, ks, sizeof(c->keyspace));
	if ((read_cl != NULL && cql_consistency_parse(read_cl, &c->read_cl) < 0) ||
	    (write_cl != NULL && cql_consistency_parse(write_cl, &c->write_cl) < 0)) {
		*error_r = "[cassandra] invalid consistency level";
		free(c);
		return NULL;
	}
	struct buf repl;
	buf_init(&repl, 0);
	if (replication_map(replication != NULL ? replication : "dc1:1", &repl) < 0) {
		*error_r = "[cassandra] replication must look like \"dc1:3, dc2:3\"";
		buf_deinit(&repl);
		free(c);
		return NULL;
	}

	struct cql_settings cs;
	cql_settings_init(&cs);
	if (option(set, "contact_points") != NULL)
		cs.contact_points = option(set, "contact_points");
	cs.local_dc = option(set, "local_dc");
	cs.username = option(set, "username");
	cs.password = option(set, "password");
	struct cql_error err;
	c->session = cql_session_create(&cs, &err);
	if (c->session == NULL) {
		snprintf(errbuf, sizeof(errbuf), "cannot connect to Cassandra at %s: %s: %s",
			 cs.contact_points, cql_error_kind_name(err.kind), err.message);
		*error_r = errbuf;
		buf_deinit(&repl);
		free(c);
		return NULL;
	}

	/* Idempotent schema creation: safe to run on every start, on every
	 * node, concurrently (the DDL is schema, not data: no Paxos). */
	struct buf q;
	buf_init(&q, 0);
	buf_printf(&q, "CREATE KEYSPACE IF NOT EXISTS %s WITH replication ="
		       " {'class': 'NetworkTopologyStrategy', %s}", c->keyspace, repl.data);
	int64_t schema_start_ms = clock_monotonic_ms();
	struct cql_stats before;
	cql_session_stats(c->session, &before);
	enum store_status st = run_ddl(c, q.data);
	for (size_t i = 0; st == STORE_OK && i < sizeof(schema) / sizeof(schema[0]); i++) {
		char stmt[1024];
		st = run_ddl(c, expand(c, schema[i], stmt, sizeof(stmt)));
	}
	buf_deinit(&q);
	buf_deinit(&repl);
	if (st == STORE_OK)
		st = migrate_users(c);
	/* A schema change waits for every node to agree on it: a slow or
	 * unreachable peer makes the start-up slow, and says so here. */
	struct cql_stats after;
	cql_session_stats(c->session, &after);
	uint64_t disagreed = after.schema_agreement_timeouts - before.schema_agreement_timeouts;
	if (disagreed > 0)
		log_warn("cassandra: schema ready keyspace=%s ms=%lld, but %llu changes timed out"
			 " waiting for schema agreement (is every node up and reachable?)", c->keyspace,
			 (long long)(clock_monotonic_ms() - schema_start_ms), (unsigned long long)disagreed);
	else
		log_info("cassandra: schema ready keyspace=%s ms=%lld", c->keyspace,
			 (long long)(clock_monotonic_ms() - schema_start_ms));
	if (st != STORE_OK) {
		*error_r = "cannot create the Cassandra schema (see the log)";
		cql_session_destroy(&c->session);
		free(c);
		return NULL;
	}
	if (cs.local_dc != NULL)
		str_copy(c->dc, cs.local_dc, sizeof(c->dc));
	else
		local_dc_name(c, c->dc, sizeof(c->dc));
	if (c->dc[0] == '\0')
		str_copy(c->dc, "unknown", sizeof(c->dc)); /* a partition key cannot be empty */
	durability_refresh(c);
	if (c->durable == 1) {
		log_info("cassandra: durable: %s", c->durable_line);
	} else if (c->require_durable) {
		snprintf(errbuf, sizeof(errbuf), "[cassandra] require_durable = yes, but durable: %s",
			 c->durable_line);
		*error_r = errbuf;
		cql_session_destroy(&c->session);
		pthread_mutex_destroy(&c->lock);
		pthread_mutex_destroy(&c->domain_lock);
		free(c);
		return NULL;
	} else {
		log_warn("cassandra: durable: %s", c->durable_line);
	}
	char deletes[512];
	delete_mode_line(c, c->replication_dcs, deletes, sizeof(deletes));
	log_info("cassandra: deletes: %s", deletes);
	clock_refresh(c);
	return &c->store;
}

static void cass_close(struct store *store)
{
	struct cass_store *c = (struct cass_store *)store;
	struct cql_stats stats;
	cql_session_stats(c->session, &stats);
	log_info("cassandra: %llu requests, %llu errors, %llu retries, "
		 "%llu conditional statements (LWT), %llu serial reads",
		 (unsigned long long)stats.requests, (unsigned long long)stats.errors,
		 (unsigned long long)stats.retries,
		 (unsigned long long)stats.conditional_statements,
		 (unsigned long long)stats.serial_reads);
	log_info("cassandra: %llu listing ids minted again (late listing write),"
		 " %llu deliveries refused for clock skew, %llu range deletes,"
		 " %llu declined for clock skew, %llu declined for replication across datacenters",
		 (unsigned long long)__atomic_load_n(&c->remints, __ATOMIC_RELAXED),
		 (unsigned long long)__atomic_load_n(&c->clock_refusals, __ATOMIC_RELAXED),
		 (unsigned long long)__atomic_load_n(&c->range_deletes, __ATOMIC_RELAXED),
		 (unsigned long long)__atomic_load_n(&c->range_deletes_declined, __ATOMIC_RELAXED),
		 (unsigned long long)__atomic_load_n(&c->range_deletes_declined_dcs,
						     __ATOMIC_RELAXED));
	cql_session_destroy(&c->session);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->domain_lock);
	free(c);
}

/* The CQL client's counters, read at each scrape. The conditional-statement
 * and serial counters are always rendered, 0 included: in messageid mode an
 * alert watches them stay 0. */
static const struct {
	const char *name, *help;
	size_t offset;
} cass_counters[] = {
	{ "tern_cassandra_errors_total", "CQL requests that failed after their retries.",
	  offsetof(struct cql_stats, errors) },
	{ "tern_cassandra_retries_total", "Extra attempts of CQL requests, on the same or the next node.",
	  offsetof(struct cql_stats, retries) },
	{ "tern_cassandra_timeouts_total", "CQL requests whose client deadline passed.",
	  offsetof(struct cql_stats, timeouts) },
	{ "tern_cassandra_reprepares_total", "Statements prepared again after an Unprepared error.",
	  offsetof(struct cql_stats, reprepares) },
	{ "tern_cassandra_conditional_statements_total",
	  "Conditional statements (lightweight transactions, IF ...) sent; 0 in pop3_ids = messageid mode.",
	  offsetof(struct cql_stats, conditional_statements) },
	{ "tern_cassandra_serial_requests_total",
	  "Requests at SERIAL or LOCAL_SERIAL consistency; 0 in pop3_ids = messageid mode.",
	  offsetof(struct cql_stats, serial_reads) },
	{ "tern_cassandra_connections_opened_total", "Connections opened to Cassandra nodes.",
	  offsetof(struct cql_stats, connections_opened) },
	{ "tern_cassandra_schema_agreement_timeouts_total",
	  "Schema changes whose wait for schema agreement timed out.",
	  offsetof(struct cql_stats, schema_agreement_timeouts) },
};

/* Durability, clocks and re-mints (see "durability and clocks"). */
static void cass_durability_metrics(struct cass_store *c, struct buf *out)
{
	pthread_mutex_lock(&c->lock);
	int durable = c->durable;
	int64_t skew = c->clock_skew_us;
	bool clock_good = c->clock_ok;
	bool range_enabled = c->range_by_replication == 1;
	pthread_mutex_unlock(&c->lock);
	metrics_render_header(out, "tern_cassandra_durable", METRICS_GAUGE,
			      "Whether an acknowledged write survives one node crash"
			      " (commitlog_sync, replicas, write consistency): 1 or 0.");
	metrics_render_sample(out, "tern_cassandra_durable", NULL, NULL, durable == 1);
	metrics_render_header(out, "tern_cassandra_clock_skew_seconds", METRICS_GAUGE,
			      "The largest clock difference last measured with a local"
			      " Cassandra node, round trip included (-1: none answered).");
	buf_printf(out, "tern_cassandra_clock_skew_seconds %.6f\n",
		   skew < 0 ? -1.0 : (double)skew / 1e6);
	metrics_render_header(out, "tern_cassandra_clock_ok", METRICS_GAUGE,
			      "0 while deliveries answer 451 because of the clock skew, else 1.");
	metrics_render_sample(out, "tern_cassandra_clock_ok", NULL, NULL, clock_good);
	metrics_render_header(out, "tern_cassandra_listing_remints_total", METRICS_COUNTER,
			      "Listing ids minted again: the listing write would have started"
			      " more than 10 s after the id was minted.");
	metrics_render_sample(out, "tern_cassandra_listing_remints_total", NULL, NULL,
			      __atomic_load_n(&c->remints, __ATOMIC_RELAXED));
	metrics_render_header(out, "tern_cassandra_clock_refusals_total", METRICS_COUNTER,
			      "Deliveries answered 451 because of the clock skew.");
	metrics_render_sample(out, "tern_cassandra_clock_refusals_total", NULL, NULL,
			      __atomic_load_n(&c->clock_refusals, __ATOMIC_RELAXED));
	metrics_render_header(out, "tern_cassandra_range_deletes_total", METRICS_COUNTER,
			      "Downloaded listing prefixes removed with one range tombstone.");
	metrics_render_sample(out, "tern_cassandra_range_deletes_total", NULL, NULL,
			      __atomic_load_n(&c->range_deletes, __ATOMIC_RELAXED));
	metrics_render_header(out, "tern_cassandra_range_deletes_declined_total", METRICS_COUNTER,
			      "Prefixes deleted row by row instead: reason clock, this node's"
			      " clock was not known to agree with Cassandra's; reason"
			      " datacenters, the keyspace is replicated in several (or the"
			      " replication is unknown).");
	metrics_render_sample(out, "tern_cassandra_range_deletes_declined_total", "reason", "clock",
			      __atomic_load_n(&c->range_deletes_declined, __ATOMIC_RELAXED));
	metrics_render_sample(out, "tern_cassandra_range_deletes_declined_total", "reason",
			      "datacenters",
			      __atomic_load_n(&c->range_deletes_declined_dcs, __ATOMIC_RELAXED));
	metrics_render_header(out, "tern_cassandra_range_deletes_enabled", METRICS_GAUGE,
			      "1 when a downloaded prefix may be removed with one range tombstone"
			      " (the keyspace is replicated in one datacenter), 0 when every"
			      " deleted message is deleted row by row.");
	metrics_render_sample(out, "tern_cassandra_range_deletes_enabled", NULL, NULL,
			      range_enabled);
}

static void cass_metrics_render(struct store *store, struct buf *out)
{
	struct cass_store *c = (struct cass_store *)store;
	struct cql_stats st;
	cql_session_stats(c->session, &st);
	const char *name = "tern_cassandra_requests_total";
	metrics_render_header(out, name, METRICS_COUNTER,
			      "CQL requests (query, execute, batch) by consistency level.");
	for (unsigned int i = 0; i < CQL_CONSISTENCY_COUNT; i++)
		metrics_render_sample(out, name, "consistency", cql_consistency_name(i),
				      st.by_consistency[i]);
	for (size_t i = 0; i < sizeof(cass_counters) / sizeof(cass_counters[0]); i++) {
		uint64_t v;
		memcpy(&v, (const char *)&st + cass_counters[i].offset, sizeof(v));
		metrics_render_header(out, cass_counters[i].name, METRICS_COUNTER,
				      cass_counters[i].help);
		metrics_render_sample(out, cass_counters[i].name, NULL, NULL, v);
	}
	char hosts[64][128];
	unsigned int n = cql_session_hosts(c->session, hosts, 64), up = 0;
	for (unsigned int i = 0; i < n && i < 64; i++) {
		char state[8]; /* "addr dc up|down [local]" */
		if (sscanf(hosts[i], "%*s %*s %7s", state) == 1 && strcmp(state, "up") == 0)
			up++;
	}
	name = "tern_cassandra_nodes";
	metrics_render_header(out, name, METRICS_GAUGE,
			      "Cassandra nodes known to the client, by whether it believes them up.");
	metrics_render_sample(out, name, "state", "down", (n < 64 ? n : 64) - up);
	metrics_render_sample(out, name, "state", "up", up);
	cass_durability_metrics(c, out);
}



/* Runs a one-text-parameter write. */
static enum store_status write1(struct cass_store *c, const char *fmt, const char *a,
				const char *b)
{
	char q[512];
	struct cql_values *v = cql_values_create();
	cql_values_add_text(v, a);
	if (b != NULL)
		cql_values_add_text(v, b);
	enum store_status st = run(c, Q(c, q, fmt), v, c->write_cl, NULL);
	cql_values_free(&v);
	return st;
}

/* Calls fn for every row of the statement's result, page by page, at cl;
 * fn returns false to stop early. *rows_r counts the rows seen. */
typedef bool row_fn(void *ctx, struct cql_result *res);

static enum store_status for_each_row(struct cass_store *c, const char *tmpl,
				      const struct cql_values *v, enum cql_consistency cl,
				      unsigned int timeout_ms, row_fn *fn, void *ctx,
				      uint64_t *rows_r)
{
	char q[512];
	struct cql_error err;
	struct cql_prepared *stmt = cql_prepare(c->session, Q(c, q, tmpl), &err);
	*rows_r = 0;
	if (stmt == NULL)
		return status_from_error(&err, q);
	struct buf paging;
	buf_init(&paging, 0);
	enum store_status st = STORE_OK;
	bool more = true, first = true, go_on = true;
	while (more && go_on) {
		struct cql_query_opts opts;
		cql_query_opts_init(&opts);
		opts.consistency = cl;
		opts.idempotent = true;
		opts.page_size = LISTING_PAGE;
		opts.timeout_ms = timeout_ms;
		if (!first) {
			opts.paging_state = paging.data;
			opts.paging_state_len = paging.len;
		}
		first = false;
		struct cql_result *res = NULL;
		if (cql_execute(c->session, stmt, v, &opts, &res, &err) < 0) {
			st = status_from_error(&err, q);
			break;
		}
		while (go_on && cql_result_next_row(res)) {
			(*rows_r)++;
			go_on = fn(ctx, res);
		}
		const void *ps;
		size_t pslen;
		more = cql_result_paging_state(res, &ps, &pslen);
		if (more) {
			buf_reset(&paging);
			buf_append(&paging, ps, pslen);
		}
		cql_result_free(&res);
	}
	buf_deinit(&paging);
	return st;
}

struct text_rows {
	struct buf *out;
	bool one;
};

static bool text_row(void *ctx, struct cql_result *res)
{
	struct text_rows *t = ctx;
	struct cql_slice s;
	if (t->out != NULL && cql_result_get_text(res, 0, &s) == 1) {
		buf_append(t->out, s.data, s.len);
		if (!t->one)
			buf_append_c(t->out, '\n');
	}
	return !t->one;
}

/* Runs a read with up to one text parameter; appends column 0 of each row
 * (text) and '\n' to out when given (only the first row when one).
 * NOTFOUND when there is no row. */
static enum store_status read_text(struct cass_store *c, const char *tmpl, const char *a,
				   struct buf *out, bool one)
{
	struct cql_values *v = cql_values_create();
	if (a != NULL)
		cql_values_add_text(v, a);
	struct text_rows t = { out, one };
	uint64_t rows;
	enum store_status st = for_each_row(c, tmpl, v, c->read_cl, 0, text_row, &t, &rows);
	cql_values_free(&v);
	if (st == STORE_OK && rows == 0)
		return STORE_NOTFOUND;
	return st;
}

/* The slot of domain in the cache, or -1. Under domain_lock. */
static int domain_slot(const struct cass_store *c, const char *domain)
{
	for (int i = 0; i < DOMAIN_CACHE_SIZE; i++)
		if (strcmp(c->domains_seen[i].name, domain) == 0)
			return i;
	return -1;
}

static bool domain_cached(struct cass_store *c, const char *domain, int64_t now_us)
{
	pthread_mutex_lock(&c->domain_lock);
	int i = domain_slot(c, domain);
	bool fresh = i >= 0 && c->domains_seen[i].until_us > now_us;
	pthread_mutex_unlock(&c->domain_lock);
	return fresh;
}

/* Remembers domain as local until until_us (0: forgets it), in its own
 * slot or the one that expires first. */
static void domain_remember(struct cass_store *c, const char *domain, int64_t until_us)
{
	if (strlen(domain) >= sizeof(c->domains_seen[0].name))
		return;
	pthread_mutex_lock(&c->domain_lock);
	int i = domain_slot(c, domain);
	if (i < 0 && until_us != 0) {
		i = 0;
		for (int k = 1; k < DOMAIN_CACHE_SIZE; k++)
			if (c->domains_seen[k].until_us < c->domains_seen[i].until_us)
				i = k;
		str_copy(c->domains_seen[i].name, domain, sizeof(c->domains_seen[i].name));
	}
	if (i >= 0)
		c->domains_seen[i].until_us = until_us;
	pthread_mutex_unlock(&c->domain_lock);
}

static enum store_status cass_domain_add(struct store *store, const char *domain)
{
	struct cass_store *c = (struct cass_store *)store;
	enum store_status st = read_text(c, "SELECT name FROM {ks}.domains WHERE name = ?", domain,
					 NULL, true);
	if (st == STORE_OK)
		return STORE_EXISTS;
	if (st != STORE_NOTFOUND)
		return st;
	return write1(c, "INSERT INTO {ks}.domains (name) VALUES (?)", domain, NULL);
}

static enum store_status cass_domain_del(struct store *store, const char *domain)
{
	struct cass_store *c = (struct cass_store *)store;
	enum store_status st = read_text(c, "SELECT name FROM {ks}.domains WHERE name = ?", domain,
					 NULL, true);
	if (st != STORE_OK)
		return st;
	st = read_text(c, "SELECT address FROM {ks}.users_by_domain WHERE domain = ? LIMIT 1",
		       domain, NULL, true);
	if (st == STORE_OK)
		return STORE_EXISTS;
	if (st != STORE_NOTFOUND)
		return st;
	domain_remember(c, domain, 0);
	return write1(c, "DELETE FROM {ks}.domains WHERE name = ?", domain, NULL);
}

static enum store_status cass_domain_exists(struct store *store, const char *domain)
{
	struct cass_store *c = (struct cass_store *)store;
	int64_t now = clock_wall_us();
	if (domain_cached(c, domain, now))
		return STORE_OK;
	enum store_status st = read_text(c, "SELECT name FROM {ks}.domains WHERE name = ?",
					 domain, NULL, true);
	if (st == STORE_OK)
		domain_remember(c, domain, now + DOMAIN_CACHE_US);
	return st;
}

static enum store_status cass_domain_list(struct store *store, struct buf *out)
{
	size_t start = out->len;
	enum store_status st = read_text((struct cass_store *)store,
					 "SELECT name FROM {ks}.domains", NULL, out, false);
	if (st == STORE_NOTFOUND)
		st = STORE_OK;
	if (st == STORE_OK)
		store_sort_lines(out, start); /* token order → name order */
	return st;
}

static enum store_status cass_user_add(struct store *store, const char *address,
				       const char *hash)
{
	struct cass_store *c = (struct cass_store *)store;
	/* Administrative path: a read-then-write, never on delivery or POP3. */
	enum store_status st = read_text(c, "SELECT address FROM {ks}.users WHERE address = ?",
					 address, NULL, true);
	if (st == STORE_OK)
		return STORE_EXISTS;
	if (st != STORE_NOTFOUND)
		return st;
	const char *domain = strrchr(address, '@') + 1;
	char q[512];
	struct cql_values *v = cql_values_create();
	cql_values_add_text(v, domain);
	cql_values_add_text(v, address);
	st = run(c, Q(c, q, "INSERT INTO {ks}.users_by_domain (domain, address) VALUES (?, ?)"), v,
		 c->write_cl, NULL);
	cql_values_clear(v);
	if (st == STORE_OK) {
		cql_values_add_text(v, address);
		cql_values_add_text(v, domain);
		cql_values_add_text(v, hash);
		st = run(c, Q(c, q, "INSERT INTO {ks}.users (address, domain, password) VALUES (?, ?, ?)"),
			 v, c->write_cl, NULL);
	}
	cql_values_free(&v);
	return st;
}

static enum store_status cass_user_set_password(struct store *store, const char *address,
						const char *hash)
{
	struct cass_store *c = (struct cass_store *)store;
	enum store_status st = read_text(c, "SELECT address FROM {ks}.users WHERE address = ?",
					 address, NULL, true);
	if (st != STORE_OK)
		return st;
	return write1(c, "UPDATE {ks}.users SET password = ? WHERE address = ?", hash, address);
}

static enum store_status cass_user_get(struct store *store, const char *address,
				       struct buf *hash_r)
{
	return read_text((struct cass_store *)store,
			 "SELECT password FROM {ks}.users WHERE address = ?", address, hash_r, true);
}

static enum store_status cass_user_list(struct store *store, struct buf *out)
{
	size_t start = out->len;
	enum store_status st = read_text((struct cass_store *)store,
					 "SELECT address FROM {ks}.users", NULL, out, false);
	if (st == STORE_NOTFOUND)
		st = STORE_OK;
	if (st == STORE_OK)
		store_sort_lines(out, start); /* token order → name order */
	return st;
}

/* --- delivery --- */

static uint32_t uidvalidity_of(const struct uuid *mailbox)
{
	/* Derived from the mailbox id, so every node agrees without asking. */
	uint32_t v = ((uint32_t)mailbox->b[0] << 24) | ((uint32_t)mailbox->b[1] << 16) |
		     ((uint32_t)mailbox->b[2] << 8) | mailbox->b[3];
	return v != 0 ? v : 1;
}

/* uid mode: allocates the next UID of the mailbox with a compare-and-set
 * at SERIAL (as James' CassandraUidProvider does). A CAS whose outcome is
 * unknown (write timeout of type CAS) may have consumed a UID: the next
 * attempt reads the counter again at SERIAL and takes a fresh one, so two
 * messages never share a UID and a gap is the worst case. */
static enum store_status allocate_uid(struct cass_store *c, const struct uuid *mailbox,
				      uint32_t *uid_r)
{
	char q[512];
	struct cql_error err;
	for (int attempt = 0; attempt < UID_CAS_ATTEMPTS; attempt++) {
		struct cql_values *v = cql_values_create();
		cql_values_add_uuid(v, mailbox->b);
		struct cql_query_opts opts;
		cql_query_opts_init(&opts);
		opts.consistency = CQL_SERIAL;
		opts.idempotent = true;
		struct cql_result *res = NULL;
		struct cql_prepared *stmt = cql_prepare(
			c->session, Q(c, q, "SELECT next_uid FROM {ks}.mailbox_uids WHERE mailbox_id = ?"),
			&err);
		if (stmt == NULL || cql_execute(c->session, stmt, v, &opts, &res, &err) < 0) {
			cql_values_free(&v);
			return status_from_error(&err, "uid read");
		}
		int64_t current = 0;
		bool exists = cql_result_next_row(res) && cql_result_get_bigint(res, 0, &current) == 1;
		cql_result_free(&res);
		cql_values_clear(v);

		cql_query_opts_init(&opts);
		opts.consistency = c->write_cl;
		opts.serial_consistency = CQL_SERIAL;
		opts.idempotent = false;
		if (exists) {
			cql_values_add_bigint(v, current + 1);
			cql_values_add_uuid(v, mailbox->b);
			cql_values_add_bigint(v, current);
			stmt = cql_prepare(c->session,
					   Q(c, q, "UPDATE {ks}.mailbox_uids SET next_uid = ? WHERE mailbox_id = ? IF next_uid = ?"),
					   &err);
		} else {
			current = 1;
			cql_values_add_uuid(v, mailbox->b);
			cql_values_add_bigint(v, 2);
			stmt = cql_prepare(c->session,
					   Q(c, q, "INSERT INTO {ks}.mailbox_uids (mailbox_id, next_uid) VALUES (?, ?) IF NOT EXISTS"),
					   &err);
		}
		if (stmt == NULL) {
			cql_values_free(&v);
			return status_from_error(&err, "uid prepare");
		}
		int rc = cql_execute(c->session, stmt, v, &opts, &res, &err);
		cql_values_free(&v);
		if (rc < 0) {
			if (err.kind == CQL_ERR_WRITE_TIMEOUT || cql_error_is_temporary(&err)) {
				log_warn("cassandra: uid CAS outcome unknown (%s); reading again",
					 cql_error_kind_name(err.kind));
				continue;
			}
			return status_from_error(&err, "uid CAS");
		}
		int applied = cql_result_applied(res);
		cql_result_free(&res);
		if (applied == 1) {
			*uid_r = (uint32_t)current;
			return STORE_OK;
		}
		/* Lost the race: somebody else took this UID. Try the next. */
	}
	log_error("cassandra: uid allocation: too much contention");
	return STORE_TEMPFAIL;
}

/* Writes the message (header + body) as chunks of CHUNK_SIZE, each built in
 * one scratch buffer from the header and the body (read piece by piece
 * from memory or the caller's file), so a large message costs one chunk of
 * memory, not its size. */
static enum store_status put_chunks(struct cass_store *c, const struct store_delivery *d,
				    int *chunks_r)
{
	char q[512];
	uint64_t total = store_delivery_size(d);
	uint64_t nchunks = (total + CHUNK_SIZE - 1) / CHUNK_SIZE;
	if (nchunks > INT32_MAX)
		return STORE_TOOBIG;
	int chunks = nchunks == 0 ? 1 : (int)nchunks; /* an empty body is one empty chunk */
	Q(c, q, "INSERT INTO {ks}.bodies (message_id, chunk, data) VALUES (?, ?, ?)");
	struct cql_values *v = cql_values_create();
	char *scratch = xmalloc(total < CHUNK_SIZE ? (size_t)total : CHUNK_SIZE);
	enum store_status st = STORE_OK;
	for (int i = 0; i < chunks && st == STORE_OK; i++) {
		uint64_t off = (uint64_t)i * CHUNK_SIZE;
		size_t n = total - off < CHUNK_SIZE ? (size_t)(total - off) : CHUNK_SIZE;
		if (store_delivery_read(d, off, scratch, n) < 0) {
			st = STORE_TEMPFAIL;
			break;
		}
		cql_values_clear(v);
		cql_values_add_uuid(v, d->message_id.b);
		cql_values_add_int(v, i);
		cql_values_add_blob(v, scratch, n);
		st = run(c, q, v, c->write_cl, NULL);
	}
	free(scratch);
	cql_values_free(&v);
	*chunks_r = chunks;
	return st;
}

static enum store_status delete_listing_row(struct cass_store *c, const struct uuid *mbox,
					    const struct uuid *id);

/* One row of listing or body_refs: the two keys, what a listing row needs,
 * and the other table's id (listing: body_id; body_refs: listing_id). */
static enum store_status put_entry(struct cass_store *c, const char *tmpl, const struct uuid *k1,
				   const struct uuid *k2, int64_t size, const char *uidl,
				   const void *prefix, size_t prefix_len, int64_t body_size,
				   int chunks, const struct uuid *other_id)
{
	char q[512];
	struct cql_values *v = cql_values_create();
	cql_values_add_uuid(v, k1->b);
	cql_values_add_uuid(v, k2->b);
	cql_values_add_bigint(v, size);
	cql_values_add_text(v, uidl);
	cql_values_add_blob(v, prefix, prefix_len);
	cql_values_add_bigint(v, body_size);
	cql_values_add_int(v, chunks);
	cql_values_add_uuid(v, other_id->b);
	enum store_status st = run(c, Q(c, q, tmpl), v, c->write_cl, NULL);
	cql_values_free(&v);
	return st;
}

static enum store_status put_listing(struct cass_store *c, const struct uuid *mbox,
				     const struct uuid *id, const struct uuid *body_id,
				     int64_t size, const char *uidl, const void *prefix,
				     size_t prefix_len, int64_t body_size, int chunks)
{
	return put_entry(c, "INSERT INTO {ks}.listing (mailbox_id, message_id, size, uidl,"
			    " prefix, body_size, chunks, body_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			 mbox, id, size, uidl, prefix, prefix_len, body_size, chunks, body_id);
}

/* The body_refs row of (body, mailbox): what its listing row needs, and
 * the listing id (repair re-lists from it). */
static enum store_status put_ref(struct cass_store *c, const struct uuid *mbox,
				 const struct uuid *body_id, const struct uuid *listing_id,
				 int64_t size, const char *uidl, const void *prefix,
				 size_t prefix_len, int64_t body_size, int chunks)
{
	return put_entry(c, "INSERT INTO {ks}.body_refs (message_id, mailbox_id, size, uidl,"
			    " prefix, body_size, chunks, listing_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			 body_id, mbox, size, uidl, prefix, prefix_len, body_size, chunks, listing_id);
}

/*
 * Invariant 12 on the writer's side: a listing row's write starts at most
 * REMINT_BOUND_US after its id was minted (by this node's clock, which
 * clock_ok() keeps within MAX_CLOCK_SKEW_US of Cassandra's). Past that
 * bound the id is minted again, before the listing write: the message
 * has not been listed under the old id, so no second copy can appear.
 * Returns whether *id was replaced. In messageid mode the UIDL follows
 * the id (it is never shown before the 250).
 */
#define REMINT_BOUND_US (10LL * 1000000)

static bool remint_if_late(struct cass_store *c, const struct store_delivery *d,
			   struct uuid *id, char *uidl)
{
	/* An imported message's id names its original delivery time, on
	 * purpose: it is never minted again (see store_delivery.historical_id). */
	if (d->historical_id || clock_wall_us() - timeuuid_unix_usec(id) <= REMINT_BOUND_US)
		return false;
	/* The UIDL follows the id when it is the id's text (messageid mode),
	 * not when it is a UID or a legacy UIDL an import kept. */
	char old[UUID_STR_LEN + 1];
	uuid_format(id, old);
	bool follows = strcmp(uidl, old) == 0;
	timeuuid_generate(id);
	if (follows)
		uuid_format(id, uidl);
	__atomic_fetch_add(&c->remints, 1, __ATOMIC_RELAXED);
	return true;
}

/* Records the listing id in body_refs, then writes the listing row,
 * minting the id again (and rewriting body_refs) whenever the next write
 * would start later than REMINT_BOUND_US after the id's mint. */
static enum store_status list_fresh(struct cass_store *c, const struct store_delivery *d,
				    const struct uuid *mbox,
				    const struct uuid *body_id, struct uuid *listing_id,
				    char *uidl, int64_t size, const char *prefix,
				    size_t prefix_len, int64_t body_size, int chunks)
{
	remint_if_late(c, d, listing_id, uidl); /* a slow body write */
	for (int attempt = 0; attempt < 3; attempt++) {
		enum store_status st = put_ref(c, mbox, body_id, listing_id, size, uidl, prefix,
					       prefix_len, body_size, chunks);
		if (st != STORE_OK)
			return st;
		if (remint_if_late(c, d, listing_id, uidl))
			continue; /* the body_refs write was slow: record the new id */
		return put_listing(c, mbox, listing_id, body_id, size, uidl, prefix, prefix_len,
				   body_size, chunks);
	}
	log_error("cassandra: the listing write could not start within %lld s of minting its id",
		  (long long)(REMINT_BOUND_US / 1000000));
	return STORE_TEMPFAIL;
}

/* A retried delivery (same body id) finds the body_refs row of its first
 * attempt: the copy keeps that attempt's listing id, UIDL and header
 * prefix (the listing row is written again from it, in case the first
 * attempt stopped before it), and a copy the user has deleted since is
 * not brought back. When the first attempt's id is now older than
 * REMINT_BOUND_US, writing it again could put it under a range delete
 * that a session which never saw it is running: the id is minted again
 * and a listing row the first attempt may have written under the old id
 * is deleted first (so at most one of the two is ever visible).
 * Returns 1 when the row was found and handled, 0 when there is none. */
static int retry_of_earlier(struct cass_store *c, const struct uuid *mbox,
			    struct store_delivery *d, struct store_rcpt *r, int chunks,
			    enum store_status *st_r)
{
	char q[512];
	struct cql_values *k = cql_values_create();
	cql_values_add_uuid(k, d->message_id.b);
	cql_values_add_uuid(k, mbox->b);
	struct cql_result *res = NULL;
	*st_r = run(c, Q(c, q, "SELECT uidl, prefix, size, deleted, listing_id FROM {ks}.body_refs"
			       " WHERE message_id = ? AND mailbox_id = ?"), k, c->read_cl, &res);
	cql_values_free(&k);
	if (*st_r != STORE_OK)
		return 1;
	struct cql_slice u, prefix;
	int64_t size = 0;
	bool deleted = false;
	int found = 0;
	if (cql_result_next_row(res) && cql_result_get_text(res, 0, &u) == 1 &&
	    u.len < sizeof(r->uidl) && cql_result_get_blob(res, 1, &prefix) >= 0 &&
	    cql_result_get_bigint(res, 2, &size) == 1) {
		found = 1;
		cql_result_get_bool(res, 3, &deleted);
		struct uuid listing_id = d->message_id;
		cql_result_get_uuid(res, 4, listing_id.b);
		char uidl[STORE_UIDL_MAX + 2];
		memcpy(uidl, u.data, u.len);
		uidl[u.len] = '\0';
		if (!deleted) {
			struct uuid old = listing_id;
			int64_t body_size = (int64_t)store_delivery_size(d);
			if (remint_if_late(c, d, &listing_id, uidl)) {
				*st_r = delete_listing_row(c, mbox, &old);
				if (*st_r == STORE_OK)
					*st_r = list_fresh(c, d, mbox, &d->message_id, &listing_id, uidl,
							   size, (const char *)prefix.data,
							   prefix.len, body_size, chunks);
			} else {
				*st_r = put_listing(c, mbox, &listing_id, &d->message_id, size, uidl,
						    prefix.data, prefix.len, body_size, chunks);
			}
		}
		str_copy(r->uidl, uidl, sizeof(r->uidl));
	}
	cql_result_free(&res);
	return found;
}

static enum store_status put_rows(struct cass_store *c, struct store_delivery *d,
				  struct store_rcpt *r, int chunks)
{
	struct uuid mbox;
	uuid_v5(r->address, strlen(r->address), &mbox);
	enum store_status st;
	/* Only a second attempt with this body id can find an earlier one. */
	if (d->attempts > 1 && retry_of_earlier(c, &mbox, d, r, chunks, &st))
		return st;
	/* The listing id is the message id the delivery minted when its data
	 * ended, unless writing the body took so long that the listing write
	 * would start past the bound: then a fresh one (remint_if_late), and
	 * the body keeps its own id. */
	struct uuid listing_id = d->message_id;
	char uidl[STORE_UIDL_MAX + 2];
	if (!store_delivery_uidl(d, uidl) && c->store.set.pop3_ids == STORE_POP3_IDS_UID) {
		uint32_t uid = 0;
		st = allocate_uid(c, &mbox, &uid);
		if (st != STORE_OK)
			return st;
		store_uidl_from_uid(uid, uidvalidity_of(&mbox), uidl);
	}
	size_t prefix_len = strlen(r->prefix);
	int64_t body_size = (int64_t)store_delivery_size(d);
	int64_t size = (int64_t)prefix_len + body_size;
	/* body_refs first: a crash between the two writes leaves a reference
	 * that repair can re-list, never a listing row without its record. */
	st = list_fresh(c, d, &mbox, &d->message_id, &listing_id, uidl, size, r->prefix, prefix_len,
			body_size, chunks);
	if (st == STORE_OK)
		str_copy(r->uidl, uidl, sizeof(r->uidl));
	return st;
}

static int row_exists(struct cass_store *c, const char *tmpl, const uint8_t a[16],
		      const uint8_t b[16], int chunk, enum cql_consistency cl);

/* The user's own limits, from the users row; NOTFOUND without it. */
static enum store_status read_own_quota(struct cass_store *c, const char *address,
					struct store_quota *own_r)
{
	char q[512];
	struct cql_values *v = cql_values_create();
	cql_values_add_text(v, address);
	struct cql_result *res = NULL;
	enum store_status st = run(c, Q(c, q, "SELECT address, quota_messages, quota_octets"
					      " FROM {ks}.users WHERE address = ?"),
				   v, c->read_cl, &res);
	cql_values_free(&v);
	if (st != STORE_OK)
		return st;
	own_r->messages = own_r->octets = STORE_NO_LIMIT;
	if (!cql_result_next_row(res)) {
		st = STORE_NOTFOUND;
	} else {
		int64_t n = 0;
		if (cql_result_get_bigint(res, 1, &n) == 1 && n > 0)
			own_r->messages = (uint64_t)n;
		if (cql_result_get_bigint(res, 2, &n) == 1 && n > 0)
			own_r->octets = (uint64_t)n;
	}
	cql_result_free(&res);
	return st;
}

/* What the mailbox's listing partition holds, at the read consistency. */
static enum store_status listing_usage(struct cass_store *c, const struct uuid *mbox,
				       uint64_t *messages_r, uint64_t *octets_r)
{
	char q[512];
	struct cql_values *v = cql_values_create();
	cql_values_add_uuid(v, mbox->b);
	struct cql_result *res = NULL;
	enum store_status st = run(c, Q(c, q, "SELECT count(size), sum(size) FROM {ks}.listing"
					      " WHERE mailbox_id = ?"), v, c->read_cl, &res);
	cql_values_free(&v);
	if (st != STORE_OK)
		return st;
	int64_t n = 0, octets = 0;
	if (cql_result_next_row(res)) {
		cql_result_get_bigint(res, 0, &n);
		cql_result_get_bigint(res, 1, &octets);
	}
	cql_result_free(&res);
	*messages_r = n > 0 ? (uint64_t)n : 0;
	*octets_r = octets > 0 ? (uint64_t)octets : 0;
	return STORE_OK;
}

/* A recipient's verdict before anything is written: NOTFOUND, OVERQUOTA,
 * or INVALID ("to be written"). A retry whose first attempt reached this
 * mailbox is not refused: the copy it finds is already counted.
 *
 * The users row is read here unless the caller's resolution read it at
 * most STORE_SEEN_FRESH_US ago (r->seen: an LMTP or SMTP RCPT just
 * before the data): then that read stands for this one, one request
 * fewer per recipient. A user deleted in between (tern user del on
 * another node, within those seconds) can still get the message: it is
 * written under the deleted user's mailbox id, where nobody can log in to
 * read it, and it was answered 250 as it would have been had the delete
 * come a moment later: no 250 is ever lost. The same was already true of
 * a delete landing between this read and the listing write; the window is
 * only longer (at most STORE_SEEN_FRESH_US more). Such rows stay until a
 * user of that address is created again, who then sees them; repair does
 * not look for them (docs/cassandra-store.md, "A user deleted during a
 * delivery"). */
static enum store_status rcpt_verdict(struct cass_store *c, struct store_delivery *d,
				      struct store_rcpt *r, enum store_status *verdict_r)
{
	struct store_quota own = r->seen.own;
	enum store_status st = STORE_OK;
	if (r->seen.read_us == 0 || clock_wall_us() - r->seen.read_us > STORE_SEEN_FRESH_US)
		st = read_own_quota(c, r->address, &own);
	*verdict_r = st == STORE_NOTFOUND ? STORE_NOTFOUND : STORE_INVALID;
	if (st != STORE_OK)
		return st == STORE_NOTFOUND ? STORE_OK : st;
	struct store_quota limits = store_quota_apply(&c->store, &own);
	if (store_quota_is_none(&limits))
		return STORE_OK;
	struct uuid mbox;
	uuid_v5(r->address, strlen(r->address), &mbox);
	uint64_t messages, octets;
	st = listing_usage(c, &mbox, &messages, &octets);
	if (st != STORE_OK)
		return st;
	if (store_quota_fits(&limits, messages, octets,
			     strlen(r->prefix) + store_delivery_size(d)))
		return STORE_OK;
	if (d->attempts > 1) {
		int earlier = row_exists(c, "SELECT mailbox_id FROM {ks}.body_refs"
					    " WHERE message_id = ? AND mailbox_id = ?",
					 d->message_id.b, mbox.b, -1, c->read_cl);
		if (earlier < 0)
			return STORE_TEMPFAIL;
		if (earlier > 0)
			return STORE_OK;
	}
	*verdict_r = STORE_OVERQUOTA;
	return STORE_OK;
}

static enum store_status cass_deliver(struct store *store, struct store_delivery *d)
{
	struct cass_store *c = (struct cass_store *)store;
	if (!clock_ok(c)) {
		__atomic_fetch_add(&c->clock_refusals, 1, __ATOMIC_RELAXED);
		return STORE_TEMPFAIL;
	}
	unsigned int found = 0;
	for (unsigned int i = 0; i < d->rcpt_count; i++) {
		enum store_status verdict;
		enum store_status st = rcpt_verdict(c, d, &d->rcpts[i], &verdict);
		if (st != STORE_OK)
			return st;
		d->rcpts[i].status = verdict;
		if (verdict == STORE_INVALID)
			found++;
	}
	if (store_quota_refuse_all(d) || found == 0)
		return STORE_OK;
	int chunks = 0;
	enum store_status st = put_chunks(c, d, &chunks);
	if (st != STORE_OK)
		return st;
	enum store_status ret = STORE_OK;
	for (unsigned int i = 0; i < d->rcpt_count; i++) {
		if (d->rcpts[i].status != STORE_INVALID)
			continue;
		st = put_rows(c, d, &d->rcpts[i], chunks);
		d->rcpts[i].status = st;
		if (st != STORE_OK)
			ret = st;
	}
	/* Per-recipient statuses carry the failures. */
	(void)ret;
	return STORE_OK;
}

/* --- POP3 --- */

struct listing_rows {
	struct store_maildrop *md;
	unsigned int alloc;
};

static bool listing_row(void *ctx, struct cql_result *res)
{
	struct listing_rows *l = ctx;
	struct store_maildrop *md = l->md;
	if (md->count == l->alloc) {
		l->alloc = l->alloc ? l->alloc * 2 : 64;
		md->entries = xrealloc(md->entries, l->alloc * sizeof(*md->entries));
	}
	struct store_listing_entry *e = &md->entries[md->count];
	int64_t size = 0;
	struct cql_slice u;
	if (cql_result_get_uuid(res, 0, e->id.b) != 1 || cql_result_get_bigint(res, 1, &size) != 1 ||
	    cql_result_get_text(res, 2, &u) != 1)
		return true; /* a half-written row: repair's business */
	/* A row written before listing and body ids were distinct has none. */
	if (cql_result_get_uuid(res, 3, e->body_id.b) != 1)
		e->body_id = e->id;
	e->size = (uint64_t)size;
	size_t n = u.len < sizeof(e->uidl) - 1 ? u.len : sizeof(e->uidl) - 1;
	memcpy(e->uidl, u.data, n);
	e->uidl[n] = '\0';
	md->total_size += e->size;
	md->count++;
	return true;
}

static enum store_status read_bigint(struct cass_store *c, const char *tmpl, const char *address,
				     int64_t *v_r);

/* The user's own EXPIRE policy (null: none); NOTFOUND without the user. */
static enum store_status read_expire(struct cass_store *c, const char *address, int *days_r)
{
	int64_t v = STORE_EXPIRE_DEFAULT;
	enum store_status st = read_bigint(c, "SELECT address, expire_days FROM {ks}.users WHERE address = ?",
					   address, &v);
	*days_r = v >= STORE_EXPIRE_NEVER && v <= STORE_EXPIRE_DAYS_MAX ? (int)v : STORE_EXPIRE_DEFAULT;
	return st;
}

static enum store_status cass_maildrop_read(struct store *store, struct store_maildrop *md)
{
	struct cass_store *c = (struct cass_store *)store;
	enum store_status st = read_expire(c, md->address, &md->expire_days);
	if (st != STORE_OK)
		return st;
	struct cql_values *v = cql_values_create();
	cql_values_add_uuid(v, md->mailbox_id.b);
	struct listing_rows l = { md, 0 };
	uint64_t rows;
	st = for_each_row(c, "SELECT message_id, size, uidl, body_id FROM {ks}.listing"
			     " WHERE mailbox_id = ?",
			  v, c->read_cl, 0, listing_row, &l, &rows);
	cql_values_free(&v);
	return st;
}

/* A cursor: the listing row (prefix, chunk count, body size) is read once
 * at open; then the chunks in order, one request each, and the pieces are
 * served from the one chunk held (its result owns the bytes). */
struct cass_cursor {
	struct store_cursor c;
	int32_t chunks;            /* in the listing row */
	int32_t next_chunk;        /* the next one to fetch */
	uint64_t chunk_start;      /* body offset of the held chunk */
	struct cql_result *held;   /* the held chunk's result, or NULL */
	struct cql_slice chunk;    /* its bytes, inside held */
	struct uuid body_id;       /* the bodies partition key */
};

static enum store_status cass_cursor_open(struct store_maildrop *md, unsigned int i,
					  struct store_cursor **cursor_r)
{
	if (store_nowait())
		return store_would_block(); /* every read is a round trip */
	struct cass_store *c = (struct cass_store *)md->store;
	char q[512];
	struct cql_values *v = cql_values_create();
	cql_values_add_uuid(v, md->mailbox_id.b);
	cql_values_add_uuid(v, md->entries[i].id.b);
	struct cql_result *res = NULL;
	enum store_status st = run(c, Q(c, q, "SELECT prefix, chunks, body_size, body_id FROM {ks}.listing"
					      " WHERE mailbox_id = ? AND message_id = ?"),
				   v, c->read_cl, &res);
	cql_values_free(&v);
	if (st != STORE_OK)
		return st;
	if (!cql_result_next_row(res)) {
		cql_result_free(&res);
		return STORE_NOTFOUND; /* expunged by another session */
	}
	struct cql_slice prefix;
	int32_t chunks = 0;
	int64_t body_size = -1;
	if (cql_result_get_blob(res, 0, &prefix) < 0 || cql_result_get_int(res, 1, &chunks) != 1 ||
	    chunks < 1) {
		cql_result_free(&res);
		log_error("cassandra: a listing row without its body reference; repair will see it");
		return STORE_TEMPFAIL;
	}
	if (prefix.data == NULL)
		prefix.len = 0;
	if (cql_result_get_bigint(res, 2, &body_size) != 1 || body_size < 0)
		body_size = md->entries[i].size >= prefix.len ? (int64_t)(md->entries[i].size - prefix.len)
							     : 0;
	struct cass_cursor *cc = xcalloc(1, sizeof(*cc));
	cc->c.prefix_len = prefix.len;
	cc->c.prefix = xmalloc(prefix.len + 1);
	if (prefix.len > 0)
		memcpy(cc->c.prefix, prefix.data, prefix.len);
	cc->chunks = chunks;
	if (cql_result_get_uuid(res, 3, cc->body_id.b) != 1)
		cc->body_id = md->entries[i].id;
	cql_result_free(&res);
	cc->c.size = cc->c.prefix_len + (uint64_t)body_size;
	*cursor_r = &cc->c;
	return STORE_OK;
}

/* Fetches chunk cc->next_chunk into cc->held. A missing chunk is read again
 * once at QUORUM (the listing row may have replicated before the body,
 * design.md invariant 9); still missing, it is NOTFOUND when the listing row
 * has gone meanwhile (an expunge by another session), else TEMPFAIL. */
static enum store_status fetch_chunk(struct cass_cursor *cc)
{
	struct store_maildrop *md = cc->c.md;
	struct cass_store *c = (struct cass_store *)md->store;
	const struct uuid *id = &md->entries[cc->c.index].id;
	const struct uuid *body_id = &cc->body_id;
	int32_t k = cc->next_chunk;
	if (k >= cc->chunks) {
		log_error("cassandra: a body is shorter than its listing row says; repair will see it");
		return STORE_TEMPFAIL;
	}
	char q[512];
	Q(c, q, "SELECT data FROM {ks}.bodies WHERE message_id = ? AND chunk = ?");
	struct cql_values *v = cql_values_create();
	cql_values_add_uuid(v, body_id->b);
	cql_values_add_int(v, k);
	enum store_status st = STORE_OK;
	for (int attempt = 0; attempt < 2 && cc->held == NULL && st == STORE_OK; attempt++) {
		struct cql_result *res = NULL;
		st = run(c, q, v, attempt == 0 ? c->read_cl : CQL_QUORUM, &res);
		if (st != STORE_OK)
			break;
		if (cql_result_next_row(res) && cql_result_get_blob(res, 0, &cc->chunk) >= 0) {
			if (cc->chunk.data == NULL)
				cc->chunk.len = 0;
			cc->held = res;
		} else {
			cql_result_free(&res);
		}
	}
	if (st == STORE_OK && cc->held == NULL) {
		int listed = row_exists(c, "SELECT message_id FROM {ks}.listing"
					   " WHERE mailbox_id = ? AND message_id = ?",
					md->mailbox_id.b, id->b, -1, c->read_cl);
		if (listed == 0) {
			st = STORE_NOTFOUND;
		} else {
			log_warn("cassandra: body chunk %d of a listed message is not readable yet", k);
			st = STORE_TEMPFAIL;
		}
	}
	cql_values_free(&v);
	if (st == STORE_OK)
		cc->next_chunk++;
	return st;
}

static enum store_status cass_cursor_read(struct store_cursor *c, uint64_t body_off,
				       char *dst, size_t n)
{
	struct cass_cursor *cc = (struct cass_cursor *)c;
	if (store_nowait())
		return store_would_block();
	while (n > 0) {
		/* Reads only move forward: the held chunk starts at or before body_off. */
		if (cc->held == NULL || body_off >= cc->chunk_start + cc->chunk.len) {
			if (cc->held != NULL) {
				cc->chunk_start += cc->chunk.len;
				cql_result_free(&cc->held);
			}
			enum store_status st = fetch_chunk(cc);
			if (st != STORE_OK)
				return st;
			continue;
		}
		size_t at = (size_t)(body_off - cc->chunk_start);
		size_t k = cc->chunk.len - at < n ? cc->chunk.len - at : n;
		memcpy(dst, cc->chunk.data + at, k);
		dst += k;
		n -= k;
		body_off += k;
	}
	return STORE_OK;
}

static void cass_cursor_close(struct store_cursor *c)
{
	struct cass_cursor *cc = (struct cass_cursor *)c;
	cql_result_free(&cc->held);
	free(cc);
}

static enum store_status delete_chunks(struct cass_store *c, const struct uuid *id, int chunks)
{
	char q[512];
	Q(c, q, "DELETE FROM {ks}.bodies WHERE message_id = ? AND chunk = ?");
	struct cql_values *v = cql_values_create();
	enum store_status st = STORE_OK;
	for (int k = 0; k < chunks && st == STORE_OK; k++) {
		cql_values_clear(v);
		cql_values_add_uuid(v, id->b);
		cql_values_add_int(v, k);
		st = run(c, q, v, c->write_cl, NULL);
	}
	cql_values_free(&v);
	return st;
}

/* Removes this mailbox's reference to a body, then the body itself when no
 * other mailbox references it any more. Two mailboxes releasing the same
 * body at once may both see the other's reference and leave the body for
 * the sweep; a body still referenced is never deleted. */
static enum store_status drop_reference(struct cass_store *c, const struct uuid *mailbox,
					const struct uuid *id)
{
	char q[512];
	struct cql_values *v = cql_values_create();
	cql_values_add_uuid(v, id->b);
	cql_values_add_uuid(v, mailbox->b);
	struct cql_result *res = NULL;
	enum store_status st = run(c, Q(c, q, "SELECT chunks FROM {ks}.body_refs"
					      " WHERE message_id = ? AND mailbox_id = ?"),
				   v, c->read_cl, &res);
	int32_t chunks = -1;
	if (st == STORE_OK && (!cql_result_next_row(res) || cql_result_get_int(res, 0, &chunks) != 1))
		chunks = -1; /* released by an earlier expunge, or only a marker */
	cql_result_free(&res);
	if (st == STORE_OK)
		st = run(c, Q(c, q, "DELETE FROM {ks}.body_refs WHERE message_id = ? AND mailbox_id = ?"),
			 v, c->write_cl, NULL);
	cql_values_clear(v);
	if (st == STORE_OK && chunks >= 0) {
		cql_values_add_uuid(v, id->b);
		st = run(c, Q(c, q, "SELECT mailbox_id FROM {ks}.body_refs WHERE message_id = ? LIMIT 1"),
			 v, c->read_cl, &res);
		bool referenced = st == STORE_OK && cql_result_next_row(res);
		cql_result_free(&res);
		if (st == STORE_OK && !referenced)
			st = delete_chunks(c, id, chunks);
	}
	cql_values_free(&v);
	return st;
}

/* Marks this mailbox's reference as being deleted, before the listing row
 * goes: if the expunge stops half-way, repair finishes the deletion instead
 * of listing the message again. */
static enum store_status mark_deleted(struct cass_store *c, const struct uuid *mailbox,
				      const struct uuid *id)
{
	char q[512];
	struct cql_values *v = cql_values_create();
	cql_values_add_uuid(v, id->b);
	cql_values_add_uuid(v, mailbox->b);
	enum store_status st = run(c, Q(c, q, "UPDATE {ks}.body_refs SET deleted = true"
					      " WHERE message_id = ? AND mailbox_id = ?"),
				   v, c->write_cl, NULL);
	cql_values_free(&v);
	return st;
}

/* Deletes the listing rows of md marked in del, from index from on, one
 * row tombstone each, ROW_DELETE_BATCH rows per request: an unlogged batch
 * within the mailbox's one partition is applied as one mutation (atomic,
 * no batchlog), so it costs one round trip and is as safe to retry as a
 * single delete. */
static enum store_status delete_listing_rows(struct cass_store *c, const struct store_maildrop *md,
					     const bool *del, unsigned int from)
{
	char q[512];
	struct cql_error err;
	struct cql_prepared *stmt = cql_prepare(
		c->session, Q(c, q, "DELETE FROM {ks}.listing WHERE mailbox_id = ? AND message_id = ?"),
		&err);
	if (stmt == NULL)
		return status_from_error(&err, q);
	struct cql_query_opts opts;
	cql_query_opts_init(&opts);
	opts.consistency = c->write_cl;
	opts.idempotent = true;
	struct cql_values *v = cql_values_create();
	enum store_status st = STORE_OK;
	unsigned int i = from;
	while (st == STORE_OK && i < md->count) {
		struct cql_batch *batch = cql_batch_create(CQL_BATCH_UNLOGGED);
		unsigned int rows = 0;
		for (; i < md->count && rows < ROW_DELETE_BATCH; i++) {
			if (!del[i])
				continue;
			cql_values_clear(v);
			cql_values_add_uuid(v, md->mailbox_id.b);
			cql_values_add_uuid(v, md->entries[i].id.b);
			cql_batch_add_prepared(batch, stmt, v);
			rows++;
		}
		if (rows > 0 && cql_batch_execute(c->session, batch, &opts, &err) < 0)
			st = status_from_error(&err, "delete listing rows");
		cql_batch_free(&batch);
	}
	cql_values_free(&v);
	return st;
}

static enum store_status cass_expunge(struct store_maildrop *md, const unsigned int *indexes,
				      unsigned int n)
{
	struct cass_store *c = (struct cass_store *)md->store;
	char q[512];
	/* The longest prefix of the listing that is being deleted, bounded by
	 * the range-deletion margin (see the file comment). */
	bool *del = xcalloc(md->count, sizeof(bool));
	for (unsigned int k = 0; k < n; k++)
		del[indexes[k]] = true;
	int64_t bound_us = md->login_us - RANGE_DELETE_MARGIN_US;
	unsigned int prefix = 0;
	while (prefix < md->count && del[prefix] &&
	       timeuuid_unix_usec(&md->entries[prefix].id) < bound_us)
		prefix++;
	/* The margin bounds only the writes of this datacenter: a row written
	 * in another one during a partition can arrive hours after its id,
	 * under a range that was cut without it. So a keyspace replicated in
	 * several datacenters deletes row by row, which hides nothing. */
	if (prefix >= 2 && !replication_allows_range(c)) {
		__atomic_fetch_add(&c->range_deletes_declined_dcs, 1, __ATOMIC_RELAXED);
		prefix = 0;
	}
	/* The margin is measured on this node's clock (login_us): it holds
	 * only while that clock agrees with Cassandra's as clock_ok() checks.
	 * A node whose clock is ahead would reach rows still being written,
	 * so it deletes row by row instead. */
	if (prefix >= 2 && !clock_ok(c)) {
		__atomic_fetch_add(&c->range_deletes_declined, 1, __ATOMIC_RELAXED);
		prefix = 0;
	}

	enum store_status st = STORE_OK;
	for (unsigned int i = 0; i < md->count && st == STORE_OK; i++)
		if (del[i])
			st = mark_deleted(c, &md->mailbox_id, &md->entries[i].body_id);
	struct cql_values *v = cql_values_create();
	if (st != STORE_OK) {
		/* nothing deleted yet; the markers alone are harmless */
	} else if (prefix >= 2) {
		cql_values_add_uuid(v, md->mailbox_id.b);
		cql_values_add_uuid(v, md->entries[prefix - 1].id.b);
		st = run(c, Q(c, q, "DELETE FROM {ks}.listing WHERE mailbox_id = ? AND message_id <= ?"),
			 v, c->write_cl, NULL);
		__atomic_fetch_add(&c->range_deletes, 1, __ATOMIC_RELAXED);
	} else {
		prefix = 0;
	}
	if (st == STORE_OK)
		st = delete_listing_rows(c, md, del, prefix);
	/* The listing no longer shows them: now release the bodies. */
	for (unsigned int i = 0; i < md->count && st == STORE_OK; i++)
		if (del[i])
			st = drop_reference(c, &md->mailbox_id, &md->entries[i].body_id);
	cql_values_free(&v);
	free(del);
	return st;
}

static enum store_status cass_user_del(struct store *store, const char *address)
{
	struct cass_store *c = (struct cass_store *)store;
	struct store_maildrop *md = NULL;
	enum store_status st = store_maildrop_open(store, address, &md);
	if (st != STORE_OK)
		return st;
	unsigned int *all = xcalloc(md->count ? md->count : 1, sizeof(unsigned int));
	for (unsigned int i = 0; i < md->count; i++)
		all[i] = i;
	/* Deleting the user removes everything: no margin needed. */
	md->login_us = INT64_MAX / 2;
	st = md->count > 0 ? cass_expunge(md, all, md->count) : STORE_OK;
	free(all);
	store_maildrop_free(&md);
	if (st != STORE_OK)
		return st;
	const char *domain = strrchr(address, '@') + 1;
	st = write1(c, "DELETE FROM {ks}.users WHERE address = ?", address, NULL);
	if (st == STORE_OK)
		st = write1(c, "DELETE FROM {ks}.users_by_domain WHERE domain = ? AND address = ?",
			    domain, address);
	return st;
}

/* --- repair and sweep --- */

struct pacer {
	unsigned int per_second;
	uint64_t count;
	struct timespec start;
};

static void pace(struct pacer *p)
{
	if (p->per_second == 0)
		return;
	if (p->count++ == 0) {
		clock_gettime(CLOCK_MONOTONIC, &p->start);
		return;
	}
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double elapsed = (double)(now.tv_sec - p->start.tv_sec) +
			 (double)(now.tv_nsec - p->start.tv_nsec) / 1e9;
	double due = (double)p->count / p->per_second;
	if (due > elapsed) {
		double wait = due - elapsed;
		struct timespec ts = { (time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9) };
		nanosleep(&ts, NULL);
	}
}

/* The report is read by other threads while the repair runs (store.h). */
#define REPORT_ADD(field) __atomic_fetch_add(&(field), 1, __ATOMIC_RELAXED)

struct repair_ctx {
	struct cass_store *c;
	const struct store_repair_options *opts;
	struct store_repair_report *report;
	struct pacer pacer;
	int64_t cutoff_us;  /* messages minted after this are in flight */
	/* The users' mailbox ids as read when the repair started, sorted
	 * (check only): a listing row of none of them is orphaned. */
	struct uuid *mailboxes;
	size_t mailbox_count, mailbox_alloc;
	struct uuid last_orphan;  /* the mailbox last logged as orphaned */
};

typedef enum store_status scan_row_fn(struct repair_ctx *rc, struct cql_result *row);

struct scan_ctx {
	struct repair_ctx *rc;
	scan_row_fn *fn;
	enum store_status st;
};

static bool scan_row(void *ctx, struct cql_result *res)
{
	struct scan_ctx *sc = ctx;
	pace(&sc->rc->pacer);
	sc->st = sc->fn(sc->rc, res);
	return sc->st == STORE_OK;
}

/* Pages through the partitions of a table whose token is in (lo, hi], at
 * the read consistency; tmpl ends with "WHERE token(...) > ? AND token(...) <= ?". */
static enum store_status scan(struct repair_ctx *rc, const char *tmpl, int64_t lo, int64_t hi,
			      scan_row_fn *fn)
{
	struct scan_ctx sc = { rc, fn, STORE_OK };
	uint64_t rows;
	struct cql_values *v = cql_values_create();
	cql_values_add_bigint(v, lo);
	cql_values_add_bigint(v, hi);
	enum store_status st = for_each_row(rc->c, tmpl, v, rc->c->read_cl, 60000, scan_row,
					    &sc, &rows);
	cql_values_free(&v);
	return st != STORE_OK ? st : sc.st;
}

/* Whether a row exists for the statement and two uuids, at cl. 1 / 0 / -1. */
static int row_exists(struct cass_store *c, const char *tmpl, const uint8_t a[16],
		      const uint8_t b[16], int chunk, enum cql_consistency cl)
{
	char q[512];
	struct cql_values *v = cql_values_create();
	cql_values_add_uuid(v, a);
	if (b != NULL)
		cql_values_add_uuid(v, b);
	if (chunk >= 0)
		cql_values_add_int(v, chunk);
	struct cql_result *res = NULL;
	enum store_status st = run(c, Q(c, q, tmpl), v, cl, &res);
	cql_values_free(&v);
	if (st != STORE_OK)
		return -1;
	int found = cql_result_next_row(res) ? 1 : 0;
	cql_result_free(&res);
	return found;
}

/* Confirms a suspect: still true at the normal consistency and at ALL. */
static int confirm_missing(struct cass_store *c, const char *tmpl, const uint8_t a[16],
			   const uint8_t b[16], int chunk)
{
	int r = row_exists(c, tmpl, a, b, chunk, c->read_cl);
	if (r != 0)
		return r < 0 ? -1 : 0;
	r = row_exists(c, tmpl, a, b, chunk, CQL_ALL);
	return r < 0 ? -1 : r == 0;
}

#define LISTING_ROW "SELECT message_id FROM {ks}.listing WHERE mailbox_id = ? AND message_id = ?"
#define REF_ROW "SELECT deleted FROM {ks}.body_refs WHERE message_id = ? AND mailbox_id = ?"
#define ANY_REF "SELECT mailbox_id FROM {ks}.body_refs WHERE message_id = ? LIMIT 1"
#define CHUNK_ROW "SELECT chunk FROM {ks}.bodies WHERE message_id = ? AND chunk = ?"

static enum store_status delete_listing_row(struct cass_store *c, const struct uuid *mbox,
					    const struct uuid *id)
{
	char q[512];
	struct cql_values *v = cql_values_create();
	cql_values_add_uuid(v, mbox->b);
	cql_values_add_uuid(v, id->b);
	enum store_status st = run(c, Q(c, q, "DELETE FROM {ks}.listing WHERE mailbox_id = ?"
					      " AND message_id = ?"), v, c->write_cl, NULL);
	cql_values_free(&v);
	return st;
}

/* The reference's state at cl: 1 present (and *deleted_r), 0 absent, -1 error. */
static int ref_state(struct cass_store *c, const struct uuid *body_id, const struct uuid *mbox,
		     enum cql_consistency cl, bool *deleted_r)
{
	char q[512];
	struct cql_values *v = cql_values_create();
	cql_values_add_uuid(v, body_id->b);
	cql_values_add_uuid(v, mbox->b);
	struct cql_result *res = NULL;
	enum store_status st = run(c, Q(c, q, REF_ROW), v, cl, &res);
	cql_values_free(&v);
	if (st != STORE_OK)
		return -1;
	int found = 0;
	*deleted_r = false;
	if (cql_result_next_row(res)) {
		found = 1;
		cql_result_get_bool(res, 0, deleted_r);
	}
	cql_result_free(&res);
	return found;
}

/*
 * body_refs row: finish interrupted deletions, re-list what is missing.
 *
 * Across datacenters nothing orders the arrival of an expunge's writes:
 * dc2 may receive the listing row's deletion before the reference's
 * `deleted` marker (or its removal). A re-list decided on dc2's view alone
 * would bring back a message just deleted in dc1. So a re-list needs, at
 * consistency ALL (every replica in every datacenter answers, so a cut-off
 * datacenter makes the suspect "skipped", never re-listed): the listing
 * row missing, and the reference present and not marked. The expunge marks
 * the reference at the write consistency before it deletes the listing
 * row, so any replica holding the deletion implies a quorum of the
 * deleting datacenter holding the marker, which ALL reads. An expunge that
 * starts between that re-check and the re-list is caught by a second ALL
 * read of the reference after the re-list, which then deletes the row
 * again (newer tombstone).
 */
static enum store_status repair_ref(struct repair_ctx *rc, struct cql_result *row)
{
	struct cass_store *c = rc->c;
	struct uuid id, mbox, listing_id;
	bool deleted = false;
	REPORT_ADD(rc->report->refs_scanned);
	if (cql_result_get_uuid(row, 0, id.b) != 1 || cql_result_get_uuid(row, 1, mbox.b) != 1)
		return STORE_OK;
	cql_result_get_bool(row, 7, &deleted);
	if (cql_result_get_uuid(row, 8, listing_id.b) != 1)
		listing_id = id; /* written before listing and body ids were distinct */
	if (timeuuid_unix_usec(&id) > rc->cutoff_us || timeuuid_unix_usec(&listing_id) > rc->cutoff_us)
		return STORE_OK; /* a delivery or expunge may still be running */
	if (deleted) {
		REPORT_ADD(rc->report->deletes_finished);
		if (rc->opts->dry_run)
			return STORE_OK;
		enum store_status st = delete_listing_row(c, &mbox, &listing_id);
		return st == STORE_OK ? drop_reference(c, &mbox, &id) : st;
	}
	if (row_exists(c, LISTING_ROW, mbox.b, listing_id.b, -1, c->read_cl) != 0)
		return STORE_OK;
	/* Suspect: re-check the listing and the reference at ALL. */
	int missing = confirm_missing(c, LISTING_ROW, mbox.b, listing_id.b, -1);
	bool now_deleted = false;
	int still = missing == 1 ? ref_state(c, &id, &mbox, CQL_ALL, &now_deleted) : 0;
	if (missing < 0 || still < 0) {
		REPORT_ADD(rc->report->skipped);
		return STORE_OK;
	}
	if (missing == 0 || still == 0 || now_deleted)
		return STORE_OK;
	REPORT_ADD(rc->report->relisted);
	if (rc->opts->dry_run)
		return STORE_OK;
	/* Listed again with a fresh write time, so a range tombstone that hid
	 * it (a late arrival from another datacenter) no longer does. */
	int64_t size = 0, body_size = 0;
	int32_t chunks = 0;
	struct cql_slice uidl = { NULL, 0 }, prefix = { NULL, 0 };
	cql_result_get_bigint(row, 2, &size);
	cql_result_get_text(row, 3, &uidl);
	cql_result_get_blob(row, 4, &prefix);
	cql_result_get_bigint(row, 5, &body_size);
	cql_result_get_int(row, 6, &chunks);
	char u[STORE_UIDL_MAX + 2];
	snprintf(u, sizeof(u), "%.*s", (int)uidl.len, uidl.data != NULL ? (const char *)uidl.data : "");
	enum store_status st = put_listing(c, &mbox, &listing_id, &id, size, u, prefix.data,
					   prefix.len, body_size, chunks);
	if (st != STORE_OK)
		return st;
	int after = ref_state(c, &id, &mbox, CQL_ALL, &now_deleted);
	if (after == 0 || (after == 1 && now_deleted)) {
		log_warn("cassandra: repair: a message re-listed while an expunge ran; unlisted again");
		st = delete_listing_row(c, &mbox, &listing_id);
	}
	return st;
}

static int uuid_cmp(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct uuid));
}

static bool user_mailbox_row(void *ctx, struct cql_result *res)
{
	struct repair_ctx *rc = ctx;
	struct cql_slice a;
	if (cql_result_get_text(res, 0, &a) != 1)
		return true;
	if (rc->mailbox_count == rc->mailbox_alloc) {
		rc->mailbox_alloc = rc->mailbox_alloc ? rc->mailbox_alloc * 2 : 1024;
		rc->mailboxes = xrealloc(rc->mailboxes, rc->mailbox_alloc * sizeof(*rc->mailboxes));
	}
	uuid_v5((const char *)a.data, a.len, &rc->mailboxes[rc->mailbox_count++]);
	return true;
}

/* Reads every user's mailbox id (16 octets a user, in memory for the
 * repair's duration). */
static enum store_status read_user_mailboxes(struct repair_ctx *rc)
{
	uint64_t rows;
	enum store_status st = for_each_row(rc->c, "SELECT address FROM {ks}.users", NULL,
					    rc->c->read_cl, 60000, user_mailbox_row, rc, &rows);
	if (st == STORE_OK && rc->mailbox_count > 0)
		qsort(rc->mailboxes, rc->mailbox_count, sizeof(*rc->mailboxes), uuid_cmp);
	return st;
}

/* A listing row older than the cutoff in a mailbox no user had when the
 * repair started: a delivery that raced the deletion of its user (see
 * rcpt_verdict). Counted and logged once per mailbox; nothing is deleted,
 * since the address cannot be told from the mailbox id to re-check it (a
 * user added while the repair runs, into whose mailbox `tern import`
 * writes messages of older dates, is counted too). */
static void check_orphan(struct repair_ctx *rc, const struct uuid *mbox)
{
	if (rc->mailbox_count > 0 &&
	    bsearch(mbox, rc->mailboxes, rc->mailbox_count, sizeof(*rc->mailboxes), uuid_cmp))
		return;
	REPORT_ADD(rc->report->orphaned);
	if (memcmp(&rc->last_orphan, mbox, sizeof(*mbox)) == 0)
		return;
	rc->last_orphan = *mbox;
	char text[UUID_STR_LEN + 1];
	uuid_format(mbox, text);
	log_warn("cassandra: repair: mailbox %s is listed but no user has it (a delivery raced"
		 " the user's deletion); left alone", text);
}

/* listing row: a listed message whose body is gone cannot be served. */
static enum store_status repair_listing(struct repair_ctx *rc, struct cql_result *row)
{
	struct cass_store *c = rc->c;
	struct uuid mbox, id, body_id;
	int32_t chunks = 0;
	REPORT_ADD(rc->report->listing_scanned);
	if (cql_result_get_uuid(row, 0, mbox.b) != 1 || cql_result_get_uuid(row, 1, id.b) != 1 ||
	    cql_result_get_int(row, 2, &chunks) != 1)
		return STORE_OK;
	if (cql_result_get_uuid(row, 3, body_id.b) != 1)
		body_id = id;
	if (timeuuid_unix_usec(&id) > rc->cutoff_us)
		return STORE_OK;
	check_orphan(rc, &mbox);
	for (int k = 0; k < chunks; k++) {
		if (row_exists(c, CHUNK_ROW, body_id.b, NULL, k, c->read_cl) != 0)
			continue;
		int missing = confirm_missing(c, CHUNK_ROW, body_id.b, NULL, k);
		if (missing < 0) {
			REPORT_ADD(rc->report->skipped);
			return STORE_OK;
		}
		if (missing == 0)
			continue;
		REPORT_ADD(rc->report->unlisted);
		if (rc->opts->dry_run)
			return STORE_OK;
		enum store_status st = mark_deleted(c, &mbox, &body_id);
		if (st == STORE_OK)
			st = delete_listing_row(c, &mbox, &id);
		if (st == STORE_OK)
			st = drop_reference(c, &mbox, &body_id);
		return st;
	}
	return STORE_OK;
}

/* bodies partition: swept when no reference names it any more. */
static enum store_status repair_body(struct repair_ctx *rc, struct cql_result *row)
{
	struct cass_store *c = rc->c;
	struct uuid id;
	int32_t chunk = 0;
	REPORT_ADD(rc->report->bodies_scanned);
	if (cql_result_get_uuid(row, 0, id.b) != 1 || cql_result_get_int(row, 1, &chunk) != 1)
		return STORE_OK;
	if (timeuuid_unix_usec(&id) > rc->cutoff_us)
		return STORE_OK; /* its delivery may not have written the references yet */
	if (row_exists(c, ANY_REF, id.b, NULL, -1, c->read_cl) != 0)
		return STORE_OK;
	int missing = confirm_missing(c, ANY_REF, id.b, NULL, -1);
	if (missing < 0) {
		REPORT_ADD(rc->report->skipped);
		return STORE_OK;
	}
	if (missing == 0)
		return STORE_OK;
	REPORT_ADD(rc->report->swept);
	if (rc->opts->dry_run)
		return STORE_OK;
	char q[512];
	struct cql_values *v = cql_values_create();
	cql_values_add_uuid(v, id.b);
	cql_values_add_int(v, chunk);
	enum store_status st = run(c, Q(c, q, "DELETE FROM {ks}.bodies WHERE message_id = ?"
					      " AND chunk = ?"), v, c->write_cl, NULL);
	cql_values_free(&v);
	return st;
}

/*
 * The ring (Murmur3 tokens, -2^63 excluded) is walked in REPAIR_SLICES
 * ranges of equal width; each range is scanned in the three tables
 * before the next, so "every partition up to token T is done" holds for
 * all of them and a repair can resume after T (--from). Murmur3 never
 * yields INT64_MIN, so (INT64_MIN, hi] misses nothing.
 */
#define REPAIR_SLICES 256

static int64_t next_boundary(int64_t lo)
{
	const uint64_t width = UINT64_MAX / REPAIR_SLICES + 1; /* 2^56 */
	uint64_t off = (uint64_t)lo - (uint64_t)INT64_MIN;
	uint64_t slice = off / width;
	if (slice + 1 >= REPAIR_SLICES)
		return INT64_MAX;
	return (int64_t)((slice + 1) * width + (uint64_t)INT64_MIN);
}

static enum store_status cass_repair(struct store *store, const struct store_repair_options *opts,
				     struct store_repair_report *report)
{
	struct repair_ctx rc = { .c = (struct cass_store *)store, .opts = opts, .report = report };
	rc.pacer.per_second = opts->per_second;
	rc.cutoff_us = clock_wall_us() - (int64_t)opts->min_age_secs * 1000000;
	__atomic_store_n(&report->by_token, true, __ATOMIC_RELAXED);
	/* After the cutoff: a user added from here on has no message older. */
	enum store_status st = opts->check ? read_user_mailboxes(&rc) : STORE_OK;
	int64_t lo = opts->has_from ? opts->from_token : INT64_MIN;
	while (st == STORE_OK && lo < INT64_MAX) {
		int64_t hi = next_boundary(lo);
		if (opts->check) {
			st = scan(&rc, "SELECT message_id, mailbox_id, size, uidl, prefix, body_size,"
				       " chunks, deleted, listing_id FROM {ks}.body_refs"
				       " WHERE token(message_id) > ? AND token(message_id) <= ?",
				  lo, hi, repair_ref);
			if (st == STORE_OK)
				st = scan(&rc, "SELECT mailbox_id, message_id, chunks, body_id"
					       " FROM {ks}.listing"
					       " WHERE token(mailbox_id) > ? AND token(mailbox_id) <= ?",
					  lo, hi, repair_listing);
		}
		if (st == STORE_OK && opts->sweep)
			st = scan(&rc, "SELECT DISTINCT message_id, chunk FROM {ks}.bodies"
				       " WHERE token(message_id, chunk) > ?"
				       " AND token(message_id, chunk) <= ?", lo, hi, repair_body);
		if (st != STORE_OK)
			break;
		__atomic_store_n(&report->token_reached, hi, __ATOMIC_RELAXED);
		if (opts->progress != NULL)
			opts->progress(opts->progress_ctx, report);
		lo = hi;
	}
	free(rc.mailboxes);
	return st;
}

/* --- aliases, quotas, health --- */

static enum store_status cass_alias_put(struct store *store, const char *address,
					const char *targets)
{
	struct cass_store *c = (struct cass_store *)store;
	char q[512];
	struct cql_values *v = cql_values_create();
	cql_values_add_text(v, address);
	cql_values_add_text(v, strrchr(address, '@') + 1);
	cql_values_add_text(v, targets);
	enum store_status st = run(c, Q(c, q, "INSERT INTO {ks}.aliases (address, domain, targets)"
					      " VALUES (?, ?, ?)"), v, c->write_cl, NULL);
	cql_values_free(&v);
	return st;
}

static enum store_status cass_alias_del(struct store *store, const char *address)
{
	struct cass_store *c = (struct cass_store *)store;
	enum store_status st = read_text(c, "SELECT address FROM {ks}.aliases WHERE address = ?",
					 address, NULL, true);
	if (st != STORE_OK)
		return st;
	return write1(c, "DELETE FROM {ks}.aliases WHERE address = ?", address, NULL);
}

static enum store_status cass_alias_get(struct store *store, const char *address,
					struct buf *targets_r)
{
	return read_text((struct cass_store *)store,
			 "SELECT targets FROM {ks}.aliases WHERE address = ?", address, targets_r, true);
}

static bool alias_row(void *ctx, struct cql_result *res)
{
	struct buf *out = ctx;
	struct cql_slice a, t;
	if (cql_result_get_text(res, 0, &a) == 1 && cql_result_get_text(res, 1, &t) == 1) {
		char *address = xstrndup((const char *)a.data, a.len);
		store_alias_line(out, address, (const char *)t.data, t.len);
		free(address);
	}
	return true;
}

/* A scan of the (small) aliases table; store.c sorts it. */
static enum store_status cass_alias_list(struct store *store, struct buf *out)
{
	struct cass_store *c = (struct cass_store *)store;
	uint64_t rows;
	return for_each_row(c, "SELECT address, targets FROM {ks}.aliases", NULL, c->read_cl, 0,
			    alias_row, out, &rows);
}

static enum store_status cass_quota_get(struct store *store, const char *address,
					struct store_quota *own_r)
{
	return read_own_quota((struct cass_store *)store, address, own_r);
}

/* Administrative: a read-then-write like the password's, never on
 * delivery. A limit of none is stored as null. */
static enum store_status cass_quota_set(struct store *store, const char *address,
					const struct store_quota *own)
{
	struct cass_store *c = (struct cass_store *)store;
	enum store_status st = read_text(c, "SELECT address FROM {ks}.users WHERE address = ?",
					 address, NULL, true);
	if (st != STORE_OK)
		return st;
	char q[512];
	struct cql_values *v = cql_values_create();
	if (own->messages != STORE_NO_LIMIT)
		cql_values_add_bigint(v, (int64_t)own->messages);
	else
		cql_values_add_null(v);
	if (own->octets != STORE_NO_LIMIT)
		cql_values_add_bigint(v, (int64_t)own->octets);
	else
		cql_values_add_null(v);
	cql_values_add_text(v, address);
	st = run(c, Q(c, q, "UPDATE {ks}.users SET quota_messages = ?, quota_octets = ?"
			    " WHERE address = ?"), v, c->write_cl, NULL);
	cql_values_free(&v);
	return st;
}

/* --- POP3 extensions: EXPIRE and LOGIN-DELAY --- */

/* Column 1 of a one-row read keyed by address, as a bigint (absent: left
 * as it is); NOTFOUND without the row. */
static enum store_status read_bigint(struct cass_store *c, const char *tmpl, const char *address,
				     int64_t *v_r)
{
	char q[512];
	struct cql_values *v = cql_values_create();
	cql_values_add_text(v, address);
	struct cql_result *res = NULL;
	enum store_status st = run(c, Q(c, q, tmpl), v, c->read_cl, &res);
	cql_values_free(&v);
	if (st != STORE_OK)
		return st;
	int64_t n;
	if (!cql_result_next_row(res))
		st = STORE_NOTFOUND;
	else if (cql_result_get_bigint(res, 1, &n) == 1)
		*v_r = n;
	cql_result_free(&res);
	return st;
}

static enum store_status cass_expire_get(struct store *store, const char *address, int *days_r)
{
	return read_expire((struct cass_store *)store, address, days_r);
}

/* Administrative, like the quota: the user must exist; the default is
 * stored as null. */
static enum store_status cass_expire_set(struct store *store, const char *address, int days)
{
	struct cass_store *c = (struct cass_store *)store;
	enum store_status st = read_text(c, "SELECT address FROM {ks}.users WHERE address = ?",
					 address, NULL, true);
	if (st != STORE_OK)
		return st;
	char q[512];
	struct cql_values *v = cql_values_create();
	if (days == STORE_EXPIRE_DEFAULT)
		cql_values_add_null(v);
	else
		cql_values_add_bigint(v, days);
	cql_values_add_text(v, address);
	st = run(c, Q(c, q, "UPDATE {ks}.users SET expire_days = ? WHERE address = ?"), v,
		 c->write_cl, NULL);
	cql_values_free(&v);
	return st;
}

static enum store_status cass_login_get(struct store *store, const char *address, int64_t *us_r)
{
	enum store_status st = read_bigint((struct cass_store *)store,
					   "SELECT address, last_login FROM {ks}.pop3_logins"
					   " WHERE address = ?", address, us_r);
	return st == STORE_NOTFOUND ? STORE_OK : st;
}

static enum store_status cass_login_put(struct store *store, const char *address, int64_t us)
{
	struct cass_store *c = (struct cass_store *)store;
	char q[512];
	struct cql_values *v = cql_values_create();
	cql_values_add_text(v, address);
	cql_values_add_bigint(v, us);
	enum store_status st = run(c, Q(c, q, "INSERT INTO {ks}.pop3_logins (address, last_login)"
					      " VALUES (?, ?)"), v, c->write_cl, NULL);
	cql_values_free(&v);
	return st;
}

static enum store_status cass_retrieved_put(struct store *store, const struct uuid *mailbox,
					    const struct uuid *id, int64_t us)
{
	struct cass_store *c = (struct cass_store *)store;
	char q[512];
	struct cql_values *v = cql_values_create();
	cql_values_add_uuid(v, mailbox->b);
	cql_values_add_uuid(v, id->b);
	cql_values_add_bigint(v, us);
	enum store_status st = run(c, Q(c, q, "INSERT INTO {ks}.retrieved (mailbox_id, message_id,"
					      " retrieved_at) VALUES (?, ?, ?)"), v, c->write_cl, NULL);
	cql_values_free(&v);
	return st;
}

struct retrieved_rows {
	int64_t before_us;
	unsigned int max, n;
	struct uuid *ids;
	int64_t *times;
	struct uuid last;  /* the message of the previous row */
	bool have_last;
};

/* Rows come by message id, then retrieval time: a message's first row is
 * its earliest retrieval, the others are skipped. */
static bool retrieved_row(void *ctx, struct cql_result *res)
{
	struct retrieved_rows *r = ctx;
	struct uuid id;
	int64_t at = 0;
	if (cql_result_get_uuid(res, 0, id.b) != 1 || cql_result_get_bigint(res, 1, &at) != 1)
		return true;
	if (r->have_last && memcmp(&r->last, &id, 16) == 0)
		return true;
	r->last = id;
	r->have_last = true;
	if (at >= r->before_us)
		return true;
	r->ids[r->n] = id;
	r->times[r->n] = at;
	return ++r->n < r->max;
}

static enum store_status cass_retrieved_list(struct store *store, const struct uuid *mailbox,
					     int64_t before_us, unsigned int max,
					     struct uuid **ids_r, int64_t **us_r, unsigned int *count_r)
{
	struct cass_store *c = (struct cass_store *)store;
	*ids_r = NULL;
	*us_r = NULL;
	*count_r = 0;
	if (max == 0)
		return STORE_OK;
	struct retrieved_rows r = { .before_us = before_us, .max = max };
	r.ids = xcalloc(max, sizeof(*r.ids));
	r.times = xcalloc(max, sizeof(*r.times));
	struct cql_values *v = cql_values_create();
	cql_values_add_uuid(v, mailbox->b);
	uint64_t rows;
	enum store_status st = for_each_row(c, "SELECT message_id, retrieved_at FROM {ks}.retrieved"
					       " WHERE mailbox_id = ?", v, c->read_cl, 0,
					    retrieved_row, &r, &rows);
	cql_values_free(&v);
	if (st != STORE_OK || r.n == 0) {
		free(r.ids);
		free(r.times);
		return st;
	}
	*ids_r = r.ids;
	*us_r = r.times;
	*count_r = r.n;
	return STORE_OK;
}

static enum store_status cass_retrieved_del(struct store *store, const struct uuid *mailbox,
					    const struct uuid *ids, unsigned int n)
{
	struct cass_store *c = (struct cass_store *)store;
	enum store_status st = STORE_OK;
	for (unsigned int k = 0; k < n && st == STORE_OK; k++) {
		char q[512];
		struct cql_values *v = cql_values_create();
		cql_values_add_uuid(v, mailbox->b);
		cql_values_add_uuid(v, ids[k].b);
		st = run(c, Q(c, q, "DELETE FROM {ks}.retrieved WHERE mailbox_id = ? AND message_id = ?"),
			 v, c->write_cl, NULL);
		cql_values_free(&v);
	}
	return st;
}

/* A user the caller has just read: the listing alone. */
static enum store_status cass_listing_usage(struct store *store, const char *address,
					    uint64_t *messages_r, uint64_t *octets_r)
{
	struct uuid mbox;
	uuid_v5(address, strlen(address), &mbox);
	return listing_usage((struct cass_store *)store, &mbox, messages_r, octets_r);
}

static enum store_status cass_mailbox_usage(struct store *store, const char *address,
					    uint64_t *messages_r, uint64_t *octets_r)
{
	struct cass_store *c = (struct cass_store *)store;
	enum store_status st = read_text(c, "SELECT address FROM {ks}.users WHERE address = ?",
					 address, NULL, true);
	if (st != STORE_OK)
		return st;
	struct uuid mbox;
	uuid_v5(address, strlen(address), &mbox);
	return listing_usage(c, &mbox, messages_r, octets_r);
}

/* --- the outbound queue ---
 *
 * An entry is a row of queue ((owner, bucket), id), bucket = the hour of
 * its id's time (queued_us / QUEUE_BUCKET_US), so the rows of one
 * partition, and their tombstones once delivered, stop coming after an
 * hour, and a partition whose entries are all gone is no longer read:
 * queue_buckets (owner → bucket) says which partitions a scan reads, and
 * a scan drops a bucket that is empty and old (QUEUE_BUCKET_DROP_US).
 * queue_by_id (id → owner, bucket) finds an entry by its id alone.
 *
 * A put writes the chunks, then queue_by_id, then the entry row, then
 * the bucket: a scan never meets an entry without its message, and a
 * delete by id always finds what a scan shows. Every row of a put is
 * written with the id's time as its write timestamp, so a retried put
 * (same id) writes the same cells at the same timestamp: it can never
 * undo an update or a delete, whose timestamps are later (the bucket row
 * alone is written at the current time, so a retry also revives a bucket
 * dropped meanwhile). Updates and deletes are written at the current
 * time, and at least one µs after the entry's queue time.
 *
 * No statement is conditional and nothing is read at SERIAL. An update
 * reads the row first (a plain read at the read consistency) and returns
 * NOTFOUND when it is gone; an update that races a delete leaves a row of
 * a few cells without the put's (a "ghost": size is null), which no scan
 * or get reports and the next scan deletes.
 */
#define QUEUE_BUCKET_US (3600LL * 1000000)
/* A bucket is dropped once it is empty and has been over for this long:
 * by then every put of its hour has finished, and a late retry (whose
 * bucket row is written at the current time) brings it back. */
#define QUEUE_BUCKET_DROP_US (24LL * 3600 * 1000000)
/* Chunks read per request (1 MiB of message). */
#define QUEUE_READ_CHUNKS 8
#define QUEUE_ROW "SELECT id, sender, queued_us, next_attempt_us, attempts, size, rcpts" \
	" FROM {ks}.queue WHERE owner = ? AND bucket = ? AND id = ?"

static int64_t queue_bucket(const struct uuid *id)
{
	int64_t us = timeuuid_unix_usec(id);
	return us >= 0 ? us / QUEUE_BUCKET_US : 0;
}

/* The write timestamp of an update or delete of entry id: now, and after
 * the put's (the id's time). */
static int64_t queue_write_ts(const struct uuid *id)
{
	int64_t now = cql_timestamp_now_us(), put = timeuuid_unix_usec(id);
	return now > put ? now : put + 1;
}

/* Values (owner, bucket[, id]): a row of queue, or (id) alone. */
static struct cql_values *queue_key(const char *owner, int64_t bucket, const struct uuid *id)
{
	struct cql_values *v = cql_values_create();
	if (owner != NULL) {
		cql_values_add_text(v, owner);
		cql_values_add_bigint(v, bucket);
	}
	if (id != NULL)
		cql_values_add_uuid(v, id->b);
	return v;
}

/* Runs tmpl with the key's values (then freed) at cl and ts. */
static enum store_status queue_run(struct cass_store *c, const char *tmpl, struct cql_values *v,
				   enum cql_consistency cl, int64_t ts, struct cql_result **res_r)
{
	char q[512];
	enum store_status st = run_at(c, Q(c, q, tmpl), v, cl, ts, res_r);
	cql_values_free(&v);
	return st;
}

static enum store_status put_queue_chunks(struct cass_store *c, const struct store_queue_put *q,
					  int64_t ts)
{
	char q_[512];
	Q(c, q_, "INSERT INTO {ks}.queue_chunks (id, n, data) VALUES (?, ?, ?)");
	uint64_t total = store_queue_put_size(q);
	char *chunk = xmalloc(STORE_QUEUE_CHUNK);
	struct cql_values *v = cql_values_create();
	enum store_status st = STORE_OK;
	for (uint64_t off = 0, k = 0; off < total && st == STORE_OK; off += STORE_QUEUE_CHUNK, k++) {
		size_t n = total - off < STORE_QUEUE_CHUNK ? (size_t)(total - off) : STORE_QUEUE_CHUNK;
		if (k > INT32_MAX) {
			st = STORE_TOOBIG;
			break;
		}
		if (store_queue_put_read(q, off, chunk, n) < 0) {
			st = STORE_TEMPFAIL;
			break;
		}
		cql_values_clear(v);
		cql_values_add_uuid(v, q->id.b);
		cql_values_add_int(v, (int32_t)k);
		cql_values_add_blob(v, chunk, n);
		st = run_at(c, q_, v, c->write_cl, ts, NULL);
	}
	cql_values_free(&v);
	free(chunk);
	return st;
}

static enum store_status cass_queue_put(struct store *store, const struct store_queue_put *q,
					const struct buf *rcpts)
{
	struct cass_store *c = (struct cass_store *)store;
	int64_t ts = timeuuid_unix_usec(&q->id), bucket = queue_bucket(&q->id);
	enum store_status st = put_queue_chunks(c, q, ts);
	if (st == STORE_OK) {
		struct cql_values *v = queue_key(NULL, 0, &q->id);
		cql_values_add_text(v, q->owner);
		cql_values_add_bigint(v, bucket);
		st = queue_run(c, "INSERT INTO {ks}.queue_by_id (id, owner, bucket) VALUES (?, ?, ?)",
			       v, c->write_cl, ts, NULL);
	}
	if (st == STORE_OK) {
		struct cql_values *v = queue_key(q->owner, bucket, &q->id);
		const char *sender = q->sender != NULL ? q->sender : "";
		cql_values_add_blob(v, sender, strlen(sender));
		cql_values_add_bigint(v, ts);
		cql_values_add_bigint(v, q->next_attempt_us);
		cql_values_add_int(v, 0);
		cql_values_add_bigint(v, (int64_t)store_queue_put_size(q));
		cql_values_add_blob(v, rcpts->data, rcpts->len);
		st = queue_run(c, "INSERT INTO {ks}.queue (owner, bucket, id, sender, queued_us,"
				  " next_attempt_us, attempts, size, rcpts)"
				  " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", v, c->write_cl, ts, NULL);
	}
	if (st == STORE_OK)
		st = queue_run(c, "INSERT INTO {ks}.queue_buckets (owner, bucket) VALUES (?, ?)",
			       queue_key(q->owner, bucket, NULL), c->write_cl, 0, NULL);
	return st;
}

/* The entry (owner, bucket, id) at the read consistency: NOTFOUND when
 * there is no row or only a ghost. e may be NULL (does it exist?). */
static enum store_status queue_read_row(struct cass_store *c, const char *owner,
					const struct uuid *id, struct store_queue_entry *e)
{
	struct cql_result *res = NULL;
	enum store_status st = queue_run(c, QUEUE_ROW, queue_key(owner, queue_bucket(id), id),
					 c->read_cl, 0, &res);
	if (st != STORE_OK)
		return st;
	int64_t size = 0, queued = 0, next = 0;
	int32_t attempts = 0;
	struct cql_slice sender, rcpts;
	st = STORE_NOTFOUND;
	if (cql_result_next_row(res) && cql_result_get_bigint(res, 5, &size) == 1) {
		st = STORE_OK;
		if (e != NULL) {
			memset(e, 0, sizeof(*e));
			e->id = *id;
			str_copy(e->owner, owner, sizeof(e->owner));
			if (cql_result_get_blob(res, 1, &sender) >= 0 && sender.data != NULL &&
			    sender.len < sizeof(e->sender))
				memcpy(e->sender, sender.data, sender.len);
			cql_result_get_bigint(res, 2, &queued);
			cql_result_get_bigint(res, 3, &next);
			cql_result_get_int(res, 4, &attempts);
			e->queued_us = queued;
			e->next_attempt_us = next;
			e->attempts = attempts > 0 ? (unsigned int)attempts : 0;
			e->size = size > 0 ? (uint64_t)size : 0;
			if (cql_result_get_blob(res, 6, &rcpts) != 1 ||
			    store_queue_rcpts_decode(rcpts.data, rcpts.len, e) < 0) {
				log_error("cassandra: a queue row with malformed recipients");
				st = STORE_TEMPFAIL;
			}
		}
	}
	cql_result_free(&res);
	return st;
}

/* What a scan found worth reading: the best max (by next attempt, then
 * id) of the due entries, as a max-heap while scanning. */
struct queue_cand {
	struct uuid id;
	int64_t next;
	unsigned int bucket;   /* index into the scan's buckets */
};

struct queue_bucket_ref {
	char owner[STORE_NODE_ID_MAX + 1];
	int64_t bucket;
};

struct queue_scan_ctx {
	struct cass_store *c;
	const struct queue_bucket_ref *b;    /* being read */
	unsigned int bucket;
	int64_t due_before_us;
	unsigned int max, n, alloc;
	struct queue_cand *heap;             /* a max-heap of n */
	bool flush;                          /* queue_flush: every row gets next_attempt = now */
	int64_t now_us;
	unsigned int flushed, live;
	enum store_status st;
};

static int cand_cmp(const struct queue_cand *a, const struct queue_cand *b)
{
	if (a->next != b->next)
		return a->next < b->next ? -1 : 1;
	return timeuuid_compare(&a->id, &b->id);
}

static void heap_sift_down(struct queue_cand *h, unsigned int n, unsigned int i)
{
	for (;;) {
		unsigned int l = 2 * i + 1, r = l + 1, top = i;
		if (l < n && cand_cmp(&h[l], &h[top]) > 0)
			top = l;
		if (r < n && cand_cmp(&h[r], &h[top]) > 0)
			top = r;
		if (top == i)
			return;
		struct queue_cand t = h[i];
		h[i] = h[top];
		h[top] = t;
		i = top;
	}
}

/* Keeps cand if it is among the best max seen. */
static void heap_offer(struct queue_scan_ctx *s, const struct queue_cand *cand)
{
	if (s->n == s->max) {
		if (cand_cmp(cand, &s->heap[0]) >= 0)
			return;
		s->heap[0] = *cand;
		heap_sift_down(s->heap, s->n, 0);
		return;
	}
	if (s->n == s->alloc) {
		s->alloc = s->alloc ? s->alloc * 2 : 64;
		s->heap = xrealloc(s->heap, s->alloc * sizeof(*s->heap));
	}
	unsigned int i = s->n++;
	s->heap[i] = *cand;
	while (i > 0 && cand_cmp(&s->heap[(i - 1) / 2], &s->heap[i]) < 0) {
		struct queue_cand t = s->heap[i];
		s->heap[i] = s->heap[(i - 1) / 2];
		s->heap[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
}

/* One row (id, next_attempt_us, size) of a bucket partition. */
static bool queue_scan_row(void *ctx, struct cql_result *res)
{
	struct queue_scan_ctx *s = ctx;
	struct queue_cand cand = { .bucket = s->bucket };
	int64_t size = 0;
	if (cql_result_get_uuid(res, 0, cand.id.b) != 1)
		return true;
	if (cql_result_get_bigint(res, 2, &size) != 1) {
		/* a ghost (an update raced a delete): removed */
		s->st = queue_run(s->c, "DELETE FROM {ks}.queue WHERE owner = ? AND bucket = ? AND id = ?",
				  queue_key(s->b->owner, s->b->bucket, &cand.id), s->c->write_cl,
				  queue_write_ts(&cand.id), NULL);
		return s->st == STORE_OK;
	}
	s->live++;
	if (s->flush) {
		struct cql_values *v = cql_values_create();
		cql_values_add_bigint(v, s->now_us);
		cql_values_add_text(v, s->b->owner);
		cql_values_add_bigint(v, s->b->bucket);
		cql_values_add_uuid(v, cand.id.b);
		s->st = queue_run(s->c, "UPDATE {ks}.queue SET next_attempt_us = ?"
					" WHERE owner = ? AND bucket = ? AND id = ?",
				  v, s->c->write_cl, queue_write_ts(&cand.id), NULL);
		s->flushed += s->st == STORE_OK;
		return s->st == STORE_OK;
	}
	if (cql_result_get_bigint(res, 1, &cand.next) == 1 && cand.next <= s->due_before_us)
		heap_offer(s, &cand);
	return true;
}

/* Drops the bucket row of an empty, old bucket. A put that raced it has
 * written its entry before its bucket row: the read after the delete sees
 * that entry and writes the row again. */
static enum store_status drop_bucket(struct cass_store *c, const struct queue_bucket_ref *b)
{
	enum store_status st = queue_run(c, "DELETE FROM {ks}.queue_buckets WHERE owner = ?"
					    " AND bucket = ?", queue_key(b->owner, b->bucket, NULL),
					 c->write_cl, 0, NULL);
	struct cql_result *res = NULL;
	if (st == STORE_OK)
		st = queue_run(c, "SELECT id FROM {ks}.queue WHERE owner = ? AND bucket = ? LIMIT 1",
			       queue_key(b->owner, b->bucket, NULL), c->read_cl, 0, &res);
	bool refilled = st == STORE_OK && cql_result_next_row(res);
	cql_result_free(&res);
	if (refilled)
		st = queue_run(c, "INSERT INTO {ks}.queue_buckets (owner, bucket) VALUES (?, ?)",
			       queue_key(b->owner, b->bucket, NULL), c->write_cl, 0, NULL);
	return st;
}

struct bucket_rows {
	const char *owner;   /* NULL: the owner is column 0, the bucket column 1 */
	struct queue_bucket_ref *list;
	unsigned int n, alloc;
};

static bool bucket_row(void *ctx, struct cql_result *res)
{
	struct bucket_rows *b = ctx;
	struct queue_bucket_ref r;
	struct cql_slice owner;
	unsigned int col = 0;
	if (b->owner != NULL) {
		str_copy(r.owner, b->owner, sizeof(r.owner));
	} else {
		if (cql_result_get_text(res, 0, &owner) != 1 || owner.len >= sizeof(r.owner))
			return true;
		memcpy(r.owner, owner.data, owner.len);
		r.owner[owner.len] = '\0';
		col = 1;
	}
	if (cql_result_get_bigint(res, col, &r.bucket) != 1)
		return true;
	if (b->n == b->alloc) {
		b->alloc = b->alloc ? b->alloc * 2 : 32;
		b->list = xrealloc(b->list, b->alloc * sizeof(*b->list));
	}
	b->list[b->n++] = r;
	return true;
}

/* Reads every bucket of owner (NULL: of every owner) through s: each
 * partition's rows go to queue_scan_row; an empty old bucket is dropped.
 * The buckets are left in *buckets_r (malloc'ed). */
static enum store_status queue_walk(struct cass_store *c, const char *owner,
				    struct queue_scan_ctx *s, struct queue_bucket_ref **buckets_r)
{
	struct bucket_rows b = { .owner = owner };
	uint64_t rows;
	struct cql_values *v = cql_values_create();
	if (owner != NULL)
		cql_values_add_text(v, owner);
	enum store_status st = for_each_row(c, owner != NULL
		? "SELECT bucket FROM {ks}.queue_buckets WHERE owner = ?"
		: "SELECT owner, bucket FROM {ks}.queue_buckets", v, c->read_cl, 0, bucket_row, &b,
		&rows);
	cql_values_free(&v);
	int64_t now = clock_wall_us();
	for (unsigned int i = 0; i < b.n && st == STORE_OK; i++) {
		s->b = &b.list[i];
		s->bucket = i;
		s->live = 0;
		v = queue_key(b.list[i].owner, b.list[i].bucket, NULL);
		st = for_each_row(c, "SELECT id, next_attempt_us, size FROM {ks}.queue"
				     " WHERE owner = ? AND bucket = ?", v, c->read_cl, 0,
				  queue_scan_row, s, &rows);
		cql_values_free(&v);
		if (st == STORE_OK)
			st = s->st;
		if (st == STORE_OK && s->live == 0 &&
		    (b.list[i].bucket + 1) * QUEUE_BUCKET_US + QUEUE_BUCKET_DROP_US < now)
			st = drop_bucket(c, &b.list[i]);
	}
	*buckets_r = b.list;
	return st;
}

static int cand_qsort(const void *a, const void *b)
{
	return cand_cmp(a, b);
}

static enum store_status cass_queue_scan(struct store *store, const char *owner,
					 int64_t due_before_us, unsigned int max,
					 struct store_queue_entry **entries_r, unsigned int *count_r)
{
	struct cass_store *c = (struct cass_store *)store;
	struct queue_scan_ctx s = { .c = c, .due_before_us = due_before_us, .max = max };
	struct queue_bucket_ref *buckets = NULL;
	enum store_status st = queue_walk(c, owner, &s, &buckets);
	if (st == STORE_OK && s.n > 0) {
		qsort(s.heap, s.n, sizeof(*s.heap), cand_qsort);
		*entries_r = xcalloc(s.n, sizeof(**entries_r));
	}
	for (unsigned int i = 0; i < s.n && st == STORE_OK; i++) {
		struct store_queue_entry *e = &(*entries_r)[*count_r];
		st = queue_read_row(c, buckets[s.heap[i].bucket].owner, &s.heap[i].id, e);
		if (st == STORE_OK)
			(*count_r)++;
		else if (st == STORE_NOTFOUND)
			st = STORE_OK; /* delivered and deleted since the partition was read */
	}
	free(s.heap);
	free(buckets);
	return st;
}

/* The owner of entry id, from queue_by_id; NOTFOUND without the row. */
static enum store_status queue_owner(struct cass_store *c, const struct uuid *id,
				     char owner_r[STORE_NODE_ID_MAX + 1])
{
	struct cql_result *res = NULL;
	enum store_status st = queue_run(c, "SELECT owner FROM {ks}.queue_by_id WHERE id = ?",
					 queue_key(NULL, 0, id), c->read_cl, 0, &res);
	if (st != STORE_OK)
		return st;
	struct cql_slice o;
	st = STORE_NOTFOUND;
	if (cql_result_next_row(res) && cql_result_get_text(res, 0, &o) == 1 &&
	    o.len >= 1 && o.len <= STORE_NODE_ID_MAX) {
		memcpy(owner_r, o.data, o.len);
		owner_r[o.len] = '\0';
		st = STORE_OK;
	}
	cql_result_free(&res);
	return st;
}

static enum store_status cass_queue_get(struct store *store, const struct uuid *id,
					struct store_queue_entry *entry_r)
{
	struct cass_store *c = (struct cass_store *)store;
	char owner[STORE_NODE_ID_MAX + 1];
	enum store_status st = queue_owner(c, id, owner);
	return st == STORE_OK ? queue_read_row(c, owner, id, entry_r) : st;
}

/* The chunks covering [offset, offset + n), QUEUE_READ_CHUNKS a request.
 * A chunk not there: NOTFOUND when the entry is gone, else TEMPFAIL (not
 * replicated here yet; the next attempt reads it). */
static enum store_status cass_queue_read(struct store *store, const struct store_queue_entry *e,
					 uint64_t offset, char *dst, size_t n)
{
	struct cass_store *c = (struct cass_store *)store;
	uint64_t first = offset / STORE_QUEUE_CHUNK, last = (offset + n - 1) / STORE_QUEUE_CHUNK;
	if (last > INT32_MAX)
		return STORE_INVALID;
	size_t copied = 0;
	enum store_status st = STORE_OK;
	for (uint64_t k = first; k <= last && st == STORE_OK; k += QUEUE_READ_CHUNKS) {
		uint64_t to = k + QUEUE_READ_CHUNKS - 1 < last ? k + QUEUE_READ_CHUNKS - 1 : last;
		struct cql_values *v = queue_key(NULL, 0, &e->id);
		cql_values_add_int(v, (int32_t)k);
		cql_values_add_int(v, (int32_t)to);
		struct cql_result *res = NULL;
		st = queue_run(c, "SELECT n, data FROM {ks}.queue_chunks WHERE id = ? AND n >= ?"
				  " AND n <= ?", v, c->read_cl, 0, &res);
		while (st == STORE_OK && cql_result_next_row(res)) {
			int32_t chunk = -1;
			struct cql_slice data;
			if (cql_result_get_int(res, 0, &chunk) == 1 && chunk >= 0 &&
			    cql_result_get_blob(res, 1, &data) == 1)
				copied += store_queue_chunk_copy((uint64_t)chunk, data.data, data.len,
								 offset, dst, n);
		}
		cql_result_free(&res);
	}
	if (st != STORE_OK || copied == n)
		return st;
	st = queue_read_row(c, e->owner, &e->id, NULL);
	if (st == STORE_OK) {
		log_warn("cassandra: a chunk of a queued message is not readable yet");
		st = STORE_TEMPFAIL;
	}
	return st;
}

static enum store_status cass_queue_update(struct store *store, const struct store_queue_entry *e,
					   const struct buf *rcpts)
{
	struct cass_store *c = (struct cass_store *)store;
	enum store_status st = queue_read_row(c, e->owner, &e->id, NULL);
	if (st != STORE_OK)
		return st;
	struct cql_values *v = cql_values_create();
	cql_values_add_int(v, e->attempts > INT32_MAX ? INT32_MAX : (int32_t)e->attempts);
	cql_values_add_bigint(v, e->next_attempt_us);
	cql_values_add_blob(v, rcpts->data, rcpts->len);
	cql_values_add_text(v, e->owner);
	cql_values_add_bigint(v, queue_bucket(&e->id));
	cql_values_add_uuid(v, e->id.b);
	return queue_run(c, "UPDATE {ks}.queue SET attempts = ?, next_attempt_us = ?, rcpts = ?"
			    " WHERE owner = ? AND bucket = ? AND id = ?",
			 v, c->write_cl, queue_write_ts(&e->id), NULL);
}

/* The entry row first (scans stop showing it), then its chunks, then the
 * lookup row (so an interrupted delete can be run again by id). */
static enum store_status cass_queue_del(struct store *store, const struct uuid *id)
{
	struct cass_store *c = (struct cass_store *)store;
	char owner[STORE_NODE_ID_MAX + 1];
	enum store_status st = queue_owner(c, id, owner);
	if (st != STORE_OK)
		return st;
	enum store_status found = queue_read_row(c, owner, id, NULL);
	if (found != STORE_OK && found != STORE_NOTFOUND)
		return found;
	int64_t ts = queue_write_ts(id);
	st = queue_run(c, "DELETE FROM {ks}.queue WHERE owner = ? AND bucket = ? AND id = ?",
		       queue_key(owner, queue_bucket(id), id), c->write_cl, ts, NULL);
	if (st == STORE_OK)
		st = queue_run(c, "DELETE FROM {ks}.queue_chunks WHERE id = ?", queue_key(NULL, 0, id),
			       c->write_cl, ts, NULL);
	if (st == STORE_OK)
		st = queue_run(c, "DELETE FROM {ks}.queue_by_id WHERE id = ?", queue_key(NULL, 0, id),
			       c->write_cl, ts, NULL);
	return st == STORE_OK ? found : st;
}

static enum store_status cass_queue_flush(struct store *store, int64_t now_us,
					  unsigned int *count_r)
{
	struct cass_store *c = (struct cass_store *)store;
	struct queue_scan_ctx s = { .c = c, .flush = true, .now_us = now_us };
	struct queue_bucket_ref *buckets = NULL;
	enum store_status st = queue_walk(c, NULL, &s, &buckets);
	free(buckets);
	*count_r = s.flushed;
	return st;
}

static enum store_status cass_queue_heartbeat(struct store *store, const char *node,
					      int64_t now_us)
{
	struct cass_store *c = (struct cass_store *)store;
	struct cql_values *v = cql_values_create();
	cql_values_add_text(v, c->dc);
	cql_values_add_text(v, node);
	cql_values_add_bigint(v, now_us);
	return queue_run(c, "INSERT INTO {ks}.queue_nodes (dc, node, heartbeat_us) VALUES (?, ?, ?)",
			 v, c->write_cl, 0, NULL);
}

struct node_rows {
	struct store_queue_node *list;
	unsigned int n, alloc;
};

static bool node_row(void *ctx, struct cql_result *res)
{
	struct node_rows *r = ctx;
	struct cql_slice id;
	int64_t us = 0;
	if (cql_result_get_text(res, 0, &id) != 1 || id.len == 0 || id.len > STORE_NODE_ID_MAX ||
	    cql_result_get_bigint(res, 1, &us) != 1)
		return true;
	if (r->n == r->alloc) {
		r->alloc = r->alloc ? r->alloc * 2 : 8;
		r->list = xrealloc(r->list, r->alloc * sizeof(*r->list));
	}
	memcpy(r->list[r->n].id, id.data, id.len);
	r->list[r->n].id[id.len] = '\0';
	r->list[r->n++].heartbeat_us = us;
	return true;
}

static enum store_status cass_queue_nodes(struct store *store, struct store_queue_node **nodes_r,
					  unsigned int *count_r)
{
	struct cass_store *c = (struct cass_store *)store;
	struct node_rows r = { 0 };
	struct cql_values *v = cql_values_create();
	cql_values_add_text(v, c->dc);
	uint64_t rows;
	enum store_status st = for_each_row(c, "SELECT node, heartbeat_us FROM {ks}.queue_nodes"
					       " WHERE dc = ?", v, c->read_cl, 0, node_row, &r, &rows);
	cql_values_free(&v);
	*nodes_r = r.list;
	*count_r = r.n;
	return st;
}

/* Writable when a quorum of the local datacenter's replicas answers: a
 * LOCAL_QUORUM read of one small row (whatever the configured
 * consistencies), with a short deadline so a health probe never hangs. */
#define HEALTH_TIMEOUT_MS 5000
static enum store_status cass_health(struct store *store, struct buf *detail)
{
	struct cass_store *c = (struct cass_store *)store;
	char q[512];
	struct cql_error err;
	struct cql_prepared *stmt = cql_prepare(
		c->session, Q(c, q, "SELECT value FROM {ks}.meta WHERE key = 'health'"), &err);
	struct cql_result *res = NULL;
	if (stmt != NULL) {
		struct cql_query_opts opts;
		cql_query_opts_init(&opts);
		opts.consistency = CQL_LOCAL_QUORUM;
		opts.idempotent = true;
		opts.timeout_ms = HEALTH_TIMEOUT_MS;
		if (cql_execute(c->session, stmt, NULL, &opts, &res, &err) == 0) {
			cql_result_free(&res);
			/* Reachable. A setting that cannot keep an acknowledged
			 * write through one node crash is reported; it fails the
			 * check only where the site required durability. */
			struct buf line;
			buf_init(&line, 0);
			int durable = durability(c, &line);
			if (durable != 1)
				buf_printf(detail, "cassandra: durable: %s", line.data);
			buf_deinit(&line);
			return durable == 1 || !c->require_durable ? STORE_OK : STORE_TEMPFAIL;
		}
	}
	buf_printf(detail, "cassandra: %s: %s", cql_error_kind_name(err.kind), err.message);
	return STORE_TEMPFAIL;
}

const struct store_vfuncs store_cassandra_vfuncs = {
	.name = "cassandra",
	.section = SECTION,
	.options = cass_options,
	/* Every call waits on network round trips: more workers keep sessions busy. */
	.worker_threads = 16,
	.open = cass_open,
	.close = cass_close,
	.domain_add = cass_domain_add,
	.domain_del = cass_domain_del,
	.domain_exists = cass_domain_exists,
	.domain_list = cass_domain_list,
	.user_add = cass_user_add,
	.user_del = cass_user_del,
	.user_set_password = cass_user_set_password,
	.user_get = cass_user_get,
	.user_list = cass_user_list,
	.alias_put = cass_alias_put,
	.alias_del = cass_alias_del,
	.alias_get = cass_alias_get,
	.alias_list = cass_alias_list,
	.quota_get = cass_quota_get,
	.quota_set = cass_quota_set,
	.expire_get = cass_expire_get,
	.expire_set = cass_expire_set,
	.login_get = cass_login_get,
	.login_put = cass_login_put,
	.retrieved_put = cass_retrieved_put,
	.retrieved_list = cass_retrieved_list,
	.retrieved_del = cass_retrieved_del,
	.mailbox_usage = cass_mailbox_usage,
	.listing_usage = cass_listing_usage,
	.health = cass_health,
	.durability = cass_durability,
	.deliver = cass_deliver,
	.maildrop_read = cass_maildrop_read,
	.cursor_open = cass_cursor_open,
	.cursor_read = cass_cursor_read,
	.cursor_close = cass_cursor_close,
	.expunge = cass_expunge,
	.repair = cass_repair,
	.queue_put = cass_queue_put,
	.queue_scan = cass_queue_scan,
	.queue_get = cass_queue_get,
	.queue_read = cass_queue_read,
	.queue_update = cass_queue_update,
	.queue_del = cass_queue_del,
	.queue_flush = cass_queue_flush,
	.queue_heartbeat = cass_queue_heartbeat,
	.queue_nodes = cass_queue_nodes,
	.metrics_render = cass_metrics_render,
};
