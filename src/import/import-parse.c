/*
 * import-parse: readers of dovecot-uidlist, courierpop3dsizelist, Maildir
 * names, mbox and header fields. Pure functions over memory: every input
 * is bounded by its length (no reliance on NUL termination), every output
 * by its size; malformed input is an error return, never a crash.
 *
 * mbox messages are taken as the POP3 servers that read mbox files
 * (Dovecot, UW's ipop3d) show them, so that sizes and contents stay what
 * the clients saw: a quoted ">From " line keeps its '>' (they do not
 * unquote), and the header fields those servers keep their state in
 * (Status:, X-UID:, Content-Length:, ...) are left out, as they hide them.
 */
#include "import-parse.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void import_dovecot_uidl(uint32_t uid, uint32_t uidvalidity, char out[IMPORT_DOVECOT_UIDL_LEN + 1])
{
	snprintf(out, IMPORT_DOVECOT_UIDL_LEN + 1, "%08x%08x", uid, uidvalidity);
}

/* Parses decimal digits at s[*i..len) into a 32- or 64-bit value. */
static bool parse_u64(const char *s, size_t len, size_t *i, uint64_t max, uint64_t *v_r)
{
	uint64_t v = 0;
	size_t start = *i;
	while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
		unsigned int d = (unsigned int)(s[*i] - '0');
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
		(*i)++;
	}
	if (*i == start)
		return false;
	*v_r = v;
	return true;
}

static bool parse_u32(const char *s, size_t len, size_t *i, uint32_t *v_r)
{
	uint64_t v;
	if (!parse_u64(s, len, i, UINT32_MAX, &v))
		return false;
	*v_r = (uint32_t)v;
	return true;
}

static void skip_spaces(const char *s, size_t len, size_t *i)
{
	while (*i < len && s[*i] == ' ')
		(*i)++;
}

int import_uidlist_parse_header(const char *line, size_t len, struct import_uidlist_header *h_r)
{
	size_t i = 0;
	uint32_t version;
	memset(h_r, 0, sizeof(*h_r));
	if (!parse_u32(line, len, &i, &version))
		return -1;
	h_r->version = version;
	if (version == 1) {
		/* "1 UIDVALIDITY NEXTUID" */
		skip_spaces(line, len, &i);
		if (!parse_u32(line, len, &i, &h_r->uidvalidity))
			return -1;
		skip_spaces(line, len, &i);
		if (!parse_u32(line, len, &i, &h_r->next_uid))
			return -1;
		return h_r->uidvalidity != 0 ? 0 : -1;
	}
	if (version != 3)
		return -1;
	/* "3 V<uidvalidity> N<nextuid> G<guid> ...": keys in any order. */
	while (i < len) {
		skip_spaces(line, len, &i);
		if (i >= len)
			break;
		char key = line[i++];
		if (key == 'V' && !parse_u32(line, len, &i, &h_r->uidvalidity))
			return -1;
		if (key == 'N' && !parse_u32(line, len, &i, &h_r->next_uid))
			return -1;
		while (i < len && line[i] != ' ')
			i++;
	}
	return h_r->uidvalidity != 0 ? 0 : -1;
}

static int copy_name(const char *p, size_t n, char *out, size_t out_size)
{
	size_t base = 0;
	while (base < n && p[base] != ':')
		base++;
	if (base == 0 || base >= out_size)
		return -1;
	memcpy(out, p, base);
	out[base] = '\0';
	return 0;
}

int import_uidlist_parse_line(unsigned int version, const char *line, size_t len,
			      struct import_uidlist_rec *r_r)
{
	size_t i = 0;
	memset(r_r, 0, sizeof(*r_r));
	if (!parse_u32(line, len, &i, &r_r->uid) || r_r->uid == 0 || i >= len || line[i] != ' ')
		return -1;
	skip_spaces(line, len, &i);
	if (version == 1)
		return copy_name(line + i, len - i, r_r->name, sizeof(r_r->name));
	/* Extension fields, each one upper-case letter and its value, until
	 * " :FILENAME". */
	while (i < len && line[i] != ':') {
		char key = line[i++];
		size_t start = i;
		while (i < len && line[i] != ' ')
			i++;
		size_t vlen = i - start;
		if (key < 'A' || key > 'Z')
			return -1;
		if (key == 'P') {
			if (vlen >= sizeof(r_r->uidl))
				return -1;
			memcpy(r_r->uidl, line + start, vlen);
			r_r->uidl[vlen] = '\0';
			r_r->has_uidl = true;
		} else if (key == 'O') {
			size_t j = start;
			if (!parse_u32(line, start + vlen, &j, &r_r->order) || j != start + vlen)
				return -1;
			r_r->has_order = true;
		}
		skip_spaces(line, len, &i);
	}
	if (i >= len)
		return -1;
	i++; /* the ':' */
	return copy_name(line + i, len - i, r_r->name, sizeof(r_r->name));
}

