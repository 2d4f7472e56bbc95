/*-------------------------------------------------------------------------
 *
 * protect.c
 *		Crypto-shredding: encrypting the personal fields of events on append,
 *		and eventstore.unprotect() for readers.
 *
 * A topic can declare the dotted paths of personal fields in its events'
 * data, and the path of the subject (the person) they belong to
 * (protect_fields).  Appends to such a topic (the topic cache says so, so
 * other appends pay nothing) replace each present field by a ciphertext
 * object before duplicates are compared and the event is stored; the SQL
 * function eventstore.protect_data() does the work with pgcrypto, as the
 * owner, since only the owner may read eventstore.subject_keys.  The
 * encryption is deterministic per (key, event id, path), so a retried
 * event is still an identical duplicate.
 *
 * unprotect(event) decrypts for members of eventstore_decrypt.  That needs
 * the caller's identity, which a SECURITY DEFINER function no longer knows,
 * so it is a C function running as the caller that passes the caller to the
 * internal eventstore.unprotect_as() run as the owner, the way
 * consumer_api.c does.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_unprotect);

/*
 * The data of an event of a protected topic, its personal fields encrypted
 * (the subject's key is created when it has none).  Must be called as the
 * owner, inside SPI; the result lives in the caller's memory context.
 */
Jsonb *
protect_event_data(const char *topic, Jsonb *data, pg_uuid_t *id, int batch_index)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[4];
	bool		isnull;
	Datum		result;

	if (plan == NULL)
	{
		Oid			argtypes[4] = {TEXTOID, JSONBOID, UUIDOID, INT4OID};

		plan = prepare_plan("SELECT eventstore.protect_data($1, $2, $3, $4)", 4, argtypes);
	}
	args[0] = CStringGetTextDatum(topic);
	args[1] = JsonbPGetDatum(data);
	args[2] = UUIDPGetDatum(id);
	args[3] = Int32GetDatum(batch_index);
	if (SPI_execute_plan(plan, args, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("protect_data failed")));
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("protect_data returned null")));
	return DatumGetJsonbP(SPI_datumTransfer(result, false, -1));
}

/* eventstore.unprotect(e event) RETURNS event */
Datum
eventstore_unprotect(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {get_fn_expr_argtype(fcinfo->flinfo, 0), OIDOID};
	Datum		args[2];
	AsOwner		as;
	bool		isnull;
	Datum		result;

	if (!OidIsValid(argtypes[0]))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("could not determine the type of the event")));
	as_owner_begin(&as);
	args[0] = PG_GETARG_DATUM(0);
	args[1] = ObjectIdGetDatum(as.caller);
	if (SPI_execute_with_args("SELECT eventstore.unprotect_as($1, $2)", 2, argtypes,
							  args, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("unprotect_as failed")));
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		result = SPI_datumTransfer(result, false, -1);
	as_owner_end(&as);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}
