/*-------------------------------------------------------------------------
 *
 * consumer_run.c
 *		Running an in-database consumer: a batch of events through its
 *		handler function, in the transaction that moves its checkpoint.
 *
 * Which events a consumer gets and what becomes of its progress is the
 * consumer engine's (consumer_engine.c); this file only runs the handler,
 * the hot path, for run_consumer() and the dispatcher workers.
 *
 * A batch runs in one subtransaction: more than 64 subtransactions in one
 * transaction overflow the per-backend cache and make every snapshot in
 * the cluster consult pg_subtrans.  Only when a handler fails is the batch
 * redone more carefully: the events before the failing one in a
 * subtransaction of their own, then the failing event alone.  Its error
 * counts against the consumer, which retries it after an exponential
 * backoff (eventstore.retry_delay) and parks it after max_attempts, then
 * moves on.  The handler's writes and the checkpoint commit together, so
 * each event's effects are written once however often it is delivered.
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
#include "utils/regproc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_run_consumer);


/* A batch's largest size: that of batch_size (create_consumer). */
#define MAX_BATCH_EVENTS 10000

/* What runs a consumer's handler. */
typedef struct Runner
{
	Consumer	c;
	Oid			handler;		/* the handler function */
	TupleDesc	event_desc;		/* eventstore.event */
} Runner;

/*
 * Runs the handler on events [from, to) of b in one subtransaction.
 * Returns to when all succeeded (their effects stay), else the index of the
 * event that failed, with its error message in *error; then nothing of the
 * range is kept.  A query cancel is not a handler failure: it propagates.
 */
static int
handle_range(Runner *r, Batch *b, int from, int to, char **error)
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

			stats_count_text(b->events[current].topic, STATS_HANDLER_CALLS, 1);
			correlation_handling(&b->events[current]);
			(void) call_as_role(r->handler, r->c.run_as,
								stored_event_datum(&b->events[current], r->event_desc),
								false, &isnull);
			correlation_handling(NULL);
			MemoryContextReset(per_event);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		correlation_handling(NULL);
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			PG_RE_THROW();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		stats_count_text(b->events[current].topic, STATS_HANDLER_FAILURES, 1);
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
park(Runner *r, Batch *b, int i, int attempts, const char *error)
{
	consumer_park(&r->c, b, i, i + 1, attempts, error);
	ereport(WARNING,
			(errmsg("consumer \"%s\" parked event at position " INT64_FORMAT " after %d attempts",
					r->c.name, b->events[i].position, attempts),
			 errdetail("Last error: %s", error)));
}

/*
 * Runs the handler over a window batch as described at the top of the
 * file and records the outcome.  Returns the events done (handled or
 * parked); *retry_later when it stopped at a failing event.
 */
static int
handle_window_batch(Runner *r, Batch *b, bool *retry_later)
{
	Consumer   *c = &r->c;
	int			done = 0;
	int64		handled = 0;
	int			end = b->n;
	char	   *last_error = NULL;

	*retry_later = false;
	while (done < b->n)
	{
		char	   *error = NULL;
		int			failed = handle_range(r, b, done, end, &error);

		if (failed == end)
		{
			handled += end - done;
			if (end > done)
				c->attempts = 0;
			done = end;
			end = b->n;
			continue;
		}
		if (failed > done)
		{
			/* keep the events before the failure, then meet it again */
			end = failed;
			continue;
		}
		c->attempts++;
		last_error = error;
		if (c->attempts < c->max_attempts)
		{
			*retry_later = true;
			break;
		}
		park(r, b, done, c->attempts, error);
		c->attempts = 0;
		done++;
		end = b->n;
	}
	consumer_record(c, b, done, handled, last_error,
					*retry_later ? consumer_retry_delay_ms(c->attempts) : -1);
	return done;
}

/*
 * Parked events that replay_parked() asked to deliver again: each goes
 * through the handler on its own.  Success removes it from parked; failure
 * parks it again with the new error.
 */
