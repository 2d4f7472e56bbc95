/*
 * consumer_step.c
 *		Driving one consumer one step: a run_consumer call or one batch.
 *
 * An in_database consumer's step is one autocommitted
 *     SELECT eventstore.run_consumer(name, batch_size)
 * which runs the consumer's SQL handler inside the server and returns how
 * many events it handled; the handler's effects and the checkpoint commit
 * together, so nothing here needs to be undone when the connection drops.
 *
 * An outside consumer's step is one batch:
 *     eventstore.poll(name, batch_size)   the batch, in position order
 *       (name, batch_size, member)        with "member" k, or NULL with
 *                                         "members" N > 1 (eventstore 1.3)
 *     handler, once per event             stops at the first failure
 *     eventstore.ack(name, batch_id)      when every event succeeded
 *     eventstore.nack(name, batch_id, e)  otherwise, with the handler's error
 * If the connection drops after the handler ran but before the ack, the
 * server redelivers the batch once its lease expires: delivery is at least
 * once, and the JSON given to handlers carries the event id for them to
 * drop repeats.
 *
 * The two-argument poll is what installations before 1.3 have: it is called
 * when the configuration names no member and asks for one poller, so that
 * such a daemon keeps working against them, and a configuration that asks
 * for members fails there with a word on why.  A 1.3 server hands out a
 * batch of one member (any free one, without a member given), and says
 * which in the row's member column: logged as the field member.
 *
 * The caller repeats steps until each consumer is idle; one step is also
 * the unit a stop request waits for.  With "members" N > 1 the callers are
 * N pollers, each in a thread of its own with its own connection
 * (pollers.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer_step.h"
#include "log.h"
#include "metrics.h"

#define RUN_CONSUMER_SQL "SELECT eventstore.run_consumer($1, $2)"
/* to_jsonb: the columns by name, member among them where the server has it */
#define POLL_COLUMNS \
	"SELECT d.batch_id, d.position, d.id, j->>'attempt', j::text, j->>'member' "
#define POLL_SQL POLL_COLUMNS \
	"FROM eventstore.poll($1, $2) AS d, LATERAL to_jsonb(d) AS j ORDER BY d.position"
#define POLL_MEMBER_SQL POLL_COLUMNS \
	"FROM eventstore.poll($1, $2, $3) AS d, LATERAL to_jsonb(d) AS j ORDER BY d.position"
#define UNDEFINED_FUNCTION "42883"
#define ACK_SQL "SELECT eventstore.ack($1, $2)"
#define NACK_SQL "SELECT eventstore.nack($1, $2, $3)"

/* With a member given to poll: a member to poll, or several pollers of any. */
static int
polls_members(const struct consumer *c)
{
	return c->member >= 0 || c->pollers > 1;
}

/*
 * sql (run_consumer or poll) with the consumer's name and batch_size, and
 * with members its member (NULL for any).
 */
static enum db_status
query_batch(struct db *db, const char *sql, const struct consumer *c, int batch_size,
			int members, PGresult **res)
{
	char		max[16];
	char		member[16];
	const char *params[3] = {c->name, max, c->member >= 0 ? member : NULL};

	snprintf(max, sizeof(max), "%d", batch_size);
	snprintf(member, sizeof(member), "%d", c->member);
	return db_query(db, sql, members ? 3 : 2, params, res);
}

static enum step_result
step_in_database(struct db *db, const struct consumer *c, int batch_size,
				 struct run_stats *stats)
{
	PGresult   *res;
	enum db_status status;
	long long	handled;
	double		started = metrics_clock();

