/*-------------------------------------------------------------------------
 *
 * consumer_access.c
 *		Who may act for a consumer: the SQL entry points that create
 *		consumers and upcasters and that poll, ack and nack batches.
 *
 * A consumer belongs to a role, consumers.run_as: its handler and the
 * upcasters of its events run as that role.  So creating a consumer for a
 * role, and taking or confirming its batches, is allowed only to members of
 * that role (superusers are members of every role): code then never runs
 * with more privileges than its caller already has.  An upcaster runs as
 * the role that receives the event, so registering one only needs EXECUTE
 * on its function.
 *
 * These checks need the caller's identity, which a SECURITY DEFINER
 * function no longer knows.  So the entry points are C functions running as
 * the caller; they check, then run the bookkeeping (plpgsql functions of
 * the extension granted to nobody) as the extension's owner, the way
 * append() does.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/tuplestore.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_create_consumer);
PG_FUNCTION_INFO_V1(eventstore_create_upcaster);
PG_FUNCTION_INFO_V1(eventstore_poll);
PG_FUNCTION_INFO_V1(eventstore_ack);
PG_FUNCTION_INFO_V1(eventstore_nack);

/* Saved user before switching to the owner. */
typedef struct AsOwner
{
	Oid			caller;
	Oid			save_userid;
	int			save_sec_context;
} AsOwner;

static void
become_owner(AsOwner *as)
{
	SPI_connect();
	GetUserIdAndSecContext(&as->save_userid, &as->save_sec_context);
	as->caller = as->save_userid;
	SetUserIdAndSecContext(eventstore_owner(),
						   as->save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

static void
become_caller(AsOwner *as)
{
	SetUserIdAndSecContext(as->save_userid, as->save_sec_context);
	SPI_finish();
}

/* Raises 42501 unless caller may act as role. */
void
check_consumer_role(Oid caller, Oid role, const char *action, const char *consumer)
{
	if (is_member_of_role(caller, role))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 consumer ? errmsg("permission denied to %s consumer \"%s\"", action, consumer)
			 : errmsg("permission denied to %s", action),
			 errdetail("Role \"%s\" is not a member of role \"%s\", the consumer's role.",
					   GetUserNameFromId(caller, false), GetUserNameFromId(role, false))));
}

/*
 * The role of a consumer, or InvalidOid when there is no such consumer (the
 * bookkeeping function then reports it).  Runs as the owner.
 */
static Oid
consumer_role(Datum name, bool isnull)
{
	Oid			argtypes[1] = {TEXTOID};
	bool		rolenull;

	if (isnull)
		return InvalidOid;
	if (SPI_execute_with_args("SELECT run_as::pg_catalog.oid FROM eventstore.consumers"
							  " WHERE name OPERATOR(pg_catalog.=) $1",
							  1, argtypes, &name, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "consumer lookup failed");
	if (SPI_processed == 0)
		return InvalidOid;
	return DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  1, &rolenull));
}

/* Runs a bookkeeping call with the function's own arguments. */
static void
run_internal(FunctionCallInfo fcinfo, const char *query, Oid *argtypes,
			 Datum *values)
{
	int			nargs = PG_NARGS();
	char	   *nulls = palloc(nargs + 1);
	int			rc;

	for (int i = 0; i < nargs; i++)
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	nulls[nargs] = '\0';
	rc = SPI_execute_with_args(query, nargs, argtypes, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "\"%s\" failed: %s", query, SPI_result_code_string(rc));
}

/* The function's arguments as an array of datums (NULLs as 0). */
static Datum *
argument_values(FunctionCallInfo fcinfo)
{
	Datum	   *values = palloc0(Max(PG_NARGS(), 1) * sizeof(Datum));

	for (int i = 0; i < PG_NARGS(); i++)
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
	return values;
}

/*
 * create_consumer(name text, topics text[], handler regprocedure,
 *                 batch_size integer, max_attempts integer, run_as regrole)
 */
