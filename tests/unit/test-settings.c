/*
 * Unit tests for settings_load(): every key of the configuration contract,
 * the defaults, size suffixes, and errors that name FILE:LINE.
 */
#include <errno.h>
#include <pwd.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "settings.h"

#include "test.h"

static char tmpdir[] = "/tmp/tern-test-settings-XXXXXX";

/* A [cassandra] value as the store reads it (the backend declares the keys;
 * settings.c keeps the values in store.options). */
#define CASS(set, key) store_settings_get(&(set)->store, "cassandra", key)
#define STORE_CASS(set, key) option_in_array(&(set)->store, key)

/* The same value found in the options array handed to store_open. */
static const char *option_in_array(const struct store_settings *st, const char *key)
{
	for (unsigned int i = 0; i < st->option_count; i++)
		if (strcmp(st->options[i].section, "cassandra") == 0 &&
		    strcmp(st->options[i].key, key) == 0)
			return st->options[i].value;
	return NULL;
}

static char *write_conf(const char *content)
{
	static int n;
	struct buf path;
	buf_init(&path, 0);
	buf_printf(&path, "%s/c%d.conf", tmpdir, n++);
	FILE *f = fopen(path.data, "w");
	if (f == NULL) {
		fprintf(stderr, "cannot write %s: %s\n", path.data, strerror(errno));
		exit(2);
	}
	fputs(content, f);
	fclose(f);
	char *ret = buf_steal(&path);
	buf_deinit(&path);
	return ret;
}

static struct tern_settings *load(const char *content, char **path_r, char **error_r)
{
	*path_r = write_conf(content);
	*error_r = NULL;
	return settings_load(*path_r, error_r);
}

