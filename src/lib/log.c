/*
 * log: logfmt lines to stderr or syslog.
 *
 * A line is made in two steps, both in local buffers (no allocation, so a
 * worker thread or a failing malloc can always log):
 * 1. the format is expanded piece by piece, each byte marked as the
 *    format's own text or a conversion's output: only the format's own
 *    spaces separate words and only its own "key=" starts a field, which
 *    is what keeps client data from forging fields;
 * 2. the words become msg="..." and key=value pairs, quoted and escaped.
 * The line is then written with one write() (or one syslog()), so lines
 * from worker threads never interleave.
 */
/* <syslog.h> names its priorities LOG_DEBUG and LOG_INFO too: take what is
 * needed from it before log.h reuses the names. */
#include <syslog.h>
static const int syslog_priority[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
static const int syslog_facility = LOG_MAIL;
static const int syslog_options = LOG_PID | LOG_NDELAY;
#undef LOG_DEBUG
#undef LOG_INFO

#include "log.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* The expanded format (step 1), and the line (step 2): escaping can make
 * a byte four, the excess is cut and the line says truncated=yes. */
#define LOG_RAW_MAX 3072
#define LOG_LINE_MAX 4096
#define LOG_LINE_SLACK 32  /* room kept for a closing quote, truncated=yes, \n */

static enum log_level min_level = LOG_INFO;
static bool use_syslog;

void log_set_level(enum log_level level)
{
	min_level = level;
}

void log_open_syslog(const char *ident)
{
	/* by hand in a terminal, the lines show there too */
	openlog(ident, syslog_options | (isatty(STDERR_FILENO) ? LOG_PERROR : 0), syslog_facility);
	use_syslog = true;
}

const char *log_level_name(enum log_level level)
{
	static const char *const names[] = { "debug", "info", "warn", "error" };
	return (unsigned int)level < 4 ? names[level] : "error";
}

bool log_enabled(enum log_level level)
{
	return level >= min_level;
}

/* --- step 1: the format, expanded, each byte marked as the format's own --- */

struct log_raw {
	char text[LOG_RAW_MAX];
	bool own[LOG_RAW_MAX];  /* from the format's text, not from a conversion */
	size_t len;
	bool truncated;
};

static void raw_put(struct log_raw *r, const char *s, size_t n, bool own)
{
	for (size_t i = 0; i < n; i++) {
		if (r->len == LOG_RAW_MAX) {
			r->truncated = true;
			return;
		}
		r->text[r->len] = s[i];
		r->own[r->len++] = own;
	}
}

enum length_mod { LEN_NONE, LEN_HH, LEN_H, LEN_L, LEN_LL, LEN_J, LEN_Z, LEN_T, LEN_LD };

/* One conversion: spec is the whole "%...c" (with any '*' already replaced
 * by its number). The format was checked by the compiler against the
 * arguments (the printf attributes), so the types read here are theirs. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static int convert(char *out, size_t size, const char *spec, char conv, enum length_mod len,
		   va_list *ap)
{
	switch (conv) {
	case 'd': case 'i':
		switch (len) {
		case LEN_L: return snprintf(out, size, spec, va_arg(*ap, long));
		case LEN_LL: return snprintf(out, size, spec, va_arg(*ap, long long));
		case LEN_J: return snprintf(out, size, spec, va_arg(*ap, intmax_t));
		case LEN_Z: return snprintf(out, size, spec, va_arg(*ap, ssize_t));
		case LEN_T: return snprintf(out, size, spec, va_arg(*ap, ptrdiff_t));
		default: return snprintf(out, size, spec, va_arg(*ap, int));
		}
	case 'u': case 'o': case 'x': case 'X':
		switch (len) {
		case LEN_L: return snprintf(out, size, spec, va_arg(*ap, unsigned long));
		case LEN_LL: return snprintf(out, size, spec, va_arg(*ap, unsigned long long));
		case LEN_J: return snprintf(out, size, spec, va_arg(*ap, uintmax_t));
		case LEN_Z: return snprintf(out, size, spec, va_arg(*ap, size_t));
		case LEN_T: return snprintf(out, size, spec, va_arg(*ap, ptrdiff_t));
		default: return snprintf(out, size, spec, va_arg(*ap, unsigned int));
		}
	case 'c':
		return snprintf(out, size, spec, va_arg(*ap, int));
	case 's': {
		const char *s = va_arg(*ap, const char *);
		return snprintf(out, size, spec, s != NULL ? s : "(null)");
	}
	case 'p':
		return snprintf(out, size, spec, va_arg(*ap, void *));
	case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': case 'a': case 'A':
		if (len == LEN_LD)
			return snprintf(out, size, spec, va_arg(*ap, long double));
		return snprintf(out, size, spec, va_arg(*ap, double));
	default:
		return -1;
	}
}
#pragma GCC diagnostic pop

static void spec_add(char *spec, size_t *n, size_t size, const char *s, size_t len)
{
	if (*n + len < size) {
		memcpy(spec + *n, s, len);
		*n += len;
	}
	spec[*n] = '\0';
}

static void raw_format(struct log_raw *r, const char *fmt, va_list *ap)
{
	const char *p = fmt;
	while (*p != '\0') {
		const char *pct = strchr(p, '%');
		if (pct == NULL) {
			raw_put(r, p, strlen(p), true);
			return;
		}
		raw_put(r, p, (size_t)(pct - p), true);
		if (pct[1] == '%') {
			raw_put(r, "%", 1, true);
			p = pct + 2;
			continue;
		}
		char spec[48], num[16];
		size_t n = 0;
		const char *q = pct + 1;
		spec_add(spec, &n, sizeof(spec), "%", 1);
		while (*q != '\0' && strchr("-+ #0", *q) != NULL)
			spec_add(spec, &n, sizeof(spec), q++, 1);
		for (int part = 0; part < 2; part++) { /* width, then .precision */
			if (part == 1) {
				if (*q != '.')
					break;
				spec_add(spec, &n, sizeof(spec), q++, 1);
			}
			if (*q == '*') {
				int k = snprintf(num, sizeof(num), "%d", va_arg(*ap, int));
				spec_add(spec, &n, sizeof(spec), num, (size_t)k);
				q++;
			}
			while (*q >= '0' && *q <= '9')
				spec_add(spec, &n, sizeof(spec), q++, 1);
		}
		enum length_mod len = LEN_NONE;
		const char *mod = q;
		if (q[0] == 'h' && q[1] == 'h')
			len = LEN_HH, q += 2;
		else if (q[0] == 'l' && q[1] == 'l')
			len = LEN_LL, q += 2;
		else if (*q == 'h')
			len = LEN_H, q++;
		else if (*q == 'l')
			len = LEN_L, q++;
		else if (*q == 'j')
			len = LEN_J, q++;
		else if (*q == 'z')
			len = LEN_Z, q++;
		else if (*q == 't')
			len = LEN_T, q++;
		else if (*q == 'L')
			len = LEN_LD, q++;
		spec_add(spec, &n, sizeof(spec), mod, (size_t)(q - mod));
		char conv = *q;
		if (conv == '\0') {
			raw_put(r, pct, strlen(pct), true);
			return;
		}
		spec_add(spec, &n, sizeof(spec), q, 1);
		char out[2048];
		int k = convert(out, sizeof(out), spec, conv, len, ap);
		if (k < 0) {
			/* a conversion this logger does not know (%n, %ls): its
			 * argument cannot be read safely, so nothing after it is */
			raw_put(r, pct, strlen(pct), true);
			return;
		}
		if ((size_t)k >= sizeof(out)) {
			r->truncated = true;
			k = (int)sizeof(out) - 1;
		}
		raw_put(r, out, (size_t)k, false);
		p = q + 1;
	}
}

