/*
 * tern: the command line. `tern -c FILE COMMAND ...`:
 *   serve                          run the daemon in the foreground
 *   check-config                   every problem of the configuration, nothing started
 *   domain add|del DOMAIN, domain list
 *   user add|del|passwd ADDRESS, user list   (password: first line of stdin)
 *   user expire ADDRESS [DAYS|default|never]  a user's own POP3 EXPIRE policy
 *   alias add ADDRESS TARGET..., alias del ADDRESS, alias list
 *   quota set ADDRESS [--messages N|none] [--octets SIZE|none], quota get ADDRESS
 *   deliver [-f SENDER] ADDRESS    local delivery of the message on stdin
 *   repair [options]               the listing/body consistency check and sweep
 *   import ADDRESS maildir|mbox PATH [--uidl MODE], import --batch FILE
 *   export ADDRESS maildir PATH    (docs/migration.md)
 *   queue list|flush, queue del ID the outbound queue (docs/outbound.md)
 *   dkim record                    the DNS TXT record of the [dkim] key
 * Administrative commands talk to the store directly, so they work whether
 * or not the daemon runs. Mistakes print one line naming the problem and
 * exit non-zero with a sysexits.h code.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "delivery.h"
#include "import.h"
#include "log.h"
#include "mail-address.h"
#include "mail-data.h"
#include "outbound.h"
#include "dkim.h"
#include "password.h"
#include "server.h"
#include "settings.h"
#include "store.h"

#define DEFAULT_CONFIG "/etc/tern/tern.conf"
#define PASSWORD_MAX 1024

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tern [-c FILE] COMMAND [ARGS]\n"
		"  serve                         run the server in the foreground\n"
		"  check-config                  report every problem of the configuration file\n"
		"                                (FILE:LINE: reason), start nothing; exit 0 or 78\n"
		"  domain add|del DOMAIN         add or remove a local domain\n"
		"  domain list                   list local domains\n"
		"  user add|passwd ADDRESS       add a user or change a password; the password\n"
		"                                (or a {SCHEME}-prefixed hash) is read from stdin\n"
		"  user del ADDRESS              remove a user and their mail\n"
		"  user list                     list users\n"
		"  user expire ADDRESS [DAYS|default|never]\n"
		"                                show or set a user's own POP3 EXPIRE policy\n"
		"                                (default: [pop3] expire_days applies)\n"
		"  alias add ADDRESS TARGET...   create an alias of a local domain, or add\n"
		"                                targets (users, aliases or remote addresses)\n"
		"  alias del ADDRESS             remove an alias\n"
		"  alias list                    list aliases: ADDRESS TARGET,TARGET...\n"
		"  quota set ADDRESS [--messages N|none] [--octets SIZE|none]\n"
		"                                set a user's own limits (SIZE: e.g. 500M, 2G;\n"
		"                                none: the [quota] default applies)\n"
		"  quota get ADDRESS             show a user's usage and the limits that apply\n"
		"  deliver [-f SENDER] ADDRESS   deliver the message on stdin\n"
		"  repair [--dry-run] [--per-second N] [--min-age SECONDS] [--no-sweep | --sweep-only]\n"
		"         [--from TOKEN]\n"
		"                                find and fix drift between listings and bodies,\n"
		"                                and delete bodies no mailbox references\n"
		"  import ADDRESS maildir|mbox PATH [--uidl auto|dovecot|courier|x-uidl|none]\n"
		"                                import a mailbox, keeping its order and POP3 UIDLs\n"
		"  import [--uidl MODE] --batch FILE   import each \"ADDRESS FORMAT PATH\" line of FILE\n"
		"  export ADDRESS maildir PATH   write the mailbox as a Maildir with a dovecot-uidlist\n"
		"  queue list                    list the outbound queue, every node's\n"
		"  queue flush                   make every queued message due now\n"
		"  queue del ID                  remove a message from the queue (no DSN)\n"
		"  dkim record                   print the DNS TXT record for the [dkim] key\n"
		"FILE defaults to $TERN_CONFIG, then " DEFAULT_CONFIG ".\n");
}

static int die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("tern: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return code;
}

static int store_exit(enum store_status st)
{
	switch (st) {
	case STORE_OK: return EX_OK;
	case STORE_NOTFOUND: return EX_NOUSER;
	case STORE_EXISTS: return EX_CANTCREAT;
	case STORE_INVALID: return EX_DATAERR;
	case STORE_TOOBIG: return EX_DATAERR;
	case STORE_PERM: return EX_SOFTWARE;
	case STORE_LOOP: return EX_DATAERR;
	default: return EX_TEMPFAIL;
	}
}

/* Normalises an address argument; prints the problem and returns -1. */
static int parse_address(const char *arg, char out[MAIL_ADDRESS_MAX + 1])
{
	struct mail_address addr;
	const char *error;
	if (mail_address_parse_utf8(arg, strlen(arg), &addr, &error) < 0) {
		char shown[MAIL_ADDRESS_MAX * 4 + 8];
		str_escape_for_log(shown, sizeof(shown), arg, strlen(arg), MAIL_ADDRESS_MAX);
		fprintf(stderr, "tern: invalid address \"%s\": %s\n", shown, error);
		return -1;
	}
	mail_address_format(&addr, out, MAIL_ADDRESS_MAX + 1);
	return 0;
}

static int read_password(struct buf *pw)
{
	if (isatty(STDIN_FILENO))
		fprintf(stderr, "Password: ");
	int c;
	while ((c = getchar()) != EOF && c != '\n') {
		if (buf_append_c(pw, (char)c) < 0) {
			buf_wipe(pw);
			return -1;
		}
	}
	if (pw->len > 0 && pw->data[pw->len - 1] == '\r')
		pw->data[--pw->len] = '\0';
	return 0;
}

