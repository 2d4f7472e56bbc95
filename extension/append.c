/*-------------------------------------------------------------------------
 *
 * append.c
 *		eventstore.append and eventstore.append_batch: validate, deduplicate
 *		and store events.
 *
 * An append validates every envelope (envelope.c), checks the topic
 * (catalog.c), then stores the events as the owner of eventstore.events,
 * through saved SPI plans or, for batches, directly (bulk_insert.c): no
 * statement is parsed or planned per call.
 *
 * Deduplication.  An event whose id is stored already is a duplicate: the
 * call returns the stored position and writes nothing, unless the stored
 * event differs (topic, stream, type, version, data or metadata), which is a
 * producer bug and raises 23505.
 *
 * - A single event without a stream, the common case, is one INSERT ... ON
 *   CONFLICT (id) DO NOTHING RETURNING position.  No row back means a
 *   duplicate, looked up and compared.  ON CONFLICT waits for a concurrent
 *   inserter of the same id, so concurrent writers store exactly one row.
 * - A batch without a stream sets duplicates aside first when its first
 *   event is stored already (a retried batch): one lookup of all ids, then
 *   a sort for ids repeated within the batch.  Otherwise its insertion
 *   finds them (bulk_insert.c), which also settles a race with a
 *   concurrent writer of the same id.
 * - An append to a stream first takes the stream's lock and reads its
 *   version (stream_claim.c, stream_head.c), creating its row of eventstore.stream_heads
 *   on its first append.  A batch then sets its duplicates aside (after
 *   the lock, so that it sees what the previous writer stored); a single
 *   event is stored with ON CONFLICT as above.  The new events are
 *   numbered on from the version, which is gap-free because duplicates
 *   take no number; expected_version is checked against it, and an append
 *   that is entirely a retry of a stored one returns the stored positions
 *   even when the stream has moved on (or been closed: close_stream()
 *   refuses new events only).  The lock is let go once the events are
 *   stored (stream_claim.c, which serves installations not updated to 1.7
 *   yet the way they keep versions).
 *
 * Topics with personal fields (protect_fields) get them encrypted first
 * (protect.c), so that a retry is compared, and stored, as ciphertext.
 *
 * Positions come from an identity column, in input order within a call.
 * A single append that turns out to be a duplicate has used one up, so
 * positions can have gaps.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_append);
PG_FUNCTION_INFO_V1(eventstore_append_batch);

/* Stream names are index keys; keep them well under btree's limit. */
#define MAX_STREAM_BYTES 1024

/* What one call appends. */
typedef struct AppendRequest
{
	const char *topic;
	const char *stream;			/* NULL: no stream */
	bool		has_expected;
	int64		expected_version;
	int			nevents;
	EnvelopeParts *events;
	int64	   *positions;		/* out: one per event */
	bool	   *known;			/* position already found (a duplicate) */
	int			first_number;	/* a batch: the number of events[0] in its
								 * errors; 0: a single event */
} AppendRequest;

/* Byte-wise equality of a text with a string of len bytes; NULLs equal. */
static bool
text_equals(text *a, const char *b, size_t len)
{
	if (a == NULL || b == NULL)
		return a == NULL && b == NULL;
	return VARSIZE_ANY_EXHDR(a) == len && memcmp(VARDATA_ANY(a), b, len) == 0;
}

static bool
jsonb_equals(Jsonb *a, Jsonb *b)
{
	return DatumGetBool(DirectFunctionCall2(jsonb_eq, JsonbPGetDatum(a),
											JsonbPGetDatum(b)));
}

/* What differs between two envelopes with the same id, or NULL. */
static const char *
envelope_difference(EnvelopeParts *a, EnvelopeParts *b)
{
	if (!text_equals(a->type, VARDATA_ANY(b->type), VARSIZE_ANY_EXHDR(b->type)))
		return "type";
	if (a->version_major != b->version_major || a->version_minor != b->version_minor)
		return "version";
	if (!jsonb_equals(a->data, b->data))
		return "data";
	if (!jsonb_equals(a->metadata, b->metadata))
		return "metadata";
	return NULL;
}

static char *
uuid_string(pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
}

static void
report_conflict(pg_uuid_t *id, int64 position, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("event id is already stored with different content"),
			 errdetail("Event %s is stored at position " INT64_FORMAT " and its %s differs.",
					   uuid_string(id), position, what),
			 errhint("An event id may be appended again only with the same envelope, topic and stream.")));
}

