/*
 * outbox.c
 *		One step of one outbox: claim a batch of messages, send each, and
 *		report each as sent or failed.
 *
 * The database owns the outbox; the daemon knows it only through three
 * functions named in the configuration:
 *     claim(max integer) RETURNS TABLE(id uuid, recipient text, subject text,
 *                                      body text, attempt integer)
 *         leases up to max due rows (a row whose lease runs out is offered
 *         again);
 *     sent(id uuid)                     marks the row sent (idempotent);
 *     failed(id uuid, error text)       records the error; the database
 *                                       schedules the retry (backoff).
 * Each is called as its own autocommitted statement, with parameters; the
 * names are quoted with PQescapeIdentifier.
 *
 * A step: claim(batch_size), then for each row, in the order claimed, the
 * sender's send, then sent(id) or failed(id, reason).  A failure never
 * stops the batch: it is recorded and the next row is sent.  A reason the
 * sender marks as permanent (SEND_REFUSED: a recipient with a line
 * break, say) starts with "permanent: ", for the database to park
 * the row at once if it likes; the daemon itself treats both kinds alike.
 * A message the server refused for good (SEND_REJECTED: SMTP 550 to 554)
 * is reported like any failure (the reply code is in the reason), and
 * counted apart, with the SEND_REFUSED ones, as refused (metrics.c).
 *
 * Nothing is lost when the daemon dies or loses its connection: rows it
 * claimed but did not report come back when their lease runs out.  A row
 * sent but not yet marked sent is then sent again; the sender gives every
 * copy the same Message-ID (derived from the row id) so that
 * receivers can drop the repeat.  A stop request (SIGTERM) is looked at
 * between messages: the message in hand is finished and reported, the rest
 * of the batch is left to its lease.  When sent() or failed() itself fails,
 * the batch stops there (going on would send messages that cannot be marked
 * either), and the outbox waits for the next wake-up.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "signals.h"

/* The outbox's three statements, for one connection. */
struct statements
{
	char	   *claim;
	char	   *sent;
	char	   *failed;
};

static void
statements_free(struct statements *st)
{
	free(st->claim);
	free(st->sent);
	free(st->failed);
}

/* prefix "schema"."function" suffix, quoted by libpq; NULL when out of memory. */
static char *
function_sql(PGconn *conn, const char *qualified, const char *prefix, const char *suffix)
{
	const char *dot = strchr(qualified, '.');
	char	   *schema = PQescapeIdentifier(conn, qualified, (size_t) (dot - qualified));
	char	   *function = PQescapeIdentifier(conn, dot + 1, strlen(dot + 1));
	char	   *sql = NULL;
	size_t		len;

	if (schema != NULL && function != NULL)
	{
		len = strlen(prefix) + strlen(schema) + 1 + strlen(function) + strlen(suffix) + 1;
		sql = malloc(len);
		if (sql != NULL)
			snprintf(sql, len, "%s%s.%s%s", prefix, schema, function, suffix);
	}
	PQfreemem(schema);
	PQfreemem(function);
	return sql;
}

static int
statements_build(PGconn *conn, const struct outbox *o, struct statements *st)
{
	st->claim = function_sql(conn, o->claim,
							 "SELECT id, recipient, subject, body, attempt FROM ",
							 "($1::integer)");
	st->sent = function_sql(conn, o->sent, "SELECT ", "($1::uuid)");
	st->failed = function_sql(conn, o->failed, "SELECT ", "($1::uuid, $2::text)");
	return st->claim != NULL && st->sent != NULL && st->failed != NULL ? 0 : -1;
}

/* sent(id) or failed(id, why); STEP_WORKED when the report is recorded. */
static enum step_result
report(struct db *db, const struct outbox *o, const struct statements *st,
	   const char *id, const char *why, struct run_stats *stats)
{
	const char *params[2] = {id, why};
	const char *what = why == NULL ? "sent" : "failed";
	PGresult   *res;
	enum db_status status;

	status = db_query(db, why == NULL ? st->sent : st->failed, why == NULL ? 1 : 2,
					  params, &res);
	if (status != DB_OK)
	{
		enum step_result r = step_query_failed(status, db, "outbox", o->name, what, stats);

		log_warning_f(LOG_FIELDS(.outbox = o->name, .id = id),
					  "not marked %s: it comes back when its lease runs out%s", what,
					  why == NULL ? " and may be sent again (same Message-ID)" : "");
		return r;
	}
	PQclear(res);
	return STEP_WORKED;
}

