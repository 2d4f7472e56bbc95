/*-------------------------------------------------------------------------
 *
 * inbox.c
 *		eventstore.inbox: the way in for imports, by COPY or INSERT.
 *
 * The inbox is a view of (topic, stream, envelope) that holds nothing.
 * Its triggers take the rows inserted into it and append them:
 *
 *	COPY eventstore.inbox (topic, envelope) FROM STDIN
 *
 * COPY parses its input straight into the view's columns, so an envelope
 * costs one jsonb_in and no SQL literal, which is what makes an import as
 * fast as COPY into a table (append_batch's jsonb[] literal costs twice
 * that before append_batch even runs).
 *
 * - The INSTEAD OF row trigger checks each envelope as it arrives (its
 *   error names the row, and COPY's context the input line) and keeps it
 *   in a group.  A group holds up to INBOX_GROUP events of one topic and
 *   stream; it is appended like an append_batch of its events
 *   (append_checked_batch) when it is full, when a row of another topic
 *   or stream comes, and at the end of the statement (the AFTER
 *   STATEMENT trigger).
 * - So a statement appends in input order, and all or nothing: an error
 *   in any row rolls it all back, as any failed statement does.
 * - Duplicates are discarded as by append_batch, within a group, across
 *   groups and against the events stored before.
 * - The topic's append privilege is checked as append checks it; the
 *   statement's row count, and pg_stat_progress_copy for a COPY, count
 *   the rows taken, duplicates included.
 *
 * The triggers fire whatever session_replication_role says (the extension
 * script marks them so), so that a bulk load run as "replica" loses nothing.
 *
 * A statement's group lives from its BEFORE STATEMENT trigger to its
 * AFTER STATEMENT trigger.  Statements can nest (a function called by one
 * can insert into the inbox), so the groups form a stack; a (sub)
 * transaction's abort drops those its statements left.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_inbox_begin);
PG_FUNCTION_INFO_V1(eventstore_inbox_row);
PG_FUNCTION_INFO_V1(eventstore_inbox_end);

/* Most rows appended at once, as COPY inserts at most 1000 rows at once. */
#define INBOX_GROUP 1000

/* The inbox's columns, in the view's order. */
enum
{
	INBOX_TOPIC = 1,
	INBOX_STREAM,
	INBOX_ENVELOPE
};

/* The events of one statement waiting to be appended. */
typedef struct InboxGroup
{
	MemoryContext cxt;			/* the statement's; the group below */
	MemoryContext events_cxt;	/* the waiting events, emptied per append */
	SubTransactionId subxid;	/* the statement's (sub)transaction */
	struct InboxGroup *outer;	/* the group of an enclosing statement */
	char	   *topic;			/* of the waiting events */
	char	   *stream;			/* of the waiting events, NULL: none */
	int			nrows;			/* rows taken by the statement */
	int			nwaiting;
	EnvelopeParts waiting[INBOX_GROUP];
} InboxGroup;

/*
 * The group of the innermost statement inserting into the inbox, or NULL.
 * Statement-level state has no other home: the row trigger is called once
 * per row with nothing that lasts the statement.
 */
static InboxGroup *current_group = NULL;

static void
drop_group(void)
{
	InboxGroup *group = current_group;

	current_group = group->outer;
	MemoryContextDelete(group->cxt);
}

static void
inbox_xact_callback(XactEvent event, void *arg)
{
	/* the groups' memory goes with TopTransactionContext */
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
		current_group = NULL;
}

static void
inbox_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	while (current_group != NULL && current_group->subxid >= mySubid)
		drop_group();
}

static void
check_trigger_call(FunctionCallInfo fcinfo, const char *name)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s() must be called as a trigger", name)));
}

/* Appends the waiting events, if any, and empties the group. */
static void
append_waiting(InboxGroup *group)
{
	if (group->nwaiting == 0)
		return;
	PG_TRY();
	{
		append_checked_batch(group->topic, group->stream, group->waiting,
							 group->nwaiting, group->nrows - group->nwaiting + 1);
	}
	PG_CATCH();
	{
		stats_count_current_error(group->topic);
		PG_RE_THROW();
	}
	PG_END_TRY();
	group->nwaiting = 0;
	MemoryContextReset(group->events_cxt);
	group->topic = NULL;
	group->stream = NULL;
}

/* Whether a row's topic and stream are those of the waiting events. */
static bool
same_destination(InboxGroup *group, const char *topic, const char *stream)
{
	if (group->nwaiting == 0)
		return false;
	if (strcmp(group->topic, topic) != 0)
		return false;
	if (stream == NULL || group->stream == NULL)
		return stream == group->stream;
	return strcmp(group->stream, stream) == 0;
}