int import_courier_parse_header(const char *line, size_t len, struct import_courier_header *h_r)
{
	size_t i = 1;
	uint64_t v;
	memset(h_r, 0, sizeof(*h_r));
	if (len < 2 || line[0] != '/' || !parse_u64(line, len, &i, 100, &v) || (v != 2 && v != 3))
		return -1;
	h_r->version = (unsigned int)v;
	skip_spaces(line, len, &i);
	if (!parse_u64(line, len, &i, UINT32_MAX, &v))
		return -1;
	h_r->next_uid = (unsigned long)v;
	skip_spaces(line, len, &i);
	if (i < len) {
		if (!parse_u64(line, len, &i, UINT32_MAX, &v))
			return -1;
		h_r->uidvalidity = (unsigned long)v;
	}
	return 0;
}

void import_courier_uidl(unsigned long uid, unsigned long uidvalidity,
			 char out[IMPORT_COURIER_UIDL_MAX])
{
	if (uidvalidity != 0)
		snprintf(out, IMPORT_COURIER_UIDL_MAX, "UID%lu-%lu", uid, uidvalidity);
	else
		snprintf(out, IMPORT_COURIER_UIDL_MAX, "UID%lu", uid);
}

int import_courier_parse_line(const char *line, size_t len, struct import_courier_rec *r_r)
{
	memset(r_r, 0, sizeof(*r_r));
	/* The last two space-separated fields are SIZE and UID:UIDV[:UTF8]. */
	size_t sp2 = len;
	while (sp2 > 0 && line[sp2 - 1] != ' ')
		sp2--;
	if (sp2 == 0)
		return -1;
	size_t sp1 = sp2 - 1;
	while (sp1 > 0 && line[sp1 - 1] != ' ')
		sp1--;
	if (sp1 == 0)
		return -1;
	size_t i = sp1;
	if (!parse_u64(line, sp2 - 1, &i, UINT64_MAX, &r_r->size) || i != sp2 - 1)
		return -1;
	i = sp2;
	uint64_t uid, uidv;
	if (!parse_u64(line, len, &i, UINT32_MAX, &uid) || i >= len || line[i] != ':')
		return -1;
	i++;
	if (!parse_u64(line, len, &i, UINT32_MAX, &uidv))
		return -1;
	if (i < len && line[i] != ':')
		return -1;
	if (uid == 0)
		return -1;
	import_courier_uidl((unsigned long)uid, (unsigned long)uidv, r_r->uidl);
	/* The name may itself hold a directory ("cur/..."): keep the base. */
	size_t start = 0;
	for (size_t k = 0; k + 1 < sp1; k++)
		if (line[k] == '/')
			start = k + 1;
	return copy_name(line + start, sp1 - 1 - start, r_r->name, sizeof(r_r->name));
}

size_t import_maildir_base_len(const char *name)
{
	const char *colon = strchr(name, ':');
	return colon != NULL ? (size_t)(colon - name) : strlen(name);
}

bool import_maildir_name_time(const char *name, int64_t *sec_r, int64_t *usec_r)
{
	size_t len = import_maildir_base_len(name), i = 0;
	uint64_t sec;
	/* Sanity: between 1973 and 2200. */
	if (!parse_u64(name, len, &i, UINT32_MAX * 2ULL, &sec) || sec < 100000000ULL ||
	    sec > 7258118400ULL || i >= len || name[i] != '.')
		return false;
	*sec_r = (int64_t)sec;
	*usec_r = 0;
	i++;
	uint64_t usec;
	if (i < len && name[i] == 'M') {
		i++;
		if (parse_u64(name, len, &i, UINT32_MAX, &usec) && usec < 1000000)
			*usec_r = (int64_t)usec;
	}
	return true;
}

/* The end of the line starting at p (the index of its '\n', or len). */
static size_t line_end(const char *s, size_t len, size_t p)
{
	const char *nl = memchr(s + p, '\n', len - p);
	return nl != NULL ? (size_t)(nl - s) : len;
}

static bool is_from_line(const char *s, size_t len, size_t p)
{
	return len - p >= 5 && memcmp(s + p, "From ", 5) == 0;
}

