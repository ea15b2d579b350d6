/*
 * Unit tests for mail-data: the DATA decoder, the POP3 encoder, the CRLF
 * normaliser and mail_header_end. Every incremental transform is run on each
 * input whole, split in two at every byte position, and byte by byte; all
 * runs must give the same output, counters and consumed count.
 */
#include "test.h"

#include "mail-data.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---- decoder ---- */

struct dec_result {
	struct buf out;
	size_t consumed;
	bool done;
	struct mail_data_decoder d;
};

/* The decoder's bare LF mode for dec_run(): false refuses (passes bare LF
 * through, counted), true normalizes. */
static bool normalize;

/* Feeds in as chunks: split = 0 whole, split = k: [0,k) then the rest,
 * bytewise: one byte at a time. Stops feeding once the end is found. */
static void dec_run(const char *in, size_t len, size_t cap, size_t split,
		    bool bytewise, struct dec_result *r)
{
	buf_init(&r->out, cap);
	mail_data_decoder_init(&r->d);
	r->d.normalize_lf = normalize;
	r->consumed = 0;
	r->done = false;
	size_t pos = 0;
	while (pos < len && !r->done) {
		size_t n;
		if (bytewise)
			n = 1;
		else if (split > 0 && pos < split)
			n = split - pos;
		else
			n = len - pos;
		size_t c = mail_data_decoder_feed(&r->d, in + pos, n, &r->out, &r->done);
		if (!r->done && c != n) {
			test_failures++;
			fprintf(stderr, "decoder consumed %zu of %zu without ending\n", c, n);
		}
		r->consumed += c;
		pos += n;
	}
	if (len == 0) {
		/* an empty feed must be harmless */
		r->consumed = mail_data_decoder_feed(&r->d, in, 0, &r->out, &r->done);
	}
}

static void dec_check_eq(const struct dec_result *a, const struct dec_result *b,
			 const char *what, size_t split)
{
	int before = test_failures;
	CHECK_MEM(a->out.data, a->out.len, b->out.data, b->out.len);
	CHECK_INT(a->consumed, b->consumed);
	CHECK_INT(a->done, b->done);
	CHECK_INT(a->d.size, b->d.size);
	CHECK_INT(a->d.bare_lf, b->d.bare_lf);
	CHECK_INT(a->d.bare_cr, b->d.bare_cr);
	CHECK_INT(a->d.max_line_len, b->d.max_line_len);
	CHECK_INT(a->d.discard, b->d.discard);
	if (test_failures != before)
		fprintf(stderr, "  (%s, split %zu)\n", what, split);
}

/* Decodes in every way and checks them against the expectation. */
static void dec_expect(const char *in, size_t len, size_t cap, const char *exp,
		       size_t explen, size_t exp_consumed, bool exp_done,
		       unsigned int exp_bare_lf, unsigned int exp_bare_cr)
{
	struct dec_result whole, other;

	dec_run(in, len, cap, 0, false, &whole);
	int before = test_failures;
	CHECK_MEM(whole.out.data, whole.out.len, exp, explen);
	CHECK_INT(whole.consumed, exp_consumed);
	CHECK_INT(whole.done, exp_done);
	CHECK_INT(whole.d.bare_lf, exp_bare_lf);
	CHECK_INT(whole.d.bare_cr, exp_bare_cr);
	if (cap == 0) {
		CHECK_INT(whole.d.size, explen);
		CHECK(!whole.d.discard);
	}
	if (test_failures != before) {
		char esc[200];
		str_escape_for_log(esc, sizeof(esc), in, len, 60);
		fprintf(stderr, "  (input \"%s\", %s)\n", esc, normalize ? "normalize" : "reject");
	}
	for (size_t k = 1; k < len; k++) {
		dec_run(in, len, cap, k, false, &other);
		dec_check_eq(&whole, &other, "split", k);
		buf_deinit(&other.out);
	}
	dec_run(in, len, cap, 0, true, &other);
	dec_check_eq(&whole, &other, "bytewise", 0);
	buf_deinit(&other.out);
	buf_deinit(&whole.out);
}

