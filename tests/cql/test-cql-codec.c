/*
 * Unit tests of lib-cql's codec: primitives, every request message, every
 * RESULT kind and ERROR body, events, values and collections, the frame
 * splitter fed at every split point, and malformed or truncated input.
 */
#include "cql-private.h"
#include "cql-test-frames.h"
#include "../unit/test.h"

#include <stdlib.h>

/* Splits a byte stream into frames, feeding it in chunks of at most step
   bytes; returns the number of frames, -1 on a parser error. */
static int split_frames(const uint8_t *data, size_t len, size_t step,
			struct cql_frame *frames, int max)
{
	struct cql_frame_parser parser;
	int n = 0;

	cql_frame_parser_init(&parser, 1 << 20);
	for (size_t pos = 0; pos < len; ) {
		size_t chunk = len - pos < step ? len - pos : step, off = 0;
		while (off < chunk) {
			struct cql_frame f;
			const char *error;
			size_t used;
			int ret = cql_frame_parser_feed(&parser, data + pos + off, chunk - off,
							&used, &f, &error);
			off += used;
			if (ret < 0) {
				cql_frame_parser_deinit(&parser);
				return -1;
			}
			if (ret > 0) {
				if (n < max)
					frames[n] = f;
				else
					cql_frame_free(&f);
				n++;
			}
			if (ret == 0 && used == 0)
				break;
		}
		pos += chunk;
	}
	cql_frame_parser_deinit(&parser);
	return n;
}

static void check_typed_rows(struct cql_result *r, bool paging)
{
	static const uint8_t uuid[16] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x1d, 0xef,
					  0x80, 1, 2, 3, 4, 5, 6, 7 };
	int32_t i;
	int64_t b;
	bool f;
	uint8_t u[16];
	struct cql_slice s;
	struct cql_collection coll;
	const void *state;
	size_t state_len;

	CHECK_INT(cql_result_kind(r), CQL_RESULT_ROWS);
	CHECK_INT(cql_result_column_count(r), 10);
	CHECK_INT(cql_result_row_count(r), 2);
	CHECK_STR(cql_result_column_name(r, 3), "ts");
	CHECK_INT(cql_result_column_index(r, "m"), 9);
	CHECK_INT(cql_result_column_index(r, "nope"), -1);
	CHECK_INT(cql_result_column_type(r, 7), CQL_TYPE_LIST);
	CHECK_INT(cql_result_paging_state(r, &state, &state_len), paging);
	if (paging)
		CHECK_MEM(state, state_len, "PAGE", 4);

	CHECK(cql_result_next_row(r));
	CHECK_INT(cql_result_get_int(r, 0, &i), 1);
	CHECK_INT(i, -2);
	CHECK_INT(cql_result_get_bigint(r, 1, &b), 1);
	CHECK(b == (int64_t)0x8000000000000001ULL);
	CHECK_INT(cql_result_get_bool(r, 2, &f), 1);
	CHECK(f);
	CHECK_INT(cql_result_get_timestamp(r, 3, &b), 1);
	CHECK_INT(b, 0x18cbabe0000LL);
	CHECK_INT(cql_result_get_uuid(r, 4, u), 1);
	CHECK_MEM(u, 16, uuid, 16);
	CHECK_INT(cql_result_get_text(r, 5, &s), 1);
	CHECK_MEM(s.data, s.len, "h\xc3\xa9llo", 6);
	CHECK_INT(cql_result_get_blob(r, 6, &s), 1);
	CHECK_MEM(s.data, s.len, "\0\1\2", 3);
	/* wrong types */
	CHECK_INT(cql_result_get_int(r, 1, &i), -1);
	CHECK_INT(cql_result_get_text(r, 6, &s), -1);
	CHECK_INT(cql_result_get_uuid(r, 5, u), -1);
	CHECK_INT(cql_result_get_int(r, 99, &i), -1);

	CHECK_INT(cql_result_get_collection(r, 7, &coll), 1);
	CHECK_INT(cql_collection_size(&coll), 2);
	CHECK_INT(cql_collection_next(&coll, &s), 1);
	CHECK_MEM(s.data, s.len, "a", 1);
	CHECK_INT(cql_collection_type(&coll), CQL_TYPE_VARCHAR);
	CHECK_INT(cql_collection_next(&coll, &s), 1);
	CHECK_MEM(s.data, s.len, "bc", 2);
	CHECK_INT(cql_collection_next(&coll, &s), 0);
	CHECK_INT(cql_result_get_collection(r, 8, &coll), 1);
	CHECK_INT(cql_collection_next(&coll, &s), 1);
	CHECK_INT(cql_decode_uuid(s, u), 0);
	CHECK_MEM(u, 16, uuid, 16);
	CHECK_INT(cql_result_get_collection(r, 9, &coll), 1);
	CHECK_INT(cql_collection_size(&coll), 1);
	CHECK_INT(cql_collection_next(&coll, &s), 1);
	CHECK_INT(cql_collection_type(&coll), CQL_TYPE_VARCHAR);
	CHECK_MEM(s.data, s.len, "k", 1);
	CHECK_INT(cql_collection_next(&coll, &s), 1);
	CHECK_INT(cql_collection_type(&coll), CQL_TYPE_BIGINT);
	CHECK_INT(cql_decode_bigint(s, &b), 0);
	CHECK_INT(b, 42);
	CHECK_INT(cql_collection_next(&coll, &s), 0);
	CHECK_INT(cql_result_get_collection(r, 0, &coll), -1);

	CHECK(cql_result_next_row(r));
	CHECK_INT(cql_result_get_int(r, 0, &i), 0);
	CHECK_INT(cql_result_get_uuid(r, 4, u), 0);
	CHECK_INT(cql_result_get_text(r, 5, &s), 1);
	CHECK_INT(s.len, 0);
	CHECK_INT(cql_result_get_collection(r, 7, &coll), 1);
	CHECK_INT(cql_collection_size(&coll), 0);
	CHECK_INT(cql_collection_next(&coll, &s), 0);
	CHECK_INT(cql_result_get_collection(r, 8, &coll), 0);
	CHECK(!cql_result_next_row(r));
	CHECK_INT(cql_result_get_int(r, 0, &i), -1);
	cql_result_rewind(r);
	CHECK(cql_result_next_row(r));
}

