/*
 * Unit tests for src/lib/net: client addresses (IPv4-mapped IPv6 seen as
 * IPv4), prefixes (the IPv6 /64), CIDR ranges and range lists, and listen
 * lists with their malformed items.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "buf.h"
#include "net.h"

#include "test.h"

static struct net_addr v4(const char *text)
{
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	if (inet_pton(AF_INET, text, &sin.sin_addr) != 1)
		fprintf(stderr, "bad test address %s\n", text);
	struct net_addr a;
	net_addr_from_sockaddr(&a, (struct sockaddr *)&sin);
	return a;
}

static struct net_addr v6(const char *text)
{
	struct sockaddr_in6 sin6;
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	if (inet_pton(AF_INET6, text, &sin6.sin6_addr) != 1)
		fprintf(stderr, "bad test address %s\n", text);
	struct net_addr a;
	net_addr_from_sockaddr(&a, (struct sockaddr *)&sin6);
	return a;
}

static void test_addresses(void)
{
	struct net_addr a = v4("192.0.2.7");
	CHECK_INT(a.family, AF_INET);
	CHECK_MEM(a.bytes, 4, "\xc0\x00\x02\x07", 4);

	struct net_addr b = v6("2001:db8::1");
	CHECK_INT(b.family, AF_INET6);
	CHECK_MEM(b.bytes, 16, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16);

	/* an IPv4-mapped IPv6 address is the IPv4 address */
	struct net_addr m = v6("::ffff:192.0.2.7");
	CHECK_INT(m.family, AF_INET);
	CHECK(net_addr_equal(&m, &a));
	/* but not the IPv4-compatible form or a near miss */
	CHECK_INT(v6("::192.0.2.7").family, AF_INET6);
	CHECK_INT(v6("::fffe:192.0.2.7").family, AF_INET6);
	CHECK_INT(v6("1::ffff:192.0.2.7").family, AF_INET6);

	/* anything but IP is family 0 */
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	struct net_addr u;
	memset(&u, 0x55, sizeof(u));
	net_addr_from_sockaddr(&u, (struct sockaddr *)&sun);
	CHECK_INT(u.family, 0);
	CHECK_INT(u.bytes[0], 0);

	/* equality: family and the bytes that family uses */
	struct net_addr c = v4("192.0.2.8");
	CHECK(!net_addr_equal(&a, &c));
	CHECK(net_addr_equal(&a, &a));
	struct net_addr d = v6("::c000:207");  /* the same 4 bytes, last, as IPv6 */
	CHECK(!net_addr_equal(&a, &d));
	CHECK(!net_addr_equal(&b, &a));
	CHECK(net_addr_equal(&b, &b));
}

static void test_prefixes(void)
{
	struct net_addr p;
	struct net_addr a = v6("2001:db8:1:2:aaaa:bbbb:cccc:dddd");
	net_addr_prefix(&p, &a, 64);
	struct net_addr want = v6("2001:db8:1:2::");
	CHECK(net_addr_equal(&p, &want));
	/* two hosts of one /64 share it; the next /64 does not */
	struct net_addr a2 = v6("2001:db8:1:2::9"), other = v6("2001:db8:1:3::9"), p2;
	net_addr_prefix(&p2, &a2, 64);
	CHECK(net_addr_equal(&p, &p2));
	net_addr_prefix(&p2, &other, 64);
	CHECK(!net_addr_equal(&p, &p2));
	/* partial bytes */
	net_addr_prefix(&p, &a, 60);
	want = v6("2001:db8:1::");
	CHECK(net_addr_equal(&p, &want));
	net_addr_prefix(&p, &a, 65);
	want = v6("2001:db8:1:2:8000::");
	CHECK(net_addr_equal(&p, &want));
	net_addr_prefix(&p, &a, 0);
	want = v6("::");
	CHECK(net_addr_equal(&p, &want));
	net_addr_prefix(&p, &a, 128);
	CHECK(net_addr_equal(&p, &a));
	net_addr_prefix(&p, &a, 200);
	CHECK(net_addr_equal(&p, &a));
	/* in place */
	struct net_addr inplace = a;
	net_addr_prefix(&inplace, &inplace, 64);
	want = v6("2001:db8:1:2::");
	CHECK(net_addr_equal(&inplace, &want));

	struct net_addr b = v4("198.51.100.201");
	net_addr_prefix(&p, &b, 24);
	want = v4("198.51.100.0");
	CHECK(net_addr_equal(&p, &want));
	net_addr_prefix(&p, &b, 25);
	want = v4("198.51.100.128");
	CHECK(net_addr_equal(&p, &want));
	net_addr_prefix(&p, &b, 1);
	want = v4("128.0.0.0");
	CHECK(net_addr_equal(&p, &want));
	net_addr_prefix(&p, &b, 32);
	CHECK(net_addr_equal(&p, &b));
	net_addr_prefix(&p, &b, 64);  /* beyond an IPv4 address: unchanged */
	CHECK(net_addr_equal(&p, &b));
	/* the bytes IPv4 does not use are left alone */
	CHECK_INT(p.bytes[4], 0);

	struct net_addr none;
	memset(&none, 0, sizeof(none));
	none.bytes[0] = 0xab;
	net_addr_prefix(&p, &none, 8);
	CHECK_INT(p.family, 0);
	CHECK_INT(p.bytes[0], 0xab);
}