/* ALL: the whole input is consumed */
#define ALL ((size_t)-1)
#define DEC_MODE(mode, in, exp, consumed, done, lf, cr) do { normalize = (mode); \
	dec_expect(S(in), 0, S(exp), (consumed) == ALL ? sizeof(in) - 1 : (consumed), \
		   done, lf, cr); normalize = false; } while (0)
/* In reject mode; without a bare LF, normalize mode must give the same. */
#define DEC(in, exp, consumed, done, lf, cr) do { \
	DEC_MODE(false, in, exp, consumed, done, lf, cr); \
	if ((lf) == 0) \
		DEC_MODE(true, in, exp, consumed, done, lf, cr); } while (0)
/* In normalize mode only. */
#define DECN(in, exp, consumed, done, lf, cr) DEC_MODE(true, in, exp, consumed, done, lf, cr)

static void test_decoder(void)
{
	/* plain message, end found, nothing after it */
	DEC("Subject: x\r\n\r\nbody\r\n.\r\n", "Subject: x\r\n\r\nbody\r\n", ALL, true, 0, 0);
	/* pipelined command after the end is not consumed */
	DEC("a\r\n.\r\nQUIT\r\n", "a\r\n", 6, true, 0, 0);
	/* empty message */
	DEC(".\r\n", "", ALL, true, 0, 0);
	DEC("\r\n.\r\n", "\r\n", ALL, true, 0, 0);
	/* dot-unstuffing, including a stuffed lone dot */
	DEC("..foo\r\n..\r\n...\r\n.\r\n", ".foo\r\n.\r\n..\r\n", ALL, true, 0, 0);
	/* a dot not at line start is data */
	DEC("a.b\r\n a\r\n.\r\n", "a.b\r\n a\r\n", ALL, true, 0, 0);
	/* smuggling variants: none of these is the end */
	DEC("a\n.\nb\r\n.\r\n", "a\n.\nb\r\n", ALL, true, 2, 0);
	DEC("a\r\n.\nb\r\n.\r\n", "a\r\n\nb\r\n", ALL, true, 1, 0);
	DEC("a\n.\r\nb\r\n.\r\n", "a\n.\r\nb\r\n", ALL, true, 1, 0);
	DEC("a\r.\r\nb\r\n.\r\n", "a\r.\r\nb\r\n", ALL, true, 0, 1);
	DEC("a\r\n.\r.\r\nb\r\n.\r\n", "a\r\n\r.\r\nb\r\n", ALL, true, 0, 1);
	DEC("a\r\n.\r\r\n.\r\n", "a\r\n\r\r\n", ALL, true, 0, 1);
	DEC("a\n.\n", "a\n.\n", ALL, false, 2, 0);
	DEC("a\r\n.\n", "a\r\n\n", ALL, false, 1, 0);
	DEC("a\n.\r\n", "a\n.\r\n", ALL, false, 1, 0);
	DEC("a\r\n.\r", "a\r\n", ALL, false, 0, 0);
	/* no end at all */
	DEC("abc\r\n", "abc\r\n", ALL, false, 0, 0);
	DEC("abc", "abc", ALL, false, 0, 0);
	DEC("", "", ALL, false, 0, 0);
	/* bare CR before CRLF, CRs in a row */
	DEC("a\r\r\n.\r\n", "a\r\r\n", ALL, true, 0, 1);
	DEC("\r\r\r\n.\r\n", "\r\r\r\n", ALL, true, 0, 2);
	/* a "." line that is not alone */
	DEC(". \r\n.\r\n", " \r\n", ALL, true, 0, 0);
	/* binary-ish bytes, NUL passes through */
	DEC("a\0b\xff\r\n.\r\n", "a\0b\xff\r\n", ALL, true, 0, 0);
}

/* normalize_lf: a bare LF ends a line and is stored as CRLF, a dot after
 * it is unstuffed, and only CRLF "." CRLF ends the data. */