/*
 * Event i is a duplicate of the stored event s: take its position, or raise
 * 23505 when the contents differ.
 */
static void
accept_duplicate(AppendRequest *req, int i, StoredEvent *s)
{
	const char *what = NULL;

	if (!text_equals(s->topic, req->topic, strlen(req->topic)))
		what = "topic";
	else if (!text_equals(s->stream, req->stream, req->stream ? strlen(req->stream) : 0))
		what = "stream";
	else
		what = envelope_difference(&req->events[i], &s->parts);
	if (what)
		report_conflict(&req->events[i].id, s->position, what);
	req->positions[i] = s->position;
	req->known[i] = true;
}

/*
 * Looks up the stored events with the ids of events idx[0..n), and accepts
 * each event found as a duplicate of its stored twin (raising 23505 when
 * the contents differ).  Events not found are left as they were.
 */
static void
accept_stored_duplicates(AppendRequest *req, int *idx, int n)
{
	pg_uuid_t **ids = palloc(n * sizeof(pg_uuid_t *));
	StoredEvent **stored;

	for (int k = 0; k < n; k++)
		ids[k] = &req->events[idx[k]].id;
	stored = lookup_stored_events(ids, n);
	for (int k = 0; k < n; k++)
		if (stored[k])
			accept_duplicate(req, idx[k], stored[k]);
}

/*
 * Events idx[0..n) were not stored, by ON CONFLICT (insert_one) or by
 * bulk_insert.c, because a stored row (of another transaction, or of an
 * earlier append of this one) has their id: they are duplicates (or
 * conflicts) of that row.  In a batch numbered in a stream
 * (numbered_batch), duplicates were removed before numbering, so a skip
 * here is an id stored concurrently elsewhere, and the versions after it
 * would have a gap: that is refused even when the event is identical.  A
 * single event leaves no gap: its caller gives its version back.
 */
static void
resolve_skipped(AppendRequest *req, int *idx, int n, bool numbered_batch)
{
	accept_stored_duplicates(req, idx, n);
	for (int k = 0; k < n; k++)
	{
		pg_uuid_t  *id = &req->events[idx[k]].id;

		if (!req->known[idx[k]])
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to a concurrent append of the same event"),
					 errdetail("Event %s was stored by a transaction that this transaction's snapshot does not see.",
							   uuid_string(id))));
		if (numbered_batch)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to a concurrent append of the same event"),
					 errdetail("Event %s was stored while this append to stream \"%s\" was numbering its events.",
							   uuid_string(id), req->stream),
					 errhint("Retry the append.")));
	}
}

/*
 * Stores event i alone with INSERT ... ON CONFLICT (id) DO NOTHING, which
 * also settles a race with a concurrent writer of the same id.  Returns 1
 * if stored, 0 if it turned out to be a duplicate.
 */
static int
insert_one(AppendRequest *req, int i, int64 stream_version)
{
	static SPIPlanPtr plan = NULL;
	StoredEvent row = {0};
	Datum		values[NUM_EVENT_COLUMNS];
	char		nulls[NUM_EVENT_COLUMNS];
	bool		isnull;

	if (plan == NULL)
	{
		Oid			argtypes[NUM_EVENT_COLUMNS];
		char	   *sql = stored_event_insert_sql(argtypes);

		plan = prepare_plan(sql, NUM_EVENT_COLUMNS - 1, argtypes);
	}
	row.topic = cstring_to_text(req->topic);
	row.stream = req->stream ? cstring_to_text(req->stream) : NULL;
	row.stream_version = stream_version;
	row.parts = req->events[i];
	row.recorded_at = GetCurrentTransactionStartTimestamp();
	row.xid = GetTopFullTransactionId();
	stored_event_insert_args(&row, values, nulls);
	run_plan(plan, values, nulls, SPI_OK_INSERT_RETURNING);

	if (SPI_processed == 0)
	{
		resolve_skipped(req, &i, 1, false);
		return 0;
	}
	req->positions[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 1, &isnull));
	req->known[i] = true;
	return 1;
}

/*
 * Stores the events listed in idx (n of them, in order, none of them a
 * duplicate as far as this transaction can see), with stream versions
 * first_version, first_version + 1, ... when the request has a stream.
 * Returns how many were stored; the others were stored concurrently by
 * another transaction and are resolved as duplicates.
 */
