/*
 * Frames and messages of protocol v4: the incremental splitter for the
 * server's byte stream, the request encoders and the decoders of ERROR,
 * EVENT and SUPPORTED. RESULT bodies are decoded in cql-result.c.
 *
 * Invariants: a frame header is accepted only with version 0x84, no
 * compression flag and a length within the configured cap, so a hostile
 * server can make us allocate at most max_body bytes per frame. Every
 * decoder reads through struct cql_rd and reports malformed input as
 * CQL_ERR_PROTOCOL; none trusts a length it has not checked.
 */
#include "cql-private.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CQL_DRIVER_NAME "tern-cql"
#define CQL_DRIVER_VERSION "1.0"

void cql_frame_free(struct cql_frame *frame)
{
	free(frame->body);
	frame->body = NULL;
	frame->length = 0;
}

void cql_frame_parser_init(struct cql_frame_parser *parser, uint32_t max_body)
{
	memset(parser, 0, sizeof(*parser));
	parser->max_body = max_body;
}

void cql_frame_parser_deinit(struct cql_frame_parser *parser)
{
	cql_frame_free(&parser->cur);
}

static int frame_header_parse(struct cql_frame_parser *parser, const char **error_r)
{
	const uint8_t *h = parser->hdr;
	struct cql_frame *f = &parser->cur;

	f->version = h[0];
	f->flags = h[1];
	f->stream = (int16_t)(uint16_t)((h[2] << 8) | h[3]);
	f->opcode = h[4];
	f->length = ((uint32_t)h[5] << 24) | ((uint32_t)h[6] << 16) |
		((uint32_t)h[7] << 8) | h[8];
	if (f->version != CQL_VERSION_RESPONSE) {
		*error_r = "unexpected protocol version in frame";
		return -1;
	}
	if ((f->flags & CQL_FRAME_FLAG_COMPRESSED) != 0) {
		*error_r = "compressed frame, but no compression was negotiated";
		return -1;
	}
	if (f->length > parser->max_body) {
		*error_r = "frame larger than the configured maximum";
		return -1;
	}
	f->body = NULL;
	if (f->length > 0) {
		f->body = malloc(f->length);
		if (f->body == NULL)
			abort();
	}
	return 0;
}

int cql_frame_parser_feed(struct cql_frame_parser *parser, const uint8_t *data,
			  size_t len, size_t *consumed_r, struct cql_frame *frame_r,
			  const char **error_r)
{
	size_t pos = 0;

	*consumed_r = 0;
	if (parser->failed) {
		*error_r = "frame parser already failed";
		return -1;
	}
	if (parser->hdr_have < CQL_HEADER_SIZE) {
		size_t n = CQL_HEADER_SIZE - parser->hdr_have;
		if (n > len)
			n = len;
		memcpy(parser->hdr + parser->hdr_have, data, n);
		parser->hdr_have += n;
		pos += n;
		*consumed_r = pos;
		if (parser->hdr_have < CQL_HEADER_SIZE)
			return 0;
		if (frame_header_parse(parser, error_r) < 0) {
			parser->failed = true;
			return -1;
		}
		parser->body_have = 0;
	}
	size_t need = parser->cur.length - parser->body_have;
	size_t n = len - pos < need ? len - pos : need;
	if (n > 0) {
		memcpy(parser->cur.body + parser->body_have, data + pos, n);
		parser->body_have += n;
		pos += n;
	}
	*consumed_r = pos;
	if (parser->body_have < parser->cur.length)
		return 0;
	*frame_r = parser->cur;
	memset(&parser->cur, 0, sizeof(parser->cur));
	parser->hdr_have = 0;
	parser->body_have = 0;
	return 1;
}

void cql_frame_begin(struct cql_buf *buf, uint8_t opcode)
{
	uint8_t h[CQL_HEADER_SIZE] = { CQL_VERSION_REQUEST, 0, 0, 0, opcode, 0, 0, 0, 0 };
	cql_buf_append(buf, h, sizeof(h));
}

void cql_frame_end(struct cql_buf *buf, size_t frame_start)
{
	size_t body = buf->len - frame_start - CQL_HEADER_SIZE;
	if (body > INT32_MAX)
		abort();
	cql_buf_set_i32(buf, frame_start + 5, (int32_t)body);
}