static struct cql_result *decode_one(const struct cql_buf *b, struct cql_error *err)
{
	struct cql_frame frames[1];
	struct cql_result *r = NULL;

	if (split_frames(b->data, b->len, b->len, frames, 1) != 1)
		return NULL;
	if (cql_response_decode(&frames[0], &r, err) < 0)
		r = NULL;
	cql_frame_free(&frames[0]);
	return r;
}

static void test_rows(void)
{
	struct cql_buf b = { 0 };
	struct cql_error err;

	for (int paging = 0; paging < 2; paging++) {
		b.len = 0;
		tf_typed_rows(&b, 7, paging != 0);
		struct cql_result *r = decode_one(&b, &err);
		CHECK(r != NULL);
		if (r != NULL)
			check_typed_rows(r, paging != 0);
		cql_result_free(&r);
		CHECK(r == NULL);
	}
	cql_buf_free(&b);
}

/* Every split point of a stream of several frames gives the same frames. */
static void test_split(void)
{
	struct cql_buf b = { 0 };
	struct cql_frame frames[4];
	struct cql_error err;

	tf_typed_rows(&b, 1, true);
	tf_error(&b, 2, 0x1100, "timeout");
	tf_event(&b, "STATUS_CHANGE", "DOWN");
	size_t first_len = b.len;
	for (size_t step = 1; step <= b.len; step++) {
		int n = split_frames(b.data, b.len, step, frames, 4);
		CHECK_INT(n, 3);
		if (n != 3)
			continue;
		CHECK_INT(frames[0].stream, 1);
		CHECK_INT(frames[1].stream, 2);
		CHECK_INT(frames[2].stream, -1);
		struct cql_result *r;
		CHECK_INT(cql_response_decode(&frames[0], &r, &err), 0);
		if (r != NULL)
			check_typed_rows(r, true);
		cql_result_free(&r);
		CHECK_INT(cql_response_decode(&frames[1], &r, &err), -1);
		CHECK_INT(err.kind, CQL_ERR_WRITE_TIMEOUT);
		struct cql_event ev;
		CHECK_INT(cql_event_decode(&frames[2], &ev), 0);
		CHECK_STR(ev.addr, "127.0.0.2");
		for (int i = 0; i < 3; i++)
			cql_frame_free(&frames[i]);
	}
	/* Two-way split of the whole stream at every byte, via the parser. */
	for (size_t cut = 0; cut <= first_len; cut++) {
		struct cql_frame_parser parser;
		struct cql_frame f;
		const char *error;
		size_t used, pos = 0;
		int got = 0;
		cql_frame_parser_init(&parser, 1 << 20);
		const size_t ends[2] = { cut, b.len };
		for (int part = 0; part < 2; part++) {
			while (pos < ends[part]) {
				int ret = cql_frame_parser_feed(&parser, b.data + pos,
								ends[part] - pos, &used, &f, &error);
				pos += used;
				CHECK(ret >= 0);
				if (ret < 0)
					break;
				if (ret > 0) {
					got++;
					cql_frame_free(&f);
				}
			}
		}
		CHECK_INT(got, 3);
		cql_frame_parser_deinit(&parser);
	}
	cql_buf_free(&b);
}

