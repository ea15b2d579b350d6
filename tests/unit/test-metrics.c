/*
 * test-metrics: the metrics registry (src/lib/metrics.c): registration,
 * series, the exact text of the Prometheus exposition format 0.0.4
 * (HELP/TYPE lines, label escaping, histogram buckets, _sum and _count,
 * stable order), the series cap, the worker pool's metrics, updates from
 * several threads at once, and a micro benchmark of an increment (printed;
 * timing never decides pass/fail).
 */
#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "metrics.h"
#include "worker-pool.h"

#include "test.h"

static const char *const two_labels[] = { "protocol", "verb", NULL };
static const char *const one_label[] = { "operation", NULL };

static const struct metrics_def counter_def = {
	METRICS_COUNTER, "test_commands_total", "Commands by protocol and verb.", two_labels,
	NULL, 0, 0,
};

static const char *render_family(struct metrics_family *f, struct buf *out)
{
	buf_reset(out);
	metrics_family_render(f, out);
	return out->data;
}

static void test_counter_and_order(void)
{
	struct buf out;
	buf_init(&out, 0);
	struct metrics_family *f = metrics_register(&counter_def);
	CHECK(metrics_register(&counter_def) == f);
	/* No series yet: nothing at all, not even HELP. */
	CHECK_STR(render_family(f, &out), "");
	struct metrics_series *smtp_mail = metrics_series(f, (const char *const[]){ "smtp", "MAIL" });
	struct metrics_series *pop3_retr = metrics_series(f, (const char *const[]){ "pop3", "RETR" });
	struct metrics_series *pop3_list = metrics_series(f, (const char *const[]){ "pop3", "LIST" });
	CHECK(metrics_series(f, (const char *const[]){ "pop3", "RETR" }) == pop3_retr);
	CHECK(smtp_mail != pop3_retr && pop3_retr != pop3_list);
	metrics_inc(pop3_retr);
	metrics_add(pop3_retr, 41);
	metrics_inc(smtp_mail);
	metrics_inc(NULL); /* ignored */
	CHECK_INT(metrics_value(pop3_retr), 42);
	CHECK_INT(metrics_value(pop3_list), 0);
	/* Series sorted by label values, whatever their creation order. */
	CHECK_STR(render_family(f, &out),
		  "# HELP test_commands_total Commands by protocol and verb.\n"
		  "# TYPE test_commands_total counter\n"
		  "test_commands_total{protocol=\"pop3\",verb=\"LIST\"} 0\n"
		  "test_commands_total{protocol=\"pop3\",verb=\"RETR\"} 42\n"
		  "test_commands_total{protocol=\"smtp\",verb=\"MAIL\"} 1\n");
	buf_deinit(&out);
}

static const struct metrics_def gauge_def = {
	METRICS_GAUGE, "test_open", "Open \"things\"\\now\nsecond line.", NULL, NULL, 0, 0,
};
static const struct metrics_def escape_def = {
	METRICS_GAUGE, "test_escape", "Escapes.", one_label, NULL, 0, 0,
};

static void test_gauge_and_escaping(void)
{
	struct buf out;
	buf_init(&out, 0);
	struct metrics_series *g = metrics_single(&gauge_def);
	CHECK(metrics_single(&gauge_def) == g);
	metrics_gauge_add(g, 3);
	metrics_gauge_add(g, -5);
	CHECK_INT(metrics_gauge_value(g), -2);
	/* HELP escapes \ and newline only; label values also ". */
	CHECK_STR(render_family(metrics_register(&gauge_def), &out),
		  "# HELP test_open Open \"things\"\\\\now\\nsecond line.\n"
		  "# TYPE test_open gauge\n"
		  "test_open -2\n");
	metrics_gauge_set(g, 7);
	CHECK_INT(metrics_gauge_value(g), 7);
	struct metrics_family *f = metrics_register(&escape_def);
	metrics_gauge_set(metrics_series(f, (const char *const[]){ "a\"b\\c\nd" }), 1);
	CHECK_STR(render_family(f, &out),
		  "# HELP test_escape Escapes.\n"
		  "# TYPE test_escape gauge\n"
		  "test_escape{operation=\"a\\\"b\\\\c\\nd\"} 1\n");
	buf_deinit(&out);
}

