/*
 * Unit tests for dsn: each report is parsed back as a MIME message (its
 * boundary, parts, the delivery-status fields per message and per
 * recipient, the returned header) and checked line by line (CRLF, 7-bit,
 * under 998 octets); hostile diagnostics, addresses and headers with CRLF,
 * fake boundaries and 8-bit octets change no structure; refusals and caps.
 */
#include "test.h"

#include <stdbool.h>

#include "buf.h"
#include "dsn.h"

#define NOW 1709210096

/* Every line ends with CRLF, is 7-bit printable (or HT) and shorter
 * than 998 octets. */
static bool lines_ok(const char *m, size_t len)
{
	size_t line = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)m[i];
		if (c == '\r') {
			if (i + 1 >= len || m[i + 1] != '\n')
				return false;
			i++;
			line = 0;
		} else if (c == '\n' || (c < 0x20 && c != '\t') || c > 0x7e || ++line >= 998) {
			fprintf(stderr, "bad octet 0x%02x or long line at %zu\n", c, i);
			return false;
		}
	}
	return len >= 2 && m[len - 2] == '\r' && m[len - 1] == '\n';
}

/* The unfolded value of the first field name: in the header block
 * h[0..len), or NULL. The caller frees. */
static char *field(const char *h, size_t len, const char *name)
{
	size_t nl = strlen(name);

	for (size_t pos = 0; pos < len;) {
		const char *end = memmem(h + pos, len - pos, "\r\n", 2);
		size_t line_end = end != NULL ? (size_t)(end - h) : len;
		if (line_end - pos > nl && strncasecmp(h + pos, name, nl) == 0 && h[pos + nl] == ':') {
			struct buf v;
			buf_init(&v, 0);
			size_t i = pos + nl + 1;
			while (i < len && h[i] == ' ')
				i++;
			for (;; i = line_end + 2) {
				end = memmem(h + i, len - i, "\r\n", 2);
				line_end = end != NULL ? (size_t)(end - h) : len;
				buf_append(&v, h + i, line_end - i);
				if (line_end + 2 >= len || (h[line_end + 2] != ' ' && h[line_end + 2] != '\t'))
					break;
			}
			char *value = buf_steal(&v);
			buf_deinit(&v);
			return value;
		}
		pos = line_end + 2;
	}
	return NULL;
}

#define CHECK_FIELD(h, len, name, value) do { char *_v = field(h, len, name); \
	CHECK_STR(_v, value); free(_v); } while (0)

struct part {
	const char *head, *body;     /* the part's header block and its content */
	size_t head_len, body_len;
};

struct report {
	char *boundary;
	const char *head;
	size_t head_len;
	struct part parts[8];
	unsigned int count;
	bool closed;                 /* the close delimiter was found */
};

/* Parses msg as multipart: the message header, the boundary from
 * Content-Type, the parts between delimiter lines. false when the
 * structure is broken. */
static bool parse(const char *msg, size_t len, struct report *r)
{
	memset(r, 0, sizeof(*r));
	const char *sep = memmem(msg, len, "\r\n\r\n", 4);
	if (sep == NULL)
		return false;
	r->head = msg;
	r->head_len = (size_t)(sep - msg) + 2;
	char *ct = field(r->head, r->head_len, "Content-Type");
	const char *b = ct != NULL ? strstr(ct, "boundary=\"") : NULL;
	static const char type[] = "multipart/report; report-type=delivery-status;";
	if (b == NULL || strncmp(ct, type, strlen(type)) != 0) {
		free(ct);
		return false;
	}
	b += 10;
	r->boundary = xstrndup(b, strcspn(b, "\""));
	free(ct);

	char delim[128];
	size_t dl = (size_t)snprintf(delim, sizeof(delim), "--%s", r->boundary);
	const char *end = msg + len;
	struct part *cur = NULL;
	for (const char *line = sep + 4; line < end;) {
		const char *eol = memmem(line, (size_t)(end - line), "\r\n", 2);
		size_t n = (size_t)(eol - line);
		if (n >= dl && memcmp(line, delim, dl) == 0) {
			/* the part before ends at the CRLF before this line,
			 * which belongs to the delimiter (RFC 2046 5.1.1) */
			if (r->closed || (n != dl && (n != dl + 2 || memcmp(line + dl, "--", 2) != 0)))
				return false;   /* after the close, or only like a delimiter */
			if (cur != NULL && cur->body != NULL)
				cur->body_len = (size_t)(line - cur->body) - 2;
			if (n == dl + 2) {
				r->closed = true;
			} else {
				if (r->count == 8)
					return false;
				cur = &r->parts[r->count++];
				cur->head = eol + 2;
			}
		} else if (cur != NULL && cur->body == NULL && n == 0) {
			cur->head_len = (size_t)(line - cur->head);
			cur->body = eol + 2;
		}
		line = eol + 2;
	}
	return r->closed;
}

