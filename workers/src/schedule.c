/*
 * schedule.c
 *		When each outbox is due to run.
 *
 * Consumers are drained at every turn of the loop; outboxes only when due,
 * so that an append on the eventstore channel does not cost every outbox a
 * claim.  An outbox is due after a connect or a reload (schedule_reset,
 * schedule_all_due: what was notified meanwhile is unknown), when a
 * notification arrives on its "listen" channel (schedule_notified, called
 * by db_wait), and at every poll tick: every poll_interval_ms, counted from
 * the previous tick and not from the last wake-up, so that a steady stream
 * of other notifications cannot postpone it (schedule_tick).  The drain
 * clears an outbox's flag when it runs its step, and sets it again when the
 * step says more may be waiting.
 */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "schedule.h"

int
schedule_reset(struct schedule *sc, const struct config *config)
{
	unsigned char *due = NULL;

	if (config->n_outboxes > 0)
	{
		due = malloc(config->n_outboxes);
		if (due == NULL)
			return -1;
		memset(due, 1, config->n_outboxes);
	}
	free(sc->due);
	sc->due = due;
	sc->config = config;
	sc->next_tick = monotonic_ms() + config->poll_interval_ms;
	return 0;
}

void
schedule_all_due(struct schedule *sc)
{
	if (sc->config->n_outboxes > 0)
		memset(sc->due, 1, sc->config->n_outboxes);
}

void
schedule_notified(void *arg, const char *channel)
{
	struct schedule *sc = arg;

	for (size_t i = 0; i < sc->config->n_outboxes; i++)
	{
		const char *listen = sc->config->outboxes[i].listen;

		if (listen != NULL && strcmp(listen, channel) == 0)
			sc->due[i] = 1;
	}
}

void
schedule_tick(struct schedule *sc)
{
	long long	now = monotonic_ms();

	if (now < sc->next_tick)
		return;
	schedule_all_due(sc);
	sc->next_tick = now + sc->config->poll_interval_ms;
}

int
schedule_wait_ms(const struct schedule *sc)
{
	long long	left = sc->next_tick - monotonic_ms();

	return left < 0 ? 0 : left > 86400000 ? 86400000 : (int) left;
}
