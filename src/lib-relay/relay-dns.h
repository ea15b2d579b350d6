#ifndef TERN_RELAY_DNS_H
#define TERN_RELAY_DNS_H
/*
 * relay-dns: the lookups of outbound delivery (MX, A/AAAA, TLSA) through
 * libunbound, which validates DNSSEC when it has a trust anchor. One
 * context per relay, shared by every thread and its cache. A lookup is
 * asynchronous underneath (libunbound's own resolver thread), so the
 * calling thread waits with a deadline and on the relay's cancel pipe: no
 * lookup outlasts the relay's timeout or relay_cancel(), whatever a
 * resolver that never answers does.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

enum relay_dns_status {
	RELAY_DNS_OK,        /* records found */
	RELAY_DNS_NODATA,    /* the name exists, no records of the type */
	RELAY_DNS_NXDOMAIN,  /* the name does not exist */
	RELAY_DNS_TEMPFAIL,  /* SERVFAIL, timeout, a bogus (DNSSEC-failed) answer */
};

#define RELAY_DNS_NAME_MAX 256
#define RELAY_DNS_MX_MAX 32
#define RELAY_DNS_ADDR_MAX 16
#define RELAY_DNS_TLSA_MAX 16
#define RELAY_DNS_TLSA_DATA_MAX 1024

struct relay_dns_mx {
	unsigned int pref;
	char host[RELAY_DNS_NAME_MAX];  /* without the trailing dot; "" for "." */
};

struct relay_dns_tlsa {
	uint8_t usage, selector, mtype;
	uint8_t data[RELAY_DNS_TLSA_DATA_MAX];
	size_t data_len;
};

struct relay_dns;

/* resolver: "host:port" ("[v6]:port") or NULL for resolv.conf; trust
 * anchor file: NULL for the system's root key when present, "" for none.
 * cancel_fd: readable once lookups must stop (-1: none); timeout_ms: the
 * longest a lookup waits (then TEMPFAIL). */
struct relay_dns *relay_dns_create(const char *resolver, const char *trust_anchor_file,
				   int cancel_fd, unsigned int timeout_ms, const char **error_r);
void relay_dns_destroy(struct relay_dns **dns);

/* Each fills at most the array's max entries, sets *count_r and *secure_r
 * (the answer, records or denial, was DNSSEC-validated) and writes a reason
 * to error (size RELAY_DNS_ERROR_MAX) for anything but OK. */
#define RELAY_DNS_ERROR_MAX 160
enum relay_dns_status relay_dns_mx(struct relay_dns *dns, const char *domain,
				   struct relay_dns_mx *mx, unsigned int *count_r,
				   bool *secure_r, char *error);
/* A then AAAA records of host, as socket addresses with port; OK when either
 * has records. */
enum relay_dns_status relay_dns_addrs(struct relay_dns *dns, const char *host,
				      unsigned int port, struct sockaddr_storage *addrs,
				      unsigned int *count_r, bool *secure_r, char *error);
/* TLSA records of _PORT._tcp.HOST. */
enum relay_dns_status relay_dns_tlsa(struct relay_dns *dns, const char *host,
				     unsigned int port, struct relay_dns_tlsa *tlsa,
				     unsigned int *count_r, bool *secure_r, char *error);

#endif
