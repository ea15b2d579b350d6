/*
 * test-log: the logfmt lines log.c writes: level, session, msg and fields;
 * quoting and escaping; text from a conversion never making a field of its
 * own; every printf conversion the code base uses; truncation.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "test.h"

static char captured[8192];

/* Runs fn with stderr redirected to a file; the line, without ts= and the
 * newline, lands in captured. */
static void capture_begin(int *saved, FILE **f)
{
	fflush(stderr);
	*f = tmpfile();
	*saved = dup(STDERR_FILENO);
	dup2(fileno(*f), STDERR_FILENO);
}

static void capture_end(int saved, FILE *f)
{
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(f);
	size_t n = fread(captured, 1, sizeof(captured) - 1, f);
	fclose(f);
	captured[n] = '\0';
}

/* The line without its "ts=... " prefix and trailing newline. */
static const char *body(void)
{
	char *s = captured;
	if (strncmp(s, "ts=", 3) == 0) {
		char *sp = strchr(s, ' ');
		s = sp != NULL ? sp + 1 : s;
	}
	size_t n = strlen(s);
	if (n > 0 && s[n - 1] == '\n')
		s[n - 1] = '\0';
	return s;
}

#define LOGGED(expected, ...) do { int _saved; FILE *_f; capture_begin(&_saved, &_f); \
	log_msg(__VA_ARGS__); capture_end(_saved, _f); CHECK_STR(body(), expected); } while (0)

static void session_line(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void session_line(enum log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_session_vmsg(level, "pop3", 12, fmt, ap);
	va_end(ap);
}

static void test_shape(void)
{
	int saved;
	FILE *f;
	capture_begin(&saved, &f);
	log_info("tern ready");
	capture_end(saved, f);
	/* ts=YYYY-MM-DDTHH:MM:SS.mmmZ */
	CHECK(strncmp(captured, "ts=", 3) == 0 && strlen(captured) > 28 && captured[13] == 'T' &&
	      captured[26] == 'Z' && captured[27] == ' ');
	CHECK_STR(body(), "level=info msg=\"tern ready\"");

	LOGGED("level=warn msg=\"spool: removed 1 leftover file\"", LOG_WARN,
	       "spool: removed %u leftover file", 1u);
	LOGGED("level=error msg=\"login\" user=alice@example.test result=failed", LOG_ERROR,
	       "login user=%s result=%s", "alice@example.test", "failed");
	/* only fields */
	LOGGED("level=info user=a", LOG_INFO, "user=%s", "a");
	/* text with spaces around '=' stays in the message (tests grep it) */
	LOGGED("level=info msg=\"refused ([limits] max_connections = 3)\"", LOG_INFO,
	       "refused ([limits] max_connections = %u)", 3u);
	/* a word without '=' after the fields belongs to the value before it */
	LOGGED("level=info msg=\"x\" a=\"1 (cached)\" b=2", LOG_INFO, "x a=%d (cached) b=%d", 1, 2);
	LOGGED("level=info msg=\"x\" empty=\"\" n=0", LOG_INFO, "x empty=%s n=%d", "", 0);
	LOGGED("level=info msg=\"x\" from=<> to=<a@b>", LOG_INFO, "x from=<%s> to=<%s>", "", "a@b");

	capture_begin(&saved, &f);
	session_line(LOG_INFO, "connect ip=%s tls=%s", "127.0.0.1", "no");
	capture_end(saved, f);
	CHECK_STR(body(), "level=info session=pop3#12 msg=\"connect\" ip=127.0.0.1 tls=no");
}

static void test_client_text(void)
{
	/* a conversion's spaces and '=' never split a value or make a field */
	LOGGED("level=info msg=\"login\" user=\"\\\"x ip=6.6.6.6\\\"@example.test\" ip=127.0.0.1",
	       LOG_INFO, "login user=%s ip=%s", "\"x ip=6.6.6.6\"@example.test", "127.0.0.1");
	/* nor in the message */
	LOGGED("level=info msg=\"helo from evil user=root\" ip=1", LOG_INFO, "helo from %s ip=%d",
	       "evil user=root", 1);
	/* control bytes, 8-bit bytes and backslashes */
	LOGGED("level=info msg=\"x\" v=\"a\\x0d\\x0ab\\xc3\\xa9\\\\\"", LOG_INFO, "x v=%s",
	       "a\r\nb\xc3\xa9\\");
	LOGGED("level=info msg=\"x\" v=a\\b", LOG_INFO, "x v=%s", "a\\b");
	LOGGED("level=info msg=\"say \\\"hi\\\"\"", LOG_INFO, "say \"%s\"", "hi");
}

static void test_conversions(void)
{
	LOGGED("level=info msg=\"x\" a=-1 b=2 c=3 d=4 e=5 f=ff g=0x1f h=%", LOG_INFO,
	       "x a=%d b=%u c=%ld d=%lld e=%zu f=%x g=%#x h=%%", -1, 2u, 3L, 4LL, (size_t)5, 255u,
	       31u);
	LOGGED("level=info msg=\"x\" a=1.50 b=7 c=abc d=\"  ab\" e=Q", LOG_INFO,
	       "x a=%.2f b=%jd c=%.3s d=%*.*s e=%c", 1.5, (intmax_t)7, "abcdef", 4, 2, "abc", 'Q');
	const char *volatile null_str = NULL; /* hidden from the compiler's format check */
	LOGGED("level=info msg=\"x\" a=(null)", LOG_INFO, "x a=%s", null_str);
	LOGGED("level=info msg=\"x\" s=-3 h=4", LOG_INFO, "x s=%zd h=%hu", (ssize_t)-3,
	       (unsigned short)4);
}

static void test_limits(void)
{
	static char big[6000];
	memset(big, 'A', sizeof(big) - 1);
	int saved;
	FILE *f;
	capture_begin(&saved, &f);
	log_info("x v=%s", big);
	capture_end(saved, f);
	size_t n = strlen(captured);
	CHECK(n < 4096);
	CHECK(n > 2000);
	CHECK(strstr(captured, " truncated=yes\n") != NULL);
	/* escaping fills the line faster; the quote is still closed */
	static char ctl[3000];
	memset(ctl, '\x01', sizeof(ctl) - 1);
	capture_begin(&saved, &f);
	log_info("x v=%s", ctl);
	capture_end(saved, f);
	CHECK(strlen(captured) < 4096);
	CHECK(strstr(captured, "\" truncated=yes\n") != NULL);

	/* levels below the minimum are not written */
	log_set_level(LOG_WARN);
	capture_begin(&saved, &f);
	log_info("hidden");
	log_warn("shown");
	capture_end(saved, f);
	CHECK(strstr(captured, "hidden") == NULL);
	CHECK(strstr(captured, "level=warn msg=\"shown\"") != NULL);
	CHECK(!log_enabled(LOG_INFO));
	CHECK(log_enabled(LOG_ERROR));
	log_set_level(LOG_INFO);
	CHECK_STR(log_level_name(LOG_DEBUG), "debug");
	CHECK_STR(log_level_name(LOG_ERROR), "error");
}

int main(void)
{
	test_shape();
	test_client_text();
	test_conversions();
	test_limits();
	TEST_MAIN_END();
}
