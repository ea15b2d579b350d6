#ifndef TERN_LOG_H
#define TERN_LOG_H
/*
 * log: one line per event, in logfmt, on stderr or to syslog.
 *
 * A call's format is the event's text, then its key=value fields:
 *
 *   session_info(s, "login ok user=%s ip=%s", user, ip);
 *
 * is written as
 *
 *   ts=2026-12-01T10:00:00.123Z level=info session=pop3#12 msg="login ok" user=alice@example.test ip=127.0.0.1
 *
 * The fields begin at the first word of the format's own text that starts
 * with key= (key: [A-Za-z_][A-Za-z0-9_.-]*); a word without '=' after them
 * belongs to the value before it. What a conversion (%s, %u...) writes is
 * part of one value whatever it contains (spaces, '=', quotes), so text a
 * client sent can never make a field of its own or end a line: a value is
 * quoted when it needs it, and every byte outside printable ASCII is
 * written \xNN. Long client text should still be truncated by the caller
 * (str_escape_for_log). Secrets are never logged.
 *
 * With syslog (facility mail, ident and pid from openlog), ts= is left to
 * syslog. Thread-safe: each line is one write() or one syslog() call.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdnoreturn.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Settings for the whole process, made before any thread starts. */
void log_set_level(enum log_level level);
/* From now on lines go to syslog, facility mail, as "ident[pid]". The
 * connection to /dev/log is made now, so it survives a privilege drop. */
void log_open_syslog(const char *ident);
/* The level's name ("debug", "info", "warn", "error"). */
const char *log_level_name(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Whether a line of this level would be written (to skip formatting). */
bool log_enabled(enum log_level level);
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* A session's line: session=PROTO#ID comes first, then the event. */
void log_session_vmsg(enum log_level level, const char *proto, unsigned long long id,
		      const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
/* A broken invariant: logs and aborts. */
noreturn void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An unusable start-up: logs and exits with status 1. */
noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
