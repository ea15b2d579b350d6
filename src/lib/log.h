#ifndef TERN_LOG_H
#define TERN_LOG_H
/*
 * log: one line per event on stderr, with a level and, for sessions, the
 * session id. Thread-safe (each line is one write()). Client data must be
 * passed through str_escape_for_log() first; secrets are never logged.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdnoreturn.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
void log_set_prefix(const char *prefix);
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Whether a line of this level would be written (to skip formatting). */
bool log_enabled(enum log_level level);
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
/* A broken invariant: logs and aborts. */
noreturn void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An unusable start-up: logs and exits with status 1 (or the given sysexits code). */
noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
