#ifndef TERN_SQLITE_NOWAIT_H
#define TERN_SQLITE_NOWAIT_H

#include <sqlite3.h>

/* The name of the VFS whose reads honour store_nowait() (sqlite-nowait.c),
 * registered on first call; NULL when it could not be (then open the
 * connection with the default VFS and never read it under store_nowait()). */
const char *sqlite_nowait_vfs(void);

#endif
