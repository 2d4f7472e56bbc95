/*-------------------------------------------------------------------------
 *
 * dispatcher.c
 *		The dispatcher background workers: in-database consumers, and
 *		coalesced NOTIFYs for listeners.
 *
 * Registered when the library is preloaded: eventstore.workers of them
 * (backend_type "eventstore dispatcher"), all connected to the database
 * named by eventstore.database.  Each waits on its latch, which committing
 * appenders set (notify.c), with eventstore.poll_interval as the fallback.
 *
 * Every worker runs the in-database consumers: one batch per consumer per
 * transaction, round after round while any of them made progress.  A worker
 * that finds a consumer's row locked skips it (another worker has it), so
 * no two workers ever run the same consumer; worker i starts its rounds at
 * the i-th consumer so that they spread out.  An error that escapes a
 * consumer (its handler was dropped, say) is logged and recorded in the
 * consumer's row, which backs off; the other consumers go on.  When there
 * is no in-database consumer at all, commits do not trigger rounds; the
 * fallback poll looks for new consumers.
 *
 * Worker 0 also sends one NOTIFY eventstore, '<topic>' per topic with new
 * events, at most once per eventstore.notify_interval, so that a burst of
 * commits costs one NOTIFY per topic per interval; and, while there are
 * consumers, it summarizes the BRIN index on events.xid every second; and
 * every eventstore.retention_interval it removes expired events
 * (retention.c).
 *
 * The workers commit asynchronously.  A consumer's effects and its
 * checkpoint commit together, so a crash that loses the last commits loses
 * both, and the batch is simply run again.  A notification is a hint, not
 * data.  And any transaction that observed those commits and made its own
 * durable wrote its commit record after theirs, flushing them too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "eventstore.h"

/* Topics one round can notify; more wait for the next round. */
#define MAX_TOPICS_PER_ROUND 256

/* How long a consumer whose run failed outside its handler waits. */
#define CONSUMER_ERROR_BACKOFF "10 seconds"

/* How often worker 0 summarizes the BRIN index on events.xid. */
#define SUMMARIZE_INTERVAL_MS 1000

PGDLLEXPORT void eventstore_dispatcher_main(Datum arg);

void
dispatcher_register(void)
{
	BackgroundWorker worker;

	if (!process_shared_preload_libraries_in_progress)
		return;

	for (int i = 0; i < eventstore_workers; i++)
	{
		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 1;
		worker.bgw_main_arg = Int32GetDatum(i);
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "eventstore");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "eventstore_dispatcher_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "eventstore dispatcher %d", i);
		snprintf(worker.bgw_type, BGW_MAXLEN, "eventstore dispatcher");
		RegisterBackgroundWorker(&worker);
	}
}

static void
send_notifications(char (*topics)[NAMEDATALEN], int n)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "NOTIFY eventstore");
	for (int i = 0; i < n; i++)
		Async_Notify(EVENTSTORE_CHANNEL, topics[i]);
	CommitTransactionCommand();
}

static void
process_config_reload(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

static void
begin_transaction(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
commit_transaction(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * Whether the extension is installed in this database, in a transaction of
 * its own.  Asked after an error: a DROP EXTENSION that commits while a
 * worker lists or runs consumers makes the worker's queries fail ("relation
 * eventstore.consumers does not exist"), and that is no failure of its own.
 */
static bool
extension_installed(void)
{
	bool		found;

	begin_transaction("eventstore: looking for the extension");
	found = OidIsValid(get_extension_oid("eventstore", true));
	commit_transaction();
	return found;
}

/*
 * The in-database consumers to run, or NIL when the extension is absent
 * (or was dropped meanwhile); see consumers_due() for *any and *next_retry.
 * Any other error ends the worker, which the postmaster starts again.
 */
static List *
list_consumers(MemoryContext cxt, bool *any, TimestampTz *next_retry)
{
	MemoryContext caller = CurrentMemoryContext;
	List	   *volatile names = NIL;

	*any = false;
	*next_retry = 0;
	PG_TRY();
	{
		begin_transaction("eventstore: listing consumers");
		if (OidIsValid(get_extension_oid("eventstore", true)))
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			names = consumers_due(any, next_retry);
			MemoryContextSwitchTo(old);
		}
		commit_transaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		if (extension_installed())
			ReThrowError(edata);
		FreeErrorData(edata);
		names = NIL;
		*any = false;
		*next_retry = 0;
	}
	PG_END_TRY();
	return names;
}

/*
 * After an error that escaped a consumer's run: record it in the
 * consumer's row and make the consumer wait before its next run.  Returns
 * false when the consumer no longer exists (dropped since the round listed
 * it, which is what the error was about then).
 */
static bool
record_consumer_error(const char *name, const char *message)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(name), CStringGetTextDatum(message)};
	bool		found;

	begin_transaction("eventstore: recording a consumer error");
	SPI_connect();
	found = SPI_execute_with_args("UPDATE eventstore.consumers"
								  "   SET last_error = $2,"
								  "       retry_at = pg_catalog.now() OPERATOR(pg_catalog.+) interval '" CONSUMER_ERROR_BACKOFF "'"
								  " WHERE name OPERATOR(pg_catalog.=) $1",
								  2, argtypes, values, NULL, false, 0) == SPI_OK_UPDATE &&
		SPI_processed > 0;
	SPI_finish();
	commit_transaction();
	return found;
}

