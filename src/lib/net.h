#ifndef TERN_NET_H
#define TERN_NET_H
/*
 * net: client addresses and CIDR ranges, for trusted networks, per-IP
 * connection limits and per-IP authentication penalties. An IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d) is treated as the IPv4 address, so a
 * dual-stack listener applies the same rules as an IPv4 one.
 */
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct net_addr {
	int family;               /* AF_INET, AF_INET6, or 0 when unknown */
	unsigned char bytes[16];  /* 4 bytes used for AF_INET */
};

struct net_range {
	struct net_addr addr;     /* with the host bits cleared */
	unsigned int bits;        /* prefix length */
};

/* Fills addr from a socket address; family 0 for anything but IP. */
void net_addr_from_sockaddr(struct net_addr *addr, const struct sockaddr *sa);
bool net_addr_equal(const struct net_addr *a, const struct net_addr *b);
/* The address with its host bits beyond the prefix cleared (e.g. an IPv6
 * /64, the unit a single client usually controls). */
void net_addr_prefix(struct net_addr *out, const struct net_addr *in, unsigned int bits);
/* The prefix length that makes one client of an IPv6 address. */
#define NET_CLIENT_V6_PREFIX 64
/* One client, for per-client limits and penalties: an IPv4 address as it
 * is, an IPv6 address cut to its /64 (the block one client usually holds). */
void net_client_key(struct net_addr *key, const struct net_addr *addr);

/* "a.b.c.d[/n]" or "ipv6[/n]"; without /n the range is one address.
 * 0 or -1. */
int net_range_parse(const char *text, struct net_range *range_r);
bool net_range_match(const struct net_range *range, const struct net_addr *addr);

/* A comma-separated list of ranges ("" is the empty list). Returns the
 * number of ranges written to ranges_r (at most max), or -1 with *bad_r
 * pointing at a static copy of the first bad item. */
int net_range_list_parse(const char *text, struct net_range *ranges_r, size_t max,
			 const char **bad_r);

/* Walks a listen list, "host:port[, host:port ...]", calling fn with each
 * host (brackets of an IPv6 literal removed; "*" for any address)
 * and port. Returns 0; -1 when an item is malformed (no host, no port, a port
 * outside 1..65535, an IPv6 address without brackets) or the list is
 * empty; or the first non-zero value fn returned. */
typedef int net_listen_fn(void *ctx, const char *host, const char *port);
int net_listen_list_foreach(const char *list, net_listen_fn *fn, void *ctx);

/* A TCP socket bound to host:port (numeric port; "" or "*" for every
 * address), non-blocking, close-on-exec and SO_REUSEADDR, not yet
 * listening: binding may need root, listening can wait until the server is
 * ready. Returns the descriptor, or -1 with *error_r (a static string:
 * the resolver's or the system's reason). */
int net_bind_tcp(const char *host, const char *port, const char **error_r);

#endif
