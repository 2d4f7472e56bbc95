/*
 * schedule.h
 *		When each outbox is due to run.
 */
#ifndef WORKER_SCHEDULE_H
#define WORKER_SCHEDULE_H

#include "config.h"

struct schedule
{
	const struct config *config;	/* whose outboxes due[] is about */
	unsigned char *due;			/* per outbox: run it at the next drain */
	long long	next_tick;		/* monotonic ms: every outbox is due then */
};

/*
 * For a new configuration: every outbox due, the next tick poll_interval_ms
 * away.  Returns 0, or -1 (out of memory) leaving *sc as it was.  Free
 * sc->due at the end.
 */
int			schedule_reset(struct schedule *sc, const struct config *config);

/* After a connect: every outbox is due. */
void		schedule_all_due(struct schedule *sc);

/* A struct db's on_notify (arg: the schedule): outboxes listening on channel are due. */
void		schedule_notified(void *arg, const char *channel);

/* If the tick has come: every outbox is due, and the next tick is set. */
void		schedule_tick(struct schedule *sc);

/* Milliseconds until the next tick (0 if it is past). */
int			schedule_wait_ms(const struct schedule *sc);

#endif
