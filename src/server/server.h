#ifndef TERN_SERVER_H
#define TERN_SERVER_H
/*
 * server: `tern serve`. Binds the listeners of the protocol table, accepts
 * connections into sessions, handles signals, and shuts down cleanly.
 */
#include "settings.h"

/* Runs the server until SIGTERM/SIGINT. Returns the process exit status
 * (0, or a sysexits.h code when it cannot start). */
int serve(const struct tern_settings *set);

#endif
