/*-------------------------------------------------------------------------
 *
 * stream_head.c
 *		A stream's version, and the lock that orders the stream's writers.
 *
 * From 1.7 on an append to a stream writes its events and nothing else.
 * The version of a stream is the greater of:
 *
 * - the stream_version of its newest event: the last entry for (topic,
 *   stream) of the unique index events_stream_version;
 * - eventstore.stream_heads.version_floor: the version the stream had
 *   reached when its newest events were last removed (retention,
 *   truncation), or when it was erased, for a stream of that name made
 *   again; 0 for a new stream.
 *
 * The row of stream_heads is written when a stream is created, closed,
 * limited or loses events, never per append.
 *
 * The writers of a stream take its lock: a heavyweight lock on (the
 * stream_heads table, a hash of topic and stream), which writes no WAL.
 * An appender holds it from reading the stream's version until its events
 * are in the index, then lets it go.  The next appender reads the index
 * with a dirty snapshot, so it finds the entries of a transaction still in
 * progress; it then lets the lock go, waits for that transaction to end
 * (as a unique index check waits) and reads again.  So versions are
 * gap-free and follow commit order, and a transaction holds at most one
 * such lock at a time however many streams it appends to: an import into
 * a million streams does not fill the lock table.
 *
 * Under REPEATABLE READ and SERIALIZABLE, a newest event that the
 * transaction's snapshot cannot see is a serialization failure, as an
 * update of a row changed since the snapshot would be.
 *
 * close_stream, erase_stream, truncate_stream and set_stream_max_count
 * take the same lock through eventstore.lock_stream(), after appends in
 * progress have ended, and keep it until their transaction ends: an
 * append either committed before them or sees what they did.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_lock_stream);
PG_FUNCTION_INFO_V1(eventstore_head_version);

/* The stream's lock: 48 bits of a hash of its topic and name. */
static void
stream_lock_tag(LOCKTAG *tag, const char *topic, const char *stream)
{
	uint64		h = hash_bytes_extended((const unsigned char *) topic, strlen(topic), 0);

	h = hash_bytes_extended((const unsigned char *) stream, strlen(stream), h);
	SET_LOCKTAG_OBJECT(*tag, MyDatabaseId, stream_tables()->heads,
					   (uint32) (h >> 32), (uint16) h);
}

/* Scan keys topic = topic, stream = stream on the first two columns of index. */
static void
stream_keys(ScanKey keys, Relation index, const char *topic, const char *stream)
{
	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   CStringGetTextDatum(topic));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[1], F_TEXTEQ,
						   CStringGetTextDatum(stream));
}

/* What one look at a stream found. */
typedef struct StreamLook
{
	TransactionId wait;			/* a writer in progress to wait for, or
								 * invalid */
	int64		newest;			/* the newest event's version, 0: none */
	bool		unseen;			/* the newest event is invisible to the
								 * transaction's snapshot */
	bool		has_head;		/* the stream has its row in stream_heads */
	int64		floor;			/* its version_floor */
	bool		closed;			/* its closed_at is set */
} StreamLook;

/*
 * The first row the index scan of topic and stream returns in direction,
 * under snapshot; false when there is none.
 */
