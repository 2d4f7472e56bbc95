/*-------------------------------------------------------------------------
 *
 * consumer_engine.c
 *		The one consumer protocol: locking a consumer, its snapshot
 *		windows, batches and leases, retries with backoff, parking and the
 *		replay of parked events.
 *
 * In-database consumers (consumer_run.c: a handler function run by the
 * dispatcher or run_consumer) and outside consumers (consumer_api.c:
 * poll, ack, nack from a daemon) differ only in who runs the handler;
 * everything about which events a consumer gets, and what happens to its
 * progress when they succeed or fail, is here.  All of it runs inside
 * SPI_connect, as the extension's owner.
 *
 * The windows themselves, how a member's next window is found and paged,
 * are in consumer_windows.c.
 *
 * A consumer is split into members (consumer_members.c): an event belongs
 * to one member by a hash of its stream, and each member has its own
 * progress, lease and retries, in its row of eventstore.members.  What
 * follows is about one member; a Consumer here is a consumer's settings
 * together with one member's progress.
 *
 * Progress is a pair of transaction snapshots (docs/architecture.md,
 * "Consumers").  Events whose transaction is visible in done_snapshot have
 * been delivered.  The open window is what is visible in window_snapshot
 * and not in done_snapshot, paged by position; window_after is the last
 * position delivered inside it.  When the window is drained,
 * window_snapshot becomes done_snapshot.  An event whose position was taken
 * before others but which committed after them simply falls into a later
 * window: nothing is skipped.  A new or reset consumer has no done
 * snapshot; its first window is every event after start_after.
 *
 * A batch is either a page of the open window or parked events that
 * replay_parked() asked to deliver again (those go first).  An outside
 * consumer's batch is leased (batch_id, batch_kind, batch_upto,
 * batch_attempt, leased_until) until it is acked or nacked or the lease
 * runs out; an in-database consumer handles its batch in the transaction
 * that takes it and records the outcome at once, so it leases nothing.
 *
 * Failures: a failed window batch (an outside nack, an unacked lease, an
 * in-database handler error) counts an attempt against the consumer and is
 * retried after an exponential backoff (eventstore.retry_delay); after
 * max_attempts its events are parked and the consumer moves on.  A parked
 * event replayed and failing again goes back to parked.
 *
 * Members retire: set_consumer_members gives the current members a fence
 * snapshot and starts a new generation from it.  A retiring member takes
 * the fence instead of a new snapshot for its windows and deletes its row
 * once it has delivered up to it; the new generation waits (Consumer.waiting)
 * until no older member is left.
 *
 * Locking: every state change holds the member's row lock (FOR UPDATE) and
 * the consumer's row in eventstore.consumers shared, for the rest of the
 * transaction.  The dispatcher, run_consumer and a poll of any member take
 * them with SKIP LOCKED (a busy member is somebody else's work); a poll of
 * one member, ack and nack wait.  The SQL functions that change a consumer
 * (set_consumer_members, reset_consumer, drop_consumer) lock the
 * consumer's row for update, which waits for every batch in flight.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "eventstore.h"

/* Longest backoff between two attempts at a failing batch or event. */
#define MAX_RETRY_DELAY_MS (3600 * 1000)

/*
 * Where the progress of a consumer's members is (catalog.c says which):
 * since 1.3 a row per member in eventstore.members, keyed by the consumer's
 * name ($1), the generation ($2) and the member ($3); before, the
 * consumer's own row, keyed by its name, which an installation not updated
 * yet still has.  The statements of this file pass all three keys either
 * way and their own arguments from $4 on.
 */
#define PROGRESS_TABLE() \
	(eventstore_consumers_have_members() ? "eventstore.members" : "eventstore.consumers")
#define PROGRESS_KEY() \
	(eventstore_consumers_have_members() \
	 ? "consumer OPERATOR(pg_catalog.=) $1 AND generation OPERATOR(pg_catalog.=) $2" \
	   " AND member OPERATOR(pg_catalog.=) $3" \
	 : "name OPERATOR(pg_catalog.=) $1")

