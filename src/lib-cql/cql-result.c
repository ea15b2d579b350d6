/*
 * RESULT messages: metadata (column specs and type options), rows and the
 * getters that read them, and the other result kinds.
 *
 * Invariants: cql_result_decode() walks every cell of every row before it
 * returns a result, so each cell's [bytes] length is known to lie within the
 * body; getters then only check that a value has the size its type needs.
 * Type options nest at most CQL_MAX_TYPE_DEPTH deep, and counts from the
 * network are checked against the bytes left before anything is allocated
 * for them, so a hostile frame costs at most a few times its own size.
 */
#include "cql-private.h"

#include <stdlib.h>
#include <string.h>

void cql_metadata_free(struct cql_metadata *md)
{
	if (md->columns != NULL) {
		for (uint32_t i = 0; i < md->column_count; i++)
			free(md->columns[i].name);
	}
	free(md->columns);
	free(md->types);
	memset(md, 0, sizeof(*md));
}

static bool type_id_known(uint16_t id)
{
	return (id <= CQL_TYPE_TINYINT && id != 0x000A) ||
		id == 0x0015 /* duration, harmless to accept */ ||
		id == CQL_TYPE_LIST || id == CQL_TYPE_MAP || id == CQL_TYPE_SET ||
		id == CQL_TYPE_UDT || id == CQL_TYPE_TUPLE;
}

static uint32_t type_decode(struct cql_rd *rd, struct cql_metadata *md, unsigned depth)
{
	if (depth > CQL_MAX_TYPE_DEPTH) {
		rd->err = true;
		return 0;
	}
	if (md->type_count == md->type_cap) {
		uint32_t cap = md->type_cap == 0 ? 8 : md->type_cap * 2;
		struct cql_type_node *t = realloc(md->types, cap * sizeof(*t));
		if (t == NULL)
			abort();
		md->types = t;
		md->type_cap = cap;
	}
	uint32_t idx = md->type_count++;
	uint16_t id = cql_rd_u16(rd);
	md->types[idx].id = id;
	if (rd->err || !type_id_known(id)) {
		rd->err = true;
		return idx;
	}
	switch (id) {
	case CQL_TYPE_CUSTOM:
		(void)cql_rd_string(rd);
		break;
	case CQL_TYPE_LIST:
	case CQL_TYPE_SET:
		(void)type_decode(rd, md, depth + 1);
		break;
	case CQL_TYPE_MAP:
		(void)type_decode(rd, md, depth + 1);
		(void)type_decode(rd, md, depth + 1);
		break;
	case CQL_TYPE_UDT: {
		(void)cql_rd_string(rd);
		(void)cql_rd_string(rd);
		uint16_t n = cql_rd_u16(rd);
		for (uint16_t i = 0; i < n && !rd->err; i++) {
			(void)cql_rd_string(rd);
			(void)type_decode(rd, md, depth + 1);
		}
		break;
	}
	case CQL_TYPE_TUPLE: {
		uint16_t n = cql_rd_u16(rd);
		for (uint16_t i = 0; i < n && !rd->err; i++)
			(void)type_decode(rd, md, depth + 1);
		break;
	}
	default:
		break;
	}
	md->types[idx].size = md->type_count - idx;
	return idx;
}

int cql_metadata_decode(struct cql_rd *rd, struct cql_metadata *md, bool prepared_bind)
{
	memset(md, 0, sizeof(*md));
	md->flags = cql_rd_i32(rd);
	int32_t count = cql_rd_i32(rd);
	if (rd->err || count < 0 || count > 65535) {
		rd->err = true;
		return -1;
	}
	md->column_count = (uint32_t)count;
	if (prepared_bind) {
		int32_t pk_count = cql_rd_i32(rd);
		if (pk_count < 0 || (size_t)pk_count > cql_rd_left(rd) / 2) {
			rd->err = true;
			return -1;
		}
		(void)cql_rd_take(rd, (size_t)pk_count * 2);
	} else if ((md->flags & 0x0002) != 0) {
		struct cql_slice state;
		if (!cql_rd_bytes(rd, &state)) {
			/* Has_more_pages with a null state: treat as no more. */
			if (rd->err)
				return -1;
		} else {
			md->paging_state = state;
		}
	}
	if ((md->flags & 0x0004) != 0 && !prepared_bind)
		return rd->err ? -1 : 0;
	/* Each spec takes at least a name and an option id: 4 bytes. */
	if (md->column_count > cql_rd_left(rd) / 4) {
		rd->err = true;
		return -1;
	}
	bool global = (md->flags & 0x0001) != 0;
	if (global) {
		(void)cql_rd_string(rd);
		(void)cql_rd_string(rd);
	}
	md->columns = calloc(md->column_count + 1, sizeof(*md->columns));
	if (md->columns == NULL)
		abort();
	for (uint32_t i = 0; i < md->column_count && !rd->err; i++) {
		if (!global) {
			(void)cql_rd_string(rd);
			(void)cql_rd_string(rd);
		}
		struct cql_slice name = cql_rd_string(rd);
		md->columns[i].name = cql_strndup(name.data, name.len);
		md->columns[i].type = type_decode(rd, md, 0);
	}
	return rd->err ? -1 : 0;
}

