/*
 * mail-address: parsing and normalising RFC 5321 mailboxes and paths.
 *
 * Invariants kept for every address this module returns:
 *  - local holds at most MAIL_LOCAL_MAX octets, domain at most MAIL_DOMAIN_MAX,
 *    both NUL-terminated, lower-cased, printable ASCII only (mail_address_parse_utf8: UTF-8 in the local part);
 *  - local is either a dot-string, or a quoted string in canonical form
 *    (only '"' and '\' escaped), used only when the content is not a valid
 *    dot-string: "abc"@x and abc@x are the same mailbox and compare equal;
 *  - domain is a valid DNS name (LDH labels of 1..63 octets) or an address
 *    literal [a.b.c.d] / [IPv6:...] that inet_pton accepts.
 * Anything else (control characters, spaces outside quotes, 8-bit bytes,
 * missing '@', empty parts) is refused with a short reason: these addresses
 * become database keys and log fields, so ambiguity is not tolerated.
 *
 * mail_address_parse_utf8() also takes the internationalised local parts
 * of RFC 6531/6532 (atext extended by UTF8-non-ascii), for user names
 * (POP3 UTF8, SASL, the CLI): the octets must be valid UTF-8 (shortest
 * form, no surrogates, nothing above U+10FFFF, no C1 controls); only ASCII
 * letters are lower-cased, the rest is kept octet for octet (no Unicode
 * case folding or normalisation: "É" and "é" are different users, and so
 * are the composed and decomposed forms of one letter). The domain stays
 * ASCII (an IDN is given in its A-label form, xn--...). Lengths are in
 * octets.
 */
#include "mail-address.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static char to_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* RFC 5322 atext; with utf8, RFC 6532's UTF8-non-ascii too (the octets
 * have been validated as UTF-8 before). */
static bool is_atext(unsigned char c, bool utf8)
{
	if (is_alpha(c) || is_digit(c) || (utf8 && c >= 0x80))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool is_dot_string(const char *s, size_t len, bool utf8)
{
	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (s[i - 1] == '.')
				return false;
		} else if (!is_atext((unsigned char)s[i], utf8)) {
			return false;
		}
	}
	return true;
}

bool mail_utf8_is_valid(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	for (size_t i = 0; i < len;) {
		unsigned char c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n;
		uint32_t cp, min;
		if (c >= 0xc2 && c <= 0xdf)
			n = 2, cp = c & 0x1f, min = 0x80;
		else if (c >= 0xe0 && c <= 0xef)
			n = 3, cp = c & 0x0f, min = 0x800;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 4, cp = c & 0x07, min = 0x10000;
		else
			return false; /* a continuation octet, an overlong lead (C0, C1) or F5..FF */
		if (len - i < n)
			return false;
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
		    (cp >= 0x80 && cp <= 0x9f))
			return false; /* overlong, out of range, a surrogate, a C1 control */
		i += n;
	}
	return true;
}

static bool is_dns_name(const char *s, size_t len)
{
	size_t label = 0;

	if (len == 0 || len > MAIL_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			/* empty label, or one ending with '-' */
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
		} else if (is_alpha(c) || is_digit(c) || c == '-') {
			if (label == 0 && c == '-')
				return false;
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	/* a trailing dot (root label) is not allowed in SMTP */
	return label > 0 && s[len - 1] != '-';
}

static bool is_address_literal(const char *s, size_t len)
{
	char tmp[64];
	unsigned char bin[16];

	if (len < 3 || s[0] != '[' || s[len - 1] != ']')
		return false;
	s++;
	len -= 2;
	if (len >= 5 && strncasecmp(s, "IPv6:", 5) == 0) {
		if (len - 5 >= sizeof(tmp))
			return false;
		memcpy(tmp, s + 5, len - 5);
		tmp[len - 5] = '\0';
		return inet_pton(AF_INET6, tmp, bin) == 1;
	}
	if (len >= sizeof(tmp))
		return false;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	/* glibc's inet_pton accepts only dotted-quad decimal here */
	return inet_pton(AF_INET, tmp, bin) == 1;
}

bool mail_domain_is_valid(const char *domain, size_t len)
{
	if (len > MAIL_DOMAIN_MAX)
		return false;
	if (len > 0 && domain[0] == '[')
		return is_address_literal(domain, len);
	return is_dns_name(domain, len);
}

/* Parses a quoted-string local part s[0..len) (quotes included) into its
 * canonical form in out (size outsize). Returns 0 or -1. */
static int parse_quoted_local(const char *s, size_t len, bool utf8, char *out, size_t outsize,
			      const char **error_r)
{
	char content[MAIL_LOCAL_MAX + 1];
	size_t n = 0;

	if (len < 2 || s[0] != '"' || s[len - 1] != '"') {
		*error_r = "malformed quoted local part";
		return -1;
	}
	for (size_t i = 1; i < len - 1; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\\') {
			if (++i >= len - 1) {
				*error_r = "malformed quoted local part";
				return -1;
			}
			c = (unsigned char)s[i];
		} else if (c == '"') {
			*error_r = "malformed quoted local part";
			return -1;
		}
		if (c < 0x20 || c == 0x7f || (c > 0x7f && !utf8)) {
			*error_r = "invalid character in local part";
			return -1;
		}
		/* len <= MAIL_LOCAL_MAX, so content cannot overflow */
		content[n++] = to_lower((char)c);
	}
	content[n] = '\0';
	if (n == 0) {
		*error_r = "empty local part";
		return -1;
	}
	if (is_dot_string(content, n, utf8)) {
		memcpy(out, content, n + 1);
		return 0;
	}
	size_t o = 0;
	out[o++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (content[i] == '"' || content[i] == '\\')
			out[o++] = '\\';
		out[o++] = content[i];
	}
	out[o++] = '"';
	out[o] = '\0';
	(void)outsize; /* 2 * MAIL_LOCAL_MAX + 3 always suffices */
	return 0;
}

