/*
 * outbox.h
 *		Outboxes: rows the database hands out through three functions, sent
 *		by a sender, then marked sent or failed.
 */
#ifndef WORKER_OUTBOX_H
#define WORKER_OUTBOX_H

#include <stddef.h>

#include <jansson.h>

#include "db.h"
#include "plugin.h"
#include "step.h"

/* The strings point into the configuration's document (config.h). */
struct outbox
{
	const char *name;			/* for logs; first, as in struct consumer */
	const char *claim;			/* "schema.function", checked */
	const char *sent;
	const char *failed;
	const char *listen;			/* the NOTIFY channel that wakes it, or NULL */
	const char *backlog_query;	/* for the status page: (backlog, oldest_seconds), or NULL */
	int			batch_size;
	struct plugin sender;
};

/*
 * Loads the outbox at key path where from obj into out, a zeroed struct
 * outbox (void *: config.c loads consumers and outboxes alike).  Returns 0,
 * or -1 with a message naming the key in err; plugin_close(&sender) cleans
 * up either way.  (outbox_config.c)
 */
int			outbox_load(json_t *obj, const char *where, void *out,
						char *err, size_t errlen);

/*
 * One claim and its messages (outbox.c).  STEP_WORKED when the claim came
 * back full and something was sent: there may be more at once; STEP_IDLE
 * when fewer rows were due or every message failed; STEP_ERROR when a
 * statement failed (the rows not yet reported come back when their lease
 * runs out); STEP_LOST when the connection is gone.
 */
enum step_result outbox_step(struct db *db, const struct outbox *o,
							 struct run_stats *stats);

#endif
