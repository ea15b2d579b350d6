/*
 * mail-data: the byte-level body transforms (SMTP DATA decoding, POP3
 * dot-stuffing, LF to CRLF normalisation, header/body split).
 *
 * Each transform is a small state machine that keeps every undecided byte
 * in its state, never in a lookahead buffer: that is what makes the output
 * independent of how the input was split. Inside a line, the DATA decoder
 * and the POP3 encoder find the next CR or LF with memchr and copy the run
 * before it at once; only line ends and line starts go through the state
 * machine byte by byte.
 *
 * SMTP end of data: only CRLF "." CRLF, where the first CRLF is the end of
 * the previous line or the start of the data. A "line start" is only ever
 * after CRLF, so "\n.\n", "\r\n.\n", "\n.\r\n" and "\r.\r\n" are data, not the
 * end: a downstream MTA that accepts bare LF can then never be made to see a
 * different message boundary than tern did (SMTP smuggling).
 *
 * With normalize_lf (Postfix's smtpd_forbid_bare_newline = normalize), a bare
 * LF ends the line and is emitted as CRLF, and what follows is a "soft" line
 * start: a dot there is unstuffed (clients that send LF line endings stuff
 * after LF), but no sequence that starts at a soft line start can end the
 * data. So "\n.\n" and "\n.\r\n" become an empty line, "\r\n.\n" likewise, and
 * the data goes on to the real CRLF "." CRLF.
 *
 * POP3 output: every line is CRLF-terminated (a bare LF becomes CRLF, so no
 * client, strict or lenient, can see a terminator we did not send), lines
 * starting with '.' are stuffed, and ".\r\n" is appended once.
 */
#include "mail-data.h"

#include <string.h>

/* Decoded bytes are staged here so that out gets few, large appends. */
#define STAGE_SIZE 4096

struct stage {
	char buf[STAGE_SIZE];
	size_t len;
};

/* ---- SMTP DATA decoder ---- */

enum dec_state {
	DEC_LINE_START = 0, /* after CRLF, or at the very beginning */
	DEC_MID,            /* inside a line */
	DEC_CR,             /* inside a line, a CR whose meaning is not yet known */
	DEC_DOT,            /* "." at line start */
	DEC_DOT_CR,         /* ".\r" at line start: the end if LF follows */
	DEC_SOFT_START,     /* after a bare LF in normalize_lf mode: never the end */
	DEC_DONE,
};

void mail_data_decoder_init(struct mail_data_decoder *d)
{
	memset(d, 0, sizeof(*d));
	d->state = DEC_LINE_START;
}

static void dec_flush(struct mail_data_decoder *d, struct stage *st, struct buf *out)
{
	if (st->len == 0)
		return;
	if (!d->discard && buf_append(out, st->buf, st->len) < 0) {
		/* Keep exactly the first cap bytes, whatever the input split was,
		 * then only count: the session reports "too big" at the end. */
		if (out->cap > out->len)
			(void)buf_append(out, st->buf, out->cap - out->len);
		d->discard = true;
	}
	st->len = 0;
}

static void dec_emit(struct mail_data_decoder *d, struct stage *st, struct buf *out,
		     char c)
{
	if (st->len == sizeof(st->buf))
		dec_flush(d, st, out);
	st->buf[st->len++] = c;
	d->size++;
	if (c == '\n') {
		/* CRLF and bare LF both end a line for the length statistic */
		d->line_len = 0;
	} else if (++d->line_len > d->max_line_len) {
		d->max_line_len = d->line_len;
	}
}

/* Emits a run of line data that holds neither CR nor LF. */
static void dec_emit_run(struct mail_data_decoder *d, struct stage *st, struct buf *out,
			 const char *p, size_t n)
{
	d->size += n;
	d->line_len += n;
	if (d->line_len > d->max_line_len)
		d->max_line_len = d->line_len;
	while (n > 0) {
		if (st->len == sizeof(st->buf))
			dec_flush(d, st, out);
		size_t k = sizeof(st->buf) - st->len;
		if (k > n)
			k = n;
		memcpy(st->buf + st->len, p, k);
		st->len += k;
		p += k;
		n -= k;
	}
}

/* How many bytes from p on are neither CR nor LF. */
static size_t line_run(const char *p, size_t n)
{
	const char *lf = memchr(p, '\n', n);
	size_t upto = lf != NULL ? (size_t)(lf - p) : n;
	const char *cr = memchr(p, '\r', upto);
	return cr != NULL ? (size_t)(cr - p) : upto;
}

/* Emits a CRLF line end; its CR is not part of the line length. */
static void dec_emit_crlf(struct mail_data_decoder *d, struct stage *st, struct buf *out)
{
	if (st->len == sizeof(st->buf))
		dec_flush(d, st, out);
	st->buf[st->len++] = '\r';
	d->size++;
	dec_emit(d, st, out, '\n');
}

