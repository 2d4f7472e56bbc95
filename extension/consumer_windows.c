/*-------------------------------------------------------------------------
 *
 * consumer_windows.c
 *		A member's snapshot windows: finding the next window of events by
 *		its floor (or the BRIN index on xid), paging through it in position
 *		order, closing it, and a retiring member's last window, its fence.
 *
 * Part of the consumer engine (consumer_engine.c, whose header comment
 * describes the protocol): the engine locks the member and decides what a
 * batch is; this file finds the window events of one member.  Like the
 * engine, it runs inside SPI_connect, as the extension's owner, on the
 * member consumer_lock() locked.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"

#include "eventstore.h"

/*
 * The condition that an event e belongs to the member, for the queries
 * that find its events: empty when the consumer has one member.  The
 * member count and the member are arguments $param and $param + 1 of the
 * statement (consumer_member_args), so that the text, and the statement
 * kept for it, is the same for every member.
 */
const char *
consumer_member_condition(Consumer *c, int param)
{
	if (c->member_count <= 1)
		return "";
	return psprintf(" AND eventstore.member_of(e.stream, e.id, $%d) OPERATOR(pg_catalog.=) $%d",
					param, param + 1);
}

/* The two arguments of the member condition, from types[0] and values[0] on. */
void
consumer_member_args(Consumer *c, Oid *types, Datum *values)
{
	types[0] = INT4OID;
	types[1] = INT4OID;
	values[0] = Int32GetDatum(c->member_count);
	values[1] = Int32GetDatum(c->ref.member);
}

/*------------------------------------------------------------------------
 * Windows
 *------------------------------------------------------------------------
 */

/*
 * A retiring member has delivered everything up to its fence: it goes,
 * leaving the count of the events it handled to member 0 of the newest
 * generation.  The newer generation's members no longer wait for it once
 * all are gone.
 */
static void
member_retire(Consumer *c)
{
	/* what it handled counts on, with member 0 of the newest generation */
	consumer_sql("WITH gone AS (DELETE FROM eventstore.members"
			     "               WHERE consumer OPERATOR(pg_catalog.=) $1"
			     "                 AND generation OPERATOR(pg_catalog.=) $2"
			     "                 AND member OPERATOR(pg_catalog.=) $3"
			     "              RETURNING handled)"
			     " UPDATE eventstore.members m"
			     "    SET handled = m.handled OPERATOR(pg_catalog.+) (SELECT handled FROM gone)"
			     "  WHERE m.consumer OPERATOR(pg_catalog.=) $1 AND m.member OPERATOR(pg_catalog.=) 0"
			     "    AND m.generation OPERATOR(pg_catalog.=)"
			     "        (SELECT pg_catalog.max(generation) FROM eventstore.members"
			     "          WHERE consumer OPERATOR(pg_catalog.=) $1)",
			     CONSUMER_KEY_ARGS, (Oid[]) {TEXTOID, INT4OID, INT4OID},
			     (Datum[]) {CStringGetTextDatum(c->name), Int32GetDatum(c->ref.generation),
			     Int32GetDatum(c->ref.member)},
			     NULL, SPI_OK_UPDATE);
	c->retired = true;
	consumers_changed_at_commit();
}

/*
 * The lowest position of the window of snapshot, less one, or -1 when the
 * window is empty: the events of the member visible in snapshot and not in
 * the done snapshot.  With the done snapshot's floor known, they are all
 * above it, and the first is found through the primary key from there, at
 * a cost that does not grow with the history (only with what came after
 * the floor).  Without, through the BRIN index on xid and nothing else:
 * "position + 0" keeps the planner off a min() by primary key, "topic ||
 * ''" off the topic index, either of which reads every event of the topic;
 * sequential scans are off so that the BRIN index serves even before the
 * table has statistics.  The arguments are known when the statement is
 * planned.
 */
