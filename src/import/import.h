#ifndef TERN_IMPORT_H
#define TERN_IMPORT_H
/*
 * import: moving a mailbox into tern from a Maildir or an mbox, keeping the
 * order and the POP3 UIDLs its clients know, and out of tern into a Maildir
 * that Dovecot serves with the same UIDLs.
 *
 * Import contract:
 * - The messages keep the order POP3 showed them in (Dovecot: its POP3
 *   order field, then IMAP UID; Courier: file name order; otherwise the
 *   Maildir's file name (time) order or the mbox's file order), and their
 *   UIDLs (the --uidl source; "none": the new id's text).
 * - Each message's id is a TimeUUID of its original delivery time (Maildir
 *   name, else From_ line (mbox), else Date:, else the file's mtime) with a
 *   clock sequence and node hashed from (mailbox, the message's identity in
 *   the source), made strictly increasing in source order. A rerun over the
 *   same source derives the same ids: a message whose id, or whose legacy
 *   UIDL with the same size, the mailbox already has is skipped.
 * - Nothing is written unless every UIDL is valid (RFC 1939: 1-70 octets
 *   0x21-0x7E) and unique, in the source and against the messages the
 *   mailbox already holds.
 * - Messages are stored in their CRLF form (what POP3 sizes count).
 */
#include <stdbool.h>
#include <stdint.h>

#include "store.h"

enum import_format { IMPORT_FORMAT_MAILDIR, IMPORT_FORMAT_MBOX };
enum import_uidl {
	IMPORT_UIDL_AUTO,
	IMPORT_UIDL_DOVECOT,
	IMPORT_UIDL_COURIER,
	IMPORT_UIDL_XUIDL,
	IMPORT_UIDL_NONE,
};

/* By name ("maildir", "mbox"; "auto", "dovecot", "courier", "x-uidl",
 * "none"): 0, or -1 for an unknown name. */
int import_format_parse(const char *name, enum import_format *f_r);
int import_uidl_parse(const char *name, enum import_uidl *u_r);
const char *import_uidl_name(enum import_uidl u);

struct import_report {
	enum import_uidl uidl;        /* the source of the UIDLs (auto resolved) */
	uint64_t messages, octets;    /* in the source */
	uint64_t imported, imported_octets;
	uint64_t skipped;             /* already in the mailbox */
	uint64_t fresh_uidls;         /* messages that had no legacy UIDL and got a new one */
};

/* Called after each message is handled (imported or skipped), on the
 * calling thread, never after import_mailbox() returned. */
typedef void import_progress_fn(const struct import_report *r, void *context);

/* Imports the mailbox at path into address's mailbox (the user must
 * exist). 0, or -1 with *error_r (malloc'ed, the caller frees) saying what
 * and where; the report says what was done before the error. */
int import_mailbox(struct store *store, const char *address, enum import_format format,
		   const char *path, enum import_uidl uidl, struct import_report *report_r,
		   import_progress_fn *progress, void *context, char **error_r);

struct export_report {
	uint64_t messages, octets;
};

/* Writes address's messages into a new Maildir at path (created; refused
 * when it already holds a dovecot-uidlist or messages) with a
 * dovecot-uidlist whose P fields are the UIDLs tern shows. 0, or -1 with
 * *error_r (malloc'ed). */
int export_maildir(struct store *store, const char *address, const char *path,
		   struct export_report *report_r, char **error_r);

#endif
