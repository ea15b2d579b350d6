/*
 * Unit tests for src/lib: buf, ini, uuid and worker-pool.
 */
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "ini.h"
#include "uuid.h"
#include "worker-pool.h"

#include "test.h"

/* ---- buf ---- */

static void test_buf_cap(void)
{
	struct buf b;
	buf_init(&b, 10);
	CHECK(b.data != NULL);
	CHECK_INT(b.len, 0);
	CHECK_STR(b.data, "");
	CHECK_INT(buf_append(&b, "0123456789", 10), 0);
	CHECK_STR(b.data, "0123456789");
	CHECK_INT(buf_append_c(&b, 'x'), -1);
	CHECK_INT(buf_append(&b, "x", 1), -1);
	CHECK_INT(buf_append_str(&b, "xy"), -1);
	CHECK_INT(buf_reserve(&b, 1), -1);
	CHECK_INT(buf_reserve(&b, 0), 0);
	CHECK_INT(b.len, 10);
	CHECK_STR(b.data, "0123456789");
	/* appending nothing at the cap is fine */
	CHECK_INT(buf_append(&b, "", 0), 0);
	buf_reset(&b);
	CHECK_INT(b.len, 0);
	CHECK_STR(b.data, "");
	/* one append that would overshoot appends nothing at all */
	CHECK_INT(buf_append(&b, "abc", 3), 0);
	CHECK_INT(buf_append(&b, "defghijkl", 9), -1);
	CHECK_STR(b.data, "abc");
	CHECK_INT(b.len, 3);
	/* overflow of the size computation is refused, not wrapped */
	CHECK_INT(buf_reserve(&b, SIZE_MAX), -1);
	CHECK_INT(buf_reserve(&b, SIZE_MAX - 2), -1);
	buf_deinit(&b);

	struct buf u;
	buf_init(&u, 0);
	CHECK_INT(buf_reserve(&u, SIZE_MAX), -1);
	CHECK_INT(u.len, 0);
	buf_deinit(&u);
}

static void test_buf_growth(void)
{
	struct buf b;
	buf_init(&b, 0);
	char chunk[37];
	size_t total = 0;
	for (int i = 0; i < 30000; i++) {
		for (size_t k = 0; k < sizeof(chunk); k++)
			chunk[k] = (char)('a' + (i + (int)k) % 26);
		if (buf_append(&b, chunk, sizeof(chunk)) < 0)
			break;
		total += sizeof(chunk);
	}
	CHECK_INT(b.len, total);
	CHECK_INT(total, 30000 * sizeof(chunk));
	CHECK(b.size > b.len);
	CHECK_INT(b.data[b.len], 0);
	int bad = 0;
	for (int i = 0; i < 30000; i++)
		for (size_t k = 0; k < sizeof(chunk); k++)
			if (b.data[(size_t)i * sizeof(chunk) + k] != (char)('a' + (i + (int)k) % 26))
				bad++;
	CHECK_INT(bad, 0);
	buf_deinit(&b);
	CHECK(b.data == NULL);

	/* a cap above the initial allocation still allows growth up to it */
	buf_init(&b, 1000);
	char big[1000];
	memset(big, 'z', sizeof(big));
	CHECK_INT(buf_append(&b, big, 999), 0);
	CHECK_INT(buf_append_c(&b, 'q'), 0);
	CHECK_INT(buf_append_c(&b, 'q'), -1);
	CHECK_INT(b.len, 1000);
	CHECK_INT(b.data[999], 'q');
	CHECK_INT(b.data[1000], 0);
	buf_deinit(&b);
}