static int64
window_low(Consumer *c, Datum snapshot)
{
	Oid			argtypes[7] = {PG_SNAPSHOTOID, PG_SNAPSHOTOID, TEXTARRAYOID, TEXTARRAYOID, INT8OID};
	Datum		values[7] = {c->done_snapshot, snapshot, c->topics, c->types,
	Int64GetDatum(c->done_floor)};
	int			save_nestlevel = NewGUCNestLevel();
	bool		isnull;
	int64		low = -1;

	consumer_member_args(c, &argtypes[5], &values[5]);
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	consumer_sql_planned_per_call(psprintf(c->done_floor >= 0
					      ? "SELECT e.position OPERATOR(pg_catalog.-) 1"
					      "  FROM eventstore.events e"
					      " WHERE e.position OPERATOR(pg_catalog.>) $5"
					      "   AND e.topic OPERATOR(pg_catalog.=) ANY ($3)"
					      "   AND ($4 IS NULL OR e.type OPERATOR(pg_catalog.=) ANY ($4))"
					      "   AND pg_catalog.pg_visible_in_snapshot(e.xid, $2)"
					      "   AND NOT pg_catalog.pg_visible_in_snapshot(e.xid, $1)%s"
					      " ORDER BY e.position LIMIT 1"
					      : "SELECT pg_catalog.min(e.position OPERATOR(pg_catalog.+) 0)"
					      "         OPERATOR(pg_catalog.-) 1"
					      "  FROM eventstore.events e"
					      " WHERE e.xid OPERATOR(pg_catalog.>=) pg_catalog.pg_snapshot_xmin($1)"
					      "   AND e.xid OPERATOR(pg_catalog.<) pg_catalog.pg_snapshot_xmax($2)"
					      "   AND (e.topic OPERATOR(pg_catalog.||) '') OPERATOR(pg_catalog.=) ANY ($3)"
					      "   AND ($4 IS NULL OR e.type OPERATOR(pg_catalog.=) ANY ($4))"
					      "   AND pg_catalog.pg_visible_in_snapshot(e.xid, $2)"
					      "   AND NOT pg_catalog.pg_visible_in_snapshot(e.xid, $1)%s",
					      consumer_member_condition(c, 6)),
			     7, argtypes, values, c->types == (Datum) 0 ? "   n   " : NULL, SPI_OK_SELECT);
	AtEOXact_GUC(true, save_nestlevel);
	/* no row (the probe by floor) or a NULL min() (the BRIN scan): empty */
	isnull = SPI_processed == 0;
	if (!isnull)
		low = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										  &isnull));
	SPI_freetuptable(SPI_tuptable);
	return isnull ? -1 : low;
}

/*
 * Opens a window for the member unless one is open; false when there is
 * nothing new.  An empty window moves done_snapshot on at once.  The
 * window of a retiring member is its fence, and once that is delivered the
 * member retires.
 *
 * Floors: just before a window snapshot is taken, the read horizon with
 * this transaction's own bound (horizon.c) is a position at or below which
 * every event is visible in the snapshot or aborted.  Stored with the
 * snapshot (window_floor, then done_floor), it lets the next window start
 * there.  Without the preloaded library (no horizon) or before 1.3 there
 * is no floor, and windows are found through the BRIN index on xid.
 */
bool
consumer_window_open(Consumer *c)
{
	bool		members = eventstore_consumers_have_members();
	Datum		snapshot;
	int64		floor = -1;
	bool		isnull;
	int64		low;

	if (c->window_snapshot != (Datum) 0)
		return true;
	if (c->fence_snapshot != (Datum) 0)
	{
		snapshot = c->fence_snapshot;
		floor = c->fence_floor;
	}
	else
	{
		if (!members || !horizon_safe_position(true, &floor))
			floor = -1;
		consumer_sql("SELECT eventstore.window_snapshot()", 0, NULL, NULL, NULL, SPI_OK_SELECT);
		snapshot = consumer_result_datum(1, &isnull);
		SPI_freetuptable(SPI_tuptable);
	}

	if (c->done_snapshot == (Datum) 0)
		low = c->start_after;
	else
	{
		/* as values: the stored one may have a short varlena header */
		if (datum_image_eq(snapshot, c->done_snapshot, false, -1))
		{
			if (c->fence_snapshot != (Datum) 0)
				member_retire(c);
			return false;		/* no transaction has ended since */
		}
		low = window_low(c, snapshot);
		if (low < 0)
		{
			consumer_update(c, members ? "done_snapshot = $4, done_floor = $5"
							: "done_snapshot = $4",
							2, (Oid[]) {PG_SNAPSHOTOID, INT8OID},
							(Datum[]) {snapshot, Int64GetDatum(floor)},
							floor >= 0 ? "  " : " n");
			if (c->fence_snapshot != (Datum) 0)
				member_retire(c);
			return false;
		}
	}
	consumer_update(c, members ? "window_snapshot = $4, window_after = $5, window_floor = $6"
					: "window_snapshot = $4, window_after = $5",
					3, (Oid[]) {PG_SNAPSHOTOID, INT8OID, INT8OID},
					(Datum[]) {snapshot, Int64GetDatum(low), Int64GetDatum(floor)},
					floor >= 0 ? "   " : "  n");
	return true;
}

