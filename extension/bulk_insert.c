/*-------------------------------------------------------------------------
 *
 * bulk_insert.c
 *		Storing a batch of new events the way COPY does.
 *
 * An INSERT ... ON CONFLICT inserts row by row, each row speculatively
 * (an extra WAL record and buffer lock per row).  A batch is instead stored
 * with table_multi_insert (one WAL record per heap page) and its index
 * entries inserted directly, like COPY FROM, BULK_CHUNK rows at a time.
 *
 * The rows are formed in slots kept from one batch to the next (batch_slots):
 * making a slot per row for every batch, each pinning the relation's
 * descriptor, and forming the rows in freshly allocated memory cost about
 * as much as the heap insertion itself.
 *
 * The caller has already set aside every event whose id is stored (visible
 * to it) or repeated within the batch.  What is left is the race with a
 * transaction inserting one of these ids right now.  Unique indexes are
 * therefore checked with UNIQUE_CHECK_PARTIAL, which neither waits nor
 * raises but reports a possible conflict.  For each row so reported (rare)
 * we wait for the other inserter to finish; if its row turns out live, ours
 * is a duplicate: we delete our own tuple and report the event as skipped,
 * for the caller to resolve like any other duplicate.  If the other
 * transaction rolled back, ours stands and keeps its place in the batch.
 *
 * The events table belongs to the extension and has no triggers or rules;
 * NOT NULL and CHECK constraints are still checked as an INSERT would.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "eventstore.h"

/*
 * Is there a live row with this id other than our own tuple?  Waits for
 * transactions that are inserting or deleting such a row to finish first,
 * as a unique index check would.
 */
static bool
other_row_with_id(Relation rel, Relation index, pg_uuid_t *id, ItemPointer own)
{
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	SnapshotData dirty;
	ScanKeyData key;
	bool		found;

retry:
	found = false;
	InitDirtySnapshot(dirty);
	{
		IndexScanDesc scan = index_beginscan(rel, index, &dirty, 1, 0);

		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(id));
		index_rescan(scan, &key, 1, NULL, 0);
		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			TransactionId xwait;
			ItemPointerData tid = slot->tts_tid;

			if (ItemPointerEquals(&tid, own))
				continue;
			xwait = TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
			if (TransactionIdIsValid(xwait))
			{
				index_endscan(scan);
				if (dirty.speculativeToken)
					SpeculativeInsertionWait(dirty.xmin, dirty.speculativeToken);
				else
					XactLockTableWait(xwait, rel, &tid, XLTW_InsertIndex);
				goto retry;
			}
			found = true;
			break;
		}
		index_endscan(scan);
	}
	ExecDropSingleTupleTableSlot(slot);
	return found;
}

/* What a bulk insert keeps open while it works. */
typedef struct BulkInsert
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	Relation	id_index;
	Oid			sequence;		/* of the position identity column */
	/* the same in every row of the batch */
	text	   *topic;
	text	   *stream;			/* NULL: no stream */
	FullTransactionId xid;
	TimestampTz recorded_at;
} BulkInsert;

/* Opens eventstore.events and its indexes for inserting, as COPY does. */
static void
bulk_begin(BulkInsert *b, const char *topic, const char *stream)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	Oid			id_index_oid;

	b->rel = table_open(eventstore_events_relid(), RowExclusiveLock);
	if (b->rel->trigdesc != NULL)
		report_altered_events("The table has triggers, which appends would bypass.");
	b->sequence = getIdentitySequence(RelationGetRelid(b->rel),
									  events_columns()[COL_POSITION] + 1, false);

	b->estate = CreateExecutorState();
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(b->rel);
	rte->relkind = b->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(b->estate, list_make1(rte));
	b->rri = makeNode(ResultRelInfo);
	ExecInitResultRelation(b->estate, b->rri, 1);
	ExecOpenIndices(b->rri, false);

	id_index_oid = events_id_index();
	b->id_index = NULL;
	for (int i = 0; i < b->rri->ri_NumIndices; i++)
		if (RelationGetRelid(b->rri->ri_IndexRelationDescs[i]) == id_index_oid)
			b->id_index = b->rri->ri_IndexRelationDescs[i];

	b->topic = cstring_to_text(topic);
	b->stream = stream ? cstring_to_text(stream) : NULL;
	b->xid = GetTopFullTransactionId();
	b->recorded_at = GetCurrentTransactionStartTimestamp();
}

static void
bulk_end(BulkInsert *b)
{
	ExecCloseResultRelations(b->estate);
	ExecCloseRangeTableRelations(b->estate);
	FreeExecutorState(b->estate);
	table_close(b->rel, NoLock);
}

/* Most rows given to table_multi_insert at once, as COPY FROM does. */
#define BULK_CHUNK 1000

/*
 * The slots rows are formed in, kept for the backend's life in their own
 * memory context, so that the rows' memory is reused from one batch to
 * the next.  They use a private copy of the table's row type (which needs
 * no pin), remade when the table's row type changes.
 */
static MemoryContext slots_cxt = NULL;
static TupleDesc slots_desc = NULL;
static TupleTableSlot *slots[BULK_CHUNK];
static int	nslots = 0;

