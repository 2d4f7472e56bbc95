/*-------------------------------------------------------------------------
 *
 * dispatcher_launcher.c
 *		The launcher: one background worker per cluster that starts the
 *		dispatcher workers of every database to serve, and starts them
 *		again when they die.
 *
 * Why a launcher (as TimescaleDB has) rather than a list of databases with
 * static workers (as pg_cron has, for its one database): static workers
 * are fixed at server start, so a database created later, or an extension
 * installed later, would need a restart; the launcher serves them within
 * moments, and so a second application database on a server gets dispatch
 * like the first.
 *
 * Registered when the library is preloaded (bgw_type "eventstore
 * launcher"), it connects to no database: it reads pg_database, a shared
 * catalog, and so holds up no DROP DATABASE or CREATE DATABASE ... TEMPLATE.
 * A pass of its loop:
 * 1. lists the databases to serve: eventstore.databases (PGC_SIGHUP) names
 *    them, or is '*' (the default): every database that allows connections
 *    and is no template (a template's connections would make CREATE
 *    DATABASE from it fail).  eventstore.database, the setting's old
 *    one-database name, wins when set.  Databases held by a statement
 *    (DROP DATABASE, dispatcher_utility.c) are left out meanwhile;
 * 2. gives each a registry entry (dispatcher_shmem.c) and starts
 *    eventstore.workers dynamic background workers in it (dispatcher.c),
 *    with this process as their bgw_notify_pid, so that the postmaster
 *    wakes the launcher when one starts or stops; a worker that stopped
 *    with an error (or was killed) is started again a second later, one
 *    that left quietly (status 0) is not;
 * 3. stops the workers of databases no longer to serve, and frees their
 *    entries once they have all exited;
 * 4. waits for its latch or LAUNCHER_INTERVAL_MS.
 *
 * Under '*', a database without the extension is found out by its workers
 * (they connect, look, mark the entry absent and leave); the launcher then
 * frees the entry and tries again only after LAUNCHER_INTERVAL_MS, or at
 * once when asked (dispatcher_request_launcher(): a committed CREATE
 * DATABASE or CREATE EXTENSION eventstore, or a consumer created in a
 * database nobody serves).  So a database without the extension costs one
 * short connection per interval, and nothing is logged for it.
 *
 * Dynamic workers count against max_worker_processes, shared with parallel
 * query and logical replication: when none is free, the launcher logs it
 * once and tries again at the next interval.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
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
#include "utils/varlena.h"
#include "utils/wait_event.h"

#include "eventstore.h"

PGDLLEXPORT void eventstore_launcher_main(Datum arg);

/* How often the launcher looks again without being asked. */
#define LAUNCHER_INTERVAL_MS 10000

/* Wait before starting again a worker that failed. */
#define RESTART_DELAY_MS 1000

/* A database to serve, as listed in a pass. */
typedef struct Wanted
{
	Oid			dboid;
	bool		discover;		/* found by '*': leave if no extension */
} Wanted;

/* The launcher's own view of a registry entry. */
typedef struct Served
{
	bool		discover;
	BackgroundWorkerHandle *handles[MAX_DISPATCHER_WORKERS];
	TimestampTz restart_at[MAX_DISPATCHER_WORKERS];
	bool		stopping;		/* its workers were told to stop */
} Served;

/* A database found without the extension, and when to look again. */
typedef struct Absent
{
	Oid			dboid;
	TimestampTz recheck_at;
} Absent;

static Served *served;			/* [dispatcher_max_databases()] */
static Absent *absent;			/* likewise */
static int	nabsent = 0;
static bool no_slot_logged = false;
static uint32 generation;		/* this launcher's, given to its workers */

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
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "eventstore_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "eventstore launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "eventstore launcher");
	RegisterBackgroundWorker(&worker);
}

/* The setting in effect: eventstore.database when set, else databases. */
static const char *
databases_setting(void)
{
	if (eventstore_database != NULL && eventstore_database[0] != '\0')
		return eventstore_database;
	return eventstore_databases != NULL ? eventstore_databases : "";
}

