#ifndef TERN_CQL_H
#define TERN_CQL_H
/*
 * lib-cql: a client for the Apache Cassandra CQL native protocol, version 4.
 * No mail knowledge lives here.
 *
 * The API is blocking and thread-safe: any number of worker threads may call
 * cql_query/cql_execute/cql_batch_execute on one session at once. Each
 * connection has one I/O thread that multiplexes the streams of all waiting
 * callers, so a slow request never blocks another one. tern's store calls
 * already run on worker threads, so a blocking call is the simplest thing for
 * them to use, keeps the store code linear (no callbacks), and never touches
 * the daemons' event loop. No callback of this library ever runs in the
 * caller's thread, and none is exposed.
 *
 * Ownership: a result belongs to the caller until cql_result_free(); slices
 * returned by getters point into the result and live as long as it. Prepared
 * statements belong to the session and live until cql_session_destroy().
 *
 * Errors: every call that can fail fills a struct cql_error. Its kind says
 * what the store needs: cql_error_is_temporary() (retry later: timeouts,
 * unavailable, overload, lost connection) and cql_error_is_uncertain() (the
 * write may or may not have been applied).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cql_session;
struct cql_prepared;
struct cql_result;
struct cql_values;
struct cql_batch;

/* Consistency levels carry their protocol codes. */
enum cql_consistency {
	CQL_ANY = 0x0000,
	CQL_ONE = 0x0001,
	CQL_TWO = 0x0002,
	CQL_THREE = 0x0003,
	CQL_QUORUM = 0x0004,
	CQL_ALL = 0x0005,
	CQL_LOCAL_QUORUM = 0x0006,
	CQL_EACH_QUORUM = 0x0007,
	CQL_SERIAL = 0x0008,
	CQL_LOCAL_SERIAL = 0x0009,
	CQL_LOCAL_ONE = 0x000A,
};
/* Codes run from 0 to this count - 1 (for tables indexed by level). */
#define CQL_CONSISTENCY_COUNT (CQL_LOCAL_ONE + 1)
/* ANY is never a serial consistency, so 0 means "not set" there. */
#define CQL_SERIAL_UNSET CQL_ANY

/* Type option ids of the protocol. */
enum cql_type_id {
	CQL_TYPE_CUSTOM = 0x0000,
	CQL_TYPE_ASCII = 0x0001,
	CQL_TYPE_BIGINT = 0x0002,
	CQL_TYPE_BLOB = 0x0003,
	CQL_TYPE_BOOLEAN = 0x0004,
	CQL_TYPE_COUNTER = 0x0005,
	CQL_TYPE_DECIMAL = 0x0006,
	CQL_TYPE_DOUBLE = 0x0007,
	CQL_TYPE_FLOAT = 0x0008,
	CQL_TYPE_INT = 0x0009,
	CQL_TYPE_TIMESTAMP = 0x000B,
	CQL_TYPE_UUID = 0x000C,
	CQL_TYPE_VARCHAR = 0x000D,
	CQL_TYPE_VARINT = 0x000E,
	CQL_TYPE_TIMEUUID = 0x000F,
	CQL_TYPE_INET = 0x0010,
	CQL_TYPE_DATE = 0x0011,
	CQL_TYPE_TIME = 0x0012,
	CQL_TYPE_SMALLINT = 0x0013,
	CQL_TYPE_TINYINT = 0x0014,
	CQL_TYPE_LIST = 0x0020,
	CQL_TYPE_MAP = 0x0021,
	CQL_TYPE_SET = 0x0022,
	CQL_TYPE_UDT = 0x0030,
	CQL_TYPE_TUPLE = 0x0031,
	/* Not a protocol id: the server sent no metadata for the column. */
	CQL_TYPE_UNKNOWN = 0xFFFF,
};