static int
store_events(AppendRequest *req, int *idx, int n, int64 first_version)
{
	EnvelopeParts **events;
	int64	   *positions;
	bool	   *skipped;
	int		   *skipped_idx;
	int			nskipped = 0;

	if (n == 1)
		return insert_one(req, idx[0], first_version);

	events = palloc(n * sizeof(EnvelopeParts *));
	positions = palloc(n * sizeof(int64));
	skipped = palloc0(n * sizeof(bool));
	skipped_idx = palloc(n * sizeof(int));
	for (int k = 0; k < n; k++)
		events[k] = &req->events[idx[k]];
	bulk_insert_events(req->topic, req->stream, events, n, first_version,
					   positions, skipped);
	for (int k = 0; k < n; k++)
	{
		if (skipped[k])
			skipped_idx[nskipped++] = idx[k];
		else
		{
			req->positions[idx[k]] = positions[k];
			req->known[idx[k]] = true;
		}
	}
	if (nskipped > 0)
		resolve_skipped(req, skipped_idx, nskipped, req->stream != NULL);
	return n - nskipped;
}

/* qsort_arg comparator: event indexes by id, then by position in batch. */
static int
compare_ids(const void *a, const void *b, void *arg)
{
	AppendRequest *req = arg;
	int			ia = *(const int *) a;
	int			ib = *(const int *) b;
	int			c = memcmp(&req->events[ia].id, &req->events[ib].id, sizeof(pg_uuid_t));

	return c != 0 ? c : (ia > ib) - (ia < ib);
}

/*
 * Among the events not stored yet, later repeats of an id within the batch
 * are duplicates of its first occurrence: records in first_of[i] the index
 * of that first occurrence (or -1) after comparing contents.
 */
static void
find_batch_duplicates(AppendRequest *req, int *first_of)
{
	int		   *order = palloc(req->nevents * sizeof(int));
	int			n = 0;

	for (int i = 0; i < req->nevents; i++)
	{
		first_of[i] = -1;
		if (!req->known[i])
			order[n++] = i;
	}
	qsort_arg(order, n, sizeof(int), compare_ids, req);
	for (int k = 1; k < n; k++)
	{
		int			prev = order[k - 1];
		int			i = order[k];

		if (memcmp(&req->events[prev].id, &req->events[i].id, sizeof(pg_uuid_t)) != 0)
			continue;
		first_of[i] = first_of[prev] >= 0 ? first_of[prev] : prev;
		if (envelope_difference(&req->events[i], &req->events[first_of[i]]))
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("event id is already stored with different content"),
					 errdetail("Events %d and %d of the batch have the same id %s and different content.",
							   req->first_number + first_of[i], req->first_number + i,
							   uuid_string(&req->events[i].id))));
	}
}

/* The indexes of all events of the request: 0, 1, ... */
static int *
all_events(AppendRequest *req)
{
	int		   *idx = palloc(req->nevents * sizeof(int));

	for (int i = 0; i < req->nevents; i++)
		idx[i] = i;
	return idx;
}

/*
 * Whether the stored duplicates of a batch without a stream must be looked
 * up before it is stored.  A duplicate is found as well when its insertion
 * meets the stored id (bulk_insert.c), which costs a dead row instead of an
 * index probe per event; so the probes are saved unless the first event is
 * stored already, as it is in a retried batch.
 */
static bool
must_look_up_duplicates(AppendRequest *req)
{
	pg_uuid_t  *first = &req->events[0].id;

	return lookup_stored_events(&first, 1)[0] != NULL;
}

/*
 * The events of the request that are neither stored (known) nor a repeat
 * of an earlier event of the batch, in order, in fresh[]; returns how many.
 * first_of[i] is the first occurrence of a repeated event i, else -1.
 */
static int
fresh_events(AppendRequest *req, int *first_of, int *fresh)
{
	int			nfresh = 0;

	find_batch_duplicates(req, first_of);
	for (int i = 0; i < req->nevents; i++)
		if (!req->known[i] && first_of[i] < 0)
			fresh[nfresh++] = i;
	return nfresh;
}

/* A repeat within the batch gets the position of its first occurrence. */
static void
copy_repeated_positions(AppendRequest *req, int *first_of)
{
	for (int i = 0; i < req->nevents; i++)
		if (first_of[i] >= 0)
			req->positions[i] = req->positions[first_of[i]];
}

/*
 * Appends a batch without a stream: duplicates are set aside first (see
 * must_look_up_duplicates), then the new events are stored.
 */
