/*-------------------------------------------------------------------------
 *
 * event_row.c
 *		The one codec between rows of eventstore.events and events as C
 *		works with them (StoredEvent) and as readers receive them (the
 *		composite type eventstore.event).
 *
 * The table stores the envelope decomposed (id, type, version_major,
 * version_minor, data, metadata are columns), with the event's position,
 * topic, stream, stream version, recording time and transaction id beside
 * it.  Everything in C that reads or writes a row goes through here:
 *
 * - event_columns_map() finds each column's attribute number by name, once
 *   per backend (catalog.c keeps the map), so that columns added or dropped
 *   by an upgrade shift nothing;
 * - stored_event_decode() and stored_event_encode() turn a row's values
 *   into a StoredEvent and back (event_lookup.c and bulk_insert.c work on
 *   table slots, the consumer engine on whole rows fetched through SPI),
 *   and stored_event_insert_sql() is the statement append.c stores a
 *   single event with;
 * - stored_event_envelope() rebuilds the envelope as appended,
 *   stored_event_values() lays an event out as eventstore.event (the first
 *   attributes of eventstore.delivery too), and stored_event_datum() makes
 *   the composite value a handler receives, upcast.
 *
 * SQL has its one projection of the same row, the view
 * eventstore.stored_events, which read(), read_stream() and get() use.
 * Adding a column touches the table's definition, this file and the
 * StoredEvent/EventColumn declarations in eventstore.h.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/xid8.h"

#include "eventstore.h"

/* Each EventColumn's name and type, in EventColumn order. */
static const struct
{
	const char *name;
	Oid			type;
}			event_columns[NUM_EVENT_COLUMNS] = {
	{"position", INT8OID},
	{"id", UUIDOID},
	{"topic", TEXTOID},
	{"type", TEXTOID},
	{"version_major", INT4OID},
	{"version_minor", INT4OID},
	{"data", JSONBOID},
	{"metadata", JSONBOID},
	{"stream", TEXTOID},
	{"stream_version", INT8OID},
	{"recorded_at", TIMESTAMPTZOID},
	{"xid", XID8OID}
};

/*
 * Fills att[] with the 0-based attribute index in desc of every EventColumn,
 * by name.  A missing column is reported as an altered table.
 */
void
event_columns_map(TupleDesc desc, int *att)
{
	for (int c = 0; c < NUM_EVENT_COLUMNS; c++)
	{
		att[c] = -1;
		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute a = TupleDescAttr(desc, i);

			if (!a->attisdropped && strcmp(NameStr(a->attname), event_columns[c].name) == 0)
				att[c] = i;
		}
		if (att[c] < 0)
			report_altered_events(psprintf("Column \"%s\" is missing.", event_columns[c].name));
	}
}

/*
 * The StoredEvent in a row's values (laid out as the table, att from
 * events_columns()).  With copy, every value by reference is copied into
 * the current memory context, for rows whose storage is about to go (a
 * reused slot); without, they point into the row, detoasted where needed.
 */
void
stored_event_decode(const Datum *values, const bool *isnull, bool copy, StoredEvent *s)
{
	const int  *att = events_columns();

#define TEXT_AT(col) (copy ? DatumGetTextPCopy(values[att[col]]) : DatumGetTextPP(values[att[col]]))
#define JSONB_AT(col) (copy ? DatumGetJsonbPCopy(values[att[col]]) : DatumGetJsonbP(values[att[col]]))
	memset(s, 0, sizeof(StoredEvent));
	s->position = DatumGetInt64(values[att[COL_POSITION]]);
	memcpy(&s->parts.id, DatumGetUUIDP(values[att[COL_ID]]), sizeof(pg_uuid_t));
	s->topic = TEXT_AT(COL_TOPIC);
	if (!isnull[att[COL_STREAM]])
	{
		s->stream = TEXT_AT(COL_STREAM);
		s->stream_version = DatumGetInt64(values[att[COL_STREAM_VERSION]]);
	}
	s->parts.type = TEXT_AT(COL_TYPE);
	s->parts.version_major = DatumGetInt32(values[att[COL_VERSION_MAJOR]]);
	s->parts.version_minor = DatumGetInt32(values[att[COL_VERSION_MINOR]]);
	s->parts.data = JSONB_AT(COL_DATA);
	s->parts.metadata = JSONB_AT(COL_METADATA);
	s->recorded_at = DatumGetTimestampTz(values[att[COL_RECORDED_AT]]);
	s->xid = DatumGetFullTransactionId(values[att[COL_XID]]);
#undef TEXT_AT
#undef JSONB_AT
}