/*
 * The columns of a consumer's settings, in eventstore.consumers: then
 * types (1.2) and members (1.3), or what stands for them before.
 */
#define SETTINGS_COLUMNS \
	"handler, run_as::pg_catalog.oid, topics, batch_size, max_attempts"
#define SETTINGS_NATTS 7

/* The columns of a member's progress, and of the member itself. */
#define PROGRESS_COLUMNS \
	"start_after, done_snapshot, window_snapshot, window_after," \
	" batch_id, batch_kind, batch_upto, batch_attempt," \
	" coalesce(leased_until OPERATOR(pg_catalog.>) pg_catalog.now(), false)," \
	" attempts, coalesce(retry_at OPERATOR(pg_catalog.>) pg_catalog.now(), false)," \
	" last_error"
#define PROGRESS_NATTS 12
#define MEMBER_COLUMNS \
	"generation, member, member_count, fence_snapshot," \
	" fence_floor, window_floor, done_floor"
#define MEMBER_COLUMNS_BEFORE_1_3 \
	"0, 0, 1, NULL::pg_catalog.pg_snapshot, NULL::pg_catalog.int8, NULL::pg_catalog.int8," \
	" NULL::pg_catalog.int8"
#define MEMBER_NATTS 7

static const char *
settings_columns(void)
{
	if (eventstore_consumers_have_members())
		return SETTINGS_COLUMNS ", types, members";
	if (eventstore_consumers_have_types())
		return SETTINGS_COLUMNS ", types, 1";
	return SETTINGS_COLUMNS ", NULL::pg_catalog.text[], 1";
}

/* What an UPDATE of a member's progress returns. */
static const char *
progress_columns(void)
{
	return eventstore_consumers_have_members()
		? PROGRESS_COLUMNS ", " MEMBER_COLUMNS
		: PROGRESS_COLUMNS ", " MEMBER_COLUMNS_BEFORE_1_3;
}

/*
 * Runs one of the engine's statements, a lookup or write by key, with its
 * kept generic plan (saved_plans.c): the engine's bookkeeping is a handful
 * of statements per batch, and parsing and planning them each time cost
 * more than running them.
 */
void
consumer_sql(const char *query, int nargs, Oid *argtypes, Datum *values,
			 const char *nulls, int expected)
{
	run_plan(kept_plan(query, nargs, argtypes, PLAN_GENERIC), values, nulls, expected);
}

/*
 * Runs a read of events whose plan depends on its arguments (NULLs fold
 * away) and on settings made around the call: parsed once, planned for
 * each call.
 */
void
consumer_sql_planned_per_call(const char *query, int nargs, Oid *argtypes, Datum *values,
							  const char *nulls, int expected)
{
	run_plan(kept_plan(query, nargs, argtypes, PLAN_EACH_CALL), values, nulls, expected);
}

/* Column i (1-based) of row 0 of the last result, copied; (Datum) 0 for NULL. */
Datum
consumer_result_datum(int i, bool *isnull)
{
	Form_pg_attribute att = TupleDescAttr(SPI_tuptable->tupdesc, i - 1);
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i, isnull);

	return *isnull ? (Datum) 0 : datumCopy(d, att->attbyval, att->attlen);
}

/* Reads a consumer's settings from columns 1.. of row 0 (settings_columns()). */
static void
settings_from_result(Consumer *c)
{
	bool		isnull;
	Datum		d;

	d = consumer_result_datum(1, &isnull);
	c->handler_name = isnull ? NULL : TextDatumGetCString(d);
	c->run_as = DatumGetObjectId(consumer_result_datum(2, &isnull));
	c->topics = consumer_result_datum(3, &isnull);
	c->batch_size = DatumGetInt32(consumer_result_datum(4, &isnull));
	c->max_attempts = DatumGetInt32(consumer_result_datum(5, &isnull));
	c->types = consumer_result_datum(6, &isnull);
	c->members = DatumGetInt32(consumer_result_datum(7, &isnull));
}

