/*-------------------------------------------------------------------------
 *
 * eventstore.c
 *		Module entry point: the GUCs, and the start-up of each module.
 *
 * The library works loaded on demand (CREATE EXTENSION, then any call) and
 * preloaded through shared_preload_libraries; only the latter gets shared
 * memory and the dispatcher background worker, which make listener
 * notifications cheap (see commit_hook.c and notify.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "eventstore.h"

PG_MODULE_MAGIC;

int			eventstore_max_event_bytes = 1024 * 1024;
int			eventstore_notify_interval = 10;
char	   *eventstore_database = NULL;
int			eventstore_workers = 1;
int			eventstore_poll_interval = 1000;
int			eventstore_lease_timeout_ms = 30 * 1000;
int			eventstore_retry_delay_ms = 1000;
int			eventstore_retention_interval_ms = 3600 * 1000;

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
	/*
	 * The dispatcher's own settings take effect at server start only, and
	 * PostgreSQL refuses to define such settings in a library loaded later
	 * (CREATE EXTENSION or LOAD without shared_preload_libraries): the
	 * dispatcher does not run then anyway.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomStringVariable("eventstore.database",
								   "Database the dispatcher background worker connects to.",
								   "Appends in other databases notify listeners with a NOTIFY per transaction.",
								   &eventstore_database,
								   "postgres",
								   PGC_POSTMASTER, 0,
								   NULL, NULL, NULL);
		DefineCustomIntVariable("eventstore.workers",
								"Number of dispatcher background workers running in-database consumers.",
								"No two workers ever run the same consumer at once.",
								&eventstore_workers,
								1, 1, MAX_DISPATCHER_WORKERS,
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
	dispatcher_register();
}