	status = query_batch(db, RUN_CONSUMER_SQL, c, batch_size, 0, &res);
	if (status != DB_OK)
		return step_query_failed(status, db, "consumer", c->name, "run_consumer", stats);
	if (PQntuples(res) != 1 || PQnfields(res) != 1)
	{
		log_error_f(LOG_FIELDS(.consumer = c->name),
					"run_consumer returned %d rows of %d columns, expected one bigint",
					PQntuples(res), PQnfields(res));
		PQclear(res);
		stats->query_errors++;
		return STEP_ERROR;
	}
	handled = PQgetisnull(res, 0, 0) ? 0 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	if (handled <= 0)
	{
		log_debug_f(LOG_FIELDS(.consumer = c->name), "idle");
		return STEP_IDLE;
	}
	log_info_f(LOG_FIELDS(.consumer = c->name), "run_consumer handled=%lld", handled);
	stats->events_ok += handled;
	metrics_events_handled(c->name, handled);
	metrics_consumer_batch(c->name, 1);
	metrics_batch_duration(METRICS_CONSUMER, c->name, metrics_clock() - started);
	return STEP_WORKED;
}

/*
 * Acks a batch (why NULL) or nacks it with why.  STEP_WORKED or STEP_NACKED,
 * or what step_query_failed() makes of a failed query (the batch is then
 * redelivered when its lease runs out).
 */
static enum step_result
finish_batch(struct db *db, const char *consumer, const char *batch_id,
			 const char *member, const char *why, struct run_stats *stats)
{
	const char *params[3] = {consumer, batch_id, why};
	const char *what = why == NULL ? "ack" : "nack";
	PGresult   *res;
	enum db_status status;

	status = db_query(db, why == NULL ? ACK_SQL : NACK_SQL, why == NULL ? 2 : 3,
					  params, &res);
	if (status != DB_OK)
	{
		enum step_result r = step_query_failed(status, db, "consumer", consumer, what,
												   stats);

		log_warning_f(LOG_FIELDS(.consumer = consumer, .batch = batch_id, .member = member),
					  "not %sed: it will be redelivered", what);
		return r;
	}
	PQclear(res);
	if (why == NULL)
	{
		stats->batches_acked++;
		return STEP_WORKED;
	}
	stats->batches_nacked++;
	return STEP_NACKED;
}

/* The member for the logs: none before eventstore 1.3. */
static const char *
member_field(const struct delivery *d)
{
	return d->member[0] != '\0' ? d->member : NULL;
}

/* The handler failed on event d: logged and counted. */
static void
event_failed(const struct consumer *c, const struct delivery *d, const char *why,
			 struct run_stats *stats)
{
	log_error_f(LOG_FIELDS(.consumer = c->name, .batch = d->batch_id, .member = member_field(d),
						   .position = d->position, .id = d->id,
						   .attempt = d->attempt[0] != '\0' ? d->attempt : "?",
						   .error = why), "failed");
	stats->events_failed++;
	metrics_handler_failure(c->name);
}

static void
event_ok(const struct consumer *c, const struct delivery *d, struct run_stats *stats)
{
	log_info_f(LOG_FIELDS(.consumer = c->name, .batch = d->batch_id, .member = member_field(d),
						  .position = d->position, .id = d->id), "ok");
	stats->events_ok++;
}

/*
 * The handler, once per event in order, up to the first failure (its
 * reason in why).  Returns the events done with.
 */
static int
handle_each_event(const struct consumer *c, const struct delivery *d, int n,
				  char *why, size_t whylen, struct run_stats *stats)
{
	for (int i = 0; i < n; i++)
	{
		if (plugin_handle(&c->handler, &d[i], why, whylen) < 0)
		{
			if (why[0] == '\0')
				snprintf(why, whylen, "handler failed");
			event_failed(c, &d[i], why, stats);
			return i;
		}
		event_ok(c, &d[i], stats);
	}
	return n;
}

/*
 * The handler, once for the whole batch: every event or none is done with
 * (a failure is logged against the first).  Returns the events done with.
 */
static int
handle_whole_batch(const struct consumer *c, const struct delivery *d, int n,
				   char *why, size_t whylen, struct run_stats *stats)
{
	if (plugin_handle_batch(&c->handler, d, n, why, whylen) < 0)
	{
		if (why[0] == '\0')
			snprintf(why, whylen, "handler failed");
		event_failed(c, &d[0], why, stats);
		return 0;
	}
	for (int i = 0; i < n; i++)
		event_ok(c, &d[i], stats);
	return n;
}