static void test_all_keys(void)
{
	const char *conf =
		"# every key of the contract\n"
		"[server]\n"
		"hostname = mx.example.test\n"
		"data_dir = /srv/tern\n"
		"[smtp]\n"
		"listen = 127.0.0.1:2525\n"
		"listen_tls = 127.0.0.1:4650, [::1]:4650\n"
		"max_message_size = 10M\n"
		"max_recipients = 42\n"
		"bare_lf = reject\n"
		"[lmtp]\n"
		"listen = 127.0.0.1:2424\n"
		"[pop3]\n"
		"listen = 127.0.0.1:1110\n"
		"listen_tls = localhost:1995\n"
		"[tls]\n"
		"cert = /etc/tern/cert.pem\n"
		"key = /etc/tern/key.pem\n"
		"min_version = 1.3\n"
		"[auth]\n"
		"plaintext = always\n"
		"[store]\n"
		"backend = cassandra\n"
		"pop3_ids = uid\n"
		"[cassandra]\n"
		"contact_points = 10.0.0.1,10.0.0.2\n"
		"local_dc = dc1\n"
		"keyspace = tern_ks\n"
		"replication = dc1:3,dc2:3\n"
		"username = cass\n"
		"password = s3cret pass\n"
		"read_consistency = LOCAL_ONE\n"
		"write_consistency = EACH_QUORUM\n"
		"[admin]\n"
		"listen = 127.0.0.1:8080\n"
		"token_file = /etc/tern/admin.token\n"
		"metrics_public = yes\n"
		"[quota]\n"
		"messages = 1000\n"
		"octets = 1G\n";
	char *path, *err;
	struct tern_settings *set = load(conf, &path, &err);
	CHECK(set != NULL);
	CHECK(err == NULL);
	if (set == NULL) {
		fprintf(stderr, "error: %s\n", err);
		free(err);
		free(path);
		return;
	}
	CHECK_STR(set->path, path);
	CHECK_STR(set->hostname, "mx.example.test");
	CHECK_STR(set->data_dir, "/srv/tern");
	CHECK_STR(set->smtp_listen, "127.0.0.1:2525");
	CHECK_STR(set->smtp_listen_tls, "127.0.0.1:4650, [::1]:4650");
	CHECK_INT(set->max_message_size, 10 * 1024 * 1024);
	CHECK_INT(set->max_recipients, 42);
	CHECK_INT(set->bare_lf, BARE_LF_REJECT);
	CHECK_STR(set->lmtp_listen, "127.0.0.1:2424");
	CHECK_STR(set->pop3_listen, "127.0.0.1:1110");
	CHECK_STR(set->pop3_listen_tls, "localhost:1995");
	CHECK_STR(set->tls_cert, "/etc/tern/cert.pem");
	CHECK_STR(set->tls_key, "/etc/tern/key.pem");
	CHECK_INT(set->tls_min_version, TLS1_3_VERSION);
	CHECK_INT(set->plaintext, PLAINTEXT_ALWAYS);
	CHECK_STR(set->store_backend, "cassandra");
	CHECK_INT(set->store.pop3_ids, STORE_POP3_IDS_UID);
	CHECK_STR(CASS(set, "contact_points"), "10.0.0.1,10.0.0.2");
	CHECK_STR(CASS(set, "local_dc"), "dc1");
	CHECK_STR(CASS(set, "keyspace"), "tern_ks");
	CHECK_STR(CASS(set, "replication"), "dc1:3,dc2:3");
	CHECK_STR(CASS(set, "username"), "cass");
	CHECK_STR(CASS(set, "password"), "s3cret pass");
	CHECK_STR(CASS(set, "read_consistency"), "LOCAL_ONE");
	CHECK_STR(CASS(set, "write_consistency"), "EACH_QUORUM");
	CHECK_STR(set->admin_listen, "127.0.0.1:8080");
	CHECK_STR(set->admin_token_file, "/etc/tern/admin.token");
	CHECK(set->admin_metrics_public);
	CHECK(!set->admin_tls);
	CHECK(set->store.default_quota.messages == 1000);
	CHECK(set->store.default_quota.octets == 1024ULL * 1024 * 1024);
	/* the store settings point at the same values */
	CHECK_STR(set->store.backend, "cassandra");
	CHECK_STR(set->store.data_dir, "/srv/tern");
	CHECK_STR(STORE_CASS(set, "contact_points"), "10.0.0.1,10.0.0.2");
	CHECK_STR(STORE_CASS(set, "local_dc"), "dc1");
	CHECK_STR(STORE_CASS(set, "keyspace"), "tern_ks");
	CHECK_STR(STORE_CASS(set, "replication"), "dc1:3,dc2:3");
	CHECK_STR(STORE_CASS(set, "username"), "cass");
	CHECK_STR(STORE_CASS(set, "password"), "s3cret pass");
	CHECK_STR(STORE_CASS(set, "read_consistency"), "LOCAL_ONE");
	CHECK_STR(STORE_CASS(set, "write_consistency"), "EACH_QUORUM");
	/* the backend marks the password secret: it is wiped when freed */
	for (unsigned int i = 0; i < set->store.option_count; i++)
		CHECK(set->store.options[i].secret == (strcmp(set->store.options[i].key, "password") == 0));
	CHECK_INT(set->store.option_count, 8);
	settings_free(&set);
	CHECK(set == NULL);
	settings_free(&set);
	free(path);
}

static void test_defaults(void)
{
	static const char *const confs[] = {
		"",
		"# nothing but comments\n\n",
		"[server]\n[smtp]\n[store]\n[tls]\n[auth]\n",
	};
	for (size_t i = 0; i < sizeof(confs) / sizeof(confs[0]); i++) {
		char *path, *err;
		struct tern_settings *set = load(confs[i], &path, &err);
		CHECK(set != NULL);
		if (set == NULL) {
			fprintf(stderr, "error: %s\n", err);
			free(err);
			free(path);
			continue;
		}
		CHECK_INT(set->max_message_size, 25 * 1024 * 1024);
		CHECK_INT(set->max_recipients, 100);
		CHECK_INT(set->bare_lf, BARE_LF_NORMALIZE);
		CHECK_INT(set->tls_min_version, TLS1_2_VERSION);
		CHECK_INT(set->plaintext, PLAINTEXT_TLS_OR_LOOPBACK);
		CHECK_STR(set->store_backend, "sqlite");
		CHECK_STR(set->store.backend, "sqlite");
		CHECK_INT(set->store.pop3_ids, STORE_POP3_IDS_MESSAGEID);
		CHECK_STR(set->data_dir, "./var");
		CHECK_STR(set->store.data_dir, "./var");
		CHECK(set->hostname != NULL && set->hostname[0] != '\0');
		CHECK(set->tls_cert == NULL && set->tls_key == NULL);
		CHECK(CASS(set, "password") == NULL && STORE_CASS(set, "password") == NULL);
		settings_free(&set);
		free(path);
	}
}