enum cql_error_kind {
	CQL_ERR_NONE = 0,
	/* Raised by the client. */
	CQL_ERR_TIMEOUT,	/* the per-request deadline passed */
	CQL_ERR_CONNECTION,	/* no host reachable, or the connection was lost */
	CQL_ERR_CLIENT,		/* bad arguments or values given to the library */
	CQL_ERR_PROTOCOL,	/* the server sent bytes that break the protocol */
	/* Sent by the server (code in cql_error.code). */
	CQL_ERR_SERVER,
	CQL_ERR_BAD_CREDENTIALS,
	CQL_ERR_UNAVAILABLE,
	CQL_ERR_OVERLOADED,
	CQL_ERR_IS_BOOTSTRAPPING,
	CQL_ERR_TRUNCATE,
	CQL_ERR_WRITE_TIMEOUT,
	CQL_ERR_READ_TIMEOUT,
	CQL_ERR_READ_FAILURE,
	CQL_ERR_FUNCTION_FAILURE,
	CQL_ERR_WRITE_FAILURE,
	CQL_ERR_SYNTAX,
	CQL_ERR_UNAUTHORIZED,
	CQL_ERR_INVALID,
	CQL_ERR_CONFIG,
	CQL_ERR_ALREADY_EXISTS,
	CQL_ERR_UNPREPARED,
};

enum cql_write_type {
	CQL_WRITE_NONE = 0,
	CQL_WRITE_SIMPLE,
	CQL_WRITE_BATCH,
	CQL_WRITE_UNLOGGED_BATCH,
	CQL_WRITE_COUNTER,
	CQL_WRITE_BATCH_LOG,
	CQL_WRITE_CAS,
	CQL_WRITE_VIEW,
	CQL_WRITE_CDC,
	CQL_WRITE_OTHER,
};

#define CQL_MAX_PREPARED_ID 64

struct cql_error {
	enum cql_error_kind kind;
	int32_t code;		/* the server's error code, 0 for client errors */
	/* Unavailable, timeouts and failures: */
	enum cql_consistency consistency;
	int32_t required;	/* Unavailable: required; timeouts: blockfor */
	int32_t received;	/* Unavailable: alive; timeouts: received */
	int32_t failures;
	bool data_present;
	enum cql_write_type write_type;
	/* The request reached a server before it failed, so a write may have
	   been applied (set for CONNECTION and TIMEOUT errors). */
	bool sent;
	/* Unprepared: the id the server did not know. */
	uint8_t unprepared_id[CQL_MAX_PREPARED_ID];
	uint16_t unprepared_id_len;
	char message[512];
};

/* Retrying later may succeed: timeouts, unavailable, overload, bootstrap,
   lost connections, server errors. */
bool cql_error_is_temporary(const struct cql_error *err);
/* A write may or may not have been applied: server write timeouts, and
   client timeouts or lost connections after the request was sent. */
bool cql_error_is_uncertain(const struct cql_error *err);
const char *cql_error_kind_name(enum cql_error_kind kind);
const char *cql_write_type_name(enum cql_write_type type);
const char *cql_consistency_name(enum cql_consistency cl);
/* Parses "LOCAL_QUORUM", "one", ... Returns 0, or -1 if unknown. */
int cql_consistency_parse(const char *name, enum cql_consistency *cl_r);

struct cql_settings {
	/* "host[:port],host[:port]"; hosts are IPv4/IPv6 literals or names. */
	const char *contact_points;
	uint16_t port;				/* default 9042 */
	/* Only nodes of this DC are used. NULL: the DC of the first contact
	   point that answers. */
	const char *local_dc;
	const char *username, *password;	/* SASL PLAIN when set */
	const char *keyspace;			/* USE on every connection */
	unsigned connections_per_host;		/* default 1 */
	unsigned connect_timeout_ms;		/* default 5000 */
	/* Default per-request deadline, covering retries; default 12000 (more
	   than the server's own 2 s write / 5 s read timeouts). */
	unsigned request_timeout_ms;
	unsigned schema_agreement_timeout_ms;	/* default 10000 */
	unsigned reconnect_base_ms;		/* default 200, doubles */
	unsigned reconnect_max_ms;		/* default 10000 */
	uint32_t max_frame_size;		/* default 64 MiB */
	/* OPTIONS on a connection idle this long (default 30000, 0: never);
	   no answer within heartbeat_timeout_ms (default 5000) replaces it. */
	unsigned heartbeat_ms, heartbeat_timeout_ms;
	bool tls;
	const char *tls_ca_file;	/* verify the server against it if set */
	const char *tls_cert_file, *tls_key_file;	/* client certificate */
};

