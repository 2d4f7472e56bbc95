/*-------------------------------------------------------------------------
 *
 * consumer.c
 *		Running an in-database consumer: a batch of events through its
 *		handler, in the transaction that moves its checkpoint.
 *
 * The window bookkeeping (which events a consumer has not seen yet) is SQL:
 * eventstore.open_window(), window_events() and close_window() in the
 * extension script.  This file runs the handler, which is the hot path.
 *
 * A batch runs in one subtransaction (DESIGN.md decision 5: more than 64
 * subtransactions in a transaction overflow the snapshot's subxid cache).
 * Only when a handler fails is the batch redone more carefully: the events
 * before the failing one in a subtransaction of their own, then the failing
 * event alone.  Its error is counted against the consumer; the consumer
 * retries it after an exponential backoff (eventstore.retry_delay) and parks
 * it in eventstore.parked after max_attempts, then moves on.  The handler's
 * writes and the checkpoint commit together, so each event's effects are
 * written once however often it is delivered.
 *
 * Handlers and upcasters run as the role the consumer was created for
 * (consumers.run_as), never as the extension's owner; the bookkeeping runs
 * as the owner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_run_consumer);
PG_FUNCTION_INFO_V1(eventstore_lease_timeout);
PG_FUNCTION_INFO_V1(eventstore_retry_delay);

/* Longest backoff between two attempts at a failing event. */
#define MAX_RETRY_DELAY_MS (3600 * 1000)

typedef struct Consumer
{
	const char *name;
	Oid			handler;
	Oid			run_as;
	int			batch_size;
	int			max_attempts;
	int			attempts;		/* failures of the event at the head */
} Consumer;

/* Events taken for one run of the handler; datums live in the SPI tuptable. */
typedef struct Batch
{
	int			n;
	int64	   *positions;
	Datum	   *ids;
	Datum	   *topics;
	Datum	   *events;			/* eventstore.event */
} Batch;

/* What happened to a batch. */
typedef struct Outcome
{
	int			done;			/* events handled or parked, from the start */
	int			handled;		/* of which handled */
	char	   *error;			/* the last handler error, or NULL */
	bool		retry_later;	/* stopped at a failing event */
} Outcome;

static Datum
text_datum(const char *s)
{
	return PointerGetDatum(cstring_to_text(s));
}

static void
run_sql(const char *query, int nargs, Oid *argtypes, Datum *values,
		const char *nulls, int expected)
{
	int			rc = SPI_execute_with_args(query, nargs, argtypes, values, nulls,
										   false, 0);

	if (rc != expected)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("eventstore consumer statement failed: %s",
								 SPI_result_code_string(rc))));
}

static bool
run_bool(const char *query, const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {text_datum(name)};
	bool		isnull;
	Datum		result;

	run_sql(query, 1, argtypes, values, NULL, SPI_OK_SELECT);
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull && DatumGetBool(result);
}

/*
 * The milliseconds to wait before attempt number attempts + 1: the base
 * delay doubled for each failure, capped.
 */
static int64
retry_delay_ms(int attempts)
{
	int64		delay = eventstore_retry_delay_ms;

	for (int i = 1; i < attempts && delay < MAX_RETRY_DELAY_MS; i++)
		delay *= 2;
	return Min(delay, MAX_RETRY_DELAY_MS);
}

static Interval *
ms_interval(int64 ms)
{
	Interval   *result = palloc0(sizeof(Interval));

	result->time = ms * 1000;
	return result;
}

/* eventstore.lease_timeout() RETURNS interval */
Datum
eventstore_lease_timeout(PG_FUNCTION_ARGS)
{
	PG_RETURN_INTERVAL_P(ms_interval(eventstore_lease_timeout_ms));
}

/* eventstore.retry_delay(attempts integer) RETURNS interval */
Datum
eventstore_retry_delay(PG_FUNCTION_ARGS)
{
	PG_RETURN_INTERVAL_P(ms_interval(retry_delay_ms(PG_GETARG_INT32(0))));
}

