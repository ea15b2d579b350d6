#ifndef TERN_INI_H
#define TERN_INI_H
/*
 * ini: a strict reader for tern's INI files: "[section]", "key = value",
 * "#" or ";" comments on their own lines, blank lines. Anything else is an
 * error reported as "FILE:LINE: reason"; every error of a file is reported,
 * not only the first. Section and key names are
 * [A-Za-z0-9_.-]+ and case-sensitive; values are trimmed, and may be empty.
 */
#include <stddef.h>

/* Called for each key with its line number; returns 0, or -1 with *error_r:
 * the error is recorded with the file and line, and parsing goes on. */
typedef int ini_callback_t(void *ctx, const char *section, const char *key,
			   const char *value, unsigned int line, const char **error_r);
/* Called for each section header; may be NULL. Returns 0, or -1 with
 * *error_r: the error is recorded, and the keys of that section are skipped
 * without errors of their own (as after a malformed header). */
typedef int ini_section_callback_t(void *ctx, const char *section, const char **error_r);

/* At most this many errors are listed; a last line counts the others. */
#define INI_ERRORS_MAX 100

/* Reads the whole file, going on after each error (a bad line is skipped).
 * Returns 0, or -1 with every error in a malloc'ed *error_r, one
 * "FILE:LINE: reason" line each, in file order, separated by '\n' (no
 * final newline: a single error reads as one line). -2 when the file
 * cannot be opened, with "FILE: cannot open: why". */
int ini_parse_file(const char *path, ini_section_callback_t *section_cb,
		   ini_callback_t *cb, void *ctx, char **error_r);

#endif