static void test_buf_printf(void)
{
	struct buf b;
	buf_init(&b, 0);
	CHECK_INT(buf_printf(&b, "%d-%s", 42, "x"), 0);
	CHECK_STR(b.data, "42-x");
	/* grows past the initial allocation */
	char longs[300];
	memset(longs, 'L', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = '\0';
	CHECK_INT(buf_printf(&b, "[%s]", longs), 0);
	CHECK_INT(b.len, 4 + 2 + 299);
	CHECK(memcmp(b.data, "42-x[LLL", 8) == 0);
	CHECK_INT(b.data[b.len - 1], ']');
	CHECK_INT(strlen(b.data), b.len);
	buf_deinit(&b);

	/* over the cap while the text fits in the allocation: unchanged */
	buf_init(&b, 8);
	CHECK_INT(buf_append_str(&b, "abc"), 0);
	CHECK_INT(buf_printf(&b, "%s", "defghij"), -1);
	CHECK_INT(b.len, 3);
	CHECK_STR(b.data, "abc");
	/* exactly up to the cap is accepted */
	CHECK_INT(buf_printf(&b, "%s", "defgh"), 0);
	CHECK_STR(b.data, "abcdefgh");
	CHECK_INT(buf_printf(&b, "%c", 'i'), -1);
	CHECK_STR(b.data, "abcdefgh");
	CHECK_INT(b.len, 8);
	buf_deinit(&b);

	/* over the cap and over the allocation: unchanged */
	buf_init(&b, 100);
	CHECK_INT(buf_append_str(&b, "keep"), 0);
	CHECK_INT(buf_printf(&b, "%s", longs), -1);
	CHECK_INT(b.len, 4);
	CHECK_STR(b.data, "keep");
	CHECK_INT(buf_printf(&b, "%.96s", longs), 0);
	CHECK_INT(b.len, 100);
	CHECK_INT(buf_printf(&b, "%s", ""), 0);
	CHECK_INT(b.len, 100);
	buf_deinit(&b);
}

static void test_buf_consume_steal_wipe(void)
{
	struct buf b;
	buf_init(&b, 0);
	buf_append_str(&b, "hello world");
	buf_consume(&b, 6);
	CHECK_STR(b.data, "world");
	CHECK_INT(b.len, 5);
	buf_consume(&b, 0);
	CHECK_STR(b.data, "world");
	buf_consume(&b, 5);
	CHECK_INT(b.len, 0);
	CHECK_STR(b.data, "");
	buf_append_str(&b, "abc");
	buf_consume(&b, 100);
	CHECK_INT(b.len, 0);
	CHECK_STR(b.data, "");
	buf_deinit(&b);

	buf_init(&b, 50);
	buf_append_str(&b, "stolen");
	char *p = buf_steal(&b);
	CHECK_STR(p, "stolen");
	free(p);
	CHECK_INT(b.len, 0);
	CHECK(b.data != NULL);
	CHECK_STR(b.data, "");
	CHECK_INT(b.cap, 50);
	/* still usable, with the same cap */
	CHECK_INT(buf_append_str(&b, "again"), 0);
	CHECK_STR(b.data, "again");
	char over[60];
	memset(over, 'o', sizeof(over));
	CHECK_INT(buf_append(&b, over, sizeof(over)), -1);
	buf_deinit(&b);

	buf_init(&b, 0);
	buf_append_str(&b, "secret-password");
	char *data = b.data;
	size_t old = b.len;
	buf_wipe(&b);
	CHECK_INT(b.len, 0);
	CHECK_STR(b.data, "");
	CHECK(b.data == data);
	size_t nonzero = 0;
	for (size_t i = 0; i < old; i++)
		if (data[i] != 0)
			nonzero++;
	CHECK_INT(nonzero, 0);
	CHECK_INT(buf_append_str(&b, "x"), 0);
	CHECK_STR(b.data, "x");
	buf_deinit(&b);
}

static void test_str_helpers(void)
{
	char dst[8];
	memset(dst, '#', sizeof(dst));
	CHECK_INT(str_copy(dst, "abc", sizeof(dst)), 3);
	CHECK_STR(dst, "abc");
	CHECK_INT(str_copy(dst, "abcdefg", sizeof(dst)), 7);
	CHECK_STR(dst, "abcdefg");
	CHECK_INT(str_copy(dst, "abcdefgh", sizeof(dst)), 8);
	CHECK_STR(dst, "abcdefg");
	CHECK_INT(str_copy(dst, "a much longer string", sizeof(dst)), 20);
	CHECK_STR(dst, "a much ");
	CHECK_INT(str_copy(dst, "", sizeof(dst)), 0);
	CHECK_STR(dst, "");
	dst[0] = '#';
	CHECK_INT(str_copy(dst, "xyz", 0), 3);
	CHECK_INT(dst[0], '#');
	CHECK_INT(str_copy(dst, "xyz", 1), 3);
	CHECK_STR(dst, "");

	char s[] = "MiXeD@Example.COM";
	str_lower(s);
	CHECK_STR(s, "mixed@example.com");
	CHECK(str_eq_icase("RETR", "retr"));
	CHECK(!str_eq_icase("RETR", "ret"));
	CHECK(slice_eq_icase((struct slice){ "StLs", 4 }, "stls"));
	CHECK(!slice_eq_icase((struct slice){ "StLsX", 4 }, "stl"));
	CHECK(!slice_eq_icase((struct slice){ "StL", 3 }, "stls"));

	char out[64];
	str_escape_for_log(out, sizeof(out), "USER bob\r\n", 10, 100);
	CHECK_STR(out, "USER bob\\x0d\\x0a");
	str_escape_for_log(out, sizeof(out), "a\\b", 3, 100);
	CHECK_STR(out, "a\\x5cb");
	str_escape_for_log(out, sizeof(out), "\x00\x7f\xff~ ", 5, 100);
	CHECK_STR(out, "\\x00\\x7f\\xff~ ");
	str_escape_for_log(out, sizeof(out), "abcdefghij", 10, 4);
	CHECK_STR(out, "abcd...");
	str_escape_for_log(out, sizeof(out), "abcd", 4, 4);
	CHECK_STR(out, "abcd");
	str_escape_for_log(out, sizeof(out), "", 0, 4);
	CHECK_STR(out, "");
	/* a small output buffer is never overrun and never ends mid-escape */
	char small[8];
	memset(out, '#', sizeof(out));
	str_escape_for_log(out, sizeof(small), "abcdefghijklmnop", 16, 100);
	CHECK_INT(strlen(out), sizeof(small) - 1);
	CHECK_INT(out[sizeof(small)], '#');
	memset(out, '#', sizeof(out));
	str_escape_for_log(out, 6, "abc\x01\x02", 5, 100);
	CHECK_STR(out, "abc");
	CHECK_INT(out[6], '#');
	memset(out, '#', sizeof(out));
	str_escape_for_log(out, 1, "abc", 3, 100);
	CHECK_STR(out, "");
	CHECK_INT(out[1], '#');
	memset(out, '#', sizeof(out));
	str_escape_for_log(out, 0, "abc", 3, 100);
	CHECK_INT(out[0], '#');
}

/* ---- ini ---- */

static char tmpdir[] = "/tmp/tern-test-lib-XXXXXX";

static char *write_tmp(const char *name, const char *content, size_t len)
{
	struct buf path;
	buf_init(&path, 0);
	buf_printf(&path, "%s/%s", tmpdir, name);
	FILE *f = fopen(path.data, "wb");
	if (f == NULL) {
		fprintf(stderr, "cannot write %s: %s\n", path.data, strerror(errno));
		exit(2);
	}
	fwrite(content, 1, len, f);
	fclose(f);
	char *ret = buf_steal(&path);
	buf_deinit(&path);
	return ret;
}

struct ini_log {
	struct buf out;
	const char *fail_key; /* the key callback refuses this key */
};

static int log_section(void *ctx, const char *section, const char **error_r)
{
	struct ini_log *l = ctx;
	buf_printf(&l->out, "[%s]\n", section);
	if (strcmp(section, "refused") == 0) {
		*error_r = "section refused by callback";
		return -1;
	}
	return 0;
}

static int log_key(void *ctx, const char *section, const char *key, const char *value,
		   unsigned int line, const char **error_r)
{
	struct ini_log *l = ctx;
	buf_printf(&l->out, "%s.%s=<%s>\n", section, key, value);
	if (l->fail_key != NULL && strcmp(key, l->fail_key) == 0) {
		*error_r = "key refused by callback";
		return -1;
	}
	return 0;
}

/* Parses content; returns the callback log, and the error (or NULL). */
static int ini_run(const char *content, size_t len, bool with_section_cb, const char *fail_key,
		   char **log_r, char **error_r, char **path_r)
{
	static int n;
	char name[32];
	snprintf(name, sizeof(name), "t%d.ini", n++);
	char *path = write_tmp(name, content, len);
	struct ini_log l = { .fail_key = fail_key };
	buf_init(&l.out, 0);
	*error_r = NULL;
	int ret = ini_parse_file(path, with_section_cb ? log_section : NULL, log_key, &l,
				 error_r);
	*log_r = buf_steal(&l.out);
	buf_deinit(&l.out);
	*path_r = path;
	return ret;
}

#define INI_OK(text, expect_log) do { char *_log, *_err, *_path; \
	CHECK_INT(ini_run(text, sizeof(text) - 1, true, NULL, &_log, &_err, &_path), 0); \
	CHECK(_err == NULL); CHECK_STR(_log, expect_log); \
	free(_log); free(_err); free(_path); } while (0)

