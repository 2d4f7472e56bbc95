/*
 * outbox.h
 *		Outboxes: rows the database hands out through three functions, sent
 *		by a message handler, then marked sent or failed.
 */
#ifndef WORKER_OUTBOX_H
#define WORKER_OUTBOX_H

#include <stddef.h>

#include <jansson.h>

#include "db.h"
#include "message.h"
#include "step.h"

struct outbox
{
	char	   *name;			/* for logs */
	char	   *claim;			/* "schema.function", checked */
	char	   *sent;
	char	   *failed;
	char	   *listen;			/* the NOTIFY channel that wakes it, or NULL */
	int			batch_size;
	struct message_handler handler;
};

/*
 * Loads outboxes[index] from obj into *out (zeroed by the caller).  Returns
 * 0, or -1 with a message naming the key in err; outbox_free cleans up
 * either way.  (outbox_config.c)
 */
int			outbox_load(json_t *obj, size_t index, struct outbox *out,
						char *err, size_t errlen);
void		outbox_free(struct outbox *o);

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
