/*
 * store-read: what one RETR piece costs in the store, on SQLite. Not a
 * pass/fail test: it prints numbers.
 *
 *   tern-bench-store-read DIR [MESSAGE_MIB [ROUNDS]]
 *
 * Makes a fresh SQLite store under DIR, delivers one message of
 * MESSAGE_MIB MiB (default 25) of CRLF lines, some starting with a dot,
 * then reads it ROUNDS times (default 20) through a cursor in 128 KiB
 * pieces, the POP3 session's piece size, and prints per piece: the store
 * read alone (store_cursor_next), and the read plus the POP3 encoding the
 * session does on the worker (mail_pop3_encoder_feed). The cursor's open
 * is timed apart. The first round warms the page cache and is not counted.
 * The store is removed afterwards.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "mail-data.h"
#include "store.h"

#define PIECE (128 * 1024)

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void die(const char *what, enum store_status st)
{
	fprintf(stderr, "store-read: %s: %s\n", what, store_status_name(st));
	exit(1);
}

static void make_body(struct buf *b, size_t len)
{
	buf_printf(b, "Subject: store-read\r\n\r\n");
	for (unsigned int line = 0; b->len + 200 < len; line++) {
		size_t n = 20 + line % 60;
		for (size_t k = 0; k < n; k++)
			buf_append_c(b, (char)(k == 0 && line % 13 == 0 ? '.' : 'a' + (line + k) % 26));
		buf_append(b, "\r\n", 2);
	}
	while (b->len + 2 < len)
		buf_append_c(b, 'z');
	buf_append(b, "\r\n", 2);
}

/* One read of message 0 in pieces: the open's time to *open_us, each
 * piece's (with its POP3 encoding when encode) to piece_us; returns the
 * octets read. */
static uint64_t read_once(struct store_maildrop *md, bool encode, double *open_us,
			  double *piece_us, unsigned int *pieces)
{
	struct buf raw, out;
	buf_init(&raw, 0);
	buf_init(&out, 0);
	struct mail_pop3_encoder enc;
	mail_pop3_encoder_init(&enc, -1);
	double t0 = now_us();
	struct store_cursor *c = NULL;
	enum store_status st = store_cursor_open(md, 0, &c);
	if (st != STORE_OK)
		die("open", st);
	*open_us = now_us() - t0;
	uint64_t total = 0;
	bool eof = false;
	*pieces = 0;
	while (!eof) {
		buf_reset(&raw);
		buf_reset(&out);
		double t = now_us();
		st = store_cursor_next(c, PIECE, &raw, &eof);
		if (st != STORE_OK)
			die("next", st);
		if (encode) {
			mail_pop3_encoder_feed(&enc, raw.data, raw.len, &out);
			if (eof)
				mail_pop3_encoder_finish(&enc, &out);
		}
		piece_us[(*pieces)++] = now_us() - t;
		total += raw.len;
	}
	store_cursor_close(&c);
	buf_deinit(&raw);
	buf_deinit(&out);
	return total;
}

static void report(const char *what, double *v, size_t n)
{
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += v[i];
	qsort(v, n, sizeof(*v), cmp_double);
	printf("%-28s mean %8.1f us  median %8.1f us  p90 %8.1f us  (%zu pieces)\n", what,
	       sum / (double)n, v[n / 2], v[n * 9 / 10], n);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR [MESSAGE_MIB [ROUNDS]]\n", argv[0]);
		return 2;
	}
	size_t mib = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 25;
	unsigned int rounds = argc > 3 ? (unsigned int)strtoul(argv[3], NULL, 10) : 20;
	if (mib == 0 || rounds == 0)
		return 2;
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/tern-bench-store-read-XXXXXX", argv[1]);
	if (mkdtemp(dir) == NULL) {
		fprintf(stderr, "mkdtemp %s: %s\n", dir, strerror(errno));
		return 1;
	}
	struct store_settings set = { .backend = "sqlite", .data_dir = dir };
	const char *error = NULL;
	struct store *store = store_open(&set, &error);
	if (store == NULL) {
		fprintf(stderr, "store_open: %s\n", error);
		return 1;
	}
	const char *addr = "bench@store-read.test";
	enum store_status st = store_domain_add(store, "store-read.test");
	if (st == STORE_OK)
		st = store_user_add(store, addr, "$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA");
	if (st != STORE_OK)
		die("user add", st);
	struct buf body;
	buf_init(&body, 0);
	make_body(&body, mib * 1024 * 1024);
	struct store_rcpt r = { .address = addr, .prefix = "Delivered-To: bench@store-read.test\r\n" };
	struct store_delivery d = { .body = body.data, .body_len = body.len, .rcpts = &r,
				    .rcpt_count = 1 };
	store_delivery_init(&d);
	st = store_deliver(store, &d);
	if (st != STORE_OK || r.status != STORE_OK)
		die("deliver", st != STORE_OK ? st : r.status);
	buf_deinit(&body);
	struct store_maildrop *md = NULL;
	if ((st = store_maildrop_open(store, addr, &md)) != STORE_OK)
		die("maildrop", st);

	size_t per = (size_t)(md->entries[0].size / PIECE + 2);
	double *store_us = xcalloc(per * rounds, sizeof(double));
	double *pop3_us = xcalloc(per * rounds, sizeof(double));
	double *opens = xcalloc(rounds, sizeof(double));
	size_t ns = 0, np = 0;
	double scratch_open;
	unsigned int pieces;
	double *scratch = xcalloc(per, sizeof(double));
	read_once(md, true, &scratch_open, scratch, &pieces); /* warm-up */
	for (unsigned int k = 0; k < rounds; k++) {
		uint64_t got = read_once(md, false, &opens[k], store_us + ns, &pieces);
		ns += pieces;
		if (got != md->entries[0].size)
			die("short read", STORE_TEMPFAIL);
		read_once(md, true, &scratch_open, pop3_us + np, &pieces);
		np += pieces;
	}
	printf("message %llu octets, %u rounds, pieces of %d KiB\n",
	       (unsigned long long)md->entries[0].size, rounds, PIECE / 1024);
	report("cursor open", opens, rounds);
	report("store read per piece", store_us, ns);
	report("store read + POP3 encoding", pop3_us, np);
	free(scratch);
	free(store_us);
	free(pop3_us);
	free(opens);
	store_maildrop_free(&md);
	store_close(&store);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return 0;
}
