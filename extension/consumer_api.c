/*-------------------------------------------------------------------------
 *
 * consumer_api.c
 *		The SQL entry points of consumers that check their caller:
 *		create_consumer and create_upcaster, and the outside consumers'
 *		poll, ack and nack.
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
 * the caller; they check, then do the work as the extension's owner, the
 * way append() does: registration through plpgsql functions of the
 * extension granted to nobody, batches through the consumer engine
 * (consumer_engine.c), which an outside consumer shares with in-database
 * ones.
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
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_create_consumer);
PG_FUNCTION_INFO_V1(eventstore_create_upcaster);
PG_FUNCTION_INFO_V1(eventstore_poll);
PG_FUNCTION_INFO_V1(eventstore_ack);
PG_FUNCTION_INFO_V1(eventstore_nack);
PG_FUNCTION_INFO_V1(eventstore_lock_consumer);
PG_FUNCTION_INFO_V1(eventstore_lease_timeout);
PG_FUNCTION_INFO_V1(eventstore_retry_delay);

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
 *                 batch_size integer, max_attempts integer, run_as regrole,
 *                 types text[], members integer); before 1.3 without
 * members and before 1.2 without types, as an installation not updated yet
 * still calls it.
 */
Datum
eventstore_create_consumer(PG_FUNCTION_ARGS)
{
	static const char *const registrations[] = {
		"SELECT eventstore.register_consumer($1, $2, $3, $4, $5, $6)",
		"SELECT eventstore.register_consumer($1, $2, $3, $4, $5, $6, $7)",
		"SELECT eventstore.register_consumer($1, $2, $3, $4, $5, $6, $7, $8)",
	};
	Oid			argtypes[8] = {TEXTOID, TEXTARRAYOID, REGPROCEDUREOID, INT4OID, INT4OID, REGROLEOID,
	TEXTARRAYOID, INT4OID};
	InternalArgs args;
	AsOwner		as;

	refuse_on_standby("eventstore.create_consumer");
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
	run_internal(registrations[Min(Max(PG_NARGS(), 6), 8) - 6], argtypes, &args);
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

	refuse_on_standby("eventstore.create_upcaster");
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

/* The consumer name in the first argument, checked (42602, also for NULL). */
static char *
consumer_name_arg(FunctionCallInfo fcinfo)
{
	char	   *name;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid consumer name"),
				 errdetail("Consumer name NULL must match ^[a-z][a-z0-9_]*$ and be at most 63 characters.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_consumer_name(name);
	return name;
}

/*
 * The outside consumer's batch of the locked member to deliver now: the
 * leased one again once its lease ran out (parked after max_attempts),
 * else a new one.  false when there is none, or the leased batch is still
 * out.
 */
static bool
batch_to_deliver(Consumer *c, int limit, Batch *b)
{
	if (c->batch_kind != BATCH_NONE)
	{
		if (c->leased)
			return false;		/* leased to another poller, or backing off after a nack */
		if (c->batch_attempt > c->attempts)
			consumer_count_expired_lease(c);
		consumer_leased_batch(c, b);
		if (c->attempts < c->max_attempts)
		{
			consumer_renew_lease(c);
			return true;
		}
		consumer_park(c, b, 0, b->n, c->attempts, c->last_error);
		c->attempts = 0;
		consumer_record(c, b, b->n, 0, NULL, -1);
		batch_free(b);
	}
	if (consumer_next_batch(c, limit, b))
	{
		consumer_lease_batch(c, b);
		return true;
	}
	consumer_touch(c);
	return false;
}

/*
 * Finds a batch for poll(): of member (-1: of any member that is free,
 * skipping those another poller holds), locking the member it comes from
 * into *c.  false when no member has one.
 */
static bool
poll_members(const char *name, int member, int limit, Consumer *c, Batch *b)
{
	int			n;
	int			members;
	MemberRef  *refs = consumer_member_refs(name, member, member < 0, &n, &members);

	if (member >= members)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer \"%s\" has no member %d", name, member),
				 errdetail("Argument \"member\" is %d; the consumer has %d member%s, numbered from 0.",
						   member, members, members == 1 ? "" : "s")));
	if (n == 0)
		consumer_settings(name, CONSUMER_OUTSIDE, false, c);	/* its kind */
	for (int i = 0; i < n; i++)
	{
		if (!consumer_lock(name, CONSUMER_OUTSIDE, refs[i], member < 0, c))
			continue;
		if (i == 0)
			consumer_check_topics(c);
		if (batch_to_deliver(c, limit, b))
			return true;
	}
	return false;
}

/*
 * poll(consumer text, max integer, member integer) RETURNS SETOF delivery:
 * the batch of a member, each event upcast to its topic's current major
 * version.  Before 1.3, without member (and delivery has no member).
 */
