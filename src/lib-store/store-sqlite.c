/*
 * store-sqlite: the embedded backend. One database file, data_dir/tern.db,
 * in WAL mode with synchronous=FULL, so a COMMIT returns only after fsync:
 * that is what makes a 250 durable.
 *
 * Threads: each thread gets its own connection (created on first use, closed
 * with the store); SQLite serialises writers, readers see a snapshot.
 * Deliveries are group-committed: concurrent ones share one transaction and
 * one fsync (sqlite_deliver). A delivery to several recipients stores the
 * body once and one listing row per recipient, all or nothing. A body is
 * written as a zeroblob of its final size, then filled in 64 KiB pieces
 * (from memory or from the caller's file), so delivering a large message
 * costs no more memory than a small one.
 *
 * Listing order: rows are keyed by (mailbox_id, sort_key) where sort_key is a
 * byte string whose memcmp order is the TimeUUID order (store_sort_key), so
 * the listing is one range scan in arrival order.
 *
 * Bodies are reference-counted implicitly: a body row is deleted in the same
 * transaction that deletes its last listing row, never while one remains.
 *
 * Reading (cursors): a cursor lives across jobs, which run on any worker
 * thread with other jobs of the same thread in between, so it cannot use the
 * thread's connection. It checks out a reader connection of its own from a
 * small pool (at most SQLITE_READERS_MAX open, SQLITE_READERS_IDLE kept when
 * idle), begins a read transaction there, reads the listing row once and
 * keeps the body's blob open: each piece is one sqlite3_blob_read(), and the
 * cursor reads a snapshot (an expunge meanwhile does not disturb it). When
 * the pool is exhausted, the cursor keeps no connection: it caches the
 * body's rowid and prefix, and each piece runs on the calling thread's
 * connection in a short transaction that checks the body row still holds
 * this message (rowids can be reused), opens the blob, reads and closes it;
 * a body deleted meanwhile gives NOTFOUND. That mode is the overflow only:
 * a reopened blob finds a piece's offset by walking the body's overflow
 * pages from the start, so a piece costs more the further into a large
 * message it lies.
 *
 * An open read transaction holds back WAL checkpoints past its snapshot
 * (the WAL file grows until the cursor closes, and is reset at the first
 * moment no reader holds an older snapshot). That is bounded: a cursor is
 * open for the length of one RETR/TOP, and a client that stops reading is
 * timed out after the POP3 idle timeout, which closes the cursor.
 *
 * Quotas are exact: a recipient's limits and usage are read inside the
 * delivery's write transaction (BEGIN IMMEDIATE serialises writers, and a
 * group's earlier deliveries are visible to its later ones), and usage is
 * a count/sum over the mailbox's range of the listing, never a counter.
 * It is read only when some limit applies to the recipient.
 *
 * Schema versions (meta.schema_version): 1 the mail tables; 2 adds the
 * users' own quota columns, the aliases table and the health table; 3 the
 * users' own EXPIRE policy and last POP3 login, and the retrieved table
 * (first retrieval of a message, for EXPIRE); 4 the outbound queue
 * (queue, queue_chunks, queue_nodes). An older database is migrated in the
 * transaction that opens it.
 *
 * The outbound queue: one queue row per entry (the recipients in
 * store.c's stored form), its message in queue_chunks rows of
 * STORE_QUEUE_CHUNK octets (a read costs the chunks it covers, not a walk
 * from the start of a blob), and queue_nodes for the heartbeats. A put is
 * one transaction (COMMIT with fsync, like a delivery, but outside the
 * delivery group commit); a put whose id is there already changes nothing.
 *
 * Prepared statements: a thread's connection keeps the hot statements
 * (prep_cached/unprep: user lookup, listing, delivery; exec_cached: BEGIN,
 * COMMIT and the delivery's SAVEPOINT;
 * plain prep() statements are finalized as before) in a thread-local cache, keyed by
 * the SQL text's address: after the first call, a statement costs a
 * sqlite3_reset and new bindings, not a parse. The cache belongs to one
 * connection at a time (the thread's, for the store it last used); the
 * statements stay owned by their connection, which finalizes them all
 * before it closes, and a close of any thread connection makes every
 * thread drop its cache before the next use (conn_generation), so a cache
 * never refers to a closed connection. The readers' connections (cursors)
 * move between threads and do not use it: their one statement is
 * prepared once per connection anyway.
 *
 * Thread safety: connections are opened SQLITE_OPEN_NOMUTEX ("multi-thread"
 * mode: a connection may move between threads but is never used by two at
 * once, which the per-thread connections and the one-call-at-a-time cursor
 * contract guarantee) and SQLITE_OPEN_PRIVATECACHE (no shared cache, so a
 * reader's snapshot is its own); the library itself must be thread-safe,
 * which sqlite_open checks.
 */
#include "store-private.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sqlite-nowait.h"

#define SQLITE_SCHEMA_VERSION 4
#define SQLITE_BUSY_TIMEOUT_MS 10000
/* Reader connections held by open cursors, at most; beyond, cursors read
 * through the calling thread's connection (see the file comment). */
#define SQLITE_READERS_MAX 64
/* Reader connections kept open while no cursor needs them. */
#define SQLITE_READERS_IDLE 4
#define WRITE_CHUNK (64 * 1024)
/* Statements a thread's connection keeps prepared: more than the hot paths
 * use (about 20); beyond, statements are prepared and finalized per call. */
#define STMT_CACHE_SLOTS 48

struct sqlite_conn {
	sqlite3 *db;
	struct sqlite_conn *next;
};

/* A connection of the cursors' pool, with its statement prepared once. */
struct sqlite_reader {
	sqlite3 *db;
	sqlite3_stmt *find;  /* a message's listing row: prefix, body rowid */
	struct sqlite_reader *next;
};

struct commit_req {
	struct store_delivery *d;
	enum store_status result;
	bool done;
	struct commit_req *next;
};

struct sqlite_store {
	struct store store;
	char *path;
	pthread_key_t key;
	pthread_mutex_t lock;
	struct sqlite_conn *conns;
	/* group commit */
	pthread_mutex_t gc_lock;
	pthread_cond_t gc_cond;
	struct commit_req *gc_head, *gc_tail;
	bool gc_leader;
	/* the cursors' reader connections */
	pthread_mutex_t readers_lock;
	struct sqlite_reader *readers_idle;
	unsigned int readers_idle_count;
	unsigned int readers_open;  /* idle + checked out */
	/* the database file opened, for store_health */
	char *dir;
	dev_t dev;
	ino_t ino;
};

static const char *const schema_sql =
	"CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS domains (name TEXT PRIMARY KEY) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS users ("
	"  address TEXT PRIMARY KEY, domain TEXT NOT NULL, password TEXT NOT NULL,"
	"  mailbox_id BLOB NOT NULL UNIQUE, uidvalidity INTEGER NOT NULL,"
	"  next_uid INTEGER NOT NULL DEFAULT 1);"
	"CREATE INDEX IF NOT EXISTS users_domain ON users(domain);"
	"CREATE TABLE IF NOT EXISTS bodies ("
	"  id INTEGER PRIMARY KEY, message_id BLOB NOT NULL UNIQUE, data BLOB NOT NULL);"
	"CREATE TABLE IF NOT EXISTS listing ("
	"  mailbox_id BLOB NOT NULL, sort_key BLOB NOT NULL, size INTEGER NOT NULL,"
	"  uidl TEXT NOT NULL, prefix BLOB NOT NULL, body INTEGER NOT NULL,"
	"  PRIMARY KEY (mailbox_id, sort_key)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS listing_body ON listing(body);";

/* Migrations, by the version they bring the database to (an empty one is
 * version 0 after schema_sql). */
static const char *const migrations[SQLITE_SCHEMA_VERSION + 1] = {
	[2] = "ALTER TABLE users ADD COLUMN quota_messages INTEGER NOT NULL DEFAULT 0;"
	      "ALTER TABLE users ADD COLUMN quota_octets INTEGER NOT NULL DEFAULT 0;"
	      "CREATE TABLE aliases (address TEXT PRIMARY KEY, domain TEXT NOT NULL,"
	      "  targets TEXT NOT NULL) WITHOUT ROWID;"
	      "CREATE TABLE health (id INTEGER PRIMARY KEY CHECK (id = 1),"
	      "  checked_at INTEGER NOT NULL);",
	/* expire_days: STORE_EXPIRE_DEFAULT (-2), _NEVER (-1) or days;
	 * last_login: µs since the epoch, 0 for none. */
	[3] = "ALTER TABLE users ADD COLUMN expire_days INTEGER NOT NULL DEFAULT -2;"
	      "ALTER TABLE users ADD COLUMN last_login INTEGER NOT NULL DEFAULT 0;"
	      "CREATE TABLE retrieved (mailbox_id BLOB NOT NULL, sort_key BLOB NOT NULL,"
	      "  first_us INTEGER NOT NULL, PRIMARY KEY (mailbox_id, sort_key)) WITHOUT ROWID;",
	/* id: the entry's TimeUUID (16 octets); times in µs since the epoch. */
	[4] = "CREATE TABLE queue (id BLOB NOT NULL UNIQUE, owner TEXT NOT NULL,"
	      "  sender TEXT NOT NULL, queued_us INTEGER NOT NULL,"
	      "  next_attempt_us INTEGER NOT NULL, attempts INTEGER NOT NULL,"
	      "  size INTEGER NOT NULL, rcpts BLOB NOT NULL);"
	      "CREATE INDEX queue_due ON queue(next_attempt_us);"
	      "CREATE INDEX queue_owner_due ON queue(owner, next_attempt_us);"
	      "CREATE TABLE queue_chunks (id BLOB NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL,"
	      "  PRIMARY KEY (id, n));"
	      "CREATE TABLE queue_nodes (node TEXT PRIMARY KEY, heartbeat_us INTEGER NOT NULL)"
	      "  WITHOUT ROWID;",
};

static enum store_status status_from_rc(sqlite3 *db, int rc, const char *what)
{
	switch (rc) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return STORE_OK;
	case SQLITE_CONSTRAINT:
		return STORE_EXISTS;
	case SQLITE_TOOBIG:
		return STORE_TOOBIG;
	default:
		/* Reading from memory only, any failure is retried on a worker,
		 * which reports it if it is real. */
		if (store_nowait())
			return store_would_block();
		log_error("sqlite: %s: %s", what, db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		return STORE_TEMPFAIL;
	}
}

/* --- the statement cache --- */

struct stmt_slot {
	const char *sql;  /* the caller's string: compared by address */
	sqlite3_stmt *st;
	bool busy;        /* handed out by prep(), not yet back through unprep() */
};

struct stmt_cache {
	sqlite3 *db;          /* whose statements these are; NULL: empty */
	unsigned int gen;     /* conn_generation when db was taken */
	unsigned int count;
	struct stmt_slot slots[STMT_CACHE_SLOTS];
};

