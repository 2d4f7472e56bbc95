/*-------------------------------------------------------------------------
 *
 * erase.c
 *		erase_stream(): removing every event of one stream at once;
 *		truncate_stream() and set_stream_max_count(): its older events.
 *
 * Personal data must sometimes go before its topic's retention would take
 * it (a person asks to be forgotten).  A producer that keeps a person's
 * events in a stream of their own can have them all removed at once.  The
 * caller must be an eventstore_admin or hold the topic's "erase" grant
 * (grant_topic); this entry point checks the real caller, then removes the
 * events as the owner through eventstore.erase_stream_as(), which also
 * counts for each consumer the events it had not received yet
 * (consumer_status.skipped).  truncate_stream() and set_stream_max_count()
 * are checked the same way (removing events is what the erase grant
 * allows) and work through eventstore.truncate_stream_as() and
 * eventstore.set_stream_max_count_as().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_erase_stream);
PG_FUNCTION_INFO_V1(eventstore_truncate_stream);
PG_FUNCTION_INFO_V1(eventstore_set_stream_max_count);

/*
 * Checks that topic and stream (the first two arguments) are given, then
 * runs query as the owner with the arguments and the real caller last, and
 * returns the number it returns.
 */
static int64
remove_as_owner(FunctionCallInfo fcinfo, const char *query, int nargs, Oid *argtypes)
{
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	AsOwner		as;
	bool		isnull;
	int64		removed;

	Assert(nargs <= 3);
	for (int i = 0; i < nargs; i++)
	{
		if (PG_ARGISNULL(i) && i < 2)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", i == 0 ? "topic" : "stream"),
					 errdetail("Argument \"%s\" is NULL.", i == 0 ? "topic" : "stream")));
		args[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	as_owner_begin(&as);
	args[nargs] = ObjectIdGetDatum(as.caller);
	argtypes[nargs] = OIDOID;
	if (SPI_execute_with_args(query, nargs + 1, argtypes, args, nulls, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("\"%s\" failed", query)));
	removed = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  1, &isnull));
	as_owner_end(&as);
	return removed;
}

/* erase_stream(topic text, stream text) RETURNS bigint */
Datum
eventstore_erase_stream(PG_FUNCTION_ARGS)
{
	refuse_on_standby("eventstore.erase_stream");

	PG_RETURN_INT64(remove_as_owner(fcinfo, "SELECT eventstore.erase_stream_as($1, $2, $3)",
									2, (Oid[]) {TEXTOID, TEXTOID, InvalidOid}));
}

/* truncate_stream(topic text, stream text, before_version bigint) RETURNS bigint */
Datum
eventstore_truncate_stream(PG_FUNCTION_ARGS)
{
	refuse_on_standby("eventstore.truncate_stream");

	PG_RETURN_INT64(remove_as_owner(fcinfo,
									"SELECT eventstore.truncate_stream_as($1, $2, $3, $4)",
									3, (Oid[]) {TEXTOID, TEXTOID, INT8OID, InvalidOid}));
}

/* set_stream_max_count(topic text, stream text, max_count bigint) RETURNS bigint */
Datum
eventstore_set_stream_max_count(PG_FUNCTION_ARGS)
{
	refuse_on_standby("eventstore.set_stream_max_count");

	PG_RETURN_INT64(remove_as_owner(fcinfo,
									"SELECT eventstore.set_stream_max_count_as($1, $2, $3, $4)",
									3, (Oid[]) {TEXTOID, TEXTOID, INT8OID, InvalidOid}));
}
