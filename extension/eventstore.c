/*-------------------------------------------------------------------------
 *
 * eventstore.c
 *		Module entry point: the GUCs, and the start-up of each module.
 *
 * The library works loaded on demand (CREATE EXTENSION, then any call) and
 * preloaded through shared_preload_libraries; only the latter gets shared
 * memory, the dispatcher's launcher and its workers in every database
 * served, which make listener notifications cheap and run in-database
 * consumers (see commit_hook.c, notify.c and dispatcher_launcher.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

#include "eventstore.h"

PG_MODULE_MAGIC;

int			eventstore_max_event_bytes = 1024 * 1024;
int			eventstore_notify_interval = 10;
char	   *eventstore_database = NULL;
char	   *eventstore_databases = NULL;
int			eventstore_workers = 1;
int			eventstore_max_topic_slots = 1024;
int			eventstore_poll_interval = 1000;
int			eventstore_batch_delay = 5;
int			eventstore_lease_timeout_ms = 30 * 1000;
int			eventstore_retry_delay_ms = 1000;
int			eventstore_retention_interval_ms = 3600 * 1000;

/* eventstore.databases: a list of names, '*' among them or not. */
static bool
check_databases(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval);
	List	   *names = NIL;
	bool		ok = SplitGUCList(raw, ',', &names);

	if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	list_free(names);
	pfree(raw);
	return ok;
}

static void
define_gucs(void)
{
	DefineCustomIntVariable("eventstore.max_event_bytes",
							"Largest event envelope that can be appended.",
							"Measured as the size of the jsonb value.",
							&eventstore_max_event_bytes,
							1024 * 1024, 64, MaxAllocSize / 2,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventstore.notify_interval",
							"Shortest time between two NOTIFYs of one topic by the dispatcher.",
							NULL,
							&eventstore_notify_interval,
							10, 0, 60 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomStringVariable("eventstore.databases",
							   "Databases the dispatcher serves: a comma-separated list of names, or * for every database with the extension.",
							   "Appends in other databases notify listeners with a NOTIFY per transaction.",
							   &eventstore_databases,
							   "*",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   check_databases, NULL, NULL);
	DefineCustomStringVariable("eventstore.database",
							   "Old name of eventstore.databases for one database; wins when set.",
							   NULL,
							   &eventstore_database,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	/*
	 * The dispatcher's sizes take effect at server start only, and
	 * PostgreSQL refuses to define such settings in a library loaded later
	 * (CREATE EXTENSION or LOAD without shared_preload_libraries): the
	 * dispatcher does not run then anyway.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomIntVariable("eventstore.workers",
								"Number of dispatcher background workers per database, running in-database consumers.",
								"No two workers ever run the same consumer at once.",
								&eventstore_workers,
								1, 1, MAX_DISPATCHER_WORKERS,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
		DefineCustomIntVariable("eventstore.max_topic_slots",
								"Number of (database, topic) pairs whose notifications the dispatcher sends.",
								"Appends to further topics notify listeners with a NOTIFY per transaction.",
								&eventstore_max_topic_slots,
								1024, 0, 1024 * 1024,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
		DefineCustomIntVariable("eventstore.stats_max",
								"Number of (database, topic) pairs eventstore.stats keeps counters for.",
								"Further topics are counted in their database's row without a topic.",
								&eventstore_stats_max,
								1000, 16, 1024 * 1024,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
	}
	DefineCustomIntVariable("eventstore.poll_interval",
							"Longest time the dispatcher workers sleep before looking for consumer work.",
							"Commits that append wake them sooner; this is the fallback.",
							&eventstore_poll_interval,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventstore.batch_delay",
							"How long a dispatcher worker waits for a fuller batch while appends keep coming.",
							"After a round that found several events but filled no batch; 0 runs rounds back to back.",
							&eventstore_batch_delay,
							5, 0, 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventstore.lease_timeout",
							"How long a batch polled by an outside consumer stays leased to it.",
							"An unacked batch is delivered again after this time.",
							&eventstore_lease_timeout_ms,
							30 * 1000, 1, PG_INT32_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventstore.retry_delay",
							"Wait before the second attempt at an event a consumer failed.",
							"Doubled for each further failure, up to one hour.",
							&eventstore_retry_delay_ms,
							1000, 0, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("eventstore.track_stats",
							 "Counts appends, notifications, dispatcher rounds and handler calls in eventstore.stats.",
							 NULL,
							 &eventstore_track_stats,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("eventstore.retention_interval",
							"How often the dispatcher removes events older than their topic's retention.",
							"0 turns the automatic removal off; eventstore.purge_expired() still works.",
							&eventstore_retention_interval_ms,
							3600 * 1000, 0, PG_INT32_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("eventstore");
}

void
_PG_init(void)
{
	define_gucs();
	shmem_init();
	commit_hook_init();
	dispatcher_utility_init();
	dispatcher_register();
}