static _Thread_local struct stmt_cache stmt_cache;
/* Bumped when a thread connection closes: caches then start afresh. */
static atomic_uint conn_generation;

/* Called with this thread's connection for the store in use: the cache
 * follows it (the previous connection keeps its statements until it
 * closes, see finalize_all). */
static void stmt_cache_use(sqlite3 *db)
{
	unsigned int gen = atomic_load_explicit(&conn_generation, memory_order_acquire);
	if (stmt_cache.db == db && stmt_cache.gen == gen)
		return;
	stmt_cache.db = db;
	stmt_cache.gen = gen;
	stmt_cache.count = 0;
}

static bool stmt_cache_valid(sqlite3 *db)
{
	return db != NULL && stmt_cache.db == db &&
	       stmt_cache.gen == atomic_load_explicit(&conn_generation, memory_order_acquire);
}

/* Every statement of db, cached or not, before it closes. */
static void finalize_all(sqlite3 *db)
{
	sqlite3_stmt *st;
	while ((st = sqlite3_next_stmt(db, NULL)) != NULL)
		sqlite3_finalize(st);
}

/* A thread connection closes: every cache drops what it holds. */
static void thread_conn_close(sqlite3 *db)
{
	atomic_fetch_add_explicit(&conn_generation, 1, memory_order_acq_rel);
	finalize_all(db);
	sqlite3_close_v2(db);
}

/* A prepared statement for sql; cached when db is this thread's
 * connection. *multi_r (if not NULL) says whether sql holds more than one
 * statement (then the statement is not cached and only its first part is
 * prepared). NULL on error. */
static sqlite3_stmt *prep_sql(sqlite3 *db, const char *sql, bool *multi_r, bool quiet)
{
	bool cache = stmt_cache_valid(db);
	struct stmt_slot *free_slot = NULL;
	if (cache) {
		for (unsigned int i = 0; i < stmt_cache.count; i++) {
			struct stmt_slot *sl = &stmt_cache.slots[i];
			if (sl->sql != sql)
				continue;
			if (sl->busy)
				break; /* in use further up the stack: a fresh one */
			sl->busy = true;
			if (multi_r != NULL)
				*multi_r = false;
			return sl->st;
		}
		if (stmt_cache.count < STMT_CACHE_SLOTS)
			free_slot = &stmt_cache.slots[stmt_cache.count];
	}
	sqlite3_stmt *st = NULL;
	const char *tail = NULL;
	int rc = sqlite3_prepare_v3(db, sql, -1, free_slot != NULL ? SQLITE_PREPARE_PERSISTENT : 0,
				    &st, &tail);
	if (rc != SQLITE_OK) {
		if (!quiet)
			log_error("sqlite: prepare %s: %s", sql, sqlite3_errmsg(db));
		sqlite3_finalize(st);
		return NULL;
	}
	while (tail != NULL && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';'))
		tail++;
	bool multi = tail != NULL && *tail != '\0';
	if (multi_r != NULL)
		*multi_r = multi;
	if (free_slot != NULL && st != NULL && !multi) {
		free_slot->sql = sql;
		free_slot->st = st;
		free_slot->busy = true;
		stmt_cache.count++;
	}
	return st;
}

/* A statement from prep() is done with: reset for the next call when
 * cached (bindings cleared: no caller's pointer outlives its call),
 * finalized otherwise. NULL is fine. */
static void unprep(sqlite3_stmt *st)
{
	if (st == NULL)
		return;
	if (stmt_cache_valid(sqlite3_db_handle(st))) {
		for (unsigned int i = 0; i < stmt_cache.count; i++) {
			struct stmt_slot *sl = &stmt_cache.slots[i];
			if (sl->st == st) {
				sqlite3_reset(st);
				sqlite3_clear_bindings(st);
				sl->busy = false;
				return;
			}
		}
	}
	sqlite3_finalize(st);
}

static int exec_sql(sqlite3 *db, const char *sql);

/* exec_sql() from this thread's cache, for the transaction statements of
 * every delivery and RETR (BEGIN, COMMIT, SAVEPOINT...): sql must be a
 * literal (the cache keeps its address). Several statements, or another
 * connection than the thread's, go to exec_sql(). */
static int exec_cached(sqlite3 *db, const char *sql)
{
	if (stmt_cache_valid(db)) {
		bool multi = false;
		sqlite3_stmt *st = prep_sql(db, sql, &multi, true);
		if (st != NULL && !multi) {
			int rc;
			while ((rc = sqlite3_step(st)) == SQLITE_ROW)
				;
			if (rc != SQLITE_DONE)
				log_error("sqlite: %s: %s", sql, sqlite3_errmsg(db));
			unprep(st);
			return rc == SQLITE_DONE ? SQLITE_OK : rc;
		}
		unprep(st);
	}
	return exec_sql(db, sql);
}

/* Runs sql (one statement or several, no rows wanted). */
static int exec_sql(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	if (rc != SQLITE_OK) {
		if (store_nowait())
			store_would_block(); /* retried on a worker, which reports it */
		else
			log_error("sqlite: %s: %s", sql, err != NULL ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
	}
	return rc;
}

static sqlite3 *conn_open(const char *path, const char *vfs, const char **error_r)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
					 SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_PRIVATECACHE,
				 vfs);
	if (rc != SQLITE_OK) {
		*error_r = sqlite3_errstr(rc);
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, SQLITE_BUSY_TIMEOUT_MS);
	/* FULL: in WAL mode, COMMIT fsyncs the log before returning. */
	if (exec_sql(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
			 "PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY;"
			 /* A small page cache per connection: the kernel caches
			  * the file anyway, and each worker thread has one. */
			 "PRAGMA cache_size=-256;") != SQLITE_OK) {
		*error_r = "cannot set the database to WAL mode";
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

/* This thread's connection, opened on first use. */
static sqlite3 *get_db(struct sqlite_store *s)
{
	struct sqlite_conn *c = pthread_getspecific(s->key);
	if (c != NULL) {
		stmt_cache_use(c->db);
		return c->db;
	}
	const char *error = "unknown error";
	sqlite3 *db = conn_open(s->path, NULL, &error);
	if (db == NULL) {
		log_error("sqlite: cannot open %s: %s", s->path, error);
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->db = db;
	pthread_mutex_lock(&s->lock);
	c->next = s->conns;
	s->conns = c;
	pthread_mutex_unlock(&s->lock);
	pthread_setspecific(s->key, c);
	stmt_cache_use(db);
	return db;
}

static struct store *sqlite_open(const struct store_settings *set, const char **error_r)
{
	static char errbuf[512];
	const char *dir = set->data_dir != NULL ? set->data_dir : ".";
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		snprintf(errbuf, sizeof(errbuf), "cannot create data_dir %s: %s", dir,
			 strerror(errno));
		*error_r = errbuf;
		return NULL;
	}
	if (sqlite3_threadsafe() == 0) {
		*error_r = "the SQLite library was built without thread support";
		return NULL;
	}
	struct sqlite_store *s = xcalloc(1, sizeof(*s));
	struct buf path;
	buf_init(&path, 0);
	buf_printf(&path, "%s/tern.db", dir);
	s->path = buf_steal(&path);
	buf_deinit(&path);
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->gc_lock, NULL);
	pthread_cond_init(&s->gc_cond, NULL);
	pthread_mutex_init(&s->readers_lock, NULL);
	pthread_key_create(&s->key, NULL);

	const char *error = NULL;
	sqlite3 *db = get_db(s);
	if (db == NULL) {
		snprintf(errbuf, sizeof(errbuf), "cannot open database %s", s->path);
		error = errbuf;
	} else if (exec_sql(db, "BEGIN IMMEDIATE") != SQLITE_OK ||
		   exec_sql(db, schema_sql) != SQLITE_OK) {
		exec_sql(db, "ROLLBACK");
		error = "cannot create the database schema";
	} else {
		sqlite3_stmt *st = NULL;
		int version = 0;
		if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key='schema_version'",
				       -1, &st, NULL) == SQLITE_OK &&
		    sqlite3_step(st) == SQLITE_ROW)
			version = atoi((const char *)sqlite3_column_text(st, 0));
		unprep(st);
		if (version > SQLITE_SCHEMA_VERSION) {
			snprintf(errbuf, sizeof(errbuf),
				 "database %s has schema version %d, newer than this tern (%d)",
				 s->path, version, SQLITE_SCHEMA_VERSION);
			error = errbuf;
		}
		for (int v = version + 1; error == NULL && v <= SQLITE_SCHEMA_VERSION; v++) {
			if (migrations[v] != NULL && exec_sql(db, migrations[v]) != SQLITE_OK) {
				snprintf(errbuf, sizeof(errbuf),
					 "cannot migrate database %s to schema version %d", s->path, v);
				error = errbuf;
			}
		}
		char set_version[128];
		snprintf(set_version, sizeof(set_version),
			 "INSERT OR REPLACE INTO meta VALUES ('schema_version', '%d'); COMMIT",
			 SQLITE_SCHEMA_VERSION);
		if (error == NULL && exec_sql(db, set_version) != SQLITE_OK)
			error = "cannot write the schema version";
		if (error != NULL)
			exec_sql(db, "ROLLBACK");
	}
	s->dir = xstrdup(dir);
	struct stat st;
	if (error == NULL && stat(s->path, &st) < 0) {
		snprintf(errbuf, sizeof(errbuf), "cannot stat %s: %s", s->path, strerror(errno));
		error = errbuf;
	} else if (error == NULL) {
		s->dev = st.st_dev;
		s->ino = st.st_ino;
	}
	if (error != NULL) {
		*error_r = error;
		s->store.v = &store_sqlite_vfuncs;
		store_sqlite_vfuncs.close(&s->store);
		return NULL;
	}
	return &s->store;
}

static void reader_free(struct sqlite_reader *r)
{
	unprep(r->find);
	sqlite3_close_v2(r->db);
	free(r);
}

static void sqlite_close(struct store *store)
{
	struct sqlite_store *s = (struct sqlite_store *)store;
	/* Every cursor has been closed (store.h): only idle readers remain. */
	while (s->readers_idle != NULL) {
		struct sqlite_reader *r = s->readers_idle;
		s->readers_idle = r->next;
		reader_free(r);
	}
	pthread_mutex_destroy(&s->readers_lock);
	struct sqlite_conn *c = s->conns;
	while (c != NULL) {
		struct sqlite_conn *next = c->next;
		thread_conn_close(c->db);
		free(c);
		c = next;
	}
	pthread_key_delete(s->key);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->gc_lock);
	pthread_cond_destroy(&s->gc_cond);
	free(s->path);
	free(s->dir);
	free(s);
}

