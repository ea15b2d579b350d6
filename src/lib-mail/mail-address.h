#ifndef TERN_MAIL_ADDRESS_H
#define TERN_MAIL_ADDRESS_H
/*
 * mail-address: RFC 5321 mailbox addresses and reverse/forward paths.
 *
 * tern names users by their full address. Addresses are normalised to lower
 * case (local part and domain) for lookup and storage; this is documented
 * behaviour. Quoted local parts are accepted as long as they contain no
 * control characters, '@' outside the quotes is the separator. Source routes
 * ("<@a,@b:user@c>") are accepted and the route is ignored (RFC 5321 4.1.2).
 */
#include <stdbool.h>
#include <stddef.h>

#define MAIL_LOCAL_MAX 64
#define MAIL_DOMAIN_MAX 255
#define MAIL_ADDRESS_MAX (MAIL_LOCAL_MAX + 1 + MAIL_DOMAIN_MAX)

struct mail_address {
	bool null_path;                        /* "<>" */
	char local[MAIL_LOCAL_MAX * 2 + 3];    /* as given, quotes kept, lower-cased */
	char domain[MAIL_DOMAIN_MAX + 1];      /* lower-cased; "[1.2.3.4]" literals kept */
};

/* Parses a bare "local@domain". Returns 0, or -1 with a short reason. */
int mail_address_parse(const char *s, size_t len, struct mail_address *addr_r,
		       const char **error_r);
/* As mail_address_parse(), and a local part may hold UTF-8 (RFC 6531
 * atext extended by UTF8-non-ascii): for user names, never for SMTP paths
 * without SMTPUTF8. Only ASCII is lower-cased. */
int mail_address_parse_utf8(const char *s, size_t len, struct mail_address *addr_r,
			    const char **error_r);
/* Whether s[0..len) is valid UTF-8: shortest forms only, no surrogates,
 * nothing above U+10FFFF, and no C1 control characters. */
bool mail_utf8_is_valid(const char *s, size_t len);
/* Parses a path "<local@domain>" or "<>" (only when allow_null). s points at
 * the '<'; *end_r is set just past the '>'. Returns 0 or -1 with a reason. */
int mail_address_parse_path(const char *s, size_t len, bool allow_null,
			    struct mail_address *addr_r, size_t *end_r,
			    const char **error_r);
/* Writes "local@domain" (or "" for the null path); returns the length
 * that would have been written, like snprintf. */
size_t mail_address_format(const struct mail_address *addr, char *out, size_t outsize);
/* true when the domain is a syntactically valid DNS name or address literal. */
bool mail_domain_is_valid(const char *domain, size_t len);
/* The domain of the address in a message's From: header field (RFC 5322
 * 3.6.2; the first one when it lists several), lower-cased, for DKIM's
 * choice of key. msg is the message's start: its header ends at the first
 * empty line or at len, folded lines are followed. 0, or -1 when there is
 * no From: field or no valid domain in it. */
int mail_header_from_domain(const char *msg, size_t len, char *domain_r, size_t size);

#endif