static void test_bad_headers(void)
{
	struct cql_frame frames[1];
	uint8_t h[9] = { 0x84, 0, 0, 1, CQL_OP_READY, 0, 0, 0, 0 };

	CHECK_INT(split_frames(h, 9, 9, frames, 1), 1);
	cql_frame_free(&frames[0]);
	h[0] = 0x04;	/* a request version */
	CHECK_INT(split_frames(h, 9, 3, frames, 1), -1);
	h[0] = 0x83;
	CHECK_INT(split_frames(h, 9, 9, frames, 1), -1);
	h[0] = 0x84;
	h[1] = CQL_FRAME_FLAG_COMPRESSED;
	CHECK_INT(split_frames(h, 9, 9, frames, 1), -1);
	h[1] = 0;
	h[5] = 0x7f;	/* 2 GiB body */
	CHECK_INT(split_frames(h, 9, 9, frames, 1), -1);
	h[5] = 0xff;	/* "negative" length */
	CHECK_INT(split_frames(h, 9, 9, frames, 1), -1);
	h[5] = 0;
	h[6] = 0x10;	/* 1 MiB + 0: within the test cap of 1 MiB? no: 1 MiB = 0x100000 */
	CHECK_INT(split_frames(h, 9, 9, frames, 1), 0);
}

static void test_errors(void)
{
	static const struct { int32_t code; enum cql_error_kind kind; } cases[] = {
		{ 0x0000, CQL_ERR_SERVER }, { 0x000A, CQL_ERR_PROTOCOL },
		{ 0x0100, CQL_ERR_BAD_CREDENTIALS }, { 0x1000, CQL_ERR_UNAVAILABLE },
		{ 0x1001, CQL_ERR_OVERLOADED }, { 0x1002, CQL_ERR_IS_BOOTSTRAPPING },
		{ 0x1003, CQL_ERR_TRUNCATE }, { 0x1100, CQL_ERR_WRITE_TIMEOUT },
		{ 0x1200, CQL_ERR_READ_TIMEOUT }, { 0x1300, CQL_ERR_READ_FAILURE },
		{ 0x1400, CQL_ERR_FUNCTION_FAILURE }, { 0x1500, CQL_ERR_WRITE_FAILURE },
		{ 0x2000, CQL_ERR_SYNTAX }, { 0x2100, CQL_ERR_UNAUTHORIZED },
		{ 0x2200, CQL_ERR_INVALID }, { 0x2300, CQL_ERR_CONFIG },
		{ 0x2400, CQL_ERR_ALREADY_EXISTS }, { 0x2500, CQL_ERR_UNPREPARED },
		{ 0x7777, CQL_ERR_SERVER },
	};
	struct cql_buf b = { 0 };
	struct cql_error err;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		b.len = 0;
		tf_error(&b, 3, cases[i].code, "the message");
		CHECK(decode_one(&b, &err) == NULL);
		CHECK_INT(err.kind, cases[i].kind);
		CHECK_INT(err.code, cases[i].code);
		CHECK_STR(err.message, "the message");
		/* Every truncation of the body is malformed, never a crash. */
		for (size_t cut = CQL_HEADER_SIZE; cut < b.len; cut++) {
			struct cql_error e2;
			int ret = cql_error_decode(b.data + CQL_HEADER_SIZE, cut - CQL_HEADER_SIZE, &e2);
			if (ret == 0)
				CHECK(cut - CQL_HEADER_SIZE >= 6 + strlen("the message"));
			else
				CHECK_INT(e2.kind, CQL_ERR_PROTOCOL);
		}
	}
	b.len = 0;
	tf_error(&b, 3, 0x1000, "u");
	(void)decode_one(&b, &err);
	CHECK_INT(err.consistency, CQL_QUORUM);
	CHECK_INT(err.required, 2);
	CHECK_INT(err.received, 1);
	CHECK(cql_error_is_temporary(&err));
	CHECK(!cql_error_is_uncertain(&err));
	b.len = 0;
	tf_error(&b, 3, 0x1100, "w");
	(void)decode_one(&b, &err);
	CHECK_INT(err.write_type, CQL_WRITE_CAS);
	CHECK_STR(cql_write_type_name(err.write_type), "CAS");
	CHECK_INT(err.received, 1);
	CHECK_INT(err.required, 2);
	CHECK(cql_error_is_uncertain(&err));
	b.len = 0;
	tf_error(&b, 3, 0x1200, "r");
	(void)decode_one(&b, &err);
	CHECK(err.data_present);
	b.len = 0;
	tf_error(&b, 3, 0x1500, "wf");
	(void)decode_one(&b, &err);
	CHECK_INT(err.failures, 2);
	CHECK_INT(err.write_type, CQL_WRITE_BATCH_LOG);
	b.len = 0;
	tf_error(&b, 3, 0x2500, "unprep");
	(void)decode_one(&b, &err);
	CHECK_MEM(err.unprepared_id, err.unprepared_id_len, "\xde\xad\xbe\xef", 4);
	b.len = 0;
	tf_error(&b, 3, 0x2000, "line 1:0 no viable alternative");
	(void)decode_one(&b, &err);
	CHECK(!cql_error_is_temporary(&err));
	CHECK_STR(cql_error_kind_name(err.kind), "syntax");
	cql_buf_free(&b);
}

