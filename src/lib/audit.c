/*
 * audit: the append-only audit file (see audit.h).
 *
 * Invariants:
 * - One event is one line is one write() on an O_APPEND descriptor: a
 *   reader (or a rotation) never sees half a line from us, except when the
 *   disk is full, which write() reports and we log.
 * - The descriptor is swapped under the lock: a write in progress finishes
 *   on the old file, the next one goes to the new file, and the old
 *   descriptor is closed only once no write uses it.
 */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define AUDIT_LINE_MAX 4096

struct audit {
	char *path;
	int fd;
	pthread_mutex_t lock;
};

static int open_file(const char *path, const char **error_r)
{
	static char errbuf[512];
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (fd < 0) {
		snprintf(errbuf, sizeof(errbuf), "cannot open audit log %s: %s", path,
			 strerror(errno));
		*error_r = errbuf;
	}
	return fd;
}

struct audit *audit_open(const char *path, const char **error_r)
{
	int fd = open_file(path, error_r);
	if (fd < 0)
		return NULL;
	struct audit *a = xcalloc(1, sizeof(*a));
	a->path = xstrdup(path);
	a->fd = fd;
	pthread_mutex_init(&a->lock, NULL);
	return a;
}

int audit_reopen(struct audit *a, const char **error_r)
{
	int fd = open_file(a->path, error_r);
	if (fd < 0)
		return -1;
	pthread_mutex_lock(&a->lock);
	int old = a->fd;
	a->fd = fd;
	pthread_mutex_unlock(&a->lock);
	close(old);
	return 0;
}

void audit_close(struct audit **ap)
{
	struct audit *a = *ap;
	if (a == NULL)
		return;
	*ap = NULL;
	close(a->fd);
	pthread_mutex_destroy(&a->lock);
	free(a->path);
	free(a);
}

static bool needs_quotes(const char *v)
{
	if (*v == '\0')
		return true;
	for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++)
		if (*p <= ' ' || *p == '"' || *p == '\\' || *p == '=' || *p == 0x7f)
			return true;
	return false;
}

void audit_field(struct buf *line, const char *key, const char *value)
{
	buf_printf(line, " %s=", key);
	if (!needs_quotes(value)) {
		buf_append_str(line, value);
		return;
	}
	buf_append_c(line, '"');
	for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\') {
			buf_append_c(line, '\\');
			buf_append_c(line, (char)*p);
		} else if (*p < ' ' || *p == 0x7f) {
			buf_printf(line, "\\x%02x", *p);
		} else {
			buf_append_c(line, (char)*p);
		}
	}
	buf_append_c(line, '"');
}

void audit_field_u64(struct buf *line, const char *key, unsigned long long value)
{
	buf_printf(line, " %s=%llu", key, value);
}

void audit_line(struct audit *a, const char *event, const struct buf *fields)
{
	if (a == NULL)
		return;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	char stamp[64];
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	struct buf line;
	buf_init(&line, 0);
	buf_printf(&line, "time=%s.%03dZ event=%s", stamp, (int)(tv.tv_usec / 1000), event);
	if (fields != NULL) {
		/* over the cap, the fields are left out and the line says so */
		if (fields->len <= AUDIT_LINE_MAX)
			buf_append(&line, fields->data, fields->len);
		else
			buf_append_str(&line, " truncated=yes");
	}
	buf_append_c(&line, '\n');
	pthread_mutex_lock(&a->lock);
	ssize_t n = write(a->fd, line.data, line.len);
	int err = errno;
	pthread_mutex_unlock(&a->lock);
	if (n != (ssize_t)line.len)
		log_error("audit log write failed path=%s error=\"%s\"", a->path,
			  n < 0 ? strerror(err) : "short write");
	buf_deinit(&line);
}