/* Reads the password from stdin and returns the hash to store in *hash. */
static int password_from_stdin(struct buf *hash)
{
	struct buf pw;
	buf_init(&pw, PASSWORD_MAX);
	if (read_password(&pw) < 0) {
		buf_deinit(&pw);
		return die(EX_DATAERR, "password too long (limit %d characters)", PASSWORD_MAX);
	}
	if (pw.len == 0) {
		buf_deinit(&pw);
		return die(EX_DATAERR, "empty password (it is read from the first line of stdin)");
	}
	int ret = EX_OK;
	if (pw.data[0] == '{' || strncmp(pw.data, "$argon2", 7) == 0) {
		if (!password_is_hash(pw.data))
			ret = die(EX_DATAERR, "unsupported password hash (accepted: {ARGON2ID}, {SHA512-CRYPT}, {SHA256-CRYPT}, {BLF-CRYPT}, {CRYPT}, $argon2id$)");
		else
			buf_append_str(hash, pw.data);
	} else if (password_hash(pw.data, pw.len, hash) < 0) {
		ret = die(EX_SOFTWARE, "password hashing failed");
	}
	buf_wipe(&pw);
	buf_deinit(&pw);
	return ret;
}

static int cmd_domain(struct store *store, int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "list") == 0) {
		struct buf out;
		buf_init(&out, 0);
		enum store_status st = store_domain_list(store, &out);
		fputs(out.data, stdout);
		buf_deinit(&out);
		return st == STORE_OK ? EX_OK : die(store_exit(st), "domain list: %s", store_status_name(st));
	}
	if (argc != 2 || (strcmp(argv[0], "add") != 0 && strcmp(argv[0], "del") != 0)) {
		usage(stderr);
		return EX_USAGE;
	}
	char domain[MAIL_DOMAIN_MAX + 1];
	if (str_copy(domain, argv[1], sizeof(domain)) >= sizeof(domain) ||
	    !mail_domain_is_valid(argv[1], strlen(argv[1])))
		return die(EX_DATAERR, "invalid domain name \"%s\"", argv[1]);
	str_lower(domain);
	if (strcmp(argv[0], "add") == 0) {
		enum store_status st = store_domain_add(store, domain);
		if (st == STORE_EXISTS)
			return die(EX_CANTCREAT, "domain %s already exists", domain);
		if (st != STORE_OK)
			return die(store_exit(st), "domain add %s: %s", domain, store_status_name(st));
		return EX_OK;
	}
	enum store_status st = store_domain_del(store, domain);
	if (st == STORE_NOTFOUND)
		return die(EX_NOUSER, "unknown domain %s", domain);
	if (st == STORE_EXISTS)
		return die(EX_UNAVAILABLE, "domain %s still has users or aliases; delete them first",
			   domain);
	if (st != STORE_OK)
		return die(store_exit(st), "domain del %s: %s", domain, store_status_name(st));
	return EX_OK;
}

/* What address is: 1 a user, 2 an alias, 0 neither, -1 on a store error
 * (*st_r says which). */
static int address_kind(struct store *store, const char *address, enum store_status *st_r)
{
	struct buf b;
	buf_init(&b, 0);
	*st_r = store_user_get(store, address, &b);
	buf_wipe(&b);
	int kind = *st_r == STORE_OK ? 1 : -1;
	if (*st_r == STORE_NOTFOUND) {
		buf_reset(&b);
		*st_r = store_alias_get(store, address, &b);
		kind = *st_r == STORE_OK ? 2 : *st_r == STORE_NOTFOUND ? 0 : -1;
	}
	buf_deinit(&b);
	return kind;
}

static void print_expire(const char *label, int days)
{
	if (days == STORE_EXPIRE_NEVER)
		printf("%s: never\n", label);
	else
		printf("%s: %d day%s\n", label, days, days == 1 ? "" : "s");
}

/* user expire ADDRESS [DAYS|default|never] */
static int cmd_user_expire(const struct tern_settings *set, struct store *store, int argc,
			   char **argv)
{
	if (argc != 1 && argc != 2) {
		usage(stderr);
		return EX_USAGE;
	}
	char addr[MAIL_ADDRESS_MAX + 1];
	if (parse_address(argv[0], addr) < 0)
		return EX_DATAERR;
	enum store_status st;
	if (argc == 1) {
		int own;
		st = store_user_expire_get(store, addr, &own);
		if (st == STORE_NOTFOUND)
			return die(EX_NOUSER, "unknown user %s", addr);
		if (st != STORE_OK)
			return die(store_exit(st), "user expire %s: %s", addr, store_status_name(st));
		if (own == STORE_EXPIRE_DEFAULT)
			printf("own: default\n");
		else
			print_expire("own", own);
		print_expire("effective", own == STORE_EXPIRE_DEFAULT ? set->pop3_expire_days : own);
		return EX_OK;
	}
	const char *v = argv[1];
	int days;
	if (strcmp(v, "default") == 0) {
		days = STORE_EXPIRE_DEFAULT;
	} else if (strcmp(v, "never") == 0) {
		days = STORE_EXPIRE_NEVER;
	} else {
		char *end;
		unsigned long n = strtoul(v, &end, 10);
		if (*v < '0' || *v > '9' || *end != '\0' || n > STORE_EXPIRE_DAYS_MAX)
			return die(EX_DATAERR, "user expire: expected a number of days (0..%d), default or never, got \"%s\"",
				   STORE_EXPIRE_DAYS_MAX, v);
		days = (int)n;
	}
	st = store_user_expire_set(store, addr, days);
	if (st == STORE_NOTFOUND)
		return die(EX_NOUSER, "unknown user %s", addr);
	return st == STORE_OK ? EX_OK : die(store_exit(st), "user expire %s: %s", addr, store_status_name(st));
}

