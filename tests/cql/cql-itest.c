/*
 * Scenarios of lib-cql against a real Cassandra, run by test_cql_*.py:
 *   cql-itest HOST SCENARIO [ARGS]
 * Each scenario checks its results itself, prints "OK <scenario>" and exits
 * 0, or prints the failed check and exits 1. Interactive scenarios
 * (node-stop) print a line when they are ready for the test to act and read
 * a line from stdin when it has.
 */
#include "cql.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *host = "127.0.0.1";

#define FAIL(...) do { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); \
	printf("\n"); fflush(stdout); exit(1); } while (0)
#define CHECK(cond) do { if (!(cond)) FAIL("check failed: %s", #cond); } while (0)
#define CHECK_EQ(a, b) do { long long _a = (long long)(a), _b = (long long)(b); \
	if (_a != _b) FAIL("%s == %lld, expected %lld", #a, _a, _b); } while (0)

static struct cql_session *connect_dc(const char *local_dc)
{
	struct cql_settings set;
	struct cql_error err;

	cql_settings_init(&set);
	set.contact_points = host;
	set.local_dc = local_dc;
	set.connections_per_host = 2;
	set.reconnect_base_ms = 100;
	set.reconnect_max_ms = 2000;
	struct cql_session *s = cql_session_create(&set, &err);
	if (s == NULL)
		FAIL("session: %s: %s", cql_error_kind_name(err.kind), err.message);
	return s;
}

static struct cql_result *q_opts(struct cql_session *s, const char *cql,
				 const struct cql_values *v, const struct cql_query_opts *o)
{
	struct cql_result *r;
	struct cql_error err;
	if (cql_query(s, cql, v, o, &r, &err) < 0)
		FAIL("%s: %s: %s", cql, cql_error_kind_name(err.kind), err.message);
	return r;
}

static void q(struct cql_session *s, const char *cql)
{
	struct cql_result *r = q_opts(s, cql, NULL, NULL);
	cql_result_free(&r);
}

/* Runs cql expecting an error; returns it. */
static struct cql_error q_fail(struct cql_session *s, const char *cql,
			       const struct cql_query_opts *o)
{
	struct cql_result *r;
	struct cql_error err;
	if (cql_query(s, cql, NULL, o, &r, &err) == 0)
		FAIL("%s: succeeded, expected an error", cql);
	CHECK(r == NULL);
	return err;
}

static struct cql_prepared *prep(struct cql_session *s, const char *cql)
{
	struct cql_error err;
	struct cql_prepared *p = cql_prepare(s, cql, &err);
	if (p == NULL)
		FAIL("prepare %s: %s: %s", cql, cql_error_kind_name(err.kind), err.message);
	return p;
}

static struct cql_result *ex(struct cql_session *s, struct cql_prepared *p,
			     const struct cql_values *v, const struct cql_query_opts *o)
{
	struct cql_result *r;
	struct cql_error err;
	if (cql_execute(s, p, v, o, &r, &err) < 0)
		FAIL("execute: %s: %s", cql_error_kind_name(err.kind), err.message);
	return r;
}

static void keyspace(struct cql_session *s)
{
	struct cql_result *r = q_opts(s, "CREATE KEYSPACE IF NOT EXISTS cqltest WITH replication = "
				      "{'class': 'SimpleStrategy', 'replication_factor': 1}", NULL, NULL);
	cql_result_free(&r);
}

static void scenario_basic(void)
{
	struct cql_session *s = connect_dc(NULL);
	struct cql_result *r = q_opts(s, "SELECT data_center, release_version FROM system.local",
				      NULL, NULL);
	struct cql_slice v;
	CHECK(cql_result_next_row(r));
	CHECK_EQ(cql_result_get_text(r, 0, &v), 1);
	CHECK(v.len == 3 && memcmp(v.data, "dc1", 3) == 0);
	CHECK_EQ(cql_result_get_text(r, 1, &v), 1);
	printf("release %.*s\n", (int)v.len, (const char *)v.data);
	CHECK(v.len >= 3 && memcmp(v.data, "5.0", 3) == 0);
	cql_result_free(&r);
	char hosts[4][128];
	CHECK_EQ(cql_session_hosts(s, hosts, 4), 1);
	printf("host %s\n", hosts[0]);
	cql_session_destroy(&s);
	CHECK(s == NULL);
}

static const uint8_t uuid1[16] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0x4d, 0xef,
				   0x80, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77 };
/* A version-1 UUID, as timeuuid requires. */
static const uint8_t tuuid[16] = { 0xe7, 0x50, 0x5b, 0x20, 0x8b, 0x6f, 0x11, 0xee,
				   0x80, 0x01, 0x02, 0x42, 0xac, 0x12, 0x00, 0x02 };

static const uint8_t tuuid2[16] = { 0xe7, 0x50, 0x5b, 0x21, 0x8b, 0x6f, 0x11, 0xee,
				    0x80, 0x01, 0x02, 0x42, 0xac, 0x12, 0x00, 0x02 };

static void bind_all_types(struct cql_values *v, int32_t k)
{
	cql_values_add_int(v, k);
	cql_values_add_int(v, -123456);
	cql_values_add_bigint(v, INT64_MIN + 5);
	cql_values_add_bool(v, true);
	cql_values_add_timestamp(v, 1700000000123LL);
	cql_values_add_uuid(v, uuid1);
	cql_values_add_uuid(v, tuuid);
	cql_values_add_text(v, "grüße, \xe2\x9c\x89");
	cql_values_add_blob(v, "\0\1\2\xff", 4);
	cql_values_begin_collection(v, CQL_TYPE_LIST);
	cql_values_add_text(v, "b");
	cql_values_add_text(v, "a");
	cql_values_add_text(v, "b");
	cql_values_end_collection(v);
	cql_values_begin_collection(v, CQL_TYPE_SET);
	cql_values_add_uuid(v, tuuid2);
	cql_values_add_uuid(v, tuuid);
	cql_values_end_collection(v);
	cql_values_begin_collection(v, CQL_TYPE_MAP);
	cql_values_add_text(v, "one");
	cql_values_add_bigint(v, 1);
	cql_values_add_text(v, "two");
	cql_values_add_bigint(v, 2);
	cql_values_end_collection(v);
	cql_values_begin_collection(v, CQL_TYPE_SET);
	cql_values_add_bigint(v, 7);
	cql_values_end_collection(v);
}

