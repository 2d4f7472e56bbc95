/*-------------------------------------------------------------------------
 *
 * erase.c
 *		erase_stream(): removing every event of one stream at once.
 *
 * Personal data must sometimes go before its topic's retention would take
 * it (a person asks to be forgotten).  A producer that keeps a person's
 * events in a stream of their own can have them all removed at once.  The
 * caller must be an eventstore_admin or hold the topic's "erase" grant
 * (grant_topic); this entry point checks the real caller, then removes the
 * events as the owner through eventstore.erase_stream_as(), which also
 * counts for each consumer the events it had not received yet
 * (consumer_status.skipped).
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

/* erase_stream(topic text, stream text) RETURNS bigint */
Datum
eventstore_erase_stream(PG_FUNCTION_ARGS)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, OIDOID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	AsOwner		as;
	bool		isnull;
	int64		removed;

	for (int i = 0; i < 2; i++)
	{
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", i == 0 ? "topic" : "stream"),
					 errdetail("Argument \"%s\" is NULL.", i == 0 ? "topic" : "stream")));
		args[i] = PG_GETARG_DATUM(i);
	}
	as_owner_begin(&as);
	args[2] = ObjectIdGetDatum(as.caller);
	if (SPI_execute_with_args("SELECT eventstore.erase_stream_as($1, $2, $3)",
							  3, argtypes, args, nulls, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("erase_stream_as failed")));
	removed = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  1, &isnull));
	as_owner_end(&as);
	PG_RETURN_INT64(removed);
}