bool import_mbox_next(const char *file, size_t file_len, size_t *pos, struct import_mbox_msg *m_r)
{
	size_t p = *pos;
	/* Whether the line before p is empty (or p is the file's start). */
	bool prev_empty = p == 0 || (p == 1 && file[0] == '\n') ||
			  (p >= 2 && file[p - 1] == '\n' &&
			   (file[p - 2] == '\n' || (p == 2 && file[0] == '\r') ||
			    (p >= 3 && file[p - 2] == '\r' && file[p - 3] == '\n')));
	/* Find the From_ line. */
	while (p < file_len && !(prev_empty && is_from_line(file, file_len, p))) {
		size_t e = line_end(file, file_len, p);
		prev_empty = e == p || (e == p + 1 && file[p] == '\r');
		p = e < file_len ? e + 1 : file_len;
	}
	if (p >= file_len) {
		*pos = file_len;
		return false;
	}
	m_r->offset = p;
	m_r->from_line = file + p;
	size_t e = line_end(file, file_len, p);
	m_r->from_len = e - p;
	if (m_r->from_len > 0 && file[e - 1] == '\r')
		m_r->from_len--;
	size_t start = e < file_len ? e + 1 : file_len;
	/* The message runs until an empty line followed by a From_ line. */
	size_t q = start, end = file_len;
	prev_empty = false;
	size_t empty_at = 0;
	while (q < file_len) {
		if (prev_empty && is_from_line(file, file_len, q)) {
			end = empty_at;
			break;
		}
		size_t le = line_end(file, file_len, q);
		bool empty = le == q || (le == q + 1 && file[q] == '\r');
		if (empty)
			empty_at = q;
		prev_empty = empty;
		q = le < file_len ? le + 1 : file_len;
	}
	if (q >= file_len) {
		end = file_len;
		/* At the end of the file: drop the separator's empty line too. */
		if (end >= start + 2 && file[end - 1] == '\n' && file[end - 2] == '\n')
			end--;
		else if (end >= start + 4 && memcmp(file + end - 4, "\r\n\r\n", 4) == 0)
			end -= 2;
	}
	m_r->data = file + start;
	m_r->len = end - start;
	*pos = q;
	return true;
}

static const char *const months[12] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

static int month_index(const char *s, size_t len)
{
	if (len < 3)
		return -1;
	for (int m = 0; m < 12; m++)
		if (strncasecmp(s, months[m], 3) == 0)
			return m;
	return -1;
}

static bool hms(const char *s, size_t len, size_t *i, struct tm *tm)
{
	uint32_t h, m, sec = 0;
	if (!parse_u32(s, len, i, &h) || *i >= len || s[*i] != ':')
		return false;
	(*i)++;
	if (!parse_u32(s, len, i, &m))
		return false;
	if (*i < len && s[*i] == ':') {
		(*i)++;
		if (!parse_u32(s, len, i, &sec))
			return false;
	}
	if (h > 23 || m > 59 || sec > 60)
		return false;
	tm->tm_hour = (int)h;
	tm->tm_min = (int)m;
	tm->tm_sec = (int)sec;
	return true;
}

bool import_mbox_from_time(const char *line, size_t len, int64_t *sec_r)
{
	/* "From SENDER Www Mmm dd hh:mm:ss yyyy": find the weekday+month pair
	 * from the right end, as the sender may hold spaces. */
	for (size_t p = len; p-- > 5;) {
		if (line[p - 1] != ' ' || len - p < 20)
			continue;
		size_t i = p + 4;
		int mon = month_index(line + i, len - i);
		if (line[p + 3] != ' ' || mon < 0)
			continue;
		i += 3;
		skip_spaces(line, len, &i);
		struct tm tm = { 0 };
		uint32_t day, year;
		if (!parse_u32(line, len, &i, &day))
			continue;
		skip_spaces(line, len, &i);
		if (!hms(line, len, &i, &tm))
			continue;
		skip_spaces(line, len, &i);
		if (!parse_u32(line, len, &i, &year) || year < 1970 || day < 1 || day > 31)
			continue;
		tm.tm_mday = (int)day;
		tm.tm_mon = mon;
		tm.tm_year = (int)year - 1900;
		*sec_r = (int64_t)timegm(&tm);
		return true;
	}
	return false;
}

/* The header fields an mbox server keeps its own state in (flags, UIDs,
 * the message's length): Dovecot and UW's c-client hide them from
 * clients, so an mbox message is what they showed without them. */
static const char *const mbox_state_fields[] = {
	"Content-Length", "Status", "X-IMAP", "X-IMAPbase", "X-Keywords", "X-Status", "X-UID",
};

