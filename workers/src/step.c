/*
 * step.c
 *		What a consumer's or an outbox's step makes of a failed query.
 */
#include <string.h>

#include "log.h"
#include "step.h"

enum step_result
step_query_failed(enum db_status status, const struct db *db, const char *kind,
				  const char *name, const char *what, struct run_stats *stats)
{
	if (status == DB_LOST)
		return STEP_LOST;
	log_error_f(LOG_FIELDS(.consumer = strcmp(kind, "consumer") == 0 ? name : NULL,
						   .outbox = strcmp(kind, "outbox") == 0 ? name : NULL,
						   .error = db->error), "%s failed", what);
	stats->query_errors++;
	return STEP_ERROR;
}