static int cmd_user(struct store *store, int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "list") == 0) {
		struct buf out;
		buf_init(&out, 0);
		enum store_status st = store_user_list(store, &out);
		fputs(out.data, stdout);
		buf_deinit(&out);
		return st == STORE_OK ? EX_OK : die(store_exit(st), "user list: %s", store_status_name(st));
	}
	if (argc != 2) {
		usage(stderr);
		return EX_USAGE;
	}
	char addr[MAIL_ADDRESS_MAX + 1];
	const char *verb = argv[0];
	if (strcmp(verb, "add") != 0 && strcmp(verb, "del") != 0 && strcmp(verb, "passwd") != 0) {
		usage(stderr);
		return EX_USAGE;
	}
	if (parse_address(argv[1], addr) < 0)
		return EX_DATAERR;
	if (strcmp(verb, "del") == 0) {
		enum store_status st = store_user_del(store, addr);
		if (st == STORE_NOTFOUND)
			return die(EX_NOUSER, "unknown user %s", addr);
		return st == STORE_OK ? EX_OK : die(store_exit(st), "user del %s: %s", addr, store_status_name(st));
	}
	const char *domain = strrchr(addr, '@') + 1;
	struct buf hash;
	buf_init(&hash, 0);
	int ret = EX_OK;
	enum store_status st;
	if (strcmp(verb, "add") == 0) {
		st = store_domain_exists(store, domain);
		if (st == STORE_NOTFOUND) {
			ret = die(EX_NOUSER, "unknown domain %s (add it with: tern domain add %s)",
				  domain, domain);
			goto out;
		}
		struct buf existing;
		buf_init(&existing, 0);
		st = store_user_get(store, addr, &existing);
		buf_wipe(&existing);
		buf_deinit(&existing);
		if (st == STORE_OK) {
			ret = die(EX_CANTCREAT, "user %s already exists", addr);
			goto out;
		}
		if (address_kind(store, addr, &st) == 2) {
			ret = die(EX_CANTCREAT, "%s is an alias; a user cannot take an alias's address (tern alias del %s first)",
				  addr, addr);
			goto out;
		}
		if ((ret = password_from_stdin(&hash)) != EX_OK)
			goto out;
		st = store_user_add(store, addr, hash.data);
		if (st == STORE_EXISTS)
			ret = die(EX_CANTCREAT, "user %s already exists", addr);
		else if (st != STORE_OK)
			ret = die(store_exit(st), "user add %s: %s", addr, store_status_name(st));
	} else {
		struct buf existing;
		buf_init(&existing, 0);
		st = store_user_get(store, addr, &existing);
		buf_wipe(&existing);
		buf_deinit(&existing);
		if (st == STORE_NOTFOUND) {
			ret = die(EX_NOUSER, "unknown user %s", addr);
			goto out;
		}
		if ((ret = password_from_stdin(&hash)) != EX_OK)
			goto out;
		st = store_user_set_password(store, addr, hash.data);
		if (st == STORE_NOTFOUND)
			ret = die(EX_NOUSER, "unknown user %s", addr);
		else if (st != STORE_OK)
			ret = die(store_exit(st), "user passwd %s: %s", addr, store_status_name(st));
	}
out:
	buf_deinit(&hash);
	return ret;
}

/* alias add: the alias's targets so far (if any) and the new ones, each
 * checked here first so that the message can name the one at fault. */
static int alias_add(struct store *store, const char *addr, int ntargets, char **args)
{
	const char *domain = strrchr(addr, '@') + 1;
	enum store_status st = store_domain_exists(store, domain);
	if (st == STORE_NOTFOUND)
		return die(EX_DATAERR, "alias %s: %s is not a local domain (add it with: tern domain add %s)",
			   addr, domain, domain);
	int kind = address_kind(store, addr, &st);
	if (kind < 0)
		return die(store_exit(st), "alias add %s: %s", addr, store_status_name(st));
	if (kind == 1)
		return die(EX_CANTCREAT, "%s is a user; an alias cannot take a user's address", addr);
	char (*targets)[MAIL_ADDRESS_MAX + 1] =
		xcalloc(STORE_ALIAS_TARGETS_MAX, sizeof(*targets));
	const char *ptrs[STORE_ALIAS_TARGETS_MAX];
	unsigned int n = 0;
	int ret = EX_OK;
	struct buf old;
	buf_init(&old, 0);
	if (kind == 2 && (st = store_alias_get(store, addr, &old)) != STORE_OK)
		ret = die(store_exit(st), "alias add %s: %s", addr, store_status_name(st));
	for (char *p = old.data; ret == EX_OK && *p != '\0' && n < STORE_ALIAS_TARGETS_MAX;) {
		char *nl = strchr(p, '\n');
		size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		if (len > 0 && len <= MAIL_ADDRESS_MAX) {
			memcpy(targets[n], p, len);
			targets[n][len] = '\0';
			n++;
		}
		p += len + (nl != NULL);
	}
	for (int i = 0; ret == EX_OK && i < ntargets; i++) {
		char t[MAIL_ADDRESS_MAX + 1];
		if (parse_address(args[i], t) < 0) {
			ret = EX_DATAERR;
			break;
		}
		if (strcmp(t, addr) == 0) {
			ret = die(EX_DATAERR, "alias %s cannot deliver to itself", addr);
			break;
		}
		bool dup = false;
		for (unsigned int k = 0; k < n && !dup; k++)
			dup = strcmp(targets[k], t) == 0;
		if (dup)
			continue;
		int tk = address_kind(store, t, &st);
		if (tk == 0) {
			/* a target outside the local domains is a remote address */
			char tdomain[MAIL_ADDRESS_MAX + 1];
			str_copy(tdomain, strrchr(t, '@') + 1, sizeof(tdomain));
			str_lower(tdomain);
			st = store_domain_exists(store, tdomain);
			tk = st == STORE_NOTFOUND ? 3 : st == STORE_OK ? 0 : -1;
		}
		if (tk < 0)
			ret = die(store_exit(st), "alias add %s: %s", addr, store_status_name(st));
		else if (tk == 0)
			ret = die(EX_NOUSER, "alias %s: unknown target %s (neither a user nor an alias)",
				  addr, t);
		else if (n == STORE_ALIAS_TARGETS_MAX)
			ret = die(EX_DATAERR, "alias %s: more than %d targets", addr,
				  STORE_ALIAS_TARGETS_MAX);
		else
			str_copy(targets[n++], t, sizeof(targets[0]));
	}
	for (unsigned int k = 0; k < n; k++)
		ptrs[k] = targets[k];
	if (ret == EX_OK) {
		st = store_alias_set(store, addr, ptrs, n);
		if (st == STORE_LOOP)
			ret = die(EX_DATAERR, "alias %s: its targets would lead back to it, or nest more than %d aliases deep",
				  addr, STORE_ALIAS_DEPTH);
		else if (st == STORE_INVALID)
			ret = die(EX_DATAERR, "alias %s: would deliver to more than %d users",
				  addr, STORE_ALIAS_TARGETS_MAX);
		else if (st == STORE_NOTFOUND)
			ret = die(EX_NOUSER, "alias %s: its targets deliver to nobody (were they just deleted?)",
				  addr);
		else if (st != STORE_OK)
			ret = die(store_exit(st), "alias add %s: %s", addr, store_status_name(st));
	}
	buf_deinit(&old);
	free(targets);
	return ret;
}

