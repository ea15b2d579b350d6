#ifndef TERN_ADMIN_TASKS_H
#define TERN_ADMIN_TASKS_H
/*
 * admin-tasks: the repair tasks of the admin API (POST /tasks/repair,
 * GET /tasks, GET /tasks/{id}). Repairs run inside the server, one at a
 * time, in a thread of their own (never on the session worker pool, which
 * serves logins and mail); later submissions wait in order. The last
 * ADMIN_TASKS_KEPT tasks are remembered, in memory only.
 *
 * Threads: every function but the repair thread itself is called from the
 * event loop; the task list is guarded by a mutex, and a running repair's
 * counters are read with relaxed atomic loads (store_repair() updates
 * them with relaxed atomic stores).
 */
#include <jansson.h>
#include <stdbool.h>

#include "store.h"
#include "uuid.h"

#define ADMIN_TASKS_KEPT 100
#define ADMIN_TASKS_WAITING_MAX 16
#define ADMIN_TASK_ID_LEN UUID_STR_LEN

struct admin_tasks;

/* Starts the repair thread. */
struct admin_tasks *admin_tasks_create(struct store *store);
/* Stops taking tasks, drops the waiting ones and waits at most grace_secs
 * for a running repair (store_repair has no cancel). Returns true once
 * everything is freed; false when the repair still runs after the grace:
 * its thread and the tasks are then left alone, and the caller must not
 * close the store (the process should exit). *tasks is NULL either way. */
bool admin_tasks_destroy(struct admin_tasks **tasks, unsigned int grace_secs);
/* Queues a repair with opts; writes its id to id_r. -1 (nothing queued)
 * when ADMIN_TASKS_WAITING_MAX tasks already wait or the tasks are
 * stopping. */
int admin_tasks_submit(struct admin_tasks *tasks, const struct store_repair_options *opts,
		       char id_r[ADMIN_TASK_ID_LEN + 1]);
/* The task as JSON (a new reference), or NULL when no such task is kept. */
json_t *admin_tasks_get(struct admin_tasks *tasks, const char *id);
/* Every kept task, newest first, as a JSON array (a new reference). */
json_t *admin_tasks_list(struct admin_tasks *tasks);

#endif