/* Reads a member's progress from columns from.. of row 0 (progress_columns()). */
static void
progress_from_result(Consumer *c, int from)
{
	bool		isnull;
	Datum		d;
	int			i = from;

	c->start_after = DatumGetInt64(consumer_result_datum(i++, &isnull));
	c->done_snapshot = consumer_result_datum(i++, &isnull);
	c->window_snapshot = consumer_result_datum(i++, &isnull);
	d = consumer_result_datum(i++, &isnull);
	c->window_after = isnull ? 0 : DatumGetInt64(d);
	c->batch_id = DatumGetInt64(consumer_result_datum(i++, &isnull));
	d = consumer_result_datum(i++, &isnull);
	c->batch_kind = isnull ? BATCH_NONE
		: (strcmp(TextDatumGetCString(d), "window") == 0 ? BATCH_WINDOW : BATCH_REPLAY);
	d = consumer_result_datum(i++, &isnull);
	c->batch_upto = isnull ? 0 : DatumGetInt64(d);
	c->batch_attempt = DatumGetInt32(consumer_result_datum(i++, &isnull));
	c->leased = DatumGetBool(consumer_result_datum(i++, &isnull));
	c->attempts = DatumGetInt32(consumer_result_datum(i++, &isnull));
	c->backing_off = DatumGetBool(consumer_result_datum(i++, &isnull));
	d = consumer_result_datum(i++, &isnull);
	c->last_error = isnull ? NULL : TextDatumGetCString(d);
	c->ref.generation = DatumGetInt32(consumer_result_datum(i++, &isnull));
	c->ref.member = DatumGetInt32(consumer_result_datum(i++, &isnull));
	c->member_count = DatumGetInt32(consumer_result_datum(i++, &isnull));
	c->fence_snapshot = consumer_result_datum(i++, &isnull);
	d = consumer_result_datum(i++, &isnull);
	c->fence_floor = isnull ? -1 : DatumGetInt64(d);
	d = consumer_result_datum(i++, &isnull);
	c->window_floor = isnull ? -1 : DatumGetInt64(d);
	d = consumer_result_datum(i++, &isnull);
	c->done_floor = isnull ? -1 : DatumGetInt64(d);
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Raises 42602 unless name is a valid consumer name (see create_consumer).
 * The SQL functions that take a consumer's name check it; run_consumer()
 * and the dispatcher just find no such consumer.
 */
void
check_consumer_name(const char *name)
{
	size_t		len = strlen(name);
	bool		valid = len > 0 && len <= 63 && name[0] >= 'a' && name[0] <= 'z';

	for (size_t i = 1; valid && i < len; i++)
		valid = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
			name[i] == '_';
	if (!valid)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid consumer name"),
				 errdetail("Consumer name %s must match ^[a-z][a-z0-9_]*$ and be at most 63 characters.",
						   quote_literal_cstr(name))));
}

/* Raises 42704: there is no such consumer. */
static void
report_no_consumer(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("consumer \"%s\" does not exist", name),
			 errhint("Create it with eventstore.create_consumer().")));
}

/* Raises 42809 when the consumer is not of the kind asked for. */
static void
check_kind(Consumer *c, ConsumerKind kind)
{
	if (kind == CONSUMER_OUTSIDE && c->handler_name != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("consumer \"%s\" is an in-database consumer", c->name),
				 errdetail("Its handler is %s.", c->handler_name),
				 errhint("Run it with eventstore.run_consumer().")));
	if (kind == CONSUMER_IN_DATABASE && c->handler_name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("consumer \"%s\" is an outside consumer", c->name),
				 errdetail("It has no handler."),
				 errhint("Take its events with eventstore.poll() and eventstore.ack().")));
}

/*
 * Reads a consumer's settings into *c.  With lock, locks its row of
 * eventstore.consumers for the rest of the transaction, exclusively: this
 * waits for every batch of its members in flight, which hold it shared
 * (consumer_lock), and keeps new ones out; for the SQL functions that
 * change a consumer.  Raises 42704 for a consumer that does not exist and
 * 42809 for one of the other kind than asked.
 */
