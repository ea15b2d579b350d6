/*
 * base64: table-driven, four characters at a time.
 */
#include "base64.h"

#include <stdint.h>

static const char alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_encode(const void *in, size_t len, struct buf *out)
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
		if (buf_append(out, q, sizeof(q)) < 0)
			return -1;
	}
	return 0;
}

static int value_of(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int base64_decode(const char *in, size_t len, struct buf *out)
{
	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		int v[4];
		int pad = 0;
		for (int k = 0; k < 4; k++) {
			char c = in[i + k];
			if (c == '=' && last && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad > 0 || (v[k] = value_of(c)) < 0)
				return -1; /* data after padding, or not in the alphabet */
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		unsigned char b[3] = { (unsigned char)(w >> 16), (unsigned char)(w >> 8),
				       (unsigned char)w };
		/* Bits past the data must be zero (canonical encoding). */
		if ((pad == 1 && (w & 0xff) != 0) || (pad == 2 && (w & 0xffff) != 0))
			return -1;
		if (buf_append(out, b, (size_t)(3 - pad)) < 0)
			return -1;
	}
	return 0;
}
