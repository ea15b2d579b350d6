#ifndef TERN_IMPORT_PARSE_H
#define TERN_IMPORT_PARSE_H
/*
 * import-parse: the readers of the files other POP3 servers leave in a
 * mailbox, and of the mailbox formats themselves, as pure functions over
 * memory (no I/O), so that each is unit-tested on its own:
 *
 * - Dovecot's dovecot-uidlist (versions 1 and 3): the header (UIDVALIDITY,
 *   next UID) and the per-message lines (UID, the P<uidl> and O<order>
 *   extension fields, the file name);
 * - Courier's courierpop3dsizelist (versions 2 and 3): "/VERSION NEXTUID
 *   UIDVALIDITY", then "FILENAME SIZE UID:UIDVALIDITY[:UTF8]" lines;
 * - Maildir file names: the base name (before ":2,"), the delivery time
 *   of the leading "SECONDS[.M<usec>...]";
 * - mbox: From_ separated messages (a quoted ">From " line is kept as it
 *   is), the From_ line's date, and the header fields an mbox server keeps
 *   its state in, which it hides from clients;
 * - a message's header fields (X-UIDL:, Date:) and the CRLF form of its
 *   octets (what POP3 sizes count).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Dovecot's default pop3_uidl_format "%08Xu%08Xv", as Dovecot 2.3 prints it:
 * lower-case hex (its %X modifier is hex, not upper-case hex). */
#define IMPORT_DOVECOT_UIDL_LEN 16
void import_dovecot_uidl(uint32_t uid, uint32_t uidvalidity, char out[IMPORT_DOVECOT_UIDL_LEN + 1]);

struct import_uidlist_header {
	unsigned int version;     /* 1 or 3 */
	uint32_t uidvalidity;
	uint32_t next_uid;
};
/* The first line of dovecot-uidlist (without its '\n'). 0, or -1 when it
 * is not a version 1 or 3 header with a UIDVALIDITY. */
int import_uidlist_parse_header(const char *line, size_t len, struct import_uidlist_header *h_r);

struct import_uidlist_rec {
	uint32_t uid;
	bool has_uidl;            /* a P field: uidl is the saved UIDL (may be "") */
	char uidl[80];
	bool has_order;           /* an O field */
	uint32_t order;
	char name[256];           /* the file's base name (before ':') */
};
/* A message line: version 3 "UID [FIELDS...] :FILENAME", version 1
 * "UID FILENAME". 0, or -1 when malformed (a P value longer than 79
 * octets included; a name longer than 255). */
int import_uidlist_parse_line(unsigned int version, const char *line, size_t len,
			      struct import_uidlist_rec *r_r);

/* Courier's UIDL: "UID<n>-<uidvalidity>", or "UID<n>" when that is 0. */
#define IMPORT_COURIER_UIDL_MAX 48
void import_courier_uidl(unsigned long uid, unsigned long uidvalidity,
			 char out[IMPORT_COURIER_UIDL_MAX]);

struct import_courier_header {
	unsigned int version;     /* 2 or 3 */
	unsigned long next_uid, uidvalidity;
};
int import_courier_parse_header(const char *line, size_t len, struct import_courier_header *h_r);
struct import_courier_rec {
	char name[256];           /* base name (before ':') */
	uint64_t size;
	char uidl[IMPORT_COURIER_UIDL_MAX]; /* import_courier_uidl() */
};
/* "FILENAME SIZE UID:UIDVALIDITY[:UTF8]", split from the right as Courier
 * does (a file name may hold spaces). 0, or -1 when malformed. */
int import_courier_parse_line(const char *line, size_t len, struct import_courier_rec *r_r);

/* A Maildir file name: the length of the base name (up to the ':' info
 * separator), and the delivery time of its leading "SECONDS" and, when the
 * next part starts with "M", its microseconds. Returns false (times
 * untouched) when the name does not start with a plausible timestamp. */
size_t import_maildir_base_len(const char *name);
bool import_maildir_name_time(const char *name, int64_t *sec_r, int64_t *usec_r);

/* mbox splitting over a file held in memory. A message starts at a line
 * "From " that is the first of the file or follows an empty line; its
 * content is what follows the From_ line up to the empty line before the
 * next From_ line (that one empty line is the separator's, not the
 * message's). */
struct import_mbox_msg {
	size_t offset;            /* of the From_ line in the file */
	const char *from_line;    /* without its line end */
	size_t from_len;
	const char *data;         /* the message, still quoted */
	size_t len;
};
/* The message starting at or after *pos; advances *pos. Returns false at
 * the end. Text before the first From_ line is skipped. */
bool import_mbox_next(const char *file, size_t file_len, size_t *pos, struct import_mbox_msg *m_r);
/* The date of a From_ line "From SENDER Www Mmm dd hh:mm:ss yyyy" (UTC). */
bool import_mbox_from_time(const char *line, size_t len, int64_t *sec_r);

/* Appends the CRLF form of data to out: a bare LF becomes CRLF (a CRLF
 * stays). With mbox, the header fields that Dovecot and UW's c-client
 * keep their mbox state in and hide from clients (Content-Length, Status,
 * X-IMAP, X-IMAPbase, X-Keywords, X-Status, X-UID), folded lines
 * included, are left out; nothing else changes (">From " lines keep their
 * '>', as those servers show them). Returns -1 when out's cap is reached. */
int import_to_crlf(const char *data, size_t len, bool mbox, struct buf *out);

/* The value of the first header field called name (case-insensitive) in
 * the header of msg (up to the first empty line), with surrounding blanks
 * removed, folded lines joined by one space; copied into out (truncated to
 * out_size - 1). Returns false when there is no such field. */
bool import_header_get(const char *msg, size_t len, const char *name, char *out, size_t out_size);
/* An RFC 5322 date ("[Www, ]dd Mmm yyyy hh:mm[:ss] [+-]hhmm|zone") as Unix time. */
bool import_date_parse(const char *value, int64_t *sec_r);

#endif