/* Expects an error "PATH:LINE: ..." whose reason contains word. */
static void ini_expect_error(const char *text, size_t len, unsigned int line, const char *word,
			     const char *fail_key, int src_line)
{
	char *log, *err, *path;
	int ret = ini_run(text, len, true, fail_key, &log, &err, &path);
	char want[512];
	snprintf(want, sizeof(want), "%s:%u: ", path, line);
	test_checks++;
	if (ret != -1 || err == NULL || strncmp(err, want, strlen(want)) != 0 ||
	    strstr(err + strlen(want), word) == NULL) {
		test_failures++;
		fprintf(stderr, "%s:%d: ini error: ret %d, got \"%s\", expected \"%s...%s...\"\n",
			__FILE__, src_line, ret, err != NULL ? err : "(null)", want, word);
	}
	free(log);
	free(err);
	free(path);
}
#define INI_ERR(text, line, word) \
	ini_expect_error(text, sizeof(text) - 1, line, word, NULL, __LINE__)

static void test_ini(void)
{
	INI_OK("", "");
	INI_OK("# only a comment\n\n; another\n", "");
	INI_OK("[server]\nhostname = mx.example.com\n",
	       "[server]\nserver.hostname=<mx.example.com>\n");
	INI_OK("\n  # indented comment\n[a]\nk1=v1\n  k2   =   spaced value  \n\tk3\t=\tx\n"
	       "empty =\n[b.c-d_e]\nk.1-x_y = a=b=c\n[a]\nk1 = again\nlast = no newline",
	       "[a]\na.k1=<v1>\na.k2=<spaced value>\na.k3=<x>\na.empty=<>\n"
	       "[b.c-d_e]\nb.c-d_e.k.1-x_y=<a=b=c>\n[a]\na.k1=<again>\na.last=<no newline>\n");
	/* CRLF line endings */
	INI_OK("[s]\r\nk = v\r\n# c\r\n\r\n", "[s]\ns.k=<v>\n");
	/* section header with inner spaces is trimmed */
	INI_OK("[ s ]\nk = v # not a comment\n", "[s]\ns.k=<v # not a comment>\n");
	/* a long line under the limit is fine */
	{
		char text[4100];
		size_t n = (size_t)snprintf(text, sizeof(text), "[s]\nk = ");
		memset(text + n, 'v', 4000);
		n += 4000;
		text[n++] = '\n';
		char *log, *err, *path;
		CHECK_INT(ini_run(text, n, true, NULL, &log, &err, &path), 0);
		CHECK(err == NULL);
		CHECK_INT(strlen(log), strlen("[s]\ns.k=<>\n") + 4000);
		free(log);
		free(err);
		free(path);
	}
	/* without a section callback */
	{
		char *log, *err, *path;
		const char text[] = "[x]\nk = v\n";
		CHECK_INT(ini_run(text, sizeof(text) - 1, false, NULL, &log, &err, &path), 0);
		CHECK_STR(log, "x.k=<v>\n");
		free(log);
		free(err);
		free(path);
	}

	INI_ERR("[s]\nk = v\nthis has no equals sign\n", 3, "key = value");
	INI_ERR("[s]\n\n\n= value without key\n", 4, "key");
	INI_ERR("[s]\nbad key = v\n", 2, "key");
	INI_ERR("k = v\n[s]\n", 1, "section");
	INI_ERR("# comment\n\nhostname = early\n", 3, "section");
	INI_ERR("[s]\nk = v\n[smtp\nx = y\n", 3, "section header");
	INI_ERR("[s]\n[smtp] trailing\n", 2, "section header");
	INI_ERR("[s]\n[]\n", 2, "section");
	INI_ERR("[s]\n[a b]\n", 2, "section");
	INI_ERR("[s]\n[a]b]\n", 2, "section");
	INI_ERR("[s]\n[a/b]\n", 2, "section");
	INI_ERR("[s]\nk = v\nsmtp]\n", 3, "key");
	/* a refusing callback's reason is reported at its line */
	INI_ERR("[ok]\nk = v\n\n[refused]\nk = v\n", 4, "section refused by callback");
	{
		const char text[] = "[s]\na = 1\nb = 2\nfail = 3\nc = 4\n";
		ini_expect_error(text, sizeof(text) - 1, 4, "key refused by callback", "fail",
				 __LINE__);
	}
	/* overlong lines are an error, not silently split */
	{
		char text[6000];
		size_t n = (size_t)snprintf(text, sizeof(text), "[s]\n# c\nk = ");
		memset(text + n, 'v', 5000);
		n += 5000;
		memcpy(text + n, "\nz = 1\n", 7);
		n += 7;
		ini_expect_error(text, n, 3, "too long", NULL, __LINE__);
		/* and a long comment too */
		n = (size_t)snprintf(text, sizeof(text), "[s]\n#");
		memset(text + n, 'c', 5000);
		n += 5000;
		text[n++] = '\n';
		ini_expect_error(text, n, 2, "too long", NULL, __LINE__);
	}
	/* NUL bytes: whether the value would be cut or the line ignored */
	{
		const char t1[] = "[s]\nkey = val\0ue\nk2 = v\n";
		ini_expect_error(t1, sizeof(t1) - 1, 2, "NUL", NULL, __LINE__);
		const char t2[] = "[s]\nk = v\n# comment\0 hidden = x\n";
		ini_expect_error(t2, sizeof(t2) - 1, 3, "NUL", NULL, __LINE__);
		const char t3[] = "[s]\n\0\n";
		ini_expect_error(t3, sizeof(t3) - 1, 2, "NUL", NULL, __LINE__);
		const char t4[] = "[s]\nk = v\0";
		ini_expect_error(t4, sizeof(t4) - 1, 2, "NUL", NULL, __LINE__);
	}
	/* every error is reported, in file order, and parsing goes on after each */
	{
		char text[6000];
		size_t n = (size_t)snprintf(text, sizeof(text),
					    "early = 1\n[s]\na = 1\nno equals\nfail = 2\n# long: ");
		memset(text + n, 'c', 5000);
		n += 5000;
		const char rest[] = "\nb = 2\n[refused]\nhidden = 3\n[bad\nalso = hidden\n"
				    "[t]\nbad key = 4\nc\0 = 5\nd = 6\n";
		memcpy(text + n, rest, sizeof(rest) - 1);
		n += sizeof(rest) - 1;
		char *log, *err, *path;
		static const char *const fail = "fail";
		char *p = write_tmp("multi.ini", text, n);
		struct ini_log l = { .fail_key = fail };
		buf_init(&l.out, 0);
		err = NULL;
		CHECK_INT(ini_parse_file(p, log_section, log_key, &l, &err), -1);
		log = buf_steal(&l.out);
		buf_deinit(&l.out);
		path = p;
		/* the good keys around the errors were all read */
		CHECK_STR(log, "[s]\ns.a=<1>\ns.fail=<2>\ns.b=<2>\n[refused]\n[t]\nt.d=<6>\n");
		struct buf want;
		buf_init(&want, 0);
		buf_printf(&want, "%s:1: key outside of any [section]\n"
				  "%s:4: expected \"key = value\"\n"
				  "%s:5: key refused by callback\n"
				  "%s:6: line too long (limit 4095 characters)\n"
				  "%s:8: section refused by callback\n"
				  "%s:10: malformed section header (expected \"[name]\")\n"
				  "%s:13: invalid key name\n"
				  "%s:14: NUL byte in line",
			   path, path, path, path, path, path, path, path);
		CHECK_STR(err, want.data);
		buf_deinit(&want);
		free(log);
		free(err);
		free(path);
	}
	/* past INI_ERRORS_MAX, a count */
	{
		struct buf t;
		buf_init(&t, 0);
		buf_append_str(&t, "[s]\n");
		for (int i = 0; i < INI_ERRORS_MAX + 5; i++)
			buf_append_str(&t, "oops\n");
		char *log, *err, *path;
		CHECK_INT(ini_run(t.data, t.len, true, NULL, &log, &err, &path), -1);
		unsigned int lines = 1;
		for (const char *c = err; *c != '\0'; c++)
			lines += *c == '\n';
		CHECK_INT(lines, INI_ERRORS_MAX + 1);
		CHECK(strstr(err, ": 5 more errors not shown") != NULL);
		buf_deinit(&t);
		free(log);
		free(err);
		free(path);
	}
	/* a missing file names the file */
	{
		char *err = NULL;
		struct ini_log l = { 0 };
		buf_init(&l.out, 0);
		CHECK_INT(ini_parse_file("/nonexistent/tern.ini", NULL, log_key, &l, &err), -2);
		CHECK(err != NULL && strstr(err, "/nonexistent/tern.ini") != NULL);
		free(err);
		buf_deinit(&l.out);
	}
}

