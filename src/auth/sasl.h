#ifndef TERN_SASL_H
#define TERN_SASL_H
/*
 * sasl: the server side of the SASL mechanisms tern offers (RFC 4422):
 * PLAIN (RFC 4616) for POP3 and SMTP, LOGIN (draft-murchison-sasl-login)
 * for SMTP clients that know nothing else, and the bearer-token ones,
 * OAUTHBEARER (RFC 7628) and XOAUTH2 (Google's), when OAuth is configured.
 * All carry a credential in clear, so the sessions offer them only where
 * plaintext is allowed.
 *
 * No I/O: the protocol sessions frame the challenges and responses ("+ "
 * in POP3, RFC 5034; "334 " in SMTP, RFC 4954); this module decodes and
 * checks them. Decoded secrets end up in caller-owned bufs, which the
 * caller wipes; what this module decodes on its own side is wiped before
 * each call returns.
 */
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

enum sasl_mech {
	SASL_MECH_UNKNOWN = 0,
	SASL_MECH_PLAIN,
	SASL_MECH_LOGIN,
	SASL_MECH_OAUTHBEARER,
	SASL_MECH_XOAUTH2,
};

/* The longest authentication identity accepted: the longest address
 * (RFC 5321: 64 + 1 + 255 octets), tern's user names being addresses. */
#define SASL_USER_MAX 320

/* Case-insensitive mechanism name lookup. */
enum sasl_mech sasl_mech_lookup(const char *name);
/* true for OAUTHBEARER and XOAUTH2, whose secret is a bearer token. */
bool sasl_mech_is_bearer(enum sasl_mech mech);
/* The challenge (base64 of an RFC 7628 3.2.2 JSON status) that tells an
 * OAUTHBEARER or XOAUTH2 client its token was refused; the client answers
 * it with one more line (a lone %x01, or an empty one), and only then is
 * the exchange failed. */
const char *sasl_bearer_error_challenge(enum sasl_mech mech);

/* --- one exchange ---
 *
 * Usage, for one AUTH command:
 *
 *	sasl_exchange_init(&x, mech, max_response);
 *	r = sasl_exchange_start(&x, initial, initial_len, &password, &out);
 *	while (r == SASL_CONTINUE) {
 *		send "+ " / "334 " and out.challenge; read a line;
 *		r = sasl_exchange_step(&x, line, len, &password, &out);
 *	}
 *	SASL_DONE: check out.user with the password; SASL_FAILED: reply;
 *	sasl_exchange_deinit(&x);
 *
 * Mechanisms:
 * - PLAIN: one message "[authzid] NUL authcid NUL passwd". Without an
 *   initial response, or with the empty one ("="), the client is asked
 *   with an empty challenge. The authorization identity must be empty or
 *   equal to authcid (tern has no proxy logins).
 * - LOGIN: challenges "Username:" then "Password:" (base64). An initial
 *   response is the user name. The password may not be empty or hold a
 *   NUL; the user name may be empty (it is then no address: the caller's
 *   check of the name refuses it, as for any other non-address).
 * - OAUTHBEARER: one message, the GS2 header "n," or "y," (no channel
 *   binding: "p=" is refused), an optional authzid "a=NAME" (",", "=" as
 *   "=2C", "=3D"), ",", then %x01-separated key=value pairs ending with
 *   %x01 %x01, one of them "auth=Bearer TOKEN" (host and port, and any
 *   other key, are allowed and ignored).
 * - XOAUTH2: one message "user=NAME %x01 auth=Bearer TOKEN %x01 %x01".
 *   For both: an empty challenge asks for the message, as for PLAIN; on
 *   SASL_DONE, out.user is the name the client gave ("" when none) and the
 *   token is in the caller's password buf.
 *
 * Responses: base64 (RFC 4648, strict), "=" or "" for the empty response;
 * "*" (in a step, not as an initial response) cancels. A response longer
 * than max_response octets fails as too long. The exchange never calls
 * back and keeps no pointer to the caller's data.
 */
enum sasl_result {
	SASL_CONTINUE, /* send out.challenge, feed the client's next line to step */
	SASL_DONE,     /* out.user and the password (in the caller's buf) are ready */
	SASL_FAILED,   /* out.error and out.error_text say why */
};

/* Why an exchange failed. The phrases in out.error_text let each protocol
 * keep its replies; today's are:
 *
 * | error     | POP3                     | SMTP                                      |
 * |-----------|--------------------------|-------------------------------------------|
 * | BASE64    | -ERR [AUTH] <error_text> | 501 5.5.2 Invalid base64 data in the authentication response |
 * | MALFORMED | -ERR [AUTH] <error_text> | 501 5.5.2 <error_text>                    |
 * | AUTHZID   | -ERR [AUTH] <error_text> | 501 5.5.2 <error_text>                    |
 * | USER      | -ERR [AUTH] <error_text> | 535 5.7.8 Authentication credentials invalid (the user name is an address, user@domain) |
 * | PASSWORD  | (no LOGIN in POP3)       | 535 5.7.8 Authentication credentials invalid |
 * | CANCELLED | -ERR [AUTH] <error_text> | 501 5.7.0 Authentication cancelled        |
 * | TOO_LONG  | -ERR [AUTH] <error_text> | 500 5.5.6 Authentication exchange line is too long |
 */
