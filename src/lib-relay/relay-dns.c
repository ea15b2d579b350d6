/*
 * relay-dns: MX, address and TLSA lookups for outbound delivery.
 *
 * Invariants: a NOERROR answer without records (NODATA) and NXDOMAIN are
 * told apart, since RFC 5321 5.1 falls back to the address records only in
 * the first case; a bogus answer (DNSSEC validation failed) is a temporary
 * failure, never an insecure answer; names out of the DNS are kept only when
 * they are plain host names (letters, digits, '-', '_'), so no byte a DNS
 * server sends reaches a log or an SMTP command unchecked.
 */
#include "relay-dns.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <unbound.h>

#include "buf.h"
#include "clock.h"

#define SYSTEM_ROOT_KEY "/usr/share/dns/root.key"
#define RR_TYPE_A 1
#define RR_TYPE_MX 15
#define RR_TYPE_AAAA 28
#define RR_TYPE_TLSA 52
#define RR_CLASS_IN 1

struct relay_dns {
	struct ub_ctx *ctx;
	/* Every call into ctx once it resolves asynchronously: a callback
	 * runs only inside ub_process(), so with this lock held no callback
	 * is running, and a cancelled query's state can go. */
	pthread_mutex_t lock;
	int cancel_fd;
	unsigned int timeout_ms;
};

/* One lookup in flight: the callback fills it in under dns->lock. */
struct dns_pending {
	bool done;
	int err;
	struct ub_result *res;
};

/* "host:port" or "[v6]:port" into unbound's "addr@port". */
static int fwd_address(const char *resolver, char *out, size_t outsize)
{
	const char *colon, *host = resolver, *host_end;

	if (resolver[0] == '[') {
		host = resolver + 1;
		host_end = strchr(host, ']');
		if (host_end == NULL || host_end[1] != ':')
			return -1;
		colon = host_end + 1;
	} else {
		colon = strrchr(resolver, ':');
		if (colon == NULL || memchr(resolver, ':', (size_t)(colon - resolver)) != NULL)
			return -1;
		host_end = colon;
	}
	if (host_end == host || colon[1] == '\0' ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1))
		return -1;
	if (snprintf(out, outsize, "%.*s@%s", (int)(host_end - host), host, colon + 1) >=
	    (int)outsize)
		return -1;
	return 0;
}

struct relay_dns *relay_dns_create(const char *resolver, const char *trust_anchor_file,
				   int cancel_fd, unsigned int timeout_ms, const char **error_r)
{
	struct relay_dns *dns = xcalloc(1, sizeof(*dns));
	char fwd[128];
	int ret;

	dns->ctx = ub_ctx_create();
	if (dns->ctx == NULL) {
		free(dns);
		*error_r = "cannot create the resolver context";
		return NULL;
	}
	pthread_mutex_init(&dns->lock, NULL);
	dns->cancel_fd = cancel_fd;
	dns->timeout_ms = timeout_ms != 0 ? timeout_ms : 30000;
	/* Asynchronous lookups in a thread of libunbound's (not a forked
	 * process: tern is threaded). */
	if (ub_ctx_async(dns->ctx, 1) != 0) {
		*error_r = "resolver: cannot resolve in a thread";
		goto fail;
	}
	/* Test resolvers, and a local validating resolver, live on loopback. */
	if (ub_ctx_set_option(dns->ctx, "do-not-query-localhost:", "no") != 0) {
		*error_r = "resolver: do-not-query-localhost refused";
		goto fail;
	}
	/* unbound answers NXDOMAIN itself for the RFC 6761 name test.; a test
	 * network's resolver knows better, and the real root says the same. */
	if (ub_ctx_set_option(dns->ctx, "local-zone:", "test. transparent") != 0) {
		*error_r = "resolver: local-zone refused";
		goto fail;
	}
	if (resolver != NULL) {
		if (fwd_address(resolver, fwd, sizeof(fwd)) < 0) {
			*error_r = "resolver: expected host:port (an IP address)";
			goto fail;
		}
		ret = ub_ctx_set_fwd(dns->ctx, fwd);
	} else {
		ret = ub_ctx_resolvconf(dns->ctx, NULL);
	}
	if (ret != 0) {
		*error_r = ub_strerror(ret);
		goto fail;
	}
	if (trust_anchor_file == NULL)
		trust_anchor_file = access(SYSTEM_ROOT_KEY, R_OK) == 0 ? SYSTEM_ROOT_KEY : "";
	if (trust_anchor_file[0] != '\0' &&
	    (ret = ub_ctx_add_ta_file(dns->ctx, trust_anchor_file)) != 0) {
		*error_r = "cannot read the DNSSEC trust anchor file";
		goto fail;
	}
	return dns;
fail:
	ub_ctx_delete(dns->ctx);
	pthread_mutex_destroy(&dns->lock);
	free(dns);
	return NULL;
}

void relay_dns_destroy(struct relay_dns **_dns)
{
	struct relay_dns *dns = *_dns;

	if (dns == NULL)
		return;
	*_dns = NULL;
	ub_ctx_delete(dns->ctx);
	pthread_mutex_destroy(&dns->lock);
	free(dns);
}