static void test_values(void)
{
	static const struct {
		const char *value;
		uint64_t expect;
	} sizes[] = {
		{ "0", 0 },
		{ "1", 1 },
		{ "1024", 1024 },
		{ "10K", 10 * 1024 },
		{ "10k", 10 * 1024 },
		{ "25M", 25 * 1024 * 1024 },
		{ "25m", 25 * 1024 * 1024 },
		{ "2G", 2ULL * 1024 * 1024 * 1024 },
		{ "3g", 3ULL * 1024 * 1024 * 1024 },
		{ "100000", 100000 },
	};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char conf[128];
		snprintf(conf, sizeof(conf), "[smtp]\nmax_message_size = %s\n", sizes[i].value);
		char *path, *err;
		struct tern_settings *set = load(conf, &path, &err);
		test_checks++;
		if (set == NULL || set->max_message_size != sizes[i].expect) {
			test_failures++;
			fprintf(stderr, "%s:%d: max_message_size = %s: got %s %llu, expected %llu\n",
				__FILE__, __LINE__, sizes[i].value, err != NULL ? err : "",
				set != NULL ? (unsigned long long)set->max_message_size : 0ULL,
				(unsigned long long)sizes[i].expect);
		}
		settings_free(&set);
		free(err);
		free(path);
	}

	static const struct {
		const char *line;
		size_t offset; /* offsetof the enum field */
		int expect;
	} enums[] = {
		{ "[auth]\nplaintext = tls_or_loopback\n", offsetof(struct tern_settings, plaintext),
		  PLAINTEXT_TLS_OR_LOOPBACK },
		{ "[auth]\nplaintext = always\n", offsetof(struct tern_settings, plaintext),
		  PLAINTEXT_ALWAYS },
		{ "[auth]\nplaintext = tls\n", offsetof(struct tern_settings, plaintext),
		  PLAINTEXT_TLS },
		{ "[store]\npop3_ids = messageid\n", offsetof(struct tern_settings, store.pop3_ids),
		  STORE_POP3_IDS_MESSAGEID },
		{ "[store]\npop3_ids = uid\n", offsetof(struct tern_settings, store.pop3_ids),
		  STORE_POP3_IDS_UID },
		{ "[smtp]\nbare_lf = reject\n", offsetof(struct tern_settings, bare_lf),
		  BARE_LF_REJECT },
		{ "[smtp]\nbare_lf = reject\nbare_lf = normalize\n",
		  offsetof(struct tern_settings, bare_lf), BARE_LF_NORMALIZE },
		{ "[tls]\nmin_version = 1.2\n", offsetof(struct tern_settings, tls_min_version),
		  TLS1_2_VERSION },
		{ "[tls]\nmin_version = 1.3\n", offsetof(struct tern_settings, tls_min_version),
		  TLS1_3_VERSION },
	};
	for (size_t i = 0; i < sizeof(enums) / sizeof(enums[0]); i++) {
		char *path, *err;
		struct tern_settings *set = load(enums[i].line, &path, &err);
		CHECK(set != NULL);
		if (set != NULL)
			CHECK_INT(*(int *)((char *)set + enums[i].offset), enums[i].expect);
		settings_free(&set);
		free(err);
		free(path);
	}

	/* backends, consistency levels, listen lists, repeated keys */
	char *path, *err;
	struct tern_settings *set = load("[store]\nbackend = mem\nbackend = sqlite\n"
					 "[cassandra]\nread_consistency = QUORUM\n"
					 "read_consistency = LOCAL_QUORUM\nwrite_consistency = ONE\n"
					 "[smtp]\nlisten = 127.0.0.1:25\nlisten = [::1]:25 , 0.0.0.0:587\n"
					 "max_recipients = 1\nmax_recipients = 100000\n"
					 "[pop3]\nlisten =\n"
					 "[server]\nhostname = a\nhostname = b\n",
					 &path, &err);
	CHECK(set != NULL);
	if (set != NULL) {
		CHECK_STR(set->store_backend, "sqlite");
		CHECK_STR(set->store.backend, "sqlite");
		CHECK_STR(CASS(set, "read_consistency"), "LOCAL_QUORUM");
		CHECK_STR(CASS(set, "write_consistency"), "ONE");
		CHECK_STR(set->smtp_listen, "[::1]:25 , 0.0.0.0:587");
		CHECK_STR(set->pop3_listen, "");
		CHECK_INT(set->max_recipients, 100000);
		CHECK_STR(set->hostname, "b");
	} else {
		fprintf(stderr, "error: %s\n", err);
	}
	settings_free(&set);
	free(err);
	free(path);
}

