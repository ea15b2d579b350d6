#ifndef TERN_RELAY_H
#define TERN_RELAY_H
/*
 * relay: the blocking SMTP client that delivers messages to other servers:
 * the MX hosts of the recipients' domain (RFC 5321 5.1, RFC 7505 null MX)
 * or a smarthost (with AUTH PLAIN), with a STARTTLS policy per relay (none,
 * opportunistic, verified, DANE per RFC 7672 over a DNSSEC-validating
 * resolver). docs/outbound.md describes the rules for users.
 *
 * A relay is made once from its settings and then used from any number of
 * threads at once; relay_deliver() blocks for at most about the timeouts it
 * was given per host tried (a DNS lookup: at most connect_timeout_ms).
 * Nothing is called back but the message's read function, and only from
 * inside relay_deliver(), in the calling thread. The process must ignore
 * SIGPIPE (a TLS write to a peer that left would raise it).
 */
#include <stddef.h>
#include <stdint.h>

struct buf;

enum relay_tls { RELAY_TLS_NONE, RELAY_TLS_MAY, RELAY_TLS_VERIFY, RELAY_TLS_DANE };

struct relay_settings {
	const char *helo_name;            /* EHLO name ([server] hostname) */
	const char *resolver;             /* "host:port" (IPv4/IPv6 literal, "[v6]:port") or NULL: the system's resolv.conf */
	const char *smarthost;            /* "host:port" ("[v6]:port") or NULL: deliver by MX */
	const char *username, *password;  /* smarthost AUTH PLAIN (after TLS unless tls = none); NULL: no AUTH */
	/* MAY (the default, 0 is NONE: set it): STARTTLS when offered,
	 * unverified; VERIFY: TLS required, certificate chain + name checked;
	 * DANE: RFC 7672 when the TLSA records are DNSSEC-validated, else as
	 * MAY. */
	enum relay_tls tls;
	const char *ca_file;              /* VERIFY's trust anchors; NULL: OpenSSL's default paths */
	/* DNSSEC trust anchor for the resolver (a zone file of DS or DNSKEY
	 * records); NULL: the system's (/usr/share/dns/root.key when present);
	 * "": none (nothing validates, DANE never applies). */
	const char *trust_anchor_file;
	unsigned int port;                /* port of MX hosts, 25 when 0; tests set another */
	/* 0 = defaults: 30 s connect, 5 min per command reply, 10 min for the
	 * reply to the data's end. Each bounds one whole reply, however slowly
	 * it comes. */
	unsigned int connect_timeout_ms, command_timeout_ms, data_timeout_ms;
	unsigned int max_mx;              /* MX hosts tried per delivery, default 5 */
};

/* Copies what it needs of set (the strings too). NULL with *error_r (a
 * static string) for a bad setting or an unreadable file. */
struct relay *relay_create(const struct relay_settings *set, const char **error_r);
/* No relay_deliver() may be running. Sets *relay to NULL. */
void relay_destroy(struct relay **relay);
/* Makes every relay_deliver() running now or later end soon: each wait on
 * a connection ends at once, no further host is tried, and the recipients
 * not yet done fail temporarily (4.3.2, "tern is stopping"); a DNS lookup
 * in progress ends too (4.4.3).
 * For shutdown: safe from any thread, at most once useful, never undone. */
void relay_cancel(struct relay *relay);

enum relay_result { RELAY_PENDING = 0, RELAY_OK, RELAY_TEMPFAIL, RELAY_PERMFAIL };

struct relay_rcpt {
	const char *address;
	enum relay_result result;
	int code;            /* the SMTP reply code, 0 for a DNS/connection/local error */
	char status[16];     /* enhanced status code, e.g. "5.1.1" (our own when the server gave none) */
	char reply[512];     /* the remote reply (sanitized: printable, capped) or our diagnostic */
};

struct relay_message {
	const char *sender;                /* "" = null sender */
	struct relay_rcpt *rcpts;          /* all of one domain */
	unsigned int rcpt_count;
	uint64_t size;
	/* Appends at most max octets from offset to out (CRLF line ends, as
	 * stored); appending nothing means the end of the message. 0 ok, -1
	 * error (the message then tempfails). */
	int (*read)(void *ctx, uint64_t offset, size_t max, struct buf *out);
	void *ctx;
};

struct relay_report {
	char mx[256];          /* the host name delivered to (or last tried) */
	char addr[64];         /* its address */
	char tls[160];         /* e.g. "none", "TLSv1.3 TLS_AES_256_GCM_SHA384 unverified", "... verified", "... dane" */
	char error[256];       /* why nothing was delivered, "" when something was */
};

/* Delivers msgs, every recipient in one domain, over one connection: MX
 * records by preference (equal preferences shuffled), the A/AAAA fallback
 * when there is no MX (RFC 5321 5.1), a null MX (RFC 7505: a single MX
 * ".") → every recipient PERMFAIL 556 5.1.10 at once; NXDOMAIN → PERMFAIL
 * 5.1.2; a DNS SERVFAIL/timeout → TEMPFAIL. A connection failure, a 4xx
 * greeting/EHLO → next MX. Per recipient RCPT replies honoured (2xx →
 * accepted; after DATA the final reply applies to the accepted ones); 5xx
 * → PERMFAIL, 4xx → TEMPFAIL. Blocking; safe to call from several threads
 * at once. Sets every rcpt's result (never PENDING on return). Dot-stuffs
 * the message. Uses SIZE when offered (refuse too big at once: 552 →
 * PERMFAIL), sends messages over the same connection with RSET between
 * when needed. Results are reset on entry. A sender or recipient address
 * with a control character or '<' '>' is refused (PERMFAIL 5.1.7 / 5.1.3)
 * without being sent. */
void relay_deliver(struct relay *relay, const char *domain, struct relay_message *msgs,
		   unsigned int count, struct relay_report *report);

#endif