static void test_decoder_normalize(void)
{
	DECN("a\nb\r\n.\r\n", "a\r\nb\r\n", ALL, true, 1, 0);
	/* what smtplib sends for LF-terminated bytes: stuffed after LF, then
	 * its CRLF (the data did not end with one) and the end */
	DECN("Subject: x\n\n..dot\nbody\n\r\n.\r\n",
	     "Subject: x\r\n\r\n.dot\r\nbody\r\n\r\n", ALL, true, 4, 0);
	DECN("a\n\r\n.\r\nQUIT\r\n", "a\r\n\r\n", 7, true, 1, 0);
	DECN("a\n..\n...\nb\r\n.\r\n", "a\r\n.\r\n..\r\nb\r\n", ALL, true, 3, 0);
	/* a dot not at a line start stays */
	DECN("a\nb.\n.\r\n", "a\r\nb.\r\n\r\n", ALL, false, 2, 0);
	/* smuggling: none of these is the end, the data goes on */
	DECN("a\n.\nb\r\n.\r\n", "a\r\n\r\nb\r\n", ALL, true, 2, 0);
	DECN("a\r\n.\nb\r\n.\r\n", "a\r\n\r\nb\r\n", ALL, true, 1, 0);
	DECN("a\n.\r\nb\r\n.\r\n", "a\r\n\r\nb\r\n", ALL, true, 1, 0);
	DECN("a\n.\n", "a\r\n\r\n", ALL, false, 2, 0);
	DECN("a\r\n.\n", "a\r\n\r\n", ALL, false, 1, 0);
	DECN("a\n.\r\n", "a\r\n\r\n", ALL, false, 1, 0);
	DECN("\n.\r\n", "\r\n\r\n", ALL, false, 1, 0);
	DECN("..\n.\r\n", ".\r\n\r\n", ALL, false, 1, 0);
	DECN("a\n\n.\r\n", "a\r\n\r\n\r\n", ALL, false, 2, 0);
	DECN("x\r\n\n.\r\n.\r\n", "x\r\n\r\n\r\n", ALL, true, 1, 0);
	DECN("hi\n.\nMAIL FROM:<x@y>\r\nRCPT TO:<v@y>\r\nDATA\r\nevil\r\n.\r\n",
	     "hi\r\n\r\nMAIL FROM:<x@y>\r\nRCPT TO:<v@y>\r\nDATA\r\nevil\r\n", ALL, true, 2, 0);
	/* bare CR is still only counted, in every position */
	DECN("a\rb\nc\r\n.\r\n", "a\rb\r\nc\r\n", ALL, true, 1, 1);
	DECN("a\n\r.\r\nb\r\n.\r\n", "a\r\n\r.\r\nb\r\n", ALL, true, 1, 1);
	DECN("a\r.\r\nb\r\n.\r\n", "a\r.\r\nb\r\n", ALL, true, 0, 1);
	DECN("a\r\r\n.\r\n", "a\r\r\n", ALL, true, 0, 1);
	/* and in reject mode the same inputs pass the LF through */
	DEC("a\nb\r\n.\r\n", "a\nb\r\n", ALL, true, 1, 0);
	DEC("a\n..\nb\r\n.\r\n", "a\n..\nb\r\n", ALL, true, 2, 0);

	/* a line ended by a bare LF counts without its line end */
	struct dec_result r;
	normalize = true;
	dec_run(S("abc\nabcdef\nab\r\n.\r\n"), 0, 0, false, &r);
	CHECK_INT(r.d.max_line_len, 6);
	CHECK_INT(r.d.size, 17);
	buf_deinit(&r.out);
	/* the cap keeps the first cap bytes of the normalized data */
	dec_expect(S("ab\ncd\nef\r\n.\r\n"), 5, S("ab\r\nc"), 13, true, 2, 0);
	normalize = false;
}

