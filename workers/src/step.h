/*
 * step.h
 *		What one unit of work in a drain reports, and the run's counters.
 *
 * A drain (loop.c) gives every consumer and every due outbox one step at a
 * time, round robin: a consumer's step is a run_consumer call or one batch
 * (consumer_step.c), an outbox's step is one claim and its messages
 * (outbox.c).
 */
#ifndef WORKER_STEP_H
#define WORKER_STEP_H

#include "db.h"

enum step_result
{
	STEP_IDLE,					/* nothing was pending */
	STEP_WORKED,				/* work was done: there may be more */
	STEP_NACKED,				/* a handler failed: leave it until the next wake-up */
	STEP_ERROR,					/* a query failed; the connection is fine */
	STEP_LOST					/* the connection is gone */
};

/* Counters over a whole run, reported at exit. */
struct run_stats
{
	long long	events_ok;		/* events a handler or run_consumer finished */
	long long	events_failed;	/* outside events whose handler failed */
	long long	batches_acked;
	long long	batches_nacked;
	long long	messages_sent;	/* outbox messages sent */
	long long	messages_failed;	/* outbox messages reported failed */
	long long	query_errors;
};

/*
 * What a step makes of a query that failed with status: STEP_LOST when the
 * connection is gone (the caller logs the loss once), else STEP_ERROR,
 * logged as "<kind>=<name> <what> failed: <error>" and counted.  (step.c)
 */
enum step_result step_query_failed(enum db_status status, const struct db *db,
								   const char *kind, const char *name,
								   const char *what, struct run_stats *stats);

#endif
