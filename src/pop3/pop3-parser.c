/*
 * pop3-parser: POP3 command lines (RFC 1939, 2449, 2595, 5034) into typed
 * commands, and the numeric arguments into integers.
 *
 * Invariants: stateless, never allocates; results point into the caller's
 * line, which is split in place with NULs (line[len] is written too). A NUL
 * byte or a control character anywhere in the line refuses the whole line,
 * so nothing downstream sees a shorter command than the one checked here.
 * PASS is never split: its argument is everything after "PASS ", because
 * RFC 1939 lets passwords contain spaces. Numbers are strict decimal: no
 * sign, no blanks, no suffix; leading zeros are harmless and accepted.
 */
#include "pop3-parser.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

static const struct {
	const char *name;
	enum pop3_verb verb;
} verbs[] = {
	{ "USER", POP3_VERB_USER }, { "PASS", POP3_VERB_PASS },
	{ "APOP", POP3_VERB_APOP }, { "AUTH", POP3_VERB_AUTH },
	{ "STAT", POP3_VERB_STAT }, { "LIST", POP3_VERB_LIST },
	{ "RETR", POP3_VERB_RETR }, { "DELE", POP3_VERB_DELE },
	{ "NOOP", POP3_VERB_NOOP }, { "RSET", POP3_VERB_RSET },
	{ "QUIT", POP3_VERB_QUIT }, { "TOP", POP3_VERB_TOP },
	{ "UIDL", POP3_VERB_UIDL }, { "CAPA", POP3_VERB_CAPA },
	{ "STLS", POP3_VERB_STLS }, { "UTF8", POP3_VERB_UTF8 },
};

/* RFC 2449: keywords are three or four characters; longer is never valid. */
#define POP3_KEYWORD_MAX 4

int pop3_parse_command(char *line, size_t len, struct pop3_command *cmd_r,
		       const char **error_r)
{
	size_t i, klen;

	memset(cmd_r, 0, sizeof(*cmd_r));
	if (str_check_command_line(line, len, false, error_r) < 0)
		return -1;
	for (klen = 0; klen < len && line[klen] != ' '; klen++) {
		if ((unsigned char)line[klen] > 0x7e) {
			*error_r = "non-ASCII command keyword";
			return -1;
		}
	}
	if (klen == 0) {
		*error_r = "command line starts with a space";
		return -1;
	}
	if (klen > POP3_KEYWORD_MAX) {
		*error_r = "command keyword too long";
		return -1;
	}
	cmd_r->verb = POP3_VERB_UNKNOWN;
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strlen(verbs[i].name) == klen &&
		    strncasecmp(line, verbs[i].name, klen) == 0) {
			cmd_r->verb = verbs[i].verb;
			break;
		}
	}
	cmd_r->verb_text = line;
	line[len] = '\0';
	if (klen == len) {
		cmd_r->rest = line + len;
		return 0;
	}
	line[klen] = '\0';
	char *p = line + klen + 1;
	cmd_r->rest = p;
	if (cmd_r->verb == POP3_VERB_PASS) {
		if (*p != '\0') {
			cmd_r->argc = 1;
			cmd_r->argv[0] = p;
		}
		return 0;
	}
	/* split on runs of spaces; leading and trailing blanks are tolerated */
	for (;;) {
		while (*p == ' ')
			*p++ = '\0';
		if (*p == '\0')
			break;
		if (cmd_r->argc >= POP3_ARGS_MAX) {
			*error_r = "too many arguments";
			return -1;
		}
		cmd_r->argv[cmd_r->argc++] = p;
		while (*p != '\0' && *p != ' ')
			p++;
	}
	cmd_r->rest = cmd_r->argc > 0 ? cmd_r->argv[0] : line + len;
	return 0;
}

/* Strict unsigned decimal into *v_r, refusing values above max. */
static int parse_decimal(const char *s, uint64_t max, uint64_t *v_r)
{
	uint64_t v = 0;

	if (s == NULL || *s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		uint64_t d = (uint64_t)(*s - '0');
		if (v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*v_r = v;
	return 0;
}

int pop3_parse_msgnum(const char *s, unsigned int *n_r)
{
	uint64_t v;

	if (parse_decimal(s, UINT32_MAX, &v) < 0 || v == 0 || v > UINT_MAX)
		return -1;
	*n_r = (unsigned int)v;
	return 0;
}

int pop3_parse_linecount(const char *s, long *n_r)
{
	uint64_t v;

	if (parse_decimal(s, (uint64_t)LONG_MAX, &v) < 0)
		return -1;
	*n_r = (long)v;
	return 0;
}
