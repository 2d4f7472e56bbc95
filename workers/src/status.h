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

#endif