void
consumer_settings(const char *name, ConsumerKind kind, bool lock, Consumer *c)
{
	Datum		values[1] = {CStringGetTextDatum(name)};

	restore_check();
	consumer_sql(psprintf("SELECT %s FROM eventstore.consumers"
					      " WHERE name OPERATOR(pg_catalog.=) $1%s",
					      settings_columns(), lock ? " FOR UPDATE" : ""),
			     1, (Oid[]) {TEXTOID}, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		report_no_consumer(name);
	memset(c, 0, sizeof(Consumer));
	c->name = pstrdup(name);
	settings_from_result(c);
	SPI_freetuptable(SPI_tuptable);
	check_kind(c, kind);
}

/*
 * Locks member ref of the consumer for the rest of the transaction and
 * reads it into *c: the member's row for update, the consumer's row
 * shared (so that set_consumer_members, drop_consumer and reset_consumer
 * wait for the batch).  With skip_locked, returns false when another
 * transaction has the member; otherwise waits for it.  Also false when the
 * member is no longer there (retired, or replaced by a change of the
 * member count).  Raises 42704 for a consumer that does not exist and 42809
 * for one of the other kind than asked.
 */
bool
consumer_lock(const char *name, ConsumerKind kind, MemberRef ref, bool skip_locked,
			  Consumer *c)
{
	Datum		values[CONSUMER_KEY_ARGS] = {CStringGetTextDatum(name),
	Int32GetDatum(ref.generation), Int32GetDatum(ref.member)};
	const char *skip = skip_locked ? " SKIP LOCKED" : "";

	restore_check();
	if (eventstore_consumers_have_members())
		consumer_sql(psprintf("SELECT %s, %s,"
						      "       EXISTS (SELECT FROM eventstore.members o"
						      "                WHERE o.consumer OPERATOR(pg_catalog.=) m.consumer"
						      "                  AND o.generation OPERATOR(pg_catalog.<) m.generation)"
						      "  FROM eventstore.consumers c"
						      "  JOIN eventstore.members m ON m.consumer OPERATOR(pg_catalog.=) c.name"
						      " WHERE c.name OPERATOR(pg_catalog.=) $1"
						      "   AND m.generation OPERATOR(pg_catalog.=) $2"
						      "   AND m.member OPERATOR(pg_catalog.=) $3"
						      "   FOR SHARE OF c%s FOR UPDATE OF m%s",
						      settings_columns(), progress_columns(), skip, skip),
				     CONSUMER_KEY_ARGS, (Oid[]) {TEXTOID, INT4OID, INT4OID}, values, NULL, SPI_OK_SELECT);
	else
		consumer_sql(psprintf("SELECT %s, %s, false FROM eventstore.consumers"
						      " WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE%s",
						      settings_columns(), progress_columns(), skip),
				     CONSUMER_KEY_ARGS, (Oid[]) {TEXTOID, INT4OID, INT4OID}, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		SPI_freetuptable(SPI_tuptable);
		consumer_sql("SELECT FROM eventstore.consumers WHERE name OPERATOR(pg_catalog.=) $1",
				     1, (Oid[]) {TEXTOID}, values, NULL, SPI_OK_SELECT);
		if (SPI_processed == 0)
			report_no_consumer(name);
		SPI_freetuptable(SPI_tuptable);
		return false;
	}
	memset(c, 0, sizeof(Consumer));
	c->name = pstrdup(name);
	settings_from_result(c);
	{
		bool		isnull;

		c->waiting = DatumGetBool(consumer_result_datum(SETTINGS_NATTS + PROGRESS_NATTS + MEMBER_NATTS + 1,
											   &isnull));
	}
	progress_from_result(c, SETTINGS_NATTS + 1);
	check_kind(c, kind);
	return true;
}

/*
 * Raises 42501 unless the consumer's role may still read all its topics:
 * checked on every batch, so that a revoke_topic takes effect at once.  The
 * topics' grants come from the topic cache, which a grant or revoke
 * invalidates; role membership from PostgreSQL's own cache.
 */
void
consumer_check_topics(Consumer *c)
{
	check_topics_readable(c->run_as, DatumGetArrayTypeP(c->topics), "the consumer's role");
}

/*
 * The milliseconds to wait before attempt number attempts + 1: the base
 * delay doubled for each failure, capped.
 */
int64
consumer_retry_delay_ms(int attempts)
{
	int64		delay = eventstore_retry_delay_ms;

	for (int i = 1; i < attempts && delay < MAX_RETRY_DELAY_MS; i++)
		delay *= 2;
	return Min(delay, MAX_RETRY_DELAY_MS);
}

/*
 * Runs an UPDATE of the member's progress, SET set (its arguments from $4
 * on), and reads the progress back into *c.
 */
void
consumer_update(Consumer *c, const char *set, int nargs, Oid *argtypes, Datum *values,
				const char *nulls)
{
	Oid			types[CONSUMER_KEY_ARGS + 8] = {TEXTOID, INT4OID, INT4OID};
	Datum		args[CONSUMER_KEY_ARGS + 8] = {CStringGetTextDatum(c->name),
	Int32GetDatum(c->ref.generation), Int32GetDatum(c->ref.member)};
	char		argnulls[CONSUMER_KEY_ARGS + 9] = "   ";

	if (c->retired)
		return;					/* the member is gone: nothing to record */
	Assert(nargs < 8);
	for (int i = 0; i < nargs; i++)
	{
		types[CONSUMER_KEY_ARGS + i] = argtypes[i];
		args[CONSUMER_KEY_ARGS + i] = values[i];
		argnulls[CONSUMER_KEY_ARGS + i] = nulls ? nulls[i] : ' ';
	}
	argnulls[CONSUMER_KEY_ARGS + nargs] = '\0';
	consumer_sql(psprintf("UPDATE %s SET %s WHERE %s RETURNING %s",
					      PROGRESS_TABLE(), set, PROGRESS_KEY(), progress_columns()),
			     CONSUMER_KEY_ARGS + nargs, types, args, argnulls, SPI_OK_UPDATE_RETURNING);
	progress_from_result(c, 1);
}

/* Takes the rows of the last result ("SELECT e FROM eventstore.events e") into b. */
void
consumer_batch_from_result(Batch *b, BatchKind kind)
{
	b->kind = kind;
	b->n = (int) SPI_processed;
	b->events = palloc(Max(b->n, 1) * sizeof(StoredEvent));
	b->rows = SPI_tuptable;
	for (int i = 0; i < b->n; i++)
	{
		bool		isnull;

		stored_event_from_row(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
											1, &isnull),
							  &b->events[i]);
	}
}

