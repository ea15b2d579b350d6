/*
 * sqlite-nowait: the VFS of the readers' connections, which lets a read
 * say "would block" instead of waiting for the disk (store_nowait_begin).
 *
 * It wraps SQLite's default VFS and changes one thing: under
 * store_nowait(), a read of the database or of its WAL is made only when
 * every page it covers is in the kernel's page cache, which mincore()
 * tells from a read-only mapping of the file; otherwise it fails with
 * SQLITE_IOERR_READ after store_would_block(), and the caller retries on a
 * worker. An I/O error ends the statement's transaction (SQLite rolls it
 * back), which leaves the reader clean for its next use. Everything else,
 * and every read outside store_nowait(), goes to the default VFS as it is.
 *
 * The mapping is only ever asked about residency: the bytes are read by
 * SQLite's own descriptor, so a stale mapping (a WAL file deleted and made
 * again) can only cost a wrong guess, never a wrong byte. Its descriptor
 * is never closed while the process runs: closing any descriptor of a file
 * drops every POSIX lock the process holds on it, SQLite's included. So
 * there are at most NOWAIT_FILES of them (the database and its WAL, and
 * a few more if a WAL is made again); past that, reads of a new file
 * always defer.
 */
#include "sqlite-nowait.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store-private.h"

#define NOWAIT_VFS_NAME "tern-nowait"
#define NOWAIT_FILES 8
/* Address space reserved per mapped file (not memory): a file larger than
 * this is read from memory only up to here. */
#define NOWAIT_MAP_LEN ((size_t)1 << 40)
/* mincore() answers for at most this many pages per read; SQLite reads one
 * page, or a WAL frame, at a time. */
#define NOWAIT_PAGES_MAX 64

struct mapped_file {
	dev_t dev;
	ino_t ino;
	const unsigned char *map;
};

static struct mapped_file mapped[NOWAIT_FILES];
static unsigned int mapped_count;
static pthread_mutex_t mapped_lock = PTHREAD_MUTEX_INITIALIZER;
static long page_size;

struct nowait_file {
	sqlite3_file base;
	const struct mapped_file *map; /* NULL: reads under store_nowait() defer */
	sqlite3_file *real;            /* the default VFS's file, right after this struct */
};

static sqlite3_vfs *real_vfs;
static sqlite3_vfs nowait_vfs;
static sqlite3_io_methods nowait_io;

/* The mapping of the file at path, made on first use; NULL when it cannot be. */
static const struct mapped_file *map_of(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return NULL;
	pthread_mutex_lock(&mapped_lock);
	const struct mapped_file *found = NULL;
	for (unsigned int i = 0; i < mapped_count && found == NULL; i++)
		if (mapped[i].dev == st.st_dev && mapped[i].ino == st.st_ino)
			found = &mapped[i];
	if (found == NULL && mapped_count < NOWAIT_FILES) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		struct stat fst;
		/* the same file as the one stat'ed: the path may have moved on */
		if (fd >= 0 && fstat(fd, &fst) == 0 && fst.st_dev == st.st_dev &&
		    fst.st_ino == st.st_ino) {
			void *map = mmap(NULL, NOWAIT_MAP_LEN, PROT_READ, MAP_SHARED, fd, 0);
			/* Kept even when it could not be mapped (map NULL): its
			 * descriptor stays open (see the file comment), and the
			 * file is not tried again. */
			mapped[mapped_count] = (struct mapped_file){
				st.st_dev, st.st_ino, map == MAP_FAILED ? NULL : map
			};
			found = &mapped[mapped_count++];
		}
		/* The path names another file by now (a WAL made again):
		 * SQLite holds no lock on that one through us, closing drops none. */
		else if (fd >= 0) {
			close(fd);
		}
	}
	if (found != NULL && found->map == NULL)
		found = NULL;
	pthread_mutex_unlock(&mapped_lock);
	return found;
}

/* Whether the kernel holds every page of [off, off + amt) of the file. */
static bool resident(const struct mapped_file *m, sqlite3_int64 off, int amt)
{
	if (off < 0 || amt <= 0 || (uint64_t)off + (uint64_t)amt > NOWAIT_MAP_LEN)
		return false;
	uint64_t first = (uint64_t)off / (uint64_t)page_size;
	uint64_t last = ((uint64_t)off + (uint64_t)amt - 1) / (uint64_t)page_size;
	if (last - first >= NOWAIT_PAGES_MAX)
		return false;
	unsigned char vec[NOWAIT_PAGES_MAX];
	size_t len = (size_t)(last - first + 1) * (size_t)page_size;
	if (mincore((void *)(m->map + first * (uint64_t)page_size), len, vec) < 0)
		return false;
	for (uint64_t i = 0; i <= last - first; i++)
		if (!(vec[i] & 1))
			return false;
	return true;
}

