/*
 * smtp-parser: SMTP/LMTP command lines (RFC 5321, 2033, 1870, 6152) into
 * typed commands, and MAIL/RCPT arguments into a path plus parameters.
 *
 * Invariants: the parser is stateless and never allocates; every pointer it
 * returns points into the caller's line, which it splits in place with NULs.
 * A line with a NUL byte or a control character other than HT is refused
 * outright: the line has an explicit length, and a NUL inside it would make
 * later C-string handling see a different command than the one checked here.
 * Whether a verb is allowed in the current state is the session's business.
 */
#include "smtp-parser.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

static const struct {
	const char *name;
	enum smtp_verb verb;
} verbs[] = {
	{ "HELO", SMTP_VERB_HELO }, { "EHLO", SMTP_VERB_EHLO },
	{ "LHLO", SMTP_VERB_LHLO }, { "MAIL", SMTP_VERB_MAIL },
	{ "RCPT", SMTP_VERB_RCPT }, { "DATA", SMTP_VERB_DATA },
	{ "RSET", SMTP_VERB_RSET }, { "NOOP", SMTP_VERB_NOOP },
	{ "QUIT", SMTP_VERB_QUIT }, { "VRFY", SMTP_VERB_VRFY },
	{ "EXPN", SMTP_VERB_EXPN }, { "HELP", SMTP_VERB_HELP },
	{ "STARTTLS", SMTP_VERB_STARTTLS }, { "AUTH", SMTP_VERB_AUTH },
	{ "BDAT", SMTP_VERB_BDAT },
};

/* Longest verb we compare; anything longer is simply unknown. */
#define SMTP_VERB_MAX 16

int smtp_parse_command(char *line, size_t len, struct smtp_command *cmd_r,
		       const char **error_r)
{
	size_t i, vlen;

	memset(cmd_r, 0, sizeof(*cmd_r));
	if (str_check_command_line(line, len, true, error_r) < 0)
		return -1;
	for (vlen = 0; vlen < len && line[vlen] != ' '; vlen++) {
		unsigned char c = (unsigned char)line[vlen];
		if (c > 0x7e || c <= 0x20) {
			*error_r = "malformed command verb";
			return -1;
		}
	}
	if (vlen == 0) {
		*error_r = "command line starts with a space";
		return -1;
	}
	cmd_r->verb = SMTP_VERB_UNKNOWN;
	if (vlen <= SMTP_VERB_MAX) {
		for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
			if (strlen(verbs[i].name) == vlen &&
			    strncasecmp(line, verbs[i].name, vlen) == 0) {
				cmd_r->verb = verbs[i].verb;
				break;
			}
		}
	}
	cmd_r->verb_text = line;
	if (vlen == len) {
		line[len] = '\0';
		cmd_r->args = line + len;
		return 0;
	}
	line[vlen] = '\0';
	/* trailing blanks are dropped: broken clients send "DATA " */
	size_t end = len;
	while (end > vlen + 1 && (line[end - 1] == ' ' || line[end - 1] == '\t'))
		end--;
	line[end] = '\0';
	cmd_r->args = line + vlen + 1;
	return 0;
}

static bool is_keyword_char(unsigned char c, bool first)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
		return true;
	return !first && c == '-';
}

/* RFC 5321 esmtp-value: printable ASCII except '=' and SP. */
static bool is_value_char(unsigned char c)
{
	return c >= 33 && c <= 126 && c != '=';
}

/* Parses the text after the path: nothing, or SP-separated
 * "KEYWORD[=value]" (RFC 5321 4.1.2 esmtp-param). */
static int parse_params(char *p, struct smtp_path_args *out, const char **error_r)
{
	if (*p != '\0' && *p != ' ') {
		*error_r = "unexpected text after the address";
		return -1;
	}
	for (;;) {
		while (*p == ' ')
			*p++ = '\0';
		if (*p == '\0')
			return 0;
		char *kw = p;
		while (*p != '\0' && *p != ' ')
			p++;
		if (*p == ' ')
			*p++ = '\0';
		/* kw is now a NUL-terminated token */
		char *q = kw;
		if (!is_keyword_char((unsigned char)*q, true)) {
			*error_r = "malformed parameter keyword";
			return -1;
		}
		for (; is_keyword_char((unsigned char)*q, false); q++)
			if (*q >= 'a' && *q <= 'z')
				*q = (char)(*q - 'a' + 'A');
		const char *value = NULL;
		if (*q == '=') {
			*q++ = '\0';
			value = q;
			if (*q == '\0') {
				*error_r = "empty parameter value";
				return -1;
			}
			for (; *q != '\0'; q++) {
				if (!is_value_char((unsigned char)*q)) {
					*error_r = "malformed parameter value";
					return -1;
				}
			}
		} else if (*q != '\0') {
			*error_r = "malformed parameter keyword";
			return -1;
		}
		/* A repeated keyword is kept, not refused: clients such as
		 * Python's smtplib send SIZE= twice when the caller adds one,
		 * and the session checks every occurrence. */
		if (out->param_count >= SMTP_PARAMS_MAX) {
			*error_r = "too many parameters";
			return -1;
		}
		out->params[out->param_count].keyword = kw;
		out->params[out->param_count].value = value;
		out->param_count++;
	}
}

static int parse_path_args(char *args, const char *prefix, bool is_mail,
			   struct smtp_path_args *out, const char **error_r)
{
	size_t plen = strlen(prefix);
	size_t end;

	memset(out, 0, sizeof(*out));
	while (*args == ' ')
		args++;
	if (strncasecmp(args, prefix, plen) != 0) {
		*error_r = is_mail ? "syntax: MAIL FROM:<address>" :
			"syntax: RCPT TO:<address>";
		return -1;
	}
	args += plen;
	while (*args == ' ')
		args++;
	if (*args != '<') {
		*error_r = "address must be enclosed in <>";
		return -1;
	}
	size_t len = strlen(args);
	if (!is_mail && len >= 12 && strncasecmp(args, "<postmaster>", 12) == 0 &&
	    (args[12] == '\0' || args[12] == ' ')) {
		/* RFC 5321 4.5.1: "Postmaster" without a domain must be accepted;
		 * the session resolves it to its own host. */
		memcpy(out->addr.local, "postmaster", sizeof("postmaster"));
		out->addr.domain[0] = '\0';
		end = 12;
	} else if (mail_address_parse_path(args, len, is_mail, &out->addr, &end,
					   error_r) < 0) {
		return -1;
	}
	return parse_params(args + end, out, error_r);
}

int smtp_parse_mail_args(char *args, struct smtp_path_args *out, const char **error_r)
{
	return parse_path_args(args, "FROM:", true, out, error_r);
}

int smtp_parse_rcpt_args(char *args, struct smtp_path_args *out, const char **error_r)
{
	return parse_path_args(args, "TO:", false, out, error_r);
}

const struct smtp_param *smtp_path_args_param(const struct smtp_path_args *a,
					       const char *keyword)
{
	for (unsigned int i = 0; i < a->param_count; i++)
		if (strcasecmp(a->params[i].keyword, keyword) == 0)
			return &a->params[i];
	return NULL;
}

int smtp_parse_size(const char *s, unsigned long long *size_r)
{
	unsigned long long v = 0;

	if (s == NULL || *s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		unsigned int d = (unsigned int)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*size_r = v;
	return 0;
}
