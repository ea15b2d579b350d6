/*
 * base64: table-driven, four characters at a time. base64 and base64url
 * share one encoder and one decoder, told the alphabet and whether the
 * last quantum is padded.
 */
#include "base64.h"

#include <stdbool.h>
#include <stdint.h>

static const char alphabet_std[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char alphabet_url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int encode(const char *alphabet, bool pad, const void *in, size_t len, struct buf *out)
{
	const unsigned char *p = in;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		char q[4] = { alphabet[(v >> 18) & 63], alphabet[(v >> 12) & 63],
			      i + 1 < len ? alphabet[(v >> 6) & 63] : '=',
			      i + 2 < len ? alphabet[v & 63] : '=' };
		size_t n = pad ? 4 : len - i >= 3 ? 4 : len - i + 1;
		if (buf_append(out, q, n) < 0)
			return -1;
	}
	return 0;
}

int base64_encode(const void *in, size_t len, struct buf *out)
{
	return encode(alphabet_std, true, in, len, out);
}

int base64url_encode(const void *in, size_t len, struct buf *out)
{
	return encode(alphabet_url, false, in, len, out);
}

static int value_of(char c, bool url)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (url ? '-' : '+'))
		return 62;
	if (c == (url ? '_' : '/'))
		return 63;
	return -1;
}

/* Decodes one quantum of n (2 to 4) characters, the last pad of them
 * being '=' (base64) or absent (base64url). */
static int decode_quantum(const char *q, size_t n, bool url, struct buf *out)
{
	int v[4] = { 0, 0, 0, 0 };
	int pad = 4 - (int)n;
	for (size_t k = 0; k < n; k++) {
		char c = q[k];
		if (!url && c == '=' && k >= 2 && (k == 3 || q[3] == '=')) {
			pad = 4 - (int)k;
			break;
		}
		if ((v[k] = value_of(c, url)) < 0)
			return -1; /* not in the alphabet, or data after padding */
	}
	uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		     (uint32_t)v[3];
	unsigned char b[3] = { (unsigned char)(w >> 16), (unsigned char)(w >> 8),
			       (unsigned char)w };
	/* Bits past the data must be zero (canonical encoding). */
	if ((pad == 1 && (w & 0xff) != 0) || (pad == 2 && (w & 0xffff) != 0))
		return -1;
	return buf_append(out, b, (size_t)(3 - pad));
}

int base64_decode(const char *in, size_t len, struct buf *out)
{
	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		/* '=' only in the last quantum */
		if (i + 4 < len && (in[i + 2] == '=' || in[i + 3] == '='))
			return -1;
		if (decode_quantum(in + i, 4, false, out) < 0)
			return -1;
	}
	return 0;
}

int base64url_decode(const char *in, size_t len, struct buf *out)
{
	if (len % 4 == 1)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		size_t n = len - i < 4 ? len - i : 4;
		if (decode_quantum(in + i, n, true, out) < 0)
			return -1;
	}
	return 0;
}
