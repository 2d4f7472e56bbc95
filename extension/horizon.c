/*-------------------------------------------------------------------------
 *
 * horizon.c
 *		The read horizon: a position up to which every transaction that
 *		appended has committed or aborted, so that a reader paging by
 *		position ("the events after the last one I saw") never passes over
 *		an event that commits late.
 *
 * Positions are taken from the identity sequence of eventstore.events when
 * rows are inserted, and rows become visible when their transaction
 * commits: a transaction that took position 10 may commit after one that
 * took 11, and a reader that saw 11 would never see 10.  So each backend
 * keeps in shared memory, in a slot of its own, a lower bound of the
 * positions its running transaction may hold, or 0:
 *
 * - horizon_before_append() publishes the bound before the transaction's
 *   first append takes a position: the last value the sequence has handed
 *   out, plus one.  Every later position is above it, as long as the
 *   sequence hands out one value at a time (CACHE 1, as the extension
 *   creates it: a backend's cache of values would be below the bound).
 * - horizon_xact_end(), from the commit hook's XactCallback after the
 *   commit (or abort) is visible, clears the slot.
 *
 * Slots are per backend, for the whole cluster, and positions are per
 * database: a slot counts only for the database of its backend.
 *
 * safe_position() reads, in this order, the sequence's last value V, then
 * every slot of its database but its own, and returns min(V, lowest bound
 * - 1).  Any position p <= V was handed out before V was read; the
 * transaction that holds it published its bound before taking it, so the
 * slot read after V shows that bound, unless the transaction has ended and
 * its commit is visible.  Positions above V are excluded anyway.  The slots are atomics,
 * and the sequence is read under its buffer lock, which orders the reads.
 *
 * read() computes the horizon in a statement of its own, before the
 * statement that reads the events takes its snapshot (it is VOLATILE for
 * that, under READ COMMITTED each statement has a new snapshot): every
 * transaction that held a position up to the horizon has committed, and is
 * visible, or aborted.  The cost is one read of the sequence and a pass
 * over the slots per call, nothing per event; for appends, one read of the
 * sequence and two atomic writes per transaction.
 *
 * The consumer engine takes the same horizon, this transaction's bound
 * included, just before each window snapshot: a floor below which every
 * event the snapshot does not see is aborted, so that the next window is
 * found by position from there (consumer_engine.c, "floors").
 *
 * Without the library preloaded there is no shared memory: safe_position()
 * returns NULL and read() pages without a horizon, as before 1.2; the
 * consumer engine finds windows through the BRIN index on xid.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/proc.h"
#include "utils/builtins.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_safe_position);
PG_FUNCTION_INFO_V1(eventstore_window_floor);

typedef struct HorizonShared
{
	int			nslots;
	pg_atomic_uint64 low[FLEXIBLE_ARRAY_MEMBER];	/* by pgprocno; 0: none */
} HorizonShared;

static HorizonShared *horizon = NULL;

/* This backend's slot holds a bound for the running transaction. */
static bool slot_in_use = false;

static int
horizon_slots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

Size
horizon_shmem_size(void)
{
	return add_size(offsetof(HorizonShared, low),
					mul_size(horizon_slots(), sizeof(pg_atomic_uint64)));
}

void
horizon_shmem_attach(void *region, bool created)
{
	horizon = region;
	if (created)
	{
		horizon->nslots = horizon_slots();
		for (int i = 0; i < horizon->nslots; i++)
			pg_atomic_init_u64(&horizon->low[i], 0);
	}
}

static pg_atomic_uint64 *
my_slot(void)
{
	if (horizon == NULL || MyProc == NULL || MyProc->pgprocno >= horizon->nslots)
		return NULL;
	return &horizon->low[MyProc->pgprocno];
}

/*
 * The last position the sequence of eventstore.events has handed out, 0
 * before the first; read as the owner of the extension's tables.
 */
static int64
last_position_handed_out(void)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		last;

	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(eventstore_position_sequence());
	fcinfo->args[0].isnull = false;
	last = pg_sequence_last_value(fcinfo);
	return fcinfo->isnull ? 0 : DatumGetInt64(last);
}

/*
 * Before an append takes a position: publish this transaction's bound.
 * The caller works as the owner (as_owner_begin).
 */
void
horizon_before_append(void)
{
	pg_atomic_uint64 *slot;

	if (slot_in_use || (slot = my_slot()) == NULL)
		return;
	pg_atomic_write_u64(slot, (uint64) last_position_handed_out() + 1);
	slot_in_use = true;
	/* the bound is visible before the sequence hands out a position */
	pg_memory_barrier();
}

/* At the end of the transaction, once its commit or abort is visible. */
void
horizon_xact_end(void)
{
	pg_atomic_uint64 *slot;

	if (!slot_in_use)
		return;
	slot_in_use = false;
	if ((slot = my_slot()) != NULL)
		pg_atomic_write_u64(slot, 0);
}

/*
 * The horizon into *safe; false without shared memory.  The events at or
 * below it that a snapshot taken after this call does not see it will never
 * see: their transactions have aborted, or are visible to it.  With
 * include_own, this transaction's own bound counts too (a consumer's
 * window does not see the transaction that opens it); without, it does not
 * (a reader sees its own events).
 */
bool
horizon_safe_position(bool include_own, int64 *safe)
{
	pg_atomic_uint64 *mine;
	Oid			save_userid;
	int			save_sec_context;

	if (horizon == NULL)
		return false;
	/*
	 * The sequence is read as its owner (an error aborts the transaction,
	 * which restores the user); nothing here runs user code.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(eventstore_owner(), save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	*safe = last_position_handed_out();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	pg_memory_barrier();
	mine = include_own ? NULL : my_slot();
	for (int i = 0; i < horizon->nslots; i++)
	{
		uint64		low;

		if (&horizon->low[i] == mine)
			continue;			/* this transaction sees its own events */
		low = pg_atomic_read_u64(&horizon->low[i]);
		if (low != 0 && ProcGlobal->allProcs[i].databaseId != MyDatabaseId)
			continue;			/* positions of another database */
		if (low != 0 && (int64) low - 1 < *safe)
			*safe = (int64) low - 1;
	}
	return true;
}

/* eventstore.safe_position(): the horizon, or NULL without shared memory. */
Datum
eventstore_safe_position(PG_FUNCTION_ARGS)
{
	int64		safe;

	if (!horizon_safe_position(false, &safe))
		PG_RETURN_NULL();
	PG_RETURN_INT64(safe);
}

/*
 * eventstore.window_floor(): the horizon counting this transaction too, or
 * NULL without shared memory; for set_consumer_members, which takes it
 * before its fence snapshot (see consumer_engine.c, "floors").
 */
Datum
eventstore_window_floor(PG_FUNCTION_ARGS)
{
	int64		safe;

	if (!horizon_safe_position(true, &safe))
		PG_RETURN_NULL();
	PG_RETURN_INT64(safe);
}
