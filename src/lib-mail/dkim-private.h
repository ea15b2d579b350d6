#ifndef TERN_DKIM_PRIVATE_H
#define TERN_DKIM_PRIVATE_H
/*
 * dkim-private: the relaxed canonicalizations (RFC 6376 3.4.2, 3.4.4) that
 * dkim.c signs, exposed for the unit tests.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Appends the relaxed form of one header field to out: the name
 * lower-cased, the value unfolded, runs of WSP made one SP, WSP around the
 * colon and at the ends of the value removed, then CRLF. field[0..len) is
 * the field as it appears, without its final CRLF; name_len is the offset
 * of its colon. -1 when out's cap is reached. */
int dkim_canon_header(const char *field, size_t len, size_t name_len, struct buf *out);

/* The relaxed body canonicalizer: WSP runs become one SP, WSP at line ends
 * and empty lines at the end of the body are dropped, and a non-empty body
 * ends with exactly one CRLF (an empty one canonicalizes to nothing). The
 * output goes to emit in pieces; the state is a few counters, whatever
 * the body's size. */
typedef void dkim_emit_fn(void *ctx, const void *data, size_t len);

struct dkim_body_canon {
	dkim_emit_fn *emit;
	void *ctx;
	uint64_t crlf_pending;  /* line ends seen, emitted only before more content */
	bool wsp_pending;       /* WSP seen, emitted as one SP before more content */
	bool cr_pending;        /* a CR that may begin a CRLF */
	bool nonempty;          /* content has been emitted */
	size_t out_len;
	char out[4096];
};

void dkim_body_canon_init(struct dkim_body_canon *c, dkim_emit_fn *emit, void *ctx);
void dkim_body_canon_feed(struct dkim_body_canon *c, const void *data, size_t len);
void dkim_body_canon_finish(struct dkim_body_canon *c);

#endif