/* A prepared statement, prepared for this call: finalize it (or unprep). */
static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		log_error("sqlite: prepare %s: %s", sql, sqlite3_errmsg(db));
		sqlite3_finalize(st);
		return NULL;
	}
	return st;
}

/* For a function of one statement: this thread's connection in *db_r
 * and the statement prepared on it, or NULL (logged) for STORE_TEMPFAIL. */
static sqlite3_stmt *prep_on_thread(struct store *store, sqlite3 **db_r, const char *sql)
{
	*db_r = get_db((struct sqlite_store *)store);
	return *db_r != NULL ? prep(*db_r, sql) : NULL;
}

/* The same from this thread's cache, for the statements every login,
 * RETR and delivery runs. It must go back through unprep(), never
 * sqlite3_finalize(); sql must be a literal (the cache keeps its address).
 * NULL on error. */
static sqlite3_stmt *prep_cached(sqlite3 *db, const char *sql)
{
	return prep_sql(db, sql, NULL, false);
}

/* Runs a one-statement write with up to two text parameters; returns the
 * status and the number of changed rows. */
static enum store_status simple_write(struct sqlite_store *s, const char *sql,
				      const char *p1, const char *p2, int *changes_r)
{
	sqlite3 *db = get_db(s);
	if (db == NULL)
		return STORE_TEMPFAIL;
	sqlite3_stmt *st = prep(db, sql);
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
	if (p2 != NULL)
		sqlite3_bind_text(st, 2, p2, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	unprep(st);
	if (changes_r != NULL)
		*changes_r = sqlite3_changes(db);
	return status_from_rc(db, rc, sql);
}

/* simple_write() on an existing row: NOTFOUND when it changed none. */
static enum store_status write_existing(struct sqlite_store *s, const char *sql, const char *p1,
					const char *p2)
{
	int changes = 0;
	enum store_status st = simple_write(s, sql, p1, p2, &changes);
	return st == STORE_OK && changes == 0 ? STORE_NOTFOUND : st;
}

/* Runs a query with one text parameter and appends column 0 of each row
 * followed by '\n' to out; returns NOTFOUND when no row matched and
 * out == NULL is used as "exists?". */
static enum store_status simple_read(struct sqlite_store *s, const char *sql,
				     const char *p1, struct buf *out, bool one)
{
	sqlite3 *db = get_db(s);
	if (db == NULL)
		return STORE_TEMPFAIL;
	sqlite3_stmt *st = prep_cached(db, sql);
	if (st == NULL)
		return STORE_TEMPFAIL;
	if (p1 != NULL)
		sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
	int rc, rows = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rows++;
		if (out != NULL) {
			buf_append_str(out, (const char *)sqlite3_column_text(st, 0));
			if (!one)
				buf_append_c(out, '\n');
		}
		if (one)
			break;
	}
	enum store_status ret = rc == SQLITE_ROW ? STORE_OK : status_from_rc(db, rc, sql);
	unprep(st);
	if (ret == STORE_OK && one && rows == 0)
		return STORE_NOTFOUND;
	return ret;
}

static enum store_status sqlite_domain_add(struct store *store, const char *domain)
{
	return simple_write((struct sqlite_store *)store,
			    "INSERT INTO domains (name) VALUES (?)", domain, NULL, NULL);
}

static enum store_status sqlite_domain_del(struct store *store, const char *domain)
{
	struct sqlite_store *s = (struct sqlite_store *)store;
	if (simple_read(s, "SELECT address FROM users WHERE domain = ? LIMIT 1", domain,
			NULL, true) == STORE_OK)
		return STORE_EXISTS;
	return write_existing(s, "DELETE FROM domains WHERE name = ?", domain, NULL);
}

static enum store_status sqlite_domain_exists(struct store *store, const char *domain)
{
	return simple_read((struct sqlite_store *)store,
			   "SELECT name FROM domains WHERE name = ?", domain, NULL, true);
}

static enum store_status sqlite_domain_list(struct store *store, struct buf *out)
{
	return simple_read((struct sqlite_store *)store,
			   "SELECT name FROM domains ORDER BY name", NULL, out, false);
}

static enum store_status sqlite_user_add(struct store *store, const char *address,
					 const char *hash)
{
	struct sqlite_store *s = (struct sqlite_store *)store;
	sqlite3 *db = get_db(s);
	if (db == NULL)
		return STORE_TEMPFAIL;
	struct uuid mbox;
	uuid_v5(address, strlen(address), &mbox);
	const char *at = strrchr(address, '@');
	sqlite3_stmt *st = prep(db, "INSERT INTO users (address, domain, password, mailbox_id,"
				    " uidvalidity) VALUES (?, ?, ?, ?, ?)");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, at + 1, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, hash, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 4, mbox.b, 16, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)(time(NULL) & 0xffffffff));
	int rc = sqlite3_step(st);
	unprep(st);
	return status_from_rc(db, rc, "user add");
}

static enum store_status delete_mailbox_rows(sqlite3 *db, const uint8_t mbox[16])
{
	sqlite3_stmt *st = prep(db, "DELETE FROM listing WHERE mailbox_id = ? RETURNING body");
	sqlite3_stmt *del = prep(db, "DELETE FROM bodies WHERE id = ? AND NOT EXISTS"
				     " (SELECT 1 FROM listing WHERE body = ?)");
	if (st == NULL || del == NULL) {
		unprep(st);
		unprep(del);
		return STORE_TEMPFAIL;
	}
	sqlite3_bind_blob(st, 1, mbox, 16, SQLITE_STATIC);
	/* Collect body ids first: RETURNING rows are produced before the
	 * statement completes. */
	sqlite3_int64 *ids = NULL;
	size_t n = 0, alloc = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == alloc) {
			alloc = alloc ? alloc * 2 : 64;
			ids = xrealloc(ids, alloc * sizeof(*ids));
		}
		ids[n++] = sqlite3_column_int64(st, 0);
	}
	unprep(st);
	enum store_status ret = status_from_rc(db, rc, "delete listing");
	for (size_t i = 0; i < n && ret == STORE_OK; i++) {
		sqlite3_reset(del);
		sqlite3_bind_int64(del, 1, ids[i]);
		sqlite3_bind_int64(del, 2, ids[i]);
		ret = status_from_rc(db, sqlite3_step(del), "delete body");
	}
	unprep(del);
	free(ids);
	return ret;
}

static enum store_status sqlite_user_del(struct store *store, const char *address)
{
	struct sqlite_store *s = (struct sqlite_store *)store;
	sqlite3 *db = get_db(s);
	if (db == NULL)
		return STORE_TEMPFAIL;
	struct uuid mbox;
	uuid_v5(address, strlen(address), &mbox);
	if (exec_sql(db, "BEGIN IMMEDIATE") != SQLITE_OK)
		return STORE_TEMPFAIL;
	sqlite3_stmt *st = prep(db, "DELETE FROM users WHERE address = ?");
	enum store_status ret = STORE_TEMPFAIL;
	if (st != NULL) {
		sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
		ret = status_from_rc(db, sqlite3_step(st), "user del");
		unprep(st);
		if (ret == STORE_OK && sqlite3_changes(db) == 0)
			ret = STORE_NOTFOUND;
	}
	if (ret == STORE_OK)
		ret = delete_mailbox_rows(db, mbox.b);
	if (ret == STORE_OK && exec_sql(db, "COMMIT") == SQLITE_OK)
		return STORE_OK;
	exec_sql(db, "ROLLBACK");
	return ret == STORE_OK ? STORE_TEMPFAIL : ret;
}

static enum store_status sqlite_user_set_password(struct store *store, const char *address,
						  const char *hash)
{
	return write_existing((struct sqlite_store *)store,
			      "UPDATE users SET password = ?2 WHERE address = ?1", address, hash);
}

static enum store_status sqlite_user_get(struct store *store, const char *address,
					 struct buf *hash_r)
{
	return simple_read((struct sqlite_store *)store,
			   "SELECT password FROM users WHERE address = ?", address, hash_r, true);
}

static enum store_status sqlite_user_list(struct store *store, struct buf *out)
{
	return simple_read((struct sqlite_store *)store,
			   "SELECT address FROM users ORDER BY domain, address", NULL, out, false);
}

/* Copies the message (header + body) into the new body row in pieces, so a
 * body in a file is never held whole in memory; the pages go through the
 * connection's small cache and spill to the WAL inside the transaction. */
static enum store_status write_body(sqlite3 *db, const struct store_delivery *d,
				    sqlite3_int64 rowid, uint64_t total)
{
	sqlite3_blob *blob = NULL;
	int rc = sqlite3_blob_open(db, "main", "bodies", "data", rowid, 1, &blob);
	if (rc != SQLITE_OK) {
		sqlite3_blob_close(blob);
		return status_from_rc(db, rc, "open body for writing");
	}
	enum store_status ret = STORE_OK;
	char *chunk = xmalloc(WRITE_CHUNK);
	for (uint64_t off = 0; off < total && ret == STORE_OK;) {
		size_t n = total - off < WRITE_CHUNK ? (size_t)(total - off) : WRITE_CHUNK;
		if (store_delivery_read(d, off, chunk, n) < 0) {
			ret = STORE_TEMPFAIL;
			break;
		}
		rc = sqlite3_blob_write(blob, chunk, (int)n, (int)off);
		if (rc != SQLITE_OK)
			ret = status_from_rc(db, rc, "write body");
		off += n;
	}
	free(chunk);
	rc = sqlite3_blob_close(blob);
	if (ret == STORE_OK && rc != SQLITE_OK)
		ret = status_from_rc(db, rc, "close body");
	return ret;
}

/* Inserts the body once (idempotent on the message id) and returns its
 * rowid. A new row is made as a zeroblob of the final size and then filled
 * in; a row an earlier attempt with this id committed already holds the
 * same bytes and is left alone. */
static enum store_status put_body(sqlite3 *db, const struct store_delivery *d,
				  sqlite3_int64 *rowid_r)
{
	uint64_t total = store_delivery_size(d);
	if (total > INT_MAX)
		return STORE_TOOBIG; /* the incremental blob API takes int offsets */
	sqlite3_stmt *st = prep_cached(db, "INSERT INTO bodies (message_id, data) VALUES (?, zeroblob(?))"
				    " ON CONFLICT (message_id) DO NOTHING RETURNING id");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_blob(st, 1, d->message_id.b, 16, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)total);
	int rc = sqlite3_step(st);
	bool inserted = rc == SQLITE_ROW;
	if (inserted) {
		*rowid_r = sqlite3_column_int64(st, 0);
		rc = sqlite3_step(st);
	}
	unprep(st);
	if (rc != SQLITE_DONE)
		return status_from_rc(db, rc, "insert body");
	if (inserted)
		return write_body(db, d, *rowid_r, total);

	st = prep_cached(db, "SELECT id FROM bodies WHERE message_id = ?");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_blob(st, 1, d->message_id.b, 16, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*rowid_r = sqlite3_column_int64(st, 0);
	unprep(st);
	if (rc == SQLITE_ROW)
		return STORE_OK;
	return rc == SQLITE_DONE ? STORE_TEMPFAIL : status_from_rc(db, rc, "find body");
}

