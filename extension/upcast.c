/*-------------------------------------------------------------------------
 *
 * upcast.c
 *		Events as their topic's current major version.
 *
 * Stored events are never rewritten.  An event of an
 * older major version goes through the upcasters registered for its topic,
 * one major step after the other (1 -> 2 -> 3), on its way to a consumer or
 * to a reader calling eventstore.upcast().  Each upcaster is a function
 * fn(envelope jsonb) RETURNS jsonb; it runs as the role that registered it,
 * with search_path fixed to pg_catalog, pg_temp, so neither the registrar
 * nor the role receiving the event can lend the other its privileges.  What
 * it returns must be a valid envelope with the same id and the major
 * version the upcaster promised.
 *
 * Handlers and upcasters run as a security-restricted operation, like the
 * functions PostgreSQL's maintenance commands run as a table's owner: they
 * cannot create temporary objects, and settings they change are reset when
 * they return, so one role's code cannot leave traps in a session that runs
 * another role's code next (the dispatcher workers run every consumer).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_upcast);

typedef struct Upcaster
{
	Oid			fn;
	Oid			run_as;
	int32		to_major;
	char	   *name;			/* the function, for messages */
	bool		may_read;		/* run_as may still read the topic */
} Upcaster;

/* The upcaster of a topic from a major version; false if there is none. */
static bool
find_upcaster(const char *topic, int32 from_major, Upcaster *u)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[2];
	bool		isnull;

	if (plan == NULL)
	{
		Oid			argtypes[2] = {TEXTOID, INT4OID};

		plan = prepare_plan("SELECT fn::pg_catalog.regprocedure::pg_catalog.oid,"
							"       run_as::pg_catalog.oid, to_major, fn,"
							"       eventstore.unreadable_topic(run_as, ARRAY[topic]) IS NULL"
							"  FROM eventstore.upcasters"
							" WHERE topic OPERATOR(pg_catalog.=) $1"
							"   AND from_major OPERATOR(pg_catalog.=) $2",
							2, argtypes);
	}
	args[0] = CStringGetTextDatum(topic);
	args[1] = Int32GetDatum(from_major);
	if (SPI_execute_plan(plan, args, NULL, true, 1) != SPI_OK_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("upcaster lookup failed")));
	if (SPI_processed == 0)
		return false;
	u->fn = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	u->run_as = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	u->to_major = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	u->name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
	u->may_read = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	return true;
}

/*
 * A handler or upcaster runs as a role in the background, long after it was
 * registered, and its owner may change what it does at any time (CREATE OR
 * REPLACE, ALTER FUNCTION ... SECURITY INVOKER).  So its owner must already
 * have every privilege of the role it runs as: that role itself, a member of
 * it, or a superuser.  Otherwise the owner of a function registered to run
 * as a more privileged role would act as that role.
 */
void
check_function_runs_as(Oid fn, Oid role)
{
	HeapTuple	tuple;
	Oid			owner;

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with oid %u does not exist", fn)));
	owner = ((Form_pg_proc) GETSTRUCT(tuple))->proowner;
	ReleaseSysCache(tuple);
	if (!has_privs_of_role(owner, role))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("function %s may not run as role \"%s\"",
						format_procedure_qualified(fn), GetUserNameFromId(role, false)),
				 errdetail("Its owner \"%s\" does not have the privileges of role \"%s\", and could change what the function does.",
						   GetUserNameFromId(owner, false), GetUserNameFromId(role, false)),
				 errhint("Make role \"%s\" (or a member of it) the function's owner.",
						 GetUserNameFromId(role, false))));
}

/*
 * Calls fn(arg) as role, which must be allowed to execute it, as a
 * security-restricted operation whose setting changes are undone on return;
 * with fixed_search_path, under search_path pg_catalog, pg_temp.  NULL when
 * the function returns NULL.  An error leaves the user id and settings to
 * be restored by the (sub)transaction abort.
 */