/* ---- uuid ---- */

static int variant_ok(const struct uuid *u)
{
	return (u->b[8] & 0xc0) == 0x80;
}

static void test_timeuuid_layout(void)
{
	struct uuid u;
	timeuuid_generate(&u);
	CHECK_INT(uuid_version(&u), 1);
	CHECK_INT(u.b[6] >> 4, 1);
	CHECK(variant_ok(&u));
	CHECK_INT(u.b[10] & 0x01, 1);

	/* the timestamp is now */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	int64_t then = timeuuid_unix_usec(&u);
	CHECK(then <= now + 1000 && then > now - 5000000);

	/* node and clock sequence are fixed for the process */
	struct uuid v;
	timeuuid_generate(&v);
	CHECK(memcmp(u.b + 8, v.b + 8, 8) == 0);

	/* round trip of the ticks, clock sequence and node */
	static const uint64_t ticks[] = {
		0, 1, 0xffffffffULL, 0x100000000ULL, 0xffffffffffffULL, 0x1000000000000ULL,
		0x0fffffffffffffffULL, 0x01B21DD213814000ULL, 0x01ef0123456789abULL,
	};
	const uint8_t node[6] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab };
	for (size_t i = 0; i < sizeof(ticks) / sizeof(ticks[0]); i++) {
		timeuuid_from_ticks(ticks[i], 0x2a5b, node, &u);
		CHECK_INT(timeuuid_ticks(&u), ticks[i]);
		CHECK_INT(uuid_version(&u), 1);
		CHECK(variant_ok(&u));
		CHECK_INT(((u.b[8] & 0x3f) << 8) | u.b[9], 0x2a5b);
		CHECK(memcmp(u.b + 10, node, 6) == 0);
	}
	/* the clock sequence is 14 bits: the variant survives a wider value */
	timeuuid_from_ticks(5, 0xffff, node, &u);
	CHECK(variant_ok(&u));
	CHECK_INT(((u.b[8] & 0x3f) << 8) | u.b[9], 0x3fff);
	/* known layout (RFC 4122 field order) */
	timeuuid_from_ticks(0x1d3a5b7c9e0f1234ULL & 0x0fffffffffffffffULL, 0x0102, node, &u);
	char s[UUID_STR_LEN + 1];
	uuid_format(&u, s);
	CHECK_STR(s, "9e0f1234-5b7c-1d3a-8102-0123456789ab");
	/* Unix epoch */
	timeuuid_from_ticks(0x01B21DD213814000ULL + 10 * 1234567, 0, node, &u);
	CHECK_INT(timeuuid_unix_usec(&u), 1234567);
}

