#ifndef TERN_BASE64_H
#define TERN_BASE64_H
/*
 * base64: RFC 4648 section 4 encoding, as SASL uses it (RFC 4422, 4954,
 * 5034), and section 5's URL-safe alphabet without padding, as JOSE uses
 * it (RFC 7515 2, "base64url"). Decoding is strict: the alphabet only,
 * padding required (base64) or refused (base64url), no whitespace, no bits
 * set beyond the data.
 */
#include <stddef.h>

#include "buf.h"

/* Appends the encoding of in to out. 0, or -1 when out's cap is hit. */
int base64_encode(const void *in, size_t len, struct buf *out);
/* Appends the decoded bytes to out. 0, or -1 for malformed input or when
 * out's cap is hit (out may then hold part of the result). */
int base64_decode(const char *in, size_t len, struct buf *out);

/* The same with the URL-safe alphabet ('-' and '_' for '+' and '/') and no
 * '=' padding: an encoding is never padded, and a decoded input with '='
 * or of a length that is 1 modulo 4 is malformed. */
int base64url_encode(const void *in, size_t len, struct buf *out);
int base64url_decode(const char *in, size_t len, struct buf *out);

#endif