size_t mail_data_decoder_feed(struct mail_data_decoder *d, const char *in,
			      size_t len, struct buf *out, bool *done_r)
{
	struct stage st;
	size_t i;

	st.len = 0;
	*done_r = false;
	if (d->state == DEC_DONE) {
		*done_r = true;
		return 0;
	}
	for (i = 0; i < len; i++) {
		char c = in[i];
	again:
		switch ((enum dec_state)d->state) {
		case DEC_LINE_START:
			if (c == '.') {
				d->state = DEC_DOT;
				break;
			}
			d->state = DEC_MID;
			goto again;
		case DEC_MID: {
			size_t run = line_run(in + i, len - i);
			if (run > 0) {
				dec_emit_run(d, &st, out, in + i, run);
				if (run == len - i) {
					i = len - 1; /* all of it taken: the loop ends */
					break;
				}
				i += run;
				c = in[i];
			}
			if (c == '\r') {
				d->state = DEC_CR;
			} else if (c == '\n' && d->normalize_lf) {
				d->bare_lf++;
				dec_emit_crlf(d, &st, out);
				d->state = DEC_SOFT_START;
			} else {
				if (c == '\n')
					d->bare_lf++;
				dec_emit(d, &st, out, c);
			}
			break;
		}
		case DEC_SOFT_START:
			/* a stuffed dot after a bare LF: drop it; either way the
			 * line is ordinary data and cannot be the end */
			d->state = DEC_MID;
			if (c == '.')
				break;
			goto again;
		case DEC_CR:
			if (c == '\n') {
				dec_emit_crlf(d, &st, out);
				d->state = DEC_LINE_START;
				break;
			}
			d->bare_cr++;
			dec_emit(d, &st, out, '\r');
			d->state = DEC_MID;
			goto again;
		case DEC_DOT:
			if (c == '\r') {
				d->state = DEC_DOT_CR;
				break;
			}
			/* a stuffed dot: drop it, the rest is ordinary line data */
			d->state = DEC_MID;
			goto again;
		case DEC_DOT_CR:
			if (c == '\n') {
				d->state = DEC_DONE;
				dec_flush(d, &st, out);
				*done_r = true;
				return i + 1;
			}
			/* ".\r" + not LF: the dot was stuffing, the CR is bare */
			d->bare_cr++;
			dec_emit(d, &st, out, '\r');
			d->state = DEC_MID;
			goto again;
		case DEC_DONE:
			break;
		}
	}
	dec_flush(d, &st, out);
	return i;
}

/* ---- POP3 encoder ---- */

enum enc_state {
	ENC_LINE_START = 0,
	ENC_MID,
	ENC_CR_MID,   /* CR pending inside a non-empty line */
	ENC_CR_EMPTY, /* CR pending as the first byte of a line */
};

void mail_pop3_encoder_init(struct mail_pop3_encoder *e, long body_lines)
{
	memset(e, 0, sizeof(*e));
	e->state = ENC_LINE_START;
	e->body_lines_left = body_lines < 0 ? -1 : body_lines;
	e->in_headers = true;
	e->finished = false;
}

static void enc_put(struct stage *st, struct buf *out, const char *p, size_t n)
{
	if (st->len + n > sizeof(st->buf)) {
		(void)buf_append(out, st->buf, st->len);
		st->len = 0;
	}
	memcpy(st->buf + st->len, p, n);
	st->len += n;
}

/* Appends a run of line text: large runs skip the stage. */
static void enc_put_run(struct stage *st, struct buf *out, const char *p, size_t n)
{
	if (n <= sizeof(st->buf)) {
		enc_put(st, out, p, n);
		return;
	}
	if (st->len > 0) {
		(void)buf_append(out, st->buf, st->len);
		st->len = 0;
	}
	(void)buf_append(out, p, n);
}

/* Where the line text starting at in[i] stops: the next CR or LF, or len.
 * Two memchr() scans instead of a state change per byte: this is most of
 * what a RETR costs. */
static size_t enc_text_end(const char *in, size_t i, size_t len)
{
	const char *p = in + i, *lim = in + len;
	const char *lf = memchr(p, '\n', (size_t)(lim - p));
	const char *stop = lf != NULL ? lf : lim;
	const char *cr = memchr(p, '\r', (size_t)(stop - p));
	return (size_t)((cr != NULL ? cr : stop) - in);
}

static void enc_line_end(struct mail_pop3_encoder *e, bool empty)
{
	e->state = ENC_LINE_START;
	if (e->in_headers) {
		if (!empty)
			return;
		e->in_headers = false;
		if (e->body_lines_left == 0)
			e->finished = true;
		return;
	}
	if (e->body_lines_left > 0 && --e->body_lines_left == 0)
		e->finished = true;
}