static const uint64_t small_buckets[] = { 50000, 1000000, 2500000000 };
static const struct metrics_def hist_def = {
	METRICS_HISTOGRAM, "test_op_seconds", "Latency.", one_label, small_buckets, 3, 1e-9,
};
static const uint64_t size_buckets[] = { 1024, 65536 };
static const struct metrics_def size_def = {
	METRICS_HISTOGRAM, "test_size_octets", "Sizes.", NULL, size_buckets, 2, 1,
};

static void test_histogram(void)
{
	struct buf out;
	buf_init(&out, 0);
	struct metrics_family *f = metrics_register(&hist_def);
	struct metrics_series *h = metrics_series(f, (const char *const[]){ "deliver" });
	metrics_observe(h, 50000);      /* on a bound: in that bucket (le) */
	metrics_observe(h, 50001);
	metrics_observe(h, 2000000);
	metrics_observe(h, 20000000000ull); /* +Inf */
	CHECK_INT(metrics_value(h), 4);
	CHECK_INT(metrics_histogram_sum(h), 50000 + 50001 + 2000000 + 20000000000ull);
	CHECK_STR(render_family(f, &out),
		  "# HELP test_op_seconds Latency.\n"
		  "# TYPE test_op_seconds histogram\n"
		  "test_op_seconds_bucket{operation=\"deliver\",le=\"5e-05\"} 1\n"
		  "test_op_seconds_bucket{operation=\"deliver\",le=\"0.001\"} 2\n"
		  "test_op_seconds_bucket{operation=\"deliver\",le=\"2.5\"} 3\n"
		  "test_op_seconds_bucket{operation=\"deliver\",le=\"+Inf\"} 4\n"
		  "test_op_seconds_sum{operation=\"deliver\"} 20.002100001\n"
		  "test_op_seconds_count{operation=\"deliver\"} 4\n");
	/* Integer units render exactly, and no labels means {le=...} alone. */
	struct metrics_series *sz = metrics_single(&size_def);
	metrics_observe(sz, 100);
	metrics_observe(sz, 70000);
	CHECK_STR(render_family(metrics_register(&size_def), &out),
		  "# HELP test_size_octets Sizes.\n"
		  "# TYPE test_size_octets histogram\n"
		  "test_size_octets_bucket{le=\"1024\"} 1\n"
		  "test_size_octets_bucket{le=\"65536\"} 1\n"
		  "test_size_octets_bucket{le=\"+Inf\"} 2\n"
		  "test_size_octets_sum 70100\n"
		  "test_size_octets_count 2\n");
	/* The shared latency buckets: 50 µs .. 10 s, increasing. */
	CHECK_INT(metrics_latency_buckets_ns[0], 50000);
	CHECK_INT(metrics_latency_buckets_ns[METRICS_LATENCY_BUCKET_COUNT - 1], 10000000000ull);
	for (int i = 1; i < METRICS_LATENCY_BUCKET_COUNT; i++)
		CHECK(metrics_latency_buckets_ns[i] > metrics_latency_buckets_ns[i - 1]);
	buf_deinit(&out);
}

static const struct metrics_def many_def = {
	METRICS_COUNTER, "test_many_total", "Capped.", one_label, NULL, 0, 0,
};

static void test_series_cap(void)
{
	struct metrics_family *f = metrics_register(&many_def);
	char name[32];
	for (int i = 0; i < METRICS_SERIES_MAX; i++) {
		snprintf(name, sizeof(name), "v%d", i);
		CHECK(metrics_series(f, (const char *const[]){ name }) != NULL);
	}
	CHECK(metrics_series(f, (const char *const[]){ "one too many" }) == NULL);
	/* An existing one is still found. */
	CHECK(metrics_series(f, (const char *const[]){ "v7" }) != NULL);
	metrics_add(metrics_series(f, (const char *const[]){ "again too many" }), 1);
}