/* Fills in the defaults above; contact_points is "127.0.0.1". */
void cql_settings_init(struct cql_settings *set);

/* Connects to the first contact point that answers, discovers the cluster
   from system.local/system.peers and opens the pools of the local DC.
   Returns NULL and fills err_r on failure. */
struct cql_session *cql_session_create(const struct cql_settings *set,
				       struct cql_error *err_r);
/* Closes every connection. No call may be running on the session. */
void cql_session_destroy(struct cql_session **session);

struct cql_stats {
	uint64_t requests;		/* calls of query/execute/batch */
	uint64_t errors;		/* calls that returned an error */
	uint64_t retries;		/* extra attempts on the same or next host */
	uint64_t timeouts;		/* client deadlines that passed */
	uint64_t reprepares;		/* PREPARE after Unprepared */
	/* Statements with IF conditions (IF NOT EXISTS, IF EXISTS, IF col=..)
	   that were sent, i.e. lightweight transactions: the store asserts
	   that its delivery and POP3 paths send none. */
	uint64_t conditional_statements;
	uint64_t serial_reads;		/* requests at SERIAL/LOCAL_SERIAL */
	/* requests by their consistency level (indexed by its code); a
	   conditional statement's serial consistency is not counted here */
	uint64_t by_consistency[CQL_CONSISTENCY_COUNT];
	uint64_t connections_opened;
	uint64_t schema_agreement_timeouts;
};
void cql_session_stats(struct cql_session *session, struct cql_stats *stats_r);
/* Fills the address of every known node and whether it is local and up,
   "addr dc up|down", up to max entries. Returns the number of nodes. */
unsigned cql_session_hosts(struct cql_session *session, char (*lines_r)[128],
			   unsigned max);

/* Copies the address of every local-DC node not removed (up or not) into
   addrs_r, up to max. Returns the number of such nodes. */
unsigned cql_session_local_hosts(struct cql_session *session, char (*addrs_r)[64],
				 unsigned max);

struct cql_query_opts {
	enum cql_consistency consistency;	/* default LOCAL_QUORUM */
	enum cql_consistency serial_consistency; /* default CQL_SERIAL_UNSET */
	int32_t page_size;			/* 0: no paging (default) */
	const void *paging_state;		/* from cql_result_paging_state() */
	size_t paging_state_len;
	/* Safe to run twice: retried after a lost connection or a timeout,
	   and moved to the next host after Overloaded/Server_error. */
	bool idempotent;
	/* Client-side write timestamp in microseconds. 0 (default): a fresh
	   one from the process-wide monotonic generator; -1: none. Never sent
	   with conditional statements. */
	int64_t timestamp_us;
	unsigned timeout_ms;			/* 0: the session default */
	/* Send only to this node of the local DC (its address as
	   cql_session_local_hosts() gives it), with no move to another host;
	   NULL (default): the query plan. For per-node reads such as
	   system_views.settings or the node's clock. */
	const char *host;
};
void cql_query_opts_init(struct cql_query_opts *opts);

/* Runs one statement. values may be NULL; opts NULL means the defaults.
   On success returns 0 and *result_r (caller frees); on failure returns -1,
   sets *result_r to NULL and fills err_r. A SCHEMA_CHANGE result has
   already waited for schema agreement when the call returns. */