/* What a mailbox holds: one range scan of its listing rows. */
static enum store_status listing_usage(sqlite3 *db, const uint8_t mbox[16], uint64_t *messages_r,
				       uint64_t *octets_r)
{
	sqlite3_stmt *st = prep_cached(db, "SELECT count(*), coalesce(sum(size), 0) FROM listing"
				    " WHERE mailbox_id = ?");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_blob(st, 1, mbox, 16, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*messages_r = (uint64_t)sqlite3_column_int64(st, 0);
		*octets_r = (uint64_t)sqlite3_column_int64(st, 1);
	}
	unprep(st);
	return rc == SQLITE_ROW ? STORE_OK : status_from_rc(db, rc, "mailbox usage");
}

/* A listing row's UIDL. A message named by its own id (every message tern
 * delivers in messageid mode) stores an empty text: its UIDL is the id's
 * text, made again from the row's sort key, and the listing read at every
 * POP3 login skips 36 octets a row. Older rows hold the text: both read
 * back the same. */
static void listing_uidl_get(sqlite3_stmt *st, int col, const struct uuid *id,
			     char uidl_r[STORE_UIDL_MAX + 2])
{
	if (sqlite3_column_bytes(st, col) == 0) {
		uuid_format(id, uidl_r);
		return;
	}
	str_copy(uidl_r, (const char *)sqlite3_column_text(st, col), STORE_UIDL_MAX + 2);
}

/* The text put_listing_row() stores for uidl: empty when it is the id's. */
static const char *listing_uidl_put(const uint8_t key[16], const char *uidl)
{
	struct uuid id;
	char own[UUID_STR_LEN + 1];
	store_sort_key_to_uuid(key, &id);
	uuid_format(&id, own);
	return strcmp(own, uidl) == 0 ? "" : uidl;
}

static enum store_status put_listing_row(struct sqlite_store *s, sqlite3 *db,
					 struct store_delivery *d, struct store_rcpt *r,
					 sqlite3_int64 body)
{
	uint8_t key[16];
	store_sort_key(&d->message_id, key);
	struct uuid mbox_id;
	uuid_v5(r->address, strlen(r->address), &mbox_id);
	/* A retried delivery finds its row: keep its UIDL, allocate nothing. */
	sqlite3_stmt *st = prep_cached(db, "SELECT uidl FROM listing WHERE mailbox_id = ? AND sort_key = ?");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_blob(st, 1, mbox_id.b, 16, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, key, 16, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		struct uuid id;
		store_sort_key_to_uuid(key, &id);
		listing_uidl_get(st, 0, &id, r->uidl);
		unprep(st);
		return STORE_OK;
	}
	unprep(st);
	if (rc != SQLITE_DONE)
		return status_from_rc(db, rc, "find listing row");

	st = prep_cached(db, "SELECT mailbox_id, quota_messages, quota_octets FROM users WHERE address = ?");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_text(st, 1, r->address, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		unprep(st);
		return rc == SQLITE_DONE ? STORE_NOTFOUND : status_from_rc(db, rc, "find user");
	}
	uint8_t mbox[16];
	if (sqlite3_column_bytes(st, 0) != 16) {
		unprep(st);
		return STORE_PERM;
	}
	memcpy(mbox, sqlite3_column_blob(st, 0), 16);
	struct store_quota own = { (uint64_t)sqlite3_column_int64(st, 1),
				   (uint64_t)sqlite3_column_int64(st, 2) };
	unprep(st);

	/* The quota, exact: in this write transaction, before anything of
	 * this recipient is written (a UID included). */
	size_t prefix_len = strlen(r->prefix);
	struct store_quota limits = store_quota_apply(&s->store, &own);
	if (!store_quota_is_none(&limits)) {
		uint64_t messages = 0, octets = 0;
		enum store_status ust = listing_usage(db, mbox, &messages, &octets);
		if (ust != STORE_OK)
			return ust;
		if (!store_quota_fits(&limits, messages, octets, prefix_len + store_delivery_size(d)))
			return STORE_OVERQUOTA;
	}

	/* uid mode: allocate the next UID in this same transaction; UIDs are
	 * never reused because next_uid only grows. */
	char uidl[STORE_UIDL_MAX + 2];
	if (!store_delivery_uidl(d, uidl) && s->store.set.pop3_ids == STORE_POP3_IDS_UID) {
		st = prep_cached(db, "UPDATE users SET next_uid = next_uid + 1 WHERE address = ?"
			      " RETURNING next_uid - 1, uidvalidity");
		if (st == NULL)
			return STORE_TEMPFAIL;
		sqlite3_bind_text(st, 1, r->address, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc != SQLITE_ROW) {
			unprep(st);
			return rc == SQLITE_DONE ? STORE_NOTFOUND : status_from_rc(db, rc, "next uid");
		}
		uint32_t uid = (uint32_t)sqlite3_column_int64(st, 0);
		uint32_t uidvalidity = (uint32_t)sqlite3_column_int64(st, 1);
		while (sqlite3_step(st) == SQLITE_ROW)
			;
		unprep(st);
		store_uidl_from_uid(uid, uidvalidity, uidl);
	}

	st = prep_cached(db, "INSERT INTO listing (mailbox_id, sort_key, size, uidl, prefix, body)"
		      " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_blob(st, 1, mbox, 16, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, key, 16, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)(prefix_len + store_delivery_size(d)));
	sqlite3_bind_text(st, 4, listing_uidl_put(key, uidl), -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 5, r->prefix, (int)prefix_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, body);
	rc = sqlite3_step(st);
	unprep(st);
	if (rc != SQLITE_DONE)
		return status_from_rc(db, rc, "insert listing");
	str_copy(r->uidl, uidl, sizeof(r->uidl));
	return STORE_OK;
}

/* One delivery inside the group's transaction, under a savepoint so that
 * its failure does not spoil the others. Recipients that were stored are
 * left at STORE_OK pending the COMMIT. */
static enum store_status deliver_one(struct sqlite_store *s, sqlite3 *db,
				     struct store_delivery *d)
{
	if (exec_cached(db, "SAVEPOINT delivery") != SQLITE_OK)
		return STORE_TEMPFAIL;
	sqlite3_int64 body = 0;
	enum store_status ret = put_body(db, d, &body);
	unsigned int delivered = 0;
	for (unsigned int i = 0; i < d->rcpt_count && ret == STORE_OK; i++) {
		enum store_status st = put_listing_row(s, db, d, &d->rcpts[i], body);
		if (st == STORE_OK) {
			d->rcpts[i].status = STORE_OK;
			delivered++;
		} else if (st == STORE_NOTFOUND || st == STORE_OVERQUOTA) {
			d->rcpts[i].status = st;
		} else {
			ret = st;
		}
	}
	if (ret == STORE_OK && store_quota_refuse_all(d)) {
		/* Nobody gets it: undo this delivery's writes, body included. */
		exec_cached(db, "ROLLBACK TO delivery");
		exec_cached(db, "RELEASE delivery");
		return STORE_OK;
	}
	if (ret == STORE_OK && delivered == 0) {
		/* Nobody to deliver to: leave no orphaned body behind, but keep
		 * one that an earlier attempt with this id already listed. */
		sqlite3_stmt *st = prep_cached(db, "DELETE FROM bodies WHERE id = ?1 AND NOT EXISTS"
					    " (SELECT 1 FROM listing WHERE body = ?1)");
		if (st != NULL) {
			sqlite3_bind_int64(st, 1, body);
			sqlite3_step(st);
			unprep(st);
		}
	}
	if (ret != STORE_OK) {
		exec_cached(db, "ROLLBACK TO delivery");
		for (unsigned int i = 0; i < d->rcpt_count; i++)
			if (d->rcpts[i].status != STORE_NOTFOUND &&
			    d->rcpts[i].status != STORE_OVERQUOTA)
				d->rcpts[i].status = ret;
	}
	exec_cached(db, "RELEASE delivery");
	return ret;
}

/* Runs a batch of deliveries in one transaction: one fsync for all. */
static void run_batch(struct sqlite_store *s, struct commit_req *batch)
{
	sqlite3 *db = get_db(s);
	bool begun = db != NULL && exec_cached(db, "BEGIN IMMEDIATE") == SQLITE_OK;
	for (struct commit_req *r = batch; r != NULL; r = r->next)
		r->result = begun ? deliver_one(s, db, r->d) : STORE_TEMPFAIL;
	bool committed = begun && exec_cached(db, "COMMIT") == SQLITE_OK;
	if (begun && !committed)
		exec_cached(db, "ROLLBACK");
	for (struct commit_req *r = batch; r != NULL; r = r->next) {
		if (committed && r->result == STORE_OK)
			continue;
		if (r->result == STORE_OK)
			r->result = STORE_TEMPFAIL;
		for (unsigned int i = 0; i < r->d->rcpt_count; i++)
			if (r->d->rcpts[i].status != STORE_NOTFOUND &&
			    r->d->rcpts[i].status != STORE_OVERQUOTA)
				r->d->rcpts[i].status = r->result;
	}
}

/* Group commit: concurrent deliveries queue up; one of them (the leader)
 * takes everything queued, runs it as one transaction and one fsync, and
 * wakes the others. Nobody is answered before the COMMIT that holds its
 * message has returned, so 250 still means durable. */
static enum store_status sqlite_deliver(struct store *store, struct store_delivery *d)
{
	struct sqlite_store *s = (struct sqlite_store *)store;
	struct commit_req req = { .d = d };
	pthread_mutex_lock(&s->gc_lock);
	if (s->gc_tail != NULL)
		s->gc_tail->next = &req;
	else
		s->gc_head = &req;
	s->gc_tail = &req;
	while (!req.done) {
		if (s->gc_leader) {
			pthread_cond_wait(&s->gc_cond, &s->gc_lock);
			continue;
		}
		s->gc_leader = true;
		struct commit_req *batch = s->gc_head;
		s->gc_head = s->gc_tail = NULL;
		pthread_mutex_unlock(&s->gc_lock);
		run_batch(s, batch);
		pthread_mutex_lock(&s->gc_lock);
		for (struct commit_req *r = batch; r != NULL;) {
			struct commit_req *next = r->next;
			r->done = true; /* r may be freed by its owner after this */
			r = next;
		}
		s->gc_leader = false;
		pthread_cond_broadcast(&s->gc_cond);
	}
	pthread_mutex_unlock(&s->gc_lock);
	return req.result;
}

static enum store_status user_int(struct sqlite_store *s, const char *sql, const char *address,
				  int64_t *v_r);

static enum store_status sqlite_maildrop_read(struct store *store, struct store_maildrop *md)
{
	struct sqlite_store *s = (struct sqlite_store *)store;
	sqlite3 *db = get_db(s);
	if (db == NULL)
		return STORE_TEMPFAIL;
	int64_t expire = STORE_EXPIRE_DEFAULT;
	enum store_status ust = user_int(s, "SELECT expire_days FROM users WHERE address = ?",
					 md->address, &expire);
	if (ust != STORE_OK)
		return ust;
	md->expire_days = (int)expire;
	sqlite3_stmt *st = prep_cached(db, "SELECT sort_key, size, uidl FROM listing"
				    " WHERE mailbox_id = ? ORDER BY sort_key");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_blob(st, 1, md->mailbox_id.b, 16, SQLITE_STATIC);
	unsigned int alloc = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (md->count == alloc) {
			alloc = alloc ? alloc * 2 : 32;
			md->entries = xrealloc(md->entries, alloc * sizeof(*md->entries));
		}
		struct store_listing_entry *e = &md->entries[md->count++];
		if (sqlite3_column_bytes(st, 0) != 16) {
			rc = SQLITE_CORRUPT;
			break;
		}
		store_sort_key_to_uuid(sqlite3_column_blob(st, 0), &e->id);
		e->size = (uint64_t)sqlite3_column_int64(st, 1);
		listing_uidl_get(st, 2, &e->id, e->uidl);
		md->total_size += e->size;
	}
	unprep(st);
	return rc == SQLITE_DONE ? STORE_OK : status_from_rc(db, rc, "read listing");
}

