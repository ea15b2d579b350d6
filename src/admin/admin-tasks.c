/*
 * admin-tasks: a FIFO of repair tasks served by one thread of its own.
 *
 * Invariants:
 * - At most one repair runs at a time (repairs of one store compete for the
 *   same rows; running two would only double the load).
 * - A task is freed only when it is neither waiting nor running: the
 *   repair thread's task can never be pruned under it.
 * - Everything but the running repair's report is read and written under
 *   the lock; the report is written by store_repair() with relaxed atomic
 *   stores and read here with relaxed atomic loads. Once the task is done,
 *   the lock orders the final values before any reader.
 */
#include "admin-tasks.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "clock.h"
#include "log.h"

enum task_status { TASK_WAITING, TASK_RUNNING, TASK_DONE, TASK_FAILED };

static const char *const status_names[] = { "waiting", "running", "done", "failed" };

struct task {
	char id[ADMIN_TASK_ID_LEN + 1];
	enum task_status status;
	struct store_repair_options opts;
	struct store_repair_report report;
	enum store_status result;
	time_t submitted, started, finished;
	uint64_t started_ms, finished_ms; /* monotonic, for the rate */
	struct task *next;            /* older to newer */
};

struct admin_tasks {
	struct store *store;
	pthread_mutex_t lock;
	pthread_cond_t cond;         /* a task was queued, or stopping */
	pthread_cond_t idle;         /* the thread has exited */
	pthread_t thread;
	struct task *head, *tail;    /* every kept task, oldest first */
	unsigned int count;
	bool stopping, exited;
};

static struct task *next_waiting(struct admin_tasks *t)
{
	for (struct task *k = t->head; k != NULL; k = k->next)
		if (k->status == TASK_WAITING)
			return k;
	return NULL;
}

/* Frees the oldest finished tasks beyond ADMIN_TASKS_KEPT. Lock held. */
static void prune(struct admin_tasks *t)
{
	struct task **p = &t->head, *prev = NULL;
	while (t->count > ADMIN_TASKS_KEPT && *p != NULL) {
		struct task *k = *p;
		if (k->status == TASK_DONE || k->status == TASK_FAILED) {
			*p = k->next;
			if (t->tail == k)
				t->tail = prev;
			free(k);
			t->count--;
		} else {
			prev = k;
			p = &k->next;
		}
	}
}

static void *repair_thread(void *arg)
{
	struct admin_tasks *t = arg;
	pthread_mutex_lock(&t->lock);
	for (;;) {
		struct task *k;
		while (!t->stopping && (k = next_waiting(t)) == NULL)
			pthread_cond_wait(&t->cond, &t->lock);
		if (t->stopping)
			break;
		k->status = TASK_RUNNING;
		k->started = time(NULL);
		k->started_ms = clock_monotonic_ms();
		pthread_mutex_unlock(&t->lock);
		log_info("repair task started id=%s dry_run=%s per_second=%u min_age=%u",
			 k->id, k->opts.dry_run ? "yes" : "no", k->opts.per_second,
			 k->opts.min_age_secs);
		enum store_status st = store_repair(t->store, &k->opts, &k->report);
		pthread_mutex_lock(&t->lock);
		k->result = st;
		k->status = st == STORE_OK ? TASK_DONE : TASK_FAILED;
		k->finished = time(NULL);
		k->finished_ms = clock_monotonic_ms();
		if (st == STORE_OK)
			log_info("repair task done id=%s", k->id);
		else
			log_warn("repair task failed id=%s error=%s", k->id, store_status_name(st));
		prune(t);
	}
	t->exited = true;
	pthread_cond_broadcast(&t->idle);
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

struct admin_tasks *admin_tasks_create(struct store *store)
{
	struct admin_tasks *t = xcalloc(1, sizeof(*t));
	t->store = store;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->idle, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&t->thread, NULL, repair_thread, t) != 0)
		fatal("admin: cannot start the repair thread");
	return t;
}

bool admin_tasks_destroy(struct admin_tasks **tasksp, unsigned int grace_secs)
{
	struct admin_tasks *t = *tasksp;
	if (t == NULL)
		return true;
	*tasksp = NULL;
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += grace_secs;
	pthread_mutex_lock(&t->lock);
	t->stopping = true;
	pthread_cond_broadcast(&t->cond);
	for (struct task *k = t->head; k != NULL; k = k->next)
		if (k->status == TASK_RUNNING)
			log_info("shutdown: waiting up to %u s for repair task %s", grace_secs, k->id);
	int rc = 0;
	while (!t->exited && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&t->idle, &t->lock, &deadline);
	bool exited = t->exited;
	pthread_mutex_unlock(&t->lock);
	if (!exited) {
		/* The repair thread still uses the store and these tasks. */
		pthread_detach(t->thread);
		return false;
	}
	pthread_join(t->thread, NULL);
	while (t->head != NULL) {
		struct task *k = t->head;
		t->head = k->next;
		free(k);
	}
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
	pthread_cond_destroy(&t->idle);
	free(t);
	return true;
}