/* --- step 2: the line --- */

struct log_line {
	char text[LOG_LINE_MAX];
	size_t len;
	bool truncated;
};

static void line_put(struct log_line *l, const char *s, size_t n)
{
	size_t room = l->len < LOG_LINE_MAX - LOG_LINE_SLACK ? LOG_LINE_MAX - LOG_LINE_SLACK - l->len
							     : 0;
	if (n > room) {
		n = room;
		l->truncated = true;
	}
	memcpy(l->text + l->len, s, n);
	l->len += n;
}

static void line_puts(struct log_line *l, const char *s)
{
	line_put(l, s, strlen(s));
}

static bool needs_quotes(const char *s, size_t n)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c >= 0x7f || c == '=' || c == '"')
			return true;
	}
	return false;
}

/* A value, quoted if it needs to be (or always); bytes outside printable
 * ASCII as \xNN. */
static void line_value(struct log_line *l, const char *s, size_t n, bool always_quote)
{
	static const char hex[] = "0123456789abcdef";
	bool quote = always_quote || needs_quotes(s, n);
	if (quote)
		line_put(l, "\"", 1);
	for (size_t i = 0; i < n && !l->truncated; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[4];
		if (c == '"' || (c == '\\' && quote)) {
			esc[0] = '\\';
			esc[1] = (char)c;
			line_put(l, esc, 2);
		} else if (c < 0x20 || c >= 0x7f) {
			esc[0] = '\\';
			esc[1] = 'x';
			esc[2] = hex[c >> 4];
			esc[3] = hex[c & 15];
			line_put(l, esc, 4);
		} else {
			line_put(l, (const char *)&c, 1);
		}
	}
	if (quote) /* the slack always has room for it */
		l->text[l->len++] = '"';
}