static void test_timeuuid_monotonic(void)
{
	struct uuid prev, cur;
	timeuuid_generate(&prev);
	int not_increasing = 0, bad_compare = 0, bad_layout = 0;
	for (int i = 0; i < 1000000; i++) {
		timeuuid_generate(&cur);
		if (timeuuid_ticks(&cur) <= timeuuid_ticks(&prev))
			not_increasing++;
		if (timeuuid_compare(&prev, &cur) >= 0 || timeuuid_compare(&cur, &prev) <= 0)
			bad_compare++;
		if (uuid_version(&cur) != 1 || !variant_ok(&cur) || (cur.b[10] & 1) == 0)
			bad_layout++;
		prev = cur;
	}
	CHECK_INT(not_increasing, 0);
	CHECK_INT(bad_compare, 0);
	CHECK_INT(bad_layout, 0);
}

#define GEN_THREADS 4
#define GEN_PER_THREAD 100000

static void *gen_thread(void *arg)
{
	struct uuid *out = arg;
	for (int i = 0; i < GEN_PER_THREAD; i++)
		timeuuid_generate(&out[i]);
	return NULL;
}

static int cmp_uuid_bytes(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct uuid));
}

static void test_timeuuid_threads(void)
{
	struct uuid *all = xcalloc(GEN_THREADS * GEN_PER_THREAD, sizeof(struct uuid));
	pthread_t th[GEN_THREADS];
	for (int i = 0; i < GEN_THREADS; i++)
		pthread_create(&th[i], NULL, gen_thread, all + (size_t)i * GEN_PER_THREAD);
	for (int i = 0; i < GEN_THREADS; i++)
		pthread_join(th[i], NULL);
	/* each thread's sequence is increasing */
	int not_increasing = 0;
	for (int t = 0; t < GEN_THREADS; t++)
		for (int i = 1; i < GEN_PER_THREAD; i++)
			if (timeuuid_compare(&all[t * GEN_PER_THREAD + i - 1],
					     &all[t * GEN_PER_THREAD + i]) >= 0)
				not_increasing++;
	CHECK_INT(not_increasing, 0);
	qsort(all, GEN_THREADS * GEN_PER_THREAD, sizeof(struct uuid), cmp_uuid_bytes);
	int dups = 0;
	for (int i = 1; i < GEN_THREADS * GEN_PER_THREAD; i++)
		if (memcmp(&all[i - 1], &all[i], sizeof(struct uuid)) == 0)
			dups++;
	CHECK_INT(dups, 0);
	free(all);
}

