/*-------------------------------------------------------------------------
 *
 * correlation.c
 *		Correlation and causation: which events belong to one story, and
 *		which event led to which.
 *
 * Two conventions of the envelope's metadata, UUIDs when present
 * (envelope.c checks them):
 *
 * - metadata.causation_id: the id of the event this one was derived from;
 * - metadata.correlation_id: shared by every event of one story, from the
 *   event that started it (a tick) to the last one derived from it (its
 *   score).
 *
 * A producer may set both.  What it leaves out, the append fills in:
 *
 * - an event appended by an in-database consumer's handler while it handles
 *   an event (consumer_run.c marks that event with correlation_handling())
 *   is caused by it: causation_id is the handled event's id;
 * - an event with a cause and no correlation_id inherits the cause's
 *   correlation_id, or, when the cause has none (it started the story),
 *   the cause's id.  A cause named by the producer is looked up by id; one
 *   that is not stored (erased, expired) passes its id on.
 *
 * The metadata is completed before an append compares the event with a
 * stored one of the same id, so that a handler's retry, which gets the same
 * completion, is a duplicate and not a conflict.  read_correlated() finds
 * a story's events through the partial index events_correlation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "eventstore.h"

/*
 * The event the running handler handles, or NULL.  Set and cleared around
 * each handler call, also when it fails: no transaction outlives it.
 */
static const StoredEvent *handled = NULL;

void
correlation_handling(const StoredEvent *event)
{
	handled = event;
}

/* The string member key of metadata, as a NUL-terminated copy, or NULL. */
static char *
metadata_string(Jsonb *metadata, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	if (metadata == NULL)
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&metadata->root, JB_FOBJECT, &k);
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static char *
uuid_string_of(const pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
}

/*
 * The correlation an event derived from cause inherits: the cause's own, or
 * its id when it has none.  cause_metadata NULL: look the cause up.
 */
static char *
inherited_correlation(const char *cause_id, Jsonb *cause_metadata)
{
	char	   *correlation;

	if (cause_metadata == NULL)
	{
		pg_uuid_t  *id = DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(cause_id)));
		StoredEvent *cause = lookup_stored_events(&id, 1)[0];

		if (cause != NULL)
			cause_metadata = cause->parts.metadata;
	}
	correlation = metadata_string(cause_metadata, "correlation_id");
	/* an event stored before correlation ids were checked may hold anything */
	if (correlation == NULL || strlen(correlation) != 36 ||
		strspn(correlation, "0123456789abcdefABCDEF-") != 36)
		return pstrdup(cause_id);
	return correlation;
}

/*
 * The metadata of an event about to be appended, with causation_id and
 * correlation_id filled in where the rules above give them; metadata
 * itself when there is nothing to add.
 */
Jsonb *
correlation_complete(Jsonb *metadata)
{
	char	   *causation = metadata_string(metadata, "causation_id");
	bool		has_correlation = metadata_string(metadata, "correlation_id") != NULL;
	Jsonb	   *cause_metadata = NULL;
	StringInfoData add;

	if (causation == NULL)
	{
		if (handled == NULL)
			return metadata;	/* nothing caused it that we know of */
		cause_metadata = handled->parts.metadata;
	}
	else if (has_correlation)
		return metadata;		/* the producer said it all */

	initStringInfo(&add);
	appendStringInfoChar(&add, '{');
	if (causation == NULL)
	{
		causation = uuid_string_of(&handled->parts.id);
		appendStringInfo(&add, "\"causation_id\": \"%s\"", causation);
	}
	if (!has_correlation)
		appendStringInfo(&add, "%s\"correlation_id\": \"%s\"", add.len > 1 ? ", " : "",
						 inherited_correlation(causation, cause_metadata));
	appendStringInfoChar(&add, '}');
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(metadata),
											  DirectFunctionCall1(jsonb_in,
																  CStringGetDatum(add.data))));
}