static void test_ranges(void)
{
	struct net_range r;
	CHECK_INT(net_range_parse("10.0.0.0/8", &r), 0);
	CHECK_INT(r.addr.family, AF_INET);
	CHECK_INT(r.bits, 8);
	struct net_addr a = v4("10.200.3.4"), b = v4("11.0.0.1");
	CHECK(net_range_match(&r, &a));
	CHECK(!net_range_match(&r, &b));
	/* host bits are cleared */
	CHECK_INT(net_range_parse("10.1.2.3/8", &r), 0);
	struct net_addr ten = v4("10.0.0.0");
	CHECK(net_addr_equal(&r.addr, &ten));
	CHECK(net_range_match(&r, &a));
	/* without a prefix: one address */
	CHECK_INT(net_range_parse("192.0.2.1", &r), 0);
	CHECK_INT(r.bits, 32);
	a = v4("192.0.2.1");
	b = v4("192.0.2.2");
	CHECK(net_range_match(&r, &a));
	CHECK(!net_range_match(&r, &b));
	/* an IPv4 range matches a client on a dual-stack socket */
	struct net_addr mapped = v6("::ffff:192.0.2.1");
	CHECK(net_range_match(&r, &mapped));
	/* /0 matches its own family only */
	CHECK_INT(net_range_parse("0.0.0.0/0", &r), 0);
	CHECK(net_range_match(&r, &b));
	struct net_addr six = v6("2001:db8::1");
	CHECK(!net_range_match(&r, &six));
	/* IPv6 */
	CHECK_INT(net_range_parse("::1", &r), 0);
	CHECK_INT(r.addr.family, AF_INET6);
	CHECK_INT(r.bits, 128);
	struct net_addr lo = v6("::1");
	CHECK(net_range_match(&r, &lo));
	CHECK(!net_range_match(&r, &six));
	CHECK_INT(net_range_parse("2001:db8:0:1::/64", &r), 0);
	struct net_addr in64 = v6("2001:db8:0:1:ffff::1"), out64 = v6("2001:db8:0:2::1");
	CHECK(net_range_match(&r, &in64));
	CHECK(!net_range_match(&r, &out64));
	CHECK(!net_range_match(&r, &a));
	CHECK_INT(net_range_parse("::/0", &r), 0);
	CHECK(net_range_match(&r, &six));
	CHECK(!net_range_match(&r, &a));
	/* an unknown address matches nothing */
	struct net_addr none;
	memset(&none, 0, sizeof(none));
	CHECK(!net_range_match(&r, &none));

	static const char *const bad[] = {
		"", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/+8",
		"10.0.0.0/8x", "10.0.0.0/ 8", "10.0.0.0/8/8", "10.0.0.256", "10.0.0", "abc",
		" 10.0.0.1", "10.0.0.1 ", "2001:db8::g", "[::1]", "::1/", "10.0.0.0/4294967304",
		"1234567890123456789012345678901234567890123456789012345678901234567890",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		test_checks++;
		if (net_range_parse(bad[i], &r) != -1) {
			test_failures++;
			fprintf(stderr, "%s:%d: net_range_parse accepted \"%s\"\n", __FILE__,
				__LINE__, bad[i]);
		}
	}
}

