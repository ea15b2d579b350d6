/*
 * ini: line-by-line INI parsing with exact error positions. Lines are capped
 * at 4 KiB; a longer line is an error rather than silently split. An error
 * skips its line only: the rest of the file is still read, so one run
 * reports every mistake.
 */
#include "ini.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
			 s[n - 1] == '\n'))
		s[--n] = '\0';
	return s;
}

static int valid_name(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

struct ini_errors {
	struct buf text;
	unsigned int count;
};

static void add_error(struct ini_errors *e, const char *path, unsigned int line,
		      const char *reason)
{
	if (++e->count > INI_ERRORS_MAX)
		return;
	if (e->text.len > 0)
		buf_append_c(&e->text, '\n');
	buf_printf(&e->text, "%s:%u: %s", path, line, reason);
}

/* Skips the rest of an overlong line. */
static void skip_line(FILE *f)
{
	int c;
	while ((c = getc(f)) != EOF && c != '\n')
		;
}

int ini_parse_file(const char *path, ini_section_callback_t *section_cb,
		   ini_callback_t *cb, void *ctx, char **error_r)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		struct buf b;
		buf_init(&b, 0);
		buf_printf(&b, "%s: cannot open: %s", path, strerror(errno));
		*error_r = buf_steal(&b);
		buf_deinit(&b);
		return -2;
	}
	char line[4096];
	char section[128] = "";
	bool skip_section = false; /* its header was refused: its keys say nothing */
	unsigned int lineno = 0;
	struct ini_errors errors = { .count = 0 };
	buf_init(&errors.text, 0);

	for (;;) {
		const char *reason = NULL;
		/* fgets() gives no length: with the buffer pre-filled with non-NUL
		 * bytes, the last NUL is its terminator, and one before it came
		 * from the file. */
		memset(line, 'x', sizeof(line));
		if (fgets(line, sizeof(line), f) == NULL)
			break;
		lineno++;
		size_t n = sizeof(line) - 1;
		while (line[n] != '\0')
			n--;
		if (n == sizeof(line) - 1 && line[n - 1] != '\n') {
			skip_line(f);
			add_error(&errors, path, lineno, "line too long (limit 4095 characters)");
			continue;
		}
		if (strlen(line) < n) {
			add_error(&errors, path, lineno, "NUL byte in line");
			continue;
		}
		char *s = trim(line);
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *end = strchr(s, ']');
			skip_section = true;
			if (end == NULL || end[1] != '\0') {
				add_error(&errors, path, lineno,
					  "malformed section header (expected \"[name]\")");
				continue;
			}
			*end = '\0';
			char *name = trim(s + 1);
			if (!valid_name(name) || strlen(name) >= sizeof(section)) {
				add_error(&errors, path, lineno, "invalid section name");
				continue;
			}
			str_copy(section, name, sizeof(section));
			if (section_cb != NULL && section_cb(ctx, section, &reason) < 0) {
				add_error(&errors, path, lineno, reason);
				continue;
			}
			skip_section = false;
			continue;
		}
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			add_error(&errors, path, lineno, "expected \"key = value\"");
			continue;
		}
		*eq = '\0';
		char *key = trim(s);
		char *value = trim(eq + 1);
		if (!valid_name(key)) {
			add_error(&errors, path, lineno, "invalid key name");
			continue;
		}
		if (skip_section)
			continue;
		if (section[0] == '\0') {
			add_error(&errors, path, lineno, "key outside of any [section]");
			continue;
		}
		if (cb(ctx, section, key, value, lineno, &reason) < 0)
			add_error(&errors, path, lineno, reason);
	}
	if (ferror(f))
		add_error(&errors, path, lineno, "read error");
	fclose(f);
	if (errors.count > INI_ERRORS_MAX)
		buf_printf(&errors.text, "\n%s: %u more errors not shown", path,
			   errors.count - INI_ERRORS_MAX);
	if (errors.count == 0) {
		buf_deinit(&errors.text);
		return 0;
	}
	*error_r = buf_steal(&errors.text);
	buf_deinit(&errors.text);
	return -1;
}
