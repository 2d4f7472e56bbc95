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
 * snapshot would hold back vacuum and every consumer's window).  At most
 * PURGE_BATCHES_PER_PASS batches run per pass: when more remain, the next
 * pass comes at once, after the worker has sent its notifications and run
 * its consumers.  A failure (say, the extension being dropped) is logged
 * and retried at the next interval.
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
#define PURGE_BATCHES_PER_PASS 10

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
	/* Nothing to do where the extension is not installed. */
	if (SPI_execute("SELECT FROM pg_catalog.pg_extension WHERE extname = 'eventstore'",
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
 * Runs the purge when eventstore.retention_interval has passed since
 * *last_purge (0: at once), and returns when it is due next.  The interval
 * is read every time, so that a reload applies to the pass in progress.
 */
TimestampTz
retention_purge_due(TimestampTz *last_purge)
{
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz now = GetCurrentTimestamp();
	int64		removed = 0;
	bool		more = false;

	if (now < TimestampTzPlusMilliseconds(*last_purge, eventstore_retention_interval_ms))
		return TimestampTzPlusMilliseconds(*last_purge, eventstore_retention_interval_ms);
	PG_TRY();
	{
		for (int i = 0; i < PURGE_BATCHES_PER_PASS; i++)
		{
			int64		n;

			CHECK_FOR_INTERRUPTS();
			n = purge_one_batch();
			removed += n;
			more = (n == PURGE_BATCH);
			if (!more)
				break;
		}
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
		more = false;
	}
	PG_END_TRY();
	if (removed > 0)
		ereport(DEBUG1,
				(errmsg_internal("eventstore: removed " INT64_FORMAT " expired events", removed)));
	/* With expired events left, the next pass comes at once. */
	*last_purge = more ? 0 : now;
	return TimestampTzPlusMilliseconds(*last_purge, eventstore_retention_interval_ms);
}
