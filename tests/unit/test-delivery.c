/*
 * Unit tests for the delivery builder: recipients folded and their results
 * shared, the body kept in memory up to the threshold and spooled past it,
 * the spool file released on every path (success, failure, too big,
 * destroy without delivery), the size cap, and header + body stored and
 * read back byte-exact with the mem and sqlite stores, and local and
 * remote recipients together: the queue entry of a message whose local
 * delivery failed is gone, that of one delivered is due. `test-delivery
 * BASEDIR` makes its data directories under BASEDIR. Built twice: with
 * O_TMPFILE and with the create-then-unlink fallback.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "delivery.h"
#include "store-private.h"
#include "store.h"
#include "uuid.h"

#include "test.h"

static char data_dir[PATH_MAX];
static char spool[PATH_MAX + 16];
static struct store *store;
static const char *backend;

#define CHECK_ST(expr, want) do { enum store_status _s = (expr), _w = (want); test_checks++; \
	if (_s != _w) { test_failures++; fprintf(stderr, "%s:%d: [%s] %s = %s, expected %s\n", \
	__FILE__, __LINE__, backend, #expr, store_status_name(_s), store_status_name(_w)); } } while (0)

/* Open descriptors of this process that point into the spool directory. */
static int spool_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	if (dir == NULL) {
		fprintf(stderr, "cannot read /proc/self/fd: %s\n", strerror(errno));
		exit(2);
	}
	int n = 0;
	size_t plen = strlen(spool);
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		char link[PATH_MAX + 32], target[PATH_MAX + 32];
		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		ssize_t len = readlink(link, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = '\0';
		if (strncmp(target, spool, plen) != 0 || target[plen] != '/')
			continue;
		n++;
		/* never a file with a name, whichever way it was made */
		CHECK(strstr(target, "(deleted)") != NULL);
#ifdef DELIVERY_NO_O_TMPFILE
		CHECK(strstr(target, "/tern-spool-") != NULL);
#endif
	}
	closedir(dir);
	return n;
}

/* Names in the spool directory (-1 when it does not exist). */
static int spool_names(void)
{
	DIR *dir = opendir(spool);
	if (dir == NULL)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(dir)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(dir);
	return n;
}

static struct delivery *create(uint64_t max, size_t memory_max, const char *sender)
{
	struct delivery_settings set = { .data_dir = data_dir, .max_message_size = max,
					 .memory_max = memory_max };
	return delivery_create(&set, sender);
}

static void add_user(const char *address)
{
	const char *domain = strrchr(address, '@') + 1;
	enum store_status st = store_domain_add(store, domain);
	CHECK(st == STORE_OK || st == STORE_EXISTS);
	CHECK_ST(store_user_add(store, address, "$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA"),
		 STORE_OK);
}

/* Checks the one message of address against prefix + expect, then
 * expunges it. */
static void check_stored(const char *address, const char *prefix, const char *expect,
			 size_t len, int line)
{
	struct store_maildrop *md = NULL;
	CHECK_ST(store_maildrop_open(store, address, &md), STORE_OK);
	if (md == NULL)
		return;
	test_checks++;
	if (md->count != 1) {
		test_failures++;
		fprintf(stderr, "%s:%d: [%s] %s has %u messages, expected 1\n", __FILE__, line,
			backend, address, md->count);
	} else {
		struct buf want, got;
		buf_init(&want, 0);
		buf_init(&got, 0);
		buf_append_str(&want, prefix);
		buf_append(&want, expect, len);
		CHECK_ST(store_message_read_raw(md, 0, &got), STORE_OK);
		test_checks++;
		if (got.len != want.len || memcmp(got.data, want.data, got.len) != 0) {
			test_failures++;
			size_t at = 0;
			while (at < got.len && at < want.len && got.data[at] == want.data[at])
				at++;
			fprintf(stderr, "%s:%d: [%s] %s: %zu octets, expected %zu, first difference at %zu\n",
				__FILE__, line, backend, address, got.len, want.len, at);
		}
		CHECK_INT(md->entries[0].size, want.len);
		unsigned int zero = 0;
		CHECK_ST(store_maildrop_expunge(md, &zero, 1), STORE_OK);
		buf_deinit(&want);
		buf_deinit(&got);
	}
	store_maildrop_free(&md);
}
#define CHECK_STORED(a, p, e, l) check_stored(a, p, e, l, __LINE__)

