/*
 * password: argon2id through libargon2, crypt(3) through libcrypt for
 * imported hashes. Plaintext copies made here are wiped before returning.
 *
 * The dummy hash is made once per process under pthread_once, from a
 * random password nobody knows and a random salt, with the same
 * parameters as password_hash(), so verifying against it costs what
 * verifying a real tern hash costs and can never succeed.
 */
#include "password.h"

#include <argon2.h>
#include <crypt.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "log.h"

#define ARGON2_T 2
#define ARGON2_M_KIB 19456
#define ARGON2_P 1
#define SALT_LEN 16
#define HASH_LEN 32
#define DUMMY_PASSWORD_LEN 32

static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_hash[256];

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

static void dummy_make(void)
{
	unsigned char salt[SALT_LEN], secret[DUMMY_PASSWORD_LEN];
	if (getrandom(salt, sizeof(salt), 0) != (ssize_t)sizeof(salt) ||
	    getrandom(secret, sizeof(secret), 0) != (ssize_t)sizeof(secret))
		panic("getrandom failed");
	if (argon2_encodedlen(ARGON2_T, ARGON2_M_KIB, ARGON2_P, SALT_LEN, HASH_LEN, Argon2_id) >
	    sizeof(dummy_hash))
		panic("argon2id dummy hash does not fit");
	int rc = argon2id_hash_encoded(ARGON2_T, ARGON2_M_KIB, ARGON2_P, secret, sizeof(secret),
				       salt, SALT_LEN, HASH_LEN, dummy_hash, sizeof(dummy_hash));
	explicit_bzero(secret, sizeof(secret));
	if (rc != ARGON2_OK)
		panic("argon2id dummy hash: %s", argon2_error_message(rc));
}

bool password_verify_dummy(const char *password, size_t len)
{
	pthread_once(&dummy_once, dummy_make);
	/* The result is ignored: a match would need the random password. */
	(void)argon2id_verify(dummy_hash, password, len);
	return false;
}

bool password_verify(const char *password, size_t len, const char *stored)
{
	const char *scheme;
	size_t slen;
	const char *h = strip_scheme(stored, &scheme, &slen);
	if (h == NULL || !password_is_hash(stored))
		return password_verify_dummy(password, len);
	char *pw = xstrndup(password, len);
	bool ok = false;
	if (strncmp(h, "$argon2id$", 10) == 0)
		ok = argon2id_verify(h, pw, len) == ARGON2_OK;
	else if (strncmp(h, "$argon2i$", 9) == 0)
		ok = argon2i_verify(h, pw, len) == ARGON2_OK;
	else {
		/* crypt(3) cannot take NUL bytes: such a password never matches,
		 * but is hashed all the same (up to its first NUL) so that the
		 * answer takes as long as for any other password. */
		struct crypt_data *cd = xcalloc(1, sizeof(*cd));
		const char *res = crypt_r(pw, h, cd);
		size_t hl = strlen(h);
		ok = res != NULL && res[0] != '*' && strlen(res) == hl &&
		     CRYPTO_memcmp(res, h, hl) == 0 && strlen(pw) == len;
		explicit_bzero(cd, sizeof(*cd));
		free(cd);
	}
	explicit_bzero(pw, len);
	free(pw);
	return ok;
}