static bool has(const struct part *p, const char *text)
{
	return memmem(p->body, p->body_len, text, strlen(text)) != NULL;
}

static void report_free(struct report *r)
{
	free(r->boundary);
}

static const char original[] =
	"Received: from client by mx; Thu, 29 Feb 2024 12:00:00 +0000\r\n"
	"From: Sender <sender@example.com>\r\n"
	"To: a@remote.example, b@remote.example\r\n"
	"Subject: caf\xc3\xa9\r\n"
	"X-Bare-CR: a\rb\r\n"
	"\r\n"
	"the body must not be returned\r\n";

static void test_structure(void)
{
	struct dsn_rcpt rcpts[] = {
		{ "a@remote.example", DSN_FAILED, "5.1.1", "550 5.1.1 <a@remote.example>: no such user",
		  "mx.remote.example" },
		{ "b@remote.example", DSN_DELAYED, "4.4.1", "connection refused by mx.remote.example",
		  NULL },
	};
	struct dsn_info info = {
		.reporting_mta = "mx.example.com", .sender = "sender@example.com",
		.original_envid = "ENV123", .arrival_s = NOW - 60, .now_s = NOW,
		.rcpts = rcpts, .rcpt_count = 2, .headers = original, .headers_len = sizeof(original) - 1,
	};
	struct buf out;
	struct report r;
	const char *error = NULL;

	setenv("TZ", "UTC", 1);
	buf_init(&out, 0);
	buf_append_str(&out, "kept");
	CHECK_INT(dsn_build(&info, &out, &error), 0);
	CHECK(strncmp(out.data, "kept", 4) == 0);
	const char *m = out.data + 4;
	size_t len = out.len - 4;
	CHECK(lines_ok(m, len));
	CHECK(parse(m, len, &r));
	CHECK_FIELD(r.head, r.head_len, "From", "\"Mail Delivery System\" <MAILER-DAEMON@mx.example.com>");
	CHECK_FIELD(r.head, r.head_len, "To", "<sender@example.com>");
	CHECK_FIELD(r.head, r.head_len, "Subject", "Undelivered Mail Returned to Sender");
	CHECK_FIELD(r.head, r.head_len, "Date", "Thu, 29 Feb 2024 12:34:56 +0000");
	CHECK_FIELD(r.head, r.head_len, "Auto-Submitted", "auto-replied");
	CHECK_FIELD(r.head, r.head_len, "MIME-Version", "1.0");
	char *mid = field(r.head, r.head_len, "Message-ID");
	CHECK(mid != NULL && mid[0] == '<' && strstr(mid, "@mx.example.com>") != NULL);
	free(mid);
	CHECK_INT(r.count, 3);
	CHECK(r.boundary != NULL && memmem(m, len, r.boundary, strlen(r.boundary)) != NULL);

	struct part *p = &r.parts[0];
	CHECK_FIELD(p->head, p->head_len, "Content-Type", "text/plain; charset=us-ascii");
	CHECK(has(p, "<a@remote.example>: 550 5.1.1 <a@remote.example>: no such user\r\n"));
	CHECK(has(p, "<b@remote.example>: connection refused"));
	CHECK(has(p, "could not be delivered"));
	CHECK(has(p, "not been delivered yet"));

	p = &r.parts[1];
	CHECK_FIELD(p->head, p->head_len, "Content-Type", "message/delivery-status");
	/* per-message fields, then one block per recipient after an empty line */
	const char *blk = p->body, *end = p->body + p->body_len;
	const char *blocks[4];
	size_t blens[4];
	unsigned int nb = 0;
	while (blk < end && nb < 4) {
		const char *e = memmem(blk, (size_t)(end - blk), "\r\n\r\n", 4);
		size_t n = e != NULL ? (size_t)(e - blk) + 2 : (size_t)(end - blk);
		blocks[nb] = blk;
		blens[nb++] = n;
		blk += n + (e != NULL ? 2 : 0);
	}
	CHECK_INT(nb, 3);
	if (nb == 3) {
		CHECK_FIELD(blocks[0], blens[0], "Reporting-MTA", "dns; mx.example.com");
		CHECK_FIELD(blocks[0], blens[0], "Original-Envelope-Id", "ENV123");
		CHECK_FIELD(blocks[0], blens[0], "Arrival-Date", "Thu, 29 Feb 2024 12:33:56 +0000");
		CHECK_FIELD(blocks[1], blens[1], "Final-Recipient", "rfc822; a@remote.example");
		CHECK_FIELD(blocks[1], blens[1], "Action", "failed");
		CHECK_FIELD(blocks[1], blens[1], "Status", "5.1.1");
		CHECK_FIELD(blocks[1], blens[1], "Remote-MTA", "dns; mx.remote.example");
		CHECK_FIELD(blocks[1], blens[1], "Diagnostic-Code",
			    "smtp; 550 5.1.1 <a@remote.example>: no such user");
		CHECK_FIELD(blocks[1], blens[1], "Last-Attempt-Date", "Thu, 29 Feb 2024 12:34:56 +0000");
		CHECK_FIELD(blocks[2], blens[2], "Final-Recipient", "rfc822; b@remote.example");
		CHECK_FIELD(blocks[2], blens[2], "Action", "delayed");
		CHECK_FIELD(blocks[2], blens[2], "Status", "4.4.1");
		CHECK(field(blocks[2], blens[2], "Remote-MTA") == NULL);
		CHECK_FIELD(blocks[2], blens[2], "Diagnostic-Code",
			    "X-tern; connection refused by mx.remote.example");
	}

	p = &r.parts[2];
	CHECK_FIELD(p->head, p->head_len, "Content-Type", "text/rfc822-headers");
	static const char returned[] =
		"Received: from client by mx; Thu, 29 Feb 2024 12:00:00 +0000\r\n"
		"From: Sender <sender@example.com>\r\n"
		"To: a@remote.example, b@remote.example\r\n"
		"Subject: caf?\?\r\n"
		"X-Bare-CR: a?b\r\n";
	CHECK_MEM(p->body, p->body_len, returned, sizeof(returned) - 1);
	report_free(&r);

	/* delayed only: the other subject; no header: no third part */
	info.rcpts = rcpts + 1;
	info.rcpt_count = 1;
	info.headers = NULL;
	info.headers_len = 0;
	info.original_envid = NULL;
	buf_reset(&out);
	CHECK_INT(dsn_build(&info, &out, &error), 0);
	CHECK(lines_ok(out.data, out.len));
	CHECK(parse(out.data, out.len, &r));
	CHECK_FIELD(r.head, r.head_len, "Subject", "Delayed Mail (still being retried)");
	CHECK_INT(r.count, 2);
	CHECK(strstr(out.data, "Original-Envelope-Id") == NULL);
	CHECK(strstr(out.data, "could not be delivered") == NULL);
	report_free(&r);
	buf_deinit(&out);
}