/* Whether a database name is listed; *all: the list holds '*'. */
static bool
listed(List *names, const char *name, bool *all)
{
	ListCell   *lc;
	bool		found = false;

	*all = false;
	foreach(lc, names)
	{
		const char *n = lfirst(lc);

		if (strcmp(n, "*") == 0)
			*all = true;
		else if (strcmp(n, name) == 0)
			found = true;
	}
	return found;
}

static bool
is_absent(Oid dboid, TimestampTz now)
{
	for (int i = 0; i < nabsent; i++)
	{
		if (absent[i].dboid == dboid)
			return absent[i].recheck_at > now;
	}
	return false;
}

static void
mark_absent(Oid dboid, TimestampTz now)
{
	int			i;

	for (i = 0; i < nabsent && absent[i].dboid != dboid; i++)
		;
	if (i == nabsent)
	{
		if (nabsent == dispatcher_max_databases())
			return;
		nabsent++;
	}
	absent[i].dboid = dboid;
	absent[i].recheck_at = TimestampTzPlusMilliseconds(now, LAUNCHER_INTERVAL_MS);
}

/* The databases to serve now, from pg_database and the setting. */
static Wanted *
list_wanted(int *n, TimestampTz now)
{
	char	   *raw = pstrdup(databases_setting());
	List	   *names = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	Wanted	   *wanted;
	int			max = dispatcher_max_databases();

	*n = 0;
	wanted = palloc(sizeof(Wanted) * max);
	if (!SplitGUCList(raw, ',', &names))
		return wanted;			/* refused by the check hook already */

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "eventstore: listing databases");
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL && *n < max)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		bool		all;
		bool		named = listed(names, NameStr(db->datname), &all);

		if (!db->datallowconn || database_is_invalid_form(db))
			continue;
		if (!named && (!all || db->datistemplate))
			continue;
		if (dispatcher_database_held(db->oid))
			continue;
		if (!named && is_absent(db->oid, now))
			continue;
		wanted[*n].dboid = db->oid;
		wanted[*n].discover = !named;
		(*n)++;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return wanted;
}

static bool
start_worker(int entry, int worker, Oid dboid, bool discover)
{
	BackgroundWorker bgw;
	DispatcherWorkerArgs args;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	bgw.bgw_main_arg = Int32GetDatum(entry * MAX_DISPATCHER_WORKERS + worker);
	bgw.bgw_notify_pid = MyProcPid;
	memset(&args, 0, sizeof(args));
	args.dboid = dboid;
	args.discover = discover;
	args.generation = generation;
	memcpy(bgw.bgw_extra, &args, sizeof(args));
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "eventstore");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "eventstore_dispatcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "eventstore dispatcher %d", worker);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "eventstore dispatcher");
	if (!RegisterDynamicBackgroundWorker(&bgw, &served[entry].handles[worker]))
	{
		if (!no_slot_logged)
			ereport(LOG,
					(errmsg("eventstore launcher cannot start a dispatcher worker for database %u", dboid),
					 errhint("Raise max_worker_processes.")));
		no_slot_logged = true;
		served[entry].handles[worker] = NULL;
		return false;
	}
	no_slot_logged = false;
	return true;
}

/* Whether a worker's process is gone (or was never started). */
static bool
worker_gone(BackgroundWorkerHandle *h)
{
	pid_t		pid;

	return h == NULL || GetBackgroundWorkerPid(h, &pid) == BGWH_STOPPED;
}

/*
 * One entry's workers: start the missing ones that are due, or, when
 * stopping, tell them to go and free the entry once they are all gone.
 * Returns when the launcher should look again (DT_NOEND: no hurry).
 */