/* --- cursors --- */

/* A reader connection for a cursor: an idle one, or a new one while fewer
 * than SQLITE_READERS_MAX are open; NULL when the pool is exhausted (or a
 * connection cannot be opened), and the cursor does without. Reading from
 * memory only, an idle one or none: opening one reads the schema. */
static struct sqlite_reader *reader_checkout(struct sqlite_store *s)
{
	pthread_mutex_lock(&s->readers_lock);
	struct sqlite_reader *r = s->readers_idle;
	if (r != NULL) {
		s->readers_idle = r->next;
		s->readers_idle_count--;
		pthread_mutex_unlock(&s->readers_lock);
		r->next = NULL;
		/* reading from memory only, a lock held elsewhere is not waited for */
		sqlite3_busy_timeout(r->db, store_nowait() ? 0 : SQLITE_BUSY_TIMEOUT_MS);
		return r;
	}
	if (s->readers_open >= SQLITE_READERS_MAX || store_nowait()) {
		pthread_mutex_unlock(&s->readers_lock);
		return NULL;
	}
	s->readers_open++;
	pthread_mutex_unlock(&s->readers_lock);

	const char *error = "unknown error";
	r = xcalloc(1, sizeof(*r));
	r->db = conn_open(s->path, sqlite_nowait_vfs(), &error);
	if (r->db != NULL && exec_sql(r->db, "PRAGMA query_only = 1") == SQLITE_OK)
		r->find = prep(r->db, "SELECT prefix, body FROM listing"
				      " WHERE mailbox_id = ? AND sort_key = ?");
	if (r->find == NULL) {
		log_error("sqlite: cannot open a reader connection to %s: %s", s->path, error);
		reader_free(r);
		pthread_mutex_lock(&s->readers_lock);
		s->readers_open--;
		pthread_mutex_unlock(&s->readers_lock);
		return NULL;
	}
	return r;
}

/* Gives a reader back, out of any transaction; closes it when enough are
 * idle already, or when it could not be brought back to a clean state. */
static void reader_checkin(struct sqlite_store *s, struct sqlite_reader *r)
{
	sqlite3_reset(r->find);
	sqlite3_clear_bindings(r->find);
	bool clean = sqlite3_get_autocommit(r->db) != 0 ||
		     (exec_sql(r->db, "COMMIT") == SQLITE_OK && sqlite3_get_autocommit(r->db));
	pthread_mutex_lock(&s->readers_lock);
	if (clean && s->readers_idle_count < SQLITE_READERS_IDLE) {
		r->next = s->readers_idle;
		s->readers_idle = r;
		s->readers_idle_count++;
		r = NULL;
	} else {
		s->readers_open--;
	}
	pthread_mutex_unlock(&s->readers_lock);
	if (r != NULL)
		reader_free(r);
}

struct sqlite_cursor {
	struct store_cursor c;
	/* pooled: a connection of its own, in a read transaction, and the
	 * body's blob open in it; both NULL when the pool was exhausted */
	struct sqlite_reader *reader;
	sqlite3_blob *blob;
	sqlite3_int64 body;    /* the body's rowid */
	int body_len;
};

/* Copies the listing row's prefix and body rowid; NOTFOUND without one. */
static enum store_status take_listing_row(sqlite3 *db, sqlite3_stmt *st,
					  struct store_maildrop *md, unsigned int i,
					  struct sqlite_cursor *sc)
{
	uint8_t key[16];
	store_sort_key(&md->entries[i].id, key);
	sqlite3_bind_blob(st, 1, md->mailbox_id.b, 16, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, key, 16, SQLITE_TRANSIENT);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? STORE_NOTFOUND : status_from_rc(db, rc, "read message");
	sc->c.prefix_len = (size_t)sqlite3_column_bytes(st, 0);
	sc->c.prefix = xmalloc(sc->c.prefix_len + 1);
	if (sc->c.prefix_len > 0)
		memcpy(sc->c.prefix, sqlite3_column_blob(st, 0), sc->c.prefix_len);
	sc->body = sqlite3_column_int64(st, 1);
	return STORE_OK;
}

/* Pooled: a read transaction on the reader, which lasts until the cursor
 * closes; the listing row and the blob are read in it once. */
static enum store_status open_pooled(struct sqlite_cursor *sc, struct store_maildrop *md,
				     unsigned int i)
{
	sqlite3 *db = sc->reader->db;
	if (exec_sql(db, "BEGIN") != SQLITE_OK)
		return store_nowait() ? store_would_block() : STORE_TEMPFAIL;
	enum store_status st = take_listing_row(db, sc->reader->find, md, i, sc);
	sqlite3_reset(sc->reader->find);
	if (st != STORE_OK)
		return st;
	int rc = sqlite3_blob_open(db, "main", "bodies", "data", sc->body, 0, &sc->blob);
	if (rc != SQLITE_OK) {
		sc->blob = NULL;
		return status_from_rc(db, rc, "open body");
	}
	sc->body_len = sqlite3_blob_bytes(sc->blob);
	return STORE_OK;
}

/* Whether the body row rowid still holds message id (a rowid of a deleted
 * body can be given to a new one), and its length. 1 / 0 / -1. */
static int body_row_is(sqlite3 *db, sqlite3_int64 rowid, const struct uuid *id, int *len_r)
{
	sqlite3_stmt *st = prep_cached(db, "SELECT message_id, length(data) FROM bodies WHERE id = ?");
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, rowid);
	int rc = sqlite3_step(st);
	int ret = rc == SQLITE_DONE ? 0 : rc == SQLITE_ROW ? 1 : -1;
	if (ret == 1) {
		ret = sqlite3_column_bytes(st, 0) == 16 &&
		      memcmp(sqlite3_column_blob(st, 0), id->b, 16) == 0;
		*len_r = sqlite3_column_int(st, 1);
	} else if (ret < 0) {
		status_from_rc(db, rc, "find body");
	}
	unprep(st);
	return ret;
}

/* Unpooled: the listing row and the body's length, in one short
 * transaction on this thread's connection. */
static enum store_status open_unpooled(struct sqlite_store *s, struct sqlite_cursor *sc,
				       struct store_maildrop *md, unsigned int i)
{
	sqlite3 *db = get_db(s);
	if (db == NULL || exec_cached(db, "BEGIN") != SQLITE_OK)
		return STORE_TEMPFAIL;
	sqlite3_stmt *st = prep_cached(db, "SELECT prefix, body FROM listing"
				    " WHERE mailbox_id = ? AND sort_key = ?");
	enum store_status ret = st == NULL ? STORE_TEMPFAIL : take_listing_row(db, st, md, i, sc);
	unprep(st);
	if (ret == STORE_OK) {
		int found = body_row_is(db, sc->body, &md->entries[i].id, &sc->body_len);
		ret = found > 0 ? STORE_OK : found == 0 ? STORE_NOTFOUND : STORE_TEMPFAIL;
	}
	exec_cached(db, "COMMIT");
	return ret;
}

static void sqlite_cursor_close(struct store_cursor *c)
{
	struct sqlite_cursor *sc = (struct sqlite_cursor *)c;
	struct sqlite_store *s = (struct sqlite_store *)c->md->store;
	if (sc->blob != NULL)
		sqlite3_blob_close(sc->blob);
	if (sc->reader != NULL)
		reader_checkin(s, sc->reader); /* ends the read transaction */
	free(sc->c.prefix);
	free(sc);
}

static enum store_status sqlite_cursor_open(struct store_maildrop *md, unsigned int i,
					    struct store_cursor **cursor_r)
{
	struct sqlite_store *s = (struct sqlite_store *)md->store;
	struct sqlite_cursor *sc = xcalloc(1, sizeof(*sc));
	sc->c.md = md;
	sc->reader = reader_checkout(s);
	/* Reading from memory only, no cursor without a reader of its own:
	 * the calling thread's connection is a worker's. */
	enum store_status st = sc->reader != NULL ? open_pooled(sc, md, i)
			       : store_nowait()   ? store_would_block()
						  : open_unpooled(s, sc, md, i);
	if (st != STORE_OK) {
		sqlite_cursor_close(&sc->c);
		return st;
	}
	sc->c.size = sc->c.prefix_len + (uint64_t)sc->body_len;
	*cursor_r = &sc->c;
	return STORE_OK;
}

/* Unpooled: one piece of the body, on this thread's connection. */
static enum store_status read_unpooled(struct sqlite_store *s, struct sqlite_cursor *sc,
				       char *dst, int n, int off)
{
	sqlite3 *db = get_db(s);
	if (db == NULL || exec_cached(db, "BEGIN") != SQLITE_OK)
		return STORE_TEMPFAIL;
	int len = -1;
	int found = body_row_is(db, sc->body, &sc->c.md->entries[sc->c.index].id, &len);
	enum store_status ret = found > 0 && len == sc->body_len ? STORE_OK
				: found < 0 ? STORE_TEMPFAIL : STORE_NOTFOUND;
	sqlite3_blob *blob = NULL;
	if (ret == STORE_OK) {
		int rc = sqlite3_blob_open(db, "main", "bodies", "data", sc->body, 0, &blob);
		if (rc == SQLITE_OK)
			rc = sqlite3_blob_read(blob, dst, n, off);
		if (rc != SQLITE_OK)
			ret = status_from_rc(db, rc, "read body");
		sqlite3_blob_close(blob);
	}
	exec_cached(db, "COMMIT");
	return ret;
}