static int
handle_replay_batch(Runner *r, Batch *b)
{
	int			handled = 0;

	for (int i = 0; i < b->n; i++)
	{
		char	   *error = NULL;

		if (handle_range(r, b, i, i + 1, &error) == i + 1)
		{
			/* the successes come first, where consumer_record looks */
			if (i != handled)
			{
				StoredEvent tmp = b->events[handled];

				b->events[handled] = b->events[i];
				b->events[i] = tmp;
			}
			handled++;
			continue;
		}
		consumer_park(&r->c, b, i, i + 1, 1, error);
	}
	consumer_record(&r->c, b, handled, handled, NULL, -1);
	return b->n;
}

/*
 * Runs one batch of at most limit events of a member of an in-database
 * consumer, in the current transaction; returns the events taken (handled
 * or parked), 0 when there was nothing to do or the member is busy, gone or
 * backing off.  *full tells whether the batch was cut at its size (more
 * events may be waiting).  Must be called inside SPI_connect, as the owner
 * role.
 */
static int
run_batch(const char *name, MemberRef ref, Oid caller, int limit, bool *stop, bool *full)
{
	Runner		r;
	Batch		b = {0};
	bool		retry_later = false;
	int			n;

	*stop = true;
	*full = false;
	if (!consumer_lock(name, CONSUMER_IN_DATABASE, ref, true, &r.c))
		return 0;
	check_consumer_role(caller, r.c.run_as, "run", name);
	consumer_check_topics(&r.c);
	if (r.c.backing_off)
		return 0;
	r.handler = DatumGetObjectId(DirectFunctionCall1(regprocedurein,
													 CStringGetDatum(r.c.handler_name)));
	limit = Min(limit, r.c.batch_size);
	if (!consumer_next_batch(&r.c, limit, &b))
		return 0;
	r.event_desc = event_type_desc();
	*full = b.n >= limit;
	if (b.kind == BATCH_REPLAY)
	{
		n = handle_replay_batch(&r, &b);
		*stop = false;
	}
	else
	{
		n = handle_window_batch(&r, &b, &retry_later);
		*stop = retry_later;
	}
	batch_free(&b);
	return n;
}

/*
 * Runs member ref of an in-database consumer for up to max_events events
 * (one batch when max_events is 0, until nothing is left when it is
 * negative) in the current transaction, as caller; returns the events
 * taken.
 */
static int64
run_member(const char *name, MemberRef ref, Oid caller, int64 max_events)
{
	int64		total = 0;

	for (;;)
	{
		int			limit = max_events > 0 ? (int) Min(max_events - total, MAX_BATCH_EVENTS) :
			MAX_BATCH_EVENTS;
		bool		stop;
		bool		full;
		int			n = run_batch(name, ref, caller, limit, &stop, &full);

		total += n;
		if (n == 0 || stop || max_events == 0 || (max_events > 0 && total >= max_events))
			break;
		CHECK_FOR_INTERRUPTS();
	}
	return total;
}

/*
 * Runs every member of an in-database consumer, one after the other (the
 * retiring ones of a change of the member count first), for up to
 * max_events events in all (until nothing is left when it is negative) in
 * the current transaction: run_consumer().  The current user must be a
 * member of the consumer's role: the handler runs as that role.
 */
int64
consumer_run(const char *name, int64 max_events)
{
	AsOwner		as;
	int64		total = 0;
	int			n;
	int			members;
	MemberRef  *refs;

	as_owner_begin(&as);
	refs = consumer_member_refs(name, -1, false, &n, &members);
	for (int i = 0; i < n && (max_events < 0 || total < max_events); i++)
		total += run_member(name, refs[i], as.caller,
							max_events < 0 ? -1 : max_events - total);
	as_owner_end(&as);
	return total;
}

/*
 * One batch of one member of an in-database consumer, in the current
 * transaction: the dispatcher's unit of work.  *full tells whether the
 * batch was cut at the consumer's batch size.
 */
int64
consumer_run_member(const ConsumerTask *task, bool *full)
{
	AsOwner		as;
	bool		stop;
	int64		n;

	as_owner_begin(&as);
	n = run_batch(task->name, task->ref, as.caller, MAX_BATCH_EVENTS, &stop, full);
	as_owner_end(&as);
	return n;
}

/* eventstore.run_consumer(name text, max_events integer DEFAULT NULL) RETURNS bigint */
Datum
eventstore_run_consumer(PG_FUNCTION_ARGS)
{
	char	   *name;
	int64		max_events = -1;

	refuse_on_standby("eventstore.run_consumer");
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
