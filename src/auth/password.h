#ifndef TERN_PASSWORD_H
#define TERN_PASSWORD_H
/*
 * password: hashing and verification. New passwords are hashed with
 * argon2id (t=2, m=19 MiB, p=1: the OWASP baseline, about 30 ms here) into
 * the PHC string form "$argon2id$v=19$m=...". Verification also accepts
 * crypt(3) hashes with a Dovecot-style scheme prefix ({SHA512-CRYPT},
 * {BLF-CRYPT}, {ARGON2ID}) for migrated accounts. Both are slow on purpose:
 * call them from a worker thread, never the event loop.
 */
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Hashes password into out. 0 or -1. */
int password_hash(const char *password, size_t len, struct buf *out);
/* true when password matches the stored hash; false on mismatch or a
 * malformed/unsupported hash. Runs in constant time for a given hash. */
bool password_verify(const char *password, size_t len, const char *stored);
/* true when the text looks like a supported stored hash (for `user add`
 * with a pre-hashed password). */
bool password_is_hash(const char *text);

#endif