static int cmd_alias(struct store *store, int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "list") == 0) {
		struct buf out;
		buf_init(&out, 0);
		enum store_status st = store_alias_list(store, &out);
		fputs(out.data, stdout);
		buf_deinit(&out);
		return st == STORE_OK ? EX_OK : die(store_exit(st), "alias list: %s", store_status_name(st));
	}
	bool add = argc >= 3 && strcmp(argv[0], "add") == 0;
	if (!add && !(argc == 2 && strcmp(argv[0], "del") == 0)) {
		usage(stderr);
		return EX_USAGE;
	}
	char addr[MAIL_ADDRESS_MAX + 1];
	if (parse_address(argv[1], addr) < 0)
		return EX_DATAERR;
	if (add)
		return alias_add(store, addr, argc - 2, argv + 2);
	enum store_status st = store_alias_del(store, addr);
	if (st == STORE_NOTFOUND)
		return die(EX_NOUSER, "unknown alias %s", addr);
	return st == STORE_OK ? EX_OK : die(store_exit(st), "alias del %s: %s", addr, store_status_name(st));
}

/* A limit: "none" (STORE_NO_LIMIT), or a number of at least 1; sizes may
 * end in K, M or G (powers of 1024). */
static int parse_limit(const char *opt, const char *v, bool size, uint64_t *out)
{
	if (strcmp(v, "none") == 0) {
		*out = STORE_NO_LIMIT;
		return 0;
	}
	char *end;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	uint64_t mult = 1;
	if (size && *end != '\0' && end[1] == '\0') {
		switch (*end) {
		case 'k': case 'K': mult = 1024; end++; break;
		case 'm': case 'M': mult = 1024 * 1024; end++; break;
		case 'g': case 'G': mult = 1024ULL * 1024 * 1024; end++; break;
		}
	}
	if (*v < '0' || *v > '9' || errno == ERANGE || *end != '\0' || n == 0 ||
	    n > (uint64_t)INT64_MAX / mult) {
		fprintf(stderr, "tern: quota set: %s needs none or a number of at least 1%s, got \"%s\"\n",
			opt, size ? " (with an optional K, M or G)" : "", v);
		return -1;
	}
	*out = n * mult;
	return 0;
}

static void print_limit(const char *what, uint64_t used, uint64_t own, uint64_t def)
{
	if (own != STORE_NO_LIMIT)
		printf("%s: used %llu, limit %llu (own)\n", what, (unsigned long long)used,
		       (unsigned long long)own);
	else if (def != STORE_NO_LIMIT)
		printf("%s: used %llu, limit %llu (default)\n", what, (unsigned long long)used,
		       (unsigned long long)def);
	else
		printf("%s: used %llu, limit none\n", what, (unsigned long long)used);
}

static int cmd_quota(const struct tern_settings *set, struct store *store, int argc, char **argv)
{
	bool get = argc == 2 && strcmp(argv[0], "get") == 0;
	if (!get && !(argc >= 4 && argc % 2 == 0 && strcmp(argv[0], "set") == 0)) {
		usage(stderr);
		return EX_USAGE;
	}
	/* The options first: a mistake in them is named before the store is asked. */
	struct store_quota given = { 0, 0 };
	bool set_messages = false, set_octets = false;
	for (int i = 2; !get && i < argc; i += 2) {
		if (strcmp(argv[i], "--messages") == 0) {
			if (parse_limit(argv[i], argv[i + 1], false, &given.messages) < 0)
				return EX_USAGE;
			set_messages = true;
		} else if (strcmp(argv[i], "--octets") == 0) {
			if (parse_limit(argv[i], argv[i + 1], true, &given.octets) < 0)
				return EX_USAGE;
			set_octets = true;
		} else {
			usage(stderr);
			return EX_USAGE;
		}
	}
	char addr[MAIL_ADDRESS_MAX + 1];
	if (parse_address(argv[1], addr) < 0)
		return EX_DATAERR;
	struct store_quota own;
	enum store_status st = store_quota_get(store, addr, &own);
	if (st == STORE_NOTFOUND)
		return die(EX_NOUSER, "unknown user %s", addr);
	if (st != STORE_OK)
		return die(store_exit(st), "quota %s %s: %s", argv[0], addr, store_status_name(st));
	if (get) {
		uint64_t messages, octets;
		st = store_mailbox_usage(store, addr, &messages, &octets);
		if (st != STORE_OK)
			return die(store_exit(st), "quota get %s: %s", addr, store_status_name(st));
		print_limit("messages", messages, own.messages, set->store.default_quota.messages);
		print_limit("octets", octets, own.octets, set->store.default_quota.octets);
		return EX_OK;
	}
	if (set_messages)
		own.messages = given.messages;
	if (set_octets)
		own.octets = given.octets;
	st = store_quota_set(store, addr, &own);
	if (st == STORE_NOTFOUND)
		return die(EX_NOUSER, "unknown user %s", addr);
	return st == STORE_OK ? EX_OK : die(store_exit(st), "quota set %s: %s", addr, store_status_name(st));
}

/* Line endings: LF and CRLF are accepted and stored as CRLF, unless
 * [smtp] bare_lf = reject, which refuses a bare LF as SMTP does; a bare CR
 * (a CR not followed by LF) is refused whatever the setting, as SMTP
 * refuses it, so what tern stores never depends on the way in. */
