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
 * the role that registered it, which must be allowed to execute it.
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
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("consumer lookup failed")));
	if (SPI_processed == 0)
		return InvalidOid;
	return DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										  1, &rolenull));
}

/*
 * The arguments of a bookkeeping call: the function's own, and room for one
 * more (the caller) at index PG_NARGS().
 */
typedef struct InternalArgs
{
	int			nargs;
	Datum		values[FUNC_MAX_ARGS + 1];
	char		nulls[FUNC_MAX_ARGS + 2];
} InternalArgs;

static void
take_arguments(FunctionCallInfo fcinfo, InternalArgs *args)
{
	args->nargs = PG_NARGS();
	for (int i = 0; i < args->nargs; i++)
	{
		args->values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		args->nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	args->nulls[args->nargs] = '\0';
}

/* Adds an argument after the function's own. */
static void
add_argument(InternalArgs *args, Datum value)
{
	args->values[args->nargs] = value;
	args->nulls[args->nargs++] = ' ';
	args->nulls[args->nargs] = '\0';
}

static void
run_internal(const char *query, Oid *argtypes, InternalArgs *args)
{
	int			rc = SPI_execute_with_args(query, args->nargs, argtypes, args->values,
										   args->nulls, false, 0);

	if (rc < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("\"%s\" failed: %s", query,
								 SPI_result_code_string(rc))));
}

/*
 * create_consumer(name text, topics text[], handler regprocedure,
 *                 batch_size integer, max_attempts integer, run_as regrole)
 */
Datum
eventstore_create_consumer(PG_FUNCTION_ARGS)
{
	Oid			argtypes[6] = {TEXTOID, TEXTARRAYOID, REGPROCEDUREOID, INT4OID, INT4OID, REGROLEOID};
	InternalArgs args;
	AsOwner		as;

	as_owner_begin(&as);
	take_arguments(fcinfo, &args);
	if (PG_ARGISNULL(5))
	{
		/* the consumer acts as its creator */
		args.values[5] = ObjectIdGetDatum(as.caller);
		args.nulls[5] = ' ';
	}
	if (!OidIsValid(DatumGetObjectId(args.values[5])))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid consumer role"),
				 errdetail("Argument \"run_as\" does not name a role.")));
	check_consumer_role(as.caller, DatumGetObjectId(args.values[5]),
						"create a consumer for role", NULL);
	if (!PG_ARGISNULL(2))
		check_function_runs_as(PG_GETARG_OID(2), DatumGetObjectId(args.values[5]));
	run_internal("SELECT eventstore.register_consumer($1, $2, $3, $4, $5, $6)",
				 argtypes, &args);
	as_owner_end(&as);
	PG_RETURN_VOID();
}

/*
 * create_upcaster(topic text, from_major integer, to_major integer,
 *                 fn regprocedure): the upcaster runs as its registrar.
 */
Datum
eventstore_create_upcaster(PG_FUNCTION_ARGS)
{
	Oid			argtypes[5] = {TEXTOID, INT4OID, INT4OID, REGPROCEDUREOID, REGROLEOID};
	InternalArgs args;
	AsOwner		as;

	as_owner_begin(&as);
	take_arguments(fcinfo, &args);
	if (!PG_ARGISNULL(3) &&
		pg_proc_aclcheck(PG_GETARG_OID(3), as.caller, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s",
						format_procedure(PG_GETARG_OID(3))),
				 errdetail("An upcaster can only be registered by a role that may execute it.")));
	if (!PG_ARGISNULL(3))
		check_function_runs_as(PG_GETARG_OID(3), as.caller);
	add_argument(&args, ObjectIdGetDatum(as.caller));
	run_internal("SELECT eventstore.register_upcaster($1, $2, $3, $4, $5)",
				 argtypes, &args);
	as_owner_end(&as);
	PG_RETURN_VOID();
}

/* Checks the caller against the consumer named by the first argument. */
static void
check_consumer_caller(FunctionCallInfo fcinfo, AsOwner *as, const char *action)
{
	Oid			role = consumer_role(PG_GETARG_DATUM(0), PG_ARGISNULL(0));

	if (OidIsValid(role))
		check_consumer_role(as->caller, role, action,
							text_to_cstring(PG_GETARG_TEXT_PP(0)));
}

/*
 * poll(consumer text, max integer) RETURNS SETOF delivery: the batch from
 * the bookkeeping, each event upcast.
 */
Datum
eventstore_poll(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	InternalArgs args;
	AsOwner		as;
	SPITupleTable *batch;
	uint64		nrows;

	InitMaterializedSRF(fcinfo, 0);
	as_owner_begin(&as);
	check_consumer_caller(fcinfo, &as, "poll");
	take_arguments(fcinfo, &args);
	run_internal("SELECT * FROM eventstore.poll_batch($1, $2)", argtypes, &args);
	/* upcasting runs queries of its own: keep the batch's results */
	batch = SPI_tuptable;
	nrows = SPI_processed;
	for (uint64 i = 0; i < nrows; i++)
	{
		Datum		row[DELIVERY_NATTS];
		bool		nulls[DELIVERY_NATTS];

		if (batch->tupdesc->natts != DELIVERY_NATTS)
			ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("eventstore.delivery has been altered"),
				 errdetail("It has %d attributes; eventstore expects %d.",
						   batch->tupdesc->natts, DELIVERY_NATTS)));
		heap_deform_tuple(batch->vals[i], batch->tupdesc, row, nulls);
		row[EVENT_ATT_ENVELOPE - 1] =
			JsonbPGetDatum(upcast_envelope(TextDatumGetCString(row[EVENT_ATT_TOPIC - 1]),
										   DatumGetJsonbP(row[EVENT_ATT_ENVELOPE - 1])));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, nulls);
	}
	as_owner_end(&as);
	return (Datum) 0;
}

/* ack(consumer text, batch_id bigint) */
Datum
eventstore_ack(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	InternalArgs args;
	AsOwner		as;

	as_owner_begin(&as);
	check_consumer_caller(fcinfo, &as, "ack a batch of");
	take_arguments(fcinfo, &args);
	run_internal("SELECT eventstore.ack_batch($1, $2)", argtypes, &args);
	as_owner_end(&as);
	PG_RETURN_VOID();
}

/* nack(consumer text, batch_id bigint, error text) */
Datum
eventstore_nack(PG_FUNCTION_ARGS)
{
	Oid			argtypes[3] = {TEXTOID, INT8OID, TEXTOID};
	InternalArgs args;
	AsOwner		as;

	as_owner_begin(&as);
	check_consumer_caller(fcinfo, &as, "nack a batch of");
	take_arguments(fcinfo, &args);
	run_internal("SELECT eventstore.nack_batch($1, $2, $3)", argtypes, &args);
	as_owner_end(&as);
	PG_RETURN_VOID();
}
