/*-------------------------------------------------------------------------
 *
 * retention.c
 *		Removing events older than their topic's retention, on a schedule.
 *
 * Dispatcher worker 0 calls retention_purge_due() on every pass of its
 * loop.  Every eventstore.retention_interval it removes the expired events
 * with eventstore.purge_batch() (sql/eventstore--*.sql), PURGE_BATCH events
 * per transaction, so that no transaction holds many row locks or an old
 * snapshot for long (appends are never blocked by a DELETE, and a long
 * snapshot would hold back vacuum and every consumer's window).  While
 * expired events remain, one batch runs every PURGE_PAUSE_MS: a batch
 * writes much WAL (full-page images of every page it touches), and
 * running them back to back took half the throughput of concurrent
 * appends on two cores (bench/RESULTS.md).  A failure (say, the extension
 * being dropped) is logged and retried at the next interval.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "eventstore.h"

#define PURGE_BATCH 10000
#define PURGE_PAUSE_MS 100

/* One batch in a transaction of its own; the number of events removed. */
static int64
purge_one_batch(void)
{
	int64		removed = 0;
	bool		isnull;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "eventstore: removing expired events");
	SPI_connect();
	/*
	 * Nothing to do where the extension is not installed.  The operator is
	 * qualified: the worker runs as the bootstrap superuser under the
	 * database's search_path, which its owner may set (ALTER DATABASE).
	 */
	if (SPI_execute("SELECT FROM pg_catalog.pg_extension"
					" WHERE extname OPERATOR(pg_catalog.=) 'eventstore'",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1 &&
		SPI_execute("SELECT eventstore.purge_batch(" CppAsString2(PURGE_BATCH) ")",
					false, 1) == SPI_OK_SELECT && SPI_processed == 1)
		removed = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return removed;
}

/*
 * Runs a purge batch when one is due, and returns when the next one is:
 * PURGE_PAUSE_MS after this one while expired events remain, else
 * eventstore.retention_interval after the pass began (read every time, so
 * that a reload applies at once).
 */
TimestampTz
retention_purge_due(RetentionState *state)
{
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz due;
	int64		removed = 0;

	due = state->more ? TimestampTzPlusMilliseconds(state->last_batch, PURGE_PAUSE_MS)
		: TimestampTzPlusMilliseconds(state->pass_start, eventstore_retention_interval_ms);
	if (now < due)
		return due;
	if (!state->more)
		state->pass_start = now;
	PG_TRY();
	{
		removed = purge_one_batch();
		state->more = (removed == PURGE_BATCH);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(LOG,
				(errmsg("eventstore: removing expired events failed: %s", edata->message)));
		FreeErrorData(edata);
		state->more = false;
	}
	PG_END_TRY();
	if (removed > 0)
		ereport(DEBUG1,
				(errmsg_internal("eventstore: removed " INT64_FORMAT " expired events", removed)));
	state->last_batch = GetCurrentTimestamp();
	return state->more ? TimestampTzPlusMilliseconds(state->last_batch, PURGE_PAUSE_MS)
		: TimestampTzPlusMilliseconds(state->pass_start, eventstore_retention_interval_ms);
}
