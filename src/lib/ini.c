/*
 * ini: line-by-line INI parsing with exact error positions. Lines are capped
 * at 4 KiB; a longer line is an error rather than silently split.
 */
#include "ini.h"

#include <errno.h>
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

static char *format_error(const char *path, unsigned int line, const char *reason)
{
	struct buf b;
	buf_init(&b, 0);
	buf_printf(&b, "%s:%u: %s", path, line, reason);
	char *ret = buf_steal(&b);
	buf_deinit(&b);
	return ret;
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
		return -1;
	}
	char line[4096];
	char section[128] = "";
	unsigned int lineno = 0;
	const char *reason = NULL;
	int ret = 0;

	for (;;) {
		/* fgets() gives no length: with the buffer pre-filled with non-NUL
		 * bytes, a NUL after the first one means the line contained one. */
		memset(line, 'x', sizeof(line));
		if (fgets(line, sizeof(line), f) == NULL)
			break;
		lineno++;
		size_t len = strlen(line);
		if (memchr(line + len + 1, '\0', sizeof(line) - len - 1) != NULL) {
			reason = "NUL byte in line";
			break;
		}
		if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
			reason = "line too long (limit 4095 characters)";
			break;
		}
		char *s = trim(line);
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *end = strchr(s, ']');
			if (end == NULL || end[1] != '\0') {
				reason = "malformed section header (expected \"[name]\")";
				break;
			}
			*end = '\0';
			char *name = trim(s + 1);
			if (!valid_name(name) || strlen(name) >= sizeof(section)) {
				reason = "invalid section name";
				break;
			}
			str_copy(section, name, sizeof(section));
			if (section_cb != NULL && section_cb(ctx, section, &reason) < 0)
				break;
			continue;
		}
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			reason = "expected \"key = value\"";
			break;
		}
		*eq = '\0';
		char *key = trim(s);
		char *value = trim(eq + 1);
		if (!valid_name(key)) {
			reason = "invalid key name";
			break;
		}
		if (section[0] == '\0') {
			reason = "key outside of any [section]";
			break;
		}
		if (cb(ctx, section, key, value, lineno, &reason) < 0)
			break;
	}
	if (reason == NULL && ferror(f))
		reason = "read error";
	if (reason != NULL) {
		*error_r = format_error(path, lineno, reason);
		ret = -1;
	}
	fclose(f);
	return ret;
}