/*
 * The StoredEvent in a whole-row datum of eventstore.events (what "SELECT e
 * FROM eventstore.events e" returns); its values point into the datum.
 */
void
stored_event_from_row(Datum row, StoredEvent *s)
{
	HeapTupleHeader th = DatumGetHeapTupleHeader(row);
	TupleDesc	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(th),
											  HeapTupleHeaderGetTypMod(th));
	HeapTupleData tuple;
	Datum	   *values = palloc(desc->natts * sizeof(Datum));
	bool	   *isnull = palloc(desc->natts * sizeof(bool));

	tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = th;
	heap_deform_tuple(&tuple, desc, values, isnull);
	stored_event_decode(values, isnull, false, s);
	ReleaseTupleDesc(desc);
	pfree(values);
	pfree(isnull);
}

/* Lays s out in values/isnull (natts entries) at the attributes att[]. */
static void
encode_columns(const StoredEvent *s, const int *att, int natts, Datum *values, bool *isnull)
{
	memset(isnull, true, natts * sizeof(bool));
#define SET(col, value) (values[att[col]] = (value), isnull[att[col]] = false)
	SET(COL_POSITION, Int64GetDatum(s->position));
	SET(COL_ID, UUIDPGetDatum(&s->parts.id));
	SET(COL_TOPIC, PointerGetDatum(s->topic));
	SET(COL_TYPE, PointerGetDatum(s->parts.type));
	SET(COL_VERSION_MAJOR, Int32GetDatum(s->parts.version_major));
	SET(COL_VERSION_MINOR, Int32GetDatum(s->parts.version_minor));
	SET(COL_DATA, JsonbPGetDatum(s->parts.data));
	SET(COL_METADATA, JsonbPGetDatum(s->parts.metadata));
	if (s->stream)
	{
		SET(COL_STREAM, PointerGetDatum(s->stream));
		SET(COL_STREAM_VERSION, Int64GetDatum(s->stream_version));
	}
	SET(COL_RECORDED_AT, TimestampTzGetDatum(s->recorded_at));
	SET(COL_XID, FullTransactionIdGetDatum(s->xid));
#undef SET
}

/*
 * Lays s out as a row of the table in values/isnull (natts entries, att
 * from events_columns()); the columns of no EventColumn are left NULL.
 */
void
stored_event_encode(const StoredEvent *s, int natts, Datum *values, bool *isnull)
{
	encode_columns(s, events_columns(), natts, values, isnull);
}

/*
 * The statement that stores one event unless its id is stored already:
 * INSERT of every column but position (an identity column) ... ON CONFLICT
 * (id) DO NOTHING RETURNING position.  argtypes gets the types of its
 * NUM_EVENT_COLUMNS - 1 arguments, which stored_event_insert_args() fills.
 */
char *
stored_event_insert_sql(Oid *argtypes)
{
	StringInfoData columns;
	StringInfoData params;
	int			n = 0;

	initStringInfo(&columns);
	initStringInfo(&params);
	for (int c = 0; c < NUM_EVENT_COLUMNS; c++)
	{
		if (c == COL_POSITION)
			continue;
		appendStringInfo(&columns, "%s%s", n > 0 ? ", " : "", event_columns[c].name);
		appendStringInfo(&params, "%s$%d", n > 0 ? ", " : "", n + 1);
		argtypes[n++] = event_columns[c].type;
	}
	return psprintf("INSERT INTO eventstore.events (%s) VALUES (%s)"
					" ON CONFLICT (id) DO NOTHING RETURNING position",
					columns.data, params.data);
}

/* The arguments of stored_event_insert_sql()'s statement for s. */
void
stored_event_insert_args(const StoredEvent *s, Datum *values, char *nulls)
{
	Datum		row[NUM_EVENT_COLUMNS];
	bool		isnull[NUM_EVENT_COLUMNS];
	int			identity[NUM_EVENT_COLUMNS];
	int			n = 0;

	/* laid out as EventColumns, then bound in that order */
	for (int c = 0; c < NUM_EVENT_COLUMNS; c++)
		identity[c] = c;
	encode_columns(s, identity, NUM_EVENT_COLUMNS, row, isnull);
	for (int c = 0; c < NUM_EVENT_COLUMNS; c++)
	{
		if (c == COL_POSITION)
			continue;
		values[n] = row[c];
		nulls[n++] = isnull[c] ? 'n' : ' ';
	}
}

