#ifndef TERN_BUF_H
#define TERN_BUF_H
/*
 * buf: the owning, growable byte buffer, and slice: a non-owning view.
 *
 * A buf always keeps one spare byte so buf->data[buf->len] == '\0' and the
 * contents can be used as a C string when they hold no NUL. Growth checks for
 * overflow and, when a cap is set, refuses to grow past it: every buffer that
 * holds client data has a cap, and "full" is reported, never ignored.
 * Allocation failure aborts (out of memory is not a recoverable state for a
 * mail server process; the supervisor restarts it).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	char *data;     /* NUL-terminated, never NULL after buf_init() */
	size_t len;     /* bytes in use, excluding the NUL */
	size_t size;    /* bytes allocated */
	size_t cap;     /* maximum len, 0 = unlimited */
};

struct slice {
	const char *ptr;
	size_t len;
};

void buf_init(struct buf *b, size_t cap);
void buf_deinit(struct buf *b);
/* Wipes the contents (for secrets) and empties the buffer. */
void buf_wipe(struct buf *b);
static inline void buf_reset(struct buf *b) { b->len = 0; b->data[0] = '\0'; }
/* Each returns 0, or -1 when the cap would be exceeded (nothing appended). */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
int buf_append_c(struct buf *b, char c);
/* v in decimal, as printf's %llu writes it, without printf's cost (the
 * POP3 listings write one number per message). */
int buf_append_u64(struct buf *b, uint64_t v);
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* Removes the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Takes ownership of the data: returns it (NUL-terminated), leaves b empty. */
char *buf_steal(struct buf *b);

/* Allocation helpers that abort on failure. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Bounded string helpers (no strcpy/strcat). strlcpy semantics: returns
 * strlen(src); the result is truncated when that is >= size. */
size_t str_copy(char *dst, const char *src, size_t size);
void str_lower(char *s);
bool str_eq_icase(const char *a, const char *b);
bool slice_eq_icase(struct slice s, const char *lit);
/* Checks a protocol command line (without its line ending): not empty, no
 * NUL, no control character (a tab only when allow_tab). 0, or -1 with a
 * reason suitable for an error reply. */
int str_check_command_line(const char *line, size_t len, bool allow_tab, const char **error_r);
/* Writes a printable, truncated form of client data for logs: bytes outside
 * 0x20..0x7e become \xHH; at most max input bytes are shown. */
void str_escape_for_log(char *out, size_t outsize, const char *in, size_t len, size_t max);

#endif