void mail_pop3_encoder_feed(struct mail_pop3_encoder *e, const char *in, size_t len,
			    struct buf *out)
{
	struct stage st;

	st.len = 0;
	for (size_t i = 0; i < len && !e->finished; i++) {
		char c = in[i];
	again:
		switch ((enum enc_state)e->state) {
		case ENC_LINE_START:
			if (c == '.') {
				enc_put(&st, out, "..", 2);
				e->state = ENC_MID;
			} else if (c == '\r') {
				e->state = ENC_CR_EMPTY;
			} else if (c == '\n') {
				enc_put(&st, out, "\r\n", 2);
				enc_line_end(e, true);
			} else {
				enc_put(&st, out, &c, 1);
				e->state = ENC_MID;
			}
			break;
		case ENC_MID:
			if (c == '\r') {
				e->state = ENC_CR_MID;
			} else if (c == '\n') {
				enc_put(&st, out, "\r\n", 2);
				enc_line_end(e, false);
			} else {
				/* the rest of the line's text at once */
				size_t end = enc_text_end(in, i, len);
				enc_put_run(&st, out, in + i, end - i);
				i = end - 1;
			}
			break;
		case ENC_CR_MID:
		case ENC_CR_EMPTY:
			if (c == '\n') {
				enc_put(&st, out, "\r\n", 2);
				enc_line_end(e, e->state == ENC_CR_EMPTY);
				break;
			}
			/* a bare CR is line data; it cannot end a POP3 line */
			enc_put(&st, out, "\r", 1);
			e->state = ENC_MID;
			goto again;
		}
	}
	if (st.len > 0)
		(void)buf_append(out, st.buf, st.len);
}

void mail_pop3_encoder_finish(struct mail_pop3_encoder *e, struct buf *out)
{
	if (!e->finished) {
		switch ((enum enc_state)e->state) {
		case ENC_LINE_START:
			break;
		case ENC_MID:
			(void)buf_append(out, "\r\n", 2);
			break;
		case ENC_CR_MID:
		case ENC_CR_EMPTY:
			/* the pending CR was the start of the line end */
			(void)buf_append(out, "\r\n", 2);
			break;
		}
	}
	(void)buf_append(out, ".\r\n", 3);
	e->state = ENC_LINE_START;
	e->finished = true;
}

/* ---- LF to CRLF ---- */

void mail_crlf_normaliser_init(struct mail_crlf_normaliser *n)
{
	memset(n, 0, sizeof(*n));
}

static int norm_put(struct mail_crlf_normaliser *n, struct stage *st, struct buf *out,
		    const char *p, size_t len)
{
	if (st->len + len > sizeof(st->buf)) {
		if (buf_append(out, st->buf, st->len) < 0)
			return -1;
		n->size += st->len;
		st->len = 0;
	}
	memcpy(st->buf + st->len, p, len);
	st->len += len;
	return 0;
}

int mail_crlf_normalise(struct mail_crlf_normaliser *n, const char *in, size_t len,
			struct buf *out)
{
	struct stage st;

	st.len = 0;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		int ret;
		if (n->last_cr) {
			n->last_cr = false;
			if (c != '\n')
				n->bare_cr++;
			/* CRLF stays, a bare CR becomes CRLF too */
			if (norm_put(n, &st, out, "\r\n", 2) < 0)
				return -1;
			if (c == '\n')
				continue;
		}
		if (c == '\r') {
			n->last_cr = true;
			continue;
		}
		if (c == '\n') {
			n->bare_lf++;
			ret = norm_put(n, &st, out, "\r\n", 2);
		} else
			ret = norm_put(n, &st, out, &c, 1);
		if (ret < 0)
			return -1;
	}
	if (st.len > 0) {
		if (buf_append(out, st.buf, st.len) < 0)
			return -1;
		n->size += st.len;
	}
	return 0;
}

int mail_crlf_normalise_finish(struct mail_crlf_normaliser *n, struct buf *out)
{
	if (!n->last_cr)
		return 0;
	n->last_cr = false;
	n->bare_cr++;
	if (buf_append(out, "\r\n", 2) < 0)
		return -1;
	n->size += 2;
	return 0;
}

/* ---- header block ---- */

size_t mail_header_end(const char *msg, size_t len)
{
	size_t line_start = 0;

	for (size_t i = 0; i < len; i++) {
		if (msg[i] != '\n')
			continue;
		size_t line_len = i - line_start;
		if (line_len == 0 || (line_len == 1 && msg[line_start] == '\r'))
			return i + 1;
		line_start = i + 1;
	}
	return len;
}