static enum store_status sqlite_cursor_read(struct store_cursor *c, uint64_t body_off,
					    char *dst, size_t n)
{
	struct sqlite_cursor *sc = (struct sqlite_cursor *)c;
	/* body_off + n <= the body length, which is an int: both fit. */
	int boff = (int)body_off;
	if (sc->blob == NULL)
		return read_unpooled((struct sqlite_store *)c->md->store, sc, dst, (int)n, boff);
	int rc = sqlite3_blob_read(sc->blob, dst, (int)n, boff);
	return rc == SQLITE_OK ? STORE_OK : status_from_rc(sc->reader->db, rc, "read body");
}

static enum store_status sqlite_expunge(struct store_maildrop *md, const unsigned int *indexes,
					unsigned int n)
{
	struct sqlite_store *s = (struct sqlite_store *)md->store;
	sqlite3 *db = get_db(s);
	if (db == NULL)
		return STORE_TEMPFAIL;
	sqlite3_stmt *del = prep(db, "DELETE FROM listing WHERE mailbox_id = ? AND sort_key = ?"
				     " RETURNING body");
	sqlite3_stmt *gc = prep(db, "DELETE FROM bodies WHERE id = ?1 AND NOT EXISTS"
				    " (SELECT 1 FROM listing WHERE body = ?1)");
	enum store_status ret = STORE_TEMPFAIL;
	if (del == NULL || gc == NULL || exec_sql(db, "BEGIN IMMEDIATE") != SQLITE_OK)
		goto out;
	ret = STORE_OK;
	for (unsigned int k = 0; k < n && ret == STORE_OK; k++) {
		uint8_t key[16];
		store_sort_key(&md->entries[indexes[k]].id, key);
		sqlite3_reset(del);
		sqlite3_bind_blob(del, 1, md->mailbox_id.b, 16, SQLITE_STATIC);
		sqlite3_bind_blob(del, 2, key, 16, SQLITE_TRANSIENT);
		int rc = sqlite3_step(del);
		if (rc == SQLITE_DONE)
			continue; /* already expunged by another session */
		if (rc != SQLITE_ROW) {
			ret = status_from_rc(db, rc, "expunge");
			break;
		}
		sqlite3_int64 body = sqlite3_column_int64(del, 0);
		while ((rc = sqlite3_step(del)) == SQLITE_ROW)
			;
		if (rc != SQLITE_DONE) {
			ret = status_from_rc(db, rc, "expunge");
			break;
		}
		sqlite3_reset(gc);
		sqlite3_bind_int64(gc, 1, body);
		ret = status_from_rc(db, sqlite3_step(gc), "delete body");
	}
	if (ret == STORE_OK && exec_sql(db, "COMMIT") != SQLITE_OK)
		ret = STORE_TEMPFAIL;
	if (ret != STORE_OK)
		exec_sql(db, "ROLLBACK");
out:
	unprep(del);
	unprep(gc);
	return ret;
}

/* Transactions keep the embedded store consistent, so repair only checks:
 * listing rows without a body and bodies without a listing row would mean
 * a damaged file (or a bug) and are reported and fixed. */
static enum store_status sqlite_repair(struct store *store,
				       const struct store_repair_options *opts,
				       struct store_repair_report *report)
{
	struct sqlite_store *s = (struct sqlite_store *)store;
	sqlite3 *db = get_db(s);
	if (db == NULL || exec_sql(db, "BEGIN IMMEDIATE") != SQLITE_OK)
		return STORE_TEMPFAIL;
	static const char *const counts[] = {
		"SELECT count(*) FROM listing",
		"SELECT count(*) FROM bodies",
		"SELECT count(*) FROM listing WHERE NOT EXISTS"
		" (SELECT 1 FROM bodies WHERE bodies.id = listing.body)",
		"SELECT count(*) FROM bodies WHERE NOT EXISTS"
		" (SELECT 1 FROM listing WHERE listing.body = bodies.id)",
		/* None but in a damaged file: a delivery checks its user in
		 * the write transaction, and deleting a user empties the
		 * mailbox in the same transaction. */
		"SELECT count(*) FROM listing WHERE NOT EXISTS"
		" (SELECT 1 FROM users WHERE users.mailbox_id = listing.mailbox_id)",
	};
	uint64_t *fields[] = { &report->listing_scanned, &report->bodies_scanned,
			       &report->unlisted, &report->swept, &report->orphaned };
	const bool wanted[] = { opts->check, true, opts->check, opts->sweep, opts->check };
	enum store_status ret = STORE_OK;
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]) && ret == STORE_OK; i++) {
		if (!wanted[i])
			continue;
		sqlite3_stmt *st = prep(db, counts[i]);
		if (st == NULL || sqlite3_step(st) != SQLITE_ROW)
			ret = STORE_TEMPFAIL;
		else
			__atomic_store_n(fields[i], (uint64_t)sqlite3_column_int64(st, 0),
					 __ATOMIC_RELAXED);
		unprep(st);
	}
	if (ret == STORE_OK && !opts->dry_run && opts->check &&
	    __atomic_load_n(&report->unlisted, __ATOMIC_RELAXED) > 0 &&
	    exec_sql(db, "DELETE FROM listing WHERE NOT EXISTS"
			 " (SELECT 1 FROM bodies WHERE bodies.id = listing.body)") != SQLITE_OK)
		ret = STORE_TEMPFAIL;
	if (ret == STORE_OK && !opts->dry_run && opts->sweep &&
	    __atomic_load_n(&report->swept, __ATOMIC_RELAXED) > 0 &&
	    exec_sql(db, "DELETE FROM bodies WHERE NOT EXISTS"
			 " (SELECT 1 FROM listing WHERE listing.body = bodies.id)") != SQLITE_OK)
		ret = STORE_TEMPFAIL;
	if (ret == STORE_OK && exec_sql(db, "COMMIT") == SQLITE_OK)
		return STORE_OK;
	exec_sql(db, "ROLLBACK");
	return ret == STORE_OK ? STORE_TEMPFAIL : ret;
}

/* --- aliases, quotas, health --- */

static enum store_status sqlite_alias_put(struct store *store, const char *address,
					  const char *targets)
{
	sqlite3 *db;
	sqlite3_stmt *st = prep_on_thread(store, &db,
					  "INSERT INTO aliases (address, domain, targets) VALUES (?, ?, ?)"
					  " ON CONFLICT (address) DO UPDATE SET targets = excluded.targets");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, strrchr(address, '@') + 1, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, targets, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	unprep(st);
	return status_from_rc(db, rc, "alias put");
}

static enum store_status sqlite_alias_del(struct store *store, const char *address)
{
	return write_existing((struct sqlite_store *)store, "DELETE FROM aliases WHERE address = ?",
			      address, NULL);
}

static enum store_status sqlite_alias_get(struct store *store, const char *address,
					  struct buf *targets_r)
{
	return simple_read((struct sqlite_store *)store,
			   "SELECT targets FROM aliases WHERE address = ?", address, targets_r, true);
}

static enum store_status sqlite_alias_list(struct store *store, struct buf *out)
{
	sqlite3 *db;
	sqlite3_stmt *st = prep_on_thread(store, &db,
					  "SELECT address, targets FROM aliases");
	if (st == NULL)
		return STORE_TEMPFAIL;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		store_alias_line(out, (const char *)sqlite3_column_text(st, 0),
				 (const char *)sqlite3_column_text(st, 1),
				 (size_t)sqlite3_column_bytes(st, 1));
	unprep(st);
	return status_from_rc(db, rc, "alias list");
}

static enum store_status sqlite_quota_get(struct store *store, const char *address,
					  struct store_quota *own_r)
{
	sqlite3 *db;
	sqlite3_stmt *st = prep_on_thread(store, &db,
					  "SELECT quota_messages, quota_octets FROM users WHERE address = ?");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		own_r->messages = (uint64_t)sqlite3_column_int64(st, 0);
		own_r->octets = (uint64_t)sqlite3_column_int64(st, 1);
	}
	unprep(st);
	return rc == SQLITE_ROW ? STORE_OK : rc == SQLITE_DONE ? STORE_NOTFOUND
							       : status_from_rc(db, rc, "quota get");
}

static enum store_status sqlite_quota_set(struct store *store, const char *address,
					  const struct store_quota *own)
{
	sqlite3 *db;
	sqlite3_stmt *st = prep_on_thread(store, &db,
					  "UPDATE users SET quota_messages = ?, quota_octets = ?"
					  " WHERE address = ?");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)own->messages);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)own->octets);
	sqlite3_bind_text(st, 3, address, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	unprep(st);
	enum store_status ret = status_from_rc(db, rc, "quota set");
	return ret == STORE_OK && sqlite3_changes(db) == 0 ? STORE_NOTFOUND : ret;
}

/* --- POP3 extensions: EXPIRE and LOGIN-DELAY --- */

/* Column 0 of the users row of address as an integer; NOTFOUND without it. */
static enum store_status user_int(struct sqlite_store *s, const char *sql, const char *address,
				  int64_t *v_r)
{
	sqlite3 *db = get_db(s);
	if (db == NULL)
		return STORE_TEMPFAIL;
	sqlite3_stmt *st = prep_cached(db, sql);
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*v_r = sqlite3_column_int64(st, 0);
	unprep(st);
	return rc == SQLITE_ROW ? STORE_OK : rc == SQLITE_DONE ? STORE_NOTFOUND
							       : status_from_rc(db, rc, sql);
}

