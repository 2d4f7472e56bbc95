/*-------------------------------------------------------------------------
 *
 * retention.c
 *		Removing events older than their topic's retention, on a schedule:
 *		the "retention" task of dispatcher worker 0 (dispatcher_tasks.c).
 *
 * Every eventstore.retention_interval the task removes the expired events
 * with eventstore.purge_batch() (sql/eventstore/45_retention.sql), and the
 * expired rows of the cleanups other extensions registered (birdwatch's
 * sent emails and skips), PURGE_BATCH rows
 * per transaction, so that no transaction holds many row locks or an old
 * snapshot for long (appends are never blocked by a DELETE, and a long
 * snapshot would hold back vacuum and every consumer's window).  While
 * expired events remain, one batch runs every PURGE_PAUSE_MS: a batch
 * writes much WAL (full-page images of every page it touches), and
 * running them back to back took half the throughput of concurrent
 * appends on two cores (bench/RESULTS.md).  A failure ends the pass (the
 * task runner logs it); the next pass starts at the next interval.
 *
 * The schedule's state is this process's own: only worker 0 runs the task.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "pgstat.h"
#include "utils/timestamp.h"

#include "eventstore.h"

#define PURGE_BATCH 10000
#define PURGE_PAUSE_MS 100

static TimestampTz pass_start = 0;	/* when the last pass began (0: never) */
static TimestampTz last_batch = 0;	/* when its last batch ended */
static bool more = false;		/* expired events remain: the pass goes on */

/* One batch in a transaction of its own; the number of events removed. */
static int64
purge_one_batch(void)
{
	int64		removed = 0;
	bool		isnull;

	dispatcher_begin_transaction("eventstore: removing expired events");
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
	dispatcher_commit_transaction();
	pgstat_report_activity(STATE_IDLE, NULL);
	return removed;
}

/*
 * The "retention" task's schedule: PURGE_PAUSE_MS after the last batch
 * while expired events remain, else eventstore.retention_interval after
 * the last pass began (read every time, so that a reload applies at once);
 * never while the interval is 0.
 */
TimestampTz
retention_task_due(void)
{
	if (eventstore_retention_interval_ms <= 0)
		return DT_NOEND;
	return more ? TimestampTzPlusMilliseconds(last_batch, PURGE_PAUSE_MS)
		: TimestampTzPlusMilliseconds(pass_start, eventstore_retention_interval_ms);
}

/* The "retention" task: one purge batch, starting a pass if none is on. */
void
retention_task_run(TimestampTz now)
{
	int64		removed;

	if (!more)
		pass_start = now;
	more = false;				/* what a failure leaves: the pass ends */
	removed = purge_one_batch();
	more = (removed >= PURGE_BATCH);	/* a stream's excess may come at once */
	if (removed > 0)
		ereport(DEBUG1,
				(errmsg_internal("eventstore: removed " INT64_FORMAT " expired events and rows", removed)));
	last_batch = GetCurrentTimestamp();
}