/* metrics_render: every family, sorted by name, each once; the process's own. */
static void test_render_all(void)
{
	struct buf out;
	buf_init(&out, 0);
	metrics_render(&out);
	const char *order[] = {
		"# TYPE tern_build_info gauge\n", "# TYPE tern_process_open_fds gauge\n",
		"# TYPE tern_process_resident_memory_bytes gauge\n",
		"# TYPE tern_process_start_time_seconds gauge\n",
		"# TYPE test_commands_total counter\n", "# TYPE test_escape gauge\n",
		"# TYPE test_op_seconds histogram\n", "# TYPE test_open gauge\n",
	};
	const char *at = out.data;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		const char *p = strstr(at, order[i]);
		CHECK(p != NULL);
		if (p != NULL) {
			CHECK(strstr(p + 1, order[i]) == NULL);
			at = p;
		}
	}
	CHECK(strstr(out.data, "\ntern_build_info{version=\"") != NULL);
	const char *st = strstr(out.data, "\ntern_process_start_time_seconds ");
	CHECK(st != NULL && strtoll(st + 33, NULL, 10) > 1600000000);
	const char *fds = strstr(out.data, "\ntern_process_open_fds ");
	CHECK(fds != NULL && strtoll(fds + 23, NULL, 10) >= 3);
	/* Every line is a comment or "name[{...}] value". */
	for (char *line = out.data; *line != '\0';) {
		char *nl = strchr(line, '\n');
		CHECK(nl != NULL);
		if (nl == NULL)
			break;
		CHECK(line[0] == '#' || (memchr(line, ' ', (size_t)(nl - line)) != NULL &&
					 strncmp(line, "t", 1) == 0));
		line = nl + 1;
	}
	buf_deinit(&out);
}

/* --- the worker pool's metrics --- */

static struct event_base *base;
static int jobs_done;

static void job_work(struct worker_job *job)
{
	struct timespec ts = { 0, 2000000 };
	nanosleep(&ts, NULL);
}

static void job_done(struct worker_job *job)
{
	jobs_done++;
}

/* The value of the sample line "name value" in a full rendering, or -1. */
static long long sample(const char *name)
{
	struct buf out;
	buf_init(&out, 0);
	metrics_render(&out);
	char key[128];
	snprintf(key, sizeof(key), "\n%s ", name);
	const char *p = strstr(out.data, key);
	long long v = p != NULL ? strtoll(p + strlen(key), NULL, 10) : -1;
	buf_deinit(&out);
	return v;
}

static void test_worker_pool(void)
{
	base = event_base_new();
	long long threads_before = sample("tern_worker_threads");
	struct worker_pool *pool = worker_pool_create(base, 2);
	CHECK_INT(sample("tern_worker_threads"), (threads_before < 0 ? 0 : threads_before) + 2);
	long long before = sample("tern_worker_jobs_total");
	struct worker_job job[6];
	for (int i = 0; i < 6; i++) {
		job[i].work = job_work;
		job[i].done = job_done;
		worker_pool_submit(pool, &job[i]);
	}
	/* Two threads, six jobs of 2 ms: some wait. */
	long long queued = sample("tern_worker_jobs_queued");
	CHECK(queued >= 1 && queued <= 6);
	while (jobs_done < 6)
		event_base_loop(base, EVLOOP_ONCE);
	CHECK_INT(sample("tern_worker_jobs_total") - before, 6);
	CHECK_INT(sample("tern_worker_jobs_queued"), 0);
	CHECK_INT(sample("tern_worker_queue_wait_seconds_count"), 6);
	CHECK_INT(sample("tern_worker_threads_busy"), 0);
	worker_pool_destroy(&pool);
	CHECK_INT(sample("tern_worker_threads"), 0);
	event_base_free(base);
}

/* --- several threads at once --- */

#define THREADS 4
#define PER_THREAD 1000000

static const struct metrics_def race_counter_def = {
	METRICS_COUNTER, "test_race_total", "Race.", one_label, NULL, 0, 0,
};
static const struct metrics_def race_gauge_def = {
	METRICS_GAUGE, "test_race_gauge", "Race.", NULL, NULL, 0, 0,
};
static const struct metrics_def race_hist_def = {
	METRICS_HISTOGRAM, "test_race_seconds", "Race.", NULL, small_buckets, 3, 1e-9,
};

