/*
 * loop.h
 *		The daemon's event loop.
 */
#ifndef WORKER_LOOP_H
#define WORKER_LOOP_H

#include "config.h"

/*
 * Runs until a stop request (or, with once, until every consumer has been
 * drained once).  *config is replaced on SIGHUP reloads; the caller frees
 * the one it finds there at the end.  Returns the process exit status.
 */
int			loop_run(const char *config_path, struct config **config, int once);

#endif