static const char *
column(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col);
}

enum step_result
outbox_step(struct db *db, const struct outbox *o, struct run_stats *stats)
{
	struct statements st = {0};
	char		max[16];
	const char *params[1] = {max};
	PGresult   *batch = NULL;
	enum db_status status;
	enum step_result result = STEP_IDLE;
	int			n;
	int			done = 0;
	int			sent = 0;
	int			failed = 0;
	double		started = metrics_clock();

	if (db->conn == NULL || statements_build(db->conn, o, &st) < 0)
	{
		log_error_f(LOG_FIELDS(.outbox = o->name,
							   .error = db->conn != NULL ? PQerrorMessage(db->conn) :
							   "not connected"), "cannot build its statements");
		statements_free(&st);
		stats->query_errors++;
		return STEP_ERROR;
	}

	snprintf(max, sizeof(max), "%d", o->batch_size);
	status = db_query(db, st.claim, 1, params, &batch);
	if (status != DB_OK)
	{
		result = step_query_failed(status, db, "outbox", o->name, "claim", stats);
		goto out;
	}
	if (PQnfields(batch) != 5)
	{
		log_error_f(LOG_FIELDS(.outbox = o->name), "claim returned %d columns, expected 5 "
					"(id, recipient, subject, body, attempt)", PQnfields(batch));
		stats->query_errors++;
		result = STEP_ERROR;
		goto out;
	}
	n = PQntuples(batch);
	log_debug_f(LOG_FIELDS(.outbox = o->name), "claimed=%d", n);
	metrics_claimed(o->name, n);

	for (; done < n; done++)
	{
		struct outbox_message m = {
			.outbox = o->name,
			.id = column(batch, done, 0),
			.recipient = column(batch, done, 1),
			.subject = column(batch, done, 2),
			.body = column(batch, done, 3),
			.attempt = column(batch, done, 4),
		};
		char		reason[480];
		char		why[512];
		enum send_result sr;

		if (stop_requested)
		{
			log_warning_f(LOG_FIELDS(.outbox = o->name), "stopping: %d claimed message(s) "
						  "left to come back when their lease runs out", n - done);
			break;
		}
		if (m.id[0] == '\0')
		{
			log_error_f(LOG_FIELDS(.outbox = o->name),
						"claim returned a row without an id: skipped");
			continue;
		}

		reason[0] = '\0';
		sr = plugin_send(&o->sender, &m, reason, sizeof(reason));
		if (sr == SEND_OK)
		{
			log_info_f(LOG_FIELDS(.outbox = o->name, .id = m.id,
								  .attempt = m.attempt[0] != '\0' ? m.attempt : "?"), "sent");
			stats->messages_sent++;
			metrics_message(o->name, METRICS_SENT);
			sent++;
			result = report(db, o, &st, m.id, NULL, stats);
			if (result != STEP_WORKED)
				goto out;
			continue;
		}
		snprintf(why, sizeof(why), "%s%s", sr == SEND_REFUSED ? "permanent: " : "",
				 reason[0] != '\0' ? reason : "sender failed");
		log_error_f(LOG_FIELDS(.outbox = o->name, .id = m.id,
							   .attempt = m.attempt[0] != '\0' ? m.attempt : "?", .error = why),
					"failed");
		stats->messages_failed++;
		metrics_message(o->name, sr == SEND_FAILED ? METRICS_FAILED : METRICS_REFUSED);
		failed++;
		result = report(db, o, &st, m.id, why, stats);
		if (result != STEP_WORKED)
			goto out;
	}
	/* a full batch with something sent: more may be due at once */
	result = n == o->batch_size && sent > 0 && !stop_requested ? STEP_WORKED : STEP_IDLE;
	if (n > 0)
		log_debug_f(LOG_FIELDS(.outbox = o->name), "batch done: %d sent, %d failed",
					sent, failed);

out:
	if (batch != NULL && PQntuples(batch) > 0)
		metrics_batch_duration(METRICS_OUTBOX, o->name, metrics_clock() - started);
	PQclear(batch);
	statements_free(&st);
	return result;
}
