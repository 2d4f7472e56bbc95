/*
 * metrics.h
 *		The daemon's counters, gauges and histogram, in one place, and their
 *		Prometheus text exposition (format 0.0.4) for /metrics.
 *
 * The loop, the consumers' and the outboxes' steps update them where the
 * work happens; the HTTP server renders them.  The pollers of a consumer
 * with "members" above 1 count from threads of their own (pollers.c): one
 * mutex guards everything.  Series are kept per consumer and per
 * outbox name for the life of the process (a reload that drops a consumer
 * keeps its counts; Prometheus counters only go up).
 */
#ifndef WORKER_METRICS_H
#define WORKER_METRICS_H

#include <stddef.h>

enum metrics_kind
{
	METRICS_CONSUMER,
	METRICS_OUTBOX
};

/* What became of one claimed outbox message. */
enum metrics_message
{
	METRICS_SENT,
	METRICS_FAILED,				/* may succeed later: the database retries it */
	METRICS_REFUSED				/* permanent: see metrics.c */
};

/* At start: the start time. */
void		metrics_init(void);

/* Frees every series (at exit). */
void		metrics_free(void);

/* A configured consumer or outbox: its series exist from now on, at 0. */
void		metrics_register(enum metrics_kind kind, const char *name);

/* The connection made (1: a reconnect when not the first) or lost (0). */
void		metrics_connected(int connected);

/* A consumer's batch, acked or nacked (an in_database consumer's run_consumer call that handled events: acked). */
void		metrics_consumer_batch(const char *consumer, int acked);

/* Events a consumer's handler (or run_consumer) finished; a handler that failed. */
void		metrics_events_handled(const char *consumer, long long n);
void		metrics_handler_failure(const char *consumer);

void		metrics_claimed(const char *outbox, int n);
void		metrics_message(const char *outbox, enum metrics_message what);

/* How long one batch (a poll to its ack or nack, a run_consumer call, a claim and its messages) took. */
void		metrics_batch_duration(enum metrics_kind kind, const char *name, double seconds);

/* The exposition text (malloc'd, *len bytes), or NULL when out of memory. */
char	   *metrics_render(size_t *len);

/* A monotonic clock in seconds, for durations. */
double		metrics_clock(void);

#endif
