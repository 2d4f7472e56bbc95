/*-------------------------------------------------------------------------
 *
 * eventstore.c
 *		Module entry point: the GUCs, and the start-up of each module.
 *
 * The library works loaded on demand (CREATE EXTENSION, then any call) and
 * preloaded through shared_preload_libraries; only the latter gets shared
 * memory and the dispatcher background worker, which make listener
 * notifications cheap (see notify.c).
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
	DefineCustomStringVariable("eventstore.database",
							   "Database the dispatcher background worker connects to.",
							   "Appends in other databases notify listeners with a NOTIFY per transaction.",
							   &eventstore_database,
							   "postgres",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	MarkGUCPrefixReserved("eventstore");
}

void
_PG_init(void)
{
	define_gucs();
	notify_init();
	dispatcher_register();
}