static void test_decoder_line_len(void)
{
	struct dec_result r;
	dec_run(S("abcd\r\nab\nabcdefg\r\n.\r\n"), 0, 0, false, &r);
	CHECK_INT(r.d.max_line_len, 7);
	buf_deinit(&r.out);
	dec_run(S("..abc\r\n.\r\n"), 0, 0, false, &r);
	CHECK_INT(r.d.max_line_len, 4);
	buf_deinit(&r.out);
}

static void test_decoder_cap(void)
{
	char in[5000];
	size_t n = 0;

	/* 100 lines of 40 decoded bytes each, then the end */
	for (int l = 0; l < 100; l++) {
		for (int i = 0; i < 38; i++)
			in[n++] = (char)('a' + (l + i) % 26);
		in[n++] = '\r';
		in[n++] = '\n';
	}
	size_t body = n;
	memcpy(in + n, ".\r\nNOOP\r\n", 9);
	n += 9;

	/* cap reached: the end is still found, the size still counted, the
	 * first cap bytes are kept, and discard mode is on */
	dec_expect(in, n, 1000, in, 1000, body + 3, true, 0, 0);
	struct dec_result r;
	dec_run(in, n, 1000, 0, false, &r);
	CHECK(r.d.discard);
	CHECK_INT(r.d.size, body);
	CHECK_INT(r.out.len, 1000);
	buf_deinit(&r.out);

	/* cap exactly the size: fits */
	dec_run(in, n, body, 0, false, &r);
	CHECK(!r.d.discard);
	CHECK_INT(r.out.len, body);
	buf_deinit(&r.out);

	/* discard set by the caller from the start: nothing appended */
	buf_init(&r.out, 0);
	mail_data_decoder_init(&r.d);
	r.d.discard = true;
	bool done;
	size_t c = mail_data_decoder_feed(&r.d, in, n, &r.out, &done);
	CHECK(done);
	CHECK_INT(c, body + 3);
	CHECK_INT(r.out.len, 0);
	CHECK_INT(r.d.size, body);
	/* after the end, further input is not consumed */
	c = mail_data_decoder_feed(&r.d, "x\r\n", 3, &r.out, &done);
	CHECK_INT(c, 0);
	CHECK(done);
	buf_deinit(&r.out);

	/* a long input that crosses the internal staging size */
	static char big[20000];
	size_t bn = 0;
	for (int l = 0; l < 400; l++) {
		big[bn++] = '.';
		for (int i = 0; i < 45; i++)
			big[bn++] = 'x';
		big[bn++] = '\r';
		big[bn++] = '\n';
	}
	memcpy(big + bn, ".\r\n", 3);
	dec_run(big, bn + 3, 0, 0, false, &r);
	CHECK(r.done);
	CHECK_INT(r.out.len, bn - 400);
	CHECK_INT(r.d.max_line_len, 45);
	buf_deinit(&r.out);
}

/* ---- encoder ---- */

static void enc_run(const char *in, size_t len, long lines, size_t split, bool bytewise,
		    struct buf *out)
{
	struct mail_pop3_encoder e;
	buf_init(out, 0);
	mail_pop3_encoder_init(&e, lines);
	size_t pos = 0;
	while (pos < len) {
		size_t n = bytewise ? 1 : (split > 0 && pos < split ? split - pos : len - pos);
		mail_pop3_encoder_feed(&e, in + pos, n, out);
		pos += n;
	}
	mail_pop3_encoder_finish(&e, out);
}

static void enc_expect(const char *in, size_t len, long lines, const char *exp, size_t explen)
{
	struct buf whole, other;
	enc_run(in, len, lines, 0, false, &whole);
	int before = test_failures;
	CHECK_MEM(whole.data, whole.len, exp, explen);
	if (test_failures != before) {
		char esc[200];
		str_escape_for_log(esc, sizeof(esc), whole.data, whole.len, 60);
		fprintf(stderr, "  (got \"%s\", lines %ld)\n", esc, lines);
	}
	for (size_t k = 1; k < len; k++) {
		enc_run(in, len, lines, k, false, &other);
		CHECK_MEM(other.data, other.len, whole.data, whole.len);
		buf_deinit(&other);
	}
	enc_run(in, len, lines, 0, true, &other);
	CHECK_MEM(other.data, other.len, whole.data, whole.len);
	buf_deinit(&other);
	buf_deinit(&whole);
}