/* Sets an integer column of the users row; NOTFOUND without it. */
static enum store_status user_set_int(struct sqlite_store *s, const char *sql,
				      const char *address, int64_t v)
{
	sqlite3 *db = get_db(s);
	if (db == NULL)
		return STORE_TEMPFAIL;
	sqlite3_stmt *st = prep(db, sql);
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_int64(st, 1, v);
	sqlite3_bind_text(st, 2, address, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	enum store_status ret = status_from_rc(db, rc, sql);
	return ret == STORE_OK && sqlite3_changes(db) == 0 ? STORE_NOTFOUND : ret;
}

static enum store_status sqlite_expire_get(struct store *store, const char *address, int *days_r)
{
	int64_t v = STORE_EXPIRE_DEFAULT;
	enum store_status st = user_int((struct sqlite_store *)store,
					"SELECT expire_days FROM users WHERE address = ?", address, &v);
	*days_r = (int)v;
	return st;
}

static enum store_status sqlite_expire_set(struct store *store, const char *address, int days)
{
	return user_set_int((struct sqlite_store *)store,
			    "UPDATE users SET expire_days = ? WHERE address = ?", address, days);
}

static enum store_status sqlite_login_get(struct store *store, const char *address, int64_t *us_r)
{
	return user_int((struct sqlite_store *)store,
			"SELECT last_login FROM users WHERE address = ?", address, us_r);
}

static enum store_status sqlite_login_put(struct store *store, const char *address, int64_t us)
{
	return user_set_int((struct sqlite_store *)store,
			    "UPDATE users SET last_login = ? WHERE address = ?", address, us);
}

/* INSERT OR IGNORE: the first retrieval's time stays. */
static enum store_status sqlite_retrieved_put(struct store *store, const struct uuid *mailbox,
					      const struct uuid *id, int64_t us)
{
	sqlite3 *db;
	sqlite3_stmt *st = prep_on_thread(store, &db,
					  "INSERT OR IGNORE INTO retrieved (mailbox_id, sort_key, first_us)"
					  " VALUES (?, ?, ?)");
	if (st == NULL)
		return STORE_TEMPFAIL;
	uint8_t key[16];
	store_sort_key(id, key);
	sqlite3_bind_blob(st, 1, mailbox->b, 16, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, key, 16, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, us);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return status_from_rc(db, rc, "retrieved put");
}

static enum store_status sqlite_retrieved_list(struct store *store, const struct uuid *mailbox,
					       int64_t before_us, unsigned int max,
					       struct uuid **ids_r, int64_t **us_r,
					       unsigned int *count_r)
{
	struct sqlite_store *s = (struct sqlite_store *)store;
	*ids_r = NULL;
	*us_r = NULL;
	*count_r = 0;
	sqlite3 *db = get_db(s);
	if (db == NULL)
		return STORE_TEMPFAIL;
	sqlite3_stmt *st = prep(db, "SELECT sort_key, first_us FROM retrieved"
				    " WHERE mailbox_id = ? AND first_us < ? ORDER BY sort_key LIMIT ?");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_blob(st, 1, mailbox->b, 16, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, before_us);
	sqlite3_bind_int64(st, 3, max);
	struct uuid *ids = xcalloc(max ? max : 1, sizeof(*ids));
	int64_t *times = xcalloc(max ? max : 1, sizeof(*times));
	unsigned int n = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < max) {
		if (sqlite3_column_bytes(st, 0) != 16)
			continue;
		store_sort_key_to_uuid(sqlite3_column_blob(st, 0), &ids[n]);
		times[n++] = sqlite3_column_int64(st, 1);
	}
	enum store_status ret = rc == SQLITE_ROW || rc == SQLITE_DONE
					? STORE_OK : status_from_rc(db, rc, "retrieved list");
	sqlite3_finalize(st);
	if (ret != STORE_OK || n == 0) {
		free(ids);
		free(times);
		return ret;
	}
	*ids_r = ids;
	*us_r = times;
	*count_r = n;
	return STORE_OK;
}

static enum store_status sqlite_retrieved_del(struct store *store, const struct uuid *mailbox,
					      const struct uuid *ids, unsigned int n)
{
	struct sqlite_store *s = (struct sqlite_store *)store;
	sqlite3 *db = get_db(s);
	if (db == NULL)
		return STORE_TEMPFAIL;
	sqlite3_stmt *st = prep(db, "DELETE FROM retrieved WHERE mailbox_id = ? AND sort_key = ?");
	if (st == NULL || exec_sql(db, "BEGIN IMMEDIATE") != SQLITE_OK) {
		sqlite3_finalize(st);
		return STORE_TEMPFAIL;
	}
	enum store_status ret = STORE_OK;
	for (unsigned int k = 0; k < n && ret == STORE_OK; k++) {
		uint8_t key[16];
		store_sort_key(&ids[k], key);
		sqlite3_reset(st);
		sqlite3_bind_blob(st, 1, mailbox->b, 16, SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, key, 16, SQLITE_TRANSIENT);
		ret = status_from_rc(db, sqlite3_step(st), "retrieved del");
	}
	sqlite3_finalize(st);
	if (ret == STORE_OK && exec_sql(db, "COMMIT") == SQLITE_OK)
		return STORE_OK;
	exec_sql(db, "ROLLBACK");
	return ret == STORE_OK ? STORE_TEMPFAIL : ret;
}

static enum store_status sqlite_mailbox_usage(struct store *store, const char *address,
					      uint64_t *messages_r, uint64_t *octets_r)
{
	struct sqlite_store *s = (struct sqlite_store *)store;
	sqlite3 *db = get_db(s);
	if (db == NULL)
		return STORE_TEMPFAIL;
	/* One statement: the user and their listing in one snapshot. */
	sqlite3_stmt *st = prep(db, "SELECT count(l.size), coalesce(sum(l.size), 0) FROM users u"
				    " LEFT JOIN listing l ON l.mailbox_id = u.mailbox_id"
				    " WHERE u.address = ? GROUP BY u.address");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*messages_r = (uint64_t)sqlite3_column_int64(st, 0);
		*octets_r = (uint64_t)sqlite3_column_int64(st, 1);
	}
	unprep(st);
	return rc == SQLITE_ROW ? STORE_OK : rc == SQLITE_DONE ? STORE_NOTFOUND
							       : status_from_rc(db, rc, "mailbox usage");
}

/* Can the store take writes? The file at the database's path must still
 * be the one this store opened (a database moved away or replaced keeps
 * working through the open descriptors, while nothing written reaches the
 * path any more), the file and data_dir must be writable for this process,
 * and a small write transaction must commit: that one fails when the
 * filesystem has gone read-only, the disk is full or failing, or the
 * database is locked for longer than the busy timeout. It costs one fsync. */
static enum store_status sqlite_health(struct store *store, struct buf *detail)
{
	struct sqlite_store *s = (struct sqlite_store *)store;
	struct stat st;
	if (stat(s->path, &st) < 0) {
		buf_printf(detail, "sqlite: %s: %s", s->path, strerror(errno));
		return STORE_TEMPFAIL;
	}
	if (!S_ISREG(st.st_mode) || st.st_dev != s->dev || st.st_ino != s->ino) {
		buf_printf(detail, "sqlite: %s is no longer the database file this server opened"
				   " (moved or replaced)", s->path);
		return STORE_TEMPFAIL;
	}
	if (access(s->path, W_OK) < 0 || access(s->dir, W_OK) < 0) {
		buf_printf(detail, "sqlite: %s or its directory is not writable: %s", s->path,
			   strerror(errno));
		return STORE_TEMPFAIL;
	}
	sqlite3 *db = get_db(s);
	if (db == NULL) {
		buf_printf(detail, "sqlite: cannot open %s", s->path);
		return STORE_TEMPFAIL;
	}
	char sql[128];
	snprintf(sql, sizeof(sql), "INSERT OR REPLACE INTO health (id, checked_at) VALUES (1, %lld)",
		 (long long)time(NULL));
	int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		return STORE_OK;
	buf_printf(detail, "sqlite: a write to %s fails: %s", s->path, sqlite3_errmsg(db));
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return STORE_TEMPFAIL;
}

/* --- the outbound queue --- */

/* Writes the chunks of q's message (one STORE_QUEUE_CHUNK piece in memory
 * at a time). */
static enum store_status put_queue_chunks(sqlite3 *db, const struct store_queue_put *q)
{
	uint64_t total = store_queue_put_size(q);
	sqlite3_stmt *st = prep(db, "INSERT INTO queue_chunks (id, n, data) VALUES (?, ?, ?)");
	if (st == NULL)
		return STORE_TEMPFAIL;
	char *chunk = xmalloc(STORE_QUEUE_CHUNK);
	enum store_status ret = STORE_OK;
	for (uint64_t off = 0, k = 0; off < total && ret == STORE_OK; off += STORE_QUEUE_CHUNK, k++) {
		size_t n = total - off < STORE_QUEUE_CHUNK ? (size_t)(total - off) : STORE_QUEUE_CHUNK;
		if (store_queue_put_read(q, off, chunk, n) < 0) {
			ret = STORE_TEMPFAIL;
			break;
		}
		sqlite3_reset(st);
		sqlite3_bind_blob(st, 1, q->id.b, 16, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)k);
		sqlite3_bind_blob(st, 3, chunk, (int)n, SQLITE_STATIC);
		ret = status_from_rc(db, sqlite3_step(st), "queue chunk");
	}
	free(chunk);
	sqlite3_finalize(st);
	return ret;
}

/* Ends the transaction begun on db: COMMIT when ret is OK, else ROLLBACK. */
static enum store_status finish(sqlite3 *db, enum store_status ret)
{
	if (ret == STORE_OK && exec_sql(db, "COMMIT") == SQLITE_OK)
		return STORE_OK;
	exec_sql(db, "ROLLBACK");
	return ret == STORE_OK ? STORE_TEMPFAIL : ret;
}

static enum store_status sqlite_queue_put(struct store *store, const struct store_queue_put *q,
					  const struct buf *rcpts)
{
	sqlite3 *db = get_db((struct sqlite_store *)store);
	if (db == NULL || exec_sql(db, "BEGIN IMMEDIATE") != SQLITE_OK)
		return STORE_TEMPFAIL;
	sqlite3_stmt *st = prep(db, "INSERT INTO queue (id, owner, sender, queued_us, next_attempt_us,"
				    " attempts, size, rcpts) VALUES (?, ?, ?, ?, ?, 0, ?, ?)"
				    " ON CONFLICT (id) DO NOTHING");
	enum store_status ret = STORE_TEMPFAIL;
	if (st != NULL) {
		sqlite3_bind_blob(st, 1, q->id.b, 16, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, q->owner, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, q->sender != NULL ? q->sender : "", -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, timeuuid_unix_usec(&q->id));
		sqlite3_bind_int64(st, 5, q->next_attempt_us);
		sqlite3_bind_int64(st, 6, (sqlite3_int64)store_queue_put_size(q));
		sqlite3_bind_blob(st, 7, rcpts->data, (int)rcpts->len, SQLITE_STATIC);
		ret = status_from_rc(db, sqlite3_step(st), "queue put");
		sqlite3_finalize(st);
	}
	/* No change: the entry is there already (a retry), as it is now. */
	if (ret == STORE_OK && sqlite3_changes(db) == 1)
		ret = put_queue_chunks(db, q);
	return finish(db, ret);
}

#define QUEUE_COLUMNS "id, owner, sender, queued_us, next_attempt_us, attempts, size, rcpts"

/* The entry of the current row of a QUEUE_COLUMNS select. */
static enum store_status queue_row(sqlite3_stmt *st, struct store_queue_entry *e)
{
	memset(e, 0, sizeof(*e));
	const char *owner = (const char *)sqlite3_column_text(st, 1);
	const char *sender = (const char *)sqlite3_column_text(st, 2);
	if (sqlite3_column_bytes(st, 0) != 16 || owner == NULL || sender == NULL) {
		log_error("sqlite: a malformed queue row");
		return STORE_TEMPFAIL;
	}
	memcpy(e->id.b, sqlite3_column_blob(st, 0), 16);
	str_copy(e->owner, owner, sizeof(e->owner));
	str_copy(e->sender, sender, sizeof(e->sender));
	e->queued_us = sqlite3_column_int64(st, 3);
	e->next_attempt_us = sqlite3_column_int64(st, 4);
	e->attempts = (unsigned int)sqlite3_column_int64(st, 5);
	e->size = (uint64_t)sqlite3_column_int64(st, 6);
	if (store_queue_rcpts_decode(sqlite3_column_blob(st, 7), (size_t)sqlite3_column_bytes(st, 7),
				     e) < 0) {
		log_error("sqlite: a queue row with malformed recipients");
		return STORE_TEMPFAIL;
	}
	return STORE_OK;
}