/* Finds the '@' separating local part and domain, skipping a quoted
 * local part. Returns its offset, or len when there is none. */
static size_t find_at(const char *s, size_t len)
{
	size_t i = 0;

	if (len > 0 && s[0] == '"') {
		for (i = 1; i < len; i++) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				break;
		}
		i++;
	}
	for (; i < len; i++)
		if (s[i] == '@')
			return i;
	return len;
}

static int parse_address(const char *s, size_t len, bool utf8, struct mail_address *addr_r,
			 const char **error_r)
{
	memset(addr_r, 0, sizeof(*addr_r));
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f) {
			*error_r = "control character in address";
			return -1;
		}
		if (c > 0x7f && !utf8) {
			*error_r = "non-ASCII address";
			return -1;
		}
	}
	if (utf8 && !mail_utf8_is_valid(s, len)) {
		*error_r = "invalid UTF-8 in address";
		return -1;
	}
	size_t at = find_at(s, len);
	if (at == len) {
		*error_r = "missing '@' in address";
		return -1;
	}
	if (at == 0) {
		*error_r = "empty local part";
		return -1;
	}
	if (at > MAIL_LOCAL_MAX) {
		*error_r = "local part too long";
		return -1;
	}
	const char *dom = s + at + 1;
	size_t dlen = len - at - 1;
	if (dlen == 0) {
		*error_r = "empty domain";
		return -1;
	}
	if (dlen > MAIL_DOMAIN_MAX) {
		*error_r = "domain too long";
		return -1;
	}
	if (s[0] == '"') {
		if (parse_quoted_local(s, at, utf8, addr_r->local, sizeof(addr_r->local),
				       error_r) < 0)
			return -1;
	} else {
		if (!is_dot_string(s, at, utf8)) {
			*error_r = memchr(s, ' ', at) != NULL ?
				"space in local part" : "invalid local part";
			return -1;
		}
		for (size_t i = 0; i < at; i++)
			addr_r->local[i] = to_lower(s[i]);
		addr_r->local[at] = '\0';
	}
	if (!mail_domain_is_valid(dom, dlen)) {
		*error_r = "invalid domain";
		return -1;
	}
	if (dom[0] == '[' && dlen >= 6 && strncasecmp(dom + 1, "IPv6:", 5) == 0) {
		/* the tag is case-insensitive; keep one spelling for lookups */
		memcpy(addr_r->domain, "[IPv6:", 6);
		for (size_t i = 6; i < dlen; i++)
			addr_r->domain[i] = to_lower(dom[i]);
	} else {
		for (size_t i = 0; i < dlen; i++)
			addr_r->domain[i] = to_lower(dom[i]);
	}
	addr_r->domain[dlen] = '\0';
	return 0;
}

int mail_address_parse(const char *s, size_t len, struct mail_address *addr_r,
		       const char **error_r)
{
	return parse_address(s, len, false, addr_r, error_r);
}

int mail_address_parse_utf8(const char *s, size_t len, struct mail_address *addr_r,
			    const char **error_r)
{
	return parse_address(s, len, true, addr_r, error_r);
}

/* Skips an RFC 5321 source route "@a,@b:" at s[0..len); returns the offset
 * of the mailbox, or (size_t)-1 when the route is malformed. */
static size_t skip_source_route(const char *s, size_t len)
{
	size_t i = 0;

	for (;;) {
		if (i >= len || s[i] != '@')
			return (size_t)-1;
		size_t start = ++i;
		while (i < len && s[i] != ',' && s[i] != ':')
			i++;
		if (i >= len || !mail_domain_is_valid(s + start, i - start))
			return (size_t)-1;
		if (s[i++] == ':')
			return i;
	}
}

