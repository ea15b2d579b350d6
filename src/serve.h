#ifndef TERN_SERVE_H
#define TERN_SERVE_H
#include "settings.h"
/* Runs the daemon until SIGTERM/SIGINT. Returns the process exit status. */
int serve(const struct tern_settings *set);
#endif
