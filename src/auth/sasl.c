/*
 * sasl: response decoding, PLAIN and bearer-message parsing, and the
 * PLAIN/LOGIN/OAUTHBEARER/XOAUTH2 exchange built on them. Errors are short phrases that the sessions put in their
 * replies; they never quote the input.
 *
 * Invariants of an exchange:
 * - It moves START -> (PLAIN_MESSAGE | LOGIN_USER -> LOGIN_PASSWORD |
 *   BEARER_MESSAGE) -> FINISHED and never back; every DONE or FAILED ends in FINISHED.
 * - x->decoded holds decoded client data only during a call: it is wiped
 *   before every return, and was sized at init so it never reallocates
 *   (a reallocation would leave a copy of a password in freed memory).
 * - The caller's password buf is written only when the exchange is DONE,
 *   and wiped when the password does not fit; it never holds part of one.
 */
#include "sasl.h"

#include <string.h>
#include <strings.h>

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
	if (str_eq_icase(name, "OAUTHBEARER"))
		return SASL_MECH_OAUTHBEARER;
	if (str_eq_icase(name, "XOAUTH2"))
		return SASL_MECH_XOAUTH2;
	return SASL_MECH_UNKNOWN;
}

bool sasl_mech_is_bearer(enum sasl_mech mech)
{
	return mech == SASL_MECH_OAUTHBEARER || mech == SASL_MECH_XOAUTH2;
}

