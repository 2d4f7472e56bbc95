/*
 * loop.c
 *		The daemon's event loop: connect, drain, wait, reload, reconnect.
 *
 * One turn of the loop:
 *   1. a pending SIGHUP reloads the configuration (a bad file is logged and
 *      the running configuration kept; a changed conninfo reconnects);
 *   2. without a connection, connect (waiting out the backoff first);
 *   3. drain: give every consumer one step (a run_consumer call or one
 *      batch), round robin, until none has work, so that a busy consumer
 *      does not starve the others;
 *   4. wait for a notification on the connection, a signal, or
 *      poll_interval_ms, whichever comes first.
 * A stop request (SIGTERM, SIGINT) is looked at between steps: the batch in
 * hand is always acked or nacked before the loop ends.  A reload request
 * also ends a drain early, so that a steady stream of events cannot delay
 * it indefinitely.
 *
 * Reconnecting: every failed attempt or lost connection schedules the next
 * attempt after the current delay and doubles the delay, from
 * reconnect_min_ms up to reconnect_max_ms; a successful connect resets it.
 * The first attempt after start is immediate.  Events are never lost by a
 * reconnect: progress lives in the database, and the first drain after a
 * connect catches up on whatever was notified while the connection was down.
 *
 * In --once mode the loop connects once (no retries), drains once and ends;
 * the exit status is 1 if the connection failed or was lost, or a query
 * failed, and 0 otherwise, even when handlers failed: their batches were
 * nacked and the failures are recorded in the database (attempts,
 * last_error, parked), where they are retried and monitored.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "consumer.h"
#include "db.h"
#include "log.h"
#include "loop.h"
#include "signals.h"

enum drain_result
{
	DRAIN_DONE,					/* every consumer is idle (or nacked) */
	DRAIN_INTERRUPTED,			/* a stop or reload request came first */
	DRAIN_ERRORS,				/* done, but some query failed */
	DRAIN_LOST					/* the connection was lost */
};

/* Sleeps until deadline (monotonic ms) or a signal. */
static void
sleep_until(long long deadline)
{
	long long	left = deadline - monotonic_ms();
	struct pollfd pfd;

	if (left <= 0)
		return;
	pfd.fd = signals_fd();
	pfd.events = POLLIN;
	pfd.revents = 0;
	if (poll(&pfd, 1, left > 1000000 ? 1000000 : (int) left) > 0)
		signals_drain();
}

/* After a failure: the next attempt waits delay, and the delay doubles. */
static void
schedule_retry(long long *next_attempt, int *delay, int max_ms)
{
	log_info("next connection attempt in %d ms", *delay);
	*next_attempt = monotonic_ms() + *delay;
	*delay = *delay > max_ms / 2 ? max_ms : *delay * 2;
}

static enum drain_result
drain(struct db *db, const struct config *config, struct run_stats *stats)
{
	unsigned char *idle = calloc(config->n_consumers, 1);
	enum drain_result result = DRAIN_DONE;
	int			worked = 1;

	if (idle == NULL)
	{
		log_error("out of memory");
		return DRAIN_ERRORS;
	}
	while (worked)
	{
		worked = 0;
		for (size_t i = 0; i < config->n_consumers; i++)
		{
			if (idle[i])
				continue;
			if (stop_requested || reload_requested)
			{
				result = DRAIN_INTERRUPTED;
				goto out;
			}
			switch (consumer_step(db, &config->consumers[i], config->batch_size, stats))
			{
				case STEP_WORKED:
					worked = 1;
					break;
				case STEP_IDLE:
				case STEP_NACKED:
					idle[i] = 1;
					break;
				case STEP_ERROR:
					idle[i] = 1;
					result = DRAIN_ERRORS;
					break;
				case STEP_LOST:
					result = DRAIN_LOST;
					goto out;
			}
		}
	}
out:
	free(idle);
	return result;
}

static void
log_connected(const struct db *db)
{
	const char *host = PQhost(db->conn);

	log_info("connected to database %s on %s port %s (server %d, pid %d)",
			 PQdb(db->conn), host != NULL && host[0] != '\0' ? host : "(default)",
			 PQport(db->conn), PQserverVersion(db->conn), PQbackendPID(db->conn));
}

/* SIGHUP: returns 1 if the connection must be remade. */
static int
reload(const char *path, struct config **config)
{
	char		err[1024];
	struct config *fresh = config_load(path, err, sizeof(err));
	int			reconnect;

	if (fresh == NULL)
	{
		log_error("reload refused, keeping the running configuration: %s", err);
		return 0;
	}
	reconnect = strcmp(fresh->conninfo, (*config)->conninfo) != 0;
	config_free(*config);
	*config = fresh;
	log_set_level(fresh->log_level);
	log_info("configuration reloaded from %s: %zu consumer(s)%s",
			 path, fresh->n_consumers, reconnect ? ", conninfo changed: reconnecting" : "");
	return reconnect;
}

int
loop_run(const char *config_path, struct config **config, int once)
{
	struct db	db;
	struct run_stats stats;
	long long	next_attempt = 0;	/* monotonic ms; 0: at once */
	int			delay = (*config)->reconnect_min_ms;
	int			status = 0;

	memset(&db, 0, sizeof(db));
	memset(&stats, 0, sizeof(stats));

	while (!stop_requested)
	{
		enum drain_result drained;
		enum db_status st;
		int			notified;

		if (reload_requested)
		{
			reload_requested = 0;
			if (reload(config_path, config))
			{
				db_close(&db);
				next_attempt = 0;
				delay = (*config)->reconnect_min_ms;
			}
		}

		if (db.conn == NULL)
		{
			if (monotonic_ms() < next_attempt)
			{
				sleep_until(next_attempt);
				continue;		/* look at the flags again */
			}
			st = db_connect(&db, (*config)->conninfo, (*config)->connect_timeout_ms);
			if (st == DB_STOPPED)
				break;
			if (st != DB_OK)
			{
				log_error("cannot connect: %s", db.error);
				if (once)
				{
					status = 1;
					break;
				}
				schedule_retry(&next_attempt, &delay, (*config)->reconnect_max_ms);
				continue;
			}
			log_connected(&db);
			delay = (*config)->reconnect_min_ms;
		}

		drained = drain(&db, *config, &stats);
		if (drained == DRAIN_LOST)
		{
			log_error("connection lost: %s", db.error);
			db_close(&db);
			if (once)
			{
				status = 1;
				break;
			}
			schedule_retry(&next_attempt, &delay, (*config)->reconnect_max_ms);
			continue;
		}
		if (drained == DRAIN_ERRORS && once)
			status = 1;
		if (once)
		{
			/* a reload request must not cut a --once run short */
			if (drained == DRAIN_INTERRUPTED && !stop_requested)
				continue;
			break;
		}
		if (drained == DRAIN_INTERRUPTED)
			continue;

		st = db_wait(&db, (*config)->poll_interval_ms, &notified);
		if (st == DB_LOST)
		{
			log_error("connection lost: %s", db.error);
			schedule_retry(&next_attempt, &delay, (*config)->reconnect_max_ms);
		}
		else if (notified)
			log_debug("woken by a notification");
	}

	db_close(&db);
	log_info("%s: %lld event(s) handled, %lld failed, %lld batch(es) acked, "
			 "%lld nacked, %lld query error(s)",
			 stop_requested ? "stopping" : "done",
			 stats.events_ok, stats.events_failed, stats.batches_acked,
			 stats.batches_nacked, stats.query_errors);
	return status;
}