/*------------------------------------------------------------------------
 * Batches
 *------------------------------------------------------------------------
 */

/*
 * The parked events of the consumer marked for replay (replay_parked) that
 * belong to the member, in position order, at most limit; with batch_id > 0
 * those of that leased batch instead.  Parked events that have been
 * removed since (retention, erasure) are gone for good and are forgotten
 * first.
 *
 * Both statements reach events by id, through the primary key.  Their
 * plans are kept for the session, and one made while eventstore.events was
 * small would scan it whole, every batch, until the table is analyzed
 * again: they are planned without sequential scans.
 */
static void
parked_batch(Consumer *c, int limit, int64 batch_id, Batch *b)
{
	Oid			argtypes[5] = {TEXTOID, INT4OID, INT8OID};
	Datum		values[5] = {CStringGetTextDatum(c->name), Int32GetDatum(limit),
	Int64GetDatum(batch_id)};
	int			save_nestlevel = NewGUCNestLevel();

	consumer_member_args(c, &argtypes[3], &values[3]);
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	consumer_sql("DELETE FROM eventstore.parked p"
			     " WHERE p.consumer OPERATOR(pg_catalog.=) $1 AND p.replay"
			     "   AND NOT EXISTS (SELECT FROM eventstore.events e"
			     "                    WHERE e.id OPERATOR(pg_catalog.=) p.event_id)",
			     1, argtypes, values, NULL, SPI_OK_DELETE);
	consumer_sql(psprintf("SELECT e FROM eventstore.parked p"
					      "  JOIN eventstore.events e ON e.id OPERATOR(pg_catalog.=) p.event_id"
					      " WHERE p.consumer OPERATOR(pg_catalog.=) $1"
					      "   AND CASE WHEN $3 OPERATOR(pg_catalog.>) 0"
					      "            THEN p.batch_id OPERATOR(pg_catalog.=) $3 ELSE p.replay END%s"
					      " ORDER BY p.position LIMIT $2",
					      batch_id > 0 ? "" : consumer_member_condition(c, 4)),
			     5, argtypes, values, NULL, SPI_OK_SELECT);
	AtEOXact_GUC(true, save_nestlevel);
	consumer_batch_from_result(b, BATCH_REPLAY);
}

