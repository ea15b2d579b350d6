#ifndef TERN_CQL_TEST_FRAMES_H
#define TERN_CQL_TEST_FRAMES_H
/* Builds server-side frames for the lib-cql tests and the fuzz seeds. */
#include "cql-private.h"

#include <string.h>

/* Starts a response frame (version 0x84) on stream. */
static inline size_t tf_begin(struct cql_buf *b, int16_t stream, uint8_t opcode)
{
	size_t start = b->len;
	cql_frame_begin(b, opcode);
	b->data[start] = CQL_VERSION_RESPONSE;
	cql_frame_set_stream(b->data + start, stream);
	return start;
}

/* ROWS with one column spec per (name, type id) pair and the cells given
   as [bytes] already encoded in cells. */
static inline void tf_rows_header(struct cql_buf *b, int32_t flags, int32_t ncols)
{
	cql_buf_put_i32(b, CQL_RESULT_ROWS);
	cql_buf_put_i32(b, flags);
	cql_buf_put_i32(b, ncols);
}

static inline void tf_global_spec(struct cql_buf *b)
{
	cql_buf_put_string(b, "ks");
	cql_buf_put_string(b, "tbl");
}

static inline void tf_col(struct cql_buf *b, const char *name, uint16_t type)
{
	cql_buf_put_string(b, name);
	cql_buf_put_u16(b, type);
}

/* A row of every type the store uses:
   i int, b bigint, f boolean, ts timestamp, u uuid, t text, x blob,
   l list<text>, s set<uuid>, m map<text,bigint>. */
static inline void tf_typed_rows(struct cql_buf *b, int16_t stream, bool paging)
{
	static const uint8_t uuid[16] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x1d, 0xef,
					  0x80, 1, 2, 3, 4, 5, 6, 7 };
	size_t start = tf_begin(b, stream, CQL_OP_RESULT);
	tf_rows_header(b, 0x0001 | (paging ? 0x0002 : 0), 10);
	if (paging)
		cql_buf_put_bytes(b, "PAGE", 4);
	tf_global_spec(b);
	tf_col(b, "i", CQL_TYPE_INT);
	tf_col(b, "b", CQL_TYPE_BIGINT);
	tf_col(b, "f", CQL_TYPE_BOOLEAN);
	tf_col(b, "ts", CQL_TYPE_TIMESTAMP);
	tf_col(b, "u", CQL_TYPE_TIMEUUID);
	tf_col(b, "t", CQL_TYPE_VARCHAR);
	tf_col(b, "x", CQL_TYPE_BLOB);
	tf_col(b, "l", CQL_TYPE_LIST);
	cql_buf_put_u16(b, CQL_TYPE_VARCHAR);
	tf_col(b, "s", CQL_TYPE_SET);
	cql_buf_put_u16(b, CQL_TYPE_UUID);
	tf_col(b, "m", CQL_TYPE_MAP);
	cql_buf_put_u16(b, CQL_TYPE_VARCHAR);
	cql_buf_put_u16(b, CQL_TYPE_BIGINT);
	cql_buf_put_i32(b, 2);	/* rows */
	/* row 1 */
	cql_buf_put_bytes(b, "\xff\xff\xff\xfe", 4);
	cql_buf_put_bytes(b, "\x80\0\0\0\0\0\0\x01", 8);
	cql_buf_put_bytes(b, "\x01", 1);
	cql_buf_put_bytes(b, "\0\0\x01\x8c\xba\xbe\0\0", 8);
	cql_buf_put_bytes(b, uuid, 16);
	cql_buf_put_bytes(b, "h\xc3\xa9llo", 6);
	cql_buf_put_bytes(b, "\0\1\2", 3);
	cql_buf_put_bytes(b, "\0\0\0\2\0\0\0\1a\0\0\0\2bc", 4 + 5 + 6);
	cql_buf_put_i32(b, 4 + 4 + 16);
	cql_buf_put_i32(b, 1);
	cql_buf_put_bytes(b, uuid, 16);
	cql_buf_put_bytes(b, "\0\0\0\1\0\0\0\1k\0\0\0\x08\0\0\0\0\0\0\0\x2a", 4 + 5 + 12);
	/* row 2: nulls and empties */
	for (int c = 0; c < 5; c++)
		cql_buf_put_i32(b, -1);
	cql_buf_put_bytes(b, "", 0);
	cql_buf_put_bytes(b, "", 0);
	cql_buf_put_bytes(b, "\0\0\0\0", 4);
	cql_buf_put_i32(b, -1);
	cql_buf_put_i32(b, -1);
	cql_frame_end(b, start);
}

