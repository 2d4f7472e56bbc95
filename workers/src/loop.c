/*
 * loop.c
 *		The daemon's event loop: connect, drain, wait, reload, reconnect.
 *
 * One turn of the loop:
 *   1. a pending SIGHUP reloads the configuration (a bad file is logged and
 *      the running configuration kept; a changed conninfo reconnects);
 *   2. without a connection, connect (waiting out the backoff first);
 *   3. drain: give every consumer one step (a run_consumer call or one
 *      batch) and every due outbox one step (a claim and its messages),
 *      round robin, until none has work, so that a busy consumer or outbox
 *      does not starve the others;
 *   4. wait for a notification on the connection, a signal, or the next
 *      poll tick, whichever comes first.
 * A stop request (SIGTERM, SIGINT) is looked at between steps: the batch in
 * hand is always acked or nacked before the loop ends (an outbox looks at
 * it between messages as well).  A reload request also ends a drain early,
 * so that a steady stream of events cannot delay it indefinitely.
 *
 * Consumers are drained at every turn.  Outboxes run only when due: after
 * a connect (at start and after a reconnect) and a reload, when a
 * notification arrives on their "listen" channel, at every poll tick
 * (every poll_interval_ms, whatever else woke the loop in between), and
 * again at once after a step that says more may be waiting.  A changed set
 * of listen channels or "notify" on reload reconnects, like a changed
 * conninfo.  A connection that does not listen ("notify", db.c) is woken
 * by the poll tick alone.
 *
 * Reconnecting: every failed attempt or lost connection schedules the next
 * attempt after the current delay and doubles the delay, from
 * reconnect_min_ms up to reconnect_max_ms; a successful connect resets it.
 * The first attempt after start is immediate.  Events are never lost by a
 * reconnect: progress lives in the database, and the first drain after a
 * connect catches up on whatever was notified while the connection was down.
 *
 * The HTTP server (http.c, when configured; never with --once) is served
 * from the waits of the loop: the wait for a notification and the wait
 * before a reconnect also watch its fd and call http_run, so a request is
 * answered between steps, in this thread, and may use the connection.  A
 * wake-up for HTTP alone goes back to waiting without a drain.
 *
 * The service manager hears of it (readiness.c): READY=1 when the first
 * connection is made, a STATUS= line at each connect and loss, STOPPING=1
 * at a graceful stop.
 *
 * A consumer with "members" N > 1 is not in the drain: N pollers, threads
 * with connections of their own, drive it (pollers.c).  The loop starts
 * them at its first turn, joins them before a reload (they end after the
 * batch in hand, on the same request) and starts them again after it, and
 * joins them before it ends.  A poller that cannot be started is logged
 * and tried again at the next turn.
 *
 * In --once mode the loop connects once (no retries), drains once and ends;
 * the exit status is 1 if the connection failed or was lost, or a query
 * failed (in the loop or in a poller, whose --once run is the same), and 0
 * otherwise, even when handlers failed: their batches were
 * nacked and the failures are recorded in the database (attempts,
 * last_error, parked), where they are retried and monitored.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "consumer_step.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "outbox.h"
#include "pollers.h"
#include "readiness.h"
#include "schedule.h"
#include "signals.h"
#include "status.h"

/* The outboxes' listen channels, in outbox order (NULL when none). */
static const char **
listen_channels(const struct config *config, size_t *n)
{
	const char **channels = NULL;

	*n = 0;
	if (config->n_outboxes == 0)
		return NULL;
	channels = calloc(config->n_outboxes, sizeof(char *));
	if (channels == NULL)
		return NULL;
	for (size_t i = 0; i < config->n_outboxes; i++)
		if (config->outboxes[i].listen != NULL)
			channels[(*n)++] = config->outboxes[i].listen;
	return channels;
}

static int
same_channels(const struct config *a, const struct config *b)
{
	size_t		na;
	size_t		nb;
	const char **ca = listen_channels(a, &na);
	const char **cb = listen_channels(b, &nb);
	int			same = na == nb;

	for (size_t i = 0; same && i < na; i++)
		same = strcmp(ca[i], cb[i]) == 0;
	free(ca);
	free(cb);
	return same;
}

enum drain_result
{
	DRAIN_DONE,					/* every consumer is idle (or nacked) */
	DRAIN_INTERRUPTED,			/* a stop or reload request came first */
	DRAIN_ERRORS,				/* done, but some query failed */
	DRAIN_LOST					/* the connection was lost */
};

/* The shorter of a wait, the HTTP server's own timeout and the next lag sample. */
static int
with_http_timeout(int wait_ms)
{
	int			h = http_timeout_ms();

	if (h >= 0 && (wait_ms < 0 || h < wait_ms))
		wait_ms = h;
	if (http_fd() >= 0 && (wait_ms < 0 || status_sample_wait_ms() < wait_ms))
		wait_ms = status_sample_wait_ms();
	return wait_ms;
}

