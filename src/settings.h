#ifndef TERN_SETTINGS_H
#define TERN_SETTINGS_H
/*
 * settings: tern's configuration file, checked whole at start-up. Every key
 * of design.md's contract is here with its default, except the keys of a
 * store backend's own section, which the backend declares (store.h); an
 * unknown section or key, or a bad value, is an error naming FILE:LINE.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "net.h"
#include "store.h"

#define SETTINGS_TRUSTED_MAX 64

/* [smtp] bare_lf: what SMTP, LMTP and `tern deliver` do with a line ended
 * by LF alone (a bare CR is refused either way). */
enum bare_lf_policy {
	BARE_LF_NORMALIZE = 0, /* the LF ends the line and is stored as CRLF */
	BARE_LF_REJECT,        /* the message is refused (550 5.6.0, EX_DATAERR) */
};

enum plaintext_policy {
	PLAINTEXT_TLS_OR_LOOPBACK = 0,
	PLAINTEXT_ALWAYS,
	PLAINTEXT_TLS,
};

/* [pop3] expire_days = never (as store.h's STORE_EXPIRE_NEVER). */
#define SETTINGS_EXPIRE_NEVER (-1)

/* [quota]: no limit (as store.h's STORE_NO_LIMIT; a limit is at least 1). */
#define SETTINGS_NO_LIMIT 0

enum log_target {
	LOG_TARGET_STDERR = 0,
	LOG_TARGET_SYSLOG,     /* facility mail */
};

struct tern_settings {
	char *path;
	/* [server] */
	char *hostname;
	char *data_dir;
	char *user, *group;        /* privilege drop after binding; NULL: none */
	unsigned int user_line;    /* where user was set, for errors */
	unsigned int group_line;   /* where group was set */
	uid_t uid;                 /* when user is set: the user's */
	gid_t gid;                 /* when user is set: group's, else the user's primary group */
	enum log_target log_target;
	int log_level;             /* enum log_level */
	char *audit_log;           /* the audit file; NULL: none */
	/* [smtp] */
	char *smtp_listen, *smtp_listen_tls;
	uint64_t max_message_size;
	unsigned int max_recipients;
	unsigned int smtp_idle_timeout_ms;
	enum bare_lf_policy bare_lf;
	/* [lmtp] */
	char *lmtp_listen;
	bool lmtp_starttls;
	unsigned int lmtp_idle_timeout_ms;
	/* [pop3] */
	char *pop3_listen, *pop3_listen_tls;
	unsigned int pop3_idle_timeout_ms;
	int pop3_expire_days;      /* SETTINGS_EXPIRE_NEVER, or days (RFC 2449 EXPIRE) */
	unsigned int pop3_expire_sweep_interval_ms;
	unsigned int pop3_login_delay_ms; /* 0: none (RFC 2449 LOGIN-DELAY) */
	/* [tls] */
	char *tls_cert, *tls_key;
	unsigned int tls_line;  /* where [tls] cert or key was set, for errors */
	int tls_min_version;   /* OpenSSL TLS1_x_VERSION */
	char *tls_ciphers;     /* TLS 1.2 cipher list */
	char *tls_ciphersuites; /* TLS 1.3 suites */
	/* [auth] */
	enum plaintext_policy plaintext;
	char *trusted_networks_text;
	struct net_range trusted_networks[SETTINGS_TRUSTED_MAX];
	unsigned int trusted_network_count;
	unsigned int auth_failure_delay_initial_ms, auth_failure_delay_max_ms;
	unsigned int auth_failure_reset_ms;
	unsigned int auth_cache_ttl_ms;   /* 0: every login runs the full hash */
	uint64_t auth_response_max;
	/* OAUTHBEARER/XOAUTH2: the JWKS file (NULL: not offered), what the
	 * tokens' iss and aud must be (required with it), and the claim that
	 * names the user (NULL: "email") */
	char *oauth_jwks_file, *oauth_issuer, *oauth_audience, *oauth_user_claim;
	/* [limits] */
	unsigned int max_connections, max_connections_per_ip, max_bad_commands;
	unsigned int idle_timeout_preauth_ms, login_timeout_ms, command_timeout_ms;
	uint64_t min_data_rate;
	uint64_t line_max_preauth, line_max;
	uint64_t input_buffer_preauth, input_buffer;
	/* [store], and the backends' own sections (e.g. [cassandra]), whose keys
	 * the backends declare and store.options holds */
	struct store_settings store;
	char *store_backend;
	/* [admin] */
	char *admin_listen;
	char *admin_token_file;    /* required when admin_listen is set */
	bool admin_tls;            /* serve the admin API over TLS with the [tls] pair */
	bool admin_metrics_public; /* GET /metrics without the token */
	unsigned int admin_line;   /* where [admin] listen was set, for errors */
	/* [quota]: the per-user defaults, SETTINGS_NO_LIMIT when none */
	uint64_t quota_messages, quota_octets;
	/* [submission]: SMTP for a mail client (RFC 6409): AUTH before MAIL;
	 * listen offers STARTTLS and AUTH only after it, listen_tls is TLS
	 * from the first octet (RFC 8314) */
	char *submission_listen, *submission_listen_tls;
	/* [queue]: the outbound queue (docs/outbound.md). node_id names this
	 * node's share of it (NULL: [server] hostname); the retry interval
	 * starts at retry_min and doubles up to retry_max, until max_lifetime;
	 * a node whose heartbeat is older than lease is presumed dead and its
	 * queue is taken over; scan_interval is how often the queue is read */
	char *queue_node_id;
	uint64_t queue_retry_min_ms, queue_retry_max_ms, queue_max_lifetime_ms;
	uint64_t queue_lease_ms, queue_scan_interval_ms;
	/* [relay]: delivery to other servers */
	char *relay_smarthost, *relay_resolver, *relay_username, *relay_password_file;
	int relay_tls;             /* enum settings_relay_tls */
	char *relay_ca_file, *relay_trust_anchor_file;
	unsigned int relay_port, relay_concurrency;
	uint64_t relay_connect_timeout_ms, relay_command_timeout_ms;
	/* [dkim]: the signing key for mail from domain (and its subdomains) */
	char *dkim_domain, *dkim_selector, *dkim_key_file;
	unsigned int dkim_line;    /* where [dkim] was, for errors */
	/* where each known key was set (settings_key_line()), for errors */
	unsigned int *key_lines;
};