/*
 * The consumer's next batch of at most limit events: parked events asked
 * for again first, else the next page of the open window, opening a new
 * window when the current one is drained.  False when there is nothing.
 */
bool
consumer_next_batch(Consumer *c, int limit, Batch *b)
{
	if (c->waiting)
		return false;			/* older members first: see set_consumer_members */
	if (c->fence_snapshot == (Datum) 0)
	{
		/* a retiring member leaves parked events to the new ones */
		parked_batch(c, limit, 0, b);
		if (b->n > 0)
			return true;
		batch_free(b);
	}
	for (int round = 0; round < 2 && !c->retired; round++)
	{
		if (!consumer_window_open(c))
			return false;
		consumer_window_page(c, PG_INT64_MAX, limit, b);
		b->drained = b->n < limit;
		if (b->n > 0)
			return true;
		batch_free(b);
		consumer_window_close(c);
	}
	return false;
}

/* The events of the batch leased to an outside consumer, again. */
void
consumer_leased_batch(Consumer *c, Batch *b)
{
	if (c->batch_kind == BATCH_WINDOW)
		consumer_window_page(c, c->batch_upto, PG_INT32_MAX, b);
	else
		parked_batch(c, PG_INT32_MAX, c->batch_id, b);
}

/* Frees what a batch holds. */
void
batch_free(Batch *b)
{
	if (b->rows)
		SPI_freetuptable(b->rows);
	if (b->events)
		pfree(b->events);
	memset(b, 0, sizeof(Batch));
}

/* An interval of ms milliseconds, as a Datum. */
Datum
ms_interval_datum(int64 ms)
{
	Interval   *result = palloc0(sizeof(Interval));

	result->time = ms * 1000;
	return IntervalPGetDatum(result);
}

/*
 * Leases batch b to an outside consumer for eventstore.lease_timeout: it is
 * the batch poll() returns until it is acked, nacked or the lease runs out.
 */
void
consumer_lease_batch(Consumer *c, Batch *b)
{
	bool		window = b->kind == BATCH_WINDOW;

	consumer_update(c, psprintf("batch_id = %s, batch_kind = $4,"
					" batch_upto = $5, batch_attempt = 1,"
					" leased_until = pg_catalog.now() OPERATOR(pg_catalog.+) $6,"
					" last_run = pg_catalog.now()",
								eventstore_consumers_have_members()
								? "pg_catalog.nextval('eventstore.batch_ids')"
								: "batch_id OPERATOR(pg_catalog.+) 1"),
					3, (Oid[]) {TEXTOID, INT8OID, INTERVALOID},
					(Datum[]) {CStringGetTextDatum(window ? "window" : "replay"),
				Int64GetDatum(b->n > 0 ? b->events[b->n - 1].position : 0),
				ms_interval_datum(eventstore_lease_timeout_ms)},
					window ? NULL : " n ");
	if (!window)
	{
		Datum	   *ids = palloc(b->n * sizeof(Datum));

		for (int i = 0; i < b->n; i++)
			ids[i] = UUIDPGetDatum(&b->events[i].parts.id);
		consumer_sql("UPDATE eventstore.parked SET batch_id = $2"
				     " WHERE consumer OPERATOR(pg_catalog.=) $1"
				     "   AND event_id OPERATOR(pg_catalog.=) ANY ($3)",
				     3, (Oid[]) {TEXTOID, INT8OID, UUIDARRAYOID},
				     (Datum[]) {CStringGetTextDatum(c->name), Int64GetDatum(c->batch_id),
				     PointerGetDatum(construct_array(ids, b->n, UUIDOID, UUID_LEN, false,
												     TYPALIGN_CHAR))},
				     NULL, SPI_OK_UPDATE);
	}
}