/* Expects settings_load to fail with "PATH:LINE: ..." containing every word
 * of words (separated by '|'). line 0: "PATH:" and any line number. */
static void expect_error(const char *conf, unsigned int line, const char *words, int src_line)
{
	char *path, *err;
	struct tern_settings *set = load(conf, &path, &err);
	char want[512];
	if (line > 0)
		snprintf(want, sizeof(want), "%s:%u: ", path, line);
	else
		snprintf(want, sizeof(want), "%s:", path);
	bool ok = set == NULL && err != NULL && strncmp(err, want, strlen(want)) == 0;
	char wbuf[256];
	str_copy(wbuf, words, sizeof(wbuf));
	char *save = NULL;
	for (char *w = strtok_r(wbuf, "|", &save); ok && w != NULL; w = strtok_r(NULL, "|", &save))
		if (strstr(err, w) == NULL)
			ok = false;
	test_checks++;
	if (!ok) {
		test_failures++;
		fprintf(stderr, "%s:%d: expected an error \"%s...\" with \"%s\", got %s\n", __FILE__,
			src_line, want, words, set != NULL ? "success" : err != NULL ? err : "(null)");
	}
	settings_free(&set);
	free(err);
	free(path);
}
#define EXPECT_ERROR(conf, line, words) expect_error(conf, line, words, __LINE__)

