#ifndef TERN_SERVER_H
#define TERN_SERVER_H
/*
 * server: `tern serve`. Binds the listeners of the protocol table, accepts
 * connections into sessions, handles signals, and shuts down cleanly.
 */
#include "buf.h"
#include "settings.h"

/* Runs the server until SIGTERM/SIGINT. Returns the process exit status
 * (0, or a sysexits.h code when it cannot start). */
int serve(const struct tern_settings *set);

/* For `tern check-config`: what serve() would refuse before binding,
 * without binding anything: the TLS files load, something is to be
 * served, the admin token file can be read, with [server] user data_dir
 * and its spool belong to that user, and outbound's files and settings
 * ([dkim] key_file, [relay] password_file: outbound_preflight()). Appends one line per
 * problem to problems ('\n' between lines); returns how many. */
unsigned int serve_preflight(const struct tern_settings *set, struct buf *problems);
/* Logs each line of problems (settings_add_problem()'s list) as an error. */
void serve_log_problems(const struct buf *problems);
/* With [server] user: data_dir must exist and belong to the user, and so
 * must data_dir/spool if it exists. Appends a line per problem, each with
 * the command that fixes it. */
void serve_check_data_dir(const struct tern_settings *set, struct buf *problems);
/* As root with [server] user: becomes that user, its group and the
 * user's other groups, for good, and checks that root cannot come back.
 * Does nothing otherwise. 0, or -1 with the reason logged. */
int serve_drop_privileges(const struct tern_settings *set);
/* One line saying what serve() would listen on, the store, the user. */
void serve_describe(const struct tern_settings *set, struct buf *out);

#endif