static int deliver_read_stdin(const struct tern_settings *set, struct delivery *d)
{
	struct mail_crlf_normaliser norm;
	mail_crlf_normaliser_init(&norm);
	struct buf out;
	buf_init(&out, 0);
	char chunk[65536];
	size_t n;
	bool eof = false;
	int ret = EX_OK;
	while (ret == EX_OK && !eof) {
		buf_reset(&out);
		n = fread(chunk, 1, sizeof(chunk), stdin);
		if (n > 0)
			(void)mail_crlf_normalise(&norm, chunk, n, &out);
		if (n < sizeof(chunk)) {
			if (ferror(stdin)) {
				ret = die(EX_IOERR, "deliver: cannot read the message from stdin: %s",
					  strerror(errno));
				break;
			}
			eof = true;
			(void)mail_crlf_normalise_finish(&norm, &out);
		}
		if (norm.bare_cr > 0) {
			ret = die(EX_DATAERR, "deliver: the message contains a bare CR (a CR not followed by LF); lines must end with LF or CRLF");
		} else if (norm.bare_lf > 0 && set->bare_lf == BARE_LF_REJECT) {
			ret = die(EX_DATAERR, "deliver: the message has a line ending in LF alone and [smtp] bare_lf = reject; send CRLF line endings");
		} else {
			const char *error;
			if (delivery_write(d, out.data, out.len, &error) < 0)
				ret = delivery_too_big(d)
					      ? die(EX_DATAERR, "deliver: message larger than max_message_size (%llu octets)",
						    (unsigned long long)set->max_message_size)
					      : die(EX_TEMPFAIL, "deliver: %s", error);
		}
	}
	buf_deinit(&out);
	return ret;
}

static int cmd_deliver(const struct tern_settings *set, struct store *store, int argc,
		       char **argv)
{
	const char *sender = "";
	char sender_buf[MAIL_ADDRESS_MAX + 1] = "";
	if (argc >= 2 && strcmp(argv[0], "-f") == 0) {
		if (argv[1][0] != '\0' && strcmp(argv[1], "<>") != 0) {
			if (parse_address(argv[1], sender_buf) < 0)
				return EX_USAGE;
			sender = sender_buf;
		}
		argc -= 2;
		argv += 2;
	}
	if (argc != 1) {
		usage(stderr);
		return EX_USAGE;
	}
	char addr[MAIL_ADDRESS_MAX + 1];
	if (parse_address(argv[0], addr) < 0)
		return EX_USAGE;
	/* The address may be an alias: every user it reaches gets the
	 * message, or (as SMTP's one reply) nobody when one is over quota. */
	struct store_resolved *r = xcalloc(1, sizeof(*r));
	enum store_status st = store_resolve(store, addr, r);
	if (st == STORE_NOTFOUND) {
		free(r);
		return die(EX_NOUSER, "deliver: unknown user %s", addr);
	}
	if (st != STORE_OK) {
		free(r);
		return die(store_exit(st), "deliver to %s: %s", addr, store_status_name(st));
	}
	/* Remote targets of an alias go to the outbound queue (which a
	 * running server delivers); the local ones are stored at once. */
	struct delivery_settings dset = { .data_dir = set->data_dir,
					  .max_message_size = set->max_message_size,
					  .quota_all_or_nothing = true,
					  .queue_owner = set->queue_node_id };
	struct delivery *d = delivery_create(&dset, sender);
	for (unsigned int i = 0; i < r->count; i++)
		delivery_add_rcpt_seen(d, r->users[i], &r->seen[i]);
	for (unsigned int i = 0; i < r->remote_count; i++)
		delivery_add_remote(d, r->remote[i]);
	free(r);
	int ret = deliver_read_stdin(set, d);
	if (ret != EX_OK) {
		delivery_destroy(&d);
		return ret;
	}
	delivery_run(d, store);
	st = delivery_status(d);
	delivery_destroy(&d);
	if (st == STORE_NOTFOUND)
		return die(EX_NOUSER, "deliver: unknown user %s", addr);
	if (st == STORE_OVERQUOTA)
		return die(EX_TEMPFAIL, "deliver to %s: mailbox full (over quota)", addr);
	if (st != STORE_OK)
		return die(store_exit(st), "deliver to %s: %s", addr, store_status_name(st));
	return EX_OK;
}

static int parse_uint_arg(const char *opt, const char *v, unsigned int *out)
{
	char *end;
	unsigned long n = strtoul(v, &end, 10);
	if (*v < '0' || *v > '9' || *end != '\0' || n > 1000000000UL) {
		fprintf(stderr, "tern: repair: %s needs a number, got \"%s\"\n", opt, v);
		return -1;
	}
	*out = (unsigned int)n;
	return 0;
}

/* Progress of a repair by token range: on a terminal, one line rewritten
 * in place; otherwise a line every 10 s. The token reached is what
 * --from takes to resume. */
struct repair_progress {
	const struct store_repair_options *opts;
	uint64_t start_ms, last_ms;
	bool tty;
};

static double seconds_since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static void repair_progress(void *ctx, const struct store_repair_report *r)
{
	struct repair_progress *p = ctx;
	int64_t reached = __atomic_load_n(&r->token_reached, __ATOMIC_RELAXED);
	bool done = reached == INT64_MAX;
	uint64_t now = clock_monotonic_ms();
	if (!p->tty && !done && now - p->last_ms < 10000)
		return;
	p->last_ms = now;
	struct store_repair_progress pr;
	store_repair_progress(p->opts, r, (double)(now - p->start_ms) / 1000, &pr);
	fprintf(stderr, "%stoken reached %lld (%.1f%% of the range), %llu rows scanned, %.0f rows/s,"
		" %.0f s left%s", p->tty ? "\r" : "", (long long)reached, pr.covered * 100,
		(unsigned long long)pr.rows, pr.rows_per_second,
		pr.seconds_left > 0 ? pr.seconds_left : 0.0, p->tty && !done ? "" : "\n");
}

static int parse_token_arg(const char *v, int64_t *out)
{
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (*v == '\0' || *end != '\0' || errno != 0) {
		fprintf(stderr, "tern: repair: --from needs a token (a signed 64-bit number), got \"%s\"\n",
			v);
		return -1;
	}
	*out = (int64_t)n;
	return 0;
}

