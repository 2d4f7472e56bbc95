/*-------------------------------------------------------------------------
 *
 * summarize.c
 *		Keeping the BRIN index on events.xid summarized: the "summarize"
 *		task of dispatcher worker 0 (dispatcher_tasks.c).
 *
 * Consumers find a window's events through the BRIN index on xid, and a
 * block range that is not summarized yet matches every search, so without
 * this every window would read all events since autovacuum last came by.
 * While there are in-database consumers, the task summarizes the ranges
 * appended since the last time, at most every SUMMARIZE_INTERVAL_MS.  It
 * does not wake the worker for that: it runs on the first pass after it is
 * due, and passes come with every consumer round (commits, poll_interval).
 * Skipped, not waited for, when something else holds the lock (a
 * lock_timeout of 100 ms); any other error is the task runner's to log.
 *
 * The schedule's state is this process's own: only worker 0 runs the task.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/elog.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "eventstore.h"

#define SUMMARIZE_INTERVAL_MS 1000

static TimestampTz next_summary = 0;

/* The "summarize" task's schedule. */
TimestampTz
summarize_task_due(void)
{
	return next_summary;
}

/* The "summarize" task: brin_summarize_new_values() with a short lock_timeout. */
void
summarize_task_run(TimestampTz now)
{
	MemoryContext cxt = CurrentMemoryContext;
	ErrorData  *volatile failure = NULL;

	PG_TRY();
	{
		dispatcher_begin_transaction("eventstore: summarizing new events");
		SPI_connect();
		SPI_execute("SET LOCAL lock_timeout = 100", false, 0);
		SPI_execute("SELECT pg_catalog.brin_summarize_new_values("
					"'eventstore.events_xid'::pg_catalog.regclass)", false, 0);
		SPI_finish();
		dispatcher_commit_transaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata = dispatcher_catch_error(cxt);

		if (edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
			FreeErrorData(edata);
		else
			failure = edata;
	}
	PG_END_TRY();
	next_summary = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											   SUMMARIZE_INTERVAL_MS);
	if (failure)
		ReThrowError(failure);
}