/* Cassandra's TimeUUIDType.compareCustom, transcribed: the most significant
 * long with its timestamp fields reordered, compared signed; then the least
 * significant long with every byte but the first sign-flipped, compared
 * signed, which is a signed per-byte comparison. */
static int cassandra_compare(const struct uuid *a, const struct uuid *b)
{
	uint64_t msb[2] = { 0, 0 }, lsb[2] = { 0, 0 };
	const struct uuid *u[2] = { a, b };
	for (int k = 0; k < 2; k++) {
		for (int i = 0; i < 8; i++) {
			msb[k] = (msb[k] << 8) | u[k]->b[i];
			lsb[k] = (lsb[k] << 8) | u[k]->b[8 + i];
		}
		msb[k] = (msb[k] << 48) | ((msb[k] << 16) & 0xFFFF00000000ULL) | (msb[k] >> 32);
		lsb[k] ^= 0x0080808080808080ULL;
	}
	int64_t m0 = (int64_t)msb[0], m1 = (int64_t)msb[1];
	if (m0 != m1)
		return m0 < m1 ? -1 : 1;
	int64_t l0 = (int64_t)lsb[0], l1 = (int64_t)lsb[1];
	if (l0 != l1)
		return l0 < l1 ? -1 : 1;
	return 0;
}

static int sign(int x)
{
	return (x > 0) - (x < 0);
}

static void test_timeuuid_compare(void)
{
	const uint8_t n01[6] = { 0x01, 0, 0, 0, 0, 0 };
	const uint8_t nff[6] = { 0xff, 0, 0, 0, 0, 0 };
	const uint8_t n7f[6] = { 0x7f, 0, 0, 0, 0, 0 };
	const uint8_t n80[6] = { 0x80, 0, 0, 0, 0, 0 };
	struct uuid a, b;

	/* the timestamp decides first, whatever the other bytes */
	timeuuid_from_ticks(100, 0x3fff, n7f, &a);
	timeuuid_from_ticks(101, 0, nff, &b);
	CHECK(timeuuid_compare(&a, &b) < 0);
	CHECK(timeuuid_compare(&b, &a) > 0);
	/* time_low is the least significant part although it comes first */
	timeuuid_from_ticks(0x00000001ffffffffULL, 0, n01, &a);
	timeuuid_from_ticks(0x0000000200000000ULL, 0, n01, &b);
	CHECK(timeuuid_compare(&a, &b) < 0);
	CHECK(memcmp(&a, &b, 16) > 0); /* bytewise order disagrees */
	timeuuid_from_ticks(0x0001000000000000ULL, 0, n01, &a);
	timeuuid_from_ticks(0x0000ffffffffffffULL, 0, n01, &b);
	CHECK(timeuuid_compare(&a, &b) > 0);

	/* ties: bytes 8..15 compared as signed bytes */
	timeuuid_from_ticks(7, 0, nff, &a);
	timeuuid_from_ticks(7, 0, n01, &b);
	CHECK(timeuuid_compare(&a, &b) < 0); /* 0xff = -1 < 1 */
	timeuuid_from_ticks(7, 0, n80, &a);
	timeuuid_from_ticks(7, 0, n7f, &b);
	CHECK(timeuuid_compare(&a, &b) < 0); /* -128 < 127 */
	timeuuid_from_ticks(7, 0x0000, n01, &a);
	timeuuid_from_ticks(7, 0x3fff, n01, &b);
	CHECK(timeuuid_compare(&a, &b) < 0); /* 0x80 (-128) < 0xbf (-65) */
	timeuuid_from_ticks(7, 0x0100, n01, &a);
	timeuuid_from_ticks(7, 0x00ff, n01, &b);
	CHECK(timeuuid_compare(&a, &b) > 0); /* byte 8 decides before byte 9 */
	timeuuid_from_ticks(7, 0x0080, n01, &a);
	timeuuid_from_ticks(7, 0x007f, n01, &b);
	CHECK(timeuuid_compare(&a, &b) < 0); /* byte 9: 0x80 < 0x7f signed */
	timeuuid_from_ticks(7, 0x0123, n01, &a);
	b = a;
	CHECK_INT(timeuuid_compare(&a, &b), 0);

	/* agreement with Cassandra's comparator over many pairs with frequent ties */
	unsigned int seed = 12345;
	int disagree = 0, asym = 0;
	for (int i = 0; i < 200000; i++) {
		struct uuid x[2];
		for (int k = 0; k < 2; k++) {
			uint8_t node[6];
			for (int j = 0; j < 6; j++)
				node[j] = (uint8_t)(rand_r(&seed) % 4 == 0 ? 0x80 : rand_r(&seed) & 0xff);
			uint64_t t = (uint64_t)(rand_r(&seed) % 3) << (rand_r(&seed) % 58);
			uint16_t cs = (uint16_t)(rand_r(&seed) % 3 == 0 ? 0 : rand_r(&seed) & 0x3fff);
			timeuuid_from_ticks(t, cs, node, &x[k]);
		}
		if (rand_r(&seed) % 5 == 0)
			memcpy(x[1].b, x[0].b, 8 + rand_r(&seed) % 9);
		int c = timeuuid_compare(&x[0], &x[1]);
		if (sign(c) != cassandra_compare(&x[0], &x[1]))
			disagree++;
		if (sign(c) != -sign(timeuuid_compare(&x[1], &x[0])))
			asym++;
	}
	CHECK_INT(disagree, 0);
	CHECK_INT(asym, 0);
}

