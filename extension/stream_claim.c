/*-------------------------------------------------------------------------
 *
 * stream_claim.c
 *		An append's hold on its stream: the version its events are numbered
 *		on from, with the stream's other writers kept out while it stores
 *		them.
 *
 * From 1.7 on this is the stream's lock and its version as read under it
 * (stream_head.c), the stream's row of eventstore.stream_heads being made
 * on its first append.  An installation not updated to 1.7 yet keeps the
 * version in the stream's row, which an append claims and gives back by
 * UPDATEs; this library serves it that way until ALTER EXTENSION UPDATE.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "eventstore.h"

/*
 * Before 1.7: the statements on a stream's row, which holds its version.
 * Its table is eventstore.stream_heads from 1.2 on and eventstore.streams
 * before, without closed_at: this library serves an installation of either
 * until ALTER EXTENSION UPDATE, so each has its plans, and the installed
 * one is looked up per call.
 *
 * An append claims the versions of its events before it knows whether
 * they are new: one UPDATE locks the row (serialising the stream's
 * writers) and moves its version on by the number of events, which is
 * what an append almost always stores.  A retry, or a refused append,
 * moves it back (set_version) while still holding the lock, so nobody
 * sees the claimed versions.  A stream's first append creates its row
 * with the versions claimed; the row starts where an erased stream of the
 * same name stopped (eventstore.erased_streams, by a keyed digest of the
 * name), else at 0.
 */
typedef struct StreamPlans
{
	SPIPlanPtr	advance;		/* (topic, stream, n) -> old version, closed */
	SPIPlanPtr	create;			/* (topic, stream, n) -> old version, closed */
	SPIPlanPtr	set_version;	/* (topic, stream, version) */
} StreamPlans;

static StreamPlans *
stream_plans(void)
{
	static StreamPlans plans[2];
	bool		heads = eventstore_has_stream_heads();
	StreamPlans *p = &plans[heads ? 1 : 0];

	/* the last one prepared: an error half way leaves the others to redo */
	if (p->set_version == NULL)
	{
		const char *table = heads ? "eventstore.stream_heads" : "eventstore.streams";
		const char *closed = heads ? "closed_at IS NOT NULL" : "false";
		const char *key = " WHERE topic OPERATOR(pg_catalog.=) $1"
			"   AND stream OPERATOR(pg_catalog.=) $2";
		Oid			argtypes[3] = {TEXTOID, TEXTOID, INT8OID};

		p->advance = prepare_plan(psprintf("UPDATE %s SET version = version OPERATOR(pg_catalog.+) $3%s"
										   " RETURNING version OPERATOR(pg_catalog.-) $3, %s",
										   table, key, closed),
								  3, argtypes);
		p->create = prepare_plan(heads
								 ? "INSERT INTO eventstore.stream_heads (topic, stream, version, closed_at)"
								 " SELECT $1, $2, COALESCE(x.version, 0) OPERATOR(pg_catalog.+) $3, x.closed_at"
								 "   FROM (VALUES (1)) AS one"
								 "   LEFT JOIN eventstore.erased_streams x"
								 "     ON x.topic OPERATOR(pg_catalog.=) $1"
								 "    AND x.digest OPERATOR(pg_catalog.=) eventstore.stream_digest($2)"
								 " ON CONFLICT DO NOTHING"
								 " RETURNING version OPERATOR(pg_catalog.-) $3, closed_at IS NOT NULL"
								 : "INSERT INTO eventstore.streams (topic, stream, version)"
								 " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
								 " RETURNING version OPERATOR(pg_catalog.-) $3, false",
								 3, argtypes);
		p->set_version = prepare_plan(psprintf("UPDATE %s SET version = $3%s", table, key),
									  3, argtypes);
	}
	return p;
}

/*
 * Locks the stream's row, creating it if need be, and claims the next n
 * versions; returns the version before them, and in *closed whether
 * close_stream() has closed the stream.
 */
