/*
 * metrics: the registry and the Prometheus text rendering.
 *
 * Invariants:
 * - An update is one relaxed atomic operation on the series' own cells (a
 *   histogram: its bucket, then its sum); no update takes a lock. The
 *   registry lock guards only the lists of families and series, i.e. the
 *   creation of a family or series and rendering.
 * - Series never move or go away once created, so a pointer handed out
 *   stays valid for the life of the process.
 * - Each series is an allocation of whole cache lines of its own: two busy
 *   series never share a line.
 * - A scrape reads each cell once; a histogram's count is the sum of its
 *   buckets as read, so _count always equals the +Inf bucket.
 */
#include "metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#ifndef TERN_VERSION
#define TERN_VERSION "dev"
#endif

#define CACHE_LINE 64

struct metrics_series {
	struct metrics_family *family;
	char *values[METRICS_LABELS_MAX];
	/* counter: [0] the value; gauge: [0] an int64_t in two's complement;
	 * histogram: [0] the sum, [1 + i] observations in bucket i (not
	 * cumulative), the last one +Inf. */
	_Atomic uint64_t cells[];
};

struct metrics_family {
	const struct metrics_def *def;
	unsigned int label_count;
	struct metrics_series **series;
	unsigned int series_count, series_cap;
	bool overflow_logged;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metrics_family **families;
static unsigned int family_count, family_cap;

const uint64_t metrics_latency_buckets_ns[METRICS_LATENCY_BUCKET_COUNT] = {
	50000,      100000,     250000,     500000,      1000000,    2500000,
	5000000,    10000000,   25000000,   50000000,    100000000,  250000000,
	500000000,  1000000000, 2500000000, 5000000000,  10000000000,
};

/* --- registration --- */

static unsigned int label_count(const struct metrics_def *def)
{
	unsigned int n = 0;
	while (def->labels != NULL && def->labels[n] != NULL)
		n++;
	return n;
}

static bool same_labels(const struct metrics_def *a, const struct metrics_def *b)
{
	unsigned int n = label_count(a);
	if (n != label_count(b))
		return false;
	for (unsigned int i = 0; i < n; i++)
		if (strcmp(a->labels[i], b->labels[i]) != 0)
			return false;
	return true;
}

struct metrics_family *metrics_register(const struct metrics_def *def)
{
	unsigned int nlabels = label_count(def);
	if (nlabels > METRICS_LABELS_MAX)
		panic("metrics: %s has %u labels (at most %d)", def->name, nlabels,
		      METRICS_LABELS_MAX);
	if (def->type == METRICS_HISTOGRAM &&
	    (def->bucket_count == 0 || def->bucket_count > METRICS_BUCKETS_MAX))
		panic("metrics: %s has %u buckets", def->name, def->bucket_count);
	pthread_mutex_lock(&registry_lock);
	for (unsigned int i = 0; i < family_count; i++) {
		struct metrics_family *f = families[i];
		if (strcmp(f->def->name, def->name) != 0)
			continue;
		if (f->def->type != def->type || !same_labels(f->def, def) ||
		    f->def->bucket_count != def->bucket_count)
			panic("metrics: %s registered twice with different types or labels",
			      def->name);
		pthread_mutex_unlock(&registry_lock);
		return f;
	}
	struct metrics_family *f = xcalloc(1, sizeof(*f));
	f->def = def;
	f->label_count = nlabels;
	if (family_count == family_cap) {
		family_cap = family_cap == 0 ? 32 : family_cap * 2;
		families = xrealloc(families, family_cap * sizeof(*families));
	}
	families[family_count++] = f;
	pthread_mutex_unlock(&registry_lock);
	return f;
}

static unsigned int cell_count(const struct metrics_def *def)
{
	return def->type == METRICS_HISTOGRAM ? def->bucket_count + 2 : 1;
}

static struct metrics_series *series_create(struct metrics_family *f, const char *const *values)
{
	size_t size = sizeof(struct metrics_series) + cell_count(f->def) * sizeof(_Atomic uint64_t);
	size = (size + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
	struct metrics_series *s = aligned_alloc(CACHE_LINE, size);
	if (s == NULL)
		panic("metrics: out of memory");
	memset(s, 0, size);
	s->family = f;
	for (unsigned int i = 0; i < f->label_count; i++)
		s->values[i] = xstrdup(values[i]);
	for (unsigned int i = 0; i < cell_count(f->def); i++)
		atomic_init(&s->cells[i], 0);
	return s;
}

struct metrics_series *metrics_series(struct metrics_family *f, const char *const *values)
{
	pthread_mutex_lock(&registry_lock);
	for (unsigned int i = 0; i < f->series_count; i++) {
		struct metrics_series *s = f->series[i];
		unsigned int k = 0;
		while (k < f->label_count && strcmp(s->values[k], values[k]) == 0)
			k++;
		if (k == f->label_count) {
			pthread_mutex_unlock(&registry_lock);
			return s;
		}
	}
	if (f->series_count >= METRICS_SERIES_MAX) {
		bool log = !f->overflow_logged;
		f->overflow_logged = true;
		pthread_mutex_unlock(&registry_lock);
		if (log)
			log_error("metrics: %s has %d series already; no more are created",
				  f->def->name, METRICS_SERIES_MAX);
		return NULL;
	}
	struct metrics_series *s = series_create(f, values);
	if (f->series_count == f->series_cap) {
		f->series_cap = f->series_cap == 0 ? 8 : f->series_cap * 2;
		f->series = xrealloc(f->series, f->series_cap * sizeof(*f->series));
	}
	f->series[f->series_count++] = s;
	pthread_mutex_unlock(&registry_lock);
	return s;
}

struct metrics_series *metrics_single(const struct metrics_def *def)
{
	return metrics_series(metrics_register(def), NULL);
}

/* --- updates --- */

void metrics_add(struct metrics_series *s, uint64_t n)
{
	if (s != NULL)
		atomic_fetch_add_explicit(&s->cells[0], n, memory_order_relaxed);
}

void metrics_gauge_add(struct metrics_series *s, int64_t delta)
{
	/* Unsigned arithmetic wraps: adding the two's complement subtracts. */
	if (s != NULL)
		atomic_fetch_add_explicit(&s->cells[0], (uint64_t)delta, memory_order_relaxed);
}

void metrics_gauge_set(struct metrics_series *s, int64_t value)
{
	if (s != NULL)
		atomic_store_explicit(&s->cells[0], (uint64_t)value, memory_order_relaxed);
}

void metrics_observe(struct metrics_series *s, uint64_t value)
{
	if (s == NULL)
		return;
	const struct metrics_def *def = s->family->def;
	unsigned int i = 0;
	while (i < def->bucket_count && value > def->buckets[i])
		i++;
	atomic_fetch_add_explicit(&s->cells[1 + i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->cells[0], value, memory_order_relaxed);
}

uint64_t metrics_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void metrics_observe_since(struct metrics_series *s, uint64_t start_ns)
{
	if (s != NULL)
		metrics_observe(s, metrics_now_ns() - start_ns);
}

/* --- reads --- */

static uint64_t cell(const struct metrics_series *s, unsigned int i)
{
	return atomic_load_explicit(&((struct metrics_series *)s)->cells[i], memory_order_relaxed);
}

static uint64_t histogram_count(const struct metrics_series *s)
{
	uint64_t n = 0;
	for (unsigned int i = 0; i <= s->family->def->bucket_count; i++)
		n += cell(s, 1 + i);
	return n;
}

uint64_t metrics_value(const struct metrics_series *s)
{
	if (s == NULL)
		return 0;
	return s->family->def->type == METRICS_HISTOGRAM ? histogram_count(s) : cell(s, 0);
}

int64_t metrics_gauge_value(const struct metrics_series *s)
{
	return s == NULL ? 0 : (int64_t)cell(s, 0);
}

uint64_t metrics_histogram_sum(const struct metrics_series *s)
{
	return s == NULL || s->family->def->type != METRICS_HISTOGRAM ? 0 : cell(s, 0);
}

/* --- rendering --- */

static const char *type_name(enum metrics_type type)
{
	switch (type) {
	case METRICS_COUNTER: return "counter";
	case METRICS_GAUGE: return "gauge";
	case METRICS_HISTOGRAM: return "histogram";
	}
	return "untyped";
}

/* Escapes \ and newline, and " too in a label value (format 0.0.4). */
static void append_escaped(struct buf *out, const char *s, bool quote)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			buf_append_str(out, "\\\\");
		else if (*s == '\n')
			buf_append_str(out, "\\n");
		else if (*s == '"' && quote)
			buf_append_str(out, "\\\"");
		else
			buf_append_c(out, *s);
	}
}

void metrics_render_header(struct buf *out, const char *name, enum metrics_type type,
			   const char *help)
{
	buf_printf(out, "# HELP %s ", name);
	append_escaped(out, help, false);
	buf_printf(out, "\n# TYPE %s %s\n", name, type_name(type));
}

void metrics_render_sample(struct buf *out, const char *name, const char *label,
			   const char *label_value, uint64_t value)
{
	buf_append_str(out, name);
	if (label != NULL) {
		buf_printf(out, "{%s=\"", label);
		append_escaped(out, label_value, true);
		buf_append_str(out, "\"}");
	}
	buf_printf(out, " %llu\n", (unsigned long long)value);
}

/* A value in the rendered unit: exact for integers, else the shortest
 * usual form ("5e-05", "0.25"). */
static void format_scaled(char *dst, size_t size, uint64_t v, double unit)
{
	if (unit == 0 || unit == 1)
		snprintf(dst, size, "%llu", (unsigned long long)v);
	else
		snprintf(dst, size, "%.15g", (double)v * unit);
}

/* name{a="x",b="y"[,le="..."]} with the le label given as text. */
static void append_series_name(struct buf *out, const struct metrics_series *s,
			       const char *suffix, const char *le)
{
	const struct metrics_family *f = s->family;
	buf_printf(out, "%s%s", f->def->name, suffix);
	if (f->label_count == 0 && le == NULL)
		return;
	buf_append_c(out, '{');
	for (unsigned int i = 0; i < f->label_count; i++) {
		buf_printf(out, "%s%s=\"", i > 0 ? "," : "", f->def->labels[i]);
		append_escaped(out, s->values[i], true);
		buf_append_c(out, '"');
	}
	if (le != NULL)
		buf_printf(out, "%sle=\"%s\"", f->label_count > 0 ? "," : "", le);
	buf_append_c(out, '}');
}

static void render_histogram(struct buf *out, const struct metrics_series *s)
{
	const struct metrics_def *def = s->family->def;
	uint64_t cumulative = 0;
	for (unsigned int i = 0; i <= def->bucket_count; i++) {
		char le[64] = "+Inf";
		if (i < def->bucket_count)
			format_scaled(le, sizeof(le), def->buckets[i], def->unit);
		cumulative += cell(s, 1 + i);
		append_series_name(out, s, "_bucket", le);
		buf_printf(out, " %llu\n", (unsigned long long)cumulative);
	}
	char sum[64];
	format_scaled(sum, sizeof(sum), cell(s, 0), def->unit);
	append_series_name(out, s, "_sum", NULL);
	buf_printf(out, " %s\n", sum);
	append_series_name(out, s, "_count", NULL);
	buf_printf(out, " %llu\n", (unsigned long long)cumulative);
}

static int series_cmp(const void *a, const void *b)
{
	const struct metrics_series *x = *(struct metrics_series *const *)a;
	const struct metrics_series *y = *(struct metrics_series *const *)b;
	for (unsigned int i = 0; i < x->family->label_count; i++) {
		int c = strcmp(x->values[i], y->values[i]);
		if (c != 0)
			return c;
	}
	return 0;
}

static int family_cmp(const void *a, const void *b)
{
	const struct metrics_family *x = *(struct metrics_family *const *)a;
	const struct metrics_family *y = *(struct metrics_family *const *)b;
	return strcmp(x->def->name, y->def->name);
}

/* With registry_lock held. A family with no series yet renders nothing. */
static void family_render_locked(struct metrics_family *f, struct buf *out)
{
	if (f->series_count == 0)
		return;
	qsort(f->series, f->series_count, sizeof(*f->series), series_cmp);
	metrics_render_header(out, f->def->name, f->def->type, f->def->help);
	for (unsigned int i = 0; i < f->series_count; i++) {
		const struct metrics_series *s = f->series[i];
		switch (f->def->type) {
		case METRICS_COUNTER:
			append_series_name(out, s, "", NULL);
			buf_printf(out, " %llu\n", (unsigned long long)cell(s, 0));
			break;
		case METRICS_GAUGE:
			append_series_name(out, s, "", NULL);
			buf_printf(out, " %lld\n", (long long)(int64_t)cell(s, 0));
			break;
		case METRICS_HISTOGRAM:
			render_histogram(out, s);
			break;
		}
	}
}

void metrics_family_render(struct metrics_family *f, struct buf *out)
{
	pthread_mutex_lock(&registry_lock);
	family_render_locked(f, out);
	pthread_mutex_unlock(&registry_lock);
}

/* --- the process's own metrics --- */

static const char *const version_labels[] = { "version", NULL };
static const struct metrics_def build_info_def = {
	METRICS_GAUGE, "tern_build_info", "Always 1; the version of the running binary.",
	version_labels, NULL, 0, 0,
};
static const struct metrics_def start_time_def = {
	METRICS_GAUGE, "tern_process_start_time_seconds",
	"When the process started, in seconds since the Unix epoch.", NULL, NULL, 0, 0,
};
static const struct metrics_def open_fds_def = {
	METRICS_GAUGE, "tern_process_open_fds", "File descriptors the process has open.",
	NULL, NULL, 0, 0,
};
static const struct metrics_def rss_def = {
	METRICS_GAUGE, "tern_process_resident_memory_bytes",
	"Resident memory of the process, in bytes.", NULL, NULL, 0, 0,
};
static struct metrics_series *open_fds, *rss;

__attribute__((constructor)) static void process_metrics_init(void)
{
	metrics_gauge_set(metrics_series(metrics_register(&build_info_def),
					 (const char *const[]){ TERN_VERSION }),
			  1);
	metrics_gauge_set(metrics_single(&start_time_def), (int64_t)time(NULL));
	open_fds = metrics_single(&open_fds_def);
	rss = metrics_single(&rss_def);
}

/* Read at each scrape (Linux /proc; left as they were elsewhere). */
static void process_metrics_update(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (d != NULL) {
		int64_t n = 0;
		for (struct dirent *e; (e = readdir(d)) != NULL;)
			if (e->d_name[0] != '.')
				n++;
		closedir(d);
		metrics_gauge_set(open_fds, n - 1); /* not the directory's own */
	}
	FILE *f = fopen("/proc/self/statm", "re");
	if (f != NULL) {
		unsigned long long pages_total, pages_resident;
		if (fscanf(f, "%llu %llu", &pages_total, &pages_resident) == 2)
			metrics_gauge_set(rss, (int64_t)(pages_resident * (unsigned long long)sysconf(_SC_PAGESIZE)));
		fclose(f);
	}
}

void metrics_render(struct buf *out)
{
	process_metrics_update();
	pthread_mutex_lock(&registry_lock);
	qsort(families, family_count, sizeof(*families), family_cmp);
	for (unsigned int i = 0; i < family_count; i++)
		family_render_locked(families[i], out);
	pthread_mutex_unlock(&registry_lock);
}
