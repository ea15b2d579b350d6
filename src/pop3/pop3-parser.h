#ifndef TERN_POP3_PARSER_H
#define TERN_POP3_PARSER_H
/*
 * pop3-parser: one POP3 command line (without its CRLF) into a typed
 * command (RFC 1939, 2449, 2595, 5034). No I/O and no state. Keywords are
 * case-insensitive. Pointers in the result point into the caller's line,
 * which the parser may modify. PASS keeps its whole argument, spaces
 * included (RFC 1939 permits spaces in passwords).
 */
#include <stddef.h>

enum pop3_verb {
	POP3_VERB_UNKNOWN = 0,
	POP3_VERB_USER, POP3_VERB_PASS, POP3_VERB_APOP, POP3_VERB_AUTH,
	POP3_VERB_STAT, POP3_VERB_LIST, POP3_VERB_RETR, POP3_VERB_DELE,
	POP3_VERB_NOOP, POP3_VERB_RSET, POP3_VERB_QUIT, POP3_VERB_TOP,
	POP3_VERB_UIDL, POP3_VERB_CAPA, POP3_VERB_STLS, POP3_VERB_UTF8,
};

#define POP3_ARGS_MAX 2

struct pop3_command {
	enum pop3_verb verb;
	const char *verb_text;        /* as sent, NUL-terminated */
	unsigned int argc;            /* number of space-separated arguments */
	const char *argv[POP3_ARGS_MAX]; /* the first ones */
	const char *rest;             /* PASS: everything after "PASS " ("" if none);
				       * other verbs: argv[0] once split ("" if none) */
};

/* line must have room for len + 1 bytes: line[len] is set to NUL. Arguments
 * are split on runs of spaces (PASS excepted). Returns 0, or -1 with *error_r
 * (empty line, NUL byte, control characters, more arguments than any command
 * takes, keyword over 4 characters). */
int pop3_parse_command(char *line, size_t len, struct pop3_command *cmd_r,
		       const char **error_r);
/* A message number: decimal digits only, 1..UINT32_MAX. 0 or -1. */
int pop3_parse_msgnum(const char *s, unsigned int *n_r);
/* A non-negative line count for TOP: decimal digits only, fits in long. */
int pop3_parse_linecount(const char *s, long *n_r);

#endif
