/*
 * sasl: response decoding and PLAIN parsing. Errors are short phrases
 * that the sessions put in their replies; they never quote the input.
 */
#include "sasl.h"

#include <string.h>

#include "base64.h"

enum sasl_mech sasl_mech_lookup(const char *name)
{
	if (str_eq_icase(name, "PLAIN"))
		return SASL_MECH_PLAIN;
	if (str_eq_icase(name, "LOGIN"))
		return SASL_MECH_LOGIN;
	return SASL_MECH_UNKNOWN;
}

int sasl_decode_response(const char *b64, size_t len, struct buf *out, const char **error_r)
{
	buf_wipe(out);
	if (len == 1 && b64[0] == '=')
		return 0;
	if (base64_decode(b64, len, out) < 0) {
		buf_wipe(out);
		*error_r = "Invalid base64 data";
		return -1;
	}
	return 0;
}

int sasl_plain_split(struct buf *msg, const char **authcid_r, const char **passwd_r,
		     size_t *passwd_len_r, const char **error_r)
{
	char *p = msg->data;
	size_t len = msg->len;
	char *nul1 = memchr(p, '\0', len);
	char *nul2 = nul1 == NULL ? NULL : memchr(nul1 + 1, '\0', len - (size_t)(nul1 + 1 - p));
	if (nul1 == NULL || nul2 == NULL) {
		*error_r = "Invalid PLAIN message (expected authzid NUL authcid NUL password)";
		return -1;
	}
	const char *authzid = p, *authcid = nul1 + 1, *passwd = nul2 + 1;
	size_t passwd_len = len - (size_t)(passwd - p);
	if (memchr(passwd, '\0', passwd_len) != NULL) {
		*error_r = "Invalid PLAIN message (NUL in the password)";
		return -1;
	}
	if (*authcid == '\0' || passwd_len == 0) {
		*error_r = "Invalid PLAIN message (empty user name or password)";
		return -1;
	}
	if (*authzid != '\0' && strcmp(authzid, authcid) != 0) {
		*error_r = "Authorization identity must be empty or the user name";
		return -1;
	}
	*authcid_r = authcid;
	*passwd_r = passwd;
	*passwd_len_r = passwd_len;
	return 0;
}