static int cmd_repair(struct store *store, int argc, char **argv)
{
	struct store_repair_options opts = { .per_second = 0, .min_age_secs = 3600,
					     .check = true, .sweep = true };
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--dry-run") == 0)
			opts.dry_run = true;
		else if (strcmp(argv[i], "--no-sweep") == 0)
			opts.sweep = false;
		else if (strcmp(argv[i], "--sweep-only") == 0)
			opts.check = false;
		else if (strcmp(argv[i], "--per-second") == 0 && i + 1 < argc) {
			if (parse_uint_arg("--per-second", argv[++i], &opts.per_second) < 0)
				return EX_USAGE;
		} else if (strcmp(argv[i], "--min-age") == 0 && i + 1 < argc) {
			if (parse_uint_arg("--min-age", argv[++i], &opts.min_age_secs) < 0)
				return EX_USAGE;
		} else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) {
			if (parse_token_arg(argv[++i], &opts.from_token) < 0)
				return EX_USAGE;
			opts.has_from = true;
		} else {
			usage(stderr);
			return EX_USAGE;
		}
	}
	struct repair_progress progress = { .opts = &opts, .start_ms = clock_monotonic_ms(),
					    .tty = isatty(STDERR_FILENO) };
	progress.last_ms = progress.start_ms;
	opts.progress = repair_progress;
	opts.progress_ctx = &progress;
	struct store_repair_report r;
	enum store_status st = store_repair(store, &opts, &r);
	printf("scanned: %llu references, %llu listing rows, %llu bodies\n"
	       "%s: %llu re-listed, %llu interrupted deletions finished, %llu unlisted (body lost), "
	       "%llu unreferenced bodies swept\n"
	       "skipped (could not confirm): %llu\n"
	       "listed in a mailbox no user has (left alone): %llu\n",
	       (unsigned long long)r.refs_scanned, (unsigned long long)r.listing_scanned,
	       (unsigned long long)r.bodies_scanned, opts.dry_run ? "would fix" : "fixed",
	       (unsigned long long)r.relisted, (unsigned long long)r.deletes_finished,
	       (unsigned long long)r.unlisted, (unsigned long long)r.swept,
	       (unsigned long long)r.skipped, (unsigned long long)r.orphaned);
	if (r.by_token)
		printf("token reached: %lld%s\n", (long long)r.token_reached,
		       r.token_reached == INT64_MAX ? " (the whole ring)" : "");
	if (st != STORE_OK && r.by_token && r.token_reached != INT64_MAX)
		return die(store_exit(st), "repair stopped: %s (resume with --from %lld)",
			   store_status_name(st), (long long)r.token_reached);
	if (st != STORE_OK)
		return die(store_exit(st), "repair stopped: %s", store_status_name(st));
	return EX_OK;
}

/* Prints each line of a list of problems, after prefix. */
static void print_problems(const char *text, const char *prefix)
{
	const char *p = text;
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		fprintf(stderr, "%s%.*s\n", prefix, (int)n, p);
		p += n + (nl != NULL);
	}
}

/* Cassandra only: connects, and says whether an acknowledged write
 * survives one node crash (the line serve logs at start). SQLite is not
 * opened: opening it would create the database. 0, or -1 with the
 * problem appended. */
static int check_config_durability(const struct tern_settings *set, struct buf *problems,
				   struct buf *line)
{
	if (strcmp(set->store.backend, "cassandra") != 0)
		return 0;
	/* The store's own start and stop lines would repeat what is printed
	 * here: only its errors are logged. */
	log_set_level(LOG_ERROR);
	const char *error;
	struct store *store = store_open(&set->store, &error);
	if (store != NULL) {
		buf_append_str(line, "store: cassandra: durable: ");
		store_durability_check(store, line);
		store_close(&store);
	} else {
		buf_printf(problems, "%s: cannot open the cassandra store: %s", set->path, error);
	}
	log_set_level((enum log_level)set->log_level);
	return store != NULL ? 0 : -1;
}

/* `tern check-config`: every problem of the file, then what serve would
 * check before binding; nothing is bound or started, and only a Cassandra
 * store is opened (to read its durability settings). */
static int cmd_check_config(const char *config)
{
	char *errors = NULL;
	struct tern_settings *set = settings_read(config, &errors);
	if (set == NULL) {
		print_problems(errors, "");
		free(errors);
		return EX_CONFIG;
	}
	struct buf problems;
	buf_init(&problems, 0);
	if (errors != NULL)
		buf_append_str(&problems, errors);
	free(errors);
	size_t before = problems.len;
	struct buf more;
	buf_init(&more, 0);
	serve_preflight(set, &more);
	if (more.len > 0) {
		if (before > 0)
			buf_append_c(&problems, '\n');
		buf_append(&problems, more.data, more.len);
	}
	buf_deinit(&more);
	struct buf durable;
	buf_init(&durable, 0);
	if (problems.len == 0)
		check_config_durability(set, &problems, &durable);
	int ret = EX_OK;
	if (problems.len > 0) {
		print_problems(problems.data, "");
		ret = EX_CONFIG;
	} else {
		struct buf what;
		buf_init(&what, 0);
		serve_describe(set, &what);
		printf("%s: ok\n%s\n", config, what.data);
		if (durable.len > 0)
			printf("%s\n", durable.data);
		buf_deinit(&what);
	}
	buf_deinit(&durable);
	buf_deinit(&problems);
	settings_free(&set);
	return ret;
}

/* Progress of an import on a terminal: one line on stderr, redrawn in
 * place at most every 200 ms. */
struct import_progress {
	const char *address;
	bool tty;
	struct timespec start, last;
};

static void import_progress_draw(const struct import_report *r, void *context)
{
	struct import_progress *p = context;
	uint64_t done = r->imported + r->skipped;
	if (!p->tty || (seconds_since(&p->last) < 0.2 && done < r->messages))
		return;
	clock_gettime(CLOCK_MONOTONIC, &p->last);
	double secs = seconds_since(&p->start);
	double rate = secs > 0 ? (double)done / secs : 0;
	double octets_rate = secs > 0 ? (double)r->imported_octets / secs : 0;
	double left = rate > 0 ? (double)(r->messages - done) / rate : 0;
	fprintf(stderr, "\r\033[K%s: %llu/%llu messages, %.1f/%.1f MiB, %.0f msg/s, %.1f MiB/s, %d:%02d left",
		p->address, (unsigned long long)done, (unsigned long long)r->messages,
		(double)r->imported_octets / 1048576.0, (double)r->octets / 1048576.0, rate,
		octets_rate / 1048576.0, (int)left / 60, (int)left % 60);
	fflush(stderr);
}

