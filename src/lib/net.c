/*
 * net: address normalisation and CIDR matching (pure functions), the
 * listen-list syntax, and binding a listening socket.
 */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"

static const unsigned char v4mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

void net_addr_from_sockaddr(struct net_addr *addr, const struct sockaddr *sa)
{
	memset(addr, 0, sizeof(*addr));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		addr->family = AF_INET;
		memcpy(addr->bytes, &sin->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		const unsigned char *b = (const unsigned char *)&sin6->sin6_addr;
		if (memcmp(b, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0) {
			addr->family = AF_INET;
			memcpy(addr->bytes, b + 12, 4);
		} else {
			addr->family = AF_INET6;
			memcpy(addr->bytes, b, 16);
		}
	}
}

static unsigned int addr_bits(int family)
{
	return family == AF_INET ? 32 : 128;
}

bool net_addr_equal(const struct net_addr *a, const struct net_addr *b)
{
	return a->family == b->family &&
	       memcmp(a->bytes, b->bytes, addr_bits(a->family) / 8) == 0;
}

void net_addr_prefix(struct net_addr *out, const struct net_addr *in, unsigned int bits)
{
	*out = *in;
	unsigned int total = addr_bits(in->family);
	if (in->family == 0 || bits >= total)
		return;
	unsigned int full = bits / 8, rem = bits % 8;
	if (rem != 0)
		out->bytes[full++] &= (unsigned char)(0xff << (8 - rem));
	memset(out->bytes + full, 0, total / 8 - full);
}

int net_range_parse(const char *text, struct net_range *range_r)
{
	char tmp[64];
	if (str_copy(tmp, text, sizeof(tmp)) >= sizeof(tmp) || tmp[0] == '\0')
		return -1;
	char *slash = strchr(tmp, '/');
	long bits = -1;
	if (slash != NULL) {
		*slash = '\0';
		char *end;
		if (slash[1] < '0' || slash[1] > '9')
			return -1;
		bits = strtol(slash + 1, &end, 10);
		if (*end != '\0')
			return -1;
	}
	memset(range_r, 0, sizeof(*range_r));
	if (inet_pton(AF_INET, tmp, range_r->addr.bytes) == 1) {
		range_r->addr.family = AF_INET;
	} else if (inet_pton(AF_INET6, tmp, range_r->addr.bytes) == 1) {
		range_r->addr.family = AF_INET6;
	} else {
		return -1;
	}
	unsigned int max = addr_bits(range_r->addr.family);
	if (bits > (long)max)
		return -1;
	range_r->bits = bits < 0 ? max : (unsigned int)bits;
	net_addr_prefix(&range_r->addr, &range_r->addr, range_r->bits);
	return 0;
}

bool net_range_match(const struct net_range *range, const struct net_addr *addr)
{
	if (range->addr.family != addr->family || addr->family == 0)
		return false;
	struct net_addr masked;
	net_addr_prefix(&masked, addr, range->bits);
	return net_addr_equal(&masked, &range->addr);
}

int net_range_list_parse(const char *text, struct net_range *ranges_r, size_t max,
			 const char **bad_r)
{
	static char bad[64];
	size_t n = 0;
	const char *p = text;
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		const char *end = p;
		while (*end != '\0' && *end != ',' && *end != ' ' && *end != '\t')
			end++;
		size_t len = (size_t)(end - p);
		char item[64];
		if (len >= sizeof(item) || n >= max) {
			str_copy(bad, p, len < sizeof(bad) ? len + 1 : sizeof(bad));
			*bad_r = bad;
			return -1;
		}
		memcpy(item, p, len);
		item[len] = '\0';
		if (net_range_parse(item, &ranges_r[n]) < 0) {
			str_copy(bad, item, sizeof(bad));
			*bad_r = bad;
			return -1;
		}
		n++;
		p = end;
	}
	return (int)n;
}

int net_listen_list_foreach(const char *list, net_listen_fn *fn, void *ctx)
{
	char *copy = xstrdup(list);
	int ret = 0, count = 0;
	char *p = copy;
	while (ret == 0 && p != NULL) {
		char *item = p;
		char *comma = strchr(p, ',');
		if (comma != NULL)
			*comma = '\0';
		p = comma != NULL ? comma + 1 : NULL;
		while (*item == ' ')
			item++;
		size_t n = strlen(item);
		while (n > 0 && item[n - 1] == ' ')
			item[--n] = '\0';
		char *colon = strrchr(item, ':');
		if (colon == NULL || colon == item || colon[1] == '\0') {
			ret = -1;
			break;
		}
		*colon = '\0';
		const char *port = colon + 1;
		long num = 0;
		const char *d = port;
		for (; *d >= '0' && *d <= '9' && num <= 65535; d++)
			num = num * 10 + (*d - '0');
		if (*d != '\0' || num < 1 || num > 65535) {
			ret = -1;
			break;
		}
		char *host = item;
		size_t hl = strlen(host);
		if (host[0] == '[') {
			if (hl < 2 || host[hl - 1] != ']') {
				ret = -1;
				break;
			}
			host[hl - 1] = '\0';
			host++;
			if (host[0] == '\0') {
				ret = -1; /* "[]" names no host */
				break;
			}
		} else if (strchr(host, ':') != NULL) {
			ret = -1; /* an IPv6 literal needs brackets */
			break;
		}
		count++;
		ret = fn(ctx, host, port);
	}
	free(copy);
	return ret == 0 && count == 0 ? -1 : ret;
}

void net_client_key(struct net_addr *key, const struct net_addr *addr)
{
	if (addr->family == AF_INET6)
		net_addr_prefix(key, addr, NET_CLIENT_V6_PREFIX);
	else
		*key = *addr;
}

int net_bind_tcp(const char *host, const char *port, const char **error_r)
{
	static __thread char reason[256];
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	int gai = getaddrinfo(*host == '\0' || strcmp(host, "*") == 0 ? NULL : host, port, &hints,
			      &res);
	if (gai != 0) {
		*error_r = gai_strerror(gai);
		return -1;
	}
	int one = 1;
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
		str_copy(reason, strerror(errno), sizeof(reason));
		*error_r = reason;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}
