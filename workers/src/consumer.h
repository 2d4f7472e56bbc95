/*
 * consumer.h
 *		Driving one consumer one step: a run_consumer call or one batch.
 */
#ifndef WORKER_CONSUMER_H
#define WORKER_CONSUMER_H

#include "config.h"
#include "db.h"

enum step_result
{
	STEP_IDLE,					/* nothing was pending */
	STEP_WORKED,				/* events were handled: there may be more */
	STEP_NACKED,				/* a handler failed and the batch was nacked */
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
	long long	query_errors;
};

enum step_result consumer_step(struct db *db, const struct consumer *c,
							   int batch_size, struct run_stats *stats);

#endif