static void check_all_types(struct cql_result *r)
{
	int32_t i;
	int64_t b;
	bool f;
	uint8_t u[16];
	struct cql_slice v;
	struct cql_collection c;

	CHECK(cql_result_next_row(r));
	CHECK_EQ(cql_result_get_int(r, 1, &i), 1);
	CHECK_EQ(i, -123456);
	CHECK_EQ(cql_result_get_bigint(r, 2, &b), 1);
	CHECK(b == INT64_MIN + 5);
	CHECK_EQ(cql_result_get_bool(r, 3, &f), 1);
	CHECK(f);
	CHECK_EQ(cql_result_get_timestamp(r, 4, &b), 1);
	CHECK_EQ(b, 1700000000123LL);
	CHECK_EQ(cql_result_get_uuid(r, 5, u), 1);
	CHECK(memcmp(u, uuid1, 16) == 0);
	CHECK_EQ(cql_result_column_type(r, 5), CQL_TYPE_UUID);
	CHECK_EQ(cql_result_get_uuid(r, 6, u), 1);
	CHECK(memcmp(u, tuuid, 16) == 0);
	CHECK_EQ(cql_result_column_type(r, 6), CQL_TYPE_TIMEUUID);
	CHECK_EQ(cql_result_get_text(r, 7, &v), 1);
	CHECK(v.len == strlen("grüße, \xe2\x9c\x89") &&
	      memcmp(v.data, "grüße, \xe2\x9c\x89", v.len) == 0);
	CHECK_EQ(cql_result_get_blob(r, 8, &v), 1);
	CHECK(v.len == 4 && memcmp(v.data, "\0\1\2\xff", 4) == 0);
	/* list keeps order and duplicates */
	CHECK_EQ(cql_result_get_collection(r, 9, &c), 1);
	CHECK_EQ(cql_collection_size(&c), 3);
	const char *expect_list[] = { "b", "a", "b" };
	for (int k = 0; k < 3; k++) {
		CHECK_EQ(cql_collection_next(&c, &v), 1);
		CHECK(v.len == 1 && v.data[0] == expect_list[k][0]);
	}
	CHECK_EQ(cql_collection_next(&c, &v), 0);
	/* set<timeuuid>: two distinct elements */
	CHECK_EQ(cql_result_get_collection(r, 10, &c), 1);
	CHECK_EQ(cql_collection_size(&c), 2);
	/* map<text,bigint>, sorted by key */
	CHECK_EQ(cql_result_get_collection(r, 11, &c), 1);
	CHECK_EQ(cql_collection_size(&c), 2);
	CHECK_EQ(cql_collection_next(&c, &v), 1);
	CHECK(v.len == 3 && memcmp(v.data, "one", 3) == 0);
	CHECK_EQ(cql_collection_next(&c, &v), 1);
	CHECK_EQ(cql_decode_bigint(v, &b), 0);
	CHECK_EQ(b, 1);
	CHECK_EQ(cql_collection_next(&c, &v), 1);
	CHECK_EQ(cql_collection_next(&c, &v), 1);
	CHECK_EQ(cql_decode_bigint(v, &b), 0);
	CHECK_EQ(b, 2);
	CHECK_EQ(cql_result_get_collection(r, 12, &c), 1);
	CHECK_EQ(cql_collection_next(&c, &v), 1);
	CHECK_EQ(cql_decode_bigint(v, &b), 0);
	CHECK_EQ(b, 7);
}

