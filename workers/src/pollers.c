/*
 * pollers.c
 *		The pollers of consumers with "members" N > 1: N threads per
 *		consumer, each with its own connection, polling side by side.
 *
 * A consumer split into members (eventstore 1.3) has one batch out per
 * member at a time, and poll(name, max, NULL) gives its caller the batch
 * of a member that has work and no live lease.  The loop's thread handles
 * one batch at a time, however many members have work.  "members": N gives
 * the consumer N pollers instead, each a thread with its own connection,
 * which take up to N members' batches at once; the loop leaves such a
 * consumer to them (loop.c) and goes on with the others, the outboxes and
 * the HTTP server.
 *
 * A poller does for its consumer what the loop does: connect (LISTEN
 * eventstore, as "notify" says), step until idle (consumer_step.c: poll, handle, ack or
 * nack), wait for a notification or poll_interval_ms, again.  A lost
 * connection is retried after reconnect_min_ms, the delay doubling up to
 * reconnect_max_ms.  Every poller wakes on a notification and polls; those
 * that find no free member wait again.
 *
 * Stopping: a poller looks at stop_requested and reload_requested between
 * steps (signals_stopping()), and its waits poll the pollers' pipe, which
 * the signal handler writes on SIGTERM, SIGINT and SIGHUP (signals.c).  The
 * batch in hand is finished, acked or nacked, and the thread ends.  The
 * loop joins the pollers (pollers_join) before it exits and before a
 * reload, which replaces the configuration they read, and starts them
 * again after it.  With --once a poller ends when its consumer is drained.
 *
 * Shared with the loop's thread: the configuration (read only, kept until
 * the pollers are joined), the handler's state (read only, see plugin.h),
 * the metrics (locked, metrics.c), the log (one write(2) per record) and
 * the signal flags.  Each poller counts its own run_stats, added to the
 * loop's when it is joined.  Every signal is blocked in the pollers'
 * threads, so that the handlers run in the loop's thread and interrupt its
 * waits.  Descriptors that another thread's libpq makes in the instant a
 * handler starts a program may be inherited by it (libpq sets
 * close-on-exec after socket()); the child then holds a copy of a server
 * connection until it exits, which the server does not notice.
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "consumer_step.h"
#include "db.h"
#include "log.h"
#include "pollers.h"
#include "signals.h"

struct poller
{
	pthread_t	thread;
	const struct config *config;
	const struct consumer *consumer;
	int			index;			/* 1 to count, for the log */
	int			count;
	int			once;
	int			failed;			/* once: no connection, a lost one, a failed statement */
	struct run_stats stats;
};

static struct poller *pollers;	/* NULL: none started */
static size_t n_pollers;

/* Sleeps until deadline (monotonic ms) or a request to stop. */
static void
nap_until(long long deadline)
{
	long long	left = deadline - monotonic_ms();
	struct pollfd pfd = {.fd = signals_fd(), .events = POLLIN};

	if (left > 0 && !signals_stopping())
		(void) poll(&pfd, 1, left > 1000000 ? 1000000 : (int) left);
}

/* After a failure: the next attempt waits *delay, which doubles. */
static void
retry_later(const struct poller *p, long long *next_attempt, int *delay)
{
	int			max_ms = p->config->reconnect_max_ms;

	log_info_f(LOG_FIELDS(.consumer = p->consumer->name),
			   "poller %d of %d: next connection attempt in %d ms", p->index, p->count,
			   *delay);
	*next_attempt = monotonic_ms() + *delay;
	*delay = *delay > max_ms / 2 ? max_ms : *delay * 2;
}

static void
log_lost(const struct poller *p, const struct db *db)
{
	log_error_f(LOG_FIELDS(.consumer = p->consumer->name, .error = db->error),
				"poller %d of %d: connection lost", p->index, p->count);
}