/* Sleeps until deadline (monotonic ms) or a signal, serving HTTP meanwhile. */
static void
sleep_until(long long deadline)
{
	long long	left = deadline - monotonic_ms();
	struct pollfd pfd[2];

	if (left <= 0)
		return;
	pfd[0].fd = signals_fd();
	pfd[0].events = POLLIN;
	pfd[0].revents = 0;
	pfd[1].fd = http_fd();
	pfd[1].events = POLLIN;
	pfd[1].revents = 0;
	if (poll(pfd, 2, with_http_timeout(left > 1000000 ? 1000000 : (int) left)) > 0 &&
		(pfd[0].revents & POLLIN))
		signals_drain();
	http_run();
}

/*
 * Waits for a notification, a signal or the next tick, serving HTTP
 * requests meanwhile (a wake-up for them alone waits on).  DB_LOST when the
 * connection went, in the wait or in a page's query.
 */
static enum db_status
wait_and_serve(struct db *db, const struct schedule *sc, int *notified)
{
	for (;;)
	{
		int			tick_ms;
		int			wait_ms;
		int			http_ready;
		enum db_status st;

		/* the status page's lag samples, taken here: between steps */
		if (http_fd() >= 0 && status_sample_wait_ms() == 0)
		{
			status_sample(db);
			if (db->conn == NULL)
				return DB_LOST;
		}
		tick_ms = schedule_wait_ms(sc);
		wait_ms = with_http_timeout(tick_ms);
		st = db_wait(db, wait_ms, notified, http_fd(), &http_ready);
		if (st != DB_OK)
			return st;
		http_run();
		if (db->conn == NULL)
			return DB_LOST;		/* a page's query found it gone */
		if (*notified || stop_requested || reload_requested)
			return DB_OK;
		if (!http_ready && wait_ms == tick_ms)
			return DB_OK;		/* the tick */
	}
}

/* Every configured consumer and outbox has its series, at 0 until counted. */
static void
register_metrics(const struct config *config)
{
	for (size_t i = 0; i < config->n_consumers; i++)
		metrics_register(METRICS_CONSUMER, config->consumers[i].name);
	for (size_t i = 0; i < config->n_outboxes; i++)
		metrics_register(METRICS_OUTBOX, config->outboxes[i].name);
}

/* After a failure: the next attempt waits delay, and the delay doubles. */
static void
schedule_retry(long long *next_attempt, int *delay, int max_ms)
{
	log_info("next connection attempt in %d ms", *delay);
	*next_attempt = monotonic_ms() + *delay;
	*delay = *delay > max_ms / 2 ? max_ms : *delay * 2;
}

/*
 * Consumers first, then outboxes, one step each per round.  An outbox is
 * no longer due once its step is done, unless the step says more may be
 * waiting; a notification collected by the next wait makes it due again.
 */
static enum drain_result
drain(struct db *db, const struct config *config, struct schedule *sc,
	  struct run_stats *stats)
{
	size_t		n = config->n_consumers + config->n_outboxes;
	unsigned char *idle = calloc(n > 0 ? n : 1, 1);
	enum drain_result result = DRAIN_DONE;
	int			worked = 1;

