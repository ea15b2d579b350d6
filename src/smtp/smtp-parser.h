#ifndef TERN_SMTP_PARSER_H
#define TERN_SMTP_PARSER_H
/*
 * smtp-parser: one SMTP/LMTP command line (without its CRLF) into a typed
 * command. No I/O, no state: the session decides what is allowed when.
 * Verbs are case-insensitive. The parser never allocates; pointers in the
 * result point into the caller's line buffer, which it may modify (NULs).
 */
#include <stddef.h>

#include "mail-address.h"

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO, SMTP_VERB_EHLO, SMTP_VERB_LHLO,
	SMTP_VERB_MAIL, SMTP_VERB_RCPT, SMTP_VERB_DATA,
	SMTP_VERB_RSET, SMTP_VERB_NOOP, SMTP_VERB_QUIT,
	SMTP_VERB_VRFY, SMTP_VERB_EXPN, SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS, SMTP_VERB_AUTH, SMTP_VERB_BDAT,
};

struct smtp_command {
	enum smtp_verb verb;
	const char *verb_text;  /* the verb as sent, NUL-terminated */
	char *args;             /* text after the verb and one space; "" if none */
};

#define SMTP_PARAMS_MAX 8
struct smtp_param {
	const char *keyword;    /* upper-cased in place */
	const char *value;      /* NULL when "KEYWORD" has no "=value" */
};

/* The MAIL FROM / RCPT TO arguments. */
struct smtp_path_args {
	struct mail_address addr;
	unsigned int param_count;
	struct smtp_param params[SMTP_PARAMS_MAX];
};

/* Splits the line into verb and arguments. line must have room for len + 1
 * bytes: line[len] is set to NUL. Trailing blanks of the arguments are
 * dropped. Returns 0, or -1 with *error_r for a line that is not a command at
 * all (empty, NUL bytes, control characters other than HT, non-ASCII verb).
 * An unknown but well-formed verb gives 0 and SMTP_VERB_UNKNOWN. */
int smtp_parse_command(char *line, size_t len, struct smtp_command *cmd_r,
		       const char **error_r);
/* Parses "FROM:<path> [params]" (MAIL; null path allowed) or "TO:<path>
 * [params]" (RCPT). A space after the colon is tolerated. RCPT TO:<Postmaster>
 * (no domain, RFC 5321 4.5.1) gives local "postmaster" and an empty domain.
 * More than SMTP_PARAMS_MAX parameters and empty values are refused; a
 * repeated keyword is returned once per occurrence; unknown keywords are returned for the session to judge. Returns 0, or -1
 * with a reason suitable for a 501 reply. */
int smtp_parse_mail_args(char *args, struct smtp_path_args *out, const char **error_r);
int smtp_parse_rcpt_args(char *args, struct smtp_path_args *out, const char **error_r);
/* Looks up a parameter by (upper-case) keyword; NULL when absent. */
const struct smtp_param *smtp_path_args_param(const struct smtp_path_args *a,
					       const char *keyword);
/* Strict decimal for SIZE=: 0 or -1 (not a number, or over UINT64 range). */
int smtp_parse_size(const char *s, unsigned long long *size_r);

#endif