static void test_range_lists(void)
{
	struct net_range r[4];
	const char *bad = NULL;
	CHECK_INT(net_range_list_parse("", r, 4, &bad), 0);
	CHECK_INT(net_range_list_parse(" , ,\t", r, 4, &bad), 0);
	CHECK_INT(net_range_list_parse("127.0.0.1/32, ::1/128", r, 4, &bad), 2);
	CHECK_INT(r[0].addr.family, AF_INET);
	CHECK_INT(r[1].addr.family, AF_INET6);
	CHECK_INT(net_range_list_parse(",,10.0.0.0/8,, 192.168.0.0/16\t172.16.0.0/12 ,", r, 4,
				       &bad), 3);
	CHECK_INT(r[2].bits, 12);
	struct net_addr a = v4("172.20.1.1");
	CHECK(net_range_match(&r[2], &a));

	bad = NULL;
	CHECK_INT(net_range_list_parse("10.0.0.0/8, bogus, ::1", r, 4, &bad), -1);
	CHECK_STR(bad, "bogus");
	CHECK_INT(net_range_list_parse("10.0.0.0/33", r, 4, &bad), -1);
	CHECK_STR(bad, "10.0.0.0/33");
	/* more items than room: the first one left out is named */
	CHECK_INT(net_range_list_parse("1.1.1.1 2.2.2.2 3.3.3.3", r, 2, &bad), -1);
	CHECK_STR(bad, "3.3.3.3");
	CHECK_INT(net_range_list_parse("1.1.1.1 2.2.2.2", r, 2, &bad), 2);
	/* an overlong item is refused and shown shortened */
	char longlist[200];
	memset(longlist, 'a', sizeof(longlist) - 1);
	longlist[sizeof(longlist) - 1] = '\0';
	CHECK_INT(net_range_list_parse(longlist, r, 4, &bad), -1);
	CHECK(bad != NULL && strlen(bad) < 64 && bad[0] == 'a');
}

struct listen_log {
	struct buf out;
	int stop_at;  /* return 7 at this call (1-based), 0 never */
	int calls;
};

static int log_listen(void *ctx, const char *host, const char *port)
{
	struct listen_log *l = ctx;
	l->calls++;
	buf_printf(&l->out, "<%s|%s>", host, port);
	return l->calls == l->stop_at ? 7 : 0;
}

static int listen_run(const char *list, struct listen_log *l, int stop_at)
{
	buf_reset(&l->out);
	l->calls = 0;
	l->stop_at = stop_at;
	return net_listen_list_foreach(list, log_listen, l);
}

static void test_listen_lists(void)
{
	struct listen_log l;
	buf_init(&l.out, 0);
	CHECK_INT(listen_run("127.0.0.1:25", &l, 0), 0);
	CHECK_STR(l.out.data, "<127.0.0.1|25>");
	CHECK_INT(listen_run("*:110, [::1]:995 ,localhost:2525,[2001:db8::1]:65535", &l, 0), 0);
	CHECK_STR(l.out.data, "<*|110><::1|995><localhost|2525><2001:db8::1|65535>");
	CHECK_INT(listen_run("  0.0.0.0:1  ", &l, 0), 0);
	CHECK_STR(l.out.data, "<0.0.0.0|1>");
	/* the callback's first non-zero return stops the walk */
	CHECK_INT(listen_run("a:1, b:2, c:3", &l, 2), 7);
	CHECK_STR(l.out.data, "<a|1><b|2>");

	static const char *const bad[] = {
		"", " ", ",", "127.0.0.1", ":25", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
		"127.0.0.1:99999999999999999999", "127.0.0.1:2 5", "127.0.0.1:+25", "127.0.0.1:-1",
		"127.0.0.1:25x", "::1:25", "[::1:25", "::1]:25", "[::1]", "[]:25", "a:25,",
		"a:25,,b:26", "a:25, :26",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		test_checks++;
		if (listen_run(bad[i], &l, 0) != -1) {
			test_failures++;
			fprintf(stderr, "%s:%d: listen list \"%s\" accepted: %s\n", __FILE__,
				__LINE__, bad[i], l.out.data);
		}
	}
	/* a bad item stops the walk there */
	CHECK_INT(listen_run("a:1, b, c:3", &l, 0), -1);
	CHECK_STR(l.out.data, "<a|1>");
	buf_deinit(&l.out);
}

int main(void)
{
	test_addresses();
	test_prefixes();
	test_ranges();
	test_range_lists();
	test_listen_lists();
	TEST_MAIN_END();
}