static void test_other_results(void)
{
	struct cql_buf b = { 0 };
	struct cql_error err;
	struct cql_result *r;

	size_t start = tf_begin(&b, 0, CQL_OP_RESULT);
	cql_buf_put_i32(&b, CQL_RESULT_VOID);
	cql_frame_end(&b, start);
	r = decode_one(&b, &err);
	CHECK(r != NULL && cql_result_kind(r) == CQL_RESULT_VOID);
	CHECK(r != NULL && !cql_result_next_row(r));
	cql_result_free(&r);

	b.len = 0;
	start = tf_begin(&b, 0, CQL_OP_RESULT);
	cql_buf_put_i32(&b, CQL_RESULT_SET_KEYSPACE);
	cql_buf_put_string(&b, "mail");
	cql_frame_end(&b, start);
	r = decode_one(&b, &err);
	CHECK(r != NULL && strcmp(cql_result_keyspace(r), "mail") == 0);
	cql_result_free(&r);

	b.len = 0;
	tf_prepared(&b, 0);
	r = decode_one(&b, &err);
	CHECK(r != NULL);
	if (r != NULL) {
		CHECK_INT(r->prepared_id_len, 16);
		CHECK_INT(r->bind_md.column_count, 2);
		CHECK_INT(r->bind_md.types[r->bind_md.columns[1].type].id, CQL_TYPE_MAP);
		CHECK_INT(r->bind_md.types[r->bind_md.columns[1].type].size, 4);
		CHECK_INT(r->md.column_count, 0);
	}
	cql_result_free(&r);

	const char *targets[] = { "KEYSPACE", "TABLE", "TYPE", "FUNCTION" };
	for (int i = 0; i < 4; i++) {
		b.len = 0;
		tf_schema_change(&b, 0, targets[i]);
		r = decode_one(&b, &err);
		CHECK(r != NULL);
		if (r == NULL)
			continue;
		CHECK_STR(cql_result_change_type(r), "CREATED");
		CHECK_STR(cql_result_change_target(r), targets[i]);
		CHECK_STR(cql_result_keyspace(r), "ks");
		if (i > 0)
			CHECK_STR(cql_result_table(r), "obj");
		cql_result_free(&r);
	}

	/* READY is no answer to a query. */
	b.len = 0;
	start = tf_begin(&b, 0, CQL_OP_READY);
	cql_frame_end(&b, start);
	CHECK(decode_one(&b, &err) == NULL);
	CHECK_INT(err.kind, CQL_ERR_PROTOCOL);

	/* Tracing id, warnings and custom payload before the message. */
	b.len = 0;
	start = tf_begin(&b, 0, CQL_OP_RESULT);
	b.data[start + 1] = CQL_FRAME_FLAG_TRACING | CQL_FRAME_FLAG_WARNING | CQL_FRAME_FLAG_PAYLOAD;
	cql_buf_append(&b, "0123456789abcdef", 16);
	cql_buf_put_u16(&b, 1);
	cql_buf_put_string(&b, "Batch too large");
	cql_buf_put_u16(&b, 1);
	cql_buf_put_string(&b, "key");
	cql_buf_put_bytes(&b, "val", 3);
	cql_buf_put_i32(&b, CQL_RESULT_VOID);
	cql_frame_end(&b, start);
	r = decode_one(&b, &err);
	CHECK(r != NULL && cql_result_kind(r) == CQL_RESULT_VOID);
	cql_result_free(&r);
	cql_buf_free(&b);
}

