/*-------------------------------------------------------------------------
 *
 * standby.c
 *		Refusing writes on a hot standby, in one place.
 *
 * Every read works on a hot standby: reads take no lock a standby refuses
 * and write nothing.  Every entry point that writes (appends, consumer
 * batches and bookkeeping, erasure) calls refuse_on_standby() first, so
 * that a client connected to a standby by mistake learns at once, with
 * PostgreSQL's own SQLSTATE for it (25006, read_only_sql_transaction) and a
 * hint naming the fix, rather than from whatever statement deep inside
 * happens to write first.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"

#include "eventstore.h"

/* Raises 25006 when the server is a standby (in recovery); what: the caller. */
void
refuse_on_standby(const char *what)
{
	if (!RecoveryInProgress())
		return;
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("%s cannot run on a standby", what),
			 errdetail("The server is a hot standby: it replays the primary's changes and only reads."),
			 errhint("Connect to the primary, for example with target_session_attrs=read-write in the connection string.")));
}
