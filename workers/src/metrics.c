/*
 * metrics.c
 *		The daemon's counters, gauges and histogram, and their Prometheus
 *		text exposition (format 0.0.4).
 *
 *   eventstore_worker_up                         gauge, always 1
 *   eventstore_worker_connected                  gauge, 1 while the database connection is up
 *   eventstore_worker_start_time_seconds         gauge, the process's start (Unix time)
 *   eventstore_worker_reconnects_total           connections made after the first one
 *   eventstore_worker_consumer_batches_total     {consumer, result="acked"|"nacked"}
 *   eventstore_worker_handler_failures_total     {consumer}
 *   eventstore_worker_events_handled_total       {consumer}
 *   eventstore_worker_messages_claimed_total     {outbox}
 *   eventstore_worker_messages_sent_total        {outbox}
 *   eventstore_worker_messages_failed_total      {outbox}
 *   eventstore_worker_messages_refused_total     {outbox}
 *   eventstore_worker_batch_duration_seconds     histogram {kind="consumer"|"outbox", name}
 *
 * A claimed message ends up in exactly one of sent, failed and refused,
 * unless the daemon stops in the middle of its batch (it is then left to its
 * lease) or its row has no id: claimed = sent + failed + refused + those.
 * Refused means that retrying the same row cannot help: the sender would
 * not make the message (SEND_REFUSED: a recipient with a line break, text
 * that is not UTF-8) or the server refused the recipient or the message
 * with a permanent reply (SEND_REJECTED: SMTP 550 to 554).  Failed is every
 * other failure (the server down, a timeout, TLS, other replies).
 *
 * The loop's thread and the pollers' (pollers.c, a consumer with "members"
 * above 1) count, the loop's renders: every function takes one mutex.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"

static const double bucket_bounds[] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
};

#define N_BUCKETS (sizeof(bucket_bounds) / sizeof(bucket_bounds[0]))

struct series
{
	enum metrics_kind kind;
	char	   *name;
	long long	acked;			/* consumers */
	long long	nacked;
	long long	handler_failures;
	long long	events_handled;
	long long	claimed;		/* outboxes */
	long long	sent;
	long long	failed;
	long long	refused;
	long long	bucket[N_BUCKETS];	/* observations <= each bound (not yet cumulative) */
	long long	count;
	double		sum;
};

static struct series *all;
static size_t n_all;
static size_t cap_all;
static double start_time;
static int	connected;
static long long reconnects;
static int	ever_connected;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

double
metrics_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

void
metrics_init(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	start_time = (double) ts.tv_sec + (double) (ts.tv_nsec / 1000000) / 1e3;
}

void
metrics_free(void)
{
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < n_all; i++)
		free(all[i].name);
	free(all);
	all = NULL;
	n_all = cap_all = 0;
	pthread_mutex_unlock(&lock);
}

/*
 * The series of kind and name, made on first use; NULL when out of memory.
 * Under the lock, as is what the caller does with it.
 */
static struct series *
find(enum metrics_kind kind, const char *name)
{
	struct series *s;

	for (size_t i = 0; i < n_all; i++)
		if (all[i].kind == kind && strcmp(all[i].name, name) == 0)
			return &all[i];
	if (n_all == cap_all)
	{
		size_t		cap = cap_all > 0 ? cap_all * 2 : 8;
		struct series *grown = realloc(all, cap * sizeof(*all));

		if (grown == NULL)
			return NULL;
		all = grown;
		cap_all = cap;
	}
	s = &all[n_all];
	memset(s, 0, sizeof(*s));
	s->kind = kind;
	s->name = strdup(name);
	if (s->name == NULL)
		return NULL;
	n_all++;
	return s;
}

void
metrics_register(enum metrics_kind kind, const char *name)
{
	pthread_mutex_lock(&lock);
	(void) find(kind, name);
	pthread_mutex_unlock(&lock);
}

void
metrics_connected(int up)
{
	pthread_mutex_lock(&lock);
	if (up && ever_connected)
		reconnects++;
	if (up)
		ever_connected = 1;
	connected = up;
	pthread_mutex_unlock(&lock);
}

void
metrics_consumer_batch(const char *consumer, int acked)
{
	struct series *s;

	pthread_mutex_lock(&lock);
	s = find(METRICS_CONSUMER, consumer);
	if (s != NULL && acked)
		s->acked++;
	else if (s != NULL)
		s->nacked++;
	pthread_mutex_unlock(&lock);
}

void
metrics_events_handled(const char *consumer, long long n)
{
	struct series *s;

	pthread_mutex_lock(&lock);
	s = find(METRICS_CONSUMER, consumer);
	if (s != NULL)
		s->events_handled += n;
	pthread_mutex_unlock(&lock);
}

void
metrics_handler_failure(const char *consumer)
{
	struct series *s;

	pthread_mutex_lock(&lock);
	s = find(METRICS_CONSUMER, consumer);
	if (s != NULL)
		s->handler_failures++;
	pthread_mutex_unlock(&lock);
}

void
metrics_claimed(const char *outbox, int n)
{
	struct series *s;

	pthread_mutex_lock(&lock);
	s = find(METRICS_OUTBOX, outbox);
	if (s != NULL)
		s->claimed += n;
	pthread_mutex_unlock(&lock);
}

void
metrics_message(const char *outbox, enum metrics_message what)
{
	struct series *s;

	pthread_mutex_lock(&lock);
	s = find(METRICS_OUTBOX, outbox);
	if (s != NULL && what == METRICS_SENT)
		s->sent++;
	else if (s != NULL && what == METRICS_FAILED)
		s->failed++;
	else if (s != NULL)
		s->refused++;
	pthread_mutex_unlock(&lock);
}

