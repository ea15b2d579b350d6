#ifndef TERN_BASE64_H
#define TERN_BASE64_H
/*
 * base64: RFC 4648 section 4 encoding, as SASL uses it (RFC 4422, 4954,
 * 5034). Decoding is strict: the alphabet only, padding required, no
 * whitespace, no bits set beyond the data.
 */
#include <stddef.h>

#include "buf.h"

/* Appends the encoding of in to out. 0, or -1 when out's cap is hit. */
int base64_encode(const void *in, size_t len, struct buf *out);
/* Appends the decoded bytes to out. 0, or -1 for malformed input or when
 * out's cap is hit (out may then hold part of the result). */
int base64_decode(const char *in, size_t len, struct buf *out);

#endif
