/*
 * outbound-tool: runs lib-mail's DKIM signer and DSN builder on real input
 * for the integration tests (tests/integration/test_dkim_verify.py and
 * test_dsn.py), which check the output with independent implementations.
 * Built, never installed.
 *
 *   outbound-tool sign KEYFILE DOMAIN SELECTOR [NOW] < message > signed
 *       prints the DKIM-Signature field, then the message as read
 *   outbound-tool record KEYFILE DOMAIN SELECTOR
 *       prints the TXT record value for SELECTOR._domainkey.DOMAIN
 *   outbound-tool dsn MTA SENDER ENVID [ADDRESS ACTION STATUS DIAG REMOTE]... < header
 *       prints a DSN; ACTION is failed or delayed; "-" stands for NULL
 *
 * Exit status: 0, 1 for an error the library reported (on stderr), 2 for
 * usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "dkim.h"
#include "dsn.h"

static int usage(void)
{
	fprintf(stderr, "usage: outbound-tool sign KEYFILE DOMAIN SELECTOR [NOW]\n"
		"       outbound-tool record KEYFILE DOMAIN SELECTOR\n"
		"       outbound-tool dsn MTA SENDER ENVID [ADDRESS ACTION STATUS DIAG REMOTE]...\n");
	return 2;
}

static void read_all(struct buf *in)
{
	char chunk[65536];
	size_t n;

	while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
		buf_append(in, chunk, n);
}

static int write_all(const void *p, size_t n)
{
	return fwrite(p, 1, n, stdout) == n && fflush(stdout) == 0 ? 0 : 1;
}

static const char *opt(const char *s)
{
	return strcmp(s, "-") == 0 ? NULL : s;
}

/* argv: tool, command, KEYFILE, DOMAIN, SELECTOR */
static struct dkim_key *load_key(char **argv)
{
	const char *error;
	struct dkim_key *key = dkim_key_load(argv[3], argv[4], argv[2], &error);

	if (key == NULL)
		fprintf(stderr, "outbound-tool: %s\n", error);
	return key;
}

static int cmd_sign(int argc, char **argv)
{
	const char *error;
	struct buf in, out;

	if (argc != 5 && argc != 6)
		return usage();
	struct dkim_key *key = load_key(argv);
	if (key == NULL)
		return 1;
	buf_init(&in, 0);
	buf_init(&out, 0);
	read_all(&in);
	/* fed in uneven pieces, as a queue file would be read */
	struct dkim_sign *s = dkim_sign_begin(key, argc == 6 ? strtoll(argv[5], NULL, 10) : time(NULL));
	for (size_t pos = 0, step = 1; pos < in.len; step = step * 3 + 1) {
		size_t n = step < in.len - pos ? step : in.len - pos;
		dkim_sign_update(s, in.data + pos, n);
		pos += n;
	}
	int ret = 0;
	if (dkim_sign_end(&s, &out, &error) < 0) {
		fprintf(stderr, "outbound-tool: %s\n", error);
		ret = 1;
	} else {
		ret = write_all(out.data, out.len) | write_all(in.data, in.len);
	}
	buf_deinit(&in);
	buf_deinit(&out);
	dkim_key_free(&key);
	return ret;
}

static int cmd_record(int argc, char **argv)
{
	const char *error;
	struct buf out;

	if (argc != 5)
		return usage();
	struct dkim_key *key = load_key(argv);
	if (key == NULL)
		return 1;
	buf_init(&out, 0);
	int ret = dkim_dns_record(key, &out, &error);
	if (ret < 0)
		fprintf(stderr, "outbound-tool: %s\n", error);
	else
		ret = write_all(out.data, out.len) | write_all("\n", 1);
	buf_deinit(&out);
	dkim_key_free(&key);
	return ret < 0 ? 1 : ret;
}

static int cmd_dsn(int argc, char **argv)
{
	const char *error;
	struct buf in, out;

	if (argc < 5 || (argc - 5) % 5 != 0)
		return usage();
	unsigned int count = (unsigned int)(argc - 5) / 5;
	struct dsn_rcpt *rcpts = xcalloc(count + 1, sizeof(*rcpts));
	for (unsigned int i = 0; i < count; i++) {
		char **a = argv + 5 + 5 * i;
		rcpts[i] = (struct dsn_rcpt){
			.address = opt(a[0]),
			.action = strcmp(a[1], "delayed") == 0 ? DSN_DELAYED : DSN_FAILED,
			.status = opt(a[2]), .diagnostic = opt(a[3]), .remote_mta = opt(a[4]),
		};
	}
	buf_init(&in, 0);
	buf_init(&out, 0);
	read_all(&in);
	int64_t now = time(NULL);
	struct dsn_info info = {
		.reporting_mta = argv[2], .sender = argv[3], .original_envid = opt(argv[4]),
		.arrival_s = now - 3600, .now_s = now, .rcpts = rcpts, .rcpt_count = count,
		.headers = in.data, .headers_len = in.len,
	};
	int ret = dsn_build(&info, &out, &error);
	if (ret < 0)
		fprintf(stderr, "outbound-tool: %s\n", error);
	else
		ret = write_all(out.data, out.len);
	buf_deinit(&in);
	buf_deinit(&out);
	free(rcpts);
	return ret < 0 ? 1 : ret;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	if (strcmp(argv[1], "sign") == 0)
		return cmd_sign(argc, argv);
	if (strcmp(argv[1], "record") == 0)
		return cmd_record(argc, argv);
	if (strcmp(argv[1], "dsn") == 0)
		return cmd_dsn(argc, argv);
	return usage();
}