static int64
claim_stream_versions(const char *topic, const char *stream, int64 n, bool *closed)
{
	StreamPlans *plans = stream_plans();
	Datum		args[3];
	bool		isnull;

	args[0] = CStringGetTextDatum(topic);
	args[1] = CStringGetTextDatum(stream);
	args[2] = Int64GetDatum(n);
	run_plan(plans->advance, args, NULL, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 0)
	{
		run_plan(plans->create, args, NULL, SPI_OK_INSERT_RETURNING);
		/* created concurrently: it is there to update now */
		if (SPI_processed == 0)
			run_plan(plans->advance, args, NULL, SPI_OK_UPDATE_RETURNING);
		if (SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg_internal("stream row vanished while it was being created")));
	}
	*closed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Makes the stream's row of stream_heads (1.7 on), starting where an
 * erased stream of the same name stopped; false if it exists already.
 */
static bool
create_stream_head(const char *topic, const char *stream, int64 *floor, bool *closed)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[2];
	bool		isnull;

	if (plan == NULL)
	{
		Oid			argtypes[2] = {TEXTOID, TEXTOID};

		plan = prepare_plan("INSERT INTO eventstore.stream_heads (topic, stream, version_floor, closed_at)"
							" SELECT $1, $2, COALESCE(x.version, 0), x.closed_at"
							"   FROM (VALUES (1)) AS one"
							"   LEFT JOIN eventstore.erased_streams x"
							"     ON x.topic OPERATOR(pg_catalog.=) $1"
							"    AND x.digest OPERATOR(pg_catalog.=) eventstore.stream_digest($2)"
							" ON CONFLICT DO NOTHING"
							" RETURNING version_floor, closed_at IS NOT NULL",
							2, argtypes);
	}
	args[0] = CStringGetTextDatum(topic);
	args[1] = CStringGetTextDatum(stream);
	run_plan(plan, args, NULL, SPI_OK_INSERT_RETURNING);
	if (SPI_processed == 0)
		return false;
	*floor = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*closed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	return true;
}

/*
 * Whether streams keep their version as a floor beside their events
 * (1.7 on, stream_head.c), rather than in a row every append updates.
 */
static bool
stream_floors(void)
{
	return eventstore_has_stream_heads() && stream_tables()->floors;
}

/*
 * Takes the stream's lock for an append (stream_head.c), creating its row
 * of stream_heads if need be; returns the stream's version.
 */
static int64
lock_stream_for_append(const char *topic, const char *stream, bool *closed)
{
	for (;;)
	{
		bool		has_head;
		int64		version = stream_head_lock(topic, stream, &has_head, closed);
		int64		floor;

		if (has_head)
			return version;
		if (create_stream_head(topic, stream, &floor, closed))
			return Max(version, floor);
		/* made by a transaction that has not ended: wait for it */
		stream_head_unlock(topic, stream);
	}
}

/* Gives back claimed versions: the stream's row (locked) is set to version. */
static void
set_stream_version(const char *topic, const char *stream, int64 version)
{
	Datum		args[3];

	args[0] = CStringGetTextDatum(topic);
	args[1] = CStringGetTextDatum(stream);
	args[2] = Int64GetDatum(version);
	run_plan(stream_plans()->set_version, args, NULL, SPI_OK_UPDATE);
}

/*
 * Holds the stream for an append of n events: returns the version its
 * events go on from, and in *closed whether close_stream() has closed it.
 */
int64
stream_append_begin(const char *topic, const char *stream, int n, bool *closed)
{
	if (stream_floors())
		return lock_stream_for_append(topic, stream, closed);
	return claim_stream_versions(topic, stream, n, closed);
}

/*
 * Lets the stream go after an append of n events, of which it stored
 * stored from version + 1 on.  Called before the append returns; an error
 * before it lets the stream go with the (sub)transaction.
 */
void
stream_append_end(const char *topic, const char *stream, int64 version, int n, int stored)
{
	if (stream_floors())
		stream_head_unlock(topic, stream);
	else if (stored != n)
		set_stream_version(topic, stream, version + stored);
}