static void lookup_done(void *arg, int err, struct ub_result *res)
{
	struct dns_pending *p = arg;
	p->err = err;
	p->res = res;
	p->done = true;
}

/* ub_resolve() with a deadline and the cancel pipe. Another thread's
 * ub_process() may deliver this thread's answer, so the wait is in slices
 * that look at p.done; the query's state lives on this stack, which is
 * safe because it is only touched under dns->lock and cancelled, under
 * the lock, before this function returns without an answer. */
static int resolve_bounded(struct relay_dns *dns, const char *name, int type,
			   struct ub_result **res_r, bool *timed_out_r)
{
	struct dns_pending p = { false, 0, NULL };
	int id = 0;
	*timed_out_r = false;
	pthread_mutex_lock(&dns->lock);
	int ret = ub_resolve_async(dns->ctx, name, type, RR_CLASS_IN, &p, lookup_done, &id);
	pthread_mutex_unlock(&dns->lock);
	if (ret != 0)
		return ret;
	int64_t deadline = clock_monotonic_ms() + dns->timeout_ms;
	for (;;) {
		pthread_mutex_lock(&dns->lock);
		if (!p.done && ub_poll(dns->ctx))
			ret = ub_process(dns->ctx);
		bool done = p.done;
		pthread_mutex_unlock(&dns->lock);
		if (done)
			break;
		int64_t left = deadline - clock_monotonic_ms();
		bool stop = left <= 0;
		if (!stop) {
			struct pollfd fds[2] = { { ub_fd(dns->ctx), POLLIN, 0 }, { dns->cancel_fd, POLLIN, 0 } };
			int n = poll(fds, dns->cancel_fd >= 0 ? 2 : 1, left < 50 ? (int)left : 50);
			stop = n > 0 && dns->cancel_fd >= 0 && (fds[1].revents & POLLIN) != 0;
		}
		if (stop) {
			pthread_mutex_lock(&dns->lock);
			if (!p.done)
				(void)ub_cancel(dns->ctx, id);
			done = p.done;
			pthread_mutex_unlock(&dns->lock);
			if (done)
				break;
			*timed_out_r = true;
			return UB_NOERROR;
		}
	}
	*res_r = p.res;
	return p.err;
}

static enum relay_dns_status dns_query(struct relay_dns *dns, const char *name, int type,
				       struct ub_result **result_r, bool *secure_r,
				       char *error)
{
	struct ub_result *res = NULL;
	bool timed_out;
	int ret = resolve_bounded(dns, name, type, &res, &timed_out);

	*result_r = NULL;
	*secure_r = false;
	if (timed_out) {
		snprintf(error, RELAY_DNS_ERROR_MAX, "DNS lookup of %s: no answer within %u ms", name,
			 dns->timeout_ms);
		return RELAY_DNS_TEMPFAIL;
	}
	if (ret != 0) {
		snprintf(error, RELAY_DNS_ERROR_MAX, "DNS lookup of %s failed: %s", name,
			 ub_strerror(ret));
		return RELAY_DNS_TEMPFAIL;
	}
	if (res->bogus) {
		snprintf(error, RELAY_DNS_ERROR_MAX, "DNSSEC validation of %s failed", name);
		ub_resolve_free(res);
		return RELAY_DNS_TEMPFAIL;
	}
	*secure_r = res->secure != 0;
	if (res->nxdomain) {
		snprintf(error, RELAY_DNS_ERROR_MAX, "%s does not exist (NXDOMAIN)", name);
		ub_resolve_free(res);
		return RELAY_DNS_NXDOMAIN;
	}
	if (res->rcode != 0) {
		snprintf(error, RELAY_DNS_ERROR_MAX, "DNS lookup of %s failed (rcode %d)", name,
			 res->rcode);
		ub_resolve_free(res);
		*secure_r = false;
		return RELAY_DNS_TEMPFAIL;
	}
	if (!res->havedata) {
		snprintf(error, RELAY_DNS_ERROR_MAX, "%s has no records of type %d", name, type);
		ub_resolve_free(res);
		return RELAY_DNS_NODATA;
	}
	*result_r = res;
	return RELAY_DNS_OK;
}

/* An uncompressed wire-format name (as unbound gives rdata) into text
 * without the trailing dot: its length, or -1 when it is malformed or not a
 * plain host name. "." gives "". */
static int wire_name(const unsigned char *p, size_t len, char *out, size_t outsize)
{
	size_t i = 0, o = 0;

	while (i < len) {
		size_t l = p[i++];

		if (l == 0) {
			out[o] = '\0';
			return (int)o;
		}
		if (l > 63 || i + l > len || o + l + 2 > outsize)
			return -1;
		if (o > 0)
			out[o++] = '.';
		for (size_t j = 0; j < l; j++) {
			unsigned char c = p[i + j];

			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9') || c == '-' || c == '_'))
				return -1;
			out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		}
		i += l;
	}
	return -1;
}