#define ENC(in, lines, exp) enc_expect(S(in), lines, S(exp))

static void test_encoder(void)
{
	ENC("a\r\n.b\r\n", -1, "a\r\n..b\r\n.\r\n");
	ENC(".\r\n", -1, "..\r\n.\r\n");
	ENC("", -1, ".\r\n");
	ENC("a\r\nb", -1, "a\r\nb\r\n.\r\n");
	ENC("a\r", -1, "a\r\n.\r\n");
	ENC("a\r\n\r", -1, "a\r\n\r\n.\r\n");
	ENC("a\nb\n", -1, "a\r\nb\r\n.\r\n");
	ENC("a\n.\n", -1, "a\r\n..\r\n.\r\n");
	ENC("a\rb\r\n", -1, "a\rb\r\n.\r\n");
	ENC("\r.x\r\n", -1, "\r.x\r\n.\r\n");
	ENC("..\r\n...\r\n", -1, "...\r\n....\r\n.\r\n");

	const char msg[] = "H1: x\r\nH2: y\r\n\r\nl1\r\n.l2\r\nl3\r\n";
	ENC(msg, 0, "H1: x\r\nH2: y\r\n\r\n.\r\n");
	ENC(msg, 1, "H1: x\r\nH2: y\r\n\r\nl1\r\n.\r\n");
	ENC(msg, 2, "H1: x\r\nH2: y\r\n\r\nl1\r\n..l2\r\n.\r\n");
	ENC(msg, 3, "H1: x\r\nH2: y\r\n\r\nl1\r\n..l2\r\nl3\r\n.\r\n");
	ENC(msg, 100, "H1: x\r\nH2: y\r\n\r\nl1\r\n..l2\r\nl3\r\n.\r\n");
	/* no empty line: all headers */
	ENC("H1: x\r\nH2: y\r\n", 0, "H1: x\r\nH2: y\r\n.\r\n");
	ENC("H1: x\r\nH2: y", 0, "H1: x\r\nH2: y\r\n.\r\n");
	/* body without a final CRLF */
	ENC("H: x\r\n\r\nbody", 1, "H: x\r\n\r\nbody\r\n.\r\n");
	ENC("H: x\r\n\r\nbody", 0, "H: x\r\n\r\n.\r\n");
	/* empty header block */
	ENC("\r\nbody\r\n", 0, "\r\n.\r\n");
	ENC("\r\nbody\r\n", 1, "\r\nbody\r\n.\r\n");
	/* LF-only storage still splits headers */
	ENC("H: x\n\nb1\nb2\n", 1, "H: x\r\n\r\nb1\r\n.\r\n");
	/* an empty body line counts as a line */
	ENC("H: x\r\n\r\n\r\n\r\nz\r\n", 2, "H: x\r\n\r\n\r\n\r\n.\r\n");
	/* a line with only blanks does not end the headers */
	ENC("H: x\r\n \r\nb\r\n", 0, "H: x\r\n \r\nb\r\n.\r\n");
	ENC("", 0, ".\r\n");
	ENC(".", 5, "..\r\n.\r\n");
}