static void scenario_types(void)
{
	struct cql_session *s = connect_dc("dc1");
	keyspace(s);
	q(s, "DROP TABLE IF EXISTS cqltest.types");
	struct cql_result *r = q_opts(s, "CREATE TABLE cqltest.types (k int PRIMARY KEY, i int, "
				      "b bigint, f boolean, ts timestamp, u uuid, tu timeuuid, "
				      "t text, x blob, l list<text>, st set<timeuuid>, "
				      "m map<text, bigint>, sb set<bigint>)", NULL, NULL);
	CHECK_EQ(cql_result_kind(r), CQL_RESULT_SCHEMA_CHANGE);
	CHECK(strcmp(cql_result_change_type(r), "CREATED") == 0);
	CHECK(strcmp(cql_result_table(r), "types") == 0);
	CHECK(cql_result_schema_agreed(r));
	cql_result_free(&r);

	const char *ins = "INSERT INTO cqltest.types (k, i, b, f, ts, u, tu, t, x, l, st, m, sb) "
		"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
	const char *sel = "SELECT k, i, b, f, ts, u, tu, t, x, l, st, m, sb FROM cqltest.types "
		"WHERE k = ?";
	struct cql_values *v = cql_values_create();
	/* simple statement with bound values */
	bind_all_types(v, 1);
	r = q_opts(s, ins, v, NULL);
	CHECK_EQ(cql_result_kind(r), CQL_RESULT_VOID);
	cql_result_free(&r);
	/* prepared statement */
	struct cql_prepared *pi = prep(s, ins), *ps = prep(s, sel);
	CHECK_EQ(cql_prepared_param_count(pi), 13);
	CHECK_EQ(cql_prepared_param_type(pi, 6), CQL_TYPE_TIMEUUID);
	CHECK_EQ(cql_prepared_param_type(pi, 11), CQL_TYPE_MAP);
	CHECK(prep(s, ins) == pi);
	cql_values_clear(v);
	bind_all_types(v, 2);
	r = ex(s, pi, v, NULL);
	cql_result_free(&r);
	for (int32_t k = 1; k <= 2; k++) {
		cql_values_clear(v);
		cql_values_add_int(v, k);
		r = ex(s, ps, v, NULL);
		CHECK_EQ(cql_result_row_count(r), 1);
		check_all_types(r);
		cql_result_free(&r);
	}
	/* nulls, empty values and unset */
	cql_values_clear(v);
	cql_values_add_int(v, 3);
	for (int c = 0; c < 5; c++)
		cql_values_add_null(v);
	cql_values_add_unset(v);
	cql_values_add_text(v, "");
	cql_values_add_blob(v, "", 0);
	for (int c = 0; c < 4; c++)
		cql_values_add_null(v);
	r = ex(s, pi, v, NULL);
	cql_result_free(&r);
	cql_values_clear(v);
	cql_values_add_int(v, 3);
	r = ex(s, ps, v, NULL);
	CHECK(cql_result_next_row(r));
	int32_t i;
	struct cql_slice sl;
	CHECK_EQ(cql_result_get_int(r, 1, &i), 0);
	CHECK_EQ(cql_result_get_uuid(r, 5, (uint8_t[16]){ 0 }), 0);
	CHECK_EQ(cql_result_get_uuid(r, 6, (uint8_t[16]){ 0 }), 0);
	CHECK_EQ(cql_result_get_text(r, 7, &sl), 1);
	CHECK_EQ(sl.len, 0);
	CHECK_EQ(cql_result_get_blob(r, 8, &sl), 1);
	CHECK_EQ(sl.len, 0);
	CHECK_EQ(cql_result_get_raw(r, 9, &sl), 0);
	cql_result_free(&r);
	/* wrong number of values is a client error, not a server round trip */
	struct cql_error err;
	cql_values_clear(v);
	CHECK(cql_execute(s, ps, v, NULL, &r, &err) < 0);
	CHECK_EQ(err.kind, CQL_ERR_CLIENT);
	/* a timeuuid column rejects a version-4 UUID */
	cql_values_clear(v);
	bind_all_types(v, 4);
	struct cql_values *bad = cql_values_create();
	cql_values_add_int(bad, 4);
	cql_values_add_uuid(bad, uuid1);
	CHECK(cql_query(s, "INSERT INTO cqltest.types (k, tu) VALUES (?, ?)", bad, NULL, &r,
			&err) < 0);
	CHECK_EQ(err.kind, CQL_ERR_INVALID);
	printf("invalid: %s\n", err.message);
	cql_values_free(&bad);
	cql_values_free(&v);
	cql_session_destroy(&s);
}

static void scenario_paging(void)
{
	struct cql_session *s = connect_dc("dc1");
	keyspace(s);
	q(s, "DROP TABLE IF EXISTS cqltest.paging");
	q(s, "CREATE TABLE cqltest.paging (p int, c int, v text, PRIMARY KEY (p, c))");
	struct cql_prepared *ins = prep(s, "INSERT INTO cqltest.paging (p, c, v) VALUES (?, ?, ?)");
	struct cql_values *v = cql_values_create();
	const int total = 10000;
	/* unlogged batches of one partition each: 100 rows per request */
	for (int b = 0; b < total / 100; b++) {
		struct cql_batch *batch = cql_batch_create(CQL_BATCH_UNLOGGED);
		for (int c = 0; c < 100; c++) {
			cql_values_clear(v);
			cql_values_add_int(v, b % 10);
			cql_values_add_int(v, b * 100 + c);
			cql_values_add_text(v, "row");
			cql_batch_add_prepared(batch, ins, v);
		}
		struct cql_error err;
		struct cql_query_opts o;
		cql_query_opts_init(&o);
		o.consistency = CQL_ONE;
		o.idempotent = true;
		if (cql_batch_execute(s, batch, &o, &err) < 0)
			FAIL("batch: %s", err.message);
		cql_batch_free(&batch);
	}
	/* page through it, prepared and unprepared */
	for (int mode = 0; mode < 2; mode++) {
		static char seen[10000];
		struct cql_prepared *sel = prep(s, "SELECT c FROM cqltest.paging");
		struct cql_query_opts o;
		cql_query_opts_init(&o);
		o.consistency = CQL_ONE;
		o.page_size = mode == 0 ? 1000 : 777;
		memset(seen, 0, sizeof(seen));
		int rows = 0, pages = 0;
		void *state = NULL;
		for (;;) {
			struct cql_result *r = mode == 0 ? ex(s, sel, NULL, &o) :
				q_opts(s, "SELECT c FROM cqltest.paging", NULL, &o);
			pages++;
			CHECK(cql_result_row_count(r) <= (uint32_t)o.page_size);
			while (cql_result_next_row(r)) {
				int32_t c;
				CHECK_EQ(cql_result_get_int(r, 0, &c), 1);
				CHECK(c >= 0 && c < total && !seen[c]);
				seen[c] = 1;
				rows++;
			}
			const void *st;
			size_t len;
			bool more = cql_result_paging_state(r, &st, &len);
			free(state);
			state = NULL;
			if (more) {
				state = malloc(len);
				memcpy(state, st, len);
				o.paging_state = state;
				o.paging_state_len = len;
			}
			cql_result_free(&r);
			if (!more)
				break;
			CHECK(pages < 100);
		}
		CHECK_EQ(rows, total);
		printf("paging mode %d: %d rows in %d pages\n", mode, rows, pages);
		CHECK(pages >= total / o.page_size);
	}
	cql_values_free(&v);
	cql_session_destroy(&s);
}

