/*-------------------------------------------------------------------------
 *
 * dispatcher_utility.c
 *		Statements the dispatcher must make way for, or hear about: a
 *		ProcessUtility hook.
 *
 * DROP DATABASE (without FORCE), ALTER DATABASE ... RENAME TO and ALTER
 * DATABASE ... SET TABLESPACE refuse to run while other sessions are
 * connected to the database, and CREATE DATABASE ... TEMPLATE while any is
 * connected to the template: they wait five seconds, then fail.  The
 * dispatcher's workers are such sessions, and the launcher would start
 * them again.  So before the statement runs, this backend holds the
 * database in the registry (dispatcher_shmem.c): its workers leave at once
 * and the launcher starts none; this backend waits (up to WORKERS_GONE_MS)
 * until they have gone, then runs the statement.  The hold ends with the
 * statement's transaction (commit_hook.c calls dispatcher_release_held()),
 * or after HOLD_MS if that never comes.  DROP DATABASE WITH (FORCE) needs
 * none of this: it terminates every session, the workers included, with
 * SIGTERM.
 *
 * CREATE DATABASE and CREATE EXTENSION eventstore ask the launcher, once
 * committed, to look at the databases at once instead of at its next
 * interval, so that a new database is served within moments.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"

#include "eventstore.h"

/* Longest wait for a database's workers to leave. */
#define WORKERS_GONE_MS 5000

/* Longest hold, should the holder's transaction never end. */
#define HOLD_MS 60000

static ProcessUtility_hook_type prev_process_utility = NULL;

/* Whether this transaction asks the launcher to look once it commits. */
static bool request_at_commit = false;

/* Whether this transaction holds a database. */
static bool holding = false;

/* Holds a database by name, if it exists, and waits for its workers. */
static void
make_way(const char *dbname)
{
	Oid			dboid;

	if (dbname == NULL)
		return;
	dboid = get_database_oid(dbname, true);
	if (!OidIsValid(dboid) || !dispatcher_hold_database(dboid, HOLD_MS))
		return;
	holding = true;
	for (int waited = 0; waited < WORKERS_GONE_MS &&
		 dispatcher_database_has_workers(dboid); waited += 10)
	{
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10000L);
	}
}

/* The TEMPLATE option of CREATE DATABASE, if given. */
static const char *
template_of(CreatedbStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->options)
	{
		DefElem    *opt = lfirst(lc);

		if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
			return defGetString(opt);
	}
	return NULL;
}

static void
before_statement(Node *parsetree)
{
	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			make_way(((DropdbStmt *) parsetree)->dbname);
			break;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
				make_way(((RenameStmt *) parsetree)->subname);
			break;
		case T_AlterDatabaseStmt:
			{
				AlterDatabaseStmt *stmt = (AlterDatabaseStmt *) parsetree;
				ListCell   *lc;

				foreach(lc, stmt->options)
				{
					if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
						make_way(stmt->dbname);
				}
				break;
			}
		case T_CreatedbStmt:
			make_way(template_of((CreatedbStmt *) parsetree));
			request_at_commit = true;
			break;
		case T_CreateExtensionStmt:
			if (strcmp(((CreateExtensionStmt *) parsetree)->extname, "eventstore") == 0)
				request_at_commit = true;
			break;
		default:
			break;
	}
}

static void
dispatcher_process_utility(PlannedStmt *pstmt, const char *queryString,
						   bool readOnlyTree, ProcessUtilityContext context,
						   ParamListInfo params, QueryEnvironment *queryEnv,
						   DestReceiver *dest, QueryCompletion *qc)
{
	before_statement(pstmt->utilityStmt);
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/* At the end of a transaction (commit_hook.c): holds go, requests are sent. */
void
dispatcher_utility_xact_end(bool committed)
{
	if (holding)
		dispatcher_release_held();
	holding = false;
	if (committed && request_at_commit)
		dispatcher_request_launcher();
	request_at_commit = false;
}

/* Called from _PG_init: installs the hook when the library is preloaded. */
void
dispatcher_utility_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = dispatcher_process_utility;
}
