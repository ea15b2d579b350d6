#ifndef TERN_PASSWORD_H
#define TERN_PASSWORD_H
/*
 * password: hashing and verification. New passwords are hashed with
 * argon2id (t=2, m=19 MiB, p=1: the OWASP baseline, about 30 ms here) into
 * the PHC string form "$argon2id$v=19$m=...". Verification also accepts
 * crypt(3) hashes with a Dovecot-style scheme prefix ({SHA512-CRYPT},
 * {BLF-CRYPT}, {ARGON2ID}) for migrated accounts. Both are slow on purpose:
 * call them from a worker thread, never the event loop.
 *
 * A login for a user that does not exist (or whose stored hash is
 * unusable) must cost what a real one costs, or the answer's timing tells
 * which users exist: password_verify_dummy() verifies against a hash made
 * the way password_hash() makes one.
 */
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Hashes password into out. 0 or -1. */
int password_hash(const char *password, size_t len, struct buf *out);
/* true when password matches the stored hash; false on mismatch or a
 * malformed/unsupported hash (which costs a password_verify_dummy()).
 * Runs in constant time for a given hash. password may hold NUL bytes:
 * argon2 hashes them, a crypt(3) hash never matches such a password. */
bool password_verify(const char *password, size_t len, const char *stored);
/* Verifies password against a dummy argon2id hash with password_hash()'s
 * parameters, made once per process (on first use, from random bytes, so
 * nothing can match it). Always false. Thread-safe. */
bool password_verify_dummy(const char *password, size_t len);
/* true when the text looks like a supported stored hash (for `user add`
 * with a pre-hashed password). */
bool password_is_hash(const char *text);

#endif
