/*
 * relay: delivery of one domain's messages to the next hop (its MX hosts,
 * or a smarthost), over one SMTP connection at a time.
 *
 * A delivery walks a list of hosts (MX by preference, equal preferences
 * shuffled; the domain itself without MX; or the smarthost) and, for each,
 * its addresses until one connects. A host fails as a whole (the next one
 * is tried) when it cannot be reached, when its greeting or EHLO is not
 * 2xx, when the TLS policy cannot be met, when AUTH fails, or when the
 * connection breaks or says 421. Anything a host answers within a
 * transaction (MAIL, RCPT, DATA) is final for that delivery.
 *
 * Invariants: a recipient's result is written once, when it is known; a
 * recipient whose message's data was sent is never tried again in the same
 * call, even if the final reply never came (it may have been delivered);
 * after STARTTLS nothing learnt before it (capabilities, buffered input) is
 * used; the password lives only in the relay and in one wiped buffer; once
 * relay_cancel() has run, no wait lasts (the cancel pipe is in every poll)
 * and no further host is tried.
 */
#include "relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base64.h"
#include "buf.h"
#include "log.h"
#include "relay-conn.h"
#include "relay-dns.h"

#define DEFAULT_PORT 25
#define DEFAULT_CONNECT_TIMEOUT_MS (30 * 1000)
#define DEFAULT_COMMAND_TIMEOUT_MS (5 * 60 * 1000)
#define DEFAULT_DATA_TIMEOUT_MS (10 * 60 * 1000)
#define DEFAULT_MAX_MX 5
/* The QUIT reply is a courtesy: never wait long for it. */
#define QUIT_TIMEOUT_MS 2000
/* The message is read in pieces of the stores' own chunk size
 * (STORE_QUEUE_READ_SIZE), at offsets that are multiples of it, so each
 * piece costs one chunk read. */
#define DATA_CHUNK (128 * 1024)
#define COMMAND_MAX 1024

struct relay {
	char *helo_name;
	struct relay_dns *dns;
	char *smarthost;          /* host name or address literal, NULL: MX */
	unsigned int smarthost_port;
	char *username, *password;
	enum relay_tls tls;
	SSL_CTX *ssl_plain;       /* MAY, and DANE without usable TLSA records */
	SSL_CTX *ssl_verify;
	SSL_CTX *ssl_dane;
	unsigned int port;
	unsigned int connect_timeout_ms, command_timeout_ms, data_timeout_ms;
	unsigned int max_mx;
	/* relay_cancel(): a byte written to cancel_pipe[1] keeps [0] readable
	 * for every connection's polls from then on. */
	int cancel_pipe[2];
	atomic_bool cancelled;
};

/* What the next hop gets: a name and whether the name came to us through
 * DNSSEC-validated answers (the MX RRset, or a configured smarthost). */
struct hop {
	char host[RELAY_DNS_NAME_MAX];
	unsigned int port;
	bool secure;
};

/* How the TLS of one connection is to be done. */
enum tls_mode {
	TLS_MODE_NONE,         /* never STARTTLS */
	TLS_MODE_MAY,          /* STARTTLS when offered, unverified */
	TLS_MODE_VERIFY,       /* required, chain and name verified */
	TLS_MODE_DANE,         /* required, authenticated by the TLSA records */
	TLS_MODE_DANE_UNAUTH,  /* required (TLSA records exist), none usable: unverified */
};

struct delivery {
	struct relay *relay;
	struct relay_message *msgs;
	unsigned int count;
	struct relay_report *report;
	struct relay_conn conn;
	/* this connection's capabilities, from the last EHLO */
	bool esmtp, ext_starttls, ext_size, ext_auth_plain;
	uint64_t size_max;
	bool tls_on;
	bool need_rset;
	/* the last host failure, for the recipients still pending at the end */
	int fail_code;
	char fail_status[16];
	char fail_text[512];
};

/* ------------------------------------------------------------------ set-up */

/* "host:port", "[v6]:port" or "host" (port 25) into host and port. */
static int parse_hostport(const char *text, char **host_r, unsigned int *port_r)
{
	const char *host = text, *end, *port = NULL;
	unsigned long p = DEFAULT_PORT;
	char *endp;

	if (text[0] == '[') {
		host = text + 1;
		end = strchr(host, ']');
		if (end == NULL || (end[1] != '\0' && end[1] != ':'))
			return -1;
		if (end[1] == ':')
			port = end + 2;
	} else {
		end = strrchr(text, ':');
		if (end != NULL && memchr(text, ':', (size_t)(end - text)) != NULL)
			return -1;  /* an IPv6 literal needs brackets */
		if (end != NULL)
			port = end + 1;
		else
			end = text + strlen(text);
	}
	if (end == host)
		return -1;
	if (port != NULL) {
		p = strtoul(port, &endp, 10);
		if (*port == '\0' || *endp != '\0' || p == 0 || p > 65535)
			return -1;
	}
	*host_r = xstrndup(host, (size_t)(end - host));
	*port_r = (unsigned int)p;
	return 0;
}