/* encode then decode gives the original, for CRLF-terminated messages */
static void test_round_trip(void)
{
	static const char *const pieces[] = { ".", "..", "a", " ", "\r\n", ".\r\n", "x.y" };
	unsigned int seed = 12345;

	for (int iter = 0; iter < 400; iter++) {
		char msg[300];
		size_t n = 0;
		int parts = iter % 25;
		for (int p = 0; p < parts; p++) {
			seed = seed * 1103515245u + 12345u;
			const char *s = pieces[(seed >> 16) % 7];
			size_t l = strlen(s);
			memcpy(msg + n, s, l);
			n += l;
		}
		if (n > 0 && !(n >= 2 && msg[n - 2] == '\r' && msg[n - 1] == '\n')) {
			memcpy(msg + n, "\r\n", 2);
			n += 2;
		}
		struct buf enc;
		enc_run(msg, n, -1, 0, false, &enc);
		struct dec_result r;
		for (int m = 0; m < 2; m++) {
			normalize = m == 1;
			dec_run(enc.data, enc.len, 0, 0, false, &r);
			CHECK(r.done);
			CHECK_INT(r.consumed, enc.len);
			CHECK_MEM(r.out.data, r.out.len, msg, n);
			CHECK_INT(r.d.bare_lf + r.d.bare_cr, 0);
			buf_deinit(&r.out);
		}
		normalize = false;
		/* and the decoder's every-split equality on encoder output */
		if (iter % 40 == 0)
			dec_expect(enc.data, enc.len, 0, msg, n, enc.len, true, 0, 0);
		buf_deinit(&enc);
	}
}

/* ---- normaliser ---- */

static void norm_run(const char *in, size_t len, size_t split, bool bytewise,
		     struct buf *out, uint64_t *size_r, uint64_t counts_r[2])
{
	struct mail_crlf_normaliser n;
	buf_init(out, 0);
	mail_crlf_normaliser_init(&n);
	size_t pos = 0;
	while (pos < len) {
		size_t c = bytewise ? 1 : (split > 0 && pos < split ? split - pos : len - pos);
		CHECK_INT(mail_crlf_normalise(&n, in + pos, c, out), 0);
		pos += c;
	}
	CHECK_INT(mail_crlf_normalise_finish(&n, out), 0);
	*size_r = n.size;
	counts_r[0] = n.bare_lf;
	counts_r[1] = n.bare_cr;
}

static void norm_expect(const char *in, size_t len, const char *exp, size_t explen,
			unsigned int exp_lf, unsigned int exp_cr)
{
	struct buf whole, other;
	uint64_t size, osize, counts[2], ocounts[2];
	norm_run(in, len, 0, false, &whole, &size, counts);
	CHECK_MEM(whole.data, whole.len, exp, explen);
	CHECK_INT(size, explen);
	CHECK_INT(counts[0], exp_lf);
	CHECK_INT(counts[1], exp_cr);
	for (size_t k = 1; k < len; k++) {
		norm_run(in, len, k, false, &other, &osize, ocounts);
		CHECK_MEM(other.data, other.len, whole.data, whole.len);
		CHECK_INT(osize, size);
		CHECK_INT(ocounts[0], counts[0]);
		CHECK_INT(ocounts[1], counts[1]);
		buf_deinit(&other);
	}
	norm_run(in, len, 0, true, &other, &osize, ocounts);
	CHECK_MEM(other.data, other.len, whole.data, whole.len);
	CHECK_INT(osize, size);
	CHECK_INT(ocounts[0], counts[0]);
	CHECK_INT(ocounts[1], counts[1]);
	buf_deinit(&other);
	buf_deinit(&whole);
}

static void test_normaliser(void)
{
	norm_expect(S("a\nb\r\nc\rd\r"), S("a\r\nb\r\nc\r\nd\r\n"), 1, 2);
	norm_expect(S(""), S(""), 0, 0);
	norm_expect(S("\n\n"), S("\r\n\r\n"), 2, 0);
	norm_expect(S("\r\r\n"), S("\r\n\r\n"), 0, 1);
	norm_expect(S("\n\r"), S("\r\n\r\n"), 1, 1);
	norm_expect(S("no newline"), S("no newline"), 0, 0);
	norm_expect(S(".\n"), S(".\r\n"), 1, 0);
	norm_expect(S("a\r\nb\r\n"), S("a\r\nb\r\n"), 0, 0);

	/* cap reached */
	struct mail_crlf_normaliser n;
	struct buf out;
	buf_init(&out, 5);
	mail_crlf_normaliser_init(&n);
	CHECK_INT(mail_crlf_normalise(&n, S("ab\ncd\n"), &out), -1);
	buf_deinit(&out);
	buf_init(&out, 3);
	mail_crlf_normaliser_init(&n);
	CHECK_INT(mail_crlf_normalise(&n, S("a\r"), &out), 0);
	CHECK_INT(mail_crlf_normalise_finish(&n, &out), 0);
	CHECK_MEM(out.data, out.len, "a\r\n", 3);
	buf_deinit(&out);
	buf_init(&out, 2);
	mail_crlf_normaliser_init(&n);
	CHECK_INT(mail_crlf_normalise(&n, S("ab\r"), &out), 0);
	CHECK_INT(mail_crlf_normalise_finish(&n, &out), -1);
	buf_deinit(&out);
}

