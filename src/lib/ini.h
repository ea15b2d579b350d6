#ifndef TERN_INI_H
#define TERN_INI_H
/*
 * ini: a strict reader for tern's INI files: "[section]", "key = value",
 * "#" or ";" comments on their own lines, blank lines. Anything else is an
 * error reported as "FILE:LINE: reason". Section and key names are
 * [A-Za-z0-9_.-]+ and case-sensitive; values are trimmed, and may be empty.
 */
#include <stddef.h>

/* Called for each key with its line number; returns 0, or -1 with *error_r (then parsing stops
 * and the error is reported with the file and line). */
typedef int ini_callback_t(void *ctx, const char *section, const char *key,
			   const char *value, unsigned int line, const char **error_r);
/* Called for each section header; may be NULL. Same contract. */
typedef int ini_section_callback_t(void *ctx, const char *section, const char **error_r);

/* Returns 0, or -1 with a malloc'ed message "FILE:LINE: reason" in *error_r. */
int ini_parse_file(const char *path, ini_section_callback_t *section_cb,
		   ini_callback_t *cb, void *ctx, char **error_r);

#endif