static void scenario_prepared(void)
{
	struct cql_session *s = connect_dc("dc1");
	struct cql_values *v = cql_values_create();
	struct cql_stats st;
	keyspace(s);
	q(s, "DROP TABLE IF EXISTS cqltest.prep");
	q(s, "CREATE TABLE cqltest.prep (k int PRIMARY KEY, v text)");
	struct cql_prepared *ins = prep(s, "INSERT INTO cqltest.prep (k, v) VALUES (?, ?)");
	struct cql_prepared *sel = prep(s, "SELECT * FROM cqltest.prep WHERE k = ?");
	cql_values_add_int(v, 1);
	cql_values_add_text(v, "one");
	cql_result_free((struct cql_result *[]){ ex(s, ins, v, NULL) });
	q(s, "TRUNCATE cqltest.prep");
	/* still prepared after TRUNCATE */
	cql_result_free((struct cql_result *[]){ ex(s, ins, v, NULL) });
	cql_values_clear(v);
	cql_values_add_int(v, 1);
	struct cql_result *r = ex(s, sel, v, NULL);
	CHECK_EQ(cql_result_row_count(r), 1);
	CHECK_EQ(cql_result_column_count(r), 2);
	cql_result_free(&r);
	/* a new column shows up in SELECT * (rows carry their metadata) */
	q(s, "ALTER TABLE cqltest.prep ADD extra bigint");
	r = ex(s, sel, v, NULL);
	CHECK_EQ(cql_result_column_count(r), 3);
	CHECK(cql_result_column_index(r, "extra") >= 0);
	cql_result_free(&r);
	/* drop and re-create: the server forgets the statement -> Unprepared,
	   re-prepared and run again transparently */
	cql_session_stats(s, &st);
	uint64_t before = st.reprepares;
	q(s, "DROP TABLE cqltest.prep");
	q(s, "CREATE TABLE cqltest.prep (k int PRIMARY KEY, v text)");
	cql_values_clear(v);
	cql_values_add_int(v, 2);
	cql_values_add_text(v, "two");
	cql_result_free((struct cql_result *[]){ ex(s, ins, v, NULL) });
	cql_values_clear(v);
	cql_values_add_int(v, 2);
	r = ex(s, sel, v, NULL);
	CHECK_EQ(cql_result_row_count(r), 1);
	cql_result_free(&r);
	cql_session_stats(s, &st);
	printf("reprepares %llu -> %llu\n", (unsigned long long)before,
	       (unsigned long long)st.reprepares);
	CHECK(st.reprepares > before);
	/* re-prepare inside a batch */
	q(s, "DROP TABLE cqltest.prep");
	q(s, "CREATE TABLE cqltest.prep (k int PRIMARY KEY, v text)");
	struct cql_batch *b = cql_batch_create(CQL_BATCH_LOGGED);
	cql_values_clear(v);
	cql_values_add_int(v, 3);
	cql_values_add_text(v, "three");
	cql_batch_add_prepared(b, ins, v);
	struct cql_error err;
	if (cql_batch_execute(s, b, NULL, &err) < 0)
		FAIL("batch after drop: %s", err.message);
	cql_batch_free(&b);
	cql_session_stats(s, &st);
	CHECK(st.reprepares > before + 1);
	cql_values_free(&v);
	cql_session_destroy(&s);
}

static int count_rows(struct cql_session *s, const char *cql)
{
	struct cql_result *r = q_opts(s, cql, NULL, NULL);
	int n = (int)cql_result_row_count(r);
	cql_result_free(&r);
	return n;
}

static void scenario_batch(void)
{
	struct cql_session *s = connect_dc("dc1");
	struct cql_values *v = cql_values_create();
	struct cql_error err;
	keyspace(s);
	q(s, "DROP TABLE IF EXISTS cqltest.batchtbl");
	q(s, "CREATE TABLE cqltest.batchtbl (p int, c int, v text, PRIMARY KEY (p, c))");
	q(s, "DROP TABLE IF EXISTS cqltest.counters");
	q(s, "CREATE TABLE cqltest.counters (k int PRIMARY KEY, n counter)");
	struct cql_prepared *ins = prep(s, "INSERT INTO cqltest.batchtbl (p, c, v) VALUES (?, ?, ?)");

	/* logged, multi-partition, mixing queries and prepared statements */
	struct cql_batch *b = cql_batch_create(CQL_BATCH_LOGGED);
	for (int i = 0; i < 5; i++) {
		cql_values_clear(v);
		cql_values_add_int(v, i);
		cql_values_add_int(v, i);
		cql_values_add_text(v, "logged");
		cql_batch_add_prepared(b, ins, v);
	}
	cql_batch_add_query(b, "INSERT INTO cqltest.batchtbl (p, c, v) VALUES (9, 9, 'literal')", NULL);
	cql_values_clear(v);
	cql_values_add_int(v, 8);
	cql_batch_add_query(b, "DELETE FROM cqltest.batchtbl WHERE p = ?", v);
	if (cql_batch_execute(s, b, NULL, &err) < 0)
		FAIL("logged batch: %s", err.message);
	cql_batch_free(&b);
	CHECK_EQ(count_rows(s, "SELECT * FROM cqltest.batchtbl"), 6);

	b = cql_batch_create(CQL_BATCH_UNLOGGED);
	cql_batch_add_query(b, "DELETE FROM cqltest.batchtbl WHERE p = 9", NULL);
	cql_batch_add_query(b, "DELETE FROM cqltest.batchtbl WHERE p = 0", NULL);
	if (cql_batch_execute(s, b, NULL, &err) < 0)
		FAIL("unlogged batch: %s", err.message);
	cql_batch_free(&b);
	CHECK_EQ(count_rows(s, "SELECT * FROM cqltest.batchtbl"), 4);

	b = cql_batch_create(CQL_BATCH_COUNTER);
	cql_batch_add_query(b, "UPDATE cqltest.counters SET n = n + 2 WHERE k = 1", NULL);
	cql_batch_add_query(b, "UPDATE cqltest.counters SET n = n + 3 WHERE k = 1", NULL);
	if (cql_batch_execute(s, b, NULL, &err) < 0)
		FAIL("counter batch: %s", err.message);
	cql_batch_free(&b);
	struct cql_result *r = q_opts(s, "SELECT n FROM cqltest.counters WHERE k = 1", NULL, NULL);
	int64_t n;
	CHECK(cql_result_next_row(r));
	CHECK_EQ(cql_result_get_bigint(r, 0, &n), 1);
	CHECK_EQ(n, 5);
	cql_result_free(&r);

	/* a DDL statement in a batch is refused by the server */
	b = cql_batch_create(CQL_BATCH_LOGGED);
	cql_batch_add_query(b, "CREATE TABLE cqltest.nope (k int PRIMARY KEY)", NULL);
	CHECK(cql_batch_execute(s, b, NULL, &err) < 0);
	CHECK(err.kind == CQL_ERR_INVALID || err.kind == CQL_ERR_SYNTAX);
	cql_batch_free(&b);
	cql_values_free(&v);
	cql_session_destroy(&s);
}