Datum
eventstore_poll(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	AsOwner		as;
	Consumer	c;
	Batch		b = {0};
	int			max;
	int			member = -1;
	bool		with_member;

	refuse_on_standby("eventstore.poll");
	InitMaterializedSRF(fcinfo, 0);
	with_member = rsinfo->setDesc->natts == DELIVERY_NATTS;
	check_event_type(rsinfo->setDesc, "eventstore.delivery",
					 with_member ? DELIVERY_NATTS : DELIVERY_NATTS_BEFORE_1_3);
	as_owner_begin(&as);
	check_consumer_caller(fcinfo, &as, "poll");
	max = PG_ARGISNULL(1) ? -1 : PG_GETARG_INT32(1);
	if (max < 1 || max > 10000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid poll limit"),
				 errdetail("Argument \"max\" is %s; it must be between 1 and 10000.",
						   PG_ARGISNULL(1) ? "NULL" : psprintf("%d", max))));
	if (PG_NARGS() > 2 && !PG_ARGISNULL(2))
	{
		member = PG_GETARG_INT32(2);
		if (member < 0 || member > 255)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid consumer member"),
					 errdetail("Argument \"member\" is %d; it must be between 0 and 255, or NULL for any member.",
							   member)));
	}
	if (poll_members(consumer_name_arg(fcinfo), member, max, &c, &b))
	{
		for (int i = 0; i < b.n; i++)
		{
			StoredEvent *e = &b.events[i];
			Datum		row[DELIVERY_NATTS];
			bool		nulls[DELIVERY_NATTS];

			stored_event_values(e, upcast_envelope(text_to_cstring(e->topic),
												   stored_event_envelope(e),
												   e->parts.version_major),
								row, nulls);
			row[DELIVERY_ATT_BATCH_ID - 1] = Int64GetDatum(c.batch_id);
			nulls[DELIVERY_ATT_BATCH_ID - 1] = false;
			row[DELIVERY_ATT_ATTEMPT - 1] = Int32GetDatum(c.batch_attempt);
			nulls[DELIVERY_ATT_ATTEMPT - 1] = false;
			row[DELIVERY_ATT_MEMBER - 1] = Int32GetDatum(c.ref.member);
			nulls[DELIVERY_ATT_MEMBER - 1] = false;
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, nulls);
		}
		batch_free(&b);
	}
	as_owner_end(&as);
	return (Datum) 0;
}

/*
 * Locks the member of the outside consumer that holds batch_id for ack or
 * nack; false when no member holds it any more (acked already, parked):
 * then there is nothing to do.
 */
static bool
lock_batch(FunctionCallInfo fcinfo, AsOwner *as, const char *action, Consumer *c)
{
	char	   *name;

	check_consumer_caller(fcinfo, as, action);
	name = consumer_name_arg(fcinfo);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch NULL of consumer \"%s\" was never delivered", name),
				 errdetail("Argument \"batch_id\" must be a batch returned by eventstore.poll().")));
	return consumer_lock_batch(name, PG_GETARG_INT64(1), c);
}

/* ack(consumer text, batch_id bigint): acking a batch again changes nothing. */
Datum
eventstore_ack(PG_FUNCTION_ARGS)
{
	AsOwner		as;
	Consumer	c;

	refuse_on_standby("eventstore.ack");
	as_owner_begin(&as);
	if (lock_batch(fcinfo, &as, "ack a batch of", &c))
	{
		Batch		b = {0};

		consumer_leased_batch(&c, &b);
		c.attempts = 0;
		consumer_record(&c, &b, b.n, b.n, NULL, -1);
		batch_free(&b);
	}
	as_owner_end(&as);
	PG_RETURN_VOID();
}

/*
 * nack(consumer text, batch_id bigint, error text): one failed attempt per
 * delivery of the batch, however often it is nacked.
 */
Datum
eventstore_nack(PG_FUNCTION_ARGS)
{
	AsOwner		as;
	Consumer	c;

	refuse_on_standby("eventstore.nack");
	as_owner_begin(&as);
	if (lock_batch(fcinfo, &as, "nack a batch of", &c) && c.batch_attempt > c.attempts)
	{
		const char *error = PG_ARGISNULL(2) ? "nacked without an error text"
			: text_to_cstring(PG_GETARG_TEXT_PP(2));

		consumer_count_failure(&c, error);
		if (c.attempts >= c.max_attempts)
		{
			Batch		b = {0};

			consumer_leased_batch(&c, &b);
			consumer_park(&c, &b, 0, b.n, c.attempts, error);
			c.attempts = 0;
			consumer_record(&c, &b, b.n, 0, NULL, -1);
			batch_free(&b);
		}
	}
	as_owner_end(&as);
	PG_RETURN_VOID();
}

/*
 * lock_consumer(consumer text, kind text DEFAULT NULL): locks the consumer
 * for the SQL functions that change one (drop, reset, replay_parked); kind
 * 'outside' or 'in_database' refuses the other kind.  Internal.
 */
Datum
eventstore_lock_consumer(PG_FUNCTION_ARGS)
{
	char	   *name = consumer_name_arg(fcinfo);
	char	   *kind = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	Consumer	c;

	refuse_on_standby("a change of an eventstore consumer");
	SPI_connect();
	consumer_settings(name,
					  kind == NULL ? CONSUMER_ANY
					  : strcmp(kind, "outside") == 0 ? CONSUMER_OUTSIDE
					  : CONSUMER_IN_DATABASE,
					  true, &c);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * eventstore.lease_timeout() and eventstore.retry_delay(integer): helpers of
 * the SQL consumer functions of releases before 1.1, which still name them
 * while an installation is being upgraded.
 */
Datum
eventstore_lease_timeout(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(ms_interval_datum(eventstore_lease_timeout_ms));
}

Datum
eventstore_retry_delay(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(ms_interval_datum(consumer_retry_delay_ms(PG_GETARG_INT32(0))));
}
