/*-------------------------------------------------------------------------
 *
 * saved_plans.c
 *		SPI plans prepared once per backend and kept for its lifetime.
 *
 * Every statement the extension runs again and again is parsed once and
 * kept (SPI_keepplan): PostgreSQL's plan cache then re-analyzes and
 * re-plans it by itself when a relation it uses changes (an extension
 * update, a new index, fresh statistics), so nothing here needs to be
 * forgotten by hand.  There are two ways to hold one:
 *
 * - prepare_plan(): a call site with one fixed statement keeps the plan in
 *   a static pointer of its own;
 * - kept_plan(): statements whose text is composed at run time (the
 *   consumer engine's, whose columns depend on the installed version) are
 *   kept by their text, in a backend-local table.
 *
 * A plan is generic (PLAN_GENERIC: planned once, for lookups and writes by
 * key, whose best plan does not depend on the values) or planned anew for
 * each call's arguments and settings (PLAN_EACH_CALL: reads whose plan
 * depends on them, e.g. NULL arguments that fold away, or enable_seqscan
 * set around the call).  Either way the statement is parsed only once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "executor/spi.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "eventstore.h"

/* A plan kept by its statement's text; the key is the text's address. */
typedef struct KeptPlan
{
	const char *query;			/* key: a copy in TopMemoryContext */
	SPIPlanPtr	plan;
	PlanFor		how;
} KeptPlan;

static HTAB *kept_plans = NULL;

static SPIPlanPtr
save_plan(const char *query, int nargs, Oid *argtypes, PlanFor how)
{
	int			options = how == PLAN_GENERIC ? CURSOR_OPT_GENERIC_PLAN : CURSOR_OPT_CUSTOM_PLAN;
	SPIPlanPtr	plan = SPI_prepare_cursor(query, nargs, argtypes, options);

	if (plan == NULL || SPI_keepplan(plan) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("could not prepare \"%s\": %s", query,
								 SPI_result_code_string(SPI_result))));
	return plan;
}

/*
 * A saved, generic SPI plan of query, for the backend's lifetime, for a
 * call site that keeps it.
 */
SPIPlanPtr
prepare_plan(const char *query, int nargs, Oid *argtypes)
{
	return save_plan(query, nargs, argtypes, PLAN_GENERIC);
}

static uint32
query_hash(const void *key, Size keysize)
{
	const char *query = *(const char *const *) key;

	return hash_bytes((const unsigned char *) query, strlen(query));
}

static int
query_match(const void *key1, const void *key2, Size keysize)
{
	return strcmp(*(const char *const *) key1, *(const char *const *) key2);
}

/*
 * The kept plan of query, prepared on its first use.  The same text must
 * always come with the same argument types and the same choice of plan.
 */
SPIPlanPtr
kept_plan(const char *query, int nargs, Oid *argtypes, PlanFor how)
{
	KeptPlan   *entry;
	SPIPlanPtr	plan;
	const char *key;

	if (kept_plans == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(const char *);
		ctl.entrysize = sizeof(KeptPlan);
		ctl.hash = query_hash;
		ctl.match = query_match;
		ctl.hcxt = TopMemoryContext;
		kept_plans = hash_create("eventstore kept plans", 64, &ctl,
								 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	}
	entry = hash_search(kept_plans, &query, HASH_FIND, NULL);
	if (entry != NULL)
	{
		Assert(entry->how == how);
		return entry->plan;
	}
	/* prepared first: a statement that fails to prepare leaves no entry */
	plan = save_plan(query, nargs, argtypes, how);
	key = MemoryContextStrdup(TopMemoryContext, query);
	entry = hash_search(kept_plans, &key, HASH_ENTER, NULL);
	entry->plan = plan;
	entry->how = how;
	return plan;
}

/* Runs a saved plan; an outcome other than expected is an internal error. */
void
run_plan(SPIPlanPtr plan, Datum *values, const char *nulls, int expected)
{
	int			rc = SPI_execute_plan(plan, values, nulls, false, 0);

	if (rc != expected)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("eventstore statement failed: %s",
								 SPI_result_code_string(rc))));
}