void cql_frame_set_stream(uint8_t *frame, int16_t stream)
{
	frame[2] = (uint8_t)((uint16_t)stream >> 8);
	frame[3] = (uint8_t)stream;
}

void cql_msg_startup(struct cql_buf *buf)
{
	size_t start = buf->len;
	cql_frame_begin(buf, CQL_OP_STARTUP);
	cql_buf_put_u16(buf, 3);
	cql_buf_put_string(buf, "CQL_VERSION");
	cql_buf_put_string(buf, "3.0.0");
	cql_buf_put_string(buf, "DRIVER_NAME");
	cql_buf_put_string(buf, CQL_DRIVER_NAME);
	cql_buf_put_string(buf, "DRIVER_VERSION");
	cql_buf_put_string(buf, CQL_DRIVER_VERSION);
	cql_frame_end(buf, start);
}

void cql_msg_options(struct cql_buf *buf)
{
	size_t start = buf->len;
	cql_frame_begin(buf, CQL_OP_OPTIONS);
	cql_frame_end(buf, start);
}

void cql_msg_auth_response(struct cql_buf *buf, const char *user, const char *password)
{
	size_t start = buf->len, ulen = strlen(user), plen = strlen(password);
	cql_frame_begin(buf, CQL_OP_AUTH_RESPONSE);
	if (ulen + plen + 2 > INT32_MAX)
		abort();
	/* SASL PLAIN: authzid (empty) NUL authcid NUL password */
	cql_buf_put_i32(buf, (int32_t)(ulen + plen + 2));
	cql_buf_put_u8(buf, 0);
	cql_buf_append(buf, user, ulen);
	cql_buf_put_u8(buf, 0);
	cql_buf_append(buf, password, plen);
	cql_frame_end(buf, start);
}

void cql_msg_register(struct cql_buf *buf)
{
	size_t start = buf->len;
	cql_frame_begin(buf, CQL_OP_REGISTER);
	cql_buf_put_u16(buf, 3);
	cql_buf_put_string(buf, "TOPOLOGY_CHANGE");
	cql_buf_put_string(buf, "STATUS_CHANGE");
	cql_buf_put_string(buf, "SCHEMA_CHANGE");
	cql_frame_end(buf, start);
}

void cql_msg_prepare(struct cql_buf *buf, const char *cql)
{
	size_t start = buf->len;
	cql_frame_begin(buf, CQL_OP_PREPARE);
	cql_buf_put_long_string(buf, cql, strlen(cql));
	cql_frame_end(buf, start);
}

static void put_values(struct cql_buf *buf, const struct cql_values *values)
{
	cql_buf_put_u16(buf, (uint16_t)values->count);
	cql_buf_append(buf, values->buf.data, values->buf.len);
}

static int check_values(const struct cql_values *values)
{
	if (values == NULL)
		return 0;
	if (values->invalid || values->in_collection || values->count > UINT16_MAX)
		return -1;
	return 0;
}

static void put_query_params(struct cql_buf *buf, const struct cql_params *p)
{
	uint8_t flags = 0;

	if (p->values != NULL && p->values->count > 0)
		flags |= CQL_QFLAG_VALUES;
	if (p->page_size > 0)
		flags |= CQL_QFLAG_PAGE_SIZE;
	if (p->paging_state != NULL)
		flags |= CQL_QFLAG_PAGING_STATE;
	if (p->serial_consistency != CQL_SERIAL_UNSET)
		flags |= CQL_QFLAG_SERIAL;
	if (p->timestamp_us >= 0)
		flags |= CQL_QFLAG_TIMESTAMP;
	cql_buf_put_u16(buf, (uint16_t)p->consistency);
	cql_buf_put_u8(buf, flags);
	if ((flags & CQL_QFLAG_VALUES) != 0)
		put_values(buf, p->values);
	if ((flags & CQL_QFLAG_PAGE_SIZE) != 0)
		cql_buf_put_i32(buf, p->page_size);
	if ((flags & CQL_QFLAG_PAGING_STATE) != 0)
		cql_buf_put_bytes(buf, p->paging_state, (int32_t)p->paging_state_len);
	if ((flags & CQL_QFLAG_SERIAL) != 0)
		cql_buf_put_u16(buf, (uint16_t)p->serial_consistency);
	if ((flags & CQL_QFLAG_TIMESTAMP) != 0)
		cql_buf_put_i64(buf, p->timestamp_us);
}