static unsigned int count_of(const char *address)
{
	struct store_maildrop *md = NULL;
	if (store_maildrop_open(store, address, &md) != STORE_OK)
		return 9999;
	unsigned int n = md->count;
	store_maildrop_free(&md);
	return n;
}

static void write_ok(struct delivery *d, const char *data, size_t len)
{
	const char *error = NULL;
	int ret = delivery_write(d, data, len, &error);
	test_checks++;
	if (ret != 0) {
		test_failures++;
		fprintf(stderr, "%s:%d: delivery_write: %s\n", __FILE__, __LINE__, error);
	}
}

/* ---- recipients ---- */

static void test_rcpts(void)
{
	add_user("a@dedup.test");
	add_user("b@dedup.test");
	struct delivery *d = create(100000, 0, "s@remote.test");
	CHECK_INT(delivery_add_rcpt(d, "a@dedup.test"), 0);
	CHECK_STR(delivery_sole_rcpt(d), "a@dedup.test");
	CHECK_INT(delivery_add_rcpt(d, "b@dedup.test"), 1);
	CHECK(delivery_sole_rcpt(d) == NULL);
	CHECK_INT(delivery_add_rcpt(d, "a@dedup.test"), 2);
	CHECK_INT(delivery_add_rcpt(d, "ghost@dedup.test"), 3);
	CHECK_INT(delivery_add_rcpt(d, "b@dedup.test"), 4);
	const bool dup[5] = { false, false, true, false, true };
	for (unsigned int i = 0; i < 5; i++)
		CHECK_INT(delivery_rcpt_is_duplicate(d, i), dup[i]);
	CHECK(!delivery_rcpt_is_duplicate(d, 5));
	/* before the run nothing is delivered */
	CHECK_ST(delivery_rcpt_status(d, 0), STORE_TEMPFAIL);
	CHECK_ST(delivery_status(d), STORE_TEMPFAIL);

	const char *body = "Subject: dedup\r\n\r\nonce each\r\n";
	write_ok(d, body, strlen(body));
	/* the id is minted when first asked for, once the data has ended: its
	 * time is not that of DATA, however slowly the data came */
	struct uuid before, minted;
	timeuuid_generate(&before);
	CHECK_INT(strlen(delivery_id(d)), UUID_STR_LEN);
	char id[UUID_STR_LEN + 1];
	str_copy(id, delivery_id(d), sizeof(id));
	CHECK(uuid_parse(id, &minted) == 0);
	CHECK(timeuuid_ticks(&minted) >= timeuuid_ticks(&before));
	const char *received = "Received: from c.test by tern.test; id x\r\n";
	CHECK_INT(buf_append_str(delivery_header(d), received), 0);
	CHECK_INT(delivery_size(d), strlen(received) + strlen(body));
	CHECK_ST(delivery_run(d, store), STORE_OK);
	CHECK_STR(delivery_id(d), id); /* the same id for every attempt */
	const enum store_status want[5] = { STORE_OK, STORE_OK, STORE_OK, STORE_NOTFOUND, STORE_OK };
	for (unsigned int i = 0; i < 5; i++)
		CHECK_ST(delivery_rcpt_status(d, i), want[i]);
	CHECK_ST(delivery_status(d), STORE_OK);
	delivery_destroy(&d);
	CHECK(d == NULL);
	delivery_destroy(&d);

	struct buf whole;
	buf_init(&whole, 0);
	buf_append_str(&whole, received);
	buf_append_str(&whole, body);
	CHECK_STORED("a@dedup.test", "Return-Path: <s@remote.test>\r\nDelivered-To: a@dedup.test\r\n",
		     whole.data, whole.len);
	CHECK_STORED("b@dedup.test", "Return-Path: <s@remote.test>\r\nDelivered-To: b@dedup.test\r\n",
		     whole.data, whole.len);

	/* the null reverse path, one recipient given twice */
	d = create(100000, 0, "");
	delivery_add_rcpt(d, "a@dedup.test");
	delivery_add_rcpt(d, "a@dedup.test");
	CHECK_STR(delivery_sole_rcpt(d), "a@dedup.test");
	write_ok(d, body, strlen(body));
	CHECK_ST(delivery_run(d, store), STORE_OK);
	CHECK_ST(delivery_rcpt_status(d, 1), STORE_OK);
	CHECK_ST(delivery_status(d), STORE_OK);
	delivery_destroy(&d);
	CHECK_STORED("a@dedup.test", "Return-Path: <>\r\nDelivered-To: a@dedup.test\r\n", body,
		     strlen(body));

	/* nobody exists any more */
	d = create(100000, 0, "s@remote.test");
	delivery_add_rcpt(d, "x@dedup.test");
	delivery_add_rcpt(d, "y@nowhere.test");
	write_ok(d, body, strlen(body));
	CHECK_ST(delivery_run(d, store), STORE_OK);
	CHECK_ST(delivery_rcpt_status(d, 0), STORE_NOTFOUND);
	CHECK_ST(delivery_rcpt_status(d, 1), STORE_NOTFOUND);
	CHECK_ST(delivery_status(d), STORE_NOTFOUND);
	delivery_destroy(&d);

	/* no recipient at all */
	d = create(100000, 0, "s@remote.test");
	CHECK_ST(delivery_run(d, store), STORE_INVALID);
	CHECK_ST(delivery_status(d), STORE_TEMPFAIL);
	delivery_destroy(&d);
	buf_deinit(&whole);
}

