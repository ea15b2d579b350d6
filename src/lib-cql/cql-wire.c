/*
 * The protocol's notation ([short], [int], [string], [bytes], ...) in both
 * directions. The writer grows an owning buffer; the reader is bounded by
 * its end pointer and never reads past it: an overrun sets a sticky error
 * flag and yields zeros or empty slices, so a decoder can read a whole
 * message and check rd->err once. Lengths from the network are checked
 * against the bytes left before any pointer arithmetic.
 */
#include "cql-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cql_buf_free(struct cql_buf *buf)
{
	free(buf->data);
	buf->data = NULL;
	buf->len = buf->cap = 0;
}

void cql_buf_reserve(struct cql_buf *buf, size_t extra)
{
	if (extra > SIZE_MAX / 2 - buf->len)
		abort();
	if (buf->len + extra <= buf->cap)
		return;
	size_t cap = buf->cap < 256 ? 256 : buf->cap;
	while (cap < buf->len + extra)
		cap *= 2;
	uint8_t *data = realloc(buf->data, cap);
	if (data == NULL)
		abort();
	buf->data = data;
	buf->cap = cap;
}

void cql_buf_append(struct cql_buf *buf, const void *data, size_t len)
{
	cql_buf_reserve(buf, len);
	if (len > 0)
		memcpy(buf->data + buf->len, data, len);
	buf->len += len;
}

void cql_buf_put_u8(struct cql_buf *buf, uint8_t v)
{
	cql_buf_append(buf, &v, 1);
}

void cql_buf_put_u16(struct cql_buf *buf, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
	cql_buf_append(buf, b, 2);
}

void cql_buf_put_i32(struct cql_buf *buf, int32_t v)
{
	cql_buf_reserve(buf, 4);
	cql_buf_set_i32(buf, buf->len, v);
	buf->len += 4;
}

void cql_buf_set_i32(struct cql_buf *buf, size_t at, int32_t v)
{
	uint32_t u = (uint32_t)v;
	buf->data[at] = (uint8_t)(u >> 24);
	buf->data[at + 1] = (uint8_t)(u >> 16);
	buf->data[at + 2] = (uint8_t)(u >> 8);
	buf->data[at + 3] = (uint8_t)u;
}

void cql_buf_put_i64(struct cql_buf *buf, int64_t v)
{
	uint64_t u = (uint64_t)v;
	cql_buf_put_i32(buf, (int32_t)(uint32_t)(u >> 32));
	cql_buf_put_i32(buf, (int32_t)(uint32_t)u);
}

void cql_buf_put_string(struct cql_buf *buf, const char *str)
{
	size_t len = strlen(str);
	if (len > UINT16_MAX)
		len = UINT16_MAX;
	cql_buf_put_u16(buf, (uint16_t)len);
	cql_buf_append(buf, str, len);
}

void cql_buf_put_long_string(struct cql_buf *buf, const char *str, size_t len)
{
	if (len > INT32_MAX)
		abort();
	cql_buf_put_i32(buf, (int32_t)len);
	cql_buf_append(buf, str, len);
}

void cql_buf_put_bytes(struct cql_buf *buf, const void *data, int32_t len)
{
	cql_buf_put_i32(buf, len);
	if (len > 0)
		cql_buf_append(buf, data, (size_t)len);
}

void cql_buf_put_short_bytes(struct cql_buf *buf, const void *data, uint16_t len)
{
	cql_buf_put_u16(buf, len);
	cql_buf_append(buf, data, len);
}

void cql_rd_init(struct cql_rd *rd, const void *data, size_t len)
{
	rd->p = data;
	rd->end = rd->p == NULL ? NULL : rd->p + len;
	rd->err = false;
}

size_t cql_rd_left(const struct cql_rd *rd)
{
	return rd->err ? 0 : (size_t)(rd->end - rd->p);
}

const uint8_t *cql_rd_take(struct cql_rd *rd, size_t n)
{
	if (rd->err || n > (size_t)(rd->end - rd->p)) {
		rd->err = true;
		return NULL;
	}
	const uint8_t *p = rd->p;
	rd->p += n;
	return p;
}

uint8_t cql_rd_u8(struct cql_rd *rd)
{
	const uint8_t *p = cql_rd_take(rd, 1);
	return p == NULL ? 0 : p[0];
}

uint16_t cql_rd_u16(struct cql_rd *rd)
{
	const uint8_t *p = cql_rd_take(rd, 2);
	return p == NULL ? 0 : (uint16_t)((p[0] << 8) | p[1]);
}

int32_t cql_rd_i32(struct cql_rd *rd)
{
	const uint8_t *p = cql_rd_take(rd, 4);
	if (p == NULL)
		return 0;
	return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
			 ((uint32_t)p[2] << 8) | p[3]);
}

int64_t cql_rd_i64(struct cql_rd *rd)
{
	uint64_t hi = (uint32_t)cql_rd_i32(rd);
	uint64_t lo = (uint32_t)cql_rd_i32(rd);
	return (int64_t)((hi << 32) | lo);
}

struct cql_slice cql_rd_string(struct cql_rd *rd)
{
	struct cql_slice s = { NULL, 0 };
	uint16_t n = cql_rd_u16(rd);
	const uint8_t *p = cql_rd_take(rd, n);
	if (p != NULL) {
		s.data = p;
		s.len = n;
	}
	return s;
}

bool cql_rd_bytes(struct cql_rd *rd, struct cql_slice *slice_r)
{
	int32_t n = cql_rd_i32(rd);
	slice_r->data = NULL;
	slice_r->len = 0;
	if (n < 0 || rd->err)
		return false;
	const uint8_t *p = cql_rd_take(rd, (size_t)n);
	if (p == NULL)
		return false;
	slice_r->data = p;
	slice_r->len = (size_t)n;
	return true;
}

struct cql_slice cql_rd_short_bytes(struct cql_rd *rd)
{
	return cql_rd_string(rd);
}

void cql_rd_skip_string_list(struct cql_rd *rd)
{
	uint16_t n = cql_rd_u16(rd);
	for (uint16_t i = 0; i < n && !rd->err; i++)
		(void)cql_rd_string(rd);
}

void cql_rd_string_to(struct cql_rd *rd, char *out, size_t size)
{
	struct cql_slice s = cql_rd_string(rd);
	size_t n = s.len < size - 1 ? s.len : size - 1;
	if (n > 0)
		memcpy(out, s.data, n);
	out[n] = '\0';
}

char *cql_strndup(const uint8_t *data, size_t len)
{
	char *s = malloc(len + 1);
	if (s == NULL)
		abort();
	if (len > 0)
		memcpy(s, data, len);
	s[len] = '\0';
	return s;
}

void cql_errorf(struct cql_error *err, enum cql_error_kind kind, const char *fmt, ...)
{
	va_list args;
	memset(err, 0, sizeof(*err));
	err->kind = kind;
	va_start(args, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, args);
	va_end(args);
}

int64_t cql_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
