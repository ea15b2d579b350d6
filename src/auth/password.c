/*
 * password: argon2id through libargon2, crypt(3) through libcrypt for
 * imported hashes. Plaintext copies made here are wiped before returning.
 */
#include "password.h"

#include <argon2.h>
#include <crypt.h>
#include <openssl/crypto.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#define ARGON2_T 2
#define ARGON2_M_KIB 19456
#define ARGON2_P 1
#define SALT_LEN 16
#define HASH_LEN 32

int password_hash(const char *password, size_t len, struct buf *out)
{
	unsigned char salt[SALT_LEN];
	if (getrandom(salt, sizeof(salt), 0) != (ssize_t)sizeof(salt))
		return -1;
	size_t enclen = argon2_encodedlen(ARGON2_T, ARGON2_M_KIB, ARGON2_P, SALT_LEN, HASH_LEN,
					  Argon2_id);
	char *enc = xmalloc(enclen);
	int rc = argon2id_hash_encoded(ARGON2_T, ARGON2_M_KIB, ARGON2_P, password, len, salt,
				       SALT_LEN, HASH_LEN, enc, enclen);
	int ret = -1;
	if (rc == ARGON2_OK && buf_append_str(out, enc) == 0)
		ret = 0;
	free(enc);
	return ret;
}

static const char *strip_scheme(const char *stored, const char **scheme_r, size_t *scheme_len_r)
{
	*scheme_r = NULL;
	*scheme_len_r = 0;
	if (stored[0] != '{')
		return stored;
	const char *end = strchr(stored, '}');
	if (end == NULL)
		return NULL;
	*scheme_r = stored + 1;
	*scheme_len_r = (size_t)(end - stored - 1);
	return end + 1;
}

static bool scheme_is(const char *scheme, size_t len, const char *name)
{
	return strlen(name) == len && strncasecmp(scheme, name, len) == 0;
}

bool password_is_hash(const char *text)
{
	const char *scheme;
	size_t slen;
	const char *h = strip_scheme(text, &scheme, &slen);
	if (h == NULL)
		return false;
	if (strncmp(h, "$argon2id$", 10) == 0 || strncmp(h, "$argon2i$", 9) == 0)
		return scheme == NULL || scheme_is(scheme, slen, "ARGON2ID") ||
		       scheme_is(scheme, slen, "ARGON2I");
	if (scheme == NULL)
		return false;
	if (scheme_is(scheme, slen, "SHA512-CRYPT"))
		return strncmp(h, "$6$", 3) == 0;
	if (scheme_is(scheme, slen, "SHA256-CRYPT"))
		return strncmp(h, "$5$", 3) == 0;
	if (scheme_is(scheme, slen, "BLF-CRYPT"))
		return strncmp(h, "$2", 2) == 0;
	if (scheme_is(scheme, slen, "CRYPT"))
		return *h != '\0';
	return false;
}

bool password_verify(const char *password, size_t len, const char *stored)
{
	const char *scheme;
	size_t slen;
	const char *h = strip_scheme(stored, &scheme, &slen);
	if (h == NULL || !password_is_hash(stored))
		return false;
	char *pw = xstrndup(password, len);
	bool ok = false;
	if (strncmp(h, "$argon2id$", 10) == 0)
		ok = argon2id_verify(h, pw, len) == ARGON2_OK;
	else if (strncmp(h, "$argon2i$", 9) == 0)
		ok = argon2i_verify(h, pw, len) == ARGON2_OK;
	else if (strlen(pw) == len) {
		/* crypt(3) cannot take NUL bytes: such a password never matches. */
		struct crypt_data *cd = xcalloc(1, sizeof(*cd));
		const char *res = crypt_r(pw, h, cd);
		size_t hl = strlen(h);
		ok = res != NULL && res[0] != '*' && strlen(res) == hl &&
		     CRYPTO_memcmp(res, h, hl) == 0;
		explicit_bzero(cd, sizeof(*cd));
		free(cd);
	}
	explicit_bzero(pw, len);
	free(pw);
	return ok;
}
