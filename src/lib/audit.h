#ifndef TERN_AUDIT_H
#define TERN_AUDIT_H
/*
 * audit: an append-only file of key=value lines, one per audited event
 * ([server] audit_log): "time=2026-12-01T10:00:00.123Z event=NAME k=v ...".
 *
 * Each line is built whole in memory and written with one write() on a
 * descriptor opened O_APPEND, so lines from several threads or processes
 * never interleave. The file is created mode 0640 (the umask may narrow
 * it). A short write() to a local file is accepted on the event loop: it
 * costs a copy into the page cache, not an fsync.
 *
 * Thread-safe: audit_line() and audit_reopen() may run on any thread.
 */
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

struct audit;

/* Opens (creating) path for appending. NULL with *error_r (a static
 * string, with errno's text) when it cannot be opened. */
struct audit *audit_open(const char *path, const char **error_r);
/* Opens the path again (after a log rotation renamed the file) and
 * switches to the new file; on failure the old one stays in use and -1
 * is returned with *error_r. */
int audit_reopen(struct audit *a, const char **error_r);
void audit_close(struct audit **a);

/* Appends " key=value" to line; the value is quoted ("...", with \" \\
 * and \xNN for control octets) when it is empty or holds a space, '"',
 * '\\', '=' or a control octet. UTF-8 is kept as it is. */
void audit_field(struct buf *line, const char *key, const char *value);
void audit_field_u64(struct buf *line, const char *key, unsigned long long value);
/* Writes "time=... event=EVENT" followed by fields (built with
 * audit_field, may be NULL) and a newline, in one write(). a may be NULL
 * (no audit log): nothing is done. */
void audit_line(struct audit *a, const char *event, const struct buf *fields);

#endif