/* One batch of one consumer in its own transaction; events taken. */
static int64
run_one_batch(const char *name)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *activity = psprintf("eventstore: running consumer %s", name);
	int64		n = 0;

	PG_TRY();
	{
		begin_transaction(activity);
		n = consumer_run(name, 0);
		commit_transaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		/*
		 * A consumer dropped since the round began, or the whole extension,
		 * is no failure.
		 */
		if (extension_installed() && record_consumer_error(name, edata->message))
			ereport(LOG,
					(errmsg("eventstore consumer \"%s\" failed: %s", name, edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	pfree(activity);
	return n;
}

/*
 * Summarizes the block ranges of eventstore.events appended since the last
 * time.  Consumers find a window's events through the BRIN index on xid,
 * and a range that is not summarized yet matches every search, so without
 * this every window would read all events since autovacuum last came by.
 * Skipped, not waited for, when something else holds the lock.
 */
static void
summarize_new_events(void)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		begin_transaction("eventstore: summarizing new events");
		SPI_connect();
		SPI_execute("SET LOCAL lock_timeout = 100", false, 0);
		SPI_execute("SELECT pg_catalog.brin_summarize_new_values("
					"'eventstore.events_xid'::pg_catalog.regclass)", false, 0);
		SPI_finish();
		commit_transaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
}

/*
 * One round: a batch of every due consumer, starting at the worker's own
 * offset.  Returns whether any consumer took events; *any tells whether
 * there is an in-database consumer at all, *next_retry when the first one
 * that is backing off is due.
 */
static bool
run_consumers(int worker, MemoryContext round_cxt, bool *any,
			  TimestampTz *next_retry)
{
	List	   *names;
	int			n;
	bool		progress = false;

	MemoryContextReset(round_cxt);
	names = list_consumers(round_cxt, any, next_retry);
	n = list_length(names);
	for (int k = 0; k < n; k++)
	{
		const char *name = list_nth(names, (k + worker) % n);

		CHECK_FOR_INTERRUPTS();
		if (run_one_batch(name) > 0)
			progress = true;
	}
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return progress;
}

/* Milliseconds until a time, at least 1. */
static long
wait_until(TimestampTz when)
{
	return Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), when), 1);
}

/*
 * Worker 0: one NOTIFY per flagged topic, unless the last ones went out
 * less than notify_interval ago (*next_notify); flags raised meanwhile wait.
 */
static void
notify_due_topics(char (*topics)[NAMEDATALEN], TimestampTz *next_notify)
{
	TimestampTz now = GetCurrentTimestamp();
	int			n;

	if (now < *next_notify)
		return;
	n = notify_dispatcher_collect(topics, MAX_TOPICS_PER_ROUND);
	if (n == 0)
		return;
	send_notifications(topics, n);
	*next_notify = TimestampTzPlusMilliseconds(now, eventstore_notify_interval);
}

void
eventstore_dispatcher_main(Datum arg)
{
	int			worker = DatumGetInt32(arg);
	char		(*topics)[NAMEDATALEN];
	MemoryContext round_cxt;
	TimestampTz next_notify = 0;
	TimestampTz next_summary = 0;
	RetentionState retention = {0};
	TimestampTz next_poll = 0;
	TimestampTz next_retry = 0;
	bool		work = true;	/* run a round first */
	bool		have_consumers = true;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(eventstore_database, NULL, 0);
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", MyBgworkerEntry->bgw_name, PGC_USERSET, PGC_S_SESSION);
	topics = palloc(MAX_TOPICS_PER_ROUND * NAMEDATALEN);
	round_cxt = AllocSetContextCreate(TopMemoryContext, "eventstore dispatcher round",
									  ALLOCSET_DEFAULT_SIZES);
	notify_worker_attach(worker);
	elog(LOG, "eventstore dispatcher %d started in database \"%s\"",
		 worker, eventstore_database);

	for (;;)
	{
		long		timeout = eventstore_poll_interval;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		process_config_reload();

		if (worker == 0)
		{
			notify_due_topics(topics, &next_notify);
			if (next_notify > GetCurrentTimestamp())
				timeout = Min(timeout, wait_until(next_notify));
		}

		/*
		 * A round when woken by a commit that appended (every worker's
		 * latch is set), at every fallback poll, and when a consumer's
		 * retry is due.  With no in-database consumer at all, the work flag
		 * is left up, so that commits find it raised and do not wake the
		 * workers: appends then cost them nothing.
		 */
		if (notify_worker_consumers_changed())
			have_consumers = true;
		if (have_consumers && notify_worker_take_work())
			work = true;
		if (worker == 0 && have_consumers &&
			GetCurrentTimestamp() >= next_summary)
		{
			summarize_new_events();
			next_summary = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   SUMMARIZE_INTERVAL_MS);
		}
		if (worker == 0 && eventstore_retention_interval_ms > 0)
		{
			timeout = Min(timeout, wait_until(retention_purge_due(&retention)));
		}
		if (work)
		{
			next_poll = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													eventstore_poll_interval);
			work = run_consumers(worker, round_cxt, &have_consumers, &next_retry);
			if (work)
				continue;		/* more may be waiting */
		}
		timeout = Min(timeout, wait_until(next_poll));
		if (next_retry != 0)
			timeout = Min(timeout, wait_until(next_retry));
		if ((WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   timeout, PG_WAIT_EXTENSION) & WL_LATCH_SET) && have_consumers)
			work = true;
		if (GetCurrentTimestamp() >= next_poll ||
			(next_retry != 0 && GetCurrentTimestamp() >= next_retry))
			work = true;
	}
}