static int nw_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
	struct nowait_file *nf = (struct nowait_file *)f;
	if (store_nowait() && (nf->map == NULL || !resident(nf->map, off, amt))) {
		store_would_block();
		return SQLITE_IOERR_READ;
	}
	return nf->real->pMethods->xRead(nf->real, buf, amt, off);
}

/* The rest is the default VFS's. */
#define REAL(f) (((struct nowait_file *)(f))->real)
static int nw_close(sqlite3_file *f)
{
	return REAL(f)->pMethods->xClose(REAL(f));
}
static int nw_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
	return REAL(f)->pMethods->xWrite(REAL(f), b, n, o);
}
static int nw_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int nw_sync(sqlite3_file *f, int flags)
{
	return REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int nw_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int nw_lock(sqlite3_file *f, int level)
{
	return REAL(f)->pMethods->xLock(REAL(f), level);
}
static int nw_unlock(sqlite3_file *f, int level)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), level);
}
static int nw_check_reserved(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int nw_file_control(sqlite3_file *f, int op, void *arg)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int nw_sector_size(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int nw_device_characteristics(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int nw_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **p)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), page, size, extend, p);
}
static int nw_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}
static void nw_shm_barrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int nw_shm_unmap(sqlite3_file *f, int delete_flag)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}
static int nw_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **p)
{
	/* Under store_nowait(), no mapped page (touching one could fault it
	 * in from the disk): SQLite then reads through xRead. */
	if (store_nowait()) {
		*p = NULL;
		return SQLITE_OK;
	}
	return REAL(f)->pMethods->xFetch(REAL(f), off, amt, p);
}
static int nw_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static int nw_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
		   int *out_flags)
{
	(void)vfs;
	struct nowait_file *nf = (struct nowait_file *)f;
	nf->real = (sqlite3_file *)(nf + 1);
	nf->map = NULL;
	int rc = real_vfs->xOpen(real_vfs, name, nf->real, flags, out_flags);
	if (rc != SQLITE_OK || nf->real->pMethods == NULL) {
		f->pMethods = NULL; /* SQLite calls no xClose then */
		return rc;
	}
	if (name != NULL && (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL)))
		nf->map = map_of(name);
	f->pMethods = &nowait_io;
	return SQLITE_OK;
}

static pthread_once_t register_once = PTHREAD_ONCE_INIT;
static bool registered;

static void register_vfs(void)
{
	real_vfs = sqlite3_vfs_find(NULL);
	page_size = sysconf(_SC_PAGESIZE);
	if (real_vfs == NULL || page_size <= 0)
		return;
	nowait_io = (sqlite3_io_methods){
		.iVersion = 3,
		.xClose = nw_close,
		.xRead = nw_read,
		.xWrite = nw_write,
		.xTruncate = nw_truncate,
		.xSync = nw_sync,
		.xFileSize = nw_file_size,
		.xLock = nw_lock,
		.xUnlock = nw_unlock,
		.xCheckReservedLock = nw_check_reserved,
		.xFileControl = nw_file_control,
		.xSectorSize = nw_sector_size,
		.xDeviceCharacteristics = nw_device_characteristics,
		.xShmMap = nw_shm_map,
		.xShmLock = nw_shm_lock,
		.xShmBarrier = nw_shm_barrier,
		.xShmUnmap = nw_shm_unmap,
		.xFetch = nw_fetch,
		.xUnfetch = nw_unfetch,
	};
	nowait_vfs = *real_vfs;
	nowait_vfs.zName = NOWAIT_VFS_NAME;
	nowait_vfs.szOsFile = (int)sizeof(struct nowait_file) + real_vfs->szOsFile;
	nowait_vfs.xOpen = nw_open;
	nowait_vfs.pNext = NULL;
	registered = sqlite3_vfs_register(&nowait_vfs, 0) == SQLITE_OK;
}

const char *sqlite_nowait_vfs(void)
{
	pthread_once(&register_once, register_vfs);
	return registered ? NOWAIT_VFS_NAME : NULL;
}
