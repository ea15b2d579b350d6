/*
 * sasl: response decoding, PLAIN parsing, and the PLAIN/LOGIN exchange
 * built on them. Errors are short phrases that the sessions put in their
 * replies; they never quote the input.
 *
 * Invariants of an exchange:
 * - It moves START -> (PLAIN_MESSAGE | LOGIN_USER -> LOGIN_PASSWORD) ->
 *   FINISHED and never back; every DONE or FAILED ends in FINISHED.
 * - x->decoded holds decoded client data only during a call: it is wiped
 *   before every return, and was sized at init so it never reallocates
 *   (a reallocation would leave a copy of a password in freed memory).
 * - The caller's password buf is written only when the exchange is DONE,
 *   and wiped when the password does not fit; it never holds part of one.
 */
#include "sasl.h"

#include <string.h>

#include "base64.h"
#include "log.h"

/* base64 of "Username:" and "Password:" (draft-murchison-sasl-login). */
#define LOGIN_CHALLENGE_USER "VXNlcm5hbWU6"
#define LOGIN_CHALLENGE_PASSWORD "UGFzc3dvcmQ6"

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

struct plain_parts {
	const char *authcid, *passwd;
	size_t authcid_len, passwd_len;
};

/* Checks a decoded PLAIN message, in the order the errors are reported. */
static enum sasl_error plain_parse(const char *msg, size_t len, struct plain_parts *parts_r,
				   const char **error_r)
{
	const char *nul1 = memchr(msg, '\0', len);
	const char *nul2 = nul1 == NULL ? NULL
					: memchr(nul1 + 1, '\0', len - (size_t)(nul1 + 1 - msg));
	if (nul1 == NULL || nul2 == NULL) {
		*error_r = "Invalid PLAIN message (expected authzid NUL authcid NUL password)";
		return SASL_ERROR_MALFORMED;
	}
	const char *authcid = nul1 + 1, *passwd = nul2 + 1;
	size_t authzid_len = (size_t)(nul1 - msg), authcid_len = (size_t)(nul2 - authcid);
	size_t passwd_len = len - (size_t)(passwd - msg);
	if (memchr(passwd, '\0', passwd_len) != NULL) {
		*error_r = "Invalid PLAIN message (NUL in the password)";
		return SASL_ERROR_MALFORMED;
	}
	if (authcid_len == 0 || passwd_len == 0) {
		*error_r = "Invalid PLAIN message (empty user name or password)";
		return SASL_ERROR_MALFORMED;
	}
	if (authzid_len != 0 &&
	    (authzid_len != authcid_len || memcmp(msg, authcid, authcid_len) != 0)) {
		*error_r = "Authorization identity must be empty or the user name";
		return SASL_ERROR_AUTHZID;
	}
	parts_r->authcid = authcid;
	parts_r->authcid_len = authcid_len;
	parts_r->passwd = passwd;
	parts_r->passwd_len = passwd_len;
	return SASL_ERROR_NONE;
}

int sasl_plain_split(struct buf *msg, const char **authcid_r, const char **passwd_r,
		     size_t *passwd_len_r, const char **error_r)
{
	struct plain_parts parts;
	if (plain_parse(msg->data, msg->len, &parts, error_r) != SASL_ERROR_NONE)
		return -1;
	/* authcid ends at the second NUL, passwd at the buf's own NUL. */
	*authcid_r = parts.authcid;
	*passwd_r = parts.passwd;
	*passwd_len_r = parts.passwd_len;
	return 0;
}

/* --- the exchange --- */

void sasl_exchange_init(struct sasl_exchange *x, enum sasl_mech mech, size_t max_response)
{
	if (mech != SASL_MECH_PLAIN && mech != SASL_MECH_LOGIN)
		panic("sasl: exchange for an unknown mechanism");
	if (max_response == 0)
		panic("sasl: max_response is 0");
	memset(x, 0, sizeof(*x));
	x->mech = mech;
	x->state = SASL_EXCHANGE_START;
	x->max_response = max_response;
	/* Strict base64 of at most max_response octets decodes to at most
	 * this; +1 keeps the cap non-zero (0 would mean "no cap"). */
	size_t cap = max_response / 4 * 3 + 1;
	buf_init(&x->decoded, cap);
	if (buf_reserve(&x->decoded, cap) < 0)
		panic("sasl: cannot reserve %zu octets", cap);
}

void sasl_exchange_deinit(struct sasl_exchange *x)
{
	buf_wipe(&x->decoded);
	buf_deinit(&x->decoded);
	explicit_bzero(x->user, sizeof(x->user));
	x->state = SASL_EXCHANGE_FINISHED;
}

static enum sasl_result finish(struct sasl_exchange *x, enum sasl_result r)
{
	buf_wipe(&x->decoded);
	if (r != SASL_CONTINUE)
		x->state = SASL_EXCHANGE_FINISHED;
	return r;
}

static enum sasl_result fail(struct sasl_exchange *x, struct sasl_output *out,
			     enum sasl_error error, const char *text)
{
	explicit_bzero(x->user, sizeof(x->user));
	out->error = error;
	out->error_text = text;
	return finish(x, SASL_FAILED);
}

static enum sasl_result challenge(struct sasl_exchange *x, struct sasl_output *out,
				  enum sasl_exchange_state next, const char *text)
{
	x->state = next;
	out->challenge = text;
	return finish(x, SASL_CONTINUE);
}