static void test_hostile(void)
{
	char longdiag[4000];
	memset(longdiag, 'd', sizeof(longdiag) - 1);
	longdiag[sizeof(longdiag) - 1] = '\0';
	struct dsn_rcpt rcpts[] = {
		{ "evil@remote.example\r\nBcc: victim@example.org", DSN_FAILED, "5.7.1\r\nX: y",
		  "550 5.7.1 no\r\n--tern-report.fake\r\nContent-Type: text/html\r\n\r\n<b>\x01\xff</b>",
		  "mx\r\n.remote.example" },
		{ "x@remote.example", DSN_FAILED, "9.9.9", longdiag, NULL },
		{ "y@remote.example", DSN_DELAYED, NULL, "", "" },
	};
	struct buf hdr;
	buf_init(&hdr, 0);
	buf_append_str(&hdr, "From: s@example.com\r\n--tern-report.fake\r\nX-Long: ");
	for (int i = 0; i < 2000; i++)
		buf_append_c(&hdr, 'L');
	buf_append_str(&hdr, "\r\nX-NUL: a");
	buf_append_c(&hdr, '\0');
	buf_append_str(&hdr, "b\nX-Bare-LF: c\r\n\nbody\r\n");
	struct dsn_info info = {
		.reporting_mta = "mx.example.com", .sender = "s@example.com\r\nBcc: x@y",
		.original_envid = "id\r\nX: y", .arrival_s = NOW - 60, .now_s = NOW,
		.rcpts = rcpts, .rcpt_count = 3, .headers = hdr.data, .headers_len = hdr.len,
	};
	struct buf out;
	struct report r;
	const char *error = NULL;

	buf_init(&out, 0);
	CHECK_INT(dsn_build(&info, &out, &error), 0);
	CHECK(lines_ok(out.data, out.len));
	CHECK(parse(out.data, out.len, &r));
	CHECK_INT(r.count, 3);
	/* no injected field in the message header */
	CHECK(field(r.head, r.head_len, "Bcc") == NULL);
	CHECK_FIELD(r.head, r.head_len, "To", "<s@example.com Bcc: x@y>");
	CHECK(strstr(out.data, "\r\nBcc:") == NULL && strstr(out.data, "\r\nContent-Type: text/html") == NULL);
	CHECK(strstr(out.data, "\r\nX: y") == NULL);
	/* the fake boundary is text in the returned header only */
	char *fake = strstr(out.data, "\r\n--tern-report.fake");
	CHECK(fake != NULL && fake > r.parts[2].body && strstr(fake + 3, "--tern-report.fake") == NULL);
	struct part *p = &r.parts[1];
	CHECK(has(p, "Diagnostic-Code: smtp; 550 5.7.1 no --tern-report.fake Content-Type: "
		  "text/html <b>?\?</b>\r\n"));
	CHECK(has(p, "Final-Recipient: rfc822; evil@remote.example Bcc: "
		  "victim@example.org\r\n"));
	CHECK(has(p, "Remote-MTA: dns; mx .remote.example\r\n"));
	CHECK(has(p, "Original-Envelope-Id: id X: y\r\n"));
	/* malformed status codes fall back to the action's class */
	CHECK(has(p, "Action: failed\r\nStatus: 5.0.0\r\n"));
	CHECK(has(p, "Action: delayed\r\nStatus: 4.0.0\r\n"));
	/* a long diagnostic is cut at DSN_DIAGNOSTIC_MAX */
	char cut[DSN_DIAGNOSTIC_MAX + 32];
	snprintf(cut, sizeof(cut), "Diagnostic-Code: X-tern; %.*s\r\n", DSN_DIAGNOSTIC_MAX, longdiag);
	CHECK(memmem(p->body, p->body_len, cut, strlen(cut)) != NULL);
	/* the returned header: line by line, cut, sanitised, no body */
	p = &r.parts[2];
	struct buf want;
	buf_init(&want, 0);
	buf_append_str(&want, "From: s@example.com\r\n--tern-report.fake\r\nX-Long: ");
	for (int i = 0; i < 990 - 8; i++)
		buf_append_c(&want, 'L');
	buf_append_str(&want, "\r\nX-NUL: a?b\r\nX-Bare-LF: c\r\n");
	CHECK_MEM(p->body, p->body_len, want.data, want.len);
	buf_deinit(&want);
	report_free(&r);

	/* a header over DSN_HEADERS_MAX is cut at a line end */
	buf_reset(&hdr);
	while (hdr.len < 2 * DSN_HEADERS_MAX)
		buf_append_str(&hdr, "X-Filler: 0123456789012345678901234567890123456789\r\n");
	info.headers = hdr.data;
	info.headers_len = hdr.len;
	buf_reset(&out);
	CHECK_INT(dsn_build(&info, &out, &error), 0);
	CHECK(parse(out.data, out.len, &r));
	p = &r.parts[2];
	CHECK(p->body_len <= DSN_HEADERS_MAX && p->body_len > DSN_HEADERS_MAX - 60);
	CHECK(p->body_len >= 2 && memcmp(p->body + p->body_len - 2, "\r\n", 2) == 0);
	CHECK(memcmp(p->body, hdr.data, p->body_len) == 0);
	report_free(&r);
	buf_deinit(&hdr);
	buf_deinit(&out);
}

