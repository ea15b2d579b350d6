/*
 * Bound values: each value is encoded as a [value] ([int] length + bytes)
 * the moment it is added, so a request only copies the buffer. A collection
 * is encoded in place: begin reserves its [int] length and element count,
 * each element is an [int]-prefixed item, end patches both.
 *
 * Invariants: count is the number of top-level values in buf; misuse
 * (nesting, a null element, end without begin) sets invalid and never
 * writes a malformed buffer that a request could send.
 */
#include "cql-private.h"

#include <stdlib.h>
#include <string.h>

struct cql_values *cql_values_create(void)
{
	struct cql_values *v = calloc(1, sizeof(*v));
	if (v == NULL)
		abort();
	return v;
}

void cql_values_free(struct cql_values **values)
{
	if (*values == NULL)
		return;
	cql_buf_free(&(*values)->buf);
	free(*values);
	*values = NULL;
}

void cql_values_clear(struct cql_values *values)
{
	values->buf.len = 0;
	values->count = 0;
	values->invalid = false;
	values->in_collection = false;
}

unsigned cql_values_count(const struct cql_values *values)
{
	return values->count;
}

/* Appends one value or collection element. len < 0: null or unset. */
static void add_raw(struct cql_values *values, const void *data, int64_t len)
{
	if (len > INT32_MAX) {
		values->invalid = true;
		return;
	}
	if (values->in_collection) {
		if (len < 0) {
			values->invalid = true;
			return;
		}
		values->coll_items++;
	} else {
		values->count++;
	}
	cql_buf_put_bytes(&values->buf, data, (int32_t)len);
}

void cql_values_add_null(struct cql_values *values)
{
	add_raw(values, NULL, -1);
}

void cql_values_add_unset(struct cql_values *values)
{
	add_raw(values, NULL, -2);
}

void cql_values_add_int(struct cql_values *values, int32_t v)
{
	uint8_t b[4] = { (uint8_t)((uint32_t)v >> 24), (uint8_t)((uint32_t)v >> 16),
			 (uint8_t)((uint32_t)v >> 8), (uint8_t)v };
	add_raw(values, b, 4);
}

void cql_values_add_bigint(struct cql_values *values, int64_t v)
{
	uint8_t b[8];
	for (unsigned i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
	add_raw(values, b, 8);
}

void cql_values_add_bool(struct cql_values *values, bool v)
{
	uint8_t b = v ? 1 : 0;
	add_raw(values, &b, 1);
}

void cql_values_add_timestamp(struct cql_values *values, int64_t ms)
{
	cql_values_add_bigint(values, ms);
}

void cql_values_add_uuid(struct cql_values *values, const uint8_t uuid[16])
{
	add_raw(values, uuid, 16);
}

void cql_values_add_text(struct cql_values *values, const char *str)
{
	add_raw(values, str, (int64_t)strlen(str));
}

void cql_values_add_textn(struct cql_values *values, const char *str, size_t len)
{
	add_raw(values, str, (int64_t)len);
}

void cql_values_add_blob(struct cql_values *values, const void *data, size_t len)
{
	add_raw(values, data, (int64_t)len);
}

void cql_values_begin_collection(struct cql_values *values, enum cql_type_id type)
{
	if (values->in_collection ||
	    (type != CQL_TYPE_LIST && type != CQL_TYPE_SET && type != CQL_TYPE_MAP)) {
		values->invalid = true;
		return;
	}
	values->count++;
	values->in_collection = true;
	values->coll_type = type;
	values->coll_start = values->buf.len;
	values->coll_items = 0;
	cql_buf_put_i32(&values->buf, 0);	/* [value] length */
	cql_buf_put_i32(&values->buf, 0);	/* element count */
}

void cql_values_end_collection(struct cql_values *values)
{
	if (!values->in_collection) {
		values->invalid = true;
		return;
	}
	values->in_collection = false;
	if (values->coll_type == CQL_TYPE_MAP && values->coll_items % 2 != 0) {
		values->invalid = true;
		return;
	}
	size_t len = values->buf.len - values->coll_start - 4;
	if (len > INT32_MAX) {
		values->invalid = true;
		return;
	}
	int32_t n = values->coll_type == CQL_TYPE_MAP ? values->coll_items / 2 :
		values->coll_items;
	cql_buf_set_i32(&values->buf, values->coll_start, (int32_t)len);
	cql_buf_set_i32(&values->buf, values->coll_start + 4, n);
}

static void values_copy(struct cql_values *dst, const struct cql_values *src)
{
	memset(dst, 0, sizeof(*dst));
	if (src == NULL)
		return;
	cql_buf_append(&dst->buf, src->buf.data, src->buf.len);
	dst->count = src->count;
	dst->invalid = src->invalid || src->in_collection;
}

struct cql_batch *cql_batch_create(enum cql_batch_type type)
{
	struct cql_batch *b = calloc(1, sizeof(*b));
	if (b == NULL)
		abort();
	b->type = type;
	return b;
}

void cql_batch_free(struct cql_batch **batch)
{
	struct cql_batch *b = *batch;
	if (b == NULL)
		return;
	for (unsigned i = 0; i < b->count; i++) {
		free(b->entries[i].cql);
		cql_buf_free(&b->entries[i].values.buf);
	}
	free(b->entries);
	free(b);
	*batch = NULL;
}

static struct cql_batch_entry *batch_add(struct cql_batch *b)
{
	if (b->count == b->cap) {
		unsigned cap = b->cap == 0 ? 8 : b->cap * 2;
		struct cql_batch_entry *e = realloc(b->entries, cap * sizeof(*e));
		if (e == NULL)
			abort();
		b->entries = e;
		b->cap = cap;
	}
	struct cql_batch_entry *e = &b->entries[b->count++];
	memset(e, 0, sizeof(*e));
	return e;
}

void cql_batch_add_query(struct cql_batch *batch, const char *cql,
			 const struct cql_values *values)
{
	struct cql_batch_entry *e = batch_add(batch);
	e->cql = cql_strndup((const uint8_t *)cql, strlen(cql));
	values_copy(&e->values, values);
	if (cql_statement_is_conditional(cql))
		batch->conditional = true;
}

void cql_batch_add_prepared(struct cql_batch *batch, struct cql_prepared *stmt,
			    const struct cql_values *values)
{
	struct cql_batch_entry *e = batch_add(batch);
	e->stmt = stmt;
	values_copy(&e->values, values);
	if (stmt->conditional)
		batch->conditional = true;
}
