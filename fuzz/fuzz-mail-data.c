/*
 * fuzz-mail-data: the body transforms. Input byte 0 picks a split point, an
 * output cap and the bare LF mode, the rest is the data. Checks that the DATA
 * decoder gives the same result whole, split, and byte by byte; that its end
 * is really CRLF "." CRLF in both modes; that normalize mode leaves no bare
 * LF in its output; that POP3 encoding of a clean decoded message decodes back
 * to it; that TOP output is a prefix of RETR output; and that the CRLF
 * normaliser leaves no bare CR or LF and is idempotent.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mail-data.h"

struct dec_run {
	struct buf out;
	struct mail_data_decoder d;
	size_t consumed;
	bool done;
};

static bool normalize;

static void decode(const char *in, size_t len, size_t cap, size_t step, size_t split,
		   struct dec_run *r)
{
	size_t pos = 0;

	buf_init(&r->out, cap);
	mail_data_decoder_init(&r->d);
	r->d.normalize_lf = normalize;
	r->consumed = 0;
	r->done = false;
	while (pos < len && !r->done) {
		size_t n = len - pos;
		if (step > 0 && n > step)
			n = step;
		if (split > 0 && pos < split && n > split - pos)
			n = split - pos;
		size_t c = mail_data_decoder_feed(&r->d, in + pos, n, &r->out, &r->done);
		if (c > n || (!r->done && c != n))
			abort();
		r->consumed += c;
		pos += n;
	}
}

static void same(const struct dec_run *a, const struct dec_run *b)
{
	if (a->out.len != b->out.len || memcmp(a->out.data, b->out.data, a->out.len) != 0 ||
	    a->consumed != b->consumed || a->done != b->done || a->d.size != b->d.size ||
	    a->d.bare_lf != b->d.bare_lf || a->d.bare_cr != b->d.bare_cr ||
	    a->d.max_line_len != b->d.max_line_len || a->d.discard != b->d.discard)
		abort();
}

static void encode(const char *in, size_t len, long lines, struct buf *out)
{
	struct mail_pop3_encoder e;
	buf_init(out, 0);
	mail_pop3_encoder_init(&e, lines);
	mail_pop3_encoder_feed(&e, in, len, out);
	mail_pop3_encoder_finish(&e, out);
}

static void check_normaliser(const char *in, size_t len)
{
	struct mail_crlf_normaliser n;
	struct buf a, b;

	buf_init(&a, 0);
	buf_init(&b, 0);
	mail_crlf_normaliser_init(&n);
	if (mail_crlf_normalise(&n, in, len, &a) < 0 || mail_crlf_normalise_finish(&n, &a) < 0 ||
	    n.size != a.len)
		abort();
	for (size_t i = 0; i < a.len; i++) {
		if (a.data[i] == '\r' && (i + 1 >= a.len || a.data[i + 1] != '\n'))
			abort();
		if (a.data[i] == '\n' && (i == 0 || a.data[i - 1] != '\r'))
			abort();
	}
	mail_crlf_normaliser_init(&n);
	if (mail_crlf_normalise(&n, a.data, a.len, &b) < 0 ||
	    mail_crlf_normalise_finish(&n, &b) < 0 ||
	    a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
		abort();
	buf_deinit(&a);
	buf_deinit(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	const char *in = (const char *)data + 1;
	size_t len = size - 1;
	size_t split = data[0] % (len + 1);
	size_t cap = (data[0] & 0x80) ? (size_t)(data[0] & 0x3f) : 0;
	struct dec_run whole, other;

	normalize = (data[0] & 0x40) != 0;
	decode(in, len, cap, 0, 0, &whole);
	if (whole.done && (whole.consumed < 3 ||
			   memcmp(in + whole.consumed - 3, ".\r\n", 3) != 0 ||
			   (whole.consumed > 3 && memcmp(in + whole.consumed - 5, "\r\n", 2) != 0)))
		abort();
	if (cap == 0 && whole.out.len != whole.d.size)
		abort();
	if (normalize)
		for (size_t i = 0; i < whole.out.len; i++)
			if (whole.out.data[i] == '\n' && (i == 0 || whole.out.data[i - 1] != '\r'))
				abort();
	decode(in, len, cap, 0, split, &other);
	same(&whole, &other);
	buf_deinit(&other.out);
	decode(in, len, cap, 1, 0, &other);
	same(&whole, &other);
	buf_deinit(&other.out);

	/* round trip for clean, CRLF-terminated decoded messages */
	const struct buf *m = &whole.out;
	if (cap == 0 && (normalize || whole.d.bare_lf == 0) && whole.d.bare_cr == 0 &&
	    (m->len == 0 || (m->len >= 2 && memcmp(m->data + m->len - 2, "\r\n", 2) == 0))) {
		struct buf enc;
		encode(m->data, m->len, -1, &enc);
		decode(enc.data, enc.len, 0, 0, 0, &other);
		if (!other.done || other.consumed != enc.len || other.out.len != m->len ||
		    memcmp(other.out.data, m->data, m->len) != 0)
			abort();
		buf_deinit(&other.out);
		/* TOP output without its ".\r\n" is a prefix of RETR's */
		struct buf top;
		encode(m->data, m->len, data[0] % 4, &top);
		if (top.len > enc.len || memcmp(top.data, enc.data, top.len - 3) != 0)
			abort();
		buf_deinit(&top);
		buf_deinit(&enc);
	}
	buf_deinit(&whole.out);

	check_normaliser(in, len);
	if (mail_header_end(in, len) > len)
		abort();
	return 0;
}