int mail_address_parse_path(const char *s, size_t len, bool allow_null,
			    struct mail_address *addr_r, size_t *end_r,
			    const char **error_r)
{
	size_t i;
	bool quoted = false;

	memset(addr_r, 0, sizeof(*addr_r));
	if (len == 0 || s[0] != '<') {
		*error_r = "path must start with '<'";
		return -1;
	}
	/* find the closing '>', which may not be inside a quoted local part */
	for (i = 1; i < len; i++) {
		char c = s[i];
		if (c == '\0') {
			*error_r = "NUL in path";
			return -1;
		}
		if (quoted && c == '\\') {
			i++;
			continue;
		}
		if (c == '"')
			quoted = !quoted;
		else if (c == '>' && !quoted)
			break;
	}
	if (i >= len) {
		*error_r = "missing '>' at end of path";
		return -1;
	}
	const char *inner = s + 1;
	size_t ilen = i - 1;
	*end_r = i + 1;
	if (ilen == 0) {
		if (!allow_null) {
			*error_r = "null path not allowed here";
			return -1;
		}
		addr_r->null_path = true;
		return 0;
	}
	if (inner[0] == '@') {
		size_t off = skip_source_route(inner, ilen);
		if (off == (size_t)-1) {
			*error_r = "malformed source route";
			return -1;
		}
		inner += off;
		ilen -= off;
	}
	if (ilen > MAIL_ADDRESS_MAX) {
		*error_r = "address too long";
		return -1;
	}
	return mail_address_parse(inner, ilen, addr_r, error_r);
}

size_t mail_address_format(const struct mail_address *addr, char *out, size_t outsize)
{
	size_t llen, dlen, total;

	if (addr->null_path) {
		if (outsize > 0)
			out[0] = '\0';
		return 0;
	}
	llen = strlen(addr->local);
	dlen = strlen(addr->domain);
	total = llen + 1 + dlen;
	if (outsize == 0)
		return total;
	size_t o = 0;
	for (size_t i = 0; i < llen && o + 1 < outsize; i++)
		out[o++] = addr->local[i];
	if (o + 1 < outsize)
		out[o++] = '@';
	for (size_t i = 0; i < dlen && o + 1 < outsize; i++)
		out[o++] = addr->domain[i];
	out[o] = '\0';
	return total;
}

/* The value of the first From: field, unfolded, at most size - 1 octets. */
static size_t header_from_value(const char *msg, size_t len, char *out, size_t size)
{
	size_t pos = 0, n = 0;
	bool in_from = false;
	while (pos < len) {
		const char *line = msg + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t line_len = nl != NULL ? (size_t)(nl - line) : len - pos;
		pos += line_len + (nl != NULL);
		if (line_len > 0 && line[line_len - 1] == '\r')
			line_len--;
		if (line_len == 0)
			break;   /* the end of the header */
		bool folded = line[0] == ' ' || line[0] == '\t';
		if (in_from && !folded)
			break;
		if (!in_from && !folded && line_len >= 5 && strncasecmp(line, "From:", 5) == 0) {
			in_from = true;
			line += 5;
			line_len -= 5;
		} else if (!in_from) {
			continue;
		}
		for (size_t i = 0; i < line_len && n + 1 < size; i++)
			out[n++] = line[i];
	}
	out[n] = '\0';
	return in_from ? n : 0;
}

int mail_header_from_domain(const char *msg, size_t len, char *domain_r, size_t size)
{
	char value[2048];
	if (header_from_value(msg, len, value, sizeof(value)) == 0)
		return -1;
	/* The angle-addr when there is one ("Name <a@b>"), else the addr-spec
	 * itself; a quoted display name may hold '@' and '<', so the address
	 * is the last <...> of the first mailbox. */
	char *addr = value;
	char *lt = strrchr(value, '<');
	if (lt != NULL) {
		addr = lt + 1;
		char *gt = strchr(addr, '>');
		if (gt != NULL)
			*gt = '\0';
	} else {
		char *comma = strchr(value, ',');
		if (comma != NULL)
			*comma = '\0';
	}
	char *at = strrchr(addr, '@');
	if (at == NULL)
		return -1;
	const char *d = at + 1;
	size_t dl = strspn(d, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-");
	if (dl == 0 || dl >= size || !mail_domain_is_valid(d, dl))
		return -1;
	for (size_t i = 0; i < dl; i++)
		domain_r[i] = (char)tolower((unsigned char)d[i]);
	domain_r[dl] = '\0';
	return 0;
}
