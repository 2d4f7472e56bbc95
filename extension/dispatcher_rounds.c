/*-------------------------------------------------------------------------
 *
 * dispatcher_rounds.c
 *		A dispatcher worker's round of in-database consumers.
 *
 * Every worker runs the in-database consumers: one batch per member of a
 * consumer per transaction, round after round while any of them made
 * progress (the loop is in dispatcher.c).  A worker that finds a member's
 * row locked skips it (another worker has it), so no two workers ever run
 * the same member, and the members of one consumer run on different
 * workers at the same time; worker i starts its rounds at the i-th member
 * so that they spread out.  An error that escapes a consumer (its handler was dropped,
 * say) is logged and recorded in the consumer's row, which backs off; the
 * other consumers go on.  When there is no in-database consumer at all,
 * commits do not trigger rounds; the fallback poll looks for new consumers.
 *
 * Which members are due, and running one batch, are the consumer files'
 * (consumers_due(), consumer_run_member()); this file only calls them, each in a
 * transaction of its own, and survives a DROP EXTENSION that commits while
 * it lists or runs them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "eventstore.h"

/*
 * The members of in-database consumers to run (ConsumerTask), or NIL when the extension is absent
 * (or was dropped meanwhile); see consumers_due() for *any and *next_retry.
 * Any other error ends the worker, which the launcher starts again.
 */
static List *
list_consumers(MemoryContext cxt, bool *any, TimestampTz *next_retry, bool *installed)
{
	MemoryContext caller = CurrentMemoryContext;
	List	   *volatile names = NIL;

	*any = false;
	*next_retry = 0;
	*installed = false;
	PG_TRY();
	{
		dispatcher_begin_transaction("eventstore: listing consumers");
		if (OidIsValid(get_extension_oid("eventstore", true)))
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			*installed = true;
			names = consumers_due(any, next_retry);
			MemoryContextSwitchTo(old);
		}
		dispatcher_commit_transaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata = dispatcher_catch_error(caller);

		if (dispatcher_extension_installed())
			ReThrowError(edata);
		FreeErrorData(edata);
		names = NIL;
		*installed = false;
		*any = false;
		*next_retry = 0;
	}
	PG_END_TRY();
	return names;
}

/*
 * After an error that escaped a consumer's run, in a transaction of its
 * own: see consumer_record_error().
 */
static bool
record_consumer_error(const ConsumerTask *task, const char *message)
{
	bool		found;

	dispatcher_begin_transaction("eventstore: recording a consumer error");
	SPI_connect();
	found = consumer_record_error(task->name, task->ref, message);
	SPI_finish();
	dispatcher_commit_transaction();
	return found;
}

/*
 * One batch of one member in its own transaction; events taken, and in
 * *full whether the batch was cut at its size.
 */
static int64
run_one_batch(const ConsumerTask *task, bool *full)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *activity = psprintf("eventstore: running consumer %s member %d",
									task->name, task->ref.member);
	int64		n = 0;

	*full = false;
	PG_TRY();
	{
		dispatcher_begin_transaction(activity);
		n = consumer_run_member(task, full);
		dispatcher_commit_transaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata = dispatcher_catch_error(cxt);

		/*
		 * A consumer dropped since the round began, or the whole extension,
		 * is no failure.
		 */
		if (dispatcher_extension_installed() &&
			record_consumer_error(task, edata->message))
			ereport(LOG,
					(errmsg("eventstore consumer \"%s\" failed: %s", task->name,
							edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	pfree(activity);
	return n;
}

/*
 * One round: a batch of every due consumer, starting at the worker's own
 * offset.  Returns the events the consumers took; *any tells whether
 * there is an in-database consumer at all, *next_retry when the first one
 * that is backing off is due, *installed whether the extension is there,
 * *full whether a batch was cut at its size (events are waiting already).
 */
int64
dispatcher_run_consumers(int worker, MemoryContext round_cxt, bool *any,
						 TimestampTz *next_retry, bool *installed, bool *full)
{
	List	   *names;
	int			n;
	int64		taken = 0;

	*full = false;
	MemoryContextReset(round_cxt);
	names = list_consumers(round_cxt, any, next_retry, installed);
	if (*installed)
		stats_count(NULL, 0, STATS_DISPATCHER_ROUNDS, 1);
	n = list_length(names);
	for (int k = 0; k < n; k++)
	{
		const ConsumerTask *task = list_nth(names, (k + worker) % n);
		bool		cut;

		CHECK_FOR_INTERRUPTS();
		taken += run_one_batch(task, &cut);
		*full |= cut;
	}
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return taken;
}
