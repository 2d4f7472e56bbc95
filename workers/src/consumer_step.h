/*
 * consumer_step.h
 *		Driving one consumer one step: a run_consumer call or one batch.
 */
#ifndef WORKER_CONSUMER_STEP_H
#define WORKER_CONSUMER_STEP_H

#include "config.h"
#include "db.h"
#include "step.h"

enum step_result consumer_step(struct db *db, const struct consumer *c,
							   int batch_size, struct run_stats *stats);

#endif
