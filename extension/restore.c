/*-------------------------------------------------------------------------
 *
 * restore.c
 *		A logically restored store made to mean the same in its new cluster
 *		(sql/eventstore/80_restore.sql, README "Backups and restore").
 *
 * Restored events carry the transaction ids of the cluster they were
 * appended in, and consumers' progress is snapshots of that cluster.
 * Before the first append, batch or change of a consumer in a backend,
 * restore_check() asks eventstore.rebase_if_restored() whether this
 * database holds a restored dump not rebased yet, which then rebases it in
 * this transaction.  Once it finds the store settled, the backend does not
 * ask again: appends and batches pay nothing after.  Installations older
 * than 1.4 have no such function and are never asked.  A write to
 * dumped_installation (a restore's COPY that does not run in one
 * transaction, say) invalidates its relcache entry, and the backend asks
 * again.
 *
 * Also the two small functions the rebase and the restore need:
 * in_extension_script() and subtransaction_id().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/xid8.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_in_extension_script);
PG_FUNCTION_INFO_V1(eventstore_subtransaction_id);
PG_FUNCTION_INFO_V1(eventstore_installation_changed);

static bool restore_settled = false;
static Oid	dumped_relid = InvalidOid;	/* eventstore.dumped_installation */
static bool callback_registered = false;

static void
restore_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == dumped_relid)
		restore_settled = false;
}

/*
 * Rebases a restored store before this backend appends or delivers
 * anything.  Must be called inside SPI, as the extension's owner.
 */
void
restore_check(void)
{
	bool		isnull;
	Datum		d;

	if (restore_settled)
		return;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(restore_invalidate, (Datum) 0);
		callback_registered = true;
	}
	if (SPI_execute("SELECT pg_catalog.to_regclass('eventstore.dumped_installation')::pg_catalog.oid",
					true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not look up eventstore.dumped_installation")));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	SPI_freetuptable(SPI_tuptable);
	if (isnull)
	{
		restore_settled = true;		/* before 1.4 */
		return;
	}
	dumped_relid = DatumGetObjectId(d);
	if (SPI_execute("SELECT eventstore.rebase_if_restored()", false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("eventstore.rebase_if_restored() returned no row")));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	SPI_freetuptable(SPI_tuptable);
	if (!isnull && DatumGetBool(d))
		restore_settled = true;
}

/*
 * The trigger on dumped_installation: a change of it makes every backend
 * check again (restore_invalidate), at the commit of this transaction.
 */
Datum
eventstore_installation_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("installation_changed() must be called as a trigger")));
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}

/* Whether an extension's install or update script is running. */
Datum
eventstore_in_extension_script(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(creating_extension);
}

/* The current subtransaction's id (assigned now if it has none). */
Datum
eventstore_subtransaction_id(PG_FUNCTION_ARGS)
{
	PG_RETURN_FULLTRANSACTIONID(GetCurrentFullTransactionId());
}
