/*
 * relay-reply: incremental SMTP reply parsing for the delivery client.
 *
 * Invariants: memory is fixed at init (one line buffer, and a reply text
 * buffer capped at RELAY_REPLY_LINES_MAX lines of RELAY_REPLY_LINE_MAX
 * octets); a line is judged only once it is whole, so the result does not
 * depend on how the bytes were split; after an error the parser must not be
 * fed again.
 */
#include "relay-reply.h"

#include <string.h>

#include "log.h"

#define REPLY_TEXT_CAP (RELAY_REPLY_LINES_MAX * (RELAY_REPLY_LINE_MAX + 1))

void relay_reply_parser_init(struct relay_reply_parser *p)
{
	memset(p, 0, sizeof(*p));
	buf_init(&p->reply.text, REPLY_TEXT_CAP);
}

void relay_reply_parser_deinit(struct relay_reply_parser *p)
{
	buf_deinit(&p->reply.text);
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* One whole line (without its line end): 1 last line, 0 more lines follow,
 * -1 malformed. */
static int reply_line(struct relay_reply_parser *p, const char **error_r)
{
	struct relay_reply *r = &p->reply;
	const char *l = p->line;
	size_t len = p->line_len;
	int code;

	if (len < 3 || !is_digit(l[0]) || !is_digit(l[1]) || !is_digit(l[2]) ||
	    l[0] < '2' || l[0] > '5') {
		*error_r = "malformed reply line (no reply code)";
		return -1;
	}
	if (len > 3 && l[3] != ' ' && l[3] != '-') {
		*error_r = "malformed reply line (bad separator)";
		return -1;
	}
	if (memchr(l, '\0', len) != NULL) {
		*error_r = "NUL in reply";
		return -1;
	}
	code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	if (r->line_count > 0 && code != r->code) {
		*error_r = "reply code changed within a multi-line reply";
		return -1;
	}
	if (r->line_count >= RELAY_REPLY_LINES_MAX) {
		*error_r = "reply has too many lines";
		return -1;
	}
	r->code = code;
	r->line_count++;
	if (len > 4 && buf_append(&r->text, l + 4, len - 4) < 0)
		panic("relay reply text over its cap");
	if (buf_append_c(&r->text, '\n') < 0)
		panic("relay reply text over its cap");
	return len > 3 && l[3] == '-' ? 0 : 1;
}

int relay_reply_parse(struct relay_reply_parser *p, const char *data, size_t len,
		      size_t *consumed_r, const char **error_r)
{
	size_t i = 0;

	if (p->complete) {
		p->complete = false;
		p->reply.code = 0;
		p->reply.line_count = 0;
		buf_reset(&p->reply.text);
	}
	while (i < len) {
		const char *nl = memchr(data + i, '\n', len - i);
		size_t n = nl != NULL ? (size_t)(nl - (data + i)) : len - i;
		int ret;

		if (n > RELAY_REPLY_LINE_MAX + 1 - p->line_len) {
			*consumed_r = i;
			*error_r = "reply line too long";
			return -1;
		}
		memcpy(p->line + p->line_len, data + i, n);
		p->line_len += n;
		i += n;
		if (nl == NULL)
			break;
		i++;
		/* The CR of CRLF; the line cap counts it, so a line of exactly
		 * LINE_MAX octets plus CR fits. */
		if (p->line_len > 0 && p->line[p->line_len - 1] == '\r')
			p->line_len--;
		if (p->line_len > RELAY_REPLY_LINE_MAX) {
			*consumed_r = i;
			*error_r = "reply line too long";
			return -1;
		}
		ret = reply_line(p, error_r);
		p->line_len = 0;
		if (ret < 0) {
			*consumed_r = i;
			return -1;
		}
		if (ret == 1) {
			p->complete = true;
			*consumed_r = i;
			return 1;
		}
	}
	*consumed_r = i;
	return 0;
}

const char *relay_reply_line(const struct relay_reply *r, unsigned int n, size_t *len_r)
{
	const char *p = r->text.data, *end = r->text.data + r->text.len;

	for (unsigned int i = 0; i < r->line_count && p < end; i++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (nl == NULL)
			return NULL;
		if (i == n) {
			*len_r = (size_t)(nl - p);
			return p;
		}
		p = nl + 1;
	}
	return NULL;
}

bool relay_reply_status(const struct relay_reply *r, char *out, size_t outsize)
{
	size_t len, i = 0, o = 0;
	const char *l = relay_reply_line(r, 0, &len);
	int parts = 0;

	out[0] = '\0';
	if (l == NULL || len < 5 || l[0] != '0' + r->code / 100 || l[1] != '.')
		return false;
	/* class "." subject(1-3 digits) "." detail(1-3 digits) */
	while (i < len && o + 1 < outsize) {
		size_t digits = 0;

		while (i < len && is_digit(l[i]) && o + 1 < outsize) {
			out[o++] = l[i++];
			digits++;
		}
		if (digits == 0 || digits > 3)
			break;
		parts++;
		if (parts == 3 || i >= len || l[i] != '.')
			break;
		out[o++] = l[i++];
	}
	if (parts != 3 || (i < len && l[i] != ' ' && l[i] != '\t') || o + 1 > outsize) {
		out[0] = '\0';
		return false;
	}
	out[o] = '\0';
	return true;
}

void relay_reply_summary(const struct relay_reply *r, char *out, size_t outsize)
{
	struct buf b;
	size_t len;
	const char *l;

	buf_init(&b, outsize > 0 ? outsize - 1 : 0);
	(void)buf_printf(&b, "%03d", r->code);
	for (unsigned int i = 0; (l = relay_reply_line(r, i, &len)) != NULL; i++) {
		if (len > 0 && buf_append_c(&b, ' ') < 0)
			break;
		for (size_t j = 0; j < len; j++) {
			char c = l[j] >= 0x20 && l[j] < 0x7f ? l[j] : '?';

			if (buf_append_c(&b, c) < 0)
				break;
		}
	}
	str_copy(out, b.data, outsize);
	buf_deinit(&b);
}