static void test_errors(void)
{
	/* unknown section and key */
	EXPECT_ERROR("[server]\nhostname = x\n\n[bogus]\nkey = value\n", 4, "bogus");
	EXPECT_ERROR("[server]\nhostname = x\ncolour = blue\n", 3, "colour");
	EXPECT_ERROR("[smtp]\nlisten = 127.0.0.1:25\n[pop3]\nmax_recipients = 5\n", 4,
		     "max_recipients");
	EXPECT_ERROR("[Server]\nhostname = x\n", 1, "Server");
	/* INI syntax errors come through with their line */
	EXPECT_ERROR("[server]\nthis line has no equals sign\n", 2, "");
	EXPECT_ERROR("hostname = early\n[server]\n", 1, "section");
	EXPECT_ERROR("[server]\n[smtp\n", 2, "section");

	/* enums: the message lists the choices */
	EXPECT_ERROR("[store]\nbackend = sqlite\npop3_ids = banana\n", 3,
		     "pop3_ids|banana|messageid|uid");
	EXPECT_ERROR("[store]\nbackend = mysql\n", 2, "backend|mysql|sqlite|cassandra");
	EXPECT_ERROR("[auth]\nplaintext = sometimes\n", 2,
		     "plaintext|sometimes|tls_or_loopback|always|tls");
	EXPECT_ERROR("[tls]\nmin_version = 1.7\n", 2, "min_version|1.7|1.2|1.3");
	EXPECT_ERROR("[smtp]\nbare_lf = strip\n", 2, "bare_lf|strip|normalize|reject");
	EXPECT_ERROR("[smtp]\nbare_lf = Reject\n", 2, "bare_lf|normalize|reject");
	/* one key for SMTP, LMTP and tern deliver: it lives in [smtp] only */
	EXPECT_ERROR("[lmtp]\nbare_lf = reject\n", 2, "bare_lf|[lmtp]");
	EXPECT_ERROR("[tls]\nmin_version = 1.0\n", 2, "min_version|1.2|1.3");
	EXPECT_ERROR("[store]\npop3_ids = UID\n", 2, "pop3_ids|messageid|uid");
	EXPECT_ERROR("[cassandra]\nread_consistency = SERIAL\n", 2,
		     "read_consistency|SERIAL|LOCAL_QUORUM");
	EXPECT_ERROR("[cassandra]\nwrite_consistency = local_quorum\n", 2,
		     "write_consistency|LOCAL_QUORUM");
	EXPECT_ERROR("[store]\npop3_ids =\n", 2, "pop3_ids|messageid");
	/* a backend's own section: its keys only, errors with the line */
	EXPECT_ERROR("[cassandra]\nkeyspace = k\ncontact_point = x\n", 3,
		     "unknown key|contact_point|[cassandra]");
	EXPECT_ERROR("[store]\nbackend = sqlite\n[cassandra]\nlocal_dc = dc1\nread_consistency =\n",
		     5, "read_consistency|ONE|LOCAL_ONE");

	/* listen lists */
	EXPECT_ERROR("[smtp]\nlisten = 127.0.0.1:notaport\n", 2, "listen|notaport");
	EXPECT_ERROR("[pop3]\nlisten = 127.0.0.1:99999\n", 2, "listen|99999");
	EXPECT_ERROR("[lmtp]\nlisten = nonsense\n", 2, "listen|nonsense");
	EXPECT_ERROR("[pop3]\nlisten_tls = 127.0.0.1:\n", 2, "listen_tls");
	EXPECT_ERROR("[smtp]\nlisten_tls = :25\n", 2, "listen_tls");
	EXPECT_ERROR("[admin]\nlisten = 127.0.0.1:8080, localhost:x\n", 2, "listen");
	EXPECT_ERROR("[admin]\nlisten = 127.0.0.1:8080\n", 2, "token_file");
	EXPECT_ERROR("[quota]\nmessages = 0\n", 2, "invalid limit");
	EXPECT_ERROR("[quota]\noctets = lots\n", 2, "invalid limit");
	EXPECT_ERROR("[server]\nlog = file\n", 2, "stderr syslog");
	EXPECT_ERROR("[smtp]\nlisten = 127.0.0.1:-1\n", 2, "listen");
	EXPECT_ERROR("[smtp]\nlisten = ,\n", 2, "listen");

	/* numbers and sizes */
	EXPECT_ERROR("[smtp]\nmax_recipients = many\n", 2, "max_recipients|many");
	EXPECT_ERROR("[smtp]\nmax_recipients = 0\n", 2, "max_recipients");
	EXPECT_ERROR("[smtp]\nmax_recipients = 100001\n", 2, "max_recipients");
	EXPECT_ERROR("[smtp]\nmax_recipients = -1\n", 2, "max_recipients");
	EXPECT_ERROR("[smtp]\nmax_recipients = 10x\n", 2, "max_recipients");
	EXPECT_ERROR("[smtp]\nmax_recipients =\n", 2, "max_recipients");
	EXPECT_ERROR("[smtp]\nmax_recipients = 99999999999999999999999\n", 2, "max_recipients");
	EXPECT_ERROR("[smtp]\nmax_message_size = abc\n", 2, "max_message_size|abc");
	EXPECT_ERROR("[smtp]\nmax_message_size = -5\n", 2, "max_message_size");
	EXPECT_ERROR("[smtp]\nmax_message_size = 10zz\n", 2, "max_message_size");
	EXPECT_ERROR("[smtp]\nmax_message_size = 1.5M\n", 2, "max_message_size");
	EXPECT_ERROR("[smtp]\nmax_message_size = 10 M\n", 2, "max_message_size");
	EXPECT_ERROR("[smtp]\nmax_message_size = M\n", 2, "max_message_size");
	EXPECT_ERROR("[smtp]\nmax_message_size =\n", 2, "max_message_size");
	EXPECT_ERROR("[smtp]\nmax_message_size = 20000000000G\n", 2, "max_message_size");
	/* a number too large for 64 bits must not silently become the maximum */
	EXPECT_ERROR("[smtp]\nmax_message_size = 99999999999999999999\n", 2, "max_message_size");

	/* tls: cert and key go together; the error points into [tls] */
	EXPECT_ERROR("[server]\nhostname = x\n[tls]\ncert = /c.pem\n", 0, "cert|key");
	EXPECT_ERROR("[tls]\nkey = /k.pem\n", 0, "cert|key");
	expect_error("[server]\nhostname = x\n[tls]\ncert = /c.pem\nmin_version = 1.2\n", 4,
		     "cert|key", __LINE__);
	expect_error("[tls]\nmin_version = 1.3\nkey = /k.pem\n", 3, "cert|key", __LINE__);

	/* a missing file */
	char *err = NULL;
	struct tern_settings *set = settings_load("/nonexistent/tern.conf", &err);
	CHECK(set == NULL);
	CHECK(err != NULL && strstr(err, "/nonexistent/tern.conf") != NULL);
	free(err);
}