static void scenario_errors(void)
{
	struct cql_session *s = connect_dc("dc1");
	struct cql_stats st;
	keyspace(s);
	struct cql_error err = q_fail(s, "SELEKT * FROM system.local", NULL);
	CHECK_EQ(err.kind, CQL_ERR_SYNTAX);
	CHECK_EQ(err.code, 0x2000);
	CHECK(strlen(err.message) > 0);
	printf("syntax: %s\n", err.message);
	err = q_fail(s, "SELECT * FROM cqltest.no_such_table", NULL);
	CHECK_EQ(err.kind, CQL_ERR_INVALID);
	printf("invalid: %s\n", err.message);
	err = q_fail(s, "CREATE KEYSPACE cqltest WITH replication = "
		     "{'class': 'SimpleStrategy', 'replication_factor': 1}", NULL);
	CHECK_EQ(err.kind, CQL_ERR_ALREADY_EXISTS);
	struct cql_prepared *p;
	CHECK((p = cql_prepare(s, "SELECT nope FROM system.local", &err)) == NULL);
	CHECK_EQ(err.kind, CQL_ERR_INVALID);
	CHECK(!cql_error_is_temporary(&err));
	/* the session still works after errors */
	CHECK_EQ(count_rows(s, "SELECT key FROM system.local"), 1);
	cql_session_stats(s, &st);
	CHECK(st.errors >= 3);
	CHECK_EQ(st.retries, 0);
	cql_session_destroy(&s);
}

static void scenario_unavailable(void)
{
	struct cql_session *s = connect_dc("dc1");
	q(s, "CREATE KEYSPACE IF NOT EXISTS cqlrf2 WITH replication = "
	  "{'class': 'NetworkTopologyStrategy', 'dc1': 2}");
	q(s, "CREATE TABLE IF NOT EXISTS cqlrf2.t (k int PRIMARY KEY, v int)");
	struct cql_query_opts o;
	cql_query_opts_init(&o);
	o.consistency = CQL_QUORUM;
	o.idempotent = true;
	struct cql_error err = q_fail(s, "INSERT INTO cqlrf2.t (k, v) VALUES (1, 1)", &o);
	CHECK_EQ(err.kind, CQL_ERR_UNAVAILABLE);
	CHECK_EQ(err.consistency, CQL_QUORUM);
	CHECK_EQ(err.required, 2);
	CHECK_EQ(err.received, 1);
	CHECK(cql_error_is_temporary(&err));
	CHECK(!cql_error_is_uncertain(&err));
	printf("unavailable: %s (required %d alive %d)\n", err.message, err.required, err.received);
	err = q_fail(s, "SELECT * FROM cqlrf2.t WHERE k = 1", &o);
	CHECK_EQ(err.kind, CQL_ERR_UNAVAILABLE);
	o.consistency = CQL_ONE;
	cql_result_free((struct cql_result *[]){ q_opts(s, "INSERT INTO cqlrf2.t (k, v) VALUES (1, 1)",
							NULL, &o) });
	cql_session_destroy(&s);
}