Datum
eventstore_create_consumer(PG_FUNCTION_ARGS)
{
	Oid			argtypes[6] = {TEXTOID, TEXTARRAYOID, REGPROCEDUREOID, INT4OID, INT4OID, REGROLEOID};
	Datum	   *values = argument_values(fcinfo);
	AsOwner		as;

	become_owner(&as);
	if (PG_ARGISNULL(5))
	{
		/* the consumer acts as its creator */
		values[5] = ObjectIdGetDatum(as.caller);
		fcinfo->args[5].isnull = false;
	}
	check_consumer_role(as.caller, DatumGetObjectId(values[5]),
						"create a consumer for role", NULL);
	run_internal(fcinfo, "SELECT eventstore.register_consumer($1, $2, $3, $4, $5, $6)",
				 argtypes, values);
	become_caller(&as);
	PG_RETURN_VOID();
}

/* create_upcaster(topic text, from_major integer, to_major integer, fn regprocedure) */
Datum
eventstore_create_upcaster(PG_FUNCTION_ARGS)
{
	Oid			argtypes[4] = {TEXTOID, INT4OID, INT4OID, REGPROCEDUREOID};
	Datum	   *values = argument_values(fcinfo);
	AsOwner		as;

	become_owner(&as);
	if (!PG_ARGISNULL(3) &&
		pg_proc_aclcheck(PG_GETARG_OID(3), as.caller, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s",
						format_procedure(PG_GETARG_OID(3))),
				 errdetail("An upcaster can only be registered by a role that may execute it.")));
	run_internal(fcinfo, "SELECT eventstore.register_upcaster($1, $2, $3, $4)",
				 argtypes, values);
	become_caller(&as);
	PG_RETURN_VOID();
}

/* Checks the caller against the consumer named by the first argument. */
static Oid
check_consumer_caller(FunctionCallInfo fcinfo, AsOwner *as, const char *action)
{
	Oid			role = consumer_role(PG_GETARG_DATUM(0), PG_ARGISNULL(0));

	if (OidIsValid(role))
		check_consumer_role(as->caller, role, action,
							text_to_cstring(PG_GETARG_TEXT_PP(0)));
	return role;
}

/*
 * poll(consumer text, max integer) RETURNS SETOF delivery: the batch from
 * the bookkeeping, each event upcast as the consumer's role.
 */
Datum
eventstore_poll(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum	   *values = argument_values(fcinfo);
	AsOwner		as;
	Oid			role;
	SPITupleTable *batch;
	uint64		nrows;

	InitMaterializedSRF(fcinfo, 0);
	become_owner(&as);
	role = check_consumer_caller(fcinfo, &as, "poll");
	run_internal(fcinfo, "SELECT * FROM eventstore.poll_batch($1, $2)", argtypes, values);
	/* upcasting runs queries of its own: keep the batch's results */
	batch = SPI_tuptable;
	nrows = SPI_processed;
	for (uint64 i = 0; i < nrows; i++)
	{
		Datum		row[DELIVERY_NATTS];
		bool		nulls[DELIVERY_NATTS];

		if (batch->tupdesc->natts != DELIVERY_NATTS)
			elog(ERROR, "eventstore.delivery has %d attributes, expected %d",
				 batch->tupdesc->natts, DELIVERY_NATTS);
		heap_deform_tuple(batch->vals[i], batch->tupdesc, row, nulls);
		row[EVENT_ATT_ENVELOPE - 1] =
			JsonbPGetDatum(upcast_envelope(TextDatumGetCString(row[EVENT_ATT_TOPIC - 1]),
										   DatumGetJsonbP(row[EVENT_ATT_ENVELOPE - 1]),
										   role));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, nulls);
	}
	become_caller(&as);
	return (Datum) 0;
}

/* ack(consumer text, batch_id bigint) */
Datum
eventstore_ack(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	Datum	   *values = argument_values(fcinfo);
	AsOwner		as;

	become_owner(&as);
	(void) check_consumer_caller(fcinfo, &as, "ack a batch of");
	run_internal(fcinfo, "SELECT eventstore.ack_batch($1, $2)", argtypes, values);
	become_caller(&as);
	PG_RETURN_VOID();
}

/* nack(consumer text, batch_id bigint, error text) */
Datum
eventstore_nack(PG_FUNCTION_ARGS)
{
	Oid			argtypes[3] = {TEXTOID, INT8OID, TEXTOID};
	Datum	   *values = argument_values(fcinfo);
	AsOwner		as;

	become_owner(&as);
	(void) check_consumer_caller(fcinfo, &as, "nack a batch of");
	run_internal(fcinfo, "SELECT eventstore.nack_batch($1, $2, $3)", argtypes, values);
	become_caller(&as);
	PG_RETURN_VOID();
}
