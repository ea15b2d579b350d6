#ifndef TERN_SETTINGS_H
#define TERN_SETTINGS_H
/*
 * settings: tern's configuration file, checked whole at start-up. Every key
 * of design.md's contract is here with its default; an unknown section or
 * key, or a bad value, is an error naming FILE:LINE.
 */
#include <stdbool.h>
#include <stdint.h>

#include "store.h"

enum plaintext_policy {
	PLAINTEXT_TLS_OR_LOOPBACK = 0,
	PLAINTEXT_ALWAYS,
	PLAINTEXT_TLS,
};

struct tern_settings {
	char *path;
	/* [server] */
	char *hostname;
	char *data_dir;
	/* [smtp] */
	char *smtp_listen, *smtp_listen_tls;
	uint64_t max_message_size;
	unsigned int max_recipients;
	/* [lmtp] */
	char *lmtp_listen;
	/* [pop3] */
	char *pop3_listen, *pop3_listen_tls;
	/* [tls] */
	char *tls_cert, *tls_key;
	int tls_min_version;   /* OpenSSL TLS1_x_VERSION */
	/* [auth] */
	enum plaintext_policy plaintext;
	/* [store] and [cassandra] */
	struct store_settings store;
	char *store_backend;
	char *cass_contact_points, *cass_local_dc, *cass_keyspace, *cass_replication;
	char *cass_username, *cass_password, *cass_read_cl, *cass_write_cl;
	/* [admin] */
	char *admin_listen;
};

/* Returns NULL with a malloc'ed "FILE:LINE: reason" in *error_r. */
struct tern_settings *settings_load(const char *path, char **error_r);
void settings_free(struct tern_settings **set);

#endif