static void scenario_lwt_stats(void)
{
	struct cql_session *s = connect_dc("dc1");
	struct cql_stats st;
	keyspace(s);
	q(s, "CREATE TABLE IF NOT EXISTS cqltest.lwt (k int PRIMARY KEY, v int)");
	q(s, "TRUNCATE cqltest.lwt");
	q(s, "INSERT INTO cqltest.lwt (k, v) VALUES (0, 0)");
	struct cql_prepared *sel = prep(s, "SELECT v FROM cqltest.lwt WHERE k = 0");
	cql_result_free((struct cql_result *[]){ ex(s, sel, NULL, NULL) });
	cql_session_stats(s, &st);
	CHECK_EQ(st.conditional_statements, 0);
	CHECK_EQ(st.serial_reads, 0);

	struct cql_result *r = q_opts(s, "INSERT INTO cqltest.lwt (k, v) VALUES (1, 1) IF NOT EXISTS",
				      NULL, NULL);
	CHECK_EQ(cql_result_applied(r), 1);
	cql_result_free(&r);
	r = q_opts(s, "INSERT INTO cqltest.lwt (k, v) VALUES (1, 2) IF NOT EXISTS", NULL, NULL);
	CHECK_EQ(cql_result_applied(r), 0);
	cql_result_free(&r);
	struct cql_prepared *cas = prep(s, "UPDATE cqltest.lwt SET v = ? WHERE k = 1 IF v = ?");
	CHECK(cql_prepared_is_conditional(cas));
	struct cql_values *v = cql_values_create();
	cql_values_add_int(v, 5);
	cql_values_add_int(v, 1);
	struct cql_query_opts o;
	cql_query_opts_init(&o);
	o.serial_consistency = CQL_LOCAL_SERIAL;
	r = ex(s, cas, v, &o);
	CHECK_EQ(cql_result_applied(r), 1);
	cql_result_free(&r);
	o.consistency = CQL_LOCAL_SERIAL;
	r = ex(s, sel, NULL, &o);
	cql_result_free(&r);
	o.consistency = CQL_SERIAL;
	r = q_opts(s, "SELECT v FROM cqltest.lwt WHERE k = 1", NULL, &o);
	int32_t x;
	CHECK(cql_result_next_row(r));
	CHECK_EQ(cql_result_get_int(r, 0, &x), 1);
	CHECK_EQ(x, 5);
	cql_result_free(&r);
	cql_session_stats(s, &st);
	CHECK_EQ(st.conditional_statements, 3);
	CHECK_EQ(st.serial_reads, 2);
	CHECK_EQ(st.by_consistency[CQL_SERIAL], 1);
	CHECK_EQ(st.by_consistency[CQL_LOCAL_SERIAL], 1);
	uint64_t by_level = 0;
	for (unsigned i = 0; i < CQL_CONSISTENCY_COUNT; i++)
		by_level += st.by_consistency[i];
	CHECK_EQ(by_level, st.requests);
	/* DDL IF NOT EXISTS is no LWT */
	q(s, "CREATE TABLE IF NOT EXISTS cqltest.lwt (k int PRIMARY KEY, v int)");
	cql_session_stats(s, &st);
	CHECK_EQ(st.conditional_statements, 3);
	cql_values_free(&v);
	cql_session_destroy(&s);
}

struct worker {
	struct cql_session *s;
	struct cql_prepared *ins, *sel;
	int id, n, failures;
};

static void *worker_run(void *ctx)
{
	struct worker *w = ctx;
	struct cql_values *v = cql_values_create();
	for (int i = 0; i < w->n; i++) {
		struct cql_result *r;
		struct cql_error err;
		int32_t key = w->id * 100000 + i, got;
		cql_values_clear(v);
		cql_values_add_int(v, key);
		cql_values_add_int(v, key * 2);
		if (cql_execute(w->s, w->ins, v, NULL, &r, &err) < 0) {
			w->failures++;
			continue;
		}
		cql_result_free(&r);
		cql_values_clear(v);
		cql_values_add_int(v, key);
		if (cql_execute(w->s, w->sel, v, NULL, &r, &err) < 0 || !cql_result_next_row(r) ||
		    cql_result_get_int(r, 0, &got) != 1 || got != key * 2)
			w->failures++;
		cql_result_free(&r);
	}
	cql_values_free(&v);
	return NULL;
}

static void scenario_concurrency(void)
{
	struct cql_session *s = connect_dc("dc1");
	struct worker w[8];
	pthread_t t[8];
	keyspace(s);
	q(s, "CREATE TABLE IF NOT EXISTS cqltest.conc (k int PRIMARY KEY, v int)");
	struct cql_prepared *ins = prep(s, "INSERT INTO cqltest.conc (k, v) VALUES (?, ?)");
	struct cql_prepared *sel = prep(s, "SELECT v FROM cqltest.conc WHERE k = ?");
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 8; i++) {
		w[i] = (struct worker){ .s = s, .ins = ins, .sel = sel, .id = i, .n = 500 };
		pthread_create(&t[i], NULL, worker_run, &w[i]);
	}
	int failures = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		failures += w[i].failures;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK_EQ(failures, 0);
	struct cql_stats st;
	cql_session_stats(s, &st);
	printf("8000 requests from 8 threads in %.2fs, %llu connections\n",
	       (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
	       (unsigned long long)st.connections_opened);
	CHECK(st.requests >= 8000);
	CHECK_EQ(st.errors, 0);
	cql_session_destroy(&s);
}

static void scenario_timeout(void)
{
	struct cql_session *s = connect_dc("dc1");
	struct cql_query_opts o;
	struct cql_stats st;
	/* needs the 10,000 rows of the paging scenario; the pool is open first,
	   so the deadline passes while the response is on its way */
	CHECK_EQ(count_rows(s, "SELECT key FROM system.local"), 1);
	cql_query_opts_init(&o);
	o.consistency = CQL_ONE;
	o.timeout_ms = 1;
	struct cql_error err = q_fail(s, "SELECT * FROM cqltest.paging", &o);
	CHECK_EQ(err.kind, CQL_ERR_TIMEOUT);
	CHECK(cql_error_is_temporary(&err));
	cql_session_stats(s, &st);
	CHECK(st.timeouts >= 1);
	/* the late response is absorbed; the connection keeps working */
	for (int i = 0; i < 20; i++)
		CHECK_EQ(count_rows(s, "SELECT key FROM system.local"), 1);
	cql_session_destroy(&s);
}

