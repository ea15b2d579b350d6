/*
 * fuzz-oauth: one bearer token, the whole input, through oauth_verify
 * against a fixed key set (an RSA and a P-256 public key, whose private
 * halves signed the good seeds and were thrown away) at a fixed time.
 * Aborts when a documented invariant breaks: a result other than 0 and -1,
 * a failure without its phrase or with a user left behind, a success with
 * an empty or unterminated user. TERN_FUZZ_ECHO=1 prints each outcome.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oauth.h"

static const char jwks[] =
	"{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"fuzz-rsa\",\"use\":\"sig\",\"alg\":\"RS256\","
	"\"n\":\"wjRRn8t34fWtIu06Kf7ZeIsl6jJ7cDaIwChc5pesAqzFeVO8UjKRU1UOCkbsfz7VPXTKmO1lS82QDdAH"
	"dMCVhpzti83_I0J21Nmv0GL4OPRcc5_tn38eHVjSVeACdvp8kx3TLIEGhj5lKShvpC5tBW_3MMyrFvFnSNAvN9-f"
	"LXjoGNEDBtl-PP98hxiFWD59EnXh-zM984YQ4NtHVj4dXVbdCahUjOX_NI3nB0z3xTI4i0P7-7wP6ttHgDrbHwAU"
	"abKQz0nL7UgI4BST4gGiziGR8MslnMsgkVag7Z5nG2KPdZ2Kivn001Yq338eELJL4nIdZ0soATR4UVAcdd9lFQ\","
	"\"e\":\"AQAB\"},{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"fuzz-ec\","
	"\"x\":\"QFXVSk1O_UM70MFVfvF2G0WAYuOX0kV34z2CV0E5rgg\","
	"\"y\":\"fnAbsxYYadm3Ymf3sXbjkPAefejgLQSCsD7Kxl9RlbU\"}]}";

/* 2026-01-01T00:00:00Z */
#define FUZZ_NOW 1767225600

static struct oauth_keys *keys;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (keys == NULL) {
		const char *error;
		keys = oauth_keys_parse(jwks, sizeof(jwks) - 1, &error);
		if (keys == NULL || oauth_keys_count(keys) != 2)
			abort();
	}
	static const struct oauth_policy policy = { "https://idp.example.org/", "tern", NULL };
	char user[64];
	memset(user, 'x', sizeof(user));
	const char *error = NULL;
	int r = oauth_verify(keys, &policy, (const char *)data, size, FUZZ_NOW, user, sizeof(user),
			     &error);
	if (r == 0) {
		if (memchr(user, '\0', sizeof(user)) == NULL || user[0] == '\0')
			abort();
	} else if (r == -1) {
		if (error == NULL || user[0] != '\0')
			abort();
	} else {
		abort();
	}
	if (getenv("TERN_FUZZ_ECHO") != NULL)
		fprintf(stderr, "%s\n", r == 0 ? user : error);
	return 0;
}
