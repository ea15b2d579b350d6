/*
 * fuzz-smtp-parser: one SMTP command line through smtp_parse_command and,
 * for MAIL/RCPT, the path and parameter parser; any other input also goes
 * through the bare-address and path parsers. Checks the documented output
 * invariants (lengths, NUL termination, lower case) and aborts on a breach.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mail-address.h"
#include "smtp-parser.h"

static void check_address(const struct mail_address *a)
{
	size_t ll = strnlen(a->local, sizeof(a->local));
	size_t dl = strnlen(a->domain, sizeof(a->domain));
	if (ll >= sizeof(a->local) || dl >= sizeof(a->domain))
		abort();
	if (a->null_path)
		return;
	if (ll == 0 || ll > MAIL_LOCAL_MAX || dl > MAIL_DOMAIN_MAX)
		abort();
	for (size_t i = 0; i < ll; i++)
		if ((unsigned char)a->local[i] < 0x20 || (unsigned char)a->local[i] > 0x7e ||
		    (a->local[i] >= 'A' && a->local[i] <= 'Z'))
			abort();
	/* empty only for RCPT TO:<Postmaster> */
	if (dl == 0 ? strcmp(a->local, "postmaster") != 0 : !mail_domain_is_valid(a->domain, dl))
		abort();
	/* formatting and re-parsing gives the same address */
	char out[MAIL_ADDRESS_MAX + 1];
	struct mail_address b;
	const char *error;
	size_t n = mail_address_format(a, out, sizeof(out));
	if (dl > 0 && (n >= sizeof(out) || mail_address_parse(out, n, &b, &error) < 0 ||
		       strcmp(a->local, b.local) != 0 || strcmp(a->domain, b.domain) != 0))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = malloc(size + 1);
	struct smtp_command cmd;
	struct smtp_path_args pa;
	struct mail_address addr;
	const char *error;
	size_t end;

	if (line == NULL)
		return 0;
	if (mail_address_parse((const char *)data, size, &addr, &error) == 0)
		check_address(&addr);
	if (mail_address_parse_path((const char *)data, size, true, &addr, &end, &error) == 0) {
		if (end > size)
			abort();
		check_address(&addr);
	}

	memcpy(line, data, size);
	if (smtp_parse_command(line, size, &cmd, &error) == 0) {
		if (memchr(data, '\0', size) != NULL || strlen(cmd.verb_text) > size ||
		    cmd.args < line || cmd.args > line + size)
			abort();
		int ret = -1;
		if (cmd.verb == SMTP_VERB_MAIL)
			ret = smtp_parse_mail_args(cmd.args, &pa, &error);
		else if (cmd.verb == SMTP_VERB_RCPT)
			ret = smtp_parse_rcpt_args(cmd.args, &pa, &error);
		if (ret == 0) {
			check_address(&pa.addr);
			if (pa.param_count > SMTP_PARAMS_MAX)
				abort();
			for (unsigned int i = 0; i < pa.param_count; i++) {
				const char *kw = pa.params[i].keyword;
				if (kw[0] == '\0' || smtp_path_args_param(&pa, kw) != &pa.params[i])
					abort();
				unsigned long long v;
				if (pa.params[i].value != NULL)
					(void)smtp_parse_size(pa.params[i].value, &v);
			}
		} else if (ret < 0 && (cmd.verb == SMTP_VERB_MAIL || cmd.verb == SMTP_VERB_RCPT) &&
			   error == NULL) {
			abort();
		}
	} else if (error == NULL) {
		abort();
	}
	free(line);
	return 0;
}