static int
append_deduplicated(AppendRequest *req)
{
	int		   *first_of = palloc(req->nevents * sizeof(int));
	int		   *fresh = palloc(req->nevents * sizeof(int));
	int			nfresh;
	int			stored = 0;

	if (must_look_up_duplicates(req))
		accept_stored_duplicates(req, all_events(req), req->nevents);
	nfresh = fresh_events(req, first_of, fresh);
	if (nfresh > 0)
		stored = store_events(req, fresh, nfresh, 0);
	copy_repeated_positions(req, first_of);
	return stored;
}

/*
 * Appends to a stream: locks the stream and reads its version (before
 * 1.7: claims the versions of every event of the request, which locks
 * it), sets duplicates aside, checks that the stream is open and at the
 * expected version, stores the new events, and lets the lock go (before
 * 1.7: gives back the versions of those that were duplicates).
 *
 * A single event is not looked up first: its INSERT ... ON CONFLICT finds
 * a duplicate as well (insert_one).  It is looked up when the append would
 * be refused, because a retry of a stored append is answered with the
 * stored position even when the stream has moved on or been closed.
 */
static int
append_to_stream(AppendRequest *req)
{
	bool		closed;
	int64		version = stream_append_begin(req->topic, req->stream, req->nevents, &closed);
	bool		refused = closed || (req->has_expected && version != req->expected_version);
	int		   *first_of = palloc(req->nevents * sizeof(int));
	int		   *fresh = palloc(req->nevents * sizeof(int));
	int			nfresh;
	int			stored = 0;

	if (req->nevents > 1 || refused)
		accept_stored_duplicates(req, all_events(req), req->nevents);
	nfresh = fresh_events(req, first_of, fresh);

	if (nfresh > 0 && closed)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream \"%s\" of topic \"%s\" is closed", req->stream, req->topic),
				 errdetail("Argument \"stream\" names a stream closed by eventstore.close_stream(); it takes no more events."),
				 errhint("Append to another stream; the closed one can still be read.")));
	if (nfresh > 0 && refused)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("stream version does not match the expected version"),
				 errdetail("Stream \"%s\" of topic \"%s\" is at version " INT64_FORMAT
						   "; the append expected version " INT64_FORMAT ".",
						   req->stream, req->topic, version, req->expected_version),
				 errhint("Read the stream again and retry with its current version.")));

	if (nfresh > 0)
		stored = store_events(req, fresh, nfresh, version + 1);
	stream_append_end(req->topic, req->stream, version, req->nevents, stored);
	copy_repeated_positions(req, first_of);
	return stored;
}

static void
append_events(AppendRequest *req)
{
	AsOwner		as;
	TopicInfo  *topic;
	int			stored;

	as_owner_begin(&as);
	restore_check();

	topic = topic_lookup(req->topic, strlen(req->topic));
	if (topic == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("topic \"%s\" does not exist", req->topic),
				 errhint("Create it with eventstore.create_topic('%s').", req->topic)));
	check_topic_append(topic, as.caller);

	/* causation and correlation are filled in before anything is compared */
	for (int i = 0; i < req->nevents; i++)
		req->events[i].metadata = correlation_complete(req->events[i].metadata);

	/* personal fields are encrypted before anything is compared or stored */
	if (topic->protected)
		for (int i = 0; i < req->nevents; i++)
			req->events[i].data = protect_event_data(req->topic, req->events[i].data,
													 &req->events[i].id,
													 req->first_number > 0 ? req->first_number + i : 0);

	horizon_before_append();
	if (req->nevents == 0)
		stored = 0;
	else if (req->stream)
		stored = append_to_stream(req);
	else if (req->nevents == 1)
		stored = insert_one(req, 0, 0);		/* the common case, one statement */
	else
		stored = append_deduplicated(req);

	as_owner_end(&as);
	if (stored > 0)
		notify_topic_appended(req->topic);
	stats_count(req->topic, strlen(req->topic), STATS_APPENDED, stored);
	stats_count(req->topic, strlen(req->topic), STATS_DUPLICATES, req->nevents - stored);
	if (req->first_number > 0)
		stats_count(req->topic, strlen(req->topic), STATS_BATCHES, 1);
}

/* In an append's PG_CATCH: counts the error as a refusal of its topic. */
static void
count_refusal(FunctionCallInfo fcinfo)
{
	stats_count_current_error(PG_ARGISNULL(0) ? NULL :
							  text_to_cstring(PG_GETARG_TEXT_PP(0)));
}

/*
 * A stream name as a string, or an error naming it as what ("Argument",
 * "Column") when it is empty or too long.
 */