static void
push_key(JsonbParseState **state, const char *key)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	pushJsonbValue(state, WJB_KEY, &v);
}

static void
push_string(JsonbParseState **state, const char *key, char *s, int len)
{
	JsonbValue	v;

	push_key(state, key);
	v.type = jbvString;
	v.val.string.val = s;
	v.val.string.len = len;
	pushJsonbValue(state, WJB_VALUE, &v);
}

static void
push_jsonb(JsonbParseState **state, const char *key, Jsonb *value)
{
	JsonbValue	v;

	push_key(state, key);
	v.type = jbvBinary;
	v.val.binary.data = &value->root;
	v.val.binary.len = VARSIZE(value) - VARHDRSZ;
	pushJsonbValue(state, WJB_VALUE, &v);
}

/* The envelope of s as it was appended. */
Jsonb *
stored_event_envelope(const StoredEvent *s)
{
	JsonbParseState *state = NULL;
	char	   *id = DatumGetCString(DirectFunctionCall1(uuid_out,
														 UUIDPGetDatum(&s->parts.id)));
	char	   *version = psprintf("%d.%d", s->parts.version_major, s->parts.version_minor);

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	push_string(&state, "id", id, strlen(id));
	push_string(&state, "type", VARDATA_ANY(s->parts.type), VARSIZE_ANY_EXHDR(s->parts.type));
	push_string(&state, "version", version, strlen(version));
	push_jsonb(&state, "data", s->parts.data);
	push_jsonb(&state, "metadata", s->parts.metadata);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/*
 * The first EVENT_NATTS values of an eventstore.event (or of an
 * eventstore.delivery, which starts with the same attributes) for s, with
 * envelope as its envelope.
 */
void
stored_event_values(const StoredEvent *s, Jsonb *envelope, Datum *values, bool *nulls)
{
	memset(nulls, false, EVENT_NATTS * sizeof(bool));
	values[EVENT_ATT_POSITION - 1] = Int64GetDatum(s->position);
	values[EVENT_ATT_ID - 1] = UUIDPGetDatum(&s->parts.id);
	values[EVENT_ATT_TOPIC - 1] = PointerGetDatum(s->topic);
	values[EVENT_ATT_STREAM - 1] = PointerGetDatum(s->stream);
	nulls[EVENT_ATT_STREAM - 1] = s->stream == NULL;
	values[EVENT_ATT_STREAM_VERSION - 1] = Int64GetDatum(s->stream_version);
	nulls[EVENT_ATT_STREAM_VERSION - 1] = s->stream == NULL;
	values[EVENT_ATT_ENVELOPE - 1] = JsonbPGetDatum(envelope);
	values[EVENT_ATT_RECORDED_AT - 1] = TimestampTzGetDatum(s->recorded_at);
}

/* Raises an error unless desc has the attributes of eventstore.event first. */
void
check_event_type(TupleDesc desc, const char *type_name, int natts)
{
	if (desc->natts != natts)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s has been altered", type_name),
				 errdetail("It has %d attributes; eventstore expects %d.",
						   desc->natts, natts)));
}

/*
 * The tuple descriptor of the composite type eventstore.event, copied into
 * the current memory context.
 */
TupleDesc
event_type_desc(void)
{
	Oid			typoid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
										 CStringGetDatum("event"),
										 ObjectIdGetDatum(eventstore_namespace()));
	TupleDesc	desc;

	if (!OidIsValid(typoid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("type eventstore.event does not exist"),
				 errhint("Run CREATE EXTENSION eventstore.")));
	desc = lookup_rowtype_tupdesc_copy(typoid, -1);
	check_event_type(desc, "eventstore.event", EVENT_NATTS);
	return desc;
}

/*
 * The event s as a datum of eventstore.event (desc from event_type_desc()),
 * its envelope upcast to the topic's current major version.  Must be
 * called inside SPI_connect, as the owner role (upcasters may run).
 */
Datum
stored_event_datum(const StoredEvent *s, TupleDesc desc)
{
	Datum		values[EVENT_NATTS];
	bool		nulls[EVENT_NATTS];
	Jsonb	   *envelope = upcast_envelope(text_to_cstring(s->topic),
										   stored_event_envelope(s),
										   s->parts.version_major);

	stored_event_values(s, envelope, values, nulls);
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}
