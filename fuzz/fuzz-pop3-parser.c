/*
 * fuzz-pop3-parser: one POP3 command line through pop3_parse_command, its
 * arguments through the number parsers. Aborts when a documented invariant
 * breaks: no NUL or control byte accepted, argc within bounds, arguments
 * inside the line and free of spaces (PASS excepted), numbers in range.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3-parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = malloc(size + 1);
	struct pop3_command cmd;
	const char *error = NULL;

	if (line == NULL)
		return 0;
	memcpy(line, data, size);
	if (pop3_parse_command(line, size, &cmd, &error) == 0) {
		for (size_t i = 0; i < size; i++)
			if (data[i] < 0x20 || data[i] == 0x7f)
				abort();
		if (cmd.argc > POP3_ARGS_MAX || strlen(cmd.verb_text) > 4)
			abort();
		for (unsigned int i = 0; i < cmd.argc; i++) {
			const char *a = cmd.argv[i];
			if (a < line || a >= line + size || a[0] == '\0')
				abort();
			if (cmd.verb != POP3_VERB_PASS && strchr(a, ' ') != NULL)
				abort();
			unsigned int n;
			long lc;
			if (pop3_parse_msgnum(a, &n) == 0 && n == 0)
				abort();
			if (pop3_parse_linecount(a, &lc) == 0 && lc < 0)
				abort();
		}
		if (cmd.verb == POP3_VERB_PASS && cmd.argc == 1 && cmd.argv[0] != cmd.rest)
			abort();
	} else if (error == NULL) {
		abort();
	}
	free(line);
	return 0;
}
