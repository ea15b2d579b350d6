/*
 * fuzz-sasl: one SASL exchange driven by the input. The first byte picks
 * the mechanism (bit 0: PLAIN or LOGIN; with bit 3, OAUTHBEARER or
 * XOAUTH2), whether an initial response is sent (bit 1), and a small or
 * the default max_response (bit 2); the rest is split at '\n'
 * into the initial response and the client's lines, fed while the exchange
 * asks for more. Aborts when a documented invariant breaks: a result other
 * than the three, a challenge other than the mechanism's, a user name with
 * a NUL or over SASL_USER_MAX, a password over the caller's cap or left in
 * a failed exchange's buf, client data left in the exchange's own buffer,
 * a failure without its kind and phrase.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sasl.h"

#define PASSWORD_CAP 100

static void check_wiped(const struct sasl_exchange *x)
{
	if (x->decoded.len != 0)
		abort();
	for (size_t i = 0; i < x->decoded.size; i++)
		if (x->decoded.data[i] != '\0')
			abort();
}

static void check_output(enum sasl_mech mech, enum sasl_result r, const struct sasl_output *out,
			 const struct buf *password)
{
	switch (r) {
	case SASL_CONTINUE:
		if (out->challenge == NULL || out->user != NULL || out->error != SASL_ERROR_NONE)
			abort();
		if (mech != SASL_MECH_LOGIN ? strcmp(out->challenge, "") != 0
					    : strcmp(out->challenge, "VXNlcm5hbWU6") != 0 &&
						      strcmp(out->challenge, "UGFzc3dvcmQ6") != 0)
			abort();
		if (strcmp(password->data, "stale") != 0)
			abort();
		break;
	case SASL_DONE:
		if (out->user == NULL || strlen(out->user) > SASL_USER_MAX)
			abort();
		/* PLAIN never ends without a user name (LOGIN and bearer ones may) */
		if (out->user[0] == '\0' && !sasl_mech_is_bearer(mech) && mech != SASL_MECH_LOGIN)
			abort();
		if (password->len > PASSWORD_CAP || password->data[password->len] != '\0')
			abort();
		if (password->len == 0 || memchr(password->data, '\0', password->len) != NULL)
			abort();
		break;
	case SASL_FAILED:
		if (out->error == SASL_ERROR_NONE || out->error_text == NULL || out->user != NULL)
			abort();
		if (strcmp(password->data, "stale") != 0 && password->len != 0)
			abort();
		break;
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	static const enum sasl_mech mechs[4] = { SASL_MECH_PLAIN, SASL_MECH_LOGIN,
						 SASL_MECH_OAUTHBEARER, SASL_MECH_XOAUTH2 };
	enum sasl_mech mech = mechs[(data[0] & 1) | ((data[0] & 8) >> 2)];
	bool initial = (data[0] & 2) != 0;
	size_t max_response = (data[0] & 4) != 0 ? 64 : 4096;
	const char *p = (const char *)data + 1, *end = (const char *)data + size;

	struct sasl_exchange x;
	struct buf password;
	struct sasl_output out;
	sasl_exchange_init(&x, mech, max_response);
	buf_init(&password, PASSWORD_CAP);
	buf_append_str(&password, "stale");

	const char *nl = memchr(p, '\n', (size_t)(end - p));
	size_t len = (size_t)((nl != NULL ? nl : end) - p);
	enum sasl_result r;
	if (initial) {
		r = sasl_exchange_start(&x, p, len, &password, &out);
		p += len + (nl != NULL);
	} else {
		r = sasl_exchange_start(&x, NULL, 0, &password, &out);
	}
	check_output(mech, r, &out, &password);
	check_wiped(&x);
	while (r == SASL_CONTINUE && p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = (size_t)((nl != NULL ? nl : end) - p);
		r = sasl_exchange_step(&x, p, len, &password, &out);
		check_output(mech, r, &out, &password);
		check_wiped(&x);
		p += len + (nl != NULL);
	}
	sasl_exchange_deinit(&x);
	buf_wipe(&password);
	buf_deinit(&password);
	return 0;
}
