/*-------------------------------------------------------------------------
 *
 * consumer_members.c
 *		Which members a consumer has, which of them are free for a batch,
 *		which one holds a batch, and which in-database members are due.
 *
 * A consumer is split into members (sql/eventstore/40_consumers.sql): an
 * event belongs to member member_of(stream, id, members), each member has
 * its own progress, lease and retries in eventstore.members, and different
 * members run at the same time.  While the number of members changes, two
 * generations exist: the retiring one (fence_snapshot set), which delivers
 * up to its fence and goes, and the new one, which waits for it
 * (consumer_engine.c).  This file only finds members; locking one and
 * everything about its batches is the consumer engine's.
 *
 * Before 1.3 a consumer has one member, whose progress is in the
 * consumer's own row: every function here then answers generation 0,
 * member 0, which the engine maps to that row.
 *
 * Everything here runs inside SPI_connect, as the extension's owner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_member_of);

/*
 * eventstore.member_of(stream text, id uuid, member_count integer): the
 * member of a consumer of member_count members an event belongs to, by its
 * stream, so that a stream's events stay together and in order, or by its
 * id when it has none.  The hash is PostgreSQL's hashtextextended (seed 0,
 * the "C" collation), the same on every server of one platform, as
 * replicas are.  NULL when member_count is, or the event has neither.
 */
Datum
eventstore_member_of(PG_FUNCTION_ARGS)
{
	Datum		key;
	int32		count;
	uint64		hash;

	if (PG_ARGISNULL(2) || (PG_ARGISNULL(0) && PG_ARGISNULL(1)))
		PG_RETURN_NULL();
	count = PG_GETARG_INT32(2);
	if (count < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid number of consumer members"),
				 errdetail("Argument \"member_count\" is %d; it must be at least 1.", count)));
	key = !PG_ARGISNULL(0) ? PG_GETARG_DATUM(0)
		: CStringGetTextDatum(DatumGetCString(DirectFunctionCall1(uuid_out,
																	PG_GETARG_DATUM(1))));
	hash = DatumGetUInt64(DirectFunctionCall2Coll(hashtextextended, C_COLLATION_OID, key,
												  Int64GetDatum(0)));
	PG_RETURN_INT32((int32) (hash % (uint64) count));
}

/* Runs a lookup of members, with its kept generic plan (saved_plans.c). */
static void
run_select(const char *query, int nargs, Oid *argtypes, Datum *values)
{
	run_plan(kept_plan(query, nargs, argtypes, PLAN_GENERIC), values, NULL, SPI_OK_SELECT);
}

static int32
int32_column(HeapTuple row, int i)
{
	bool		isnull;
	Datum		d = SPI_getbinval(row, SPI_tuptable->tupdesc, i, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

/*
 * The members of a consumer, retiring ones first (they must finish before
 * the new ones start), as an array of *n; *members gets the consumer's
 * number of members.  member >= 0 asks for that member only, with the
 * retiring members r for which r % members = member (a poller pinned to a
 * member takes those too, or they would wait for a poller of any member).
 * free_only leaves out members whose batch is leased or that back off after
 * a failure, and starts the list at a random member, so that pollers of
 * any member spread out.  Raises 42704 when there is no such consumer.
 */
MemberRef *
consumer_member_refs(const char *name, int member, bool free_only, int *n, int *members)
{
	Datum		values[3] = {CStringGetTextDatum(name), Int32GetDatum(member),
	Int32GetDatum(free_only ? (int32) pg_prng_uint64_range(&pg_global_prng_state, 0, 255) : 0)};
	MemberRef  *refs;

	if (!eventstore_consumers_have_members())
	{
		run_select("SELECT 1 FROM eventstore.consumers WHERE name OPERATOR(pg_catalog.=) $1",
				   1, (Oid[]) {TEXTOID}, values);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("consumer \"%s\" does not exist", name),
					 errhint("Create it with eventstore.create_consumer().")));
		SPI_freetuptable(SPI_tuptable);
		*members = 1;
		*n = 1;
		return palloc0(sizeof(MemberRef));
	}
	run_select("SELECT c.members, m.generation, m.member"
			   "  FROM eventstore.consumers c"
			   "  LEFT JOIN eventstore.members m"
			   "    ON m.consumer OPERATOR(pg_catalog.=) c.name"
			   "   AND ($2 OPERATOR(pg_catalog.<) 0"
			   "        OR m.member OPERATOR(pg_catalog.%) c.members OPERATOR(pg_catalog.=) $2"
			   "           AND (m.fence_snapshot IS NOT NULL OR m.member OPERATOR(pg_catalog.=) $2))"
			   "   AND ($3 OPERATOR(pg_catalog.=) 0"
			   "        OR (coalesce(m.leased_until OPERATOR(pg_catalog.<=) pg_catalog.now(), true)"
			   "            AND coalesce(m.retry_at OPERATOR(pg_catalog.<=) pg_catalog.now(), true)))"
			   " WHERE c.name OPERATOR(pg_catalog.=) $1"
			   " ORDER BY m.fence_snapshot IS NULL, m.generation,"
			   "          (m.member OPERATOR(pg_catalog.+) 256 OPERATOR(pg_catalog.-) $3)"
			   "          OPERATOR(pg_catalog.%) 256",
			   3, (Oid[]) {TEXTOID, INT4OID, INT4OID}, values);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("consumer \"%s\" does not exist", name),
				 errhint("Create it with eventstore.create_consumer().")));
	*members = int32_column(SPI_tuptable->vals[0], 1);
	refs = palloc0(SPI_processed * sizeof(MemberRef));
	*n = 0;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		bool		isnull;

		(void) SPI_getbinval(row, SPI_tuptable->tupdesc, 2, &isnull);
		if (isnull)
			continue;			/* the consumer, with no member as asked */
		refs[*n].generation = int32_column(row, 2);
		refs[*n].member = int32_column(row, 3);
		(*n)++;
	}
	SPI_freetuptable(SPI_tuptable);
	return refs;
}