int cql_msg_query(struct cql_buf *buf, const char *cql, const struct cql_params *p)
{
	if (check_values(p->values) < 0 || p->paging_state_len > INT32_MAX)
		return -1;
	size_t start = buf->len;
	cql_frame_begin(buf, CQL_OP_QUERY);
	cql_buf_put_long_string(buf, cql, strlen(cql));
	put_query_params(buf, p);
	cql_frame_end(buf, start);
	return 0;
}

int cql_msg_execute(struct cql_buf *buf, const uint8_t *id, uint16_t id_len,
		    const struct cql_params *p)
{
	if (check_values(p->values) < 0 || p->paging_state_len > INT32_MAX)
		return -1;
	size_t start = buf->len;
	cql_frame_begin(buf, CQL_OP_EXECUTE);
	cql_buf_put_short_bytes(buf, id, id_len);
	put_query_params(buf, p);
	cql_frame_end(buf, start);
	return 0;
}

int cql_msg_batch(struct cql_buf *buf, const struct cql_batch *batch,
		  const struct cql_params *p)
{
	uint8_t flags = 0;

	if (batch->count > UINT16_MAX)
		return -1;
	for (unsigned i = 0; i < batch->count; i++) {
		if (check_values(&batch->entries[i].values) < 0)
			return -1;
	}
	size_t start = buf->len;
	cql_frame_begin(buf, CQL_OP_BATCH);
	cql_buf_put_u8(buf, (uint8_t)batch->type);
	cql_buf_put_u16(buf, (uint16_t)batch->count);
	for (unsigned i = 0; i < batch->count; i++) {
		const struct cql_batch_entry *e = &batch->entries[i];
		if (e->stmt == NULL) {
			cql_buf_put_u8(buf, 0);
			cql_buf_put_long_string(buf, e->cql, strlen(e->cql));
		} else {
			cql_buf_put_u8(buf, 1);
			cql_buf_put_short_bytes(buf, e->stmt->id, e->stmt->id_len);
		}
		put_values(buf, &e->values);
	}
	if (p->serial_consistency != CQL_SERIAL_UNSET)
		flags |= CQL_QFLAG_SERIAL;
	if (p->timestamp_us >= 0)
		flags |= CQL_QFLAG_TIMESTAMP;
	cql_buf_put_u16(buf, (uint16_t)p->consistency);
	cql_buf_put_u8(buf, flags);
	if ((flags & CQL_QFLAG_SERIAL) != 0)
		cql_buf_put_u16(buf, (uint16_t)p->serial_consistency);
	if ((flags & CQL_QFLAG_TIMESTAMP) != 0)
		cql_buf_put_i64(buf, p->timestamp_us);
	cql_frame_end(buf, start);
	return 0;
}

int cql_frame_message(const struct cql_frame *frame, struct cql_rd *rd_r)
{
	cql_rd_init(rd_r, frame->body, frame->length);
	if ((frame->flags & CQL_FRAME_FLAG_TRACING) != 0)
		(void)cql_rd_take(rd_r, 16);
	if ((frame->flags & CQL_FRAME_FLAG_WARNING) != 0)
		cql_rd_skip_string_list(rd_r);
	if ((frame->flags & CQL_FRAME_FLAG_PAYLOAD) != 0) {
		uint16_t n = cql_rd_u16(rd_r);
		struct cql_slice v;
		for (uint16_t i = 0; i < n && !rd_r->err; i++) {
			(void)cql_rd_string(rd_r);
			(void)cql_rd_bytes(rd_r, &v);
		}
	}
	return rd_r->err ? -1 : 0;
}

static const struct {
	int32_t code;
	enum cql_error_kind kind;
} error_codes[] = {
	{ 0x0000, CQL_ERR_SERVER },
	{ 0x000A, CQL_ERR_PROTOCOL },
	{ 0x0100, CQL_ERR_BAD_CREDENTIALS },
	{ 0x1000, CQL_ERR_UNAVAILABLE },
	{ 0x1001, CQL_ERR_OVERLOADED },
	{ 0x1002, CQL_ERR_IS_BOOTSTRAPPING },
	{ 0x1003, CQL_ERR_TRUNCATE },
	{ 0x1100, CQL_ERR_WRITE_TIMEOUT },
	{ 0x1200, CQL_ERR_READ_TIMEOUT },
	{ 0x1300, CQL_ERR_READ_FAILURE },
	{ 0x1400, CQL_ERR_FUNCTION_FAILURE },
	{ 0x1500, CQL_ERR_WRITE_FAILURE },
	{ 0x2000, CQL_ERR_SYNTAX },
	{ 0x2100, CQL_ERR_UNAUTHORIZED },
	{ 0x2200, CQL_ERR_INVALID },
	{ 0x2300, CQL_ERR_CONFIG },
	{ 0x2400, CQL_ERR_ALREADY_EXISTS },
	{ 0x2500, CQL_ERR_UNPREPARED },
};