/* Writing body after the id was minted is a caller bug: it aborts. */
static void test_write_after_id(void)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		struct delivery *d = create(1000, 0, "s@remote.test");
		delivery_add_rcpt(d, "a@dedup.test");
		(void)delivery_id(d);
		const char *error;
		(void)delivery_write(d, "late", 4, &error);
		_exit(0);
	}
	int status = 0;
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
}

/* ---- the body: memory, spool, release ---- */

static void test_threshold(void)
{
	add_user("t@spool.test");
	char piece[1000];
	memset(piece, 'x', sizeof(piece));
	struct delivery *d = create(1000000, 1000, "s@remote.test");
	delivery_add_rcpt(d, "t@spool.test");
	write_ok(d, piece, 600);
	write_ok(d, piece, 399);
	CHECK_INT(spool_fds(), 0);   /* 999 octets: still in memory */
	write_ok(d, "y", 1);
	CHECK_INT(spool_fds(), 1);   /* 1000: spooled */
	CHECK_INT(spool_names(), 0); /* and the file has no name */
	struct stat st;
	CHECK(stat(spool, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
	/* many small writes after the crossing, then a large one */
	struct buf expect;
	buf_init(&expect, 0);
	buf_append(&expect, piece, 999);
	buf_append(&expect, "y", 1);
	for (int i = 0; i < 3000; i++) {
		char line[40];
		int n = snprintf(line, sizeof(line), "line %d\r\n", i);
		write_ok(d, line, (size_t)n);
		buf_append(&expect, line, (size_t)n);
	}
	static char big[200000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7 % 251);
	write_ok(d, big, sizeof(big));
	buf_append(&expect, big, sizeof(big));
	CHECK_INT(delivery_size(d), expect.len);
	CHECK_INT(spool_fds(), 1);
	CHECK_ST(delivery_run(d, store), STORE_OK);
	CHECK_ST(delivery_status(d), STORE_OK);
	CHECK_INT(spool_fds(), 1); /* held until destroy */
	delivery_destroy(&d);
	CHECK_INT(spool_fds(), 0);
	CHECK_INT(spool_names(), 0);
	CHECK_STORED("t@spool.test", "Return-Path: <s@remote.test>\r\nDelivered-To: t@spool.test\r\n",
		     expect.data, expect.len);
	buf_deinit(&expect);
}

enum end_path { END_SUCCESS, END_FAILURE, END_TOO_BIG, END_DESTROY };

static void test_release(void)
{
	add_user("r@spool.test");
	static char chunk[3000];
	memset(chunk, 'r', sizeof(chunk));
	for (int path = END_SUCCESS; path <= END_DESTROY; path++) {
		struct delivery *d = create(10000, 2000, "s@remote.test");
		delivery_add_rcpt(d, path == END_FAILURE ? "nobody@spool.test" : "r@spool.test");
		write_ok(d, chunk, sizeof(chunk));
		CHECK_INT(spool_fds(), 1);
		if (path == END_TOO_BIG) {
			write_ok(d, chunk, sizeof(chunk));
			write_ok(d, chunk, sizeof(chunk));
			const char *error = NULL;
			CHECK_INT(delivery_write(d, chunk, sizeof(chunk), &error), -1);
			CHECK(error != NULL && strstr(error, "max_message_size") != NULL);
			CHECK(delivery_too_big(d));
			/* released at the crossing, not at destroy */
			CHECK_INT(spool_fds(), 0);
			CHECK_INT(delivery_write(d, chunk, 10, &error), -1);
			CHECK_INT(delivery_size(d), 4 * sizeof(chunk) + 10);
		}
		if (path != END_DESTROY) {
			enum store_status st = delivery_run(d, store);
			if (path == END_TOO_BIG) {
				CHECK_ST(st, STORE_TOOBIG);
				CHECK_ST(delivery_rcpt_status(d, 0), STORE_TOOBIG);
				CHECK_ST(delivery_status(d), STORE_TOOBIG);
			} else {
				CHECK_ST(st, STORE_OK);
				CHECK_ST(delivery_status(d), path == END_SUCCESS ? STORE_OK
										 : STORE_NOTFOUND);
			}
		}
		delivery_destroy(&d);
		CHECK_INT(spool_fds(), 0);
		CHECK_INT(spool_names(), 0);
		CHECK_INT(count_of("r@spool.test"), path == END_SUCCESS ? 1 : 0);
		if (path == END_SUCCESS)
			CHECK_STORED("r@spool.test",
				     "Return-Path: <s@remote.test>\r\nDelivered-To: r@spool.test\r\n",
				     chunk, sizeof(chunk));
	}

	/* exactly max_message_size fits */
	struct delivery *d = create(3000, 1000, "s@remote.test");
	delivery_add_rcpt(d, "r@spool.test");
	write_ok(d, chunk, 2999);
	write_ok(d, chunk, 1);
	CHECK(!delivery_too_big(d));
	CHECK_ST(delivery_run(d, store), STORE_OK);
	delivery_destroy(&d);
	CHECK_STORED("r@spool.test", "Return-Path: <s@remote.test>\r\nDelivered-To: r@spool.test\r\n",
		     chunk, 3000);
	/* too big while still in memory */
	d = create(100, 0, "s@remote.test");
	delivery_add_rcpt(d, "r@spool.test");
	const char *error = NULL;
	CHECK_INT(delivery_write(d, chunk, 101, &error), -1);
	CHECK(delivery_too_big(d));
	CHECK_ST(delivery_run(d, store), STORE_TOOBIG);
	delivery_destroy(&d);
	CHECK_INT(count_of("r@spool.test"), 0);
}

/* The spool cannot be made: the body is lost, the answer is temporary. */
static void test_spool_failure(void)
{
	char saved[PATH_MAX];
	str_copy(saved, data_dir, sizeof(saved));
	char bad[PATH_MAX + 16];
	snprintf(bad, sizeof(bad), "%s/blocked", saved);
	CHECK(mkdir(bad, 0700) == 0);
	char file[PATH_MAX + 32];
	snprintf(file, sizeof(file), "%s/spool", bad);
	FILE *f = fopen(file, "w"); /* a file where the spool directory goes */
	CHECK(f != NULL);
	if (f != NULL)
		fclose(f);
	str_copy(data_dir, bad, sizeof(data_dir));

	struct delivery *d = create(100000, 100, "s@remote.test");
	delivery_add_rcpt(d, "r@spool.test");
	static char chunk[150];
	memset(chunk, 'f', sizeof(chunk));
	const char *error = NULL;
	CHECK_INT(delivery_write(d, chunk, sizeof(chunk), &error), -1);
	CHECK(error != NULL && strstr(error, "spool") != NULL);
	CHECK(!delivery_too_big(d));
	CHECK_INT(delivery_write(d, chunk, 1, &error), -1);
	CHECK_ST(delivery_run(d, store), STORE_TEMPFAIL);
	CHECK_ST(delivery_rcpt_status(d, 0), STORE_TEMPFAIL);
	CHECK_ST(delivery_status(d), STORE_TEMPFAIL);
	delivery_destroy(&d);
	CHECK_INT(count_of("r@spool.test"), 0);
	str_copy(data_dir, saved, sizeof(data_dir));
}

/* ---- byte-exact: header in memory, body in the spool file ---- */

static void test_exact(void)
{
	add_user("x1@exact.test");
	add_user("x2@exact.test");
	struct delivery *d = create(64 * 1024 * 1024, 0, "s@remote.test");
	delivery_add_rcpt(d, "x1@exact.test");
	delivery_add_rcpt(d, "x2@exact.test");
	const char *received = "Received: from client.test ([127.0.0.1])\r\n\tby tern.test with ESMTP id x\r\n";
	buf_append_str(delivery_header(d), received);
	/* 3 MiB and some, every octet value, in pieces of varying size */
	size_t len = 3 * 1024 * 1024 + 12345;
	char *body = xmalloc(len);
	unsigned int seed = 7;
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		body[i] = (char)(seed >> 16);
	}
	for (size_t pos = 0; pos < len;) {
		seed = seed * 1103515245u + 12345u;
		size_t n = 1 + (seed >> 8) % 150000;
		if (n > len - pos)
			n = len - pos;
		write_ok(d, body + pos, n);
		pos += n;
	}
	CHECK_INT(spool_fds(), 1);
	CHECK_INT(delivery_size(d), strlen(received) + len);
	CHECK_ST(delivery_run(d, store), STORE_OK);
	CHECK_ST(delivery_status(d), STORE_OK);
	delivery_destroy(&d);
	CHECK_INT(spool_fds(), 0);
	struct buf whole;
	buf_init(&whole, 0);
	buf_append_str(&whole, received);
	buf_append(&whole, body, len);
	CHECK_STORED("x1@exact.test", "Return-Path: <s@remote.test>\r\nDelivered-To: x1@exact.test\r\n",
		     whole.data, whole.len);
	CHECK_STORED("x2@exact.test", "Return-Path: <s@remote.test>\r\nDelivered-To: x2@exact.test\r\n",
		     whole.data, whole.len);
	buf_deinit(&whole);
	free(body);
}

/* ---- the sweep ---- */

static void test_sweep(void)
{
	unsigned int removed = 99;
	const char *error = NULL;
	char empty[PATH_MAX + 16];
	snprintf(empty, sizeof(empty), "%s/no-such-dir", data_dir);
	CHECK_INT(delivery_spool_sweep(empty, &removed, &error), 0);
	CHECK_INT(removed, 0);

	/* what a crash between create and unlink leaves, and a stranger */
	static const char *const names[] = { "tern-spool-AbC123", "tern-spool-zzzzzz", "other" };
	for (size_t i = 0; i < 3; i++) {
		char path[PATH_MAX + 32];
		snprintf(path, sizeof(path), "%s/%s", spool, names[i]);
		FILE *f = fopen(path, "w");
		CHECK(f != NULL);
		if (f != NULL) {
			fputs("left over", f);
			fclose(f);
		}
	}
	char sub[PATH_MAX + 32];
	snprintf(sub, sizeof(sub), "%s/subdir", spool);
	CHECK(mkdir(sub, 0700) == 0);
	CHECK_INT(spool_names(), 4);
	CHECK_INT(delivery_spool_sweep(data_dir, &removed, &error), 0);
	CHECK_INT(removed, 3);
	CHECK_INT(spool_names(), 1); /* only regular files go */
	rmdir(sub);
	CHECK_INT(delivery_spool_sweep(data_dir, &removed, &error), 0);
	CHECK_INT(removed, 0);
}


/* ---- local and remote recipients together ---- */

static enum store_status deliver_tempfail(struct store *s, struct store_delivery *sd)
{
	(void)s;
	for (unsigned int i = 0; i < sd->rcpt_count; i++)
		sd->rcpts[i].status = STORE_TEMPFAIL;
	return STORE_TEMPFAIL;
}

/* The entries queued under owner now: how many, and how many are due. */
static unsigned int queued(const char *owner, unsigned int *due_r)
{
	struct store_queue_entry *e = NULL;
	unsigned int n = 0;
	CHECK_ST(store_queue_scan(store, owner, INT64_MAX, 100, &e, &n), STORE_OK);
	*due_r = 0;
	int64_t now = (int64_t)time(NULL) * 1000000 + 1000000;
	for (unsigned int i = 0; i < n; i++)
		*due_r += e[i].next_attempt_us <= now;
	store_queue_entries_free(&e, n);
	return n;
}

static struct delivery *mixed(const char *owner, bool smtp)
{
	struct delivery_settings set = { .data_dir = data_dir, .max_message_size = 100000,
					 .quota_all_or_nothing = smtp, .queue_owner = owner };
	struct delivery *d = delivery_create(&set, "s@mixed.test");
	delivery_add_rcpt(d, "l@mixed.test");
	delivery_add_remote(d, "r@remote.test");
	const char *body = "From: <s@mixed.test>\r\nSubject: mixed\r\n\r\nboth\r\n";
	write_ok(d, body, strlen(body));
	return d;
}

static void test_mixed(void)
{
	add_user("s@mixed.test");
	add_user("l@mixed.test");
	unsigned int due;

	/* SMTP: the local delivery fails after the queue took the message.
	 * The client is told 4xx and will send it again: nothing may stay
	 * in the queue, or the remote recipient gets it twice. */
	const struct store_vfuncs *saved = store->v;
	struct store_vfuncs failing = *saved;
	failing.deliver = deliver_tempfail;
	store->v = &failing;
	struct delivery *d = mixed("node-mixed", true);
	CHECK_ST(delivery_run(d, store), STORE_TEMPFAIL);
	store->v = saved;
	CHECK_ST(delivery_status(d), STORE_TEMPFAIL);
	CHECK(delivery_queue_status(d) != STORE_OK);
	delivery_destroy(&d);
	CHECK_INT(queued("node-mixed", &due), 0);
	CHECK_INT(count_of("l@mixed.test"), 0);

	/* SMTP, both succeed: one entry, due at once (released). */
	d = mixed("node-mixed", true);
	CHECK_ST(delivery_run(d, store), STORE_OK);
	CHECK_ST(delivery_status(d), STORE_OK);
	CHECK_ST(delivery_queue_status(d), STORE_OK);
	delivery_destroy(&d);
	CHECK_INT(queued("node-mixed", &due), 1);
	CHECK_INT(due, 1);
	CHECK_INT(count_of("l@mixed.test"), 1);

	/* LMTP answers per recipient: the remote one's entry stays, due. */
	store->v = &failing;
	d = mixed("node-mixed-lmtp", false);
	(void)delivery_run(d, store);
	store->v = saved;
	CHECK_ST(delivery_rcpt_status(d, 0), STORE_TEMPFAIL);
	CHECK_ST(delivery_queue_status(d), STORE_OK);
	delivery_destroy(&d);
	CHECK_INT(queued("node-mixed-lmtp", &due), 1);
	CHECK_INT(due, 1);
}

static void run(const char *name, const char *base)
{
	backend = name;
	snprintf(data_dir, sizeof(data_dir), "%s/tern-test-delivery-XXXXXX", base);
	if (mkdtemp(data_dir) == NULL) {
		fprintf(stderr, "mkdtemp %s: %s\n", data_dir, strerror(errno));
		exit(2);
	}
	snprintf(spool, sizeof(spool), "%s/spool", data_dir);
	struct store_settings set = { .backend = name, .data_dir = data_dir };
	const char *error = NULL;
	store = store_open(&set, &error);
	if (store == NULL) {
		fprintf(stderr, "store_open(%s): %s\n", name, error);
		exit(2);
	}
	CHECK_INT(spool_names(), -1); /* made on first use only */
	test_rcpts();
	test_write_after_id();
	CHECK_INT(spool_names(), -1);
	test_threshold();
	test_release();
	test_spool_failure();
	test_exact();
	test_sweep();
	test_mixed();
	store_close(&store);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", data_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", data_dir);
}

int main(int argc, char **argv)
{
	const char *base = argc > 1 ? argv[1] : ".";
	run("mem", base);
	run("sqlite", base);
	TEST_MAIN_END();
}