static void test_header_end(void)
{
	CHECK_INT(mail_header_end(S("A: b\r\n\r\nbody")), 8);
	CHECK_INT(mail_header_end(S("A: b\r\nC: d\r\n\r\n")), 14);
	CHECK_INT(mail_header_end(S("\r\nbody")), 2);
	CHECK_INT(mail_header_end(S("A: b\r\nC: d\r\n")), 12);
	CHECK_INT(mail_header_end(S("A: b\r\nC: d")), 10);
	CHECK_INT(mail_header_end(S("")), 0);
	CHECK_INT(mail_header_end(S("A: b\n\nbody")), 6);
	CHECK_INT(mail_header_end(S("A: b\r\n \r\nx\r\n\r\n")), 14);
}

/* Random inputs made of line data runs (some longer than the decoder's
 * 4 KiB stage), CR, LF and dots, each decoded whole, byte by byte and split
 * at a few points, in both bare-LF modes, with and without an output cap:
 * the run-copying fast path must agree with the byte-at-a-time machine
 * (byte by byte, every run is one byte long). */
static void test_decoder_random(void)
{
	static const char *const pieces[] = { "a", "abc", ".", "\r", "\n", "\r\n", "\r\n.",
					      "\r\n.\r", "\r\n..\r\n", "\n.", "x.y" };
	unsigned int seed = 12345;
	char *in = malloc(12000);
	for (int round = 0; round < 300; round++) {
		size_t len = 0;
		while (len < 11000) {
			seed = seed * 1103515245u + 12345u;
			unsigned int r = (seed >> 16) % 40;
			if (r == 0 && round % 4 == 0) { /* a run longer than the stage */
				size_t n = 4000 + (seed >> 8) % 3000;
				if (len + n > 11500)
					break;
				memset(in + len, 'q', n);
				len += n;
			} else if (r < 11) {
				size_t n = strlen(pieces[r]);
				memcpy(in + len, pieces[r], n);
				len += n;
			} else {
				in[len++] = (char)('a' + r % 26);
			}
			if ((seed >> 20) % 97 == 0)
				break;
		}
		if (round % 3 == 0 && len + 5 <= 12000) {
			memcpy(in + len, "\r\n.\r\n", 5);
			len += 5;
		}
		normalize = round % 2 == 1;
		size_t cap = round % 5 == 0 ? len / 3 + 1 : 0;
		struct dec_result whole, other;
		dec_run(in, len, cap, 0, false, &whole);
		dec_run(in, len, cap, 0, true, &other);
		dec_check_eq(&whole, &other, "random bytewise", 0);
		buf_deinit(&other.out);
		for (int k = 1; k <= 3; k++) {
			size_t split = len * (size_t)k / 4;
			dec_run(in, len, cap, split, false, &other);
			dec_check_eq(&whole, &other, "random split", split);
			buf_deinit(&other.out);
		}
		buf_deinit(&whole.out);
	}
	normalize = false;
	free(in);
}

int main(void)
{
	test_decoder();
	test_decoder_random();
	test_decoder_normalize();
	test_decoder_line_len();
	test_decoder_cap();
	test_encoder();
	test_round_trip();
	test_normaliser();
	test_header_end();
	TEST_MAIN_END();
}