static const char *const write_type_names[] = {
	[CQL_WRITE_NONE] = "",
	[CQL_WRITE_SIMPLE] = "SIMPLE",
	[CQL_WRITE_BATCH] = "BATCH",
	[CQL_WRITE_UNLOGGED_BATCH] = "UNLOGGED_BATCH",
	[CQL_WRITE_COUNTER] = "COUNTER",
	[CQL_WRITE_BATCH_LOG] = "BATCH_LOG",
	[CQL_WRITE_CAS] = "CAS",
	[CQL_WRITE_VIEW] = "VIEW",
	[CQL_WRITE_CDC] = "CDC",
	[CQL_WRITE_OTHER] = "OTHER",
};

const char *cql_write_type_name(enum cql_write_type type)
{
	if ((unsigned)type > CQL_WRITE_OTHER)
		return "?";
	return write_type_names[type];
}

static enum cql_write_type write_type_parse(struct cql_slice s)
{
	for (unsigned i = CQL_WRITE_SIMPLE; i < CQL_WRITE_OTHER; i++) {
		if (strlen(write_type_names[i]) == s.len &&
		    memcmp(write_type_names[i], s.data, s.len) == 0)
			return (enum cql_write_type)i;
	}
	return CQL_WRITE_OTHER;
}

int cql_error_decode(const uint8_t *body, size_t len, struct cql_error *err)
{
	struct cql_rd rd;

	memset(err, 0, sizeof(*err));
	cql_rd_init(&rd, body, len);
	err->code = cql_rd_i32(&rd);
	cql_rd_string_to(&rd, err->message, sizeof(err->message));
	err->kind = CQL_ERR_SERVER;
	for (size_t i = 0; i < sizeof(error_codes) / sizeof(error_codes[0]); i++) {
		if (error_codes[i].code == err->code)
			err->kind = error_codes[i].kind;
	}
	switch (err->kind) {
	case CQL_ERR_UNAVAILABLE:
		err->consistency = (enum cql_consistency)cql_rd_u16(&rd);
		err->required = cql_rd_i32(&rd);
		err->received = cql_rd_i32(&rd);
		break;
	case CQL_ERR_WRITE_TIMEOUT:
		err->consistency = (enum cql_consistency)cql_rd_u16(&rd);
		err->received = cql_rd_i32(&rd);
		err->required = cql_rd_i32(&rd);
		err->write_type = write_type_parse(cql_rd_string(&rd));
		break;
	case CQL_ERR_READ_TIMEOUT:
		err->consistency = (enum cql_consistency)cql_rd_u16(&rd);
		err->received = cql_rd_i32(&rd);
		err->required = cql_rd_i32(&rd);
		err->data_present = cql_rd_u8(&rd) != 0;
		break;
	case CQL_ERR_READ_FAILURE:
		err->consistency = (enum cql_consistency)cql_rd_u16(&rd);
		err->received = cql_rd_i32(&rd);
		err->required = cql_rd_i32(&rd);
		err->failures = cql_rd_i32(&rd);
		err->data_present = cql_rd_u8(&rd) != 0;
		break;
	case CQL_ERR_WRITE_FAILURE:
		err->consistency = (enum cql_consistency)cql_rd_u16(&rd);
		err->received = cql_rd_i32(&rd);
		err->required = cql_rd_i32(&rd);
		err->failures = cql_rd_i32(&rd);
		err->write_type = write_type_parse(cql_rd_string(&rd));
		break;
	case CQL_ERR_FUNCTION_FAILURE:
		(void)cql_rd_string(&rd);
		(void)cql_rd_string(&rd);
		cql_rd_skip_string_list(&rd);
		break;
	case CQL_ERR_ALREADY_EXISTS:
		(void)cql_rd_string(&rd);
		(void)cql_rd_string(&rd);
		break;
	case CQL_ERR_UNPREPARED: {
		struct cql_slice id = cql_rd_short_bytes(&rd);
		if (id.len > CQL_MAX_PREPARED_ID) {
			rd.err = true;
			break;
		}
		if (id.len > 0)
			memcpy(err->unprepared_id, id.data, id.len);
		err->unprepared_id_len = (uint16_t)id.len;
		break;
	}
	default:
		break;
	}
	if (rd.err) {
		int32_t code = err->code;
		cql_errorf(err, CQL_ERR_PROTOCOL, "malformed ERROR body (code 0x%04x)",
			   (unsigned)code);
		return -1;
	}
	return 0;
}