/* Every truncation and many corruptions of a result give an error or a
   result whose getters stay in bounds (run under ASan). */
static void test_malformed_results(void)
{
	struct cql_buf b = { 0 };
	struct cql_error err;

	tf_typed_rows(&b, 0, true);
	tf_prepared(&b, 0);
	size_t body = CQL_HEADER_SIZE;
	struct cql_frame f = { .version = 0x84, .opcode = CQL_OP_RESULT };
	uint32_t rows_len = ((uint32_t)b.data[5] << 24 | (uint32_t)b.data[6] << 16 |
			     (uint32_t)b.data[7] << 8 | b.data[8]);
	for (uint32_t cut = 0; cut < rows_len; cut++) {
		struct cql_result *r;
		f.length = cut;
		f.body = cut == 0 ? NULL : malloc(cut);
		if (cut > 0)
			memcpy(f.body, b.data + body, cut);
		CHECK_INT(cql_response_decode(&f, &r, &err), -1);
		CHECK_INT(err.kind, CQL_ERR_PROTOCOL);
		cql_frame_free(&f);
	}
	for (uint32_t pos = 0; pos < rows_len; pos++) {
		for (int v = 0; v < 3; v++) {
			static const uint8_t vals[3] = { 0xff, 0x00, 0x7f };
			struct cql_result *r;
			f.length = rows_len;
			f.body = malloc(rows_len);
			memcpy(f.body, b.data + body, rows_len);
			f.body[pos] = vals[v];
			if (cql_response_decode(&f, &r, &err) == 0) {
				while (cql_result_next_row(r)) {
					for (unsigned c = 0; c < cql_result_column_count(r); c++) {
						struct cql_collection coll;
						struct cql_slice s;
						int64_t x;
						if (cql_result_get_collection(r, c, &coll) > 0)
							while (cql_collection_next(&coll, &s) > 0)
								(void)cql_decode_bigint(s, &x);
						(void)cql_result_get_raw(r, c, &s);
					}
				}
				cql_result_free(&r);
			}
			cql_frame_free(&f);
		}
	}
	/* Type options nested past the limit. */
	b.len = 0;
	size_t start = tf_begin(&b, 0, CQL_OP_RESULT);
	tf_rows_header(&b, 0x0001, 1);
	tf_global_spec(&b);
	cql_buf_put_string(&b, "deep");
	for (int i = 0; i < 40; i++)
		cql_buf_put_u16(&b, CQL_TYPE_LIST);
	cql_buf_put_u16(&b, CQL_TYPE_INT);
	cql_buf_put_i32(&b, 0);
	cql_frame_end(&b, start);
	CHECK(decode_one(&b, &err) == NULL);
	/* A huge column count with few bytes. */
	b.len = 0;
	start = tf_begin(&b, 0, CQL_OP_RESULT);
	tf_rows_header(&b, 0x0001, 60000);
	tf_global_spec(&b);
	cql_buf_put_i32(&b, 0);
	cql_frame_end(&b, start);
	CHECK(decode_one(&b, &err) == NULL);
	/* A huge row count with no bytes for the cells. */
	b.len = 0;
	start = tf_begin(&b, 0, CQL_OP_RESULT);
	tf_rows_header(&b, 0x0005, 1);
	cql_buf_put_i32(&b, 0x7fffffff);
	cql_frame_end(&b, start);
	CHECK(decode_one(&b, &err) == NULL);
	/* A collection cell claiming more elements than it holds. */
	b.len = 0;
	start = tf_begin(&b, 0, CQL_OP_RESULT);
	tf_rows_header(&b, 0x0001, 1);
	tf_global_spec(&b);
	tf_col(&b, "l", CQL_TYPE_LIST);
	cql_buf_put_u16(&b, CQL_TYPE_INT);
	cql_buf_put_i32(&b, 1);
	cql_buf_put_bytes(&b, "\0\0\0\x09\0\0\0\4\0\0\0\1", 12);
	cql_frame_end(&b, start);
	struct cql_result *r = decode_one(&b, &err);
	CHECK(r != NULL);
	if (r != NULL) {
		struct cql_collection coll;
		CHECK(cql_result_next_row(r));
		CHECK_INT(cql_result_get_collection(r, 0, &coll), -1);
	}
	cql_result_free(&r);
	cql_buf_free(&b);
}

