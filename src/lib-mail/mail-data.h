#ifndef TERN_MAIL_DATA_H
#define TERN_MAIL_DATA_H
/*
 * mail-data: the byte-level transforms of message bodies.
 *
 * - The SMTP/LMTP DATA decoder: removes dot-stuffing and finds the end of the
 *   data, which is only CRLF "." CRLF (a bare LF never ends it: no SMTP
 *   smuggling). Bare CR is passed through unchanged but counted, so the
 *   session can refuse the message. Bare LF is counted too and, by default,
 *   passed through (for a session that refuses it); with normalize_lf it
 *   ends a line, is stored as CRLF, and a dot after it is unstuffed as after
 *   CRLF, but it still never starts the end of the data. The data begins at
 *   a line start (right after the DATA reply).
 * - The POP3 encoder: adds dot-stuffing, guarantees the output ends with CRLF
 *   even when the stored message does not, appends the terminating ".\r\n",
 *   and can stop after the headers plus N body lines (TOP).
 * - LF to CRLF normalisation for local delivery from a pipe.
 *
 * All three are incremental: input may arrive split at any byte and the
 * output is the same as for the whole input at once.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct mail_data_decoder {
	int state;            /* private */
	bool discard;         /* set by the caller: count bytes, append nothing */
	bool normalize_lf;    /* set by the caller after init: bare LF -> CRLF */
	uint64_t size;        /* decoded bytes so far (appended or discarded) */
	uint64_t bare_lf;     /* LF not preceded by CR */
	uint64_t bare_cr;     /* CR not followed by LF */
	size_t line_len;      /* current decoded line length (private) */
	size_t max_line_len;  /* longest decoded line, without its CRLF */
};

void mail_data_decoder_init(struct mail_data_decoder *d);
/* Feeds len bytes. Decoded bytes are appended to out (unless d->discard, or
 * the append fails because out's cap is reached, in which case d->discard is
 * set and counting continues). Returns the number of input bytes consumed;
 * when the end of data is found *done_r is set to true and the bytes after
 * the final ".\r\n" are not consumed. The decoded data excludes the final
 * CRLF "." CRLF except for the CRLF that ends the last line. */
size_t mail_data_decoder_feed(struct mail_data_decoder *d, const char *in,
			      size_t len, struct buf *out, bool *done_r);

struct mail_pop3_encoder {
	int state;             /* private */
	long body_lines_left;  /* -1: whole message; else body lines still to send (TOP) */
	bool in_headers;       /* private */
	bool finished;         /* set when TOP's limit is reached: further input is ignored */
};

/* body_lines < 0: RETR (whole message). body_lines >= 0: TOP n. */
void mail_pop3_encoder_init(struct mail_pop3_encoder *e, long body_lines);
/* Appends the dot-stuffed form of the input to out. */
void mail_pop3_encoder_feed(struct mail_pop3_encoder *e, const char *in, size_t len,
			    struct buf *out);
/* Appends a CRLF if the last line was unterminated, then ".\r\n". */
void mail_pop3_encoder_finish(struct mail_pop3_encoder *e, struct buf *out);

struct mail_crlf_normaliser {
	bool last_cr;     /* private */
	uint64_t size;    /* bytes written so far */
	uint64_t bare_lf; /* LF not preceded by CR in the input */
	uint64_t bare_cr; /* CR not followed by LF in the input */
};
void mail_crlf_normaliser_init(struct mail_crlf_normaliser *n);
/* Converts bare LF to CRLF (and a bare CR to CRLF) into out, counting both
 * so the caller can refuse them instead. Returns 0 or -1 when out's cap is
 * reached. */
int mail_crlf_normalise(struct mail_crlf_normaliser *n, const char *in, size_t len,
			struct buf *out);
/* Ends the normalisation: a trailing bare CR becomes CRLF (and counts). */
int mail_crlf_normalise_finish(struct mail_crlf_normaliser *n, struct buf *out);

/* Offset just past the empty line that ends the header block (the start of
 * the body), or len when there is no body separator. Accepts CRLF. */
size_t mail_header_end(const char *msg, size_t len);

#endif