/*
 * The window is drained: what it saw is now delivered.  A retiring member
 * whose window was its fence retires.
 */
void
consumer_window_close(Consumer *c)
{
	if (c->window_snapshot == (Datum) 0)
		return;
	consumer_update(c, eventstore_consumers_have_members()
					? "done_snapshot = window_snapshot, done_floor = window_floor,"
					" window_snapshot = NULL, window_after = NULL, window_floor = NULL"
					: "done_snapshot = window_snapshot, window_snapshot = NULL,"
					" window_after = NULL", 0, NULL, NULL, NULL);
	if (c->fence_snapshot != (Datum) 0 &&
		datum_image_eq(c->done_snapshot, c->fence_snapshot, false, -1))
		member_retire(c);
}

/*
 * The open window's events after window_after, up to position upto, at
 * most limit of them, of the consumer's types only, in position order.
 * Each page is planned with its real bounds.
 */
void
consumer_window_page(Consumer *c, int64 upto, int limit, Batch *b)
{
	Oid			argtypes[9] = {TEXTARRAYOID, INT8OID, INT8OID, PG_SNAPSHOTOID,
	PG_SNAPSHOTOID, INT4OID, TEXTARRAYOID};
	Datum		values[9] = {c->topics, Int64GetDatum(c->window_after), Int64GetDatum(upto),
	c->window_snapshot, c->done_snapshot, Int32GetDatum(limit), c->types};
	char		nulls[10] = "         ";

	const char *member = consumer_member_condition(c, 8);
	int			save_nestlevel = NewGUCNestLevel();

	consumer_member_args(c, &argtypes[7], &values[7]);

	/* the arguments are known when the statement is planned: NULLs fold */
	if (c->done_snapshot == (Datum) 0)
		nulls[4] = 'n';
	if (c->types == (Datum) 0)
		nulls[6] = 'n';

	/*
	 * The planner takes the member condition for a rare one (a function's
	 * default selectivity) and would read and sort the whole window for a
	 * page; a member's page is read in position order through an index and
	 * stops at the limit, as the pages of a consumer of one member are.
	 */
	if (member[0] != '\0')
	{
		(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}
	consumer_sql_planned_per_call(psprintf("SELECT e FROM eventstore.events e"
					      " WHERE e.topic OPERATOR(pg_catalog.=) ANY ($1)"
					      "   AND e.position OPERATOR(pg_catalog.>) $2"
					      "   AND e.position OPERATOR(pg_catalog.<=) $3"
					      "   AND ($7 IS NULL OR e.type OPERATOR(pg_catalog.=) ANY ($7))"
					      "   AND pg_catalog.pg_visible_in_snapshot(e.xid, $4)"
					      "   AND ($5 IS NULL OR NOT pg_catalog.pg_visible_in_snapshot(e.xid, $5))%s"
					      " ORDER BY e.position LIMIT $6", member),
			     9, argtypes, values, nulls, SPI_OK_SELECT);
	AtEOXact_GUC(true, save_nestlevel);
	consumer_batch_from_result(b, BATCH_WINDOW);
}
