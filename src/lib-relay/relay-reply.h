#ifndef TERN_RELAY_REPLY_H
#define TERN_RELAY_REPLY_H
/*
 * relay-reply: the client side's SMTP reply parser (RFC 5321 4.2), fed with
 * whatever bytes the connection gave, in any split. No I/O.
 *
 * A reply is one or more lines "CODE-text" ending with "CODE text" (or a
 * bare "CODE"), all with the same three-digit code. The parser keeps at
 * most RELAY_REPLY_LINE_MAX octets of one line and RELAY_REPLY_LINES_MAX
 * lines of one reply: past either the reply is an error, never a bigger
 * buffer, so a hostile server costs a fixed amount of memory. A line may end
 * with CRLF or a bare LF (the CR is dropped).
 */
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

#define RELAY_REPLY_LINE_MAX 4096
#define RELAY_REPLY_LINES_MAX 100

struct relay_reply {
	int code;                /* 200..599 */
	unsigned int line_count;
	/* The text of each line after "CODE-" / "CODE ", each followed by '\n'
	 * (so at most LINES_MAX * (LINE_MAX + 1) octets). */
	struct buf text;
};

struct relay_reply_parser {
	struct relay_reply reply;
	char line[RELAY_REPLY_LINE_MAX + 1];
	size_t line_len;
	bool complete;           /* reply holds a whole reply */
};

void relay_reply_parser_init(struct relay_reply_parser *p);
void relay_reply_parser_deinit(struct relay_reply_parser *p);

/* Consumes bytes of data until a reply is complete or the data is used up;
 * *consumed_r says how many. Returns 1 when p->reply is a complete reply
 * (bytes after it are left for the next call, which starts a new reply),
 * 0 when more bytes are needed, -1 with *error_r (a static string) for a
 * malformed or overlong reply: the connection is then unusable. */
int relay_reply_parse(struct relay_reply_parser *p, const char *data, size_t len,
		      size_t *consumed_r, const char **error_r);

/* The n-th line's text (not NUL-terminated: *len_r octets); NULL past the
 * last line. */
const char *relay_reply_line(const struct relay_reply *r, unsigned int n, size_t *len_r);
/* The enhanced status code (RFC 3463) at the start of the first line,
 * when its class matches the reply code's: written to out (NUL-terminated),
 * true; false and out = "" when there is none. */
bool relay_reply_status(const struct relay_reply *r, char *out, size_t outsize);
/* "CODE text text...": the lines joined with a space, every octet outside
 * printable ASCII as '?', truncated to outsize - 1. */
void relay_reply_summary(const struct relay_reply *r, char *out, size_t outsize);

#endif