/*
 * Locks the consumer's row for this transaction.  false when another
 * transaction holds it (a dispatcher worker or another run_consumer is
 * running it) or when it is backing off after a failure.
 */
static bool
lock_consumer(const char *name, Oid caller, Consumer *c)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {text_datum(name)};
	HeapTuple	row;
	TupleDesc	desc;
	bool		isnull;

	run_sql("SELECT handler IS NULL, handler::pg_catalog.regprocedure::pg_catalog.oid,"
			"       run_as::pg_catalog.oid, batch_size, max_attempts, attempts,"
			"       coalesce(retry_at OPERATOR(pg_catalog.>) pg_catalog.now(), false),"
			"       topics"
			"  FROM eventstore.consumers"
			" WHERE name OPERATOR(pg_catalog.=) $1"
			"   FOR UPDATE SKIP LOCKED",
			1, argtypes, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		run_sql("SELECT FROM eventstore.consumers WHERE name OPERATOR(pg_catalog.=) $1",
				1, argtypes, values, NULL, SPI_OK_SELECT);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("consumer \"%s\" does not exist", name),
					 errhint("Create it with eventstore.create_consumer().")));
		return false;
	}
	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	if (DatumGetBool(SPI_getbinval(row, desc, 1, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("consumer \"%s\" is an outside consumer", name),
				 errdetail("It has no handler."),
				 errhint("Take its events with eventstore.poll() and eventstore.ack().")));
	c->name = name;
	c->handler = DatumGetObjectId(SPI_getbinval(row, desc, 2, &isnull));
	c->run_as = DatumGetObjectId(SPI_getbinval(row, desc, 3, &isnull));
	c->batch_size = DatumGetInt32(SPI_getbinval(row, desc, 4, &isnull));
	c->max_attempts = DatumGetInt32(SPI_getbinval(row, desc, 5, &isnull));
	c->attempts = DatumGetInt32(SPI_getbinval(row, desc, 6, &isnull));
	check_consumer_role(caller, c->run_as, "run", name);
	/* Checked on every batch, so that a revoke_topic takes effect at once. */
	run_sql("SELECT eventstore.check_topics_readable($1, $2, 'the consumer''s role')",
			2, (Oid[]) {OIDOID, TEXTARRAYOID},
			(Datum[]) {ObjectIdGetDatum(c->run_as), SPI_getbinval(row, desc, 8, &isnull)},
			NULL, SPI_OK_SELECT);
	return !DatumGetBool(SPI_getbinval(row, desc, 7, &isnull));
}

/* Reads the rows of (position, id, topic, event) the last query returned. */
static void
take_batch(Batch *b)
{
	SPITupleTable *tuptable = SPI_tuptable;
	bool		isnull;

	b->n = (int) SPI_processed;
	b->positions = palloc(Max(b->n, 1) * sizeof(int64));
	b->ids = palloc(Max(b->n, 1) * sizeof(Datum));
	b->topics = palloc(Max(b->n, 1) * sizeof(Datum));
	b->events = palloc(Max(b->n, 1) * sizeof(Datum));
	for (int i = 0; i < b->n; i++)
	{
		HeapTuple	row = tuptable->vals[i];

		b->positions[i] = DatumGetInt64(SPI_getbinval(row, tuptable->tupdesc, 1, &isnull));
		b->ids[i] = SPI_getbinval(row, tuptable->tupdesc, 2, &isnull);
		b->topics[i] = SPI_getbinval(row, tuptable->tupdesc, 3, &isnull);
		b->events[i] = SPI_getbinval(row, tuptable->tupdesc, 4, &isnull);
	}
}

/*
 * Runs the handler on events [from, to) in one subtransaction.  Returns to
 * when all succeeded (their effects stay), else the index of the event that
 * failed, with its error message in *error; then nothing of the range is
 * kept.  A query cancel is not a handler failure: it propagates.
 */
