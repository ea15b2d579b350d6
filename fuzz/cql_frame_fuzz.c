/*
 * Fuzz target for lib-cql's decoders: the input is a byte stream from a
 * server. The first byte chooses the chunk size the frame splitter is fed
 * with; each complete frame goes through every response decoder, and rows
 * through every getter and collection iterator. Nothing may crash, leak or
 * read out of bounds.
 *
 * With clang and -fsanitize=fuzzer this is a libFuzzer target; linked with
 * replay-main.c it replays fuzz/corpus/cql as an ordinary test under gcc.
 * Built with CQL_FUZZ_SEEDS it is instead "cql-fuzz-seeds DIR", which
 * writes the seed corpus from the frames the unit tests use.
 */
#include "cql-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void walk_result(struct cql_result *r)
{
	const void *state;
	size_t len;

	(void)cql_result_paging_state(r, &state, &len);
	(void)cql_result_applied(r);
	cql_result_rewind(r);
	while (cql_result_next_row(r)) {
		for (unsigned c = 0; c < cql_result_column_count(r); c++) {
			struct cql_collection coll;
			struct cql_slice s;
			int32_t i;
			int64_t b;
			bool f;
			uint8_t u[16];
			(void)cql_result_column_name(r, c);
			(void)cql_result_get_int(r, c, &i);
			(void)cql_result_get_bigint(r, c, &b);
			(void)cql_result_get_timestamp(r, c, &b);
			(void)cql_result_get_bool(r, c, &f);
			(void)cql_result_get_uuid(r, c, u);
			(void)cql_result_get_text(r, c, &s);
			(void)cql_result_get_blob(r, c, &s);
			if (cql_result_get_collection(r, c, &coll) > 0) {
				while (cql_collection_next(&coll, &s) > 0) {
					(void)cql_collection_type(&coll);
					(void)cql_decode_int(s, &i);
					(void)cql_decode_uuid(s, u);
				}
			}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cql_frame_parser parser;

	if (size == 0)
		return 0;
	size_t step = (size_t)data[0] + 1;
	data++;
	size--;
	cql_frame_parser_init(&parser, 1 << 20);
	for (size_t pos = 0; pos < size; ) {
		struct cql_frame f;
		const char *error;
		size_t used, chunk = size - pos < step ? size - pos : step;
		int ret = cql_frame_parser_feed(&parser, data + pos, chunk, &used, &f, &error);
		pos += used;
		if (ret < 0)
			break;
		if (ret == 0)
			continue;
		struct cql_event ev;
		struct cql_error err;
		struct cql_result *r;
		struct cql_rd rd;
		char versions[32];
		(void)cql_event_decode(&f, &ev);
		(void)cql_supported_decode(&f, versions, sizeof(versions));
		if (cql_frame_message(&f, &rd) == 0)
			(void)cql_error_decode(rd.p, cql_rd_left(&rd), &err);
		if (cql_response_decode(&f, &r, &err) == 0) {
			walk_result(r);
			cql_result_free(&r);
		}
		cql_frame_free(&f);
	}
	cql_frame_parser_deinit(&parser);
	return 0;
}

#ifdef CQL_FUZZ_SEEDS
#include "../tests/cql/cql-test-frames.h"

static void write_seed(const char *dir, const char *name, uint8_t step,
		       const struct cql_buf *b)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *fp = fopen(path, "wb");
	if (fp == NULL) {
		perror(path);
		exit(1);
	}
	fputc(step, fp);
	fwrite(b->data, 1, b->len, fp);
	fclose(fp);
}

static void write_seeds(const char *dir)
{
	static const int32_t codes[] = { 0x0000, 0x1000, 0x1100, 0x1200, 0x1300, 0x1400,
					 0x1500, 0x2000, 0x2400, 0x2500 };
	struct cql_buf b = { 0 };
	char name[64];

	tf_typed_rows(&b, 1, true);
	write_seed(dir, "rows-paging", 255, &b);
	write_seed(dir, "rows-paging-split7", 6, &b);
	b.len = 0;
	tf_typed_rows(&b, 1, false);
	tf_prepared(&b, 2);
	tf_event(&b, "STATUS_CHANGE", "UP");
	write_seed(dir, "rows-prepared-event", 100, &b);
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		b.len = 0;
		tf_error(&b, 3, codes[i], "message");
		snprintf(name, sizeof(name), "error-%04x", (unsigned)codes[i]);
		write_seed(dir, name, 255, &b);
	}
	const char *targets[] = { "KEYSPACE", "TABLE", "FUNCTION" };
	for (int i = 0; i < 3; i++) {
		b.len = 0;
		tf_schema_change(&b, 4, targets[i]);
		snprintf(name, sizeof(name), "schema-%s", targets[i]);
		write_seed(dir, name, 255, &b);
	}
	b.len = 0;
	tf_typed_rows(&b, 1, true);
	b.len -= 10;
	write_seed(dir, "rows-truncated", 255, &b);
	cql_buf_free(&b);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: cql-fuzz-seeds DIR\n");
		return 2;
	}
	write_seeds(argv[1]);
	return 0;
}
#endif
