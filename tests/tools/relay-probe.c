/*
 * relay-probe: drives src/lib-relay from the command line, for the
 * outbound-delivery tests (tests/integration/test_relay.py). Not installed.
 *
 *   relay-probe [--resolver H:P] [--port N] [--tls none|may|verify|dane]
 *               [--ca FILE] [--ta FILE] [--smarthost H:P --user U --pass P]
 *               [--helo NAME] [--connect-timeout MS] [--command-timeout MS]
 *               [--data-timeout MS] [--max-mx N] [--messages N] [--parallel N]
 *               SENDER DOMAIN RCPT... < message
 *
 * Delivers the message on stdin (CRLF line ends expected; LF alone is made
 * CRLF) to every RCPT, --messages times over one delivery, and prints one
 * line per recipient and message, "ADDRESS RESULT CODE STATUS REPLY"
 * (RESULT: ok, tempfail, permfail), then "mx: ", "addr: ", "tls: " and
 * "error: " lines of the report. --parallel N makes N such deliveries at
 * once, one per thread through one relay, and prints each in turn. Exits 0 unless the arguments are wrong
 * (64) or the relay cannot be made (78).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "relay.h"

#define MESSAGE_MAX (64 * 1024 * 1024)

static int read_message(void *ctx, uint64_t offset, size_t max, struct buf *out)
{
	const struct buf *msg = ctx;

	if (offset >= msg->len)
		return 0;
	if (max > msg->len - offset)
		max = (size_t)(msg->len - offset);
	return buf_append(out, msg->data + offset, max);
}

struct job {
	struct relay *relay;
	const char *domain;
	struct relay_message *msgs;
	unsigned int count;
	struct relay_report report;
};

static void *run_job(void *ctx)
{
	struct job *job = ctx;

	relay_deliver(job->relay, job->domain, job->msgs, job->count, &job->report);
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: relay-probe [options] SENDER DOMAIN RCPT... < message\n");
	exit(64);
}

static const char *result_name(enum relay_result r)
{
	switch (r) {
	case RELAY_OK: return "ok";
	case RELAY_TEMPFAIL: return "tempfail";
	case RELAY_PERMFAIL: return "permfail";
	case RELAY_PENDING: break;
	}
	return "pending";
}

int main(int argc, char **argv)
{
	struct relay_settings set = { .helo_name = "probe.test", .tls = RELAY_TLS_MAY };
	struct job *jobs;
	pthread_t *threads;
	struct relay *relay;
	struct buf msg;
	const char *error;
	unsigned int messages = 1, parallel = 1, rcpt_count;
	int i, c, prev = 0;

	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (val == NULL)
			usage();
		if (strcmp(opt, "--resolver") == 0) set.resolver = val;
		else if (strcmp(opt, "--port") == 0) set.port = (unsigned int)atoi(val);
		else if (strcmp(opt, "--ca") == 0) set.ca_file = val;
		else if (strcmp(opt, "--ta") == 0) set.trust_anchor_file = val;
		else if (strcmp(opt, "--smarthost") == 0) set.smarthost = val;
		else if (strcmp(opt, "--user") == 0) set.username = val;
		else if (strcmp(opt, "--pass") == 0) set.password = val;
		else if (strcmp(opt, "--helo") == 0) set.helo_name = val;
		else if (strcmp(opt, "--connect-timeout") == 0) set.connect_timeout_ms = (unsigned int)atoi(val);
		else if (strcmp(opt, "--command-timeout") == 0) set.command_timeout_ms = (unsigned int)atoi(val);
		else if (strcmp(opt, "--data-timeout") == 0) set.data_timeout_ms = (unsigned int)atoi(val);
		else if (strcmp(opt, "--max-mx") == 0) set.max_mx = (unsigned int)atoi(val);
		else if (strcmp(opt, "--messages") == 0) messages = (unsigned int)atoi(val);
		else if (strcmp(opt, "--parallel") == 0) parallel = (unsigned int)atoi(val);
		else if (strcmp(opt, "--tls") == 0) {
			if (strcmp(val, "none") == 0) set.tls = RELAY_TLS_NONE;
			else if (strcmp(val, "may") == 0) set.tls = RELAY_TLS_MAY;
			else if (strcmp(val, "verify") == 0) set.tls = RELAY_TLS_VERIFY;
			else if (strcmp(val, "dane") == 0) set.tls = RELAY_TLS_DANE;
			else usage();
		} else usage();
	}
	if (argc - i < 3 || messages == 0 || parallel == 0 || parallel > 64)
		usage();
	rcpt_count = (unsigned int)(argc - i - 2);

	buf_init(&msg, MESSAGE_MAX);
	while ((c = getchar()) != EOF) {
		if (c == '\n' && prev != '\r' && buf_append_c(&msg, '\r') < 0)
			usage();
		if (buf_append_c(&msg, (char)c) < 0)
			usage();
		prev = c;
	}

	signal(SIGPIPE, SIG_IGN);
	relay = relay_create(&set, &error);
	if (relay == NULL) {
		fprintf(stderr, "relay-probe: %s\n", error);
		return 78;
	}
	jobs = xcalloc(parallel, sizeof(*jobs));
	threads = xcalloc(parallel, sizeof(*threads));
	for (unsigned int j = 0; j < parallel; j++) {
		struct relay_message *msgs = xcalloc(messages, sizeof(*msgs));

		for (unsigned int m = 0; m < messages; m++) {
			msgs[m].sender = argv[i];
			msgs[m].rcpts = xcalloc(rcpt_count, sizeof(struct relay_rcpt));
			msgs[m].rcpt_count = rcpt_count;
			for (unsigned int r = 0; r < rcpt_count; r++)
				msgs[m].rcpts[r].address = argv[i + 2 + (int)r];
			msgs[m].size = msg.len;
			msgs[m].read = read_message;
			msgs[m].ctx = &msg;
		}
		jobs[j] = (struct job){ .relay = relay, .domain = argv[i + 1], .msgs = msgs,
					.count = messages };
		if (pthread_create(&threads[j], NULL, run_job, &jobs[j]) != 0) {
			fprintf(stderr, "relay-probe: cannot start a thread\n");
			return 71;
		}
	}
	for (unsigned int j = 0; j < parallel; j++) {
		const struct relay_report *report = &jobs[j].report;

		pthread_join(threads[j], NULL);
		for (unsigned int m = 0; m < messages; m++) {
			for (unsigned int r = 0; r < rcpt_count; r++) {
				const struct relay_rcpt *rc = &jobs[j].msgs[m].rcpts[r];

				printf("%s %s %d %s %s\n", rc->address, result_name(rc->result),
				       rc->code, rc->status[0] != '\0' ? rc->status : "-", rc->reply);
			}
			free(jobs[j].msgs[m].rcpts);
		}
		printf("mx: %s\naddr: %s\ntls: %s\nerror: %s\n", report->mx, report->addr,
		       report->tls, report->error);
		free(jobs[j].msgs);
	}
	free(jobs);
	free(threads);
	relay_destroy(&relay);
	buf_deinit(&msg);
	return 0;
}