static inline void tf_error(struct cql_buf *b, int16_t stream, int32_t code,
			    const char *msg)
{
	size_t start = tf_begin(b, stream, CQL_OP_ERROR);
	cql_buf_put_i32(b, code);
	cql_buf_put_string(b, msg);
	switch (code) {
	case 0x1000:
		cql_buf_put_u16(b, CQL_QUORUM);
		cql_buf_put_i32(b, 2);
		cql_buf_put_i32(b, 1);
		break;
	case 0x1100:
		cql_buf_put_u16(b, CQL_LOCAL_QUORUM);
		cql_buf_put_i32(b, 1);
		cql_buf_put_i32(b, 2);
		cql_buf_put_string(b, "CAS");
		break;
	case 0x1200:
		cql_buf_put_u16(b, CQL_ONE);
		cql_buf_put_i32(b, 0);
		cql_buf_put_i32(b, 1);
		cql_buf_put_u8(b, 1);
		break;
	case 0x1300:
		cql_buf_put_u16(b, CQL_ONE);
		cql_buf_put_i32(b, 0);
		cql_buf_put_i32(b, 1);
		cql_buf_put_i32(b, 3);
		cql_buf_put_u8(b, 0);
		break;
	case 0x1400:
		cql_buf_put_string(b, "ks");
		cql_buf_put_string(b, "fn");
		cql_buf_put_u16(b, 1);
		cql_buf_put_string(b, "int");
		break;
	case 0x1500:
		cql_buf_put_u16(b, CQL_ALL);
		cql_buf_put_i32(b, 1);
		cql_buf_put_i32(b, 3);
		cql_buf_put_i32(b, 2);
		cql_buf_put_string(b, "BATCH_LOG");
		break;
	case 0x2400:
		cql_buf_put_string(b, "ks");
		cql_buf_put_string(b, "");
		break;
	case 0x2500:
		cql_buf_put_short_bytes(b, "\xde\xad\xbe\xef", 4);
		break;
	default:
		break;
	}
	cql_frame_end(b, start);
}

static inline void tf_prepared(struct cql_buf *b, int16_t stream)
{
	size_t start = tf_begin(b, stream, CQL_OP_RESULT);
	cql_buf_put_i32(b, CQL_RESULT_PREPARED);
	cql_buf_put_short_bytes(b, "0123456789abcdef", 16);
	/* bind metadata: 2 markers, 1 pk index */
	cql_buf_put_i32(b, 0x0001);
	cql_buf_put_i32(b, 2);
	cql_buf_put_i32(b, 1);
	cql_buf_put_u16(b, 0);
	tf_global_spec(b);
	tf_col(b, "k", CQL_TYPE_UUID);
	tf_col(b, "v", CQL_TYPE_MAP);
	cql_buf_put_u16(b, CQL_TYPE_VARCHAR);
	cql_buf_put_u16(b, CQL_TYPE_LIST);
	cql_buf_put_u16(b, CQL_TYPE_INT);
	/* result metadata: none */
	cql_buf_put_i32(b, 0x0004);
	cql_buf_put_i32(b, 0);
	cql_frame_end(b, start);
}

static inline void tf_schema_change(struct cql_buf *b, int16_t stream, const char *target)
{
	size_t start = tf_begin(b, stream, CQL_OP_RESULT);
	cql_buf_put_i32(b, CQL_RESULT_SCHEMA_CHANGE);
	cql_buf_put_string(b, "CREATED");
	cql_buf_put_string(b, target);
	cql_buf_put_string(b, "ks");
	if (strcmp(target, "KEYSPACE") != 0)
		cql_buf_put_string(b, "obj");
	if (strcmp(target, "FUNCTION") == 0) {
		cql_buf_put_u16(b, 2);
		cql_buf_put_string(b, "int");
		cql_buf_put_string(b, "text");
	}
	cql_frame_end(b, start);
}

static inline void tf_event(struct cql_buf *b, const char *type, const char *change)
{
	size_t start = tf_begin(b, -1, CQL_OP_EVENT);
	cql_buf_put_string(b, type);
	cql_buf_put_string(b, change);
	cql_buf_put_u8(b, 4);
	cql_buf_append(b, "\x7f\0\0\x02", 4);
	cql_buf_put_i32(b, 9042);
	cql_frame_end(b, start);
}
#endif