static bool is_key_char(char c, bool first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	       (!first && ((c >= '0' && c <= '9') || c == '.' || c == '-'));
}

/* The length of "key" when the word at i starts with the format's own
 * "key=", else 0. */
static size_t field_key(const struct log_raw *r, size_t i, size_t end)
{
	size_t k = i;
	while (k < end && r->own[k] && is_key_char(r->text[k], k == i))
		k++;
	return k > i && k < end && r->own[k] && r->text[k] == '=' ? k - i : 0;
}

static bool is_space(const struct log_raw *r, size_t i)
{
	return r->own[i] && r->text[i] == ' ';
}

static void line_fields(struct log_line *l, const struct log_raw *r)
{
	/* the first field's word */
	size_t start = r->len;
	for (size_t i = 0; i < r->len; i++) {
		if ((i == 0 || is_space(r, i - 1)) && !is_space(r, i) && field_key(r, i, r->len) > 0) {
			start = i;
			break;
		}
	}
	size_t msg_end = start;
	while (msg_end > 0 && is_space(r, msg_end - 1))
		msg_end--;
	size_t msg_start = 0;
	while (msg_start < msg_end && is_space(r, msg_start))
		msg_start++;
	if (msg_end > msg_start) {
		/* the message is always quoted, so that it reads the same
		 * whether or not it has a space */
		line_puts(l, " msg=");
		line_value(l, r->text + msg_start, msg_end - msg_start, true);
	}
	size_t i = start;
	while (i < r->len && !l->truncated) {
		size_t klen = field_key(r, i, r->len);
		size_t vstart = i + klen + 1;
		/* the value runs to the next word that is a field */
		size_t j = vstart, vend = vstart;
		for (;;) {
			while (j < r->len && !is_space(r, j))
				j++;
			vend = j;
			while (j < r->len && is_space(r, j))
				j++;
			if (j >= r->len || field_key(r, j, r->len) > 0)
				break;
		}
		line_puts(l, " ");
		line_put(l, r->text + i, klen + 1);
		line_value(l, r->text + vstart, vend - vstart, false);
		i = j;
	}
}

static void log_write(enum log_level level, const char *session_proto,
		      unsigned long long session_id, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));
static void log_write(enum log_level level, const char *session_proto,
		      unsigned long long session_id, const char *fmt, va_list ap)
{
	struct log_raw raw;
	raw.len = 0;
	raw.truncated = false;
	va_list copy;
	va_copy(copy, ap);
	raw_format(&raw, fmt, &copy);
	va_end(copy);

	struct log_line line;
	line.len = 0;
	line.truncated = false;
	if (!use_syslog) {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		char stamp[64];
		snprintf(stamp, sizeof(stamp), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000);
		line_puts(&line, stamp);
	}
	line_puts(&line, "level=");
	line_puts(&line, log_level_name(level));
	if (session_proto != NULL) {
		char id[96];
		snprintf(id, sizeof(id), " session=%s#%llu", session_proto, session_id);
		line_puts(&line, id);
	}
	line_fields(&line, &raw);
	if (line.truncated || raw.truncated) {
		memcpy(line.text + line.len, " truncated=yes", 14);
		line.len += 14;
	}
	if (use_syslog) {
		line.text[line.len] = '\0';
		syslog(syslog_priority[level], "%s", line.text);
		return;
	}
	line.text[line.len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line.text, line.len);
	(void)w;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level < min_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	log_write(level, NULL, 0, fmt, ap);
	va_end(ap);
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	if (level < min_level)
		return;
	log_write(level, NULL, 0, fmt, ap);
}

void log_session_vmsg(enum log_level level, const char *proto, unsigned long long id,
		      const char *fmt, va_list ap)
{
	if (level < min_level)
		return;
	log_write(level, proto, id, fmt, ap);
}

void panic(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_write(LOG_ERROR, NULL, 0, fmt, ap);
	va_end(ap);
	abort();
}

void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_write(LOG_ERROR, NULL, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