static bool is_mbox_state_field(const char *line, size_t len)
{
	for (size_t f = 0; f < sizeof(mbox_state_fields) / sizeof(mbox_state_fields[0]); f++) {
		size_t n = strlen(mbox_state_fields[f]), i = n;
		if (len <= n || strncasecmp(line, mbox_state_fields[f], n) != 0)
			continue;
		while (i < len && (line[i] == ' ' || line[i] == '\t'))
			i++;
		if (i < len && line[i] == ':')
			return true;
	}
	return false;
}

int import_to_crlf(const char *data, size_t len, bool mbox, struct buf *out)
{
	size_t p = 0;
	bool in_header = mbox, dropping = false;
	while (p < len) {
		size_t e = line_end(data, len, p);
		size_t content_end = e > p && data[e - 1] == '\r' ? e - 1 : e;
		if (in_header) {
			if (content_end == p)
				in_header = dropping = false;
			else if (data[p] != ' ' && data[p] != '\t')
				dropping = is_mbox_state_field(data + p, content_end - p);
			/* a folded line belongs to the field before it */
		}
		if (!dropping) {
			if (buf_append(out, data + p, e < len ? content_end - p : e - p) < 0)
				return -1;
			if (e < len && buf_append(out, "\r\n", 2) < 0)
				return -1;
		}
		p = e < len ? e + 1 : len;
	}
	return 0;
}

bool import_header_get(const char *msg, size_t len, const char *name, char *out, size_t out_size)
{
	size_t nlen = strlen(name), p = 0;
	while (p < len) {
		size_t e = line_end(msg, len, p);
		size_t ce = e > p && msg[e - 1] == '\r' ? e - 1 : e;
		if (ce == p)
			return false; /* end of the header */
		if (ce - p > nlen && msg[p + nlen] == ':' && strncasecmp(msg + p, name, nlen) == 0) {
			size_t o = 0;
			size_t v = p + nlen + 1;
			for (;;) {
				for (size_t k = v; k < ce; k++) {
					char c = msg[k] == '\t' ? ' ' : msg[k];
					if (c == ' ' && (o == 0 || out[o - 1] == ' '))
						continue;
					if (o + 1 < out_size)
						out[o++] = c;
				}
				/* A folded continuation line? */
				p = e < len ? e + 1 : len;
				if (p >= len || (msg[p] != ' ' && msg[p] != '\t'))
					break;
				if (o > 0 && out[o - 1] != ' ' && o + 1 < out_size)
					out[o++] = ' ';
				e = line_end(msg, len, p);
				ce = e > p && msg[e - 1] == '\r' ? e - 1 : e;
				v = p;
			}
			while (o > 0 && out[o - 1] == ' ')
				o--;
			if (out_size > 0)
				out[o < out_size ? o : out_size - 1] = '\0';
			return true;
		}
		p = e < len ? e + 1 : len;
	}
	return false;
}

bool import_date_parse(const char *value, int64_t *sec_r)
{
	size_t len = strlen(value), i = 0;
	skip_spaces(value, len, &i);
	/* An optional "Www," */
	if (i < len && isalpha((unsigned char)value[i])) {
		while (i < len && value[i] != ',' && value[i] != ' ')
			i++;
		if (i < len && value[i] == ',')
			i++;
		skip_spaces(value, len, &i);
	}
	struct tm tm = { 0 };
	uint32_t day, year;
	if (!parse_u32(value, len, &i, &day) || day < 1 || day > 31)
		return false;
	skip_spaces(value, len, &i);
	int mon = month_index(value + i, len - i);
	if (mon < 0)
		return false;
	i += 3;
	skip_spaces(value, len, &i);
	size_t ys = i;
	if (!parse_u32(value, len, &i, &year))
		return false;
	if (i - ys == 2)
		year += year < 50 ? 2000 : 1900;
	if (year < 1970)
		return false;
	skip_spaces(value, len, &i);
	if (!hms(value, len, &i, &tm))
		return false;
	skip_spaces(value, len, &i);
	int64_t offset = 0;
	if (i < len && (value[i] == '+' || value[i] == '-')) {
		int sign = value[i] == '-' ? -1 : 1;
		i++;
		size_t zs = i;
		uint32_t z;
		if (!parse_u32(value, len, &i, &z) || i - zs != 4)
			return false;
		offset = sign * (int64_t)((z / 100) * 3600 + (z % 100) * 60);
	}
	/* Named zones (UT, GMT, EST...) other than UT/GMT are taken as UTC: the
	 * id only needs the time to within hours to keep its place. */
	tm.tm_mday = (int)day;
	tm.tm_mon = mon;
	tm.tm_year = (int)year - 1900;
	*sec_r = (int64_t)timegm(&tm) - offset;
	return true;
}
