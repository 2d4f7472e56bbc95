/*-------------------------------------------------------------------------
 *
 * restore.c
 *		A logically restored store made to mean the same in its new cluster
 *		(sql/eventstore/80_restore.sql, README "Backups and restore").
 *
 * Restored events carry the transaction ids of the cluster they were
 * appended in, and consumers' progress is snapshots of that cluster.
 * Before the first append or consumer call of a backend, restore_check()
 * asks eventstore.rebase_if_restored() whether this database holds a
 * restored dump not rebased yet, which then rebases it in this
 * transaction.  Once it finds the store settled, the backend does not ask
 * again: appends and batches pay nothing after.  Installations older than
 * 1.4 have no such function and are never asked.
 *
 * Also the two small functions the rebase and the restore need:
 * in_extension_script() and subtransaction_id().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/xid8.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_in_extension_script);
PG_FUNCTION_INFO_V1(eventstore_subtransaction_id);

static bool restore_settled = false;

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
	if (SPI_execute("SELECT pg_catalog.to_regprocedure('eventstore.rebase_if_restored()') IS NOT NULL",
					true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not look up eventstore.rebase_if_restored()");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	SPI_freetuptable(SPI_tuptable);
	if (!DatumGetBool(d))
	{
		restore_settled = true;		/* before 1.4 */
		return;
	}
	if (SPI_execute("SELECT eventstore.rebase_if_restored()", false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "eventstore.rebase_if_restored() failed");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	SPI_freetuptable(SPI_tuptable);
	if (!isnull && DatumGetBool(d))
		restore_settled = true;
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