/* One mailbox: the summary line on stdout, the error on stderr. */
static int import_one(struct store *store, const char *address_arg, const char *format_arg,
		      const char *path, enum import_uidl uidl)
{
	char addr[MAIL_ADDRESS_MAX + 1];
	enum import_format format;
	if (parse_address(address_arg, addr) < 0)
		return EX_USAGE;
	if (import_format_parse(format_arg, &format) < 0)
		return die(EX_USAGE, "import: unknown format \"%s\" (maildir or mbox)", format_arg);
	struct import_progress p = { .address = addr, .tty = isatty(STDERR_FILENO) == 1 };
	clock_gettime(CLOCK_MONOTONIC, &p.start);
	struct import_report r;
	char *error = NULL;
	int ret = import_mailbox(store, addr, format, path, uidl, &r, import_progress_draw, &p, &error);
	if (p.tty && r.imported + r.skipped > 0)
		fputs("\r\033[K", stderr);
	double secs = seconds_since(&p.start);
	if (ret < 0) {
		die(EX_DATAERR, "import %s from %s: %s", addr, path, error);
		free(error);
		return EX_DATAERR;
	}
	printf("%s: imported %llu messages (%llu octets), skipped %llu already there, of %llu in %s;"
	       " UIDLs: %s%s; %.1f s\n",
	       addr, (unsigned long long)r.imported, (unsigned long long)r.imported_octets,
	       (unsigned long long)r.skipped, (unsigned long long)r.messages, path,
	       import_uidl_name(r.uidl),
	       r.fresh_uidls > 0 && r.uidl != IMPORT_UIDL_NONE ? " (some new: no legacy UIDL)" : "",
	       secs);
	fflush(stdout);
	return EX_OK;
}

static int import_batch(struct store *store, const char *file, enum import_uidl uidl)
{
	FILE *f = fopen(file, "r");
	if (f == NULL)
		return die(EX_NOINPUT, "import: cannot open %s: %s", file, strerror(errno));
	char line[8192];
	unsigned int lineno = 0, failed = 0, done = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		char *words[6];
		int n = 0;
		for (char *c = line; *c != '\0' && n < 6;) {
			while (*c == ' ' || *c == '\t' || *c == '\r' || *c == '\n')
				*c++ = '\0';
			if (*c == '\0')
				break;
			words[n++] = c;
			while (*c != '\0' && *c != ' ' && *c != '\t' && *c != '\r' && *c != '\n')
				c++;
		}
		if (n == 0 || words[0][0] == '#')
			continue;
		enum import_uidl line_uidl = uidl;
		if (n == 5 && strcmp(words[3], "--uidl") == 0 &&
		    import_uidl_parse(words[4], &line_uidl) == 0)
			n = 3;
		if (n != 3) {
			die(EX_DATAERR, "import: %s:%u: expected \"ADDRESS FORMAT PATH [--uidl MODE]\"",
			    file, lineno);
			failed++;
			continue;
		}
		if (import_one(store, words[0], words[1], words[2], line_uidl) != EX_OK)
			failed++;
		else
			done++;
	}
	fclose(f);
	printf("batch %s: %u mailboxes imported, %u failed\n", file, done, failed);
	return failed > 0 ? EX_DATAERR : EX_OK;
}

static void print_time(int64_t us)
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	char text[32];
	gmtime_r(&t, &tm);
	strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fputs(text, stdout);
}

static const char *queue_state_name(enum store_queue_state st)
{
	switch (st) {
	case STORE_QUEUE_PENDING: return "pending";
	case STORE_QUEUE_SENT: return "sent";
	case STORE_QUEUE_FAILED: return "failed";
	}
	return "?";
}

/* One line per message: ID OWNER QUEUED NEXT-ATTEMPT ATTEMPTS SIZE <SENDER>,
 * then one indented line per recipient with its state and last reply. */
static int queue_list(struct store *store)
{
	struct store_queue_entry *entries = NULL;
	unsigned int count = 0;
	enum store_status st = store_queue_scan(store, NULL, INT64_MAX, 100000, &entries, &count);
	if (st != STORE_OK)
		return die(store_exit(st), "queue list: %s", store_status_name(st));
	for (unsigned int i = 0; i < count; i++) {
		const struct store_queue_entry *e = &entries[i];
		char id[UUID_STR_LEN + 1];
		uuid_format(&e->id, id);
		printf("%s %s ", id, e->owner);
		print_time(e->queued_us);
		putchar(' ');
		print_time(e->next_attempt_us);
		printf(" attempts=%u size=%llu <%s>\n", e->attempts, (unsigned long long)e->size, e->sender);
		for (unsigned int k = 0; k < e->rcpt_count; k++)
			printf("  %s %s%s%s\n", e->rcpts[k].address, queue_state_name(e->rcpts[k].state),
			       e->rcpts[k].diagnostic[0] != '\0' ? " " : "", e->rcpts[k].diagnostic);
	}
	printf("%u message%s queued\n", count, count == 1 ? "" : "s");
	store_queue_entries_free(&entries, count);
	return EX_OK;
}

static int cmd_queue(struct store *store, int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "list") == 0)
		return queue_list(store);
	if (argc == 1 && strcmp(argv[0], "flush") == 0) {
		unsigned int n = 0;
		enum store_status st = store_queue_flush(store, &n);
		if (st != STORE_OK)
			return die(store_exit(st), "queue flush: %s", store_status_name(st));
		printf("%u message%s due now (a running server sends them at its next scan of the queue)\n",
		       n, n == 1 ? "" : "s");
		return EX_OK;
	}
	if (argc == 2 && strcmp(argv[0], "del") == 0) {
		struct uuid id;
		if (uuid_parse(argv[1], &id) < 0)
			return die(EX_DATAERR, "queue del: \"%.64s\" is not a queue id (see tern queue list)", argv[1]);
		enum store_status st = store_queue_del(store, &id);
		if (st == STORE_NOTFOUND)
			return die(EX_NOUSER, "queue del: no queued message %s", argv[1]);
		return st == STORE_OK ? EX_OK : die(store_exit(st), "queue del: %s", store_status_name(st));
	}
	usage(stderr);
	return EX_USAGE;
}