/* Parses a request frame the way a server would. */
static void test_requests(void)
{
	struct cql_buf b = { 0 };
	struct cql_rd rd;
	struct cql_values *v = cql_values_create();
	static const uint8_t uuid[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

	cql_msg_startup(&b);
	CHECK_INT(b.data[0], 4);
	CHECK_INT(b.data[4], CQL_OP_STARTUP);
	cql_rd_init(&rd, b.data + 9, b.len - 9);
	CHECK_INT(cql_rd_u16(&rd), 3);
	struct cql_slice s = cql_rd_string(&rd);
	CHECK_MEM(s.data, s.len, "CQL_VERSION", 11);
	s = cql_rd_string(&rd);
	CHECK_MEM(s.data, s.len, "3.0.0", 5);

	b.len = 0;
	cql_msg_auth_response(&b, "cassandra", "secret");
	CHECK_INT(b.data[4], CQL_OP_AUTH_RESPONSE);
	cql_rd_init(&rd, b.data + 9, b.len - 9);
	CHECK(cql_rd_bytes(&rd, &s));
	CHECK_MEM(s.data, s.len, "\0cassandra\0secret", 17);

	b.len = 0;
	cql_msg_options(&b);
	CHECK_INT(b.len, 9);
	CHECK_INT(b.data[4], CQL_OP_OPTIONS);
	b.len = 0;
	cql_msg_register(&b);
	CHECK_INT(b.data[4], CQL_OP_REGISTER);
	b.len = 0;
	cql_msg_prepare(&b, "SELECT 1");
	cql_rd_init(&rd, b.data + 9, b.len - 9);
	CHECK_INT(cql_rd_i32(&rd), 8);

	cql_values_add_int(v, 7);
	cql_values_add_bigint(v, -1);
	cql_values_add_bool(v, true);
	cql_values_add_timestamp(v, 1700000000000LL);
	cql_values_add_uuid(v, uuid);
	cql_values_add_text(v, "txt");
	cql_values_add_blob(v, "\0\1", 2);
	cql_values_add_null(v);
	cql_values_add_unset(v);
	cql_values_begin_collection(v, CQL_TYPE_MAP);
	cql_values_add_text(v, "k");
	cql_values_add_bigint(v, 5);
	cql_values_end_collection(v);
	CHECK_INT(cql_values_count(v), 10);

	struct cql_params p = {
		.consistency = CQL_LOCAL_QUORUM, .serial_consistency = CQL_LOCAL_SERIAL,
		.values = v, .page_size = 100, .paging_state = "ST", .paging_state_len = 2,
		.timestamp_us = 1234567,
	};
	b.len = 0;
	CHECK_INT(cql_msg_execute(&b, (const uint8_t *)"ID", 2, &p), 0);
	cql_frame_set_stream(b.data, 300);
	CHECK_INT(b.data[2], 1);
	CHECK_INT(b.data[3], 44);
	cql_rd_init(&rd, b.data + 9, b.len - 9);
	s = cql_rd_short_bytes(&rd);
	CHECK_MEM(s.data, s.len, "ID", 2);
	CHECK_INT(cql_rd_u16(&rd), CQL_LOCAL_QUORUM);
	CHECK_INT(cql_rd_u8(&rd), 0x01 | 0x04 | 0x08 | 0x10 | 0x20);
	CHECK_INT(cql_rd_u16(&rd), 10);
	int32_t lens[10] = { 4, 8, 1, 8, 16, 3, 2, -1, -2, 4 + 4 + 1 + 4 + 8 };
	for (int i = 0; i < 10; i++) {
		int32_t n = cql_rd_i32(&rd);
		CHECK_INT(n, lens[i]);
		if (n > 0)
			(void)cql_rd_take(&rd, (size_t)n);
	}
	CHECK_INT(cql_rd_i32(&rd), 100);
	CHECK(cql_rd_bytes(&rd, &s));
	CHECK_MEM(s.data, s.len, "ST", 2);
	CHECK_INT(cql_rd_u16(&rd), CQL_LOCAL_SERIAL);
	CHECK_INT(cql_rd_i64(&rd), 1234567);
	CHECK_INT(cql_rd_left(&rd), 0);
	CHECK(!rd.err);

	/* QUERY without values, paging or timestamp: flags 0. */
	struct cql_params plain = { .consistency = CQL_ONE, .timestamp_us = -1 };
	b.len = 0;
	CHECK_INT(cql_msg_query(&b, "SELECT now() FROM system.local", &plain), 0);
	cql_rd_init(&rd, b.data + 9, b.len - 9);
	s.len = (size_t)cql_rd_i32(&rd);
	(void)cql_rd_take(&rd, s.len);
	CHECK_INT(cql_rd_u16(&rd), CQL_ONE);
	CHECK_INT(cql_rd_u8(&rd), 0);
	CHECK_INT(cql_rd_left(&rd), 0);

	/* BATCH with a query and a prepared statement. */
	struct cql_prepared stmt = { .id = "PID", .id_len = 3, .cql = (char *)"INSERT" };
	struct cql_batch *batch = cql_batch_create(CQL_BATCH_UNLOGGED);
	cql_batch_add_query(batch, "INSERT INTO t (k) VALUES (?)", v);
	cql_batch_add_prepared(batch, &stmt, NULL);
	CHECK(!batch->conditional);
	b.len = 0;
	p.serial_consistency = CQL_SERIAL_UNSET;
	CHECK_INT(cql_msg_batch(&b, batch, &p), 0);
	CHECK_INT(b.data[4], CQL_OP_BATCH);
	cql_rd_init(&rd, b.data + 9, b.len - 9);
	CHECK_INT(cql_rd_u8(&rd), 1);
	CHECK_INT(cql_rd_u16(&rd), 2);
	CHECK_INT(cql_rd_u8(&rd), 0);
	s.len = (size_t)cql_rd_i32(&rd);
	(void)cql_rd_take(&rd, s.len);
	CHECK_INT(cql_rd_u16(&rd), 10);
	(void)cql_rd_take(&rd, v->buf.len);
	CHECK_INT(cql_rd_u8(&rd), 1);
	s = cql_rd_short_bytes(&rd);
	CHECK_MEM(s.data, s.len, "PID", 3);
	CHECK_INT(cql_rd_u16(&rd), 0);
	CHECK_INT(cql_rd_u16(&rd), CQL_LOCAL_QUORUM);
	CHECK_INT(cql_rd_u8(&rd), 0x20);
	CHECK_INT(cql_rd_i64(&rd), 1234567);
	CHECK_INT(cql_rd_left(&rd), 0);
	cql_batch_add_query(batch, "UPDATE t SET v = 1 WHERE k = 1 IF v = 0", NULL);
	CHECK(batch->conditional);
	cql_batch_free(&batch);
	CHECK(batch == NULL);

	/* Misused builders never produce a request. */
	cql_values_clear(v);
	cql_values_begin_collection(v, CQL_TYPE_LIST);
	cql_values_begin_collection(v, CQL_TYPE_LIST);
	b.len = 0;
	p.values = v;
	CHECK_INT(cql_msg_query(&b, "x", &p), -1);
	cql_values_clear(v);
	cql_values_begin_collection(v, CQL_TYPE_SET);
	cql_values_add_null(v);
	cql_values_end_collection(v);
	CHECK_INT(cql_msg_query(&b, "x", &p), -1);
	cql_values_clear(v);
	cql_values_begin_collection(v, CQL_TYPE_MAP);
	cql_values_add_int(v, 1);
	cql_values_end_collection(v);
	CHECK_INT(cql_msg_query(&b, "x", &p), -1);
	cql_values_clear(v);
	cql_values_end_collection(v);
	CHECK_INT(cql_msg_query(&b, "x", &p), -1);
	cql_values_clear(v);
	cql_values_begin_collection(v, CQL_TYPE_INT);
	CHECK_INT(cql_msg_query(&b, "x", &p), -1);
	cql_values_clear(v);
	cql_values_begin_collection(v, CQL_TYPE_LIST);
	CHECK_INT(cql_msg_query(&b, "x", &p), -1);
	cql_values_free(&v);
	CHECK(v == NULL);
	cql_buf_free(&b);
}

static void test_supported_and_events(void)
{
	struct cql_buf b = { 0 };
	struct cql_frame frames[3];
	struct cql_event ev;
	char versions[64];

	size_t start = tf_begin(&b, 0, CQL_OP_SUPPORTED);
	cql_buf_put_u16(&b, 2);
	cql_buf_put_string(&b, "CQL_VERSION");
	cql_buf_put_u16(&b, 1);
	cql_buf_put_string(&b, "3.4.7");
	cql_buf_put_string(&b, "PROTOCOL_VERSIONS");
	cql_buf_put_u16(&b, 2);
	cql_buf_put_string(&b, "4/v4");
	cql_buf_put_string(&b, "5/v5");
	cql_frame_end(&b, start);
	tf_event(&b, "TOPOLOGY_CHANGE", "NEW_NODE");
	start = tf_begin(&b, -1, CQL_OP_EVENT);
	cql_buf_put_string(&b, "SCHEMA_CHANGE");
	cql_buf_put_string(&b, "DROPPED");
	cql_buf_put_string(&b, "KEYSPACE");
	cql_buf_put_string(&b, "ks");
	cql_frame_end(&b, start);
	CHECK_INT(split_frames(b.data, b.len, 5, frames, 3), 3);
	CHECK_INT(cql_supported_decode(&frames[0], versions, sizeof(versions)), 0);
	CHECK_STR(versions, "4/v4,5/v5");
	CHECK_INT(cql_event_decode(&frames[0], &ev), -1);
	CHECK_INT(cql_event_decode(&frames[1], &ev), 0);
	CHECK_STR(ev.change, "NEW_NODE");
	CHECK_INT(ev.port, 9042);
	CHECK_INT(cql_event_decode(&frames[2], &ev), 0);
	CHECK_STR(ev.type, "SCHEMA_CHANGE");
	for (int i = 0; i < 3; i++)
		cql_frame_free(&frames[i]);
	cql_buf_free(&b);
}

static void test_statements(void)
{
	CHECK(cql_statement_is_conditional("INSERT INTO t (k) VALUES (1) IF NOT EXISTS"));
	CHECK(cql_statement_is_conditional("update t set v=1 where k=1 if v=0"));
	CHECK(cql_statement_is_conditional("DELETE FROM t WHERE k=1 IF EXISTS"));
	CHECK(cql_statement_is_conditional("  /* c */ BEGIN BATCH UPDATE t SET v=1 WHERE k=1 IF v=0; APPLY BATCH"));
	CHECK(!cql_statement_is_conditional("CREATE TABLE IF NOT EXISTS t (k int PRIMARY KEY)"));
	CHECK(!cql_statement_is_conditional("CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {}"));
	CHECK(!cql_statement_is_conditional("INSERT INTO t (k, v) VALUES (1, ' IF NOT EXISTS')"));
	CHECK(!cql_statement_is_conditional("INSERT INTO t (k, \"if\") VALUES (1, 2)"));
	CHECK(!cql_statement_is_conditional("INSERT INTO t (k) VALUES (1) -- IF NOT EXISTS"));
	CHECK(!cql_statement_is_conditional("UPDATE t SET v = 'it''s IF' WHERE k = 1"));
	CHECK(!cql_statement_is_conditional("SELECT * FROM t WHERE k = 1"));
	CHECK(!cql_statement_is_conditional("UPDATE t SET diff = 1 WHERE k = 1"));
	CHECK(!cql_statement_is_conditional(""));
	CHECK(cql_statement_is_schema_change("drop table x"));
	CHECK(!cql_statement_is_schema_change("truncate x"));

	uint8_t u[16], u2[16];
	char text[37];
	CHECK_INT(cql_uuid_parse("00112233-4455-6677-8899-AaBbCcDdEeFf", u), 0);
	cql_uuid_format(u, text);
	CHECK_STR(text, "00112233-4455-6677-8899-aabbccddeeff");
	CHECK_INT(cql_uuid_parse(text, u2), 0);
	CHECK_MEM(u, 16, u2, 16);
	CHECK_INT(cql_uuid_parse("00112233-4455-6677-8899-aabbccddeef", u), -1);
	CHECK_INT(cql_uuid_parse("00112233x4455-6677-8899-aabbccddeeff", u), -1);
	CHECK_INT(cql_uuid_parse("00112233-4455-6677-8899-aabbccddeeffa", u), -1);

	int64_t last = cql_timestamp_now_us();
	for (int i = 0; i < 10000; i++) {
		int64_t t = cql_timestamp_now_us();
		CHECK(t > last);
		last = t;
	}
	enum cql_consistency cl;
	CHECK_INT(cql_consistency_parse("local_quorum", &cl), 0);
	CHECK_INT(cl, CQL_LOCAL_QUORUM);
	CHECK_STR(cql_consistency_name(CQL_LOCAL_SERIAL), "LOCAL_SERIAL");
	CHECK_INT(cql_consistency_parse("MOST", &cl), -1);
	struct cql_error e = { .kind = CQL_ERR_TIMEOUT };
	CHECK(cql_error_is_temporary(&e));
	CHECK(!cql_error_is_uncertain(&e));
	e.sent = true;
	CHECK(cql_error_is_uncertain(&e));
}

int main(void)
{
	test_rows();
	test_split();
	test_bad_headers();
	test_errors();
	test_other_results();
	test_malformed_results();
	test_requests();
	test_supported_and_events();
	test_statements();
	TEST_MAIN_END();
}