int cql_query(struct cql_session *session, const char *cql,
	      const struct cql_values *values, const struct cql_query_opts *opts,
	      struct cql_result **result_r, struct cql_error *err_r);

/* Prepares a statement (cached per session by its text; calling it again
   is cheap). Returns NULL on failure. */
struct cql_prepared *cql_prepare(struct cql_session *session, const char *cql,
				 struct cql_error *err_r);
/* Runs a prepared statement; re-prepares it on the node that answers
   Unprepared and runs it again. Same contract as cql_query(). */
int cql_execute(struct cql_session *session, struct cql_prepared *stmt,
		const struct cql_values *values, const struct cql_query_opts *opts,
		struct cql_result **result_r, struct cql_error *err_r);
/* The number of bind markers, and the type of marker i. */
unsigned cql_prepared_param_count(const struct cql_prepared *stmt);
enum cql_type_id cql_prepared_param_type(const struct cql_prepared *stmt,
					 unsigned i);
bool cql_prepared_is_conditional(const struct cql_prepared *stmt);

/* Bound values, in marker order. The builder never fails visibly: a misuse
   (a collection inside a collection, a null inside a collection, an
   unbalanced end) marks it invalid and the request then fails with
   CQL_ERR_CLIENT. Strings are copied. */
struct cql_values *cql_values_create(void);
void cql_values_free(struct cql_values **values);
void cql_values_clear(struct cql_values *values);
unsigned cql_values_count(const struct cql_values *values);
void cql_values_add_null(struct cql_values *values);
void cql_values_add_unset(struct cql_values *values);
void cql_values_add_int(struct cql_values *values, int32_t v);
void cql_values_add_bigint(struct cql_values *values, int64_t v);
void cql_values_add_bool(struct cql_values *values, bool v);
/* Milliseconds since the Unix epoch. */
void cql_values_add_timestamp(struct cql_values *values, int64_t ms);
void cql_values_add_uuid(struct cql_values *values, const uint8_t uuid[16]);
void cql_values_add_text(struct cql_values *values, const char *str);
void cql_values_add_textn(struct cql_values *values, const char *str, size_t len);
void cql_values_add_blob(struct cql_values *values, const void *data, size_t len);
/* A list, set or map value: add its elements (for a map: key, value, key,
   value, ...) with the add functions, then end it. */
void cql_values_begin_collection(struct cql_values *values, enum cql_type_id type);
void cql_values_end_collection(struct cql_values *values);

enum cql_batch_type {
	CQL_BATCH_LOGGED = 0,
	CQL_BATCH_UNLOGGED = 1,
	CQL_BATCH_COUNTER = 2,
};
struct cql_batch *cql_batch_create(enum cql_batch_type type);
void cql_batch_free(struct cql_batch **batch);
/* values may be NULL; they are copied. */
void cql_batch_add_query(struct cql_batch *batch, const char *cql,
			 const struct cql_values *values);
void cql_batch_add_prepared(struct cql_batch *batch, struct cql_prepared *stmt,
			    const struct cql_values *values);
/* Runs the batch (re-preparing its statements on Unprepared). opts'
   paging fields are ignored. */
int cql_batch_execute(struct cql_session *session, struct cql_batch *batch,
		      const struct cql_query_opts *opts, struct cql_error *err_r);

/* Results. */
enum cql_result_kind {
	CQL_RESULT_VOID = 0x0001,
	CQL_RESULT_ROWS = 0x0002,
	CQL_RESULT_SET_KEYSPACE = 0x0003,
	CQL_RESULT_PREPARED = 0x0004,
	CQL_RESULT_SCHEMA_CHANGE = 0x0005,
};

struct cql_slice {
	const uint8_t *data;
	size_t len;
};