/* [relay] tls */
enum settings_relay_tls {
	SETTINGS_RELAY_TLS_MAY = 0,  /* STARTTLS when offered, unverified */
	SETTINGS_RELAY_TLS_VERIFY,   /* TLS with a verified certificate, or no delivery */
	SETTINGS_RELAY_TLS_DANE,     /* RFC 7672 where DNSSEC-signed TLSA records exist, else may */
	SETTINGS_RELAY_TLS_NONE,     /* never TLS (a smarthost on loopback) */
};

/* Reads and checks the whole file. Returns NULL with a malloc'ed *error_r
 * when anything is wrong: every problem, one "FILE:LINE: reason" line each
 * ("FILE: reason" when no line is to blame), in file order, separated by
 * '\n' (a single problem is a single line). */
struct tern_settings *settings_load(const char *path, char **error_r);
/* The same, but the settings come back even with problems (then in
 * *errors_r, else *errors_r is NULL), so that `tern check-config` can look
 * further; a value with a problem keeps its default. NULL only when the
 * file cannot be read. */
struct tern_settings *settings_read(const char *path, char **errors_r);
/* Appends one problem line to a list of them ('\n' between lines), as
 * settings_read() makes it and `tern check-config` extends it. */
struct buf;
void settings_add_problem(struct buf *problems, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The line of the file that set [section] key, 0 when none did. */
unsigned int settings_key_line(const struct tern_settings *set, const char *section,
			       const char *key);
/* Appends "FILE:LINE: " (the line that set [section] key) or "FILE: "
 * (none did), then the problem. */
void settings_add_key_problem(struct buf *problems, const struct tern_settings *set,
			      const char *section, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* true when addr is in [auth] trusted_networks. */
bool settings_trusted(const struct tern_settings *set, const struct net_addr *addr);
void settings_free(struct tern_settings **set);

#endif