enum sasl_error {
	SASL_ERROR_NONE = 0,
	SASL_ERROR_BASE64,     /* a response is not (strict) base64 */
	SASL_ERROR_MALFORMED,  /* a PLAIN message without its two NULs, with an empty
			        * user name or password, or a NUL in the password;
			        * a bearer message not in its mechanism's syntax */
	SASL_ERROR_AUTHZID,    /* PLAIN authzid neither empty nor the user name */
	SASL_ERROR_USER,       /* a user name over SASL_USER_MAX, or (LOGIN) with a NUL;
			        * a bearer authzid or user= over SASL_USER_MAX */
	SASL_ERROR_PASSWORD,   /* a LOGIN password empty or with a NUL */
	SASL_ERROR_CANCELLED,  /* the client answered "*" */
	SASL_ERROR_TOO_LONG,   /* a response over max_response, or a password over
			        * the cap of the caller's buf */
};

/* What one call produced; the strings stay valid until the next call on
 * the exchange or its deinit. */
struct sasl_output {
	/* SASL_CONTINUE: the challenge, base64, "" for the empty one */
	const char *challenge;
	/* SASL_DONE: the authentication identity, NUL-terminated, no NUL
	 * inside, at most SASL_USER_MAX octets, as the client sent it ("" for
	 * a bearer mechanism without one) */
	const char *user;
	/* SASL_FAILED: the kind, and a short phrase for the reply that never
	 * quotes the input */
	enum sasl_error error;
	const char *error_text;
};

/* Declared here so that a session can embed an exchange; the fields are
 * private. */
enum sasl_exchange_state {
	SASL_EXCHANGE_START,
	SASL_EXCHANGE_PLAIN_MESSAGE,  /* the empty challenge was sent */
	SASL_EXCHANGE_LOGIN_USER,     /* "Username:" was sent */
	SASL_EXCHANGE_LOGIN_PASSWORD, /* "Password:" was sent */
	SASL_EXCHANGE_BEARER_MESSAGE, /* OAUTHBEARER, XOAUTH2: the empty challenge was sent */
	SASL_EXCHANGE_FINISHED,       /* DONE or FAILED was returned */
};

struct sasl_exchange {
	enum sasl_mech mech;
	enum sasl_exchange_state state;
	size_t max_response;
	struct buf decoded;               /* capacity reserved at init, wiped per call */
	char user[SASL_USER_MAX + 1];
};

/* Starts an exchange for mech (any but SASL_MECH_UNKNOWN). max_response (> 0) caps
 * each base64 response, e.g. [auth] max_response. Allocates the decoding
 * buffer once, at its full size (so no copy of a secret is left behind by
 * a reallocation). Pair with sasl_exchange_deinit(). */
void sasl_exchange_init(struct sasl_exchange *x, enum sasl_mech mech, size_t max_response);
/* The AUTH command itself. initial is the initial response (base64, "="
 * for the empty one), NULL or len 0 for none. password is an initialized
 * buf: on SASL_DONE the password replaces its contents (its cap bounds
 * it); otherwise it is left as it was, or wiped. */
enum sasl_result sasl_exchange_start(struct sasl_exchange *x, const char *initial, size_t len,
				     struct buf *password, struct sasl_output *out_r);
/* One client response line (without its line ending), after
 * SASL_CONTINUE. Like start for the rest. Calling start or step again after
 * SASL_DONE or SASL_FAILED is a bug (panic). */
enum sasl_result sasl_exchange_step(struct sasl_exchange *x, const char *line, size_t len,
				    struct buf *password, struct sasl_output *out_r);
/* Wipes and frees what the exchange holds. Safe to call twice. */
void sasl_exchange_deinit(struct sasl_exchange *x);

/* --- the pieces, for sessions that run their own exchange --- */

/* Decodes one base64 client response into out (cleared first; its cap
 * bounds the size). "=" is the empty response (RFC 4954 4, RFC 5034 4).
 * 0, or -1 with *error_r. */
int sasl_decode_response(const char *b64, size_t len, struct buf *out, const char **error_r);

/* Splits a decoded PLAIN message "[authzid] NUL authcid NUL passwd". The
 * authorization identity must be empty or equal to authcid (tern has no
 * proxy logins). *authcid_r and *passwd_r point into msg, which is
 * NUL-split in place; the password may not contain NUL. 0, or -1 with
 * *error_r. */
int sasl_plain_split(struct buf *msg, const char **authcid_r, const char **passwd_r,
		     size_t *passwd_len_r, const char **error_r);

#endif
