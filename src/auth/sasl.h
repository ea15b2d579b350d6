#ifndef TERN_SASL_H
#define TERN_SASL_H
/*
 * sasl: the server side of the SASL mechanisms tern offers (RFC 4422):
 * PLAIN (RFC 4616) for POP3 and SMTP, LOGIN (draft-murchison-sasl-login)
 * for SMTP clients that know nothing else. Both carry the password in
 * clear, so the sessions offer them only where plaintext is allowed.
 *
 * No I/O: the protocol sessions frame the challenges and responses; this
 * module decodes them. Decoded secrets live in caller-owned bufs, which the
 * caller wipes.
 */
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

enum sasl_mech { SASL_MECH_UNKNOWN = 0, SASL_MECH_PLAIN, SASL_MECH_LOGIN };

/* Case-insensitive mechanism name lookup. */
enum sasl_mech sasl_mech_lookup(const char *name);

/* Decodes one base64 client response into out (cleared first; its cap
 * bounds the size). "=" is the empty response (RFC 4954 4, RFC 5034 4).
 * 0, or -1 with *error_r. */
int sasl_decode_response(const char *b64, size_t len, struct buf *out, const char **error_r);

/* Splits a decoded PLAIN message "[authzid] NUL authcid NUL passwd". The
 * authorization identity must be empty or equal to authcid (tern has no
 * proxy logins). *authcid_r and *passwd_r point into msg, which is
 * NUL-split in place; the password may not contain NUL. 0, or -1 with
 * *error_r. */
int sasl_plain_split(struct buf *msg, const char **authcid_r, const char **passwd_r,
		     size_t *passwd_len_r, const char **error_r);

#endif