char *
stream_name_check(text *stream, const char *what)
{
	int			len = VARSIZE_ANY_EXHDR(stream);

	if (len == 0 || len > MAX_STREAM_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid stream name"),
				 errdetail("%s \"stream\" must be between 1 and %d bytes long; it is %d.",
						   what, MAX_STREAM_BYTES, len)));
	return text_to_cstring(stream);
}

/* Checks the arguments common to append and append_batch. */
static void
init_request(AppendRequest *req, FunctionCallInfo fcinfo, int nevents)
{
	memset(req, 0, sizeof(*req));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("topic must not be null"),
				 errdetail("Argument \"topic\" is NULL.")));
	req->topic = text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (!PG_ARGISNULL(2))
		req->stream = stream_name_check(PG_GETARG_TEXT_PP(2), "Argument");
	if (!PG_ARGISNULL(3))
	{
		req->has_expected = true;
		req->expected_version = PG_GETARG_INT64(3);
		if (req->stream == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("expected_version needs a stream"),
					 errdetail("Argument \"expected_version\" is " INT64_FORMAT " and argument \"stream\" is NULL.",
							   req->expected_version)));
		if (req->expected_version < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid expected version"),
					 errdetail("Argument \"expected_version\" is " INT64_FORMAT "; it must be 0 (a new stream) or more.",
							   req->expected_version)));
	}
	req->nevents = nevents;
	req->events = palloc0(Max(nevents, 1) * sizeof(EnvelopeParts));
	req->positions = palloc0(Max(nevents, 1) * sizeof(int64));
	req->known = palloc0(Max(nevents, 1) * sizeof(bool));
}

static void
check_event(AppendRequest *req, int i, Jsonb *event, int batch_index)
{
	EnvelopeError err;

	if (!envelope_check(event, &req->events[i], &err))
		envelope_report(&err, batch_index);
}

/*
 * Appends events[0..n), envelopes already checked by envelope_check, to
 * topic and stream (NULL: none) as one batch, all or nothing, like
 * append_batch; first_number is the number of events[0] in the errors.
 * Used by the inbox (inbox.c), which stores its rows in such groups.
 */
void
append_checked_batch(const char *topic, const char *stream, EnvelopeParts *events,
					 int n, int first_number)
{
	AppendRequest req = {0};

	req.topic = topic;
	req.stream = stream;
	req.nevents = n;
	req.events = events;
	req.positions = palloc0(Max(n, 1) * sizeof(int64));
	req.known = palloc0(Max(n, 1) * sizeof(bool));
	req.first_number = first_number;
	append_events(&req);
}

Datum
eventstore_append(PG_FUNCTION_ARGS)
{
	AppendRequest req;

	refuse_on_standby("eventstore.append");
	PG_TRY();
	{
		init_request(&req, fcinfo, 1);
		if (PG_ARGISNULL(1))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("invalid event envelope"),
					 errdetail("The event is NULL.")));
		check_event(&req, 0, PG_GETARG_JSONB_P(1), 0);
		append_events(&req);
	}
	PG_CATCH();
	{
		count_refusal(fcinfo);
		PG_RE_THROW();
	}
	PG_END_TRY();
	PG_RETURN_INT64(req.positions[0]);
}

Datum
eventstore_append_batch(PG_FUNCTION_ARGS)
{
	AppendRequest req;
	ArrayType  *array;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	refuse_on_standby("eventstore.append_batch");
	PG_TRY();
	{
		if (PG_ARGISNULL(1))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("events must not be null"),
					 errdetail("Argument \"events\" is NULL.")));
		array = PG_GETARG_ARRAYTYPE_P(1);
		if (ARR_NDIM(array) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("events must be a one-dimensional array"),
					 errdetail("Argument \"events\" has %d dimensions.", ARR_NDIM(array))));
		deconstruct_array(array, JSONBOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);

		init_request(&req, fcinfo, n);
		req.first_number = 1;
		for (int i = 0; i < n; i++)
		{
			if (nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("invalid event envelope"),
						 errdetail("Event %d of the batch is NULL.", i + 1)));
			check_event(&req, i, DatumGetJsonbP(elems[i]), i + 1);
		}
		append_events(&req);
	}
	PG_CATCH();
	{
		count_refusal(fcinfo);
		PG_RE_THROW();
	}
	PG_END_TRY();

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	for (int i = 0; i < n; i++)
	{
		Datum		value = Int64GetDatum(req.positions[i]);
		bool		isnull = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	return (Datum) 0;
}