/* Whether rows of type a can be formed as rows of type b. */
static bool
same_row_type(TupleDesc a, TupleDesc b)
{
	if (a->natts != b->natts)
		return false;
	for (int i = 0; i < a->natts; i++)
	{
		Form_pg_attribute x = TupleDescAttr(a, i);
		Form_pg_attribute y = TupleDescAttr(b, i);

		if (x->atttypid != y->atttypid || x->atttypmod != y->atttypmod ||
			x->attisdropped != y->attisdropped || x->attnotnull != y->attnotnull)
			return false;
	}
	return true;
}

/* n (at most BULK_CHUNK) empty slots for rows of rel. */
static TupleTableSlot **
batch_slots(Relation rel, int n)
{
	MemoryContext old;

	if (slots_desc != NULL && !same_row_type(slots_desc, RelationGetDescr(rel)))
	{
		MemoryContextDelete(slots_cxt);
		slots_cxt = NULL;
		slots_desc = NULL;
		nslots = 0;
	}
	if (slots_cxt == NULL)
		slots_cxt = AllocSetContextCreate(TopMemoryContext, "eventstore batch rows",
										  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(slots_cxt);
	if (slots_desc == NULL)
		slots_desc = CreateTupleDescCopy(RelationGetDescr(rel));
	while (nslots < n)
		slots[nslots++] = MakeSingleTupleTableSlot(slots_desc, table_slot_callbacks(rel));
	MemoryContextSwitchTo(old);
	/* a batch that failed half way may have left rows in them */
	for (int k = 0; k < n; k++)
		ExecClearTuple(slots[k]);
	return slots;
}

/* Fills slot with event e as a row, with a new position. */
static void
event_slot(BulkInsert *b, TupleTableSlot *slot, EnvelopeParts *e, int64 stream_version,
		   int64 *position)
{
	TupleDesc	desc = slot->tts_tupleDescriptor;
	/* the slot's values point into the row: it lives as long as the batch */
	StoredEvent *row = palloc0(sizeof(StoredEvent));

	*position = nextval_internal(b->sequence, false);
	row->position = *position;
	row->topic = b->topic;
	row->stream = b->stream;
	row->stream_version = stream_version;
	row->parts = *e;
	row->recorded_at = b->recorded_at;
	row->xid = b->xid;
	stored_event_encode(row, desc->natts, slot->tts_values, slot->tts_isnull);
	ExecStoreVirtualTuple(slot);
	if (RelationGetDescr(b->rel)->constr)
		ExecConstraints(b->rri, slot, b->estate);
}

/*
 * Inserts the index entries of a stored row.  Returns true if the id may
 * collide with a row another transaction is inserting.
 */
static bool
insert_index_entries(BulkInsert *b, TupleTableSlot *slot, const char *topic)
{
	bool		spec_conflict = false;
	List	   *recheck;

	recheck = ExecInsertIndexTuples(b->rri, slot, b->estate, false, true,
									&spec_conflict, NIL);
	ResetPerTupleExprContext(b->estate);
	if (recheck == NIL)
		return false;

	/*
	 * Only the id can collide: positions are new, and writers of one stream
	 * are serialised by the caller's lock on its row.
	 */
	if (list_length(recheck) != 1 ||
		linitial_oid(recheck) != RelationGetRelid(b->id_index))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to a concurrent append"),
				 errdetail("Another transaction stored a conflicting event in topic \"%s\" at the same time.",
						   topic),
				 errhint("Retry the append.")));
	return true;
}

/* Stores events[0..n), n at most BULK_CHUNK: see bulk_insert_events. */
static void
insert_chunk(BulkInsert *b, const char *topic, EnvelopeParts **events, int n,
			 int64 first_version, int64 *positions, bool *skipped)
{
	TupleTableSlot **slots = batch_slots(b->rel, n);
	bool	   *conflict = palloc0(n * sizeof(bool));
	bool		any_conflict = false;

	for (int k = 0; k < n; k++)
		event_slot(b, slots[k], events[k], first_version + k, &positions[k]);

	table_multi_insert(b->rel, slots, n, GetCurrentCommandId(true), 0, NULL);
	for (int k = 0; k < n; k++)
	{
		conflict[k] = insert_index_entries(b, slots[k], topic);
		any_conflict |= conflict[k];
	}

	if (any_conflict)
	{
		/* our own tuples must be visible to us before we can delete one */
		CommandCounterIncrement();
		for (int k = 0; k < n; k++)
		{
			if (!conflict[k] ||
				!other_row_with_id(b->rel, b->id_index, &events[k]->id, &slots[k]->tts_tid))
				continue;
			simple_heap_delete(b->rel, &slots[k]->tts_tid);
			skipped[k] = true;
		}
	}

	/* the rows' memory goes back to the slots' context for the next batch */
	for (int k = 0; k < n; k++)
		ExecClearTuple(slots[k]);
	pfree(conflict);
}

/*
 * Stores events[0..n): topic, stream (NULL for none) and stream versions
 * first_version, first_version + 1, ...  Fills positions[k] for each event
 * stored and sets skipped[k] for each event found stored concurrently under
 * the same id.
 */
void
bulk_insert_events(const char *topic, const char *stream, EnvelopeParts **events,
				   int n, int64 first_version, int64 *positions, bool *skipped)
{
	BulkInsert	b;

	bulk_begin(&b, topic, stream);
	for (int first = 0; first < n; first += BULK_CHUNK)
		insert_chunk(&b, topic, events + first, Min(n - first, BULK_CHUNK),
					 first_version + first, positions + first, skipped + first);
	bulk_end(&b);
}