const char *sasl_bearer_error_challenge(enum sasl_mech mech)
{
	/* {"status":"invalid_token"} (RFC 7628 3.2.2), and for XOAUTH2
	 * {"status":"401","schemes":"bearer"} as Google words it */
	if (mech == SASL_MECH_XOAUTH2)
		return "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=";
	return "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=";
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

/* --- bearer messages (RFC 7628 3.1, Google's XOAUTH2) --- */

struct bearer_parts {
	char user[SASL_USER_MAX + 1]; /* "" when none was given */
	const char *token;
	size_t token_len;
};

#define KVSEP '\x01'

/* RFC 6750 2.1 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
 * "+" / "/" ) *"=" (a JWT is one). */
static bool is_b64token(const char *p, size_t len)
{
	size_t i = 0;
	while (i < len && (('A' <= p[i] && p[i] <= 'Z') || ('a' <= p[i] && p[i] <= 'z') ||
			   ('0' <= p[i] && p[i] <= '9') || strchr("-._~+/", p[i]) != NULL))
		i++;
	if (i == 0)
		return false;
	while (i < len && p[i] == '=')
		i++;
	return i == len;
}

/* The value of "auth": "Bearer" 1*SP b64token, the scheme in any case. */
static bool bearer_value(const char *v, size_t len, struct bearer_parts *parts)
{
	static const char scheme[] = "bearer";
	size_t n = sizeof(scheme) - 1, i;
	if (len <= n || strncasecmp(v, scheme, n) != 0 || v[n] != ' ')
		return false;
	for (i = n; i < len && v[i] == ' '; i++)
		;
	if (!is_b64token(v + i, len - i))
		return false;
	parts->token = v + i;
	parts->token_len = len - i;
	return true;
}

/* key=value pairs, each ended by %x01, then a final %x01 ending msg. keys
 * are 1*ALPHA; values VCHAR, SP, HTAB, CR, LF. "auth" is required, once;
 * "user" (XOAUTH2) is copied into parts->user when want_user. */
static enum sasl_error bearer_pairs(const char *p, const char *end, bool want_user,
				    struct bearer_parts *parts, const char **error_r)
{
	bool have_user = false;
	parts->token = NULL;
	*error_r = want_user ? "Invalid XOAUTH2 message (expected user=... ^A auth=Bearer ... ^A^A)"
			     : "Invalid OAUTHBEARER message (expected n,[a=user], ^A auth=Bearer ... ^A^A)";
	while (p < end && *p != KVSEP) {
		const char *key = p;
		while (p < end && (('A' <= *p && *p <= 'Z') || ('a' <= *p && *p <= 'z')))
			p++;
		if (p == key || p == end || *p != '=')
			return SASL_ERROR_MALFORMED;
		size_t key_len = (size_t)(p - key);
		const char *value = ++p;
		while (p < end && *p != KVSEP) {
			unsigned char c = (unsigned char)*p;
			if (!(c == ' ' || c == '\t' || c == '\r' || c == '\n' || (c >= 0x21 && c <= 0x7e)))
				return SASL_ERROR_MALFORMED;
			p++;
		}
		if (p == end)
			return SASL_ERROR_MALFORMED;
		size_t value_len = (size_t)(p - value);
		p++;
		if (key_len == 4 && memcmp(key, "auth", 4) == 0) {
			if (parts->token != NULL || !bearer_value(value, value_len, parts))
				return SASL_ERROR_MALFORMED;
		} else if (want_user && key_len == 4 && memcmp(key, "user", 4) == 0) {
			if (have_user)
				return SASL_ERROR_MALFORMED;
			have_user = true;
			if (value_len > SASL_USER_MAX) {
				*error_r = "Invalid user name (expected user@domain)";
				return SASL_ERROR_USER;
			}
			memcpy(parts->user, value, value_len);
			parts->user[value_len] = '\0';
		}
	}
	/* the final %x01, and nothing after it */
	if (p == end || p + 1 != end || parts->token == NULL || (want_user && !have_user))
		return SASL_ERROR_MALFORMED;
	return SASL_ERROR_NONE;
}

/* gs2-header: ("n" / "y") "," ["a=" saslname] ","; then %x01 and the pairs. */
static enum sasl_error oauthbearer_parse(const char *msg, size_t len, struct bearer_parts *parts,
					 const char **error_r)
{
	const char *p = msg, *end = msg + len;
	*error_r = "Invalid OAUTHBEARER message (expected n,[a=user], ^A auth=Bearer ... ^A^A)";
	if (len >= 2 && msg[0] == 'p' && msg[1] == '=') {
		*error_r = "Channel binding is not supported";
		return SASL_ERROR_MALFORMED;
	}
	if (len < 2 || (msg[0] != 'n' && msg[0] != 'y') || msg[1] != ',')
		return SASL_ERROR_MALFORMED;
	p += 2;
	size_t n = 0;
	if (end - p >= 2 && p[0] == 'a' && p[1] == '=') {
		for (p += 2; p < end && *p != ','; p++) {
			char c = *p;
			if (c == '=') {
				/* "=2C" is ",", "=3D" is "=", nothing else */
				if (end - p < 3 || (memcmp(p, "=2C", 3) != 0 && memcmp(p, "=3D", 3) != 0))
					return SASL_ERROR_MALFORMED;
				c = p[1] == '2' ? ',' : '=';
				p += 2;
			} else if (c == '\0' || c == KVSEP) {
				return SASL_ERROR_MALFORMED;
			}
			if (n == SASL_USER_MAX) {
				*error_r = "Invalid user name (expected user@domain)";
				return SASL_ERROR_USER;
			}
			parts->user[n++] = c;
		}
		if (n == 0)
			return SASL_ERROR_MALFORMED;
	}
	parts->user[n] = '\0';
	if (p == end || *p != ',' || p + 1 == end || p[1] != KVSEP)
		return SASL_ERROR_MALFORMED;
	return bearer_pairs(p + 2, end, false, parts, error_r);
}

/* --- the exchange --- */

void sasl_exchange_init(struct sasl_exchange *x, enum sasl_mech mech, size_t max_response)
{
	if (mech == SASL_MECH_UNKNOWN)
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

static enum sasl_result bearer_message(struct sasl_exchange *x, const char *b64, size_t len,
				       struct buf *password, struct sasl_output *out)
{
	const char *error;
	enum sasl_error e = decode(x, b64, len, &error);
	struct bearer_parts parts;
	if (e == SASL_ERROR_NONE)
		e = x->mech == SASL_MECH_XOAUTH2
			    ? bearer_pairs(x->decoded.data, x->decoded.data + x->decoded.len, true,
					   &parts, &error)
			    : oauthbearer_parse(x->decoded.data, x->decoded.len, &parts, &error);
	if (e != SASL_ERROR_NONE) {
		explicit_bzero(&parts, sizeof(parts));
		return fail(x, out, e, error);
	}
	set_user(x, parts.user, strlen(parts.user));
	explicit_bzero(parts.user, sizeof(parts.user));
	return done(x, parts.token, parts.token_len, password, out);
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
	if (sasl_mech_is_bearer(x->mech)) {
		if (none || (len == 1 && initial[0] == '='))
			return challenge(x, out_r, SASL_EXCHANGE_BEARER_MESSAGE, "");
		return bearer_message(x, initial, len, password, out_r);
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
	case SASL_EXCHANGE_BEARER_MESSAGE:
		return bearer_message(x, line, len, password, out_r);
	case SASL_EXCHANGE_START:
	case SASL_EXCHANGE_FINISHED:
		break;
	}
	panic("sasl: exchange in an impossible state");
}