void
metrics_batch_duration(enum metrics_kind kind, const char *name, double seconds)
{
	struct series *s;

	if (seconds < 0)
		seconds = 0;
	pthread_mutex_lock(&lock);
	s = find(kind, name);
	if (s != NULL)
	{
		for (size_t i = 0; i < N_BUCKETS; i++)
			if (seconds <= bucket_bounds[i])
			{
				s->bucket[i]++;
				break;
			}
		s->count++;
		s->sum += seconds;
	}
	pthread_mutex_unlock(&lock);
}

/* A label value: \ " and newline escaped, as the format wants. */
static void
label_value(FILE *out, const char *value)
{
	for (const char *p = value; *p != '\0'; p++)
	{
		if (*p == '\\')
			fputs("\\\\", out);
		else if (*p == '"')
			fputs("\\\"", out);
		else if (*p == '\n')
			fputs("\\n", out);
		else
			fputc(*p, out);
	}
}

static void
header(FILE *out, const char *name, const char *type, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{key="<series name>"[,extra]} value, for each series of kind */
static void
samples(FILE *out, const char *name, enum metrics_kind kind, const char *key,
		const char *extra, size_t offset)
{
	for (size_t i = 0; i < n_all; i++)
	{
		if (all[i].kind != kind)
			continue;
		fprintf(out, "%s{%s=\"", name, key);
		label_value(out, all[i].name);
		fprintf(out, "\"%s} %lld\n", extra, *(const long long *) ((const char *) &all[i] + offset));
	}
}

static void
counter(FILE *out, const char *name, const char *help, enum metrics_kind kind,
		const char *key, size_t offset)
{
	header(out, name, "counter", help);
	samples(out, name, kind, key, "", offset);
}

static void
histogram(FILE *out)
{
	static const char *const name = "eventstore_worker_batch_duration_seconds";
	static const char *const kinds[] = {"consumer", "outbox"};

	header(out, name, "histogram", "How long a batch took: a consumer's poll to its ack "
		   "or nack, or its run_consumer call; an outbox's claim and its messages.");
	for (size_t i = 0; i < n_all; i++)
	{
		const struct series *s = &all[i];
		long long	cumulative = 0;

		for (size_t b = 0; b <= N_BUCKETS; b++)
		{
			fprintf(out, "%s_bucket{kind=\"%s\",name=\"", name, kinds[s->kind]);
			label_value(out, s->name);
			if (b < N_BUCKETS)
			{
				cumulative += s->bucket[b];
				fprintf(out, "\",le=\"%g\"} %lld\n", bucket_bounds[b], cumulative);
			}
			else
				fprintf(out, "\",le=\"+Inf\"} %lld\n", s->count);
		}
		fprintf(out, "%s_sum{kind=\"%s\",name=\"", name, kinds[s->kind]);
		label_value(out, s->name);
		fprintf(out, "\"} %.9g\n", s->sum);
		fprintf(out, "%s_count{kind=\"%s\",name=\"", name, kinds[s->kind]);
		label_value(out, s->name);
		fprintf(out, "\"} %lld\n", s->count);
	}
}

char *
metrics_render(size_t *len)
{
	char	   *text = NULL;
	FILE	   *out = open_memstream(&text, len);

	if (out == NULL)
		return NULL;
	pthread_mutex_lock(&lock);
	header(out, "eventstore_worker_up", "gauge", "1 while the daemon runs.");
	fputs("eventstore_worker_up 1\n", out);
	header(out, "eventstore_worker_connected", "gauge",
		   "1 while the daemon has its database connection, else 0.");
	fprintf(out, "eventstore_worker_connected %d\n", connected);
	header(out, "eventstore_worker_start_time_seconds", "gauge",
		   "When the daemon started, in seconds since the Unix epoch.");
	fprintf(out, "eventstore_worker_start_time_seconds %.3f\n", start_time);
	header(out, "eventstore_worker_reconnects_total", "counter",
		   "Database connections made after the first one.");
	fprintf(out, "eventstore_worker_reconnects_total %lld\n", reconnects);

	header(out, "eventstore_worker_consumer_batches_total", "counter",
		   "Consumer batches acked or nacked.");
	samples(out, "eventstore_worker_consumer_batches_total", METRICS_CONSUMER, "consumer",
			",result=\"acked\"", offsetof(struct series, acked));
	samples(out, "eventstore_worker_consumer_batches_total", METRICS_CONSUMER, "consumer",
			",result=\"nacked\"", offsetof(struct series, nacked));
	counter(out, "eventstore_worker_handler_failures_total",
			"Events whose handler failed (each nacks its batch).",
			METRICS_CONSUMER, "consumer", offsetof(struct series, handler_failures));
	counter(out, "eventstore_worker_events_handled_total",
			"Events a handler or run_consumer finished.",
			METRICS_CONSUMER, "consumer", offsetof(struct series, events_handled));
	counter(out, "eventstore_worker_messages_claimed_total", "Outbox messages claimed.",
			METRICS_OUTBOX, "outbox", offsetof(struct series, claimed));
	counter(out, "eventstore_worker_messages_sent_total", "Outbox messages sent.",
			METRICS_OUTBOX, "outbox", offsetof(struct series, sent));
	counter(out, "eventstore_worker_messages_failed_total",
			"Outbox messages that failed and may succeed later (reported failed).",
			METRICS_OUTBOX, "outbox", offsetof(struct series, failed));
	counter(out, "eventstore_worker_messages_refused_total",
			"Outbox messages refused for good: unusable rows, or a permanent SMTP "
			"reply 550-554 (reported failed).",
			METRICS_OUTBOX, "outbox", offsetof(struct series, refused));
	histogram(out);
	pthread_mutex_unlock(&lock);
	if (fclose(out) != 0)
	{
		free(text);
		return NULL;
	}
	return text;
}