static enum step_result
step_outside(struct db *db, const struct consumer *c, int batch_size,
			 struct run_stats *stats)
{
	char		why[512];
	PGresult   *batch;
	enum db_status status;
	enum step_result result;
	const char *batch_id;
	const char *member;
	int			members = polls_members(c);
	struct delivery *deliveries;
	int			n;
	int			done = 0;
	double		started = metrics_clock();

	status = query_batch(db, members ? POLL_MEMBER_SQL : POLL_SQL, c, batch_size, members,
						 &batch);
	if (status != DB_OK)
	{
		result = step_query_failed(status, db, "consumer", c->name, "poll", stats);
		if (result == STEP_ERROR && members && strcmp(db->sqlstate, UNDEFINED_FUNCTION) == 0)
			log_error_f(LOG_FIELDS(.consumer = c->name),
						"\"%s\" needs eventstore 1.3 or later, whose poll takes a member",
						c->member >= 0 ? "member" : "members");
		return result;
	}
	n = PQntuples(batch);
	if (n == 0)
	{
		PQclear(batch);
		log_debug_f(LOG_FIELDS(.consumer = c->name), "idle");
		return STEP_IDLE;
	}
	batch_id = PQgetvalue(batch, 0, 0);
	/* the same for every row: a batch is of one member */
	member = PQgetisnull(batch, 0, 5) ? NULL : PQgetvalue(batch, 0, 5);
	log_debug_f(LOG_FIELDS(.consumer = c->name, .batch = batch_id, .member = member),
				"events=%d", n);

	why[0] = '\0';
	deliveries = calloc((size_t) n, sizeof(*deliveries));
	if (deliveries == NULL)
	{
		PQclear(batch);
		log_error_f(LOG_FIELDS(.consumer = c->name, .batch = batch_id, .member = member),
					"out of memory for a batch of %d events: it will be redelivered", n);
		return STEP_ERROR;
	}
	for (int i = 0; i < n; i++)
		deliveries[i] = (struct delivery) {
			.consumer = c->name,
			.batch_id = PQgetvalue(batch, i, 0),
			.position = PQgetvalue(batch, i, 1),
			.id = PQgetvalue(batch, i, 2),
			.attempt = PQgetvalue(batch, i, 3),
			.json = PQgetvalue(batch, i, 4),
			.json_len = (size_t) PQgetlength(batch, i, 4),
			.member = member != NULL ? member : "",
		};
	if (plugin_by_batch(&c->handler))
		done = handle_whole_batch(c, deliveries, n, why, sizeof(why), stats);
	else
		done = handle_each_event(c, deliveries, n, why, sizeof(why), stats);
	free(deliveries);
	metrics_events_handled(c->name, done);

	result = finish_batch(db, c->name, batch_id, member, done == n ? NULL : why, stats);
	if (result == STEP_WORKED || result == STEP_NACKED)
	{
		metrics_consumer_batch(c->name, result == STEP_WORKED);
		metrics_batch_duration(METRICS_CONSUMER, c->name, metrics_clock() - started);
	}
	if (result == STEP_WORKED)
		log_debug_f(LOG_FIELDS(.consumer = c->name, .batch = batch_id, .member = member),
					"acked events=%d", n);
	else if (result == STEP_NACKED)
		log_warning_f(LOG_FIELDS(.consumer = c->name, .batch = batch_id, .member = member,
								 .error = why), "nacked after %d of %d events", done, n);
	PQclear(batch);
	return result;
}

enum step_result
consumer_step(struct db *db, const struct consumer *c, int batch_size,
			  struct run_stats *stats)
{
	if (c->kind == CONSUMER_IN_DATABASE)
		return step_in_database(db, c, batch_size, stats);
	return step_outside(db, c, batch_size, stats);
}