static void result_free(struct cql_result *r)
{
	cql_metadata_free(&r->md);
	cql_metadata_free(&r->bind_md);
	free(r->cells);
	free(r->change_type);
	free(r->target);
	free(r->keyspace);
	free(r->table);
	free(r->body);
	free(r);
}

void cql_result_free(struct cql_result **result)
{
	if (*result == NULL)
		return;
	result_free(*result);
	*result = NULL;
}

static char *rd_strdup(struct cql_rd *rd)
{
	struct cql_slice s = cql_rd_string(rd);
	return cql_strndup(s.data, s.len);
}

static int rows_decode(struct cql_rd *rd, struct cql_result *r)
{
	if (cql_metadata_decode(rd, &r->md, false) < 0)
		return -1;
	int32_t rows = cql_rd_i32(rd);
	if (rd->err || rows < 0 || (rows > 0 && r->md.column_count == 0))
		return -1;
	r->row_count = (uint32_t)rows;
	r->rows = rd->p;
	/* Every cell is at least its 4-byte length. */
	if ((uint64_t)r->row_count * r->md.column_count > cql_rd_left(rd) / 4)
		return -1;
	for (uint64_t i = 0; i < (uint64_t)r->row_count * r->md.column_count; i++) {
		struct cql_slice cell;
		(void)cql_rd_bytes(rd, &cell);
		if (rd->err)
			return -1;
	}
	r->rows_end = rd->p;
	r->next_row = r->rows;
	r->cells = calloc(r->md.column_count + 1, sizeof(*r->cells));
	if (r->cells == NULL)
		abort();
	return 0;
}

int cql_result_decode(uint8_t *body, struct cql_rd *rd, struct cql_result **result_r,
		      struct cql_error *err)
{
	struct cql_result *r = calloc(1, sizeof(*r));
	if (r == NULL)
		abort();
	r->body = body;
	r->schema_agreed = true;
	int32_t kind = cql_rd_i32(rd);
	int ret = 0;

	r->kind = (enum cql_result_kind)kind;
	switch (kind) {
	case CQL_RESULT_VOID:
		break;
	case CQL_RESULT_ROWS:
		ret = rows_decode(rd, r);
		break;
	case CQL_RESULT_SET_KEYSPACE:
		r->keyspace = rd_strdup(rd);
		break;
	case CQL_RESULT_PREPARED: {
		struct cql_slice id = cql_rd_short_bytes(rd);
		if (id.len == 0 || id.len > CQL_MAX_PREPARED_ID) {
			ret = -1;
			break;
		}
		memcpy(r->prepared_id, id.data, id.len);
		r->prepared_id_len = (uint16_t)id.len;
		if (cql_metadata_decode(rd, &r->bind_md, true) < 0 ||
		    cql_metadata_decode(rd, &r->md, false) < 0)
			ret = -1;
		break;
	}
	case CQL_RESULT_SCHEMA_CHANGE:
		r->change_type = rd_strdup(rd);
		r->target = rd_strdup(rd);
		r->keyspace = rd_strdup(rd);
		if (strcmp(r->target, "KEYSPACE") != 0)
			r->table = rd_strdup(rd);
		if (strcmp(r->target, "FUNCTION") == 0 || strcmp(r->target, "AGGREGATE") == 0)
			cql_rd_skip_string_list(rd);
		break;
	default:
		ret = -1;
		break;
	}
	if (ret < 0 || rd->err) {
		cql_errorf(err, CQL_ERR_PROTOCOL, "malformed RESULT (kind %d)", (int)kind);
		result_free(r);
		*result_r = NULL;
		return -1;
	}
	*result_r = r;
	return 0;
}

enum cql_result_kind cql_result_kind(const struct cql_result *result)
{
	return result->kind;
}

unsigned cql_result_column_count(const struct cql_result *result)
{
	return result->md.column_count;
}