int cql_response_decode(struct cql_frame *frame, struct cql_result **result_r,
			struct cql_error *err)
{
	struct cql_rd rd;

	*result_r = NULL;
	if (cql_frame_message(frame, &rd) < 0) {
		cql_errorf(err, CQL_ERR_PROTOCOL, "malformed response prefix");
		return -1;
	}
	switch (frame->opcode) {
	case CQL_OP_ERROR:
		(void)cql_error_decode(rd.p, cql_rd_left(&rd), err);
		return -1;
	case CQL_OP_RESULT: {
		/* The result takes the body over, even when it fails. */
		uint8_t *body = frame->body;
		frame->body = NULL;
		frame->length = 0;
		return cql_result_decode(body, &rd, result_r, err);
	}
	default:
		cql_errorf(err, CQL_ERR_PROTOCOL, "unexpected response opcode 0x%02x",
			   frame->opcode);
		return -1;
	}
}

static void rd_inet(struct cql_rd *rd, char *out, size_t size, uint16_t *port_r)
{
	uint8_t n = cql_rd_u8(rd);
	const uint8_t *a = (n == 4 || n == 16) ? cql_rd_take(rd, n) : NULL;
	int32_t port = cql_rd_i32(rd);

	out[0] = '\0';
	if (a == NULL || rd->err) {
		rd->err = true;
		return;
	}
	if (inet_ntop(n == 4 ? AF_INET : AF_INET6, a, out, (socklen_t)size) == NULL)
		rd->err = true;
	*port_r = (uint16_t)port;
}

int cql_event_decode(const struct cql_frame *frame, struct cql_event *event_r)
{
	struct cql_rd rd;

	memset(event_r, 0, sizeof(*event_r));
	if (frame->opcode != CQL_OP_EVENT || cql_frame_message(frame, &rd) < 0)
		return -1;
	cql_rd_string_to(&rd, event_r->type, sizeof(event_r->type));
	cql_rd_string_to(&rd, event_r->change, sizeof(event_r->change));
	if (strcmp(event_r->type, "TOPOLOGY_CHANGE") == 0 ||
	    strcmp(event_r->type, "STATUS_CHANGE") == 0)
		rd_inet(&rd, event_r->addr, sizeof(event_r->addr), &event_r->port);
	else if (strcmp(event_r->type, "SCHEMA_CHANGE") == 0)
		(void)cql_rd_string(&rd);
	else
		return -1;
	return rd.err ? -1 : 0;
}

int cql_supported_decode(const struct cql_frame *frame, char *versions, size_t size)
{
	struct cql_rd rd;

	versions[0] = '\0';
	if (frame->opcode != CQL_OP_SUPPORTED || cql_frame_message(frame, &rd) < 0)
		return -1;
	uint16_t n = cql_rd_u16(&rd);
	for (uint16_t i = 0; i < n && !rd.err; i++) {
		struct cql_slice key = cql_rd_string(&rd);
		uint16_t m = cql_rd_u16(&rd);
		bool want = key.len == 17 && memcmp(key.data, "PROTOCOL_VERSIONS", 17) == 0;
		for (uint16_t j = 0; j < m && !rd.err; j++) {
			struct cql_slice v = cql_rd_string(&rd);
			size_t used = strlen(versions);
			if (want && used + v.len + 2 < size) {
				if (used > 0)
					versions[used++] = ',';
				memcpy(versions + used, v.data, v.len);
				versions[used + v.len] = '\0';
			}
		}
	}
	return rd.err ? -1 : 0;
}