static int
handle_range(Consumer *c, Batch *b, int from, int to, char **error)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	MemoryContext per_event = AllocSetContextCreate(oldcontext, "eventstore handler call",
													ALLOCSET_DEFAULT_SIZES);
	volatile int current = from;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(per_event);
	PG_TRY();
	{
		for (; current < to; current++)
		{
			bool		isnull;

			(void) call_as_role(c->handler, c->run_as, upcast_event(b->events[current]),
								false, &isnull);
			MemoryContextReset(per_event);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			PG_RE_THROW();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		*error = edata->message ? pstrdup(edata->message) : pstrdup("handler failed");
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextDelete(per_event);
	return current;
}

static void
park_event(Consumer *c, Batch *b, int i, const char *error)
{
	Oid			argtypes[6] = {TEXTOID, UUIDOID, INT8OID, TEXTOID, INT4OID, TEXTOID};
	Datum		values[6] = {text_datum(c->name), b->ids[i], Int64GetDatum(b->positions[i]),
	b->topics[i], Int32GetDatum(c->attempts), text_datum(error)};

	run_sql("INSERT INTO eventstore.parked AS p"
			"       (consumer, event_id, position, topic, attempts, error)"
			" VALUES ($1, $2, $3, $4, $5, $6)"
			" ON CONFLICT ON CONSTRAINT parked_pkey DO UPDATE"
			"   SET attempts = p.attempts OPERATOR(pg_catalog.+) excluded.attempts,"
			"       error = excluded.error, parked_at = excluded.parked_at,"
			"       replay = false, batch_id = NULL",
			6, argtypes, values, NULL, SPI_OK_INSERT);
	ereport(WARNING,
			(errmsg("consumer \"%s\" parked event at position " INT64_FORMAT " after %d attempts",
					c->name, b->positions[i], c->attempts),
			 errdetail("Last error: %s", error)));
}

/*
 * Runs the handler over a batch as described at the top of the file.
 * c->attempts is the failure count of the event at the head, and is kept
 * up to date.
 */
static Outcome
handle_batch(Consumer *c, Batch *b)
{
	Outcome		out = {0};
	int			end = b->n;

	while (out.done < b->n)
	{
		char	   *error = NULL;
		int			failed = handle_range(c, b, out.done, end, &error);

		if (failed == end)
		{
			out.handled += end - out.done;
			if (end > out.done)
				c->attempts = 0;
			out.done = end;
			end = b->n;
			continue;
		}
		if (failed > out.done)
		{
			/* keep the events before the failure, then meet it again */
			end = failed;
			continue;
		}
		c->attempts++;
		out.error = error;
		if (c->attempts < c->max_attempts)
		{
			out.retry_later = true;
			break;
		}
		park_event(c, b, out.done, error);
		c->attempts = 0;
		out.done++;
		end = b->n;
	}
	return out;
}

/* Records a batch's outcome in the consumer's row. */
static void
record_outcome(Consumer *c, Batch *b, Outcome *out, bool drained)
{
	Oid			argtypes[6] = {TEXTOID, INT8OID, INT8OID, INT4OID, TEXTOID, INT8OID};
	Datum		values[6];
	char		nulls[7] = "      ";

	values[0] = text_datum(c->name);
	values[1] = Int64GetDatum(out->done > 0 ? b->positions[out->done - 1] : 0);
	nulls[1] = out->done > 0 ? ' ' : 'n';
	values[2] = Int64GetDatum(out->handled);
	values[3] = Int32GetDatum(c->attempts);
	values[4] = out->error ? text_datum(out->error) : (Datum) 0;
	nulls[4] = out->error ? ' ' : 'n';
	values[5] = Int64GetDatum(out->retry_later ? retry_delay_ms(c->attempts) : 0);
	nulls[5] = out->retry_later ? ' ' : 'n';

	run_sql("UPDATE eventstore.consumers"
			"   SET window_after = coalesce($2, window_after),"
			"       position = GREATEST(position, $2),"
			"       handled = handled OPERATOR(pg_catalog.+) $3,"
			"       attempts = $4,"
			"       last_error = coalesce($5, last_error),"
			"       retry_at = pg_catalog.now() OPERATOR(pg_catalog.+)"
			"                  pg_catalog.make_interval(secs => $6 OPERATOR(pg_catalog./) 1000.0),"
			"       last_run = pg_catalog.now()"
			" WHERE name OPERATOR(pg_catalog.=) $1",
			6, argtypes, values, nulls, SPI_OK_UPDATE);
	if (drained && out->done == b->n)
		run_sql("SELECT eventstore.close_window($1)", 1, argtypes, values, NULL,
				SPI_OK_SELECT);
}

/*
 * Parked events that replay_parked() asked to deliver again: each goes
 * through the handler on its own.  Success removes it from parked; failure
 * leaves it there with the new error.  Returns how many were taken.
 */
static int
replay_parked(Consumer *c, int limit)
{
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {text_datum(c->name), Int32GetDatum(limit)};
	Batch		b;

	/* events removed since they were parked (retention) are gone for good */
	run_sql("DELETE FROM eventstore.parked p"
			" WHERE p.consumer OPERATOR(pg_catalog.=) $1 AND p.replay"
			"   AND NOT EXISTS (SELECT FROM eventstore.events e"
			"                    WHERE e.id OPERATOR(pg_catalog.=) p.event_id)",
			1, argtypes, values, NULL, SPI_OK_DELETE);
	run_sql("SELECT p.position, p.event_id, p.topic, e"
			"  FROM eventstore.parked p, LATERAL eventstore.get(p.event_id) e"
			" WHERE p.consumer OPERATOR(pg_catalog.=) $1 AND p.replay"
			" ORDER BY p.position LIMIT $2",
			2, argtypes, values, NULL, SPI_OK_SELECT);
	take_batch(&b);
	for (int i = 0; i < b.n; i++)
	{
		Oid			types[3] = {TEXTOID, UUIDOID, TEXTOID};
		Datum		args[3] = {values[0], b.ids[i], (Datum) 0};
		char	   *error = NULL;

		if (handle_range(c, &b, i, i + 1, &error) == i + 1)
		{
			run_sql("DELETE FROM eventstore.parked"
					" WHERE consumer OPERATOR(pg_catalog.=) $1"
					"   AND event_id OPERATOR(pg_catalog.=) $2",
					2, types, args, NULL, SPI_OK_DELETE);
			continue;
		}
		args[2] = text_datum(error);
		run_sql("UPDATE eventstore.parked"
				"   SET replay = false, error = $3,"
				"       attempts = attempts OPERATOR(pg_catalog.+) 1"
				" WHERE consumer OPERATOR(pg_catalog.=) $1"
				"   AND event_id OPERATOR(pg_catalog.=) $2",
				3, types, args, NULL, SPI_OK_UPDATE);
	}
	return b.n;
}

/*
 * Fetches the next page of the consumer's window, opening a new window when
 * the current one is drained.  *drained tells whether the page ends the
 * window.
 */
static void
next_page(Consumer *c, int limit, Batch *b, bool *drained)
{
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {text_datum(c->name), Int32GetDatum(limit)};

	b->n = 0;
	for (int round = 0; round < 2; round++)
	{
		if (!run_bool("SELECT eventstore.open_window($1)", c->name))
			return;
		run_sql("SELECT w.position, w.id, w.topic, w"
				"  FROM eventstore.window_events($1, NULL, $2) w",
				2, argtypes, values, NULL, SPI_OK_SELECT);
		take_batch(b);
		*drained = b->n < limit;
		if (b->n > 0)
			return;
		run_sql("SELECT eventstore.close_window($1)", 1, argtypes, values, NULL,
				SPI_OK_SELECT);
	}
}

/*
 * Runs one batch of at most limit events of an in-database consumer, in the
 * current transaction; returns the events taken (handled or parked), 0 when
 * there was nothing to do or the consumer is busy or backing off.  Must be
 * called inside SPI_connect, as the owner role.
 */
static int
run_batch(const char *name, Oid caller, int limit, bool *stop)
{
	Consumer	c;
	Batch		b;
	Outcome		out;
	bool		drained = false;
	int			replayed;

	*stop = true;
	if (!lock_consumer(name, caller, &c))
		return 0;
	limit = Min(limit, c.batch_size);

	replayed = replay_parked(&c, limit);
	if (replayed > 0)
	{
		*stop = false;
		return replayed;
	}
	next_page(&c, limit, &b, &drained);
	if (b.n == 0)
		return 0;
	out = handle_batch(&c, &b);
	record_outcome(&c, &b, &out, drained);
	*stop = out.retry_later;
	return out.done;
}

/*
 * Runs an in-database consumer for up to max_events events (one batch when
 * max_events is 0, until nothing is left when it is negative) in the current
 * transaction.  Used by run_consumer() and by the dispatcher workers.  The
 * current user must be a member of the consumer's role: the handler runs as
 * that role.
 */
int64
consumer_run(const char *name, int64 max_events)
{
	AsOwner		as;
	int64		total = 0;

	as_owner_begin(&as);
	for (;;)
	{
		int			limit = max_events > 0 ? (int) Min(max_events - total, 10000) : 10000;
		bool		stop;
		int			n = run_batch(name, as.caller, limit, &stop);

		total += n;
		if (n == 0 || stop || max_events == 0 || (max_events > 0 && total >= max_events))
			break;
		CHECK_FOR_INTERRUPTS();
	}
	as_owner_end(&as);
	return total;
}

/*
 * The names of the in-database consumers that are not backing off, in name
 * order, allocated in the caller's memory context.  *any tells whether
 * there is any in-database consumer at all, *next_retry when the first one
 * backing off is due (0 when none is).
 */
List *
consumers_due(bool *any, TimestampTz *next_retry)
{
	MemoryContext caller = CurrentMemoryContext;
	List	   *names = NIL;
	AsOwner		as;

	as_owner_begin(&as);
	run_sql("SELECT name, retry_at OPERATOR(pg_catalog.>) pg_catalog.now(), retry_at"
			"  FROM eventstore.consumers"
			" WHERE handler IS NOT NULL"
			" ORDER BY name",
			0, NULL, NULL, NULL, SPI_OK_SELECT);
	*any = SPI_processed > 0;
	*next_retry = 0;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		bool		isnull;
		bool		waiting = DatumGetBool(SPI_getbinval(row, SPI_tuptable->tupdesc, 2, &isnull)) &&
			!isnull;

		if (waiting)
		{
			TimestampTz at = DatumGetTimestampTz(SPI_getbinval(row, SPI_tuptable->tupdesc, 3,
															   &isnull));

			if (*next_retry == 0 || at < *next_retry)
				*next_retry = at;
		}
		else
		{
			char	   *name = SPI_getvalue(row, SPI_tuptable->tupdesc, 1);
			MemoryContext old = MemoryContextSwitchTo(caller);

			names = lappend(names, pstrdup(name));
			MemoryContextSwitchTo(old);
		}
	}
	as_owner_end(&as);
	return names;
}

/* eventstore.run_consumer(name text, max_events integer DEFAULT NULL) RETURNS bigint */
Datum
eventstore_run_consumer(PG_FUNCTION_ARGS)
{
	char	   *name;
	int64		max_events = -1;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("consumer name must not be null"),
				 errdetail("Argument \"name\" is NULL.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!PG_ARGISNULL(1))
	{
		max_events = PG_GETARG_INT32(1);
		if (max_events < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid max_events"),
					 errdetail("Argument \"max_events\" is " INT64_FORMAT "; it must be at least 1 or NULL.",
							   max_events)));
	}
	PG_RETURN_INT64(consumer_run(name, max_events));
}