static enum store_status sqlite_queue_scan(struct store *store, const char *owner,
					   int64_t due_before_us, unsigned int max,
					   struct store_queue_entry **entries_r,
					   unsigned int *count_r)
{
	sqlite3 *db;
	sqlite3_stmt *st = prep_on_thread(store, &db, owner != NULL
		? "SELECT " QUEUE_COLUMNS " FROM queue WHERE next_attempt_us <= ?1 AND owner = ?3"
		  " ORDER BY next_attempt_us, queued_us LIMIT ?2"
		: "SELECT " QUEUE_COLUMNS " FROM queue WHERE next_attempt_us <= ?1"
		  " ORDER BY next_attempt_us, queued_us LIMIT ?2");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_int64(st, 1, due_before_us);
	sqlite3_bind_int64(st, 2, max);
	if (owner != NULL)
		sqlite3_bind_text(st, 3, owner, -1, SQLITE_STATIC);
	unsigned int alloc = 0;
	enum store_status ret = STORE_OK;
	int rc = SQLITE_DONE;
	while (ret == STORE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*count_r == alloc) {
			alloc = alloc ? alloc * 2 : 16;
			*entries_r = xrealloc(*entries_r, alloc * sizeof(**entries_r));
		}
		ret = queue_row(st, &(*entries_r)[(*count_r)++]);
	}
	if (ret == STORE_OK && rc != SQLITE_DONE)
		ret = status_from_rc(db, rc, "queue scan");
	sqlite3_finalize(st);
	return ret;
}

static enum store_status sqlite_queue_get(struct store *store, const struct uuid *id,
					  struct store_queue_entry *entry_r)
{
	sqlite3 *db;
	sqlite3_stmt *st = prep_on_thread(store, &db,
					  "SELECT " QUEUE_COLUMNS " FROM queue WHERE id = ?");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_blob(st, 1, id->b, 16, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	enum store_status ret = rc == SQLITE_ROW ? queue_row(st, entry_r)
				: rc == SQLITE_DONE ? STORE_NOTFOUND : status_from_rc(db, rc, "queue get");
	sqlite3_finalize(st);
	return ret;
}

/* One statement, so one snapshot: the chunks are deleted with the entry,
 * so none found means the entry is gone. */
static enum store_status sqlite_queue_read(struct store *store, const struct store_queue_entry *e,
					   uint64_t offset, char *dst, size_t n)
{
	sqlite3 *db;
	sqlite3_stmt *st = prep_on_thread(store, &db, "SELECT n, data FROM queue_chunks"
						      " WHERE id = ? AND n BETWEEN ? AND ? ORDER BY n");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_blob(st, 1, e->id.b, 16, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)(offset / STORE_QUEUE_CHUNK));
	sqlite3_bind_int64(st, 3, (sqlite3_int64)((offset + n - 1) / STORE_QUEUE_CHUNK));
	size_t copied = 0;
	unsigned int rows = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rows++;
		copied += store_queue_chunk_copy((uint64_t)sqlite3_column_int64(st, 0),
						 sqlite3_column_blob(st, 1),
						 (size_t)sqlite3_column_bytes(st, 1), offset, dst, n);
	}
	enum store_status ret = status_from_rc(db, rc, "queue read");
	sqlite3_finalize(st);
	if (ret == STORE_OK && rows == 0)
		return STORE_NOTFOUND;
	if (ret == STORE_OK && copied != n) {
		log_error("sqlite: the stored message of a queue entry is shorter than its size");
		return STORE_TEMPFAIL;
	}
	return ret;
}

static enum store_status sqlite_queue_update(struct store *store, const struct store_queue_entry *e,
					     const struct buf *rcpts)
{
	sqlite3 *db;
	sqlite3_stmt *st = prep_on_thread(store, &db, "UPDATE queue SET attempts = ?,"
						      " next_attempt_us = ?, rcpts = ?"
						      " WHERE id = ? AND owner = ?");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_int64(st, 1, e->attempts);
	sqlite3_bind_int64(st, 2, e->next_attempt_us);
	sqlite3_bind_blob(st, 3, rcpts->data, (int)rcpts->len, SQLITE_STATIC);
	sqlite3_bind_blob(st, 4, e->id.b, 16, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, e->owner, -1, SQLITE_STATIC);
	enum store_status ret = status_from_rc(db, sqlite3_step(st), "queue update");
	sqlite3_finalize(st);
	return ret == STORE_OK && sqlite3_changes(db) == 0 ? STORE_NOTFOUND : ret;
}

/* Runs a statement with the entry id as its one parameter; the changes in *changes_r. */
static enum store_status queue_id_write(sqlite3 *db, const char *sql, const struct uuid *id,
					int *changes_r)
{
	sqlite3_stmt *st = prep(db, sql);
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_blob(st, 1, id->b, 16, SQLITE_STATIC);
	enum store_status ret = status_from_rc(db, sqlite3_step(st), sql);
	sqlite3_finalize(st);
	*changes_r = sqlite3_changes(db);
	return ret;
}

static enum store_status sqlite_queue_del(struct store *store, const struct uuid *id)
{
	sqlite3 *db = get_db((struct sqlite_store *)store);
	if (db == NULL || exec_sql(db, "BEGIN IMMEDIATE") != SQLITE_OK)
		return STORE_TEMPFAIL;
	int changes = 0, chunks = 0;
	enum store_status ret = queue_id_write(db, "DELETE FROM queue WHERE id = ?", id, &changes);
	if (ret == STORE_OK)
		ret = queue_id_write(db, "DELETE FROM queue_chunks WHERE id = ?", id, &chunks);
	if (ret == STORE_OK && changes == 0)
		ret = STORE_NOTFOUND;
	return finish(db, ret);
}

static enum store_status sqlite_queue_flush(struct store *store, int64_t now_us,
					    unsigned int *count_r)
{
	sqlite3 *db;
	sqlite3_stmt *st = prep_on_thread(store, &db, "UPDATE queue SET next_attempt_us = ?");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_int64(st, 1, now_us);
	enum store_status ret = status_from_rc(db, sqlite3_step(st), "queue flush");
	sqlite3_finalize(st);
	if (ret == STORE_OK)
		*count_r = (unsigned int)sqlite3_changes(db);
	return ret;
}

static enum store_status sqlite_queue_heartbeat(struct store *store, const char *node,
						int64_t now_us)
{
	sqlite3 *db;
	sqlite3_stmt *st = prep_on_thread(store, &db, "INSERT INTO queue_nodes (node, heartbeat_us)"
						      " VALUES (?, ?) ON CONFLICT (node)"
						      " DO UPDATE SET heartbeat_us = excluded.heartbeat_us");
	if (st == NULL)
		return STORE_TEMPFAIL;
	sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now_us);
	enum store_status ret = status_from_rc(db, sqlite3_step(st), "queue heartbeat");
	sqlite3_finalize(st);
	return ret;
}

static enum store_status sqlite_queue_nodes(struct store *store, struct store_queue_node **nodes_r,
					    unsigned int *count_r)
{
	sqlite3 *db;
	sqlite3_stmt *st = prep_on_thread(store, &db, "SELECT node, heartbeat_us FROM queue_nodes");
	if (st == NULL)
		return STORE_TEMPFAIL;
	unsigned int alloc = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*count_r == alloc) {
			alloc = alloc ? alloc * 2 : 8;
			*nodes_r = xrealloc(*nodes_r, alloc * sizeof(**nodes_r));
		}
		struct store_queue_node *n = &(*nodes_r)[(*count_r)++];
		str_copy(n->id, (const char *)sqlite3_column_text(st, 0), sizeof(n->id));
		n->heartbeat_us = sqlite3_column_int64(st, 1);
	}
	enum store_status ret = status_from_rc(db, rc, "queue nodes");
	sqlite3_finalize(st);
	return ret;
}

/* store_durability_check(). */
static int sqlite_durability(struct store *store, struct buf *line)
{
	(void)store;
	buf_append_str(line, "yes: every commit is fsync'ed (WAL, synchronous=FULL) before the store answers");
	return 1;
}

const struct store_vfuncs store_sqlite_vfuncs = {
	.name = "sqlite",
	.section = NULL,
	/* Writers are serialised and group-committed: a few threads suffice. */
	.worker_threads = 4,
	.open = sqlite_open,
	.close = sqlite_close,
	.domain_add = sqlite_domain_add,
	.domain_del = sqlite_domain_del,
	.domain_exists = sqlite_domain_exists,
	.domain_list = sqlite_domain_list,
	.user_add = sqlite_user_add,
	.user_del = sqlite_user_del,
	.user_set_password = sqlite_user_set_password,
	.user_get = sqlite_user_get,
	.user_list = sqlite_user_list,
	.alias_put = sqlite_alias_put,
	.alias_del = sqlite_alias_del,
	.alias_get = sqlite_alias_get,
	.alias_list = sqlite_alias_list,
	.quota_get = sqlite_quota_get,
	.quota_set = sqlite_quota_set,
	.expire_get = sqlite_expire_get,
	.expire_set = sqlite_expire_set,
	.login_get = sqlite_login_get,
	.login_put = sqlite_login_put,
	.retrieved_put = sqlite_retrieved_put,
	.retrieved_list = sqlite_retrieved_list,
	.retrieved_del = sqlite_retrieved_del,
	.mailbox_usage = sqlite_mailbox_usage,
	.health = sqlite_health,
	.durability = sqlite_durability,
	.deliver = sqlite_deliver,
	.maildrop_read = sqlite_maildrop_read,
	.cursor_open = sqlite_cursor_open,
	.cursor_read = sqlite_cursor_read,
	.cursor_close = sqlite_cursor_close,
	.reads_nowait = true,
	.expunge = sqlite_expunge,
	.repair = sqlite_repair,
	.queue_put = sqlite_queue_put,
	.queue_scan = sqlite_queue_scan,
	.queue_get = sqlite_queue_get,
	.queue_read = sqlite_queue_read,
	.queue_update = sqlite_queue_update,
	.queue_del = sqlite_queue_del,
	.queue_flush = sqlite_queue_flush,
	.queue_heartbeat = sqlite_queue_heartbeat,
	.queue_nodes = sqlite_queue_nodes,
};