	if (idle == NULL)
	{
		log_error("out of memory");
		return DRAIN_ERRORS;
	}
	/* a consumer with pollers of its own is theirs (pollers.c) */
	for (size_t i = 0; i < config->n_consumers; i++)
		idle[i] = config->consumers[i].pollers > 1;
	for (size_t i = 0; i < config->n_outboxes; i++)
		idle[config->n_consumers + i] = !sc->due[i];
	while (worked)
	{
		worked = 0;
		for (size_t i = 0; i < n; i++)
		{
			enum step_result r;

			if (idle[i])
				continue;
			if (stop_requested || reload_requested)
			{
				result = DRAIN_INTERRUPTED;
				goto out;
			}
			if (i < config->n_consumers)
				r = consumer_step(db, &config->consumers[i], config->batch_size, stats);
			else
			{
				size_t		o = i - config->n_consumers;

				sc->due[o] = 0;
				r = outbox_step(db, &config->outboxes[o], stats);
				if (r == STEP_WORKED)
					sc->due[o] = 1;
			}
			switch (r)
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
reload(const char *path, struct config **config, struct schedule *sc, int once)
{
	char		err[1024];
	struct config *fresh = config_load(path, err, sizeof(err));
	const char *why = "";

	if (fresh != NULL && schedule_reset(sc, fresh) < 0)
	{
		config_free(fresh);
		fresh = NULL;
		snprintf(err, sizeof(err), "out of memory");
	}
	if (fresh == NULL)
	{
		log_error_f(LOG_FIELDS(.error = err),
					"reload refused, keeping the running configuration");
		return 0;
	}
	if (strcmp(fresh->conninfo, (*config)->conninfo) != 0)
		why = ", conninfo changed: reconnecting";
	else if (!same_channels(fresh, *config))
		why = ", listen channels changed: reconnecting";
	else if (fresh->notify != (*config)->notify)
		why = ", notify changed: reconnecting";
	if (!http_config_same(&fresh->http, &(*config)->http) && !once)
	{
		if (http_start(&fresh->http, err, sizeof(err)) < 0)
			log_error_f(LOG_FIELDS(.error = err), "http server not restarted");
		else if (!fresh->http.enabled)
			log_info("http: stopped");
	}
	config_free(*config);
	*config = fresh;
	log_set_level(fresh->log_level);
	log_set_format(fresh->log_format);
	register_metrics(fresh);
	log_info("configuration reloaded from %s: %zu consumer(s), %zu outbox(es)%s",
			 path, fresh->n_consumers, fresh->n_outboxes, why);
	return why[0] != '\0';
}

static enum db_status
connect_db(struct db *db, const struct config *config)
{
	size_t		n;
	const char **channels = listen_channels(config, &n);
	enum db_status st;

	if (channels == NULL && config->n_outboxes > 0)
	{
		snprintf(db->error, sizeof(db->error), "out of memory");
		return DB_LOST;
	}
	st = db_connect(db, config->conninfo, config->connect_timeout_ms, config->notify,
					channels, n);
	free(channels);
	return st;
}

int
loop_run(const char *config_path, struct config **config, int once)
{
	struct db	db;
	struct run_stats stats;
	struct schedule sc;
	long long	next_attempt = 0;	/* monotonic ms; 0: at once */
	int			delay = (*config)->reconnect_min_ms;
	int			status = 0;

	memset(&db, 0, sizeof(db));
	memset(&stats, 0, sizeof(stats));
	memset(&sc, 0, sizeof(sc));
	if (schedule_reset(&sc, *config) < 0)
	{
		log_error("out of memory");
		return 1;
	}
	metrics_init();
	register_metrics(*config);
	if (!once)
	{
		char		err[512];

		if (http_start(&(*config)->http, err, sizeof(err)) < 0)
		{
			log_error_f(LOG_FIELDS(.error = err), "cannot start the http server");
			free(sc.due);
			metrics_free();
			return 1;
		}
	}
	db.on_notify = schedule_notified;
	db.notify_arg = &sc;

	while (!stop_requested)
	{
		enum drain_result drained;
		enum db_status st;
		int			notified;

		http_set_context(&db, *config);

		if (reload_requested)
		{
			/* the pollers read the configuration: they end first */
			if (pollers_join(&stats) && once)
				status = 1;
			reload_requested = 0;
			if (reload(config_path, config, &sc, once))
			{
				db_close(&db);
				next_attempt = 0;
				delay = (*config)->reconnect_min_ms;
			}
		}
		if (!pollers_running() && pollers_start(*config, once) < 0 && once)
		{
			status = 1;
			break;
		}

		if (db.conn == NULL)
		{
			if (monotonic_ms() < next_attempt)
			{
				sleep_until(next_attempt);
				continue;		/* look at the flags again */
			}
			st = connect_db(&db, *config);
			if (st == DB_STOPPED)
				break;
			if (st != DB_OK)
			{
				log_error_f(LOG_FIELDS(.error = db.error), "cannot connect");
				readiness_disconnected(db.error);
				if (once)
				{
					status = 1;
					break;
				}
				schedule_retry(&next_attempt, &delay, (*config)->reconnect_max_ms);
				continue;
			}
			log_connected(&db);
			metrics_connected(1);
			readiness_connected(PQdb(db.conn));
			delay = (*config)->reconnect_min_ms;
			/* what was notified while disconnected is unknown */
			schedule_all_due(&sc);
		}

		schedule_tick(&sc);
		drained = drain(&db, *config, &sc, &stats);
		if (drained == DRAIN_LOST)
		{
			log_error_f(LOG_FIELDS(.error = db.error), "connection lost");
			metrics_connected(0);
			readiness_disconnected(db.error);
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
			/* the pollers' own --once runs */
			if (pollers_join(&stats))
				status = 1;
			/* a reload request must not cut a --once run short */
			if ((drained == DRAIN_INTERRUPTED || reload_requested) && !stop_requested)
				continue;
			break;
		}
		if (drained == DRAIN_INTERRUPTED)
			continue;

		st = wait_and_serve(&db, &sc, &notified);
		if (st == DB_LOST)
		{
			log_error_f(LOG_FIELDS(.error = db.error), "connection lost");
			metrics_connected(0);
			db_close(&db);
			readiness_disconnected(db.error);
			schedule_retry(&next_attempt, &delay, (*config)->reconnect_max_ms);
		}
		else if (notified)
			log_debug("woken by a notification");
	}

	if (stop_requested)
		readiness_stopping();
	if (!once)
		signals_stop_pollers();
	if (pollers_join(&stats) && once)
		status = 1;
	http_stop();
	db_close(&db);
	free(sc.due);
	log_info("%s: %lld event(s) handled, %lld failed, %lld batch(es) acked, "
			 "%lld nacked, %lld message(s) sent, %lld failed, %lld query error(s)",
			 stop_requested ? "stopping" : "done",
			 stats.events_ok, stats.events_failed, stats.batches_acked,
			 stats.batches_nacked, stats.messages_sent, stats.messages_failed,
			 stats.query_errors);
	metrics_free();
	return status;
}