static SSL_CTX *client_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_AUTO_RETRY);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return ctx;
}

static char *dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

struct relay *relay_create(const struct relay_settings *set, const char **error_r)
{
	struct relay *relay = xcalloc(1, sizeof(*relay));

	relay->cancel_pipe[0] = relay->cancel_pipe[1] = -1;
	atomic_init(&relay->cancelled, false);
	if (pipe2(relay->cancel_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		*error_r = "relay: cannot create a pipe";
		goto fail;
	}
	if (set->helo_name == NULL || set->helo_name[0] == '\0' ||
	    strpbrk(set->helo_name, " \t\r\n") != NULL) {
		*error_r = "relay: the EHLO name must be a host name";
		goto fail;
	}
	if (set->tls > RELAY_TLS_DANE) {
		*error_r = "relay: unknown TLS policy";
		goto fail;
	}
	if ((set->username == NULL) != (set->password == NULL) ||
	    (set->username != NULL && set->smarthost == NULL)) {
		*error_r = "relay: AUTH needs a smarthost, a username and a password";
		goto fail;
	}
	relay->helo_name = xstrdup(set->helo_name);
	relay->tls = set->tls;
	relay->username = dup_or_null(set->username);
	relay->password = dup_or_null(set->password);
	relay->port = set->port != 0 ? set->port : DEFAULT_PORT;
	relay->connect_timeout_ms = set->connect_timeout_ms != 0 ? set->connect_timeout_ms
								 : DEFAULT_CONNECT_TIMEOUT_MS;
	relay->command_timeout_ms = set->command_timeout_ms != 0 ? set->command_timeout_ms
								 : DEFAULT_COMMAND_TIMEOUT_MS;
	relay->data_timeout_ms = set->data_timeout_ms != 0 ? set->data_timeout_ms
							   : DEFAULT_DATA_TIMEOUT_MS;
	relay->max_mx = set->max_mx != 0 ? set->max_mx : DEFAULT_MAX_MX;
	if (relay->port > 65535) {
		*error_r = "relay: port out of range";
		goto fail;
	}
	if (set->smarthost != NULL &&
	    parse_hostport(set->smarthost, &relay->smarthost, &relay->smarthost_port) < 0) {
		*error_r = "relay: smarthost must be host:port";
		goto fail;
	}
	relay->dns = relay_dns_create(set->resolver, set->trust_anchor_file, relay->cancel_pipe[0],
				      relay->connect_timeout_ms, error_r);
	if (relay->dns == NULL)
		goto fail;

	relay->ssl_plain = client_ctx();
	relay->ssl_verify = client_ctx();
	relay->ssl_dane = client_ctx();
	if (relay->ssl_plain == NULL || relay->ssl_verify == NULL || relay->ssl_dane == NULL) {
		*error_r = "relay: cannot create the TLS contexts";
		goto fail;
	}
	if (set->tls == RELAY_TLS_VERIFY &&
	    (set->ca_file != NULL
		     ? SSL_CTX_load_verify_locations(relay->ssl_verify, set->ca_file, NULL)
		     : SSL_CTX_set_default_verify_paths(relay->ssl_verify)) != 1) {
		ERR_clear_error();
		*error_r = "relay: cannot load the CA file";
		goto fail;
	}
	if (SSL_CTX_dane_enable(relay->ssl_dane) <= 0) {
		ERR_clear_error();
		*error_r = "relay: OpenSSL refused to enable DANE";
		goto fail;
	}
	/* RFC 7672 3.1.1: a DANE-EE(3) record binds the key, whatever the
	 * certificate's names and dates say. */
	SSL_CTX_dane_set_flags(relay->ssl_dane, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
	return relay;
fail:
	relay_destroy(&relay);
	return NULL;
}

void relay_destroy(struct relay **_relay)
{
	struct relay *relay = *_relay;

	if (relay == NULL)
		return;
	*_relay = NULL;
	for (int i = 0; i < 2; i++)
		if (relay->cancel_pipe[i] >= 0)
			close(relay->cancel_pipe[i]);
	relay_dns_destroy(&relay->dns);
	SSL_CTX_free(relay->ssl_plain);
	SSL_CTX_free(relay->ssl_verify);
	SSL_CTX_free(relay->ssl_dane);
	if (relay->password != NULL) {
		explicit_bzero(relay->password, strlen(relay->password));
		free(relay->password);
	}
	free(relay->username);
	free(relay->smarthost);
	free(relay->helo_name);
	free(relay);
}

void relay_cancel(struct relay *relay)
{
	if (atomic_exchange(&relay->cancelled, true))
		return;
	ssize_t n;
	do
		n = write(relay->cancel_pipe[1], "x", 1);
	while (n < 0 && errno == EINTR);
}

static bool cancelled(const struct relay *relay)
{
	return atomic_load(&relay->cancelled);
}

/* --------------------------------------------------------------- results */

static void rcpt_set(struct relay_rcpt *r, enum relay_result result, int code,
		     const char *status, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void rcpt_set(struct relay_rcpt *r, enum relay_result result, int code,
		     const char *status, const char *fmt, ...)
{
	va_list ap;

	r->result = result;
	r->code = code;
	str_copy(r->status, status, sizeof(r->status));
	va_start(ap, fmt);
	vsnprintf(r->reply, sizeof(r->reply), fmt, ap);
	va_end(ap);
}

static enum relay_result reply_result(int code)
{
	return code >= 200 && code < 300 ? RELAY_OK
	       : code >= 500		 ? RELAY_PERMFAIL
					 : RELAY_TEMPFAIL;
}

/* The recipient's result from a server reply, with the reply's own
 * enhanced status or ours. */
static void rcpt_from_reply(struct relay_rcpt *r, const struct relay_reply *reply)
{
	r->result = reply_result(reply->code);
	r->code = reply->code;
	if (!relay_reply_status(reply, r->status, sizeof(r->status)))
		snprintf(r->status, sizeof(r->status), "%d.0.0", reply->code / 100);
	relay_reply_summary(reply, r->reply, sizeof(r->reply));
}

/* Every recipient still pending gets the same result. */
static void fail_pending(struct relay_message *msgs, unsigned int count,
			 enum relay_result result, int code, const char *status, const char *text)
{
	for (unsigned int m = 0; m < count; m++) {
		for (unsigned int i = 0; i < msgs[m].rcpt_count; i++) {
			if (msgs[m].rcpts[i].result == RELAY_PENDING)
				rcpt_set(&msgs[m].rcpts[i], result, code, status, "%s", text);
		}
	}
}

static bool any_pending(const struct relay_message *msgs, unsigned int count)
{
	for (unsigned int m = 0; m < count; m++) {
		for (unsigned int i = 0; i < msgs[m].rcpt_count; i++) {
			if (msgs[m].rcpts[i].result == RELAY_PENDING)
				return true;
		}
	}
	return false;
}

/* Records why a host failed: from a reply (code and text) or from the
 * connection (code 0). Returns -1 for the caller to return. */
static int host_fail(struct delivery *d, const struct relay_reply *reply, const char *status,
		     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int host_fail(struct delivery *d, const struct relay_reply *reply, const char *status,
		     const char *fmt, ...)
{
	char text[sizeof(d->fail_text)], summary[sizeof(d->fail_text)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	d->fail_code = 0;
	str_copy(d->fail_status, status, sizeof(d->fail_status));
	if (reply != NULL) {
		d->fail_code = reply->code;
		struct buf b;

		relay_reply_summary(reply, summary, sizeof(summary));
		buf_init(&b, sizeof(d->fail_text) - 1);
		(void)buf_printf(&b, "%s: ", text);
		(void)buf_append_str(&b, summary);
		str_copy(d->fail_text, b.data, sizeof(d->fail_text));
		buf_deinit(&b);
	} else {
		str_copy(d->fail_text, text, sizeof(d->fail_text));
	}
	log_debug("relay host failed mx=%s addr=%s reason=%s", d->report->mx, d->report->addr,
		  d->fail_text);
	return -1;
}

/* ------------------------------------------------------------ the dialogue */

static const struct relay_reply *command(struct delivery *d, unsigned int timeout_ms,
					 const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Sends one command line and reads its reply; NULL when the connection
 * failed (conn.error says why). A 421 is returned like any reply. */
static const struct relay_reply *command(struct delivery *d, unsigned int timeout_ms,
					 const char *fmt, ...)
{
	char line[COMMAND_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2) {
		snprintf(d->conn.error, sizeof(d->conn.error), "command too long");
		return NULL;
	}
	memcpy(line + n, "\r\n", 2);
	if (relay_conn_write(&d->conn, line, (size_t)n + 2, d->relay->command_timeout_ms) < 0)
		return NULL;
	return relay_conn_reply(&d->conn, timeout_ms);
}

static bool word_eq(const char *p, size_t len, const char *word)
{
	size_t wlen = strlen(word);

	return len >= wlen && strncasecmp(p, word, wlen) == 0 &&
	       (len == wlen || p[wlen] == ' ' || p[wlen] == '=');
}

/* The EHLO reply's lines after the first are keyword [params]. */
static void parse_capabilities(struct delivery *d, const struct relay_reply *reply)
{
	const char *l;
	size_t len;

	d->ext_starttls = d->ext_size = d->ext_auth_plain = false;
	d->size_max = 0;
	for (unsigned int i = 1; (l = relay_reply_line(reply, i, &len)) != NULL; i++) {
		if (word_eq(l, len, "STARTTLS")) {
			d->ext_starttls = true;
		} else if (word_eq(l, len, "SIZE")) {
			d->ext_size = true;
			if (len > 5) {
				char num[24];
				size_t n = len - 5 < sizeof(num) - 1 ? len - 5 : sizeof(num) - 1;

				memcpy(num, l + 5, n);
				num[n] = '\0';
				d->size_max = strtoull(num, NULL, 10);
			}
		} else if (word_eq(l, len, "AUTH")) {
			for (size_t j = 4; j < len;) {
				size_t k = j;

				while (k < len && l[k] != ' ')
					k++;
				if (k - j == 5 && strncasecmp(l + j, "PLAIN", 5) == 0)
					d->ext_auth_plain = true;
				j = k + 1;
			}
		}
	}
}

/* EHLO (HELO when EHLO is refused with 5xx). 0, or -1 (host failed). */
static int hello(struct delivery *d)
{
	unsigned int t = d->relay->command_timeout_ms;
	const struct relay_reply *r = command(d, t, "EHLO %s", d->relay->helo_name);

	if (r == NULL)
		return host_fail(d, NULL, "4.4.2", "EHLO: %s", d->conn.error);
	if (r->code >= 200 && r->code < 300) {
		d->esmtp = true;
		parse_capabilities(d, r);
		return 0;
	}
	if (r->code < 500 || d->tls_on)
		return host_fail(d, r, "4.4.0", "EHLO refused");
	d->esmtp = false;
	d->ext_starttls = d->ext_size = d->ext_auth_plain = false;
	r = command(d, t, "HELO %s", d->relay->helo_name);
	if (r == NULL)
		return host_fail(d, NULL, "4.4.2", "HELO: %s", d->conn.error);
	if (r->code < 200 || r->code >= 300)
		return host_fail(d, r, "4.4.0", "HELO refused");
	return 0;
}

/* The TLS mode of a hop, with its usable TLSA records (DANE). 0, or -1
 * when the TLSA lookup failed: RFC 7672 2.2 makes that host unusable. */
static int tls_mode_for(struct delivery *d, const struct hop *hop, bool addr_secure,
			enum tls_mode *mode_r, struct relay_dns_tlsa *tlsa, unsigned int *tlsa_count_r)
{
	char error[RELAY_DNS_ERROR_MAX];
	bool secure;
	unsigned int n = 0;
	enum relay_dns_status st;

	*tlsa_count_r = 0;
	switch (d->relay->tls) {
	case RELAY_TLS_NONE: *mode_r = TLS_MODE_NONE; return 0;
	case RELAY_TLS_MAY: *mode_r = TLS_MODE_MAY; return 0;
	case RELAY_TLS_VERIFY: *mode_r = TLS_MODE_VERIFY; return 0;
	case RELAY_TLS_DANE: break;
	}
	*mode_r = TLS_MODE_MAY;
	if (!hop->secure || !addr_secure)
		return 0;
	st = relay_dns_tlsa(d->relay->dns, hop->host, hop->port, tlsa, &n, &secure, error);
	if (st == RELAY_DNS_TEMPFAIL)
		return host_fail(d, NULL, "4.7.5", "TLSA lookup: %s", error);
	if (st != RELAY_DNS_OK || !secure)
		return 0;
	*tlsa_count_r = n;
	*mode_r = TLS_MODE_DANE_UNAUTH;
	/* Only DANE-TA(2) and DANE-EE(3) apply to SMTP (RFC 7672 3.1.3). */
	for (unsigned int i = 0; i < n; i++) {
		if ((tlsa[i].usage == 2 || tlsa[i].usage == 3) && tlsa[i].selector <= 1 &&
		    tlsa[i].mtype <= 2)
			*mode_r = TLS_MODE_DANE;
	}
	return 0;
}

static bool is_address_literal(const char *host)
{
	unsigned char b[16];

	return inet_pton(AF_INET, host, b) == 1 || inet_pton(AF_INET6, host, b) == 1;
}

/* STARTTLS per the mode, then EHLO again. 0, or -1 (host failed). */
static int start_tls(struct delivery *d, const struct hop *hop, enum tls_mode mode,
		     const struct relay_dns_tlsa *tlsa, unsigned int tlsa_count)
{
	struct relay *relay = d->relay;
	const struct relay_reply *r;
	const char *how = "unverified";
	SSL_CTX *ctx = mode == TLS_MODE_VERIFY ? relay->ssl_verify
		       : mode == TLS_MODE_DANE ? relay->ssl_dane
					       : relay->ssl_plain;
	SSL *ssl;

	if (mode == TLS_MODE_NONE)
		return 0;
	if (!d->ext_starttls) {
		if (mode == TLS_MODE_MAY)
			return 0;
		return host_fail(d, NULL, "4.7.4", "TLS is required but %s does not offer STARTTLS",
				 hop->host);
	}
	r = command(d, relay->command_timeout_ms, "STARTTLS");
	if (r == NULL)
		return host_fail(d, NULL, "4.4.2", "STARTTLS: %s", d->conn.error);
	if (r->code != 220) {
		if (mode == TLS_MODE_MAY && r->code != 421)
			return 0;
		return host_fail(d, r, "4.7.4", "STARTTLS refused");
	}
	ssl = SSL_new(ctx);
	if (ssl == NULL)
		return host_fail(d, NULL, "4.3.0", "cannot create a TLS session");
	if (!is_address_literal(hop->host))
		(void)SSL_set_tlsext_host_name(ssl, hop->host);
	if (mode == TLS_MODE_VERIFY) {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(ssl, hop->host) != 1) {
			SSL_free(ssl);
			return host_fail(d, NULL, "4.3.0", "cannot set the TLS reference name");
		}
		SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
		how = "verified";
	} else if (mode == TLS_MODE_DANE) {
		int usable = 0;

		if (SSL_dane_enable(ssl, hop->host) <= 0) {
			SSL_free(ssl);
			ERR_clear_error();
			return host_fail(d, NULL, "4.3.0", "cannot enable DANE");
		}
		for (unsigned int i = 0; i < tlsa_count; i++) {
			if (SSL_dane_tlsa_add(ssl, tlsa[i].usage, tlsa[i].selector, tlsa[i].mtype,
					      tlsa[i].data, tlsa[i].data_len) > 0)
				usable++;
		}
		ERR_clear_error();
		if (usable > 0) {
			SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
			how = "dane";
		}
	}
	/* relay_conn_starttls owns ssl from here, even when it fails. */
	if (relay_conn_starttls(&d->conn, ssl, relay->command_timeout_ms) < 0)
		return host_fail(d, NULL, mode == TLS_MODE_MAY ? "4.4.2" : "4.7.5", "%s",
				 d->conn.error);
	d->tls_on = true;
	snprintf(d->report->tls, sizeof(d->report->tls), "%s %s %s", SSL_get_version(ssl),
		 SSL_get_cipher_name(ssl), how);
	return hello(d);
}

static int authenticate(struct delivery *d)
{
	struct relay *relay = d->relay;
	const struct relay_reply *r;
	struct buf plain, encoded;
	int ret = 0;

	if (relay->username == NULL)
		return 0;
	if (!d->tls_on && relay->tls != RELAY_TLS_NONE)
		return host_fail(d, NULL, "4.7.10", "AUTH refused without TLS");
	if (!d->ext_auth_plain)
		return host_fail(d, NULL, "4.7.10", "the smarthost does not offer AUTH PLAIN");
	buf_init(&plain, 0);
	buf_init(&encoded, 0);
	buf_append_c(&plain, '\0');
	buf_append_str(&plain, relay->username);
	buf_append_c(&plain, '\0');
	buf_append_str(&plain, relay->password);
	if (base64_encode(plain.data, plain.len, &encoded) < 0 ||
	    encoded.len > COMMAND_MAX - 16) {
		ret = host_fail(d, NULL, "4.7.10", "AUTH credentials too long");
	} else if ((r = command(d, relay->command_timeout_ms, "AUTH PLAIN %s", encoded.data)) == NULL) {
		ret = host_fail(d, NULL, "4.4.2", "AUTH: %s", d->conn.error);
	} else if (r->code != 235) {
		ret = host_fail(d, r, "4.7.8", "AUTH refused");
	}
	buf_wipe(&plain);
	buf_wipe(&encoded);
	buf_deinit(&plain);
	buf_deinit(&encoded);
	return ret;
}

/* Streams the message, dot-stuffed, and the final dot. 0, -1 connection
 * failed, -2 the message could not be read. */
static int send_data(struct delivery *d, struct relay_message *msg)
{
	struct buf in, out;
	uint64_t offset = 0;
	bool line_start = true;
	char last = '\n';
	int ret = 0;

	buf_init(&in, DATA_CHUNK);
	buf_init(&out, 2 * DATA_CHUNK + 8);
	for (;;) {
		if (msg->size > 0 && offset >= msg->size)
			break;
		buf_reset(&in);
		if (msg->read(msg->ctx, offset, DATA_CHUNK, &in) < 0) {
			ret = -2;
			break;
		}
		if (in.len == 0)
			break;
		offset += in.len;
		buf_reset(&out);
		for (size_t i = 0; i < in.len; i++) {
			if (line_start && in.data[i] == '.')
				buf_append_c(&out, '.');
			buf_append_c(&out, in.data[i]);
			line_start = in.data[i] == '\n';
		}
		last = in.data[in.len - 1];
		if (relay_conn_write(&d->conn, out.data, out.len, d->relay->command_timeout_ms) < 0) {
			ret = -1;
			break;
		}
	}
	if (ret == 0) {
		const char *end = last == '\n' ? ".\r\n" : "\r\n.\r\n";

		if (relay_conn_write(&d->conn, end, strlen(end), d->relay->command_timeout_ms) < 0)
			ret = -1;
	}
	buf_deinit(&in);
	buf_deinit(&out);
	return ret;
}

/* An address goes into a command line between < and >: no control
 * characters (no CR or LF to start a command of its own), no brackets. */
static bool address_ok(const char *a)
{
	for (; *a != '\0'; a++) {
		unsigned char c = (unsigned char)*a;

		if (c < 0x20 || c == 0x7f || c == '<' || c == '>')
			return false;
	}
	return true;
}

/* One message's transaction. 0 when the connection can go on, -1 when the
 * host failed (the recipients not yet decided stay pending). */
static int transaction(struct delivery *d, struct relay_message *msg)
{
	struct relay *relay = d->relay;
	unsigned int t = relay->command_timeout_ms, accepted = 0;
	const struct relay_reply *r;
	bool *acc;
	char size_param[32] = "";
	int ret;

	if (!any_pending(msg, 1))
		return 0;
	if (!address_ok(msg->sender)) {
		fail_pending(msg, 1, RELAY_PERMFAIL, 0, "5.1.7", "the sender address is malformed");
		return 0;
	}
	for (unsigned int i = 0; i < msg->rcpt_count; i++) {
		if (msg->rcpts[i].result == RELAY_PENDING && !address_ok(msg->rcpts[i].address))
			rcpt_set(&msg->rcpts[i], RELAY_PERMFAIL, 0, "5.1.3",
				 "the recipient address is malformed");
	}
	if (!any_pending(msg, 1))
		return 0;
	if (d->ext_size && d->size_max > 0 && msg->size > d->size_max) {
		char text[128];

		snprintf(text, sizeof(text), "552 message of %llu octets over the server's SIZE %llu",
			 (unsigned long long)msg->size, (unsigned long long)d->size_max);
		fail_pending(msg, 1, RELAY_PERMFAIL, 552, "5.3.4", text);
		return 0;
	}
	if (d->need_rset) {
		r = command(d, t, "RSET");
		if (r == NULL)
			return host_fail(d, NULL, "4.4.2", "RSET: %s", d->conn.error);
		if (r->code < 200 || r->code >= 300)
			return host_fail(d, r, "4.4.0", "RSET refused");
		d->need_rset = false;
	}
	if (d->ext_size)
		snprintf(size_param, sizeof(size_param), " SIZE=%llu", (unsigned long long)msg->size);
	r = command(d, t, "MAIL FROM:<%s>%s", msg->sender, size_param);
	if (r == NULL)
		return host_fail(d, NULL, "4.4.2", "MAIL: %s", d->conn.error);
	if (r->code == 421)
		return host_fail(d, r, "4.4.0", "MAIL");
	d->need_rset = true;
	if (r->code < 200 || r->code >= 300) {
		for (unsigned int i = 0; i < msg->rcpt_count; i++) {
			if (msg->rcpts[i].result == RELAY_PENDING)
				rcpt_from_reply(&msg->rcpts[i], r);
		}
		return 0;
	}
	acc = xcalloc(msg->rcpt_count, sizeof(*acc));
	ret = 0;
	for (unsigned int i = 0; i < msg->rcpt_count; i++) {
		struct relay_rcpt *rc = &msg->rcpts[i];

		if (rc->result != RELAY_PENDING)
			continue;
		r = command(d, t, "RCPT TO:<%s>", rc->address);
		if (r == NULL) {
			ret = host_fail(d, NULL, "4.4.2", "RCPT: %s", d->conn.error);
			goto out;
		}
		if (r->code == 421) {
			ret = host_fail(d, r, "4.4.0", "RCPT");
			goto out;
		}
		if (r->code >= 200 && r->code < 300) {
			acc[i] = true;
			accepted++;
		} else {
			rcpt_from_reply(rc, r);
		}
	}
	if (accepted == 0)
		goto out;
	r = command(d, t, "DATA");
	if (r == NULL) {
		ret = host_fail(d, NULL, "4.4.2", "DATA: %s", d->conn.error);
		goto out;
	}
	if (r->code == 421) {
		ret = host_fail(d, r, "4.4.0", "DATA");
		goto out;
	}
	if (r->code != 354) {
		for (unsigned int i = 0; i < msg->rcpt_count; i++) {
			if (!acc[i])
				continue;
			if (r->code >= 400)
				rcpt_from_reply(&msg->rcpts[i], r);
			else
				rcpt_set(&msg->rcpts[i], RELAY_TEMPFAIL, r->code, "4.5.0",
					 "unexpected reply to DATA (%d)", r->code);
		}
		goto out;
	}
	ret = send_data(d, msg);
	if (ret == 0)
		r = relay_conn_reply(&d->conn, relay->data_timeout_ms);
	for (unsigned int i = 0; i < msg->rcpt_count; i++) {
		if (!acc[i])
			continue;
		if (ret == -2)
			rcpt_set(&msg->rcpts[i], RELAY_TEMPFAIL, 0, "4.3.0",
				 "the message could not be read from the queue");
		else if (ret < 0 || r == NULL)
			rcpt_set(&msg->rcpts[i], RELAY_TEMPFAIL, 0, "4.4.2",
				 "connection lost after the data was sent: %s", d->conn.error);
		else
			rcpt_from_reply(&msg->rcpts[i], r);
	}
	if (ret == -2)
		ret = host_fail(d, NULL, "4.3.0", "the message could not be read from the queue");
	else if (ret < 0 || r == NULL)
		ret = host_fail(d, NULL, "4.4.2", "%s", d->conn.error);
	else if (r->code == 421)
		ret = host_fail(d, r, "4.4.0", "end of data");
	else
		d->need_rset = false;
out:
	free(acc);
	return ret;
}

/* ---------------------------------------------------------- one host */

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t outsize)
{
	const void *a = ss->ss_family == AF_INET6
				? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
				: (const void *)&((const struct sockaddr_in *)ss)->sin_addr;

	if (inet_ntop(ss->ss_family, a, out, (socklen_t)outsize) == NULL)
		str_copy(out, "?", outsize);
}

/* The dialogue with one connected host, every pending message through it.
 * 0, or -1 when the host failed. */
static int host_session(struct delivery *d, const struct hop *hop, enum tls_mode mode,
			const struct relay_dns_tlsa *tlsa, unsigned int tlsa_count)
{
	const struct relay_reply *r;

	d->tls_on = false;
	d->need_rset = false;
	str_copy(d->report->tls, "none", sizeof(d->report->tls));
	r = relay_conn_reply(&d->conn, d->relay->command_timeout_ms);
	if (r == NULL)
		return host_fail(d, NULL, "4.4.2", "greeting: %s", d->conn.error);
	if (r->code < 200 || r->code >= 300)
		return host_fail(d, r, "4.4.0", "greeting");
	if (hello(d) < 0 || start_tls(d, hop, mode, tlsa, tlsa_count) < 0 || authenticate(d) < 0)
		return -1;
	for (unsigned int m = 0; m < d->count; m++) {
		if (transaction(d, &d->msgs[m]) < 0)
			return -1;
	}
	/* QUIT's reply is a courtesy; whatever happens, the work is done. */
	(void)command(d, QUIT_TIMEOUT_MS, "QUIT");
	return 0;
}

/* An IP address literal into a socket address: true, or false when text
 * is not one. */
static bool literal_addr(const char *text, unsigned int port, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		return true;
	}
	if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		return true;
	}
	return false;
}

/* Tries the addresses of a hop until one connects, and runs the session
 * there (a host that answered is not tried again at another address).
 * 0 when the session ran to its end, -1 when the hop failed. */
static int try_hop(struct delivery *d, const struct hop *hop)
{
	struct sockaddr_storage addrs[RELAY_DNS_ADDR_MAX];
	struct relay_dns_tlsa tlsa[RELAY_DNS_TLSA_MAX];
	char error[RELAY_DNS_ERROR_MAX];
	unsigned int n = 1, tlsa_count;
	enum relay_dns_status st;
	enum tls_mode mode;
	bool secure = true;
	int ret;

	str_copy(d->report->mx, hop->host, sizeof(d->report->mx));
	d->report->addr[0] = '\0';
	/* An address literal has no TLSA records of its own to look up. */
	if (literal_addr(hop->host, hop->port, &addrs[0])) {
		secure = false;
	} else {
		st = relay_dns_addrs(d->relay->dns, hop->host, hop->port, addrs, &n, &secure, error);
		if (st != RELAY_DNS_OK)
			return host_fail(d, NULL, st == RELAY_DNS_TEMPFAIL ? "4.4.3" : "4.4.4", "%s",
					 error);
	}
	if (tls_mode_for(d, hop, secure, &mode, tlsa, &tlsa_count) < 0)
		return -1;
	for (unsigned int i = 0; i < n; i++) {
		addr_text(&addrs[i], d->report->addr, sizeof(d->report->addr));
		if (cancelled(d->relay))
			return -1;
		if (relay_conn_connect(&d->conn, &addrs[i], d->relay->connect_timeout_ms,
				       d->relay->cancel_pipe[0]) < 0) {
			(void)host_fail(d, NULL, "4.4.1", "%s port %u: %s", d->report->addr,
					hop->port, d->conn.error);
			relay_conn_close(&d->conn);
			continue;
		}
		ret = host_session(d, hop, mode, tlsa, tlsa_count);
		relay_conn_close(&d->conn);
		return ret;
	}
	return -1;
}

/* --------------------------------------------------------- the next hops */

static int mx_cmp(const void *a, const void *b)
{
	const struct relay_dns_mx *x = a, *y = b;

	return x->pref < y->pref ? -1 : x->pref > y->pref;
}

/* Orders MX records by preference, each run of equal preferences shuffled
 * (RFC 5321 5.1), and drops "." records among others. Returns the count. */
static unsigned int mx_order(struct relay_dns_mx *mx, unsigned int n)
{
	unsigned int out = 0;

	for (unsigned int i = 0; i < n; i++) {
		if (mx[i].host[0] != '\0')
			mx[out++] = mx[i];
	}
	qsort(mx, out, sizeof(*mx), mx_cmp);
	for (unsigned int start = 0; start < out;) {
		unsigned int end = start;

		while (end < out && mx[end].pref == mx[start].pref)
			end++;
		for (unsigned int i = end - 1; i > start; i--) {
			unsigned int j = start + arc4random_uniform(i - start + 1);
			struct relay_dns_mx tmp = mx[i];

			mx[i] = mx[j];
			mx[j] = tmp;
		}
		start = end;
	}
	return out;
}

/* The hops of a domain: 1 when *hops_r holds *count_r hops, 0 when every
 * recipient got its result already (null MX, NXDOMAIN, DNS failure). */
static int domain_hops(struct delivery *d, const char *domain, struct hop *hops,
		       unsigned int *count_r)
{
	struct relay *relay = d->relay;
	struct relay_dns_mx mx[RELAY_DNS_MX_MAX];
	char error[RELAY_DNS_ERROR_MAX];
	unsigned int n = 0, count = 0;
	enum relay_dns_status st;
	bool secure;

	if (relay->smarthost != NULL) {
		str_copy(hops[0].host, relay->smarthost, sizeof(hops[0].host));
		hops[0].port = relay->smarthost_port;
		hops[0].secure = true;  /* configured, not learnt from the DNS */
		*count_r = 1;
		return 1;
	}
	st = relay_dns_mx(relay->dns, domain, mx, &n, &secure, error);
	switch (st) {
	case RELAY_DNS_TEMPFAIL:
		fail_pending(d->msgs, d->count, RELAY_TEMPFAIL, 0, "4.4.3", error);
		str_copy(d->report->error, error, sizeof(d->report->error));
		return 0;
	case RELAY_DNS_NXDOMAIN:
		fail_pending(d->msgs, d->count, RELAY_PERMFAIL, 0, "5.1.2", error);
		str_copy(d->report->error, error, sizeof(d->report->error));
		return 0;
	case RELAY_DNS_NODATA:
		/* RFC 5321 5.1: the domain itself is the only MX. */
		str_copy(hops[0].host, domain, sizeof(hops[0].host));
		hops[0].port = relay->port;
		hops[0].secure = secure;
		*count_r = 1;
		return 1;
	case RELAY_DNS_OK:
		break;
	}
	if (n == 1 && mx[0].host[0] == '\0') {
		char text[RELAY_DNS_ERROR_MAX + 32];

		snprintf(text, sizeof(text), "556 %s accepts no mail (null MX)", domain);
		for (unsigned int m = 0; m < d->count; m++) {
			for (unsigned int i = 0; i < d->msgs[m].rcpt_count; i++)
				rcpt_set(&d->msgs[m].rcpts[i], RELAY_PERMFAIL, 556, "5.1.10", "%s", text);
		}
		str_copy(d->report->error, text, sizeof(d->report->error));
		return 0;
	}
	n = mx_order(mx, n);
	for (unsigned int i = 0; i < n && count < relay->max_mx; i++) {
		str_copy(hops[count].host, mx[i].host, sizeof(hops[count].host));
		hops[count].port = relay->port;
		hops[count].secure = secure;
		count++;
	}
	if (count == 0) {
		snprintf(error, sizeof(error), "no usable MX host for %s", domain);
		fail_pending(d->msgs, d->count, RELAY_TEMPFAIL, 0, "4.4.4", error);
		str_copy(d->report->error, error, sizeof(d->report->error));
		return 0;
	}
	*count_r = count;
	return 1;
}

static bool any_delivered(const struct relay_message *msgs, unsigned int count)
{
	for (unsigned int m = 0; m < count; m++) {
		for (unsigned int i = 0; i < msgs[m].rcpt_count; i++) {
			if (msgs[m].rcpts[i].result == RELAY_OK)
				return true;
		}
	}
	return false;
}

void relay_deliver(struct relay *relay, const char *domain, struct relay_message *msgs,
		   unsigned int count, struct relay_report *report)
{
	struct delivery d = { .relay = relay, .msgs = msgs, .count = count, .report = report };
	struct hop hops[RELAY_DNS_MX_MAX];
	unsigned int hop_count = 0;

	d.conn.fd = -1;
	memset(report, 0, sizeof(*report));
	str_copy(report->tls, "none", sizeof(report->tls));
	for (unsigned int m = 0; m < count; m++) {
		for (unsigned int i = 0; i < msgs[m].rcpt_count; i++) {
			msgs[m].rcpts[i].result = RELAY_PENDING;
			msgs[m].rcpts[i].code = 0;
			msgs[m].rcpts[i].status[0] = '\0';
			msgs[m].rcpts[i].reply[0] = '\0';
		}
	}
	if (!any_pending(msgs, count))
		return;
	if (domain_hops(&d, domain, hops, &hop_count) == 0)
		return;
	str_copy(d.fail_status, "4.4.1", sizeof(d.fail_status));
	str_copy(d.fail_text, "no host tried", sizeof(d.fail_text));
	for (unsigned int h = 0; h < hop_count && any_pending(msgs, count) && !cancelled(relay); h++)
		(void)try_hop(&d, &hops[h]);
	if (cancelled(relay) && any_pending(msgs, count)) {
		d.fail_code = 0;
		str_copy(d.fail_status, "4.3.2", sizeof(d.fail_status));
		str_copy(d.fail_text, "delivery interrupted: tern is stopping", sizeof(d.fail_text));
	}
	if (any_pending(msgs, count))
		fail_pending(msgs, count, RELAY_TEMPFAIL, d.fail_code, d.fail_status, d.fail_text);
	/* Every recipient has a reply now: the first says why (a host's
	 * failure, or the server's refusal). */
	if (!any_delivered(msgs, count)) {
		for (unsigned int m = 0; m < count; m++) {
			if (msgs[m].rcpt_count > 0) {
				str_copy(report->error, msgs[m].rcpts[0].reply, sizeof(report->error));
				break;
			}
		}
	}
}