/*
 * Delivers the leased batch once more, after its lease ran out: one more
 * attempt, a new lease.
 */
void
consumer_renew_lease(Consumer *c)
{
	consumer_update(c, "batch_attempt = batch_attempt OPERATOR(pg_catalog.+) 1,"
					" leased_until = pg_catalog.now() OPERATOR(pg_catalog.+) $4,"
					" last_run = pg_catalog.now()",
					1, (Oid[]) {INTERVALOID},
					(Datum[]) {ms_interval_datum(eventstore_lease_timeout_ms)}, NULL);
}

/*
 * Counts a failed delivery of the leased batch, with its error: the batch
 * is held back for the backoff (its lease runs until then).
 */
void
consumer_count_failure(Consumer *c, const char *error)
{
	consumer_update(c, "attempts = attempts OPERATOR(pg_catalog.+) 1, last_error = $4,"
					" leased_until = pg_catalog.now() OPERATOR(pg_catalog.+) $5",
					2, (Oid[]) {TEXTOID, INTERVALOID},
					(Datum[]) {CStringGetTextDatum(error),
				ms_interval_datum(consumer_retry_delay_ms(c->attempts + 1))},
					NULL);
}

/* The consumer looked for work and found none. */
void
consumer_touch(Consumer *c)
{
	consumer_update(c, "last_run = pg_catalog.now()", 0, NULL, NULL, NULL);
}

/*
 * The leased batch was delivered and neither acked nor nacked before its
 * lease ran out: that counts as a failed attempt.
 */
void
consumer_count_expired_lease(Consumer *c)
{
	consumer_update(c, "attempts = attempts OPERATOR(pg_catalog.+) 1,"
					" last_error = pg_catalog.format('batch %s not acked within %s', batch_id, $4)",
					1, (Oid[]) {INTERVALOID},
					(Datum[]) {ms_interval_datum(eventstore_lease_timeout_ms)}, NULL);
}

/*
 * Parks events [from, to) of batch b: each is recorded in eventstore.parked
 * with attempts more attempts and the error, or, already parked (a replay
 * that failed again), has them added.  It is no longer in a batch, and not
 * delivered again until replay_parked() asks.
 */
void
consumer_park(Consumer *c, Batch *b, int from, int to, int attempts, const char *error)
{
	Oid			argtypes[6] = {TEXTOID, UUIDOID, INT8OID, TEXTOID, INT4OID, TEXTOID};

	for (int i = from; i < to; i++)
	{
		Datum		values[6] = {CStringGetTextDatum(c->name),
			UUIDPGetDatum(&b->events[i].parts.id),
			Int64GetDatum(b->events[i].position),
			PointerGetDatum(b->events[i].topic),
			Int32GetDatum(attempts),
		CStringGetTextDatum(error)};

		consumer_sql("INSERT INTO eventstore.parked AS p"
				     "       (consumer, event_id, position, topic, attempts, error)"
				     " VALUES ($1, $2, $3, $4, $5, $6)"
				     " ON CONFLICT ON CONSTRAINT parked_pkey DO UPDATE"
				     "   SET attempts = p.attempts OPERATOR(pg_catalog.+) excluded.attempts,"
				     "       error = excluded.error, parked_at = excluded.parked_at,"
				     "       replay = false, batch_id = NULL",
				     6, argtypes, values, NULL, SPI_OK_INSERT);
		stats_count_text(b->events[i].topic, STATS_PARKED, 1);
	}
}