const char *cql_result_column_name(const struct cql_result *result, unsigned col)
{
	if (col >= result->md.column_count || result->md.columns == NULL)
		return NULL;
	return result->md.columns[col].name;
}

static enum cql_type_id md_type(const struct cql_metadata *md, unsigned col)
{
	if (col >= md->column_count || md->columns == NULL)
		return CQL_TYPE_UNKNOWN;
	return (enum cql_type_id)md->types[md->columns[col].type].id;
}

enum cql_type_id cql_result_column_type(const struct cql_result *result, unsigned col)
{
	return md_type(&result->md, col);
}

int cql_result_column_index(const struct cql_result *result, const char *name)
{
	if (result->md.columns == NULL)
		return -1;
	for (uint32_t i = 0; i < result->md.column_count; i++) {
		if (strcmp(result->md.columns[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

uint32_t cql_result_row_count(const struct cql_result *result)
{
	return result->row_count;
}

bool cql_result_next_row(struct cql_result *result)
{
	struct cql_rd rd;

	result->row_valid = false;
	if (result->kind != CQL_RESULT_ROWS || result->rows_loaded >= result->row_count)
		return false;
	cql_rd_init(&rd, result->next_row, (size_t)(result->rows_end - result->next_row));
	for (uint32_t c = 0; c < result->md.column_count; c++)
		(void)cql_rd_bytes(&rd, &result->cells[c]);
	if (rd.err)
		return false;	/* cannot happen: validated in rows_decode() */
	result->next_row = rd.p;
	result->rows_loaded++;
	result->row_valid = true;
	return true;
}

void cql_result_rewind(struct cql_result *result)
{
	result->next_row = result->rows;
	result->rows_loaded = 0;
	result->row_valid = false;
}

bool cql_result_paging_state(const struct cql_result *result,
			     const void **state_r, size_t *len_r)
{
	if (result->kind != CQL_RESULT_ROWS || result->md.paging_state.data == NULL) {
		*state_r = NULL;
		*len_r = 0;
		return false;
	}
	*state_r = result->md.paging_state.data;
	*len_r = result->md.paging_state.len;
	return true;
}

const char *cql_result_change_type(const struct cql_result *result)
{
	return result->change_type;
}

const char *cql_result_change_target(const struct cql_result *result)
{
	return result->target;
}

const char *cql_result_keyspace(const struct cql_result *result)
{
	return result->keyspace;
}

const char *cql_result_table(const struct cql_result *result)
{
	return result->table;
}

bool cql_result_schema_agreed(const struct cql_result *result)
{
	return result->schema_agreed;
}

int cql_result_get_raw(const struct cql_result *result, unsigned col,
		       struct cql_slice *value_r)
{
	value_r->data = NULL;
	value_r->len = 0;
	if (!result->row_valid || col >= result->md.column_count)
		return -1;
	*value_r = result->cells[col];
	return value_r->data == NULL ? 0 : 1;
}

/* The raw cell if the column has one of the types (UNKNOWN matches any). */
static int get_typed(const struct cql_result *result, unsigned col,
		     struct cql_slice *value_r, const enum cql_type_id *types, unsigned n)
{
	enum cql_type_id t = cql_result_column_type(result, col);
	bool ok = t == CQL_TYPE_UNKNOWN;

	for (unsigned i = 0; i < n && !ok; i++)
		ok = types[i] == t;
	if (!ok)
		return -1;
	return cql_result_get_raw(result, col, value_r);
}

int cql_decode_int(struct cql_slice v, int32_t *value_r)
{
	if (v.len != 4)
		return -1;
	*value_r = (int32_t)(((uint32_t)v.data[0] << 24) | ((uint32_t)v.data[1] << 16) |
			     ((uint32_t)v.data[2] << 8) | v.data[3]);
	return 0;
}

int cql_decode_bigint(struct cql_slice v, int64_t *value_r)
{
	uint64_t u = 0;
	if (v.len != 8)
		return -1;
	for (unsigned i = 0; i < 8; i++)
		u = (u << 8) | v.data[i];
	*value_r = (int64_t)u;
	return 0;
}

int cql_decode_bool(struct cql_slice v, bool *value_r)
{
	if (v.len != 1)
		return -1;
	*value_r = v.data[0] != 0;
	return 0;
}

int cql_decode_uuid(struct cql_slice v, uint8_t uuid_r[16])
{
	if (v.len != 16)
		return -1;
	memcpy(uuid_r, v.data, 16);
	return 0;
}

#define GETTER(name, ctype, decoder, ...) \
int cql_result_get_##name(const struct cql_result *result, unsigned col, ctype *value_r) \
{ \
	static const enum cql_type_id types[] = { __VA_ARGS__ }; \
	struct cql_slice v; \
	int ret = get_typed(result, col, &v, types, sizeof(types) / sizeof(types[0])); \
	if (ret <= 0) \
		return ret; \
	return decoder(v, value_r) < 0 ? -1 : 1; \
}

GETTER(int, int32_t, cql_decode_int, CQL_TYPE_INT)
GETTER(bigint, int64_t, cql_decode_bigint, CQL_TYPE_BIGINT, CQL_TYPE_COUNTER)
GETTER(timestamp, int64_t, cql_decode_bigint, CQL_TYPE_TIMESTAMP)
GETTER(bool, bool, cql_decode_bool, CQL_TYPE_BOOLEAN)

int cql_result_get_uuid(const struct cql_result *result, unsigned col, uint8_t uuid_r[16])
{
	static const enum cql_type_id types[] = { CQL_TYPE_UUID, CQL_TYPE_TIMEUUID };
	struct cql_slice v;
	int ret = get_typed(result, col, &v, types, 2);
	if (ret <= 0)
		return ret;
	return cql_decode_uuid(v, uuid_r) < 0 ? -1 : 1;
}

int cql_result_get_text(const struct cql_result *result, unsigned col,
			struct cql_slice *value_r)
{
	static const enum cql_type_id types[] = { CQL_TYPE_VARCHAR, CQL_TYPE_ASCII };
	return get_typed(result, col, value_r, types, 2);
}

int cql_result_get_blob(const struct cql_result *result, unsigned col,
			struct cql_slice *value_r)
{
	static const enum cql_type_id types[] = { CQL_TYPE_BLOB };
	return get_typed(result, col, value_r, types, 1);
}

int cql_result_applied(struct cql_result *result)
{
	bool applied;
	int col = cql_result_column_index(result, "[applied]");

	if (col < 0)
		return -1;
	if (!result->row_valid) {
		cql_result_rewind(result);
		if (!cql_result_next_row(result))
			return -1;
	}
	if (cql_result_get_bool(result, (unsigned)col, &applied) <= 0)
		return -1;
	return applied ? 1 : 0;
}

int cql_result_get_collection(const struct cql_result *result, unsigned col,
			      struct cql_collection *coll_r)
{
	struct cql_slice v;
	struct cql_rd rd;

	memset(coll_r, 0, sizeof(*coll_r));
	if (!result->row_valid || col >= result->md.column_count)
		return -1;
	enum cql_type_id t = cql_result_column_type(result, col);
	if (t != CQL_TYPE_LIST && t != CQL_TYPE_SET && t != CQL_TYPE_MAP)
		return -1;
	int ret = cql_result_get_raw(result, col, &v);
	if (ret <= 0)
		return ret;
	const struct cql_type_node *node = &result->md.types[result->md.columns[col].type];
	coll_r->elem_type = (enum cql_type_id)node[1].id;
	coll_r->value_type = t == CQL_TYPE_MAP ?
		(enum cql_type_id)node[1 + node[1].size].id : coll_r->elem_type;
	cql_rd_init(&rd, v.data, v.len);
	int32_t n = cql_rd_i32(&rd);
	/* Each element takes at least its 4-byte length. */
	if (rd.err || n < 0 || (uint64_t)n * (t == CQL_TYPE_MAP ? 2 : 1) > cql_rd_left(&rd) / 4)
		return -1;
	coll_r->size = (uint32_t)n;
	coll_r->remaining = t == CQL_TYPE_MAP ? n * 2 : n;
	coll_r->pos = rd.p;
	coll_r->end = rd.end;
	return 1;
}

uint32_t cql_collection_size(const struct cql_collection *coll)
{
	return coll->size;
}

int cql_collection_next(struct cql_collection *coll, struct cql_slice *elem_r)
{
	struct cql_rd rd;

	elem_r->data = NULL;
	elem_r->len = 0;
	if (coll->remaining <= 0)
		return 0;
	cql_rd_init(&rd, coll->pos, (size_t)(coll->end - coll->pos));
	if (!cql_rd_bytes(&rd, elem_r)) {
		coll->remaining = 0;
		return -1;
	}
	if (elem_r->data == NULL)
		elem_r->data = coll->pos + 4;	/* empty, not null */
	coll->pos = rd.p;
	coll->remaining--;
	coll->index++;
	return 1;
}

enum cql_type_id cql_collection_type(const struct cql_collection *coll)
{
	return coll->index % 2 == 0 ? coll->value_type : coll->elem_type;
}
