/*
 * status.h
 *		The status page at / (HTML), and the consumers' lag samples it draws.
 */
#ifndef WORKER_STATUS_H
#define WORKER_STATUS_H

#include <stddef.h>

#include "db.h"

struct config;

/*
 * The page (malloc'd, *len bytes), or NULL when out of memory.  Runs its
 * queries on db (between steps); a query that fails shows a note in its
 * section.
 */
char	   *status_render(struct db *db, const struct config *config, size_t *len);

/* Milliseconds until the next lag sample is due (0: now). */
int			status_sample_wait_ms(void);

/*
 * Samples every consumer's lag_events from consumer_status into the
 * ring of the last hour (on db, between steps); the next one is due 15 s
 * later, whether this one worked or not.
 */
void		status_sample(struct db *db);

#endif