/*
 * Records how a batch ended: its first done events were handled (or
 * parked), of which handled were handled, and the consumer's failure count
 * is now c->attempts.  A window batch moves the checkpoint past its done
 * events, closing the window when drained and done; a replay batch removes
 * its events handled from parked.  error, when not NULL, becomes
 * last_error; retry_ms >= 0 makes the consumer wait that long.  Any lease
 * ends.
 */
void
consumer_record(Consumer *c, Batch *b, int done, int64 handled, const char *error,
				int64 retry_ms)
{
	bool		window = b->kind == BATCH_WINDOW;
	int64		last = window && done > 0 ? b->events[done - 1].position : 0;
	char		nulls[5] = "    ";

	if (!window && done > 0)
	{
		Datum	   *ids = palloc(done * sizeof(Datum));

		for (int i = 0; i < done; i++)
			ids[i] = UUIDPGetDatum(&b->events[i].parts.id);
		consumer_sql("DELETE FROM eventstore.parked"
				     " WHERE consumer OPERATOR(pg_catalog.=) $1"
				     "   AND event_id OPERATOR(pg_catalog.=) ANY ($2) AND replay",
				     2, (Oid[]) {TEXTOID, UUIDARRAYOID},
				     (Datum[]) {CStringGetTextDatum(c->name),
				     PointerGetDatum(construct_array(ids, done, UUIDOID, UUID_LEN, false,
												     TYPALIGN_CHAR))},
				     NULL, SPI_OK_DELETE);
	}
	nulls[0] = last > 0 ? ' ' : 'n';
	nulls[3] = error ? ' ' : 'n';
	nulls[4] = retry_ms >= 0 ? ' ' : 'n';
	consumer_update(c, "window_after = coalesce($4, window_after),"
					" position = GREATEST(position, $4),"
					" handled = handled OPERATOR(pg_catalog.+) $5,"
					" attempts = $6,"
					" last_error = coalesce($7, last_error),"
					" retry_at = pg_catalog.now() OPERATOR(pg_catalog.+) $8,"
					" batch_kind = NULL, batch_upto = NULL, batch_attempt = 0,"
					" leased_until = NULL, last_run = pg_catalog.now()",
					5, (Oid[]) {INT8OID, INT8OID, INT4OID, TEXTOID, INTERVALOID},
					(Datum[]) {Int64GetDatum(last), Int64GetDatum(handled),
				Int32GetDatum(c->attempts),
				error ? CStringGetTextDatum(error) : (Datum) 0,
				ms_interval_datum(Max(retry_ms, 0))},
					nulls);
	if (window && b->drained && done == b->n)
		consumer_window_close(c);
}

/*
 * After an error that escaped a consumer's run (its handler's errors do
 * not: they are counted and parked above), records it in the consumer's
 * row and makes the consumer wait ten seconds before its next run, so that
 * the dispatcher does not spin on it.  Returns false when the consumer no
 * longer exists (dropped meanwhile, which is what the error was about
 * then).
 */
bool
consumer_record_error(const char *name, MemberRef ref, const char *message)
{
	consumer_sql(psprintf("UPDATE %s"
					      "   SET last_error = $4,"
					      "       retry_at = pg_catalog.now() OPERATOR(pg_catalog.+) interval '10 seconds'"
					      " WHERE %s", PROGRESS_TABLE(), PROGRESS_KEY()),
			     CONSUMER_KEY_ARGS + 1, (Oid[]) {TEXTOID, INT4OID, INT4OID, TEXTOID},
			     (Datum[]) {CStringGetTextDatum(name), Int32GetDatum(ref.generation),
			     Int32GetDatum(ref.member), CStringGetTextDatum(message)},
			     NULL, SPI_OK_UPDATE);
	return SPI_processed > 0;
}