/* Interactive: the test kills the node while requests run, then restarts it. */
static void scenario_node_stop(void)
{
	struct cql_session *s = connect_dc("dc1");
	char line[64];
	struct cql_query_opts o;
	keyspace(s);
	q(s, "CREATE TABLE IF NOT EXISTS cqltest.stop (k int PRIMARY KEY, v int)");
	struct cql_prepared *ins = prep(s, "INSERT INTO cqltest.stop (k, v) VALUES (?, ?)");
	struct cql_values *v = cql_values_create();
	cql_query_opts_init(&o);
	o.timeout_ms = 5000;
	printf("READY\n");
	fflush(stdout);
	/* write until the node goes away under us */
	int ok = 0, i;
	struct cql_error err = { 0 };
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < 1000000; i++) {
		struct cql_result *r;
		cql_values_clear(v);
		cql_values_add_int(v, i);
		cql_values_add_int(v, i);
		if (cql_execute(s, ins, v, &o, &r, &err) < 0)
			break;
		cql_result_free(&r);
		ok++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("after %d writes: %s (%s), sent=%d uncertain=%d\n", ok, cql_error_kind_name(err.kind),
	       err.message, err.sent, cql_error_is_uncertain(&err));
	CHECK(ok > 0);
	CHECK(err.kind == CQL_ERR_CONNECTION || err.kind == CQL_ERR_TIMEOUT);
	CHECK(cql_error_is_temporary(&err));
	/* further calls fail fast while the node is down */
	struct cql_result *r;
	int64_t before = (int64_t)time(NULL);
	CHECK(cql_execute(s, ins, v, &o, &r, &err) < 0);
	CHECK_EQ(err.kind, CQL_ERR_CONNECTION);
	CHECK(!err.sent);
	CHECK((int64_t)time(NULL) - before <= 6);
	printf("DOWN\n");
	fflush(stdout);
	if (fgets(line, sizeof(line), stdin) == NULL)
		FAIL("no restart line");
	/* the same session reconnects by itself (backoff) */
	int tries = 0;
	for (;;) {
		if (cql_query(s, "SELECT key FROM system.local", NULL, &o, &r, &err) == 0)
			break;
		if (++tries % 50 == 0)
			printf("still failing: %s: %s\n", cql_error_kind_name(err.kind), err.message);
		CHECK(tries < 600);
		usleep(100 * 1000);
	}
	cql_result_free(&r);
	/* SIGKILL loses the last seconds of commit log (the nodes run with
	   skip_sync), the new table included: make sure it is there, then the
	   prepared statement runs again on the restarted node */
	keyspace(s);
	q(s, "CREATE TABLE IF NOT EXISTS cqltest.stop (k int PRIMARY KEY, v int)");
	cql_values_clear(v);
	cql_values_add_int(v, -1);
	cql_values_add_int(v, -1);
	r = ex(s, ins, v, &o);
	cql_result_free(&r);
	struct cql_stats st;
	cql_session_stats(s, &st);
	printf("recovered after %d failed tries, %llu connections opened\n", tries,
	       (unsigned long long)st.connections_opened);
	CHECK(st.connections_opened >= 2);
	cql_values_free(&v);
	cql_session_destroy(&s);
}

/* Two DCs: every request of a session goes to a coordinator of its DC. */
static void scenario_routing(const char *dc)
{
	struct cql_session *s = connect_dc(dc);
	char hosts[4][128];
	unsigned n = cql_session_hosts(s, hosts, 4);
	CHECK_EQ(n, 2);
	for (unsigned i = 0; i < n; i++)
		printf("host %s\n", hosts[i]);
	for (int i = 0; i < 200; i++) {
		struct cql_result *r = q_opts(s, "SELECT data_center FROM system.local", NULL, NULL);
		struct cql_slice v;
		CHECK(cql_result_next_row(r));
		CHECK_EQ(cql_result_get_text(r, 0, &v), 1);
		if (v.len != strlen(dc) || memcmp(v.data, dc, v.len) != 0)
			FAIL("request %d answered by a node of %.*s", i, (int)v.len, v.data);
		cql_result_free(&r);
	}
	cql_session_destroy(&s);
}

static void scenario_dc_setup(void)
{
	struct cql_session *s = connect_dc("dc1");
	struct cql_result *r = q_opts(s, "CREATE KEYSPACE IF NOT EXISTS mail2 WITH replication = "
				      "{'class': 'NetworkTopologyStrategy', 'dc1': 1, 'dc2': 1}",
				      NULL, NULL);
	cql_result_free(&r);
	r = q_opts(s, "CREATE TABLE IF NOT EXISTS mail2.t (k int PRIMARY KEY, v int)", NULL, NULL);
	if (cql_result_kind(r) == CQL_RESULT_SCHEMA_CHANGE)
		CHECK(cql_result_schema_agreed(r));
	cql_result_free(&r);
	struct cql_query_opts o;
	cql_query_opts_init(&o);
	o.consistency = CQL_QUORUM;
	cql_result_free((struct cql_result *[]){ q_opts(s, "INSERT INTO mail2.t (k, v) VALUES (1, 1)",
							NULL, &o) });
	cql_session_destroy(&s);
	/* the other DC sees the schema and the row */
	s = connect_dc("dc2");
	o.consistency = CQL_LOCAL_ONE;
	r = q_opts(s, "SELECT v FROM mail2.t WHERE k = 1", NULL, &o);
	CHECK_EQ(cql_result_row_count(r), 1);
	cql_result_free(&r);
	cql_session_destroy(&s);
}

static void scenario_dc_down(void)
{
	struct cql_session *s = connect_dc("dc1");
	struct cql_query_opts o;
	cql_query_opts_init(&o);
	o.consistency = CQL_LOCAL_QUORUM;
	cql_result_free((struct cql_result *[]){ q_opts(s, "INSERT INTO mail2.t (k, v) VALUES (2, 2)",
							NULL, &o) });
	struct cql_result *r = q_opts(s, "SELECT v FROM mail2.t WHERE k = 2", NULL, &o);
	CHECK_EQ(cql_result_row_count(r), 1);
	cql_result_free(&r);
	/* QUORUM needs both DCs: a typed error, Unavailable once node2 is
	   known to be down (a server-side timeout may come first) */
	o.consistency = CQL_QUORUM;
	o.idempotent = true;
	enum cql_error_kind kind = CQL_ERR_NONE;
	struct cql_error err;
	for (int i = 0; i < 30 && kind != CQL_ERR_UNAVAILABLE; i++) {
		err = q_fail(s, "INSERT INTO mail2.t (k, v) VALUES (3, 3)", &o);
		kind = err.kind;
		printf("QUORUM write: %s: %s\n", cql_error_kind_name(kind), err.message);
		CHECK(kind == CQL_ERR_UNAVAILABLE || kind == CQL_ERR_WRITE_TIMEOUT);
		CHECK(cql_error_is_temporary(&err));
		if (kind != CQL_ERR_UNAVAILABLE)
			sleep(1);
	}
	CHECK_EQ(kind, CQL_ERR_UNAVAILABLE);
	CHECK_EQ(err.consistency, CQL_QUORUM);
	CHECK_EQ(err.required, 2);
	CHECK_EQ(err.received, 1);
	/* LOCAL_QUORUM still works */
	o.consistency = CQL_LOCAL_QUORUM;
	cql_result_free((struct cql_result *[]){ q_opts(s, "INSERT INTO mail2.t (k, v) VALUES (4, 4)",
							NULL, &o) });
	r = q_opts(s, "SELECT k FROM mail2.t", NULL, &o);
	CHECK(cql_result_row_count(r) >= 3);
	cql_result_free(&r);
	cql_session_destroy(&s);
}