static bool
first_row(Relation rel, Oid index_oid, const char *topic, const char *stream,
		  ScanDirection direction, Snapshot snapshot, TupleTableSlot *slot)
{
	Relation	index = index_open(index_oid, AccessShareLock);
	ScanKeyData keys[2];
	IndexScanDesc scan;
	bool		found;

	stream_keys(keys, index, topic, stream);
	scan = index_beginscan(rel, index, snapshot, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	found = index_getnext_slot(scan, direction, slot);
	index_endscan(scan);
	index_close(index, AccessShareLock);
	return found;
}

/*
 * As first_row, under a dirty snapshot: a row inserted by a transaction
 * still in progress sets look->wait.
 */
static bool
first_dirty_row(Relation rel, Oid index_oid, const char *topic, const char *stream,
				ScanDirection direction, TupleTableSlot *slot, StreamLook *look)
{
	SnapshotData dirty;
	bool		found;

	InitDirtySnapshot(dirty);
	found = first_row(rel, index_oid, topic, stream, direction, &dirty, slot);
	if (found && TransactionIdIsValid(dirty.xmin))
		look->wait = dirty.xmin;
	return found;
}

/* The stream_version of the event in slot, a row of eventstore.events. */
static int64
slot_stream_version(TupleTableSlot *slot)
{
	bool		isnull;
	Datum		v = slot_getattr(slot, events_columns()[COL_STREAM_VERSION] + 1, &isnull);

	return isnull ? 0 : DatumGetInt64(v);
}

/*
 * Reads the stream's newest event and its row of stream_heads, as they
 * are now, committed or not.
 */
static void
look_at_stream(const char *topic, const char *stream, StreamLook *look)
{
	const StreamTables *t = stream_tables();
	Relation	events = table_open(eventstore_events_relid(), AccessShareLock);
	Relation	heads = table_open(t->heads, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(events, NULL);

	memset(look, 0, sizeof(*look));
	if (first_dirty_row(events, t->version_index, topic, stream,
						BackwardScanDirection, slot, look))
	{
		look->newest = slot_stream_version(slot);
		if (!TransactionIdIsValid(look->wait) && IsolationUsesXactSnapshot())
			look->unseen = !table_tuple_satisfies_snapshot(events, slot,
														   GetTransactionSnapshot());
	}
	ExecDropSingleTupleTableSlot(slot);

	slot = table_slot_create(heads, NULL);
	if (!TransactionIdIsValid(look->wait) &&
		first_dirty_row(heads, t->heads_key, topic, stream,
						ForwardScanDirection, slot, look))
	{
		bool		isnull;
		Datum		v = slot_getattr(slot, t->floor_att, &isnull);

		look->has_head = true;
		look->floor = isnull ? 0 : DatumGetInt64(v);
		(void) slot_getattr(slot, t->closed_att, &isnull);
		look->closed = !isnull;
	}
	ExecDropSingleTupleTableSlot(slot);
	table_close(heads, AccessShareLock);
	table_close(events, AccessShareLock);
}

/*
 * Takes the stream's lock once no other transaction is writing the stream,
 * and reads it; returns its version.  *has_head: whether its row of
 * stream_heads exists; *closed: whether close_stream() closed it.
 */
int64
stream_head_lock(const char *topic, const char *stream, bool *has_head, bool *closed)
{
	LOCKTAG		tag;
	StreamLook	look;

	stream_lock_tag(&tag, topic, stream);
	for (;;)
	{
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
		look_at_stream(topic, stream, &look);
		if (!TransactionIdIsValid(look.wait))
			break;
		LockRelease(&tag, ExclusiveLock, false);
		XactLockTableWait(look.wait, NULL, NULL, XLTW_None);
		CHECK_FOR_INTERRUPTS();
	}
	if (look.unseen)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update"),
				 errdetail("Stream \"%s\" of topic \"%s\" has an event that this transaction's snapshot does not see.",
						   stream, topic)));
	*has_head = look.has_head;
	*closed = look.closed;
	return Max(look.newest, look.floor);
}

/* Lets the stream's lock go: the caller's events are in the index. */
void
stream_head_unlock(const char *topic, const char *stream)
{
	LOCKTAG		tag;

	stream_lock_tag(&tag, topic, stream);
	LockRelease(&tag, ExclusiveLock, false);
}

/*
 * lock_stream(topic text, stream text) RETURNS void: takes the stream's
 * lock until the end of the transaction, once appends in progress have
 * ended.  For the functions that close, erase or shorten a stream.
 */
Datum
eventstore_lock_stream(PG_FUNCTION_ARGS)
{
	const char *topic;
	const char *stream;
	bool		has_head;
	bool		closed;

	/* a standby takes no such lock: say why, as every writer does */
	refuse_on_standby("a change of an eventstore stream");
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("topic and stream must not be null"),
				 errdetail("Argument \"%s\" is NULL.", PG_ARGISNULL(0) ? "topic" : "stream")));
	topic = text_to_cstring(PG_GETARG_TEXT_PP(0));
	stream = text_to_cstring(PG_GETARG_TEXT_PP(1));
	(void) stream_head_lock(topic, stream, &has_head, &closed);
	PG_RETURN_VOID();
}

/*
 * head_version(topic text, stream text, version_floor bigint) RETURNS
 * bigint: the version of a stream whose row of stream_heads has
 * version_floor, as the active snapshot sees it: the greater of the floor
 * and its newest event's.  For the SQL functions that read a stream's
 * version.
 */
Datum
eventstore_head_version(PG_FUNCTION_ARGS)
{
	const char *topic = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *stream = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int64		version = PG_GETARG_INT64(2);
	Relation	events = table_open(eventstore_events_relid(), AccessShareLock);
	TupleTableSlot *slot = table_slot_create(events, NULL);

	if (first_row(events, stream_tables()->version_index, topic, stream,
				  BackwardScanDirection, GetActiveSnapshot(), slot))
		version = Max(version, slot_stream_version(slot));
	ExecDropSingleTupleTableSlot(slot);
	table_close(events, AccessShareLock);
	PG_RETURN_INT64(version);
}