static void *race_thread(void *arg)
{
	intptr_t id = (intptr_t)arg;
	struct metrics_family *f = metrics_register(&race_counter_def);
	/* Every thread creates the same series at once: one of them wins. */
	struct metrics_series *shared = metrics_series(f, (const char *const[]){ "shared" });
	char own_name[16];
	snprintf(own_name, sizeof(own_name), "t%d", (int)id);
	struct metrics_series *own = metrics_series(f, (const char *const[]){ own_name });
	struct metrics_series *g = metrics_single(&race_gauge_def);
	struct metrics_series *h = metrics_single(&race_hist_def);
	for (int i = 0; i < PER_THREAD; i++) {
		metrics_inc(shared);
		metrics_inc(own);
		metrics_gauge_add(g, (i & 1) ? -1 : 1);
		if (i % 16 == 0)
			metrics_observe(h, (uint64_t)(i % 3) * 1000000);
	}
	return NULL;
}

static void test_threads(void)
{
	pthread_t t[THREADS];
	for (intptr_t i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, race_thread, (void *)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	struct metrics_family *f = metrics_register(&race_counter_def);
	CHECK_INT(metrics_value(metrics_series(f, (const char *const[]){ "shared" })),
		  (long long)THREADS * PER_THREAD);
	for (int i = 0; i < THREADS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "t%d", i);
		CHECK_INT(metrics_value(metrics_series(f, (const char *const[]){ name })), PER_THREAD);
	}
	CHECK_INT(metrics_gauge_value(metrics_single(&race_gauge_def)), 0);
	struct metrics_series *h = metrics_single(&race_hist_def);
	CHECK_INT(metrics_value(h), (long long)THREADS * (PER_THREAD / 16));
	struct buf out;
	buf_init(&out, 0);
	metrics_family_render(metrics_register(&race_counter_def), &out);
	CHECK(strstr(out.data, "test_race_total{operation=\"shared\"} 4000000\n") != NULL);
	/* shared + t0..t3, each once */
	int lines = 0;
	for (const char *p = out.data; (p = strstr(p, "\ntest_race_total{")) != NULL; p++)
		lines++;
	CHECK_INT(lines, 1 + THREADS);
	buf_deinit(&out);
}

/* --- the cost of an update (printed, never a pass/fail criterion) --- */

static const struct metrics_def bench_def = {
	METRICS_COUNTER, "test_bench_total", "Bench.", NULL, NULL, 0, 0,
};
static const struct metrics_def bench_hist_def = {
	METRICS_HISTOGRAM, "test_bench_seconds", "Bench.", NULL, metrics_latency_buckets_ns,
	METRICS_LATENCY_BUCKET_COUNT, 1e-9,
};

static double elapsed_ns(uint64_t start)
{
	return (double)(metrics_now_ns() - start);
}

static struct metrics_series *bench_shared;

static void *bench_thread(void *arg)
{
	for (int i = 0; i < 10000000; i++)
		metrics_inc(bench_shared);
	return NULL;
}

static void bench(void)
{
	const int n = 50000000;
	struct metrics_series *c = metrics_single(&bench_def);
	uint64_t t0 = metrics_now_ns();
	for (int i = 0; i < n; i++)
		metrics_inc(c);
	printf("bench: metrics_inc, one thread: %.2f ns\n", elapsed_ns(t0) / n);
	CHECK_INT(metrics_value(c), n);

	bench_shared = c;
	pthread_t t[2];
	t0 = metrics_now_ns();
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, bench_thread, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("bench: metrics_inc, two threads on one series: %.2f ns per increment\n",
	       elapsed_ns(t0) / 2e7);

	struct metrics_series *h = metrics_single(&bench_hist_def);
	t0 = metrics_now_ns();
	for (int i = 0; i < n / 10; i++)
		metrics_observe(h, (uint64_t)i * 1000);
	printf("bench: metrics_observe (17 buckets): %.2f ns\n", elapsed_ns(t0) / (n / 10));
	t0 = metrics_now_ns();
	for (int i = 0; i < n / 10; i++)
		metrics_observe_since(h, metrics_now_ns());
	printf("bench: metrics_now_ns + metrics_observe_since: %.2f ns\n",
	       elapsed_ns(t0) / (n / 10));
}

int main(void)
{
	test_counter_and_order();
	test_gauge_and_escaping();
	test_histogram();
	test_series_cap();
	test_render_all();
	test_worker_pool();
	test_threads();
	bench();
	TEST_MAIN_END();
}