static void test_uuid_v5(void)
{
	struct uuid a, b;
	char s[UUID_STR_LEN + 1];
	uuid_v5("alice@example.com", 17, &a);
	uuid_v5("alice@example.com", 17, &b);
	CHECK(memcmp(&a, &b, 16) == 0);
	CHECK_INT(uuid_version(&a), 5);
	CHECK(variant_ok(&a));
	/* SHA-1 of tern's namespace 3c6f1e52-8a41-4d0b-9e27-5ac4117de093 + name,
	 * as RFC 4122 section 4.3 defines it. These must never change: every
	 * stored mailbox id depends on them. */
	uuid_format(&a, s);
	CHECK_STR(s, "5617ec89-3e1f-528b-a8b3-266c1bb76c4a");
	uuid_v5("", 0, &a);
	uuid_format(&a, s);
	CHECK_STR(s, "d7c76cae-9807-5c62-8e6f-e8d871a269f5");
	uuid_v5("postmaster@tern.test", 20, &a);
	uuid_format(&a, s);
	CHECK_STR(s, "6bc26442-fb74-5251-b329-565ccac5213a");
	/* length, not NUL termination, delimits the name */
	uuid_v5("postmaster@tern.testXYZ", 20, &b);
	CHECK(memcmp(&a, &b, 16) == 0);
	uuid_v5("bob@example.com", 15, &b);
	uuid_v5("Bob@example.com", 15, &a);
	CHECK(memcmp(&a, &b, 16) != 0);
}

static void test_uuid_text(void)
{
	struct uuid u, v;
	char s[UUID_STR_LEN + 1];
	for (int i = 0; i < 16; i++)
		u.b[i] = (uint8_t)(i * 17 + 3);
	uuid_format(&u, s);
	CHECK_INT(strlen(s), UUID_STR_LEN);
	CHECK_STR(s, "03142536-4758-697a-8b9c-adbecfe0f102");
	memset(&v, 0, sizeof(v));
	CHECK_INT(uuid_parse(s, &v), 0);
	CHECK(memcmp(&u, &v, 16) == 0);
	CHECK_INT(uuid_parse("03142536-4758-697A-8B9C-ADBECFE0F102", &v), 0);
	CHECK(memcmp(&u, &v, 16) == 0);
	for (int i = 0; i < 1000; i++) {
		timeuuid_generate(&u);
		uuid_format(&u, s);
		if (uuid_parse(s, &v) != 0 || memcmp(&u, &v, 16) != 0) {
			CHECK(!"round trip");
			break;
		}
	}
	static const char *const bad[] = {
		"",
		"03142536",
		"03142536-4758-697a-8b9c-adbecfe0f10",
		"03142536-4758-697a-8b9c-adbecfe0f1022",
		"03142536-4758-697a-8b9c-adbecfe0f102 ",
		" 03142536-4758-697a-8b9c-adbecfe0f102",
		"031425364758697a8b9cadbecfe0f102",
		"03142536-4758-697a-8b9cadbecfe0f102",
		"0314253-64758-697a-8b9c-adbecfe0f102",
		"03142536_4758_697a_8b9c_adbecfe0f102",
		"03142536-4758-697a-8b9c-adbecfe0f1g2",
		"g3142536-4758-697a-8b9c-adbecfe0f102",
		"{03142536-4758-697a-8b9c-adbecfe0f102}",
		"03142536-4758-697a-8b9c--dbecfe0f102",
		"+3142536-4758-697a-8b9c-adbecfe0f102",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		test_checks++;
		if (uuid_parse(bad[i], &v) != -1) {
			test_failures++;
			fprintf(stderr, "%s:%d: uuid_parse accepted \"%s\"\n", __FILE__, __LINE__,
				bad[i]);
		}
	}
}

/* ---- worker-pool ---- */

static pthread_t main_thread;

struct tjob {
	struct worker_job job;
	int index;
	atomic_int *gate;        /* work() waits while *gate == 0 */
	useconds_t sleep_us;
	atomic_int *work_count;
	int done_calls;
	bool work_on_main, done_on_main;
	bool work_ran_before_done;
	bool done_before_submit_returned;
	atomic_bool work_ran;
};

static bool submit_returned;
static int done_total;

static void tjob_work(struct worker_job *job)
{
	struct tjob *t = (struct tjob *)job;
	if (t->gate != NULL)
		while (atomic_load(t->gate) == 0)
			usleep(1000);
	if (t->sleep_us > 0)
		usleep(t->sleep_us);
	t->work_on_main = pthread_equal(pthread_self(), main_thread);
	if (t->work_count != NULL)
		atomic_fetch_add(t->work_count, 1);
	atomic_store(&t->work_ran, true);
}