/* Every problem of a file, in file order, one line each. */
static void test_all_errors(void)
{
	char *path, *err;
	struct tern_settings *set = load(
		"[server]\n"                      /* 1 */
		"colour = blue\n"                 /* 2 */
		"[smtp]\n"                        /* 3 */
		"max_message_size = lots\n"       /* 4 */
		"max_recipients = 10\n"           /* 5 */
		"this has no equals sign\n"       /* 6 */
		"[bogus]\n"                       /* 7 */
		"ignored = x\n"                   /* 8 */
		"[store]\n"                       /* 9 */
		"pop3_ids = banana\n"             /* 10 */
		"[tls]\n"                         /* 11 */
		"cert = /c.pem\n"                 /* 12 */
		"[auth]\n"                        /* 13 */
		"failure_delay_initial = 10s\n"   /* 14 */
		"failure_delay_max = 1s\n",       /* 15 */
		&path, &err);
	CHECK(set == NULL);
	struct buf want;
	buf_init(&want, 0);
	buf_printf(&want,
		   "%s:2: unknown key \"colour\" in [server]\n"
		   "%s:4: max_message_size: invalid size \"lots\" (expected a number with an optional K, M or G)\n"
		   "%s:6: expected \"key = value\"\n"
		   "%s:7: unknown section [bogus]\n"
		   "%s:10: pop3_ids: invalid value \"banana\" (expected one of: messageid uid)\n"
		   "%s:12: [tls] needs both cert and key (key is missing)\n"
		   "%s: [auth] failure_delay_max is below failure_delay_initial",
		   path, path, path, path, path, path, path);
	CHECK_STR(err, want.data);
	buf_deinit(&want);
	free(err);
	/* settings_read gives the settings too, with the good values read */
	set = settings_read(path, &err);
	CHECK(set != NULL && err != NULL);
	if (set != NULL) {
		CHECK_INT(set->max_recipients, 10);
		CHECK_INT(set->max_message_size, 25 * 1024 * 1024); /* the default */
	}
	settings_free(&set);
	free(err);
	free(path);

	/* a good file: no errors either way */
	set = load("[server]\nhostname = x\n", &path, &err);
	CHECK(set != NULL && err == NULL);
	settings_free(&set);
	set = settings_read(path, &err);
	CHECK(set != NULL && err == NULL);
	settings_free(&set);
	free(path);
	set = settings_read("/nonexistent/tern.conf", &err);
	CHECK(set == NULL && err != NULL && strstr(err, "cannot open") != NULL);
	free(err);
}

/* [server] user and group: looked up at load time; these tests need the
 * "nobody" user and the "root" group, present on every Debian system. */
static void test_user_group(void)
{
	char *path, *err;
	struct tern_settings *set = load("[server]\nuser = nobody\n", &path, &err);
	CHECK(set != NULL);
	if (set != NULL) {
		struct passwd *pw = getpwnam("nobody");
		CHECK(pw != NULL);
		if (pw != NULL) {
			CHECK_INT(set->uid, pw->pw_uid);
			CHECK_INT(set->gid, pw->pw_gid); /* the primary group */
		}
		CHECK_STR(set->user, "nobody");
		CHECK(set->group == NULL);
	}
	settings_free(&set);
	free(err);
	free(path);

	set = load("[server]\nuser = nobody\ngroup = root\n", &path, &err);
	CHECK(set != NULL);
	if (set != NULL)
		CHECK_INT(set->gid, 0);
	settings_free(&set);
	free(err);
	free(path);

	/* empty: no drop */
	set = load("[server]\nuser =\ngroup =\n", &path, &err);
	CHECK(set != NULL && set->user == NULL && set->group == NULL);
	settings_free(&set);
	free(err);
	free(path);

	EXPECT_ERROR("[server]\nhostname = x\ngroup = root\n", 3, "group needs user");
	EXPECT_ERROR("[server]\nuser = no-such-user-tern-test\n", 2,
		     "user|no-such-user-tern-test|no such user");
	EXPECT_ERROR("[server]\nuser = nobody\n\ngroup = no-such-group-tern-test\n", 4,
		     "group|no-such-group-tern-test|no such group");
}

int main(void)
{
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	test_all_keys();
	test_defaults();
	test_values();
	test_errors();
	test_all_errors();
	test_user_group();
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	TEST_MAIN_END();
}