#define CHECK_REFUSED(info, why) do { struct buf _o; const char *_e = NULL; test_checks++; \
	buf_init(&_o, 0); if (dsn_build(info, &_o, &_e) != -1 || _e == NULL || \
	strcmp(_e, why) != 0 || _o.len != 0) { test_failures++; fprintf(stderr, \
	"%s:%d: got %s, expected \"%s\"\n", __FILE__, __LINE__, _e ? _e : "success", why); } \
	buf_deinit(&_o); } while (0)

static void test_refusals(void)
{
	struct dsn_rcpt rcpt = { "a@remote.example", DSN_FAILED, "5.1.1", NULL, NULL };
	struct dsn_info info = {
		.reporting_mta = "mx.example.com", .sender = "", .arrival_s = NOW, .now_s = NOW,
		.rcpts = &rcpt, .rcpt_count = 1,
	};

	CHECK_REFUSED(&info, "no DSN is sent to the null sender");
	info.sender = NULL;
	CHECK_REFUSED(&info, "no DSN is sent to the null sender");
	info.sender = "s@example.com";
	info.reporting_mta = "mx.example.com\r\nBcc: x";
	CHECK_REFUSED(&info, "the reporting MTA is not a valid host name");
	info.reporting_mta = NULL;
	CHECK_REFUSED(&info, "the reporting MTA is not a valid host name");
	info.reporting_mta = "mx.example.com";
	info.rcpt_count = 0;
	CHECK_REFUSED(&info, "a DSN needs at least one recipient");
	info.rcpt_count = 1;
	rcpt.address = "";
	CHECK_REFUSED(&info, "a DSN recipient has no address");
	rcpt.address = "a@remote.example";

	/* out's cap: -1, out as it was */
	struct buf small;
	const char *error = NULL;
	buf_init(&small, 200);
	buf_append_str(&small, "kept");
	CHECK_INT(dsn_build(&info, &small, &error), -1);
	CHECK_STR(error, "the output buffer is full");
	CHECK_STR(small.data, "kept");
	buf_deinit(&small);
	/* no diagnostic: a generic line, no Diagnostic-Code */
	struct buf out;
	buf_init(&out, 0);
	CHECK_INT(dsn_build(&info, &out, &error), 0);
	CHECK(strstr(out.data, "<a@remote.example>: delivery failed\r\n") != NULL);
	CHECK(strstr(out.data, "Diagnostic-Code") == NULL);
	buf_deinit(&out);
}

int main(void)
{
	test_structure();
	test_hostile();
	test_refusals();
	TEST_MAIN_END();
}