/*
 * Locks the member of the outside consumer that holds batch batch_id, for
 * ack or nack, and reads it into *c; false when no member holds that batch
 * any more (acked already, parked, or the consumer reset): then there is
 * nothing to do.  Raises 22023 for a batch_id that poll() never gave out.
 */
bool
consumer_lock_batch(const char *name, int64 batch_id, Consumer *c)
{
	MemberRef	ref = {0, 0};
	int64		last = 0;
	bool		found = true;

	if (eventstore_consumers_have_members())
	{
		Datum		values[2] = {CStringGetTextDatum(name), Int64GetDatum(batch_id)};
		bool		isnull;

		/*
		 * The member leasing the batch, if any, and the consumer's last batch
		 * (new members carry it on from the ones they replace).
		 */
		run_select("SELECT max(batch_id),"
				   "       max(generation) FILTER (WHERE batch_id OPERATOR(pg_catalog.=) $2"
				   "                                 AND batch_kind IS NOT NULL),"
				   "       max(member) FILTER (WHERE batch_id OPERATOR(pg_catalog.=) $2"
				   "                             AND batch_kind IS NOT NULL)"
				   "  FROM eventstore.members WHERE consumer OPERATOR(pg_catalog.=) $1",
				   2, (Oid[]) {TEXTOID, INT8OID}, values);
		last = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										   &isnull));
		(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		found = !isnull && batch_id > 0;
		ref.generation = int32_column(SPI_tuptable->vals[0], 2);
		ref.member = int32_column(SPI_tuptable->vals[0], 3);
		SPI_freetuptable(SPI_tuptable);
	}
	if (found)
	{
		found = consumer_lock(name, CONSUMER_OUTSIDE, ref, false, c);
		if (found && !eventstore_consumers_have_members())
			last = c->batch_id;
	}
	if (!found)
		consumer_settings(name, CONSUMER_OUTSIDE, false, c);	/* its checks */
	if (batch_id < 1 || batch_id > last)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch " INT64_FORMAT " of consumer \"%s\" was never delivered",
						batch_id, name),
				 errdetail("Argument \"batch_id\" must be a batch returned by eventstore.poll(); the last one is " INT64_FORMAT ".",
						   last)));
	return found && c->batch_id == batch_id && c->batch_kind != BATCH_NONE;
}

/*
 * The members of the in-database consumers that are not backing off, as a
 * list of ConsumerTask, by consumer name and member (retiring members
 * first), allocated in the caller's memory context.  *any tells whether
 * there is any in-database consumer at all, *next_retry when the first
 * member backing off is due (0 when none is).
 */
List *
consumers_due(bool *any, TimestampTz *next_retry)
{
	MemoryContext caller = CurrentMemoryContext;
	List	   *tasks = NIL;
	AsOwner		as;

	as_owner_begin(&as);
	run_select(eventstore_consumers_have_members()
			   ? "SELECT c.name, m.generation, m.member,"
			   "       m.retry_at OPERATOR(pg_catalog.>) pg_catalog.now(), m.retry_at"
			   "  FROM eventstore.consumers c"
			   "  JOIN eventstore.members m ON m.consumer OPERATOR(pg_catalog.=) c.name"
			   " WHERE c.handler IS NOT NULL"
			   " ORDER BY c.name, m.fence_snapshot IS NULL, m.generation, m.member"
			   : "SELECT name, 0, 0, retry_at OPERATOR(pg_catalog.>) pg_catalog.now(), retry_at"
			   "  FROM eventstore.consumers"
			   " WHERE handler IS NOT NULL"
			   " ORDER BY name", 0, NULL, NULL);
	*any = SPI_processed > 0;
	*next_retry = 0;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		bool		isnull;
		bool		waiting = DatumGetBool(SPI_getbinval(row, SPI_tuptable->tupdesc, 4, &isnull)) &&
			!isnull;

		if (waiting)
		{
			TimestampTz at = DatumGetTimestampTz(SPI_getbinval(row, SPI_tuptable->tupdesc, 5,
															   &isnull));

			if (*next_retry == 0 || at < *next_retry)
				*next_retry = at;
		}
		else
		{
			char	   *name = SPI_getvalue(row, SPI_tuptable->tupdesc, 1);
			MemoryContext old = MemoryContextSwitchTo(caller);
			ConsumerTask *task = palloc(sizeof(ConsumerTask));

			task->name = pstrdup(name);
			task->ref.generation = int32_column(row, 2);
			task->ref.member = int32_column(row, 3);
			tasks = lappend(tasks, task);
			MemoryContextSwitchTo(old);
		}
	}
	as_owner_end(&as);
	return tasks;
}
