/*-------------------------------------------------------------------------
 *
 * event_lookup.c
 *		Finding stored events by id, through the unique index on id.
 *
 * Appends look up the ids of a batch (or of a stream append) before
 * storing it, and the id of any event that turned out to be stored
 * concurrently.  Through SPI that was "WHERE id = ANY ($1)" under a saved
 * generic plan, and a plan made while the table is empty or just truncated
 * is a sequential scan, which stays cached as the table grows.  An id is a
 * unique key, so the right plan is always one index probe per id: it is
 * done here directly, with no planner involved.
 *
 * The snapshot is what an SPI query would use: a new one per call under
 * READ COMMITTED (so a row committed by a concurrent transaction that we
 * waited for is seen), the transaction's under REPEATABLE READ and
 * SERIALIZABLE (so it is not, and the caller raises a serialization
 * failure).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "eventstore.h"

/* qsort_arg comparator: positions in ids[], by the uuid they hold. */
static int
compare_by_id(const void *a, const void *b, void *arg)
{
	pg_uuid_t **ids = arg;

	return memcmp(ids[*(const int *) a], ids[*(const int *) b], sizeof(pg_uuid_t));
}

/*
 * For each ids[k] (k < n): the stored event with that id visible to a new
 * snapshot, or NULL.  The result is a palloc'd array of n pointers.
 * The ids are probed in key order, so that the index's leaf pages are
 * visited in order rather than at random.
 */
StoredEvent **
lookup_stored_events(pg_uuid_t **ids, int n)
{
	StoredEvent **result = palloc0(n * sizeof(StoredEvent *));
	int		   *order = palloc(n * sizeof(int));
	Relation	rel = table_open(eventstore_events_relid(), AccessShareLock);
	Relation	index;
	Snapshot	snapshot;
	TupleTableSlot *slot;
	IndexScanDesc scan;
	ScanKeyData key;

	index = index_open(events_id_index(), AccessShareLock);

	/* see this transaction's own earlier writes, as an SPI query would */
	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	slot = table_slot_create(rel, NULL);
	for (int k = 0; k < n; k++)
		order[k] = k;
	qsort_arg(order, n, sizeof(int), compare_by_id, ids);
	scan = index_beginscan(rel, index, snapshot, 1, 0);
	for (int i = 0; i < n; i++)
	{
		int			k = order[i];

		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(ids[k]));
		index_rescan(scan, &key, 1, NULL, 0);
		if (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			slot_getallattrs(slot);
			result[k] = palloc(sizeof(StoredEvent));
			stored_event_decode(slot->tts_values, slot->tts_isnull, true, result[k]);
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return result;
}