/* Decodes one response into x->decoded; SASL_ERROR_NONE or the failure. */
static enum sasl_error decode(struct sasl_exchange *x, const char *b64, size_t len,
			      const char **error_r)
{
	if (len > x->max_response) {
		*error_r = "Authentication response too long";
		return SASL_ERROR_TOO_LONG;
	}
	if (sasl_decode_response(b64, len, &x->decoded, error_r) < 0)
		return SASL_ERROR_BASE64;
	return SASL_ERROR_NONE;
}

/* Copies a user name that has passed its checks. */
static void set_user(struct sasl_exchange *x, const char *name, size_t len)
{
	memcpy(x->user, name, len);
	x->user[len] = '\0';
}

static enum sasl_result done(struct sasl_exchange *x, const char *passwd, size_t len,
			     struct buf *password, struct sasl_output *out)
{
	buf_wipe(password);
	if (buf_append(password, passwd, len) < 0) {
		buf_wipe(password);
		return fail(x, out, SASL_ERROR_TOO_LONG, "Password too long");
	}
	out->user = x->user;
	return finish(x, SASL_DONE);
}

static enum sasl_result plain_message(struct sasl_exchange *x, const char *b64, size_t len,
				      struct buf *password, struct sasl_output *out)
{
	const char *error;
	enum sasl_error e = decode(x, b64, len, &error);
	struct plain_parts parts;
	if (e == SASL_ERROR_NONE)
		e = plain_parse(x->decoded.data, x->decoded.len, &parts, &error);
	if (e != SASL_ERROR_NONE)
		return fail(x, out, e, error);
	if (parts.authcid_len > SASL_USER_MAX)
		return fail(x, out, SASL_ERROR_USER, "Invalid user name (expected user@domain)");
	set_user(x, parts.authcid, parts.authcid_len);
	return done(x, parts.passwd, parts.passwd_len, password, out);
}

static enum sasl_result login_user(struct sasl_exchange *x, const char *b64, size_t len,
				   struct sasl_output *out)
{
	const char *error;
	enum sasl_error e = decode(x, b64, len, &error);
	if (e != SASL_ERROR_NONE)
		return fail(x, out, e, error);
	if (x->decoded.len > SASL_USER_MAX || memchr(x->decoded.data, '\0', x->decoded.len) != NULL)
		return fail(x, out, SASL_ERROR_USER, "Invalid user name (expected user@domain)");
	set_user(x, x->decoded.data, x->decoded.len);
	return challenge(x, out, SASL_EXCHANGE_LOGIN_PASSWORD, LOGIN_CHALLENGE_PASSWORD);
}

static enum sasl_result login_password(struct sasl_exchange *x, const char *b64, size_t len,
				       struct buf *password, struct sasl_output *out)
{
	const char *error;
	enum sasl_error e = decode(x, b64, len, &error);
	if (e != SASL_ERROR_NONE)
		return fail(x, out, e, error);
	if (x->decoded.len == 0 || memchr(x->decoded.data, '\0', x->decoded.len) != NULL)
		return fail(x, out, SASL_ERROR_PASSWORD, "Invalid password (empty, or with a NUL)");
	return done(x, x->decoded.data, x->decoded.len, password, out);
}

enum sasl_result sasl_exchange_start(struct sasl_exchange *x, const char *initial, size_t len,
				     struct buf *password, struct sasl_output *out_r)
{
	memset(out_r, 0, sizeof(*out_r));
	if (x->state != SASL_EXCHANGE_START)
		panic("sasl: exchange started twice");
	bool none = initial == NULL || len == 0;
	if (x->mech == SASL_MECH_PLAIN) {
		/* RFC 4954 4 / RFC 5034 4: "=" is an empty initial response;
		 * an empty PLAIN message is asked for, as if none were sent. */
		if (none || (len == 1 && initial[0] == '='))
			return challenge(x, out_r, SASL_EXCHANGE_PLAIN_MESSAGE, "");
		return plain_message(x, initial, len, password, out_r);
	}
	if (none)
		return challenge(x, out_r, SASL_EXCHANGE_LOGIN_USER, LOGIN_CHALLENGE_USER);
	return login_user(x, initial, len, out_r);
}

enum sasl_result sasl_exchange_step(struct sasl_exchange *x, const char *line, size_t len,
				    struct buf *password, struct sasl_output *out_r)
{
	memset(out_r, 0, sizeof(*out_r));
	if (x->state == SASL_EXCHANGE_START || x->state == SASL_EXCHANGE_FINISHED)
		panic("sasl: response without a pending challenge");
	if (len == 1 && line[0] == '*')
		return fail(x, out_r, SASL_ERROR_CANCELLED, "Authentication cancelled");
	switch (x->state) {
	case SASL_EXCHANGE_PLAIN_MESSAGE:
		return plain_message(x, line, len, password, out_r);
	case SASL_EXCHANGE_LOGIN_USER:
		return login_user(x, line, len, out_r);
	case SASL_EXCHANGE_LOGIN_PASSWORD:
		return login_password(x, line, len, password, out_r);
	case SASL_EXCHANGE_START:
	case SASL_EXCHANGE_FINISHED:
		break;
	}
	panic("sasl: exchange in an impossible state");
}
