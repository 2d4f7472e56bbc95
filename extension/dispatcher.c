/*-------------------------------------------------------------------------
 *
 * dispatcher.c
 *		The dispatcher background workers: registration, their main loop,
 *		and the transactions they run their jobs in.
 *
 Started by the launcher (dispatcher_launcher.c): eventstore.workers of
 * them (bgw_type "eventstore dispatcher") in each database it serves, told
 * the database, their registry entry and their number.  Each announces
 * itself in its database's entry of the registry (dispatcher_shmem.c) and
 * waits on its latch, which committing appenders in that database set
 * (commit_hook.c), with eventstore.poll_interval as the fallback.
 *
 * A worker exits quietly (status 0, so the launcher does not start it
 * again soon) when a statement holds its database (DROP DATABASE,
 * dispatcher_utility.c), and, in a database it serves because every
 * database is served ('*'), when the extension is not installed there:
 * at start, or after a round found it gone (DROP EXTENSION).  A database
 * named in eventstore.databases keeps its workers without the extension,
 * waiting for it, as the one database of earlier releases did.
 *
 * A pass of the loop:
 * 1. reset the latch, handle SIGTERM (die(): the worker exits at the next
 *    CHECK_FOR_INTERRUPTS; DROP DATABASE WITH (FORCE) sends it) and SIGHUP
 *    (reload the configuration); leave if the database is held;
 * 2. worker 0 only: run its due periodic tasks (dispatcher_tasks.c:
 *    sending NOTIFYs, summarizing the BRIN index, removing expired events);
 * 3. every worker: a round of in-database consumers (dispatcher_rounds.c)
 *    when commits asked for one, at every poll_interval, and when a
 *    consumer's retry is due; round after round while they make progress;
 * 4. wait for the latch, the poll, a consumer's retry or worker 0's
 *    earliest task, whichever comes first.
 *
 * Errors: a task's failure is logged and the worker goes on
 * (dispatcher_tasks.c), so is a consumer's (dispatcher_rounds.c); one in
 * listing the consumers ends the worker, which the launcher starts again
 * a second later, unless the extension was dropped meanwhile.
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
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "storage/ipc.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "eventstore.h"

PGDLLEXPORT void eventstore_dispatcher_main(Datum arg);

/* Starts a transaction with a snapshot, showing activity in pg_stat_activity. */
void
dispatcher_begin_transaction(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
dispatcher_commit_transaction(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * In a PG_CATCH: takes the error (copied into cxt, the context the PG_TRY
 * began in) and aborts the transaction, so that the worker can go on.
 */
ErrorData *
dispatcher_catch_error(MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	return edata;
}

/*
 * Whether the extension is installed in this database, in a transaction of
 * its own.  Asked after an error: a DROP EXTENSION that commits while a
 * worker lists or runs consumers, or runs a task, makes the worker's
 * queries fail ("relation eventstore.consumers does not exist"), and that
 * is no failure of its own.
 */
bool
dispatcher_extension_installed(void)
{
	bool		found;

	dispatcher_begin_transaction("eventstore: looking for the extension");
	found = OidIsValid(get_extension_oid("eventstore", true));
	dispatcher_commit_transaction();
	return found;
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

/* Milliseconds until a time, at least 1. */
static long
wait_until(TimestampTz when)
{
	return Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), when), 1);
}

/*
 * A round that took at least this many events, and filled no batch, is
 * followed by gather(): events came in faster than rounds ran.
 */
#define GATHER_MIN_EVENTS 4

/*
 * Waits eventstore.batch_delay for the next round, whatever wakes the
 * latch: the last round found several events (GATHER_MIN_EVENTS) that
 * committed while the one before ran, and filled no batch, so appends keep
 * coming faster than rounds run.  Each batch costs a transaction, a
 * snapshot and a checkpoint of its own, and taken as soon as a commit wakes
 * the worker, batches of a few events spend most of the dispatcher's time
 * (and the appenders' CPU) on that.  Waiting a moment lets a fuller batch
 * gather, as a group commit does.  At a lower rate rounds find an event or
 * two and the worker never waits: its latency stays that of a wake-up.
 */
static void
gather(void)
{
	if (eventstore_batch_delay <= 0)
		return;
	(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, eventstore_batch_delay,
					 PG_WAIT_EXTENSION);
	CHECK_FOR_INTERRUPTS();
}

/* Leaves quietly: the launcher sees status 0 and does not restart it soon. */
static void
leave(const char *why)
{
	elog(DEBUG1, "eventstore dispatcher leaves database %u: %s", MyDatabaseId, why);
	proc_exit(0);
}

void
eventstore_dispatcher_main(Datum arg)
{
	int			entry = DatumGetInt32(arg) / MAX_DISPATCHER_WORKERS;
	int			worker = DatumGetInt32(arg) % MAX_DISPATCHER_WORKERS;
	DispatcherWorkerArgs args;
	MemoryContext round_cxt;
	TimestampTz next_poll = 0;
	TimestampTz next_retry = 0;
	bool		work = true;	/* run a round first */
	bool		have_consumers = true;
	bool		installed = true;
	char	   *dbname;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	if (dispatcher_database_held(args.dboid))
		leave("held for a statement");
	if (!dispatcher_launcher_is(args.generation))
		leave("its launcher is gone");
	BackgroundWorkerInitializeConnectionByOid(args.dboid, InvalidOid, 0);
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", MyBgworkerEntry->bgw_name, PGC_USERSET, PGC_S_SESSION);
	round_cxt = AllocSetContextCreate(TopMemoryContext, "eventstore dispatcher round",
									  ALLOCSET_DEFAULT_SIZES);
	if (!dispatcher_worker_attach(entry, worker))
		leave("its registry entry went to another database");
	if (args.discover && !dispatcher_extension_installed())
	{
		dispatcher_worker_found_absent();
		leave("the extension is not installed");
	}
	dispatcher_begin_transaction("eventstore: starting");
	dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	dispatcher_commit_transaction();
	elog(LOG, "eventstore dispatcher %d started in database \"%s\"", worker, dbname);

	for (;;)
	{
		long		timeout = eventstore_poll_interval;
		TimestampTz task_due = DT_NOEND;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		process_config_reload();
		if (dispatcher_database_held(MyDatabaseId))
			leave("held for a statement");
		if (!dispatcher_launcher_is(args.generation))
			leave("its launcher is gone");

		/*
		 * A round when woken by a commit that appended (every worker's
		 * latch is set), at every fallback poll, and when a consumer's
		 * retry is due.  With no in-database consumer at all, the work flag
		 * is left up, so that commits find it raised and do not wake the
		 * workers: appends then cost them nothing.
		 */
		if (dispatcher_take_consumers_changed(worker))
			have_consumers = work = true;	/* a new consumer may have work */
		if (have_consumers && dispatcher_take_consumer_work())
			work = true;
		if (worker == 0)
			task_due = dispatcher_run_due_tasks(have_consumers);
		if (work)
		{
			bool		full;
			int64		taken;

			next_poll = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													eventstore_poll_interval);
			taken = dispatcher_run_consumers(worker, round_cxt, &have_consumers,
											 &next_retry, &installed, &full);
			if (!installed && args.discover)
			{
				dispatcher_worker_found_absent();
				leave("the extension was dropped");
			}
			work = taken > 0;
			if (work)
			{
				/* more may be waiting: at once, or in a moment (gather()) */
				if (!full && taken >= GATHER_MIN_EVENTS)
					gather();
				continue;
			}
		}
		if (task_due != DT_NOEND)
			timeout = Min(timeout, wait_until(task_due));
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