static int cmd_dkim(const struct tern_settings *set, int argc, char **argv)
{
	if (argc != 1 || strcmp(argv[0], "record") != 0) {
		usage(stderr);
		return EX_USAGE;
	}
	if (set->dkim_domain == NULL)
		return die(EX_CONFIG, "dkim record: %s has no [dkim] section", set->path);
	const char *error = NULL;
	struct dkim_key *key = outbound_load_dkim(set, &error);
	if (key == NULL)
		return die(EX_CONFIG, "dkim record: %s", error);
	struct buf rec;
	buf_init(&rec, 0);
	int ret = dkim_dns_record(key, &rec, &error);
	if (ret == 0)
		printf("%s._domainkey.%s. IN TXT \"%s\"\n", set->dkim_selector, set->dkim_domain, rec.data);
	buf_deinit(&rec);
	dkim_key_free(&key);
	return ret == 0 ? EX_OK : die(EX_SOFTWARE, "dkim record: %s", error);
}

static int cmd_import(struct store *store, int argc, char **argv)
{
	enum import_uidl uidl = IMPORT_UIDL_AUTO;
	const char *batch = NULL, *pos[3];
	int npos = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--uidl") == 0 && i + 1 < argc) {
			if (import_uidl_parse(argv[++i], &uidl) < 0)
				return die(EX_USAGE, "import: --uidl is auto, dovecot, courier, x-uidl or none");
		} else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
			batch = argv[++i];
		} else if (argv[i][0] == '-' || npos == 3) {
			usage(stderr);
			return EX_USAGE;
		} else {
			pos[npos++] = argv[i];
		}
	}
	if (batch != NULL && npos == 0)
		return import_batch(store, batch, uidl);
	if (batch != NULL || npos != 3) {
		usage(stderr);
		return EX_USAGE;
	}
	return import_one(store, pos[0], pos[1], pos[2], uidl);
}

static int cmd_export(struct store *store, int argc, char **argv)
{
	char addr[MAIL_ADDRESS_MAX + 1];
	if (argc != 3) {
		usage(stderr);
		return EX_USAGE;
	}
	if (parse_address(argv[0], addr) < 0)
		return EX_USAGE;
	if (strcmp(argv[1], "maildir") != 0)
		return die(EX_USAGE, "export: the format is maildir");
	struct export_report r;
	char *error = NULL;
	if (export_maildir(store, addr, argv[2], &r, &error) < 0) {
		die(EX_CANTCREAT, "export %s to %s: %s", addr, argv[2], error);
		free(error);
		return EX_CANTCREAT;
	}
	printf("%s: exported %llu messages (%llu octets) to %s\n", addr,
	       (unsigned long long)r.messages, (unsigned long long)r.octets, argv[2]);
	return EX_OK;
}

int main(int argc, char **argv)
{
	const char *config = getenv("TERN_CONFIG");
	int i = 1;
	while (i < argc && argv[i][0] == '-') {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			config = argv[i + 1];
			i += 2;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return EX_OK;
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("tern %s\n", TERN_VERSION);
			return EX_OK;
		} else {
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return EX_USAGE;
	}
	if (config == NULL)
		config = DEFAULT_CONFIG;
	const char *command = argv[i];
	int rest_argc = argc - i - 1;
	char **rest = argv + i + 1;
	if (strcmp(command, "check-config") == 0) {
		if (rest_argc != 0) {
			usage(stderr);
			return EX_USAGE;
		}
		return cmd_check_config(config);
	}
	if (strcmp(command, "serve") != 0 && strcmp(command, "domain") != 0 &&
	    strcmp(command, "user") != 0 && strcmp(command, "deliver") != 0 &&
	    strcmp(command, "repair") != 0 && strcmp(command, "alias") != 0 &&
	    strcmp(command, "quota") != 0 && strcmp(command, "import") != 0 &&
	    strcmp(command, "export") != 0 && strcmp(command, "queue") != 0 &&
	    strcmp(command, "dkim") != 0) {
		fprintf(stderr, "tern: unknown command \"%s\"\n", command);
		usage(stderr);
		return EX_USAGE;
	}

	char *error = NULL;
	struct tern_settings *set = settings_load(config, &error);
	if (set == NULL) {
		print_problems(error, "tern: ");
		free(error);
		return EX_CONFIG;
	}
	int ret;
	if (strcmp(command, "serve") == 0) {
		if (rest_argc != 0) {
			usage(stderr);
			ret = EX_USAGE;
		} else {
			ret = serve(set);
		}
		settings_free(&set);
		return ret;
	}

	log_set_level(LOG_WARN);
	if (strcmp(command, "dkim") == 0) {
		ret = cmd_dkim(set, rest_argc, rest);
		settings_free(&set);
		return ret;
	}
	/* As root, the administrative commands run as [server] user too, so
	 * that what they create (the database, its journal) stays the
	 * server's. */
	if (serve_drop_privileges(set) < 0) {
		settings_free(&set);
		return EX_OSERR;
	}
	const char *serror;
	struct store *store = store_open(&set->store, &serror);
	if (store == NULL) {
		fprintf(stderr, "tern: cannot open the %s store: %s\n", set->store.backend, serror);
		settings_free(&set);
		return EX_TEMPFAIL;
	}
	if (strcmp(command, "domain") == 0)
		ret = cmd_domain(store, rest_argc, rest);
	else if (strcmp(command, "user") == 0 && rest_argc > 0 && strcmp(rest[0], "expire") == 0)
		ret = cmd_user_expire(set, store, rest_argc - 1, rest + 1);
	else if (strcmp(command, "user") == 0)
		ret = cmd_user(store, rest_argc, rest);
	else if (strcmp(command, "repair") == 0)
		ret = cmd_repair(store, rest_argc, rest);
	else if (strcmp(command, "alias") == 0)
		ret = cmd_alias(store, rest_argc, rest);
	else if (strcmp(command, "quota") == 0)
		ret = cmd_quota(set, store, rest_argc, rest);
	else if (strcmp(command, "import") == 0)
		ret = cmd_import(store, rest_argc, rest);
	else if (strcmp(command, "export") == 0)
		ret = cmd_export(store, rest_argc, rest);
	else if (strcmp(command, "queue") == 0)
		ret = cmd_queue(store, rest_argc, rest);
	else
		ret = cmd_deliver(set, store, rest_argc, rest);
	store_close(&store);
	settings_free(&set);
	return ret;
}
