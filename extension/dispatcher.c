/*-------------------------------------------------------------------------
 *
 * dispatcher.c
 *		The dispatcher background worker: coalesced NOTIFYs for listeners.
 *
 * Registered when the library is preloaded.  It connects to the database
 * named by eventstore.database, announces itself in shared memory (notify.c)
 * and then waits on its latch, which committing appenders set when a topic
 * gets its first new events since the last round.  Each round sends one
 * NOTIFY eventstore, '<topic>' per flagged topic, in one transaction, and
 * then sleeps eventstore.notify_interval so that a burst of commits costs
 * one NOTIFY per topic per interval.
 *
 * The NOTIFY transaction commits asynchronously: a notification is a hint
 * that new events exist, not data, and losing one in a crash loses nothing
 * (listeners read from their own position on reconnect).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "eventstore.h"

/* Topics one round can notify; more wait for the next round. */
#define MAX_TOPICS_PER_ROUND 256

/* How long to sleep when nothing happens, in ms; a latch wakes us sooner. */
#define IDLE_WAIT_MS 1000

PGDLLEXPORT void eventstore_dispatcher_main(Datum arg);

void
dispatcher_register(void)
{
	BackgroundWorker worker;

	if (!process_shared_preload_libraries_in_progress)
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "eventstore");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "eventstore_dispatcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "eventstore dispatcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "eventstore dispatcher");
	RegisterBackgroundWorker(&worker);
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
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
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

/*
 * Sleeps eventstore.notify_interval after a round, so that commits in the
 * meantime only raise flags and the next round sends one NOTIFY per topic.
 * The latch still wakes us (for signals), but an appender's wake-up just
 * sends us back to sleep until the interval is over.
 */
static void
coalesce(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   eventstore_notify_interval);

	for (;;)
	{
		long		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
																deadline);

		if (remaining <= 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 remaining, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		process_config_reload();
	}
}

void
eventstore_dispatcher_main(Datum arg)
{
	char		(*topics)[NAMEDATALEN];

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(eventstore_database, NULL, 0);
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	topics = palloc(MAX_TOPICS_PER_ROUND * NAMEDATALEN);
	notify_dispatcher_attach();
	elog(LOG, "eventstore dispatcher started in database \"%s\"", eventstore_database);

	for (;;)
	{
		int			n;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		process_config_reload();

		n = notify_dispatcher_collect(topics, MAX_TOPICS_PER_ROUND);
		if (n > 0)
		{
			send_notifications(topics, n);
			coalesce();
			continue;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 IDLE_WAIT_MS, PG_WAIT_EXTENSION);
	}
}
