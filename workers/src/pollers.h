/*
 * pollers.h
 *		The pollers of consumers with "members" N > 1: N threads per
 *		consumer, each with its own connection, polling side by side.
 */
#ifndef WORKER_POLLERS_H
#define WORKER_POLLERS_H

#include "config.h"
#include "step.h"

/*
 * Starts the pollers of every consumer of config with "members" above 1,
 * unless they run already (0: then nothing is done).  All or none: when a
 * thread cannot be made, those started are stopped again, and -1 is
 * returned after logging why.  config must outlive them (until
 * pollers_join).  once: each poller connects once, drains its consumer
 * until idle and ends, as the loop does with --once.
 */
int			pollers_start(const struct config *config, int once);

/* 1 while pollers started by pollers_start run (or have ended unjoined). */
int			pollers_running(void);

/*
 * Waits for every poller to end, adding their counters into stats, and
 * empties the pollers' pipe for the next ones.  They end by themselves
 * after a stop or reload request (after the batch in hand), or, with
 * once, when their consumer is drained: call it after one of these.
 * Returns 1 when a poller of a --once run could not do its work (no
 * connection, a lost one, a failed statement), else 0.
 */
int			pollers_join(struct run_stats *stats);

#endif