int admin_tasks_submit(struct admin_tasks *t, const struct store_repair_options *opts,
		       char id_r[ADMIN_TASK_ID_LEN + 1])
{
	pthread_mutex_lock(&t->lock);
	unsigned int waiting = 0;
	for (struct task *k = t->head; k != NULL; k = k->next)
		waiting += k->status == TASK_WAITING;
	if (t->stopping || waiting >= ADMIN_TASKS_WAITING_MAX) {
		pthread_mutex_unlock(&t->lock);
		return -1;
	}
	struct task *k = xcalloc(1, sizeof(*k));
	struct uuid u;
	timeuuid_generate(&u);
	uuid_format(&u, k->id);
	k->opts = *opts;
	k->status = TASK_WAITING;
	k->submitted = time(NULL);
	if (t->tail != NULL)
		t->tail->next = k;
	else
		t->head = k;
	t->tail = k;
	t->count++;
	prune(t);
	str_copy(id_r, k->id, ADMIN_TASK_ID_LEN + 1);
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

static json_t *json_time(time_t when)
{
	if (when == 0)
		return json_null();
	struct tm tm;
	char text[32];
	gmtime_r(&when, &tm);
	strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(text);
}

#define LOAD(field) json_integer((json_int_t)__atomic_load_n(&r->field, __ATOMIC_RELAXED))
static json_t *json_report(const struct task *k)
{
	const struct store_repair_report *r = &k->report;
	json_t *o = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
			      "refs_scanned", LOAD(refs_scanned),
			      "listing_scanned", LOAD(listing_scanned),
			      "bodies_scanned", LOAD(bodies_scanned),
			      "relisted", LOAD(relisted),
			      "deletes_finished", LOAD(deletes_finished),
			      "unlisted", LOAD(unlisted),
			      "swept", LOAD(swept),
			      "skipped", LOAD(skipped),
			      "orphaned", LOAD(orphaned));
	if (__atomic_load_n(&r->by_token, __ATOMIC_RELAXED)) {
		/* A repair by token range (Cassandra): what `tern repair` shows
		 * on a terminal, and the token to resume after. */
		uint64_t end_ms = k->finished_ms != 0 ? k->finished_ms : clock_monotonic_ms();
		struct store_repair_progress p;
		store_repair_progress(&k->opts, r, (double)(end_ms - k->started_ms) / 1000, &p);
		json_object_set_new(o, "token_reached",
				    json_integer((json_int_t)__atomic_load_n(&r->token_reached,
									     __ATOMIC_RELAXED)));
		json_object_set_new(o, "covered_percent", json_real(p.covered * 100));
		json_object_set_new(o, "rows_scanned", json_integer((json_int_t)p.rows));
		json_object_set_new(o, "rows_per_second", json_real(p.rows_per_second));
		json_object_set_new(o, "seconds_left", p.seconds_left >= 0 ?
				    json_real(p.seconds_left) : json_null());
	}
	return o;
}
#undef LOAD

/* Lock held. */
static json_t *json_task(const struct task *k)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:{s:b, s:i, s:i}}",
			      "id", k->id, "type", "repair", "status", status_names[k->status],
			      "submitted", json_time(k->submitted),
			      "started", json_time(k->started),
			      "finished", json_time(k->finished),
			      "options", "dry_run", k->opts.dry_run,
			      "per_second", (json_int_t)k->opts.per_second,
			      "min_age", (json_int_t)k->opts.min_age_secs);
	if (k->opts.has_from)
		json_object_set_new(json_object_get(o, "options"), "from",
				    json_integer((json_int_t)k->opts.from_token));
	json_object_set_new(o, "progress", json_report(k));
	if (k->status == TASK_DONE)
		json_object_set_new(o, "report", json_report(k));
	if (k->status == TASK_FAILED)
		json_object_set_new(o, "error", json_string(store_status_name(k->result)));
	return o;
}

json_t *admin_tasks_get(struct admin_tasks *t, const char *id)
{
	json_t *o = NULL;
	pthread_mutex_lock(&t->lock);
	for (struct task *k = t->head; k != NULL && o == NULL; k = k->next)
		if (strcmp(k->id, id) == 0)
			o = json_task(k);
	pthread_mutex_unlock(&t->lock);
	return o;
}

json_t *admin_tasks_list(struct admin_tasks *t)
{
	json_t *a = json_array();
	pthread_mutex_lock(&t->lock);
	for (struct task *k = t->head; k != NULL; k = k->next)
		json_array_insert_new(a, 0, json_task(k));
	pthread_mutex_unlock(&t->lock);
	return a;
}
