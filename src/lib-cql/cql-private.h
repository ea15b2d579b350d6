#ifndef TERN_CQL_PRIVATE_H
#define TERN_CQL_PRIVATE_H
/* Definitions shared by the lib-cql modules and their unit tests. */
#include "cql.h"

#include <stdarg.h>

#define CQL_HEADER_SIZE 9
#define CQL_VERSION_REQUEST 0x04
#define CQL_VERSION_RESPONSE 0x84
#define CQL_DEFAULT_MAX_FRAME (64u * 1024 * 1024)
/* Nesting of type options (list<map<...>>): deeper is hostile. */
#define CQL_MAX_TYPE_DEPTH 16

enum cql_opcode {
	CQL_OP_ERROR = 0x00,
	CQL_OP_STARTUP = 0x01,
	CQL_OP_READY = 0x02,
	CQL_OP_AUTHENTICATE = 0x03,
	CQL_OP_OPTIONS = 0x05,
	CQL_OP_SUPPORTED = 0x06,
	CQL_OP_QUERY = 0x07,
	CQL_OP_RESULT = 0x08,
	CQL_OP_PREPARE = 0x09,
	CQL_OP_EXECUTE = 0x0A,
	CQL_OP_REGISTER = 0x0B,
	CQL_OP_EVENT = 0x0C,
	CQL_OP_BATCH = 0x0D,
	CQL_OP_AUTH_CHALLENGE = 0x0E,
	CQL_OP_AUTH_RESPONSE = 0x0F,
	CQL_OP_AUTH_SUCCESS = 0x10,
};

#define CQL_FRAME_FLAG_COMPRESSED 0x01
#define CQL_FRAME_FLAG_TRACING 0x02
#define CQL_FRAME_FLAG_PAYLOAD 0x04
#define CQL_FRAME_FLAG_WARNING 0x08

#define CQL_QFLAG_VALUES 0x01
#define CQL_QFLAG_SKIP_METADATA 0x02
#define CQL_QFLAG_PAGE_SIZE 0x04
#define CQL_QFLAG_PAGING_STATE 0x08
#define CQL_QFLAG_SERIAL 0x10
#define CQL_QFLAG_TIMESTAMP 0x20

/* --- cql-wire.c: the growable output buffer and the bounded reader. --- */

/* An owning buffer. Memory exhaustion aborts. */
struct cql_buf {
	uint8_t *data;
	size_t len, cap;
};
void cql_buf_free(struct cql_buf *buf);
void cql_buf_reserve(struct cql_buf *buf, size_t extra);
void cql_buf_append(struct cql_buf *buf, const void *data, size_t len);
void cql_buf_put_u8(struct cql_buf *buf, uint8_t v);
void cql_buf_put_u16(struct cql_buf *buf, uint16_t v);
void cql_buf_put_i32(struct cql_buf *buf, int32_t v);
void cql_buf_put_i64(struct cql_buf *buf, int64_t v);
void cql_buf_put_string(struct cql_buf *buf, const char *str);
void cql_buf_put_long_string(struct cql_buf *buf, const char *str, size_t len);
void cql_buf_put_bytes(struct cql_buf *buf, const void *data, int32_t len);
void cql_buf_put_short_bytes(struct cql_buf *buf, const void *data, uint16_t len);
void cql_buf_set_i32(struct cql_buf *buf, size_t at, int32_t v);

/* A bounded big-endian reader: reading past the end sets err and yields
   zeros, so a decoder checks err once at the end. */