void cql_result_free(struct cql_result **result);
enum cql_result_kind cql_result_kind(const struct cql_result *result);
unsigned cql_result_column_count(const struct cql_result *result);
/* NUL-terminated, owned by the result. */
const char *cql_result_column_name(const struct cql_result *result, unsigned col);
enum cql_type_id cql_result_column_type(const struct cql_result *result, unsigned col);
/* Index of the column, or -1. */
int cql_result_column_index(const struct cql_result *result, const char *name);
uint32_t cql_result_row_count(const struct cql_result *result);
/* Moves to the next row: true while there is one. Starts before the first. */
bool cql_result_next_row(struct cql_result *result);
void cql_result_rewind(struct cql_result *result);
/* Has_more_pages: the paging state to pass in the next request's opts. */
bool cql_result_paging_state(const struct cql_result *result,
			     const void **state_r, size_t *len_r);
/* SCHEMA_CHANGE: "CREATED" "TABLE" "ks" "name"; SET_KEYSPACE: keyspace. */
const char *cql_result_change_type(const struct cql_result *result);
const char *cql_result_change_target(const struct cql_result *result);
const char *cql_result_keyspace(const struct cql_result *result);
const char *cql_result_table(const struct cql_result *result);
/* Whether the schema agreed after this DDL (false: the wait timed out). */
bool cql_result_schema_agreed(const struct cql_result *result);
/* For a conditional statement: the [applied] column, 1/0, or -1 if none. */
int cql_result_applied(struct cql_result *result);

/* Column getters on the current row. Each returns 1 with the value, 0 if
   the cell is null, -1 if the column does not exist, has another type or
   its bytes are malformed. Text and blob slices are not NUL-terminated. */
int cql_result_get_raw(const struct cql_result *result, unsigned col,
		       struct cql_slice *value_r);
int cql_result_get_int(const struct cql_result *result, unsigned col, int32_t *value_r);
int cql_result_get_bigint(const struct cql_result *result, unsigned col, int64_t *value_r);
int cql_result_get_bool(const struct cql_result *result, unsigned col, bool *value_r);
int cql_result_get_timestamp(const struct cql_result *result, unsigned col, int64_t *ms_r);
int cql_result_get_uuid(const struct cql_result *result, unsigned col, uint8_t uuid_r[16]);
int cql_result_get_text(const struct cql_result *result, unsigned col,
			struct cql_slice *value_r);
int cql_result_get_blob(const struct cql_result *result, unsigned col,
			struct cql_slice *value_r);

/* A list/set/map cell. For a map, next() returns key, value, key, ... */
struct cql_collection {
	const uint8_t *pos, *end;
	int32_t remaining;	/* elements (map: keys + values) left */
	enum cql_type_id elem_type, value_type;	/* map: key and value types */
	uint32_t index, size;
};
int cql_result_get_collection(const struct cql_result *result, unsigned col,
			      struct cql_collection *coll_r);
/* Number of entries: elements of a list/set, pairs of a map. */
uint32_t cql_collection_size(const struct cql_collection *coll);
/* 1 with the next element, 0 at the end, -1 if malformed (or null). */
int cql_collection_next(struct cql_collection *coll, struct cql_slice *elem_r);
/* The type of the element next() returned last. */
enum cql_type_id cql_collection_type(const struct cql_collection *coll);

/* Value decoders on raw cell or element bytes: 0, or -1 if the length is
   wrong. */
int cql_decode_int(struct cql_slice v, int32_t *value_r);
int cql_decode_bigint(struct cql_slice v, int64_t *value_r);
int cql_decode_bool(struct cql_slice v, bool *value_r);
int cql_decode_uuid(struct cql_slice v, uint8_t uuid_r[16]);

/* Helpers. */
/* A fresh client timestamp in µs: max(now, last + 1), process-wide. */
int64_t cql_timestamp_now_us(void);
/* 36 characters + NUL. */
void cql_uuid_format(const uint8_t uuid[16], char out[37]);
int cql_uuid_parse(const char *str, uint8_t uuid_r[16]);
/* Whether CQL text is a conditional DML statement (an LWT). */
bool cql_statement_is_conditional(const char *cql);

#endif