static void *
poller_main(void *arg)
{
	struct poller *p = arg;
	const struct config *config = p->config;
	const char *name = p->consumer->name;
	struct db	db;
	long long	next_attempt = 0;	/* monotonic ms; 0: at once */
	int			delay = config->reconnect_min_ms;

	memset(&db, 0, sizeof(db));
	signals_enter_poller();
	while (!signals_stopping())
	{
		enum step_result r = STEP_IDLE;
		int			notified;
		int			unused;

		if (db.conn == NULL)
		{
			enum db_status st;

			if (monotonic_ms() < next_attempt)
			{
				nap_until(next_attempt);
				continue;		/* look at the flags again */
			}
			st = db_connect(&db, config->conninfo, config->connect_timeout_ms,
							config->notify, NULL, 0);
			if (st == DB_STOPPED)
				break;
			if (st != DB_OK)
			{
				log_error_f(LOG_FIELDS(.consumer = name, .error = db.error),
							"poller %d of %d cannot connect", p->index, p->count);
				if (p->once)
				{
					p->failed = 1;
					break;
				}
				retry_later(p, &next_attempt, &delay);
				continue;
			}
			log_info_f(LOG_FIELDS(.consumer = name), "poller %d of %d connected "
					   "(server pid %d)", p->index, p->count, PQbackendPID(db.conn));
			delay = config->reconnect_min_ms;
		}

		/* the loop's drain, for one consumer: steps until it is idle */
		while (!signals_stopping() &&
			   (r = consumer_step(&db, p->consumer, config->batch_size, &p->stats)) ==
			   STEP_WORKED)
			;
		if (r == STEP_LOST)
		{
			log_lost(p, &db);
			db_close(&db);
			if (p->once)
			{
				p->failed = 1;
				break;
			}
			retry_later(p, &next_attempt, &delay);
			continue;
		}
		if (r == STEP_ERROR && p->once)
			p->failed = 1;
		if (p->once || signals_stopping())
			break;

		if (db_wait(&db, config->poll_interval_ms, &notified, -1, &unused) != DB_OK)
		{
			log_lost(p, &db);
			db_close(&db);
			retry_later(p, &next_attempt, &delay);
		}
		else if (notified)
			log_debug_f(LOG_FIELDS(.consumer = name), "poller %d of %d woken by a "
						"notification", p->index, p->count);
	}
	db_close(&db);
	return NULL;
}

int
pollers_running(void)
{
	return pollers != NULL;
}

int
pollers_start(const struct config *config, int once)
{
	sigset_t	all;
	sigset_t	old;
	size_t		n = 0;
	int			rc = 0;

	if (pollers != NULL)
		return 0;
	for (size_t i = 0; i < config->n_consumers; i++)
		if (config->consumers[i].pollers > 1)
			n += (size_t) config->consumers[i].pollers;
	if (n == 0)
		return 0;
	pollers = calloc(n, sizeof(*pollers));
	if (pollers == NULL)
	{
		log_error("cannot start the pollers: out of memory");
		return -1;
	}

	/* a thread starts with its creator's signal mask: every signal blocked */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (size_t i = 0; i < config->n_consumers && rc == 0; i++)
	{
		const struct consumer *c = &config->consumers[i];

		for (int j = 0; c->pollers > 1 && j < c->pollers; j++)
		{
			struct poller *p = &pollers[n_pollers];

			p->config = config;
			p->consumer = c;
			p->index = j + 1;
			p->count = c->pollers;
			p->once = once;
			rc = pthread_create(&p->thread, NULL, poller_main, p);
			if (rc != 0)
			{
				log_error_f(LOG_FIELDS(.consumer = c->name, .error = strerror(rc)),
							"cannot start poller %d of %d", j + 1, c->pollers);
				break;
			}
			n_pollers++;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
	{
		struct run_stats ignored;

		memset(&ignored, 0, sizeof(ignored));
		signals_stop_pollers();
		(void) pollers_join(&ignored);
		return -1;
	}
	log_debug("%zu poller thread(s) started", n_pollers);
	return 0;
}

int
pollers_join(struct run_stats *stats)
{
	int			failed = 0;

	if (pollers == NULL)
		return 0;
	for (size_t i = 0; i < n_pollers; i++)
	{
		const struct run_stats *s = &pollers[i].stats;

		pthread_join(pollers[i].thread, NULL);
		stats->events_ok += s->events_ok;
		stats->events_failed += s->events_failed;
		stats->batches_acked += s->batches_acked;
		stats->batches_nacked += s->batches_nacked;
		stats->messages_sent += s->messages_sent;
		stats->messages_failed += s->messages_failed;
		stats->query_errors += s->query_errors;
		failed |= pollers[i].failed;
	}
	free(pollers);
	pollers = NULL;
	n_pollers = 0;
	signals_reset_pollers();
	return failed;
}