/* BEFORE INSERT FOR EACH STATEMENT: a new group for the statement. */
Datum
eventstore_inbox_begin(PG_FUNCTION_ARGS)
{
	static bool callbacks_registered = false;
	MemoryContext cxt;
	InboxGroup *group;

	check_trigger_call(fcinfo, "inbox_begin");
	if (!callbacks_registered)
	{
		RegisterXactCallback(inbox_xact_callback, NULL);
		RegisterSubXactCallback(inbox_subxact_callback, NULL);
		callbacks_registered = true;
	}
	cxt = AllocSetContextCreate(TopTransactionContext, "eventstore inbox",
								ALLOCSET_DEFAULT_SIZES);
	group = MemoryContextAllocZero(cxt, sizeof(InboxGroup));
	group->cxt = cxt;
	group->events_cxt = AllocSetContextCreate(cxt, "eventstore inbox events",
											  ALLOCSET_DEFAULT_SIZES);
	group->subxid = GetCurrentSubTransactionId();
	group->outer = current_group;
	current_group = group;
	return PointerGetDatum(NULL);
}

/* The text of a column that must not be NULL. */
static text *
required_column(HeapTuple row, TupleDesc desc, int attnum, const char *name)
{
	bool		isnull;
	Datum		value = heap_getattr(row, attnum, desc, &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name),
				 errdetail("Column \"%s\" of the inbox row is NULL.", name)));
	return DatumGetTextPP(value);
}

/* A row of the inbox. */
typedef struct InboxRow
{
	char	   *topic;
	char	   *stream;			/* NULL: none */
	Jsonb	   *envelope;
} InboxRow;

/*
 * Reads a row's columns into *r, the envelope checked for NULL only; the
 * topic is read first, for the refusal to be counted against it.
 */
static void
read_row(InboxGroup *group, TriggerData *trigdata, InboxRow *r)
{
	HeapTuple	row = trigdata->tg_trigtuple;
	TupleDesc	desc = RelationGetDescr(trigdata->tg_relation);
	bool		isnull;
	Datum		value;

	r->topic = text_to_cstring(required_column(row, desc, INBOX_TOPIC, "topic"));
	value = heap_getattr(row, INBOX_STREAM, desc, &isnull);
	r->stream = isnull ? NULL : stream_name_check(DatumGetTextPP(value), "Column");
	value = heap_getattr(row, INBOX_ENVELOPE, desc, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("invalid event envelope"),
				 errdetail("Event %d of the batch is NULL.", group->nrows + 1)));
	r->envelope = DatumGetJsonbP(value);
	if (group->nrows == PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many rows inserted into eventstore.inbox by one statement"),
				 errdetail("A statement can append at most %d events.", PG_INT32_MAX),
				 errhint("Split the import into several statements.")));
}

/* Checks a row's envelope and adds it to the waiting events. */
static void
keep_row(InboxGroup *group, const InboxRow *r)
{
	MemoryContext old = MemoryContextSwitchTo(group->events_cxt);
	EnvelopeError err;

	group->nrows++;
	if (!envelope_check(r->envelope, &group->waiting[group->nwaiting], &err))
		envelope_report(&err, group->nrows);
	if (group->nwaiting == 0)
	{
		group->topic = pstrdup(r->topic);
		group->stream = r->stream ? pstrdup(r->stream) : NULL;
	}
	group->nwaiting++;
	MemoryContextSwitchTo(old);
}

/* INSTEAD OF INSERT FOR EACH ROW: checks the row's envelope and keeps it. */
Datum
eventstore_inbox_row(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	InboxGroup *group = current_group;
	InboxRow	r = {0};

	check_trigger_call(fcinfo, "inbox_row");
	if (group == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("inbox_row() was called outside an insertion into eventstore.inbox")));
	PG_TRY();
	{
		read_row(group, trigdata, &r);
	}
	PG_CATCH();
	{
		stats_count_current_error(r.topic);
		PG_RE_THROW();
	}
	PG_END_TRY();

	/* the waiting events go first: they come before this row */
	if (group->nwaiting == INBOX_GROUP || !same_destination(group, r.topic, r.stream))
		append_waiting(group);

	PG_TRY();
	{
		keep_row(group, &r);
	}
	PG_CATCH();
	{
		stats_count_current_error(r.topic);
		PG_RE_THROW();
	}
	PG_END_TRY();

	/*
	 * A copy, not the row itself: PostgreSQL 15 frees the row it formed for
	 * the trigger only when the trigger returns another one, and COPY calls
	 * INSTEAD OF triggers in its statement's memory, so returning the same
	 * row would keep every row of an import in memory until the end.
	 */
	return PointerGetDatum(heap_copytuple(trigdata->tg_trigtuple));
}

/* AFTER INSERT FOR EACH STATEMENT: appends what waits, ends the group. */
Datum
eventstore_inbox_end(PG_FUNCTION_ARGS)
{
	check_trigger_call(fcinfo, "inbox_end");
	if (current_group == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("inbox_end() was called outside an insertion into eventstore.inbox")));
	append_waiting(current_group);
	drop_group();
	return PointerGetDatum(NULL);
}