struct cql_rd {
	const uint8_t *p, *end;
	bool err;
};
void cql_rd_init(struct cql_rd *rd, const void *data, size_t len);
size_t cql_rd_left(const struct cql_rd *rd);
uint8_t cql_rd_u8(struct cql_rd *rd);
uint16_t cql_rd_u16(struct cql_rd *rd);
int32_t cql_rd_i32(struct cql_rd *rd);
int64_t cql_rd_i64(struct cql_rd *rd);
const uint8_t *cql_rd_take(struct cql_rd *rd, size_t n);
/* [string]: the bytes are not NUL-terminated. */
struct cql_slice cql_rd_string(struct cql_rd *rd);
/* [bytes]: returns false with an empty slice for null (n < 0). */
bool cql_rd_bytes(struct cql_rd *rd, struct cql_slice *slice_r);
struct cql_slice cql_rd_short_bytes(struct cql_rd *rd);
void cql_rd_skip_string_list(struct cql_rd *rd);
/* Copies a [string] into out (truncated, NUL-terminated). */
void cql_rd_string_to(struct cql_rd *rd, char *out, size_t size);
/* A NUL-terminated malloc()ed copy. */
char *cql_strndup(const uint8_t *data, size_t len);
void cql_errorf(struct cql_error *err, enum cql_error_kind kind,
		const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* --- cql-frame.c: frames and messages. --- */

struct cql_frame {
	uint8_t version, flags, opcode;
	int16_t stream;
	uint32_t length;
	uint8_t *body;		/* malloc()ed, length bytes (NULL if 0) */
};
void cql_frame_free(struct cql_frame *frame);

/* Incremental frame splitter for a byte stream from the server. */
struct cql_frame_parser {
	uint32_t max_body;
	uint8_t hdr[CQL_HEADER_SIZE];
	size_t hdr_have, body_have;
	struct cql_frame cur;
	bool failed;
};
void cql_frame_parser_init(struct cql_frame_parser *parser, uint32_t max_body);
void cql_frame_parser_deinit(struct cql_frame_parser *parser);
/* Consumes bytes up to the end of one frame. Returns 1 with a complete
   frame in *frame_r (caller frees), 0 when all input was consumed without
   completing one, -1 on a malformed header (the parser stays failed). */
int cql_frame_parser_feed(struct cql_frame_parser *parser, const uint8_t *data,
			  size_t len, size_t *consumed_r, struct cql_frame *frame_r,
			  const char **error_r);

/* Request frames: the header with stream 0, then the body. */
void cql_frame_begin(struct cql_buf *buf, uint8_t opcode);
void cql_frame_end(struct cql_buf *buf, size_t frame_start);
void cql_frame_set_stream(uint8_t *frame, int16_t stream);
void cql_msg_startup(struct cql_buf *buf);
void cql_msg_options(struct cql_buf *buf);
void cql_msg_auth_response(struct cql_buf *buf, const char *user, const char *password);
void cql_msg_register(struct cql_buf *buf);
void cql_msg_prepare(struct cql_buf *buf, const char *cql);

/* What QUERY, EXECUTE and BATCH carry after the statement. */
struct cql_params {
	enum cql_consistency consistency, serial_consistency;
	const struct cql_values *values;
	int32_t page_size;
	const void *paging_state;
	size_t paging_state_len;
	int64_t timestamp_us;	/* < 0: none */
};
int cql_msg_query(struct cql_buf *buf, const char *cql, const struct cql_params *p);
int cql_msg_execute(struct cql_buf *buf, const uint8_t *id, uint16_t id_len,
		    const struct cql_params *p);
int cql_msg_batch(struct cql_buf *buf, const struct cql_batch *batch,
		  const struct cql_params *p);

/* The message of a response: skips tracing id, warnings and payload.
   Returns 0 or -1 if those are malformed. */
int cql_frame_message(const struct cql_frame *frame, struct cql_rd *rd_r);
/* Decodes an ERROR message body into err. Returns 0, -1 if malformed
   (err then says CQL_ERR_PROTOCOL). */
int cql_error_decode(const uint8_t *body, size_t len, struct cql_error *err);
/* Turns any response to a request into a result or an error: ERROR
   frames, unexpected opcodes and malformed bodies all become err. A RESULT
   frame's body moves into the result (frame->body becomes NULL). */
int cql_response_decode(struct cql_frame *frame, struct cql_result **result_r,
			struct cql_error *err);

struct cql_event {
	char type[32];		/* TOPOLOGY_CHANGE, STATUS_CHANGE, SCHEMA_CHANGE */
	char change[32];	/* NEW_NODE, UP, DOWN, CREATED, ... */
	char addr[64];		/* inet as text, for the first two */
	uint16_t port;
};
int cql_event_decode(const struct cql_frame *frame, struct cql_event *event_r);
/* AUTHENTICATE: the authenticator class. SUPPORTED: fills nothing but checks
   the multimap. */
int cql_supported_decode(const struct cql_frame *frame, char *versions, size_t size);

/* --- cql-values.c --- */
struct cql_values {
	struct cql_buf buf;	/* count × [value] */
	unsigned count;
	bool invalid;
	/* An open collection: where its [int] length and count go. */
	bool in_collection;
	enum cql_type_id coll_type;
	size_t coll_start;
	int32_t coll_items;
};

/* --- cql-result.c --- */
struct cql_type_node {
	uint16_t id;
	uint32_t size;		/* nodes in this subtree, itself included */
};
struct cql_column {
	char *name;
	uint32_t type;		/* index into types */
};
struct cql_metadata {
	int32_t flags;
	uint32_t column_count;
	struct cql_column *columns;	/* NULL with No_metadata */
	struct cql_type_node *types;
	uint32_t type_count, type_cap;
	struct cql_slice paging_state;	/* data NULL: none */
};
void cql_metadata_free(struct cql_metadata *md);
/* Rows/prepared metadata. Returns 0 or -1 with rd->err set. */
int cql_metadata_decode(struct cql_rd *rd, struct cql_metadata *md, bool prepared_bind);

struct cql_result {
	enum cql_result_kind kind;
	uint8_t *body;			/* owned: the slices point into it */
	struct cql_metadata md;
	uint32_t row_count;
	const uint8_t *rows, *rows_end;
	const uint8_t *next_row;	/* next row to load */
	uint32_t rows_loaded;
	struct cql_slice *cells;	/* column_count; data NULL: null cell */
	bool row_valid;
	char *change_type, *target, *keyspace, *table;
	bool schema_agreed;
	/* PREPARED */
	uint8_t prepared_id[CQL_MAX_PREPARED_ID];
	uint16_t prepared_id_len;
	struct cql_metadata bind_md;
};
/* Decodes a RESULT message (rd over its body; the result owns body, which
   is freed on failure). Every cell is bounds-checked here, so getters
   never see hostile lengths. */
int cql_result_decode(uint8_t *body, struct cql_rd *rd, struct cql_result **result_r,
		      struct cql_error *err);

/* --- cql-stmt.c --- */
struct cql_batch_entry {
	char *cql;			/* a query, or NULL */
	struct cql_prepared *stmt;	/* a prepared statement, or NULL */
	struct cql_values values;
};
struct cql_batch {
	enum cql_batch_type type;
	struct cql_batch_entry *entries;
	unsigned count, cap;
	bool conditional;
};
/* The statement a prepared id names: the id can change after re-prepare. */
struct cql_prepared {
	struct cql_prepared *next;
	char *cql;
	bool conditional, select;
	uint8_t id[CQL_MAX_PREPARED_ID];
	uint16_t id_len;
	unsigned param_count;
	enum cql_type_id *param_types;
};
int cql_prepared_id(struct cql_prepared *stmt, uint8_t id_r[CQL_MAX_PREPARED_ID]);
bool cql_statement_is_schema_change(const char *cql);

/* --- time --- */
int64_t cql_now_ms(void);

#endif