enum relay_dns_status relay_dns_mx(struct relay_dns *dns, const char *domain,
				   struct relay_dns_mx *mx, unsigned int *count_r,
				   bool *secure_r, char *error)
{
	struct ub_result *res;
	enum relay_dns_status st = dns_query(dns, domain, RR_TYPE_MX, &res, secure_r, error);
	unsigned int n = 0;

	*count_r = 0;
	if (st != RELAY_DNS_OK)
		return st;
	for (int i = 0; res->data[i] != NULL && n < RELAY_DNS_MX_MAX; i++) {
		const unsigned char *d = (const unsigned char *)res->data[i];

		if (res->len[i] < 3 ||
		    wire_name(d + 2, (size_t)res->len[i] - 2, mx[n].host, sizeof(mx[n].host)) < 0)
			continue;
		mx[n].pref = (unsigned int)d[0] << 8 | d[1];
		n++;
	}
	ub_resolve_free(res);
	if (n == 0) {
		snprintf(error, RELAY_DNS_ERROR_MAX, "no usable MX record for %s", domain);
		return RELAY_DNS_NODATA;
	}
	*count_r = n;
	return RELAY_DNS_OK;
}

static void add_addr(struct sockaddr_storage *ss, int family, const void *bytes,
		     unsigned int port)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		memcpy(&sin->sin_addr, bytes, 4);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		memcpy(&sin6->sin6_addr, bytes, 16);
	}
}

/* Addresses no mail server can have: unspecified, "this network",
 * multicast, broadcast and reserved. Loopback stays usable (a local relay,
 * the tests). */
static bool addr_usable(int family, const unsigned char *b)
{
	if (family == AF_INET)
		return b[0] != 0 && b[0] < 224;
	if (b[0] == 0xff)
		return false;
	for (int i = 0; i < 16; i++) {
		if (b[i] != 0)
			return true;
	}
	return false;
}

enum relay_dns_status relay_dns_addrs(struct relay_dns *dns, const char *host,
				      unsigned int port, struct sockaddr_storage *addrs,
				      unsigned int *count_r, bool *secure_r, char *error)
{
	static const struct { int type, family; size_t len; } kinds[] = {
		{ RR_TYPE_A, AF_INET, 4 }, { RR_TYPE_AAAA, AF_INET6, 16 },
	};
	enum relay_dns_status st[2];
	unsigned int n = 0;
	bool secure = true, sec;
	char err[RELAY_DNS_ERROR_MAX];

	error[0] = '\0';
	for (size_t k = 0; k < 2; k++) {
		struct ub_result *res;

		st[k] = dns_query(dns, host, kinds[k].type, &res, &sec, err);
		secure = secure && sec;
		if (st[k] != RELAY_DNS_OK) {
			if (error[0] == '\0' || st[k] == RELAY_DNS_TEMPFAIL)
				str_copy(error, err, RELAY_DNS_ERROR_MAX);
			continue;
		}
		for (int i = 0; res->data[i] != NULL && n < RELAY_DNS_ADDR_MAX; i++) {
			const unsigned char *b = (const unsigned char *)res->data[i];

			if ((size_t)res->len[i] == kinds[k].len && addr_usable(kinds[k].family, b))
				add_addr(&addrs[n++], kinds[k].family, b, port);
		}
		ub_resolve_free(res);
	}
	*count_r = n;
	*secure_r = secure;
	if (n > 0)
		return RELAY_DNS_OK;
	if (st[0] == RELAY_DNS_TEMPFAIL || st[1] == RELAY_DNS_TEMPFAIL)
		return RELAY_DNS_TEMPFAIL;
	if (st[0] == RELAY_DNS_OK || st[1] == RELAY_DNS_OK) {
		snprintf(error, RELAY_DNS_ERROR_MAX, "%s has no usable address", host);
		return RELAY_DNS_NODATA;
	}
	return st[0] == RELAY_DNS_NXDOMAIN ? RELAY_DNS_NXDOMAIN : RELAY_DNS_NODATA;
}

enum relay_dns_status relay_dns_tlsa(struct relay_dns *dns, const char *host,
				     unsigned int port, struct relay_dns_tlsa *tlsa,
				     unsigned int *count_r, bool *secure_r, char *error)
{
	char name[RELAY_DNS_NAME_MAX + 16];
	struct ub_result *res;
	enum relay_dns_status st;
	unsigned int n = 0;

	*count_r = 0;
	snprintf(name, sizeof(name), "_%u._tcp.%s", port, host);
	st = dns_query(dns, name, RR_TYPE_TLSA, &res, secure_r, error);
	if (st != RELAY_DNS_OK)
		return st;
	for (int i = 0; res->data[i] != NULL && n < RELAY_DNS_TLSA_MAX; i++) {
		const unsigned char *d = (const unsigned char *)res->data[i];
		size_t len = (size_t)res->len[i];

		if (len < 4 || len - 3 > RELAY_DNS_TLSA_DATA_MAX)
			continue;
		tlsa[n].usage = d[0];
		tlsa[n].selector = d[1];
		tlsa[n].mtype = d[2];
		tlsa[n].data_len = len - 3;
		memcpy(tlsa[n].data, d + 3, len - 3);
		n++;
	}
	ub_resolve_free(res);
	*count_r = n;
	return RELAY_DNS_OK;
}