static struct cql_session *connect_with(const struct cql_settings *set, struct cql_error *err)
{
	struct cql_session *s = cql_session_create(set, err);
	if (s != NULL) {
		CHECK_EQ(count_rows(s, "SELECT key FROM system.local"), 1);
		CHECK_EQ(err->kind, CQL_ERR_NONE);
	}
	return s;
}

/* A node with PasswordAuthenticator (user cassandra/cassandra). */
static void scenario_auth(void)
{
	struct cql_settings set;
	struct cql_error err;
	struct cql_session *s;

	cql_settings_init(&set);
	set.contact_points = host;
	set.username = "cassandra";
	set.password = "cassandra";
	s = connect_with(&set, &err);
	if (s == NULL)
		FAIL("login: %s: %s", cql_error_kind_name(err.kind), err.message);
	cql_session_destroy(&s);
	set.password = "wrong";
	CHECK((s = connect_with(&set, &err)) == NULL);
	printf("wrong password: %s: %s\n", cql_error_kind_name(err.kind), err.message);
	CHECK_EQ(err.kind, CQL_ERR_BAD_CREDENTIALS);
	set.username = set.password = NULL;
	CHECK((s = connect_with(&set, &err)) == NULL);
	printf("no credentials: %s: %s\n", cql_error_kind_name(err.kind), err.message);
	CHECK_EQ(err.kind, CQL_ERR_BAD_CREDENTIALS);
}

/* The nodes accept TLS (optional) with a certificate signed by ca. */
static void scenario_tls(const char *ca, const char *wrong_ca)
{
	struct cql_settings set;
	struct cql_error err;
	struct cql_session *s;

	cql_settings_init(&set);
	set.contact_points = host;
	set.tls = true;
	set.tls_ca_file = ca;
	s = connect_with(&set, &err);
	if (s == NULL)
		FAIL("TLS, verified: %s: %s", cql_error_kind_name(err.kind), err.message);
	/* many requests through one TLS connection, from several threads */
	struct worker w[4];
	pthread_t t[4];
	keyspace(s);
	q(s, "CREATE TABLE IF NOT EXISTS cqltest.tls (k int PRIMARY KEY, v int)");
	struct cql_prepared *ins = prep(s, "INSERT INTO cqltest.tls (k, v) VALUES (?, ?)");
	struct cql_prepared *sel = prep(s, "SELECT v FROM cqltest.tls WHERE k = ?");
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ .s = s, .ins = ins, .sel = sel, .id = i, .n = 200 };
		pthread_create(&t[i], NULL, worker_run, &w[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(w[i].failures, 0);
	}
	cql_session_destroy(&s);
	set.tls_ca_file = NULL;	/* encrypted, not verified */
	s = connect_with(&set, &err);
	if (s == NULL)
		FAIL("TLS, unverified: %s: %s", cql_error_kind_name(err.kind), err.message);
	cql_session_destroy(&s);
	set.tls_ca_file = wrong_ca;
	CHECK((s = connect_with(&set, &err)) == NULL);
	printf("wrong CA: %s: %s\n", cql_error_kind_name(err.kind), err.message);
	CHECK_EQ(err.kind, CQL_ERR_CONNECTION);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: cql-itest HOST SCENARIO [DC | CA WRONG_CA]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	host = argv[1];
	const char *sc = argv[2];
	if (strcmp(sc, "basic") == 0)
		scenario_basic();
	else if (strcmp(sc, "types") == 0)
		scenario_types();
	else if (strcmp(sc, "paging") == 0)
		scenario_paging();
	else if (strcmp(sc, "prepared") == 0)
		scenario_prepared();
	else if (strcmp(sc, "batch") == 0)
		scenario_batch();
	else if (strcmp(sc, "errors") == 0)
		scenario_errors();
	else if (strcmp(sc, "unavailable") == 0)
		scenario_unavailable();
	else if (strcmp(sc, "lwt-stats") == 0)
		scenario_lwt_stats();
	else if (strcmp(sc, "concurrency") == 0)
		scenario_concurrency();
	else if (strcmp(sc, "timeout") == 0)
		scenario_timeout();
	else if (strcmp(sc, "node-stop") == 0)
		scenario_node_stop();
	else if (strcmp(sc, "routing") == 0 && argc > 3)
		scenario_routing(argv[3]);
	else if (strcmp(sc, "dc-setup") == 0)
		scenario_dc_setup();
	else if (strcmp(sc, "dc-down") == 0)
		scenario_dc_down();
	else if (strcmp(sc, "auth") == 0)
		scenario_auth();
	else if (strcmp(sc, "tls") == 0 && argc > 4)
		scenario_tls(argv[3], argv[4]);
	else {
		fprintf(stderr, "unknown scenario %s\n", sc);
		return 2;
	}
	printf("OK %s\n", sc);
	return 0;
}