static TimestampTz
tend_entry(int entry, TimestampTz now)
{
	Served	   *s = &served[entry];
	Oid			dboid = dispatcher_entry_database(entry);
	TimestampTz next = DT_NOEND;
	bool		all_gone = true;

	if (dispatcher_entry_absent(entry))
		s->stopping = true;
	for (int w = 0; w < MAX_DISPATCHER_WORKERS; w++)
	{
		BackgroundWorkerHandle *h = s->handles[w];

		if (h == NULL && (w >= eventstore_workers || s->stopping))
			continue;
		if (!worker_gone(h))
		{
			all_gone = false;
			if (s->stopping || w >= eventstore_workers)
				TerminateBackgroundWorker(h);
			continue;
		}
		if (h != NULL)
		{
			pfree(h);
			s->handles[w] = NULL;
			s->restart_at[w] = TimestampTzPlusMilliseconds(now, RESTART_DELAY_MS);
		}
		if (s->stopping || w >= eventstore_workers)
			continue;
		if (s->restart_at[w] > now)
		{
			next = Min(next, s->restart_at[w]);
			continue;
		}
		if (start_worker(entry, w, dboid, s->discover))
			all_gone = false;
		else
			next = Min(next, TimestampTzPlusMilliseconds(now, LAUNCHER_INTERVAL_MS));
	}
	if (s->stopping && all_gone)
	{
		if (dispatcher_entry_absent(entry))
			mark_absent(dboid, now);
		dispatcher_free_entry(entry);
	}
	return next;
}

/*
 * One pass.  GetBackgroundWorkerPid cannot tell a worker that failed from
 * one that left on purpose, so workers that leave say why where the
 * launcher looks: the entry is marked absent, or the database is held;
 * either stops the entry.  Any other worker that is gone is started again
 * after RESTART_DELAY_MS.
 */
static TimestampTz
launcher_pass(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz next = TimestampTzPlusMilliseconds(now, LAUNCHER_INTERVAL_MS);
	int			max = dispatcher_max_databases();
	int			nwanted;
	Wanted	   *wanted = list_wanted(&nwanted, now);

	/* stop what is no longer wanted */
	for (int e = 0; e < max; e++)
	{
		Oid			dboid = dispatcher_entry_database(e);
		bool		keep = false;

		if (!OidIsValid(dboid))
			continue;
		for (int i = 0; i < nwanted && !keep; i++)
			keep = wanted[i].dboid == dboid;
		if (!keep)
			served[e].stopping = true;
	}
	/* claim entries for new ones */
	for (int i = 0; i < nwanted; i++)
	{
		bool		have = false;
		int			e;

		for (e = 0; e < max && !have; e++)
			have = dispatcher_entry_database(e) == wanted[i].dboid;
		if (have)
			continue;
		e = dispatcher_claim_entry(wanted[i].dboid);
		if (e < 0)
			break;
		memset(&served[e], 0, sizeof(Served));
		served[e].discover = wanted[i].discover;
	}
	for (int e = 0; e < max; e++)
	{
		if (OidIsValid(dispatcher_entry_database(e)))
			next = Min(next, tend_entry(e, now));
	}
	pfree(wanted);
	return next;
}

void
eventstore_launcher_main(Datum arg)
{
	int			max;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	generation = dispatcher_launcher_attach();
	max = dispatcher_max_databases();
	served = MemoryContextAllocZero(TopMemoryContext, sizeof(Served) * max);
	absent = MemoryContextAllocZero(TopMemoryContext, sizeof(Absent) * max);

	/*
	 * Workers of an earlier launcher (one that failed, not a crash, which
	 * resets shared memory) have no handle here: they see the new
	 * generation and leave, and their entries are freed once they have.
	 */
	for (int e = 0; e < max; e++)
	{
		Oid			dboid = dispatcher_entry_database(e);

		if (!OidIsValid(dboid))
			continue;
		dispatcher_wake_database(dboid);
		for (int i = 0; i < 1000 && dispatcher_database_has_workers(dboid); i++)
		{
			CHECK_FOR_INTERRUPTS();
			pg_usleep(10000L);
		}
		dispatcher_free_entry(e);
	}
	elog(LOG, "eventstore launcher started");

	for (;;)
	{
		TimestampTz next;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (dispatcher_take_launcher_request())
			nabsent = 0;		/* look at every database again */
		next = launcher_pass();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next), 1),
						 PG_WAIT_EXTENSION);
	}
}