Datum
call_as_role(Oid fn, Oid role, Datum arg, bool fixed_search_path, bool *isnull)
{
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fcinfo, 1);
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	Datum		result;

	if (pg_proc_aclcheck(fn, role, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", format_procedure(fn)),
				 errdetail("Role \"%s\" runs it and may not execute it.",
						   GetUserNameFromId(role, false))));
	check_function_runs_as(fn, role);
	fmgr_info(fn, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = arg;
	fcinfo->args[0].isnull = false;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	save_nestlevel = NewGUCNestLevel();
	if (fixed_search_path)
		(void) set_config_option("search_path", "pg_catalog, pg_temp",
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
	SetUserIdAndSecContext(role, save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	result = FunctionCallInvoke(fcinfo);
	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	*isnull = fcinfo->isnull;
	return result;
}

static char *
uuid_text(pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
}

/* Runs one upcaster and checks what it returns. */
static Jsonb *
apply_upcaster(const char *topic, Upcaster *u, Jsonb *envelope,
			   EnvelopeParts *parts)
{
	EnvelopeParts before = *parts;
	EnvelopeError err;
	bool		isnull;
	Datum		result;

	/* Checked at every call, as consumers are: a revoke takes effect at once. */
	if (!u->may_read)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read topic \"%s\"", topic),
				 errdetail("Role \"%s\", the registrar of upcaster %s, is not a member of eventstore_reader and has no read grant on the topic.",
						   GetUserNameFromId(u->run_as, false), u->name)));
	result = call_as_role(u->fn, u->run_as, JsonbPGetDatum(envelope), true, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("upcaster %s returned null", u->name),
				 errdetail("Event %s of topic \"%s\" at major version %d.",
						   uuid_text(&before.id), topic, before.version_major)));
	envelope = DatumGetJsonbP(result);
	if (!envelope_check(envelope, parts, &err))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("upcaster %s returned an invalid event", u->name),
				 errdetail("Event %s of topic \"%s\" came back with %s",
						   uuid_text(&before.id), topic, envelope_error_text(&err))));
	if (memcmp(&parts->id, &before.id, sizeof(pg_uuid_t)) != 0 ||
		parts->version_major != u->to_major)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("upcaster %s returned a different event", u->name),
				 errdetail("Event %s of topic \"%s\" came back as event %s at major version %d; the upcaster is registered from %d to %d.",
						   uuid_text(&before.id), topic, uuid_text(&parts->id),
						   parts->version_major, before.version_major, u->to_major)));
	return envelope;
}

/*
 * The envelope of an event of topic turned into the topic's current major
 * version; the envelope itself when it is current already.  major is the
 * event's major version when the caller knows it (a stored event's
 * version_major column), -1 when it must be read from the envelope.  Must
 * be called inside SPI_connect, as the owner role.
 */
Jsonb *
upcast_envelope(const char *topic, Jsonb *envelope, int32 major)
{
	TopicInfo  *info = topic_lookup(topic, strlen(topic));
	EnvelopeParts parts;
	EnvelopeError err;

	if (info == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("topic \"%s\" does not exist", topic)));
	/* the common case: nothing to parse, nothing to do */
	if (major >= info->current_major)
		return envelope;
	if (!envelope_check(envelope, &parts, &err))
		envelope_report(&err, -1);

	while (parts.version_major < info->current_major)
	{
		Upcaster	u;

		if (!find_upcaster(topic, parts.version_major, &u))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("no upcaster for topic \"%s\" from major version %d",
							topic, parts.version_major),
					 errdetail("Event %s is at version %d.%d; the topic is at %d.%d.",
							   uuid_text(&parts.id), parts.version_major,
							   parts.version_minor, info->current_major,
							   info->current_minor),
					 errhint("Register one with eventstore.create_upcaster().")));
		envelope = apply_upcaster(topic, &u, envelope, &parts);
	}
	return envelope;
}

/*
 * The event (a datum of type eventstore.event) with its envelope upcast; the
 * datum itself when nothing changes.  Must be called inside SPI_connect, as
 * the owner role.
 */
Datum
upcast_event(Datum event)
{
	HeapTupleHeader th = DatumGetHeapTupleHeader(event);
	TupleDesc	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(th),
											  HeapTupleHeaderGetTypMod(th));
	HeapTupleData tuple;
	Datum		values[EVENT_NATTS];
	bool		nulls[EVENT_NATTS];
	Jsonb	   *envelope;
	Datum		result = event;

	check_event_type(desc, "eventstore.event", EVENT_NATTS);
	tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = th;
	heap_deform_tuple(&tuple, desc, values, nulls);

	if (nulls[EVENT_ATT_TOPIC - 1] || nulls[EVENT_ATT_ENVELOPE - 1])
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event to upcast has no %s",
						nulls[EVENT_ATT_TOPIC - 1] ? "topic" : "envelope"),
				 errdetail("Field \"%s\" is NULL.",
						   nulls[EVENT_ATT_TOPIC - 1] ? "topic" : "envelope")));
	envelope = DatumGetJsonbP(values[EVENT_ATT_ENVELOPE - 1]);
	values[EVENT_ATT_ENVELOPE - 1] =
		JsonbPGetDatum(upcast_envelope(TextDatumGetCString(values[EVENT_ATT_TOPIC - 1]),
									   envelope, -1));
	if (DatumGetPointer(values[EVENT_ATT_ENVELOPE - 1]) != (Pointer) envelope)
		result = HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
	ReleaseTupleDesc(desc);
	return result;
}

/* eventstore.upcast(event) RETURNS event */
Datum
eventstore_upcast(PG_FUNCTION_ARGS)
{
	Datum		event = PG_GETARG_DATUM(0);
	AsOwner		as;

	as_owner_begin(&as);
	event = SPI_datumTransfer(upcast_event(event), false, -1);
	as_owner_end(&as);
	PG_RETURN_DATUM(event);
}