static void tjob_done(struct worker_job *job)
{
	struct tjob *t = (struct tjob *)job;
	t->done_calls++;
	done_total++;
	t->done_on_main = pthread_equal(pthread_self(), main_thread);
	t->work_ran_before_done = atomic_load(&t->work_ran);
	t->done_before_submit_returned = !submit_returned;
}

static void tjob_init(struct tjob *t, int index)
{
	memset(t, 0, sizeof(*t));
	t->job.work = tjob_work;
	t->job.done = tjob_done;
	t->index = index;
}

/* Runs the loop until nothing is pending or the deadline passes. */
static void run_until_idle(struct event_base *base, struct worker_pool *pool, int max_ms)
{
	for (int waited = 0; worker_pool_pending(pool) > 0 && waited < max_ms; waited++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (worker_pool_pending(pool) > 0)
			usleep(1000);
	}
}

static atomic_int exit_hook_calls;
static void exit_hook(void)
{
	atomic_fetch_add(&exit_hook_calls, 1);
}

static void test_worker_pool(void)
{
	main_thread = pthread_self();
	struct event_base *base = event_base_new();
	struct worker_pool *pool = worker_pool_create(base, 3);
	CHECK_INT(worker_pool_pending(pool), 0);

	/* one job: work on a worker, done on the loop, and only after submit
	 * returned even when work() finished long before */
	struct tjob one;
	tjob_init(&one, 0);
	submit_returned = false;
	worker_pool_submit(pool, &one.job);
	CHECK_INT(worker_pool_pending(pool), 1);
	for (int i = 0; i < 2000 && !atomic_load(&one.work_ran); i++)
		usleep(1000);
	usleep(20000);
	CHECK(atomic_load(&one.work_ran));
	CHECK_INT(one.done_calls, 0); /* not without the loop running */
	submit_returned = true;
	run_until_idle(base, pool, 5000);
	CHECK_INT(one.done_calls, 1);
	CHECK(!one.work_on_main);
	CHECK(one.done_on_main);
	CHECK(one.work_ran_before_done);
	CHECK(!one.done_before_submit_returned);
	CHECK_INT(worker_pool_pending(pool), 0);

	/* pending counts jobs until their done() has run */
	atomic_int gate = 0;
	struct tjob gated[5];
	for (int i = 0; i < 5; i++) {
		tjob_init(&gated[i], i);
		gated[i].gate = &gate;
		worker_pool_submit(pool, &gated[i].job);
	}
	CHECK_INT(worker_pool_pending(pool), 5);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(worker_pool_pending(pool), 5);
	atomic_store(&gate, 1);
	run_until_idle(base, pool, 5000);
	CHECK_INT(worker_pool_pending(pool), 0);
	int gated_done = 0;
	for (int i = 0; i < 5; i++)
		gated_done += gated[i].done_calls;
	CHECK_INT(gated_done, 5);

	/* many jobs: each work() and done() exactly once, done() on the loop */
	enum { MANY = 20000 };
	struct tjob *many = xcalloc(MANY, sizeof(*many));
	atomic_int work_count = 0;
	done_total = 0;
	for (int i = 0; i < MANY; i++) {
		tjob_init(&many[i], i);
		many[i].work_count = &work_count;
		worker_pool_submit(pool, &many[i].job);
		if (i % 1000 == 0)
			event_base_loop(base, EVLOOP_NONBLOCK);
	}
	run_until_idle(base, pool, 8000);
	CHECK_INT(worker_pool_pending(pool), 0);
	CHECK_INT(atomic_load(&work_count), MANY);
	CHECK_INT(done_total, MANY);
	int wrong = 0;
	for (int i = 0; i < MANY; i++)
		if (many[i].done_calls != 1 || !many[i].done_on_main || many[i].work_on_main ||
		    !many[i].work_ran_before_done)
			wrong++;
	CHECK_INT(wrong, 0);
	free(many);

	/* destroy drains: every queued job's work() runs, no done() any more */
	worker_pool_set_thread_exit(pool, exit_hook);
	enum { DRAIN = 60 };
	struct tjob drain[DRAIN];
	atomic_int drained = 0;
	done_total = 0;
	for (int i = 0; i < DRAIN; i++) {
		tjob_init(&drain[i], i);
		drain[i].work_count = &drained;
		drain[i].sleep_us = 1000;
		worker_pool_submit(pool, &drain[i].job);
	}
	worker_pool_destroy(&pool);
	CHECK(pool == NULL);
	CHECK_INT(atomic_load(&drained), DRAIN);
	CHECK_INT(done_total, 0);
	CHECK_INT(atomic_load(&exit_hook_calls), 3);
	worker_pool_destroy(&pool); /* NULL is fine */
	/* the loop is still usable and has nothing of the pool left */
	CHECK_INT(event_base_loop(base, EVLOOP_NONBLOCK), 1);
	event_base_free(base);
}

int main(void)
{
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	test_buf_cap();
	test_buf_growth();
	test_buf_printf();
	test_buf_consume_steal_wipe();
	test_str_helpers();
	test_ini();
	test_timeuuid_layout();
	test_timeuuid_monotonic();
	test_timeuuid_threads();
	test_timeuuid_compare();
	test_uuid_v5();
	test_uuid_text();
	test_worker_pool();

	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	TEST_MAIN_END();
}
