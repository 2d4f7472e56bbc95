/*
 * db.c
 *		One libpq connection, driven without ever blocking in libpq.
 *
 * Connecting uses PQconnectStartParams and PQconnectPoll; queries use
 * PQsendQueryParams, PQflush, PQconsumeInput and PQgetResult, and every wait
 * is a poll(2) on PQsocket().  The waits that may last (connecting and
 * waiting for a notification) also poll the signal self-pipe, so SIGTERM
 * and SIGHUP are seen at once; a query in progress is always carried to its
 * end (a stop finishes the current batch, it does not abandon it).  Long
 * queries are bounded by the server's statement_timeout, which conninfo can
 * set ("options=-cstatement_timeout=60s").
 *
 * Failures are sorted in two: DB_ERROR, the statement failed and the
 * session is usable (a missing consumer, a permission error); DB_LOST, the
 * session is gone or going (libpq reports the connection bad, or the
 * server's SQLSTATE is of class 08 or one of the 57P0x shutdown codes).
 * DB_LOST closes the connection; the caller reconnects.
 *
 * A connection is used by one thread: the loop's, or one poller's
 * (pollers.c), whose waits look at the pollers' pipe and stop on a reload
 * request as well (signals_fd(), signals_stopping()).
 *
 * Besides LISTEN eventstore, a connection listens on the channels the
 * caller names (the outboxes' "listen"); each notification read is handed
 * to db->on_notify with its channel.
 *
 * LISTEN belongs to a server session.  A pooler in transaction mode
 * (pgbouncer's pool_mode = transaction) runs each transaction on whichever
 * server connection is free: a LISTEN lands on one of them, whose
 * notifications then reach whichever client uses it next, or nobody.  So
 * with "notify": "auto" a connection first asks the server for its backend
 * pid: a direct connection was told the same pid when it started
 * (BackendKeyData, PQbackendPID), a pooler makes up a key of its own
 * (pgbouncer: random bytes).  When they differ the connection does not
 * listen and the caller wakes at its poll interval alone, which it does
 * anyway; "listen" listens whatever the connection (a pooler in session
 * mode keeps LISTEN working), "poll" never does.  A change of the way
 * notifications come (the first connection that polls, or one that listens
 * again after that) is logged once for the whole process, pollers
 * included.
 *
 * client_encoding defaults to UTF8
 * (placed before conninfo, so conninfo may say otherwise): the JSON handed
 * to handlers and the mail built from outbox rows are UTF-8.
 *
 * Server notices (RAISE NOTICE in a handler, the FATAL that announces a
 * shutdown) are routed into the log at a matching level instead of libpq's
 * default of printing them raw on stderr.
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "db.h"
#include "log.h"
#include "signals.h"

#define LISTEN_CHANNEL "eventstore"

/* Copies a libpq message into db->error, as one line. */
static void
set_error(struct db *db, const char *prefix, const char *msg)
{
	size_t		len;

	snprintf(db->error, sizeof(db->error), "%s%s", prefix, msg != NULL ? msg : "");
	len = strlen(db->error);
	while (len > 0 && (db->error[len - 1] == '\n' || db->error[len - 1] == ' '))
		db->error[--len] = '\0';
	for (size_t i = 0; i < len; i++)
		if (db->error[i] == '\n' || db->error[i] == '\t')
			db->error[i] = ' ';
}

static void
notice_receiver(void *arg, const PGresult *res)
{
	const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	enum log_level level = LOG_LEVEL_INFO;

	(void) arg;
	if (severity == NULL)
		severity = "NOTICE";
	if (strcmp(severity, "WARNING") == 0)
		level = LOG_LEVEL_WARNING;
	else if (strcmp(severity, "ERROR") == 0 || strcmp(severity, "FATAL") == 0 ||
			 strcmp(severity, "PANIC") == 0)
		level = LOG_LEVEL_ERROR;
	else if (strncmp(severity, "DEBUG", 5) == 0)
		level = LOG_LEVEL_DEBUG;
	log_write(level, "server %s: %s", severity, msg != NULL ? msg : "");
}

/*
 * Waits for the socket (events) and, if with_signals, for the self-pipe,
 * and for extra_fd (POLLIN) when it is not -1, *extra_ready telling whether
 * it is readable.  Returns the socket's revents, 0 on timeout, a signal or
 * extra_fd, -1 on error.
 */
static int
wait_socket_or(int sock, short events, int timeout_ms, int with_signals,
			   int extra_fd, int *extra_ready)
{
	struct pollfd fds[3];
	nfds_t		nfds = 1;
	int			r;

	fds[0].fd = sock;
	fds[0].events = events;
	fds[0].revents = 0;
	fds[1].fd = with_signals ? signals_fd() : -1;
	fds[1].events = POLLIN;
	fds[1].revents = 0;
	fds[2].fd = extra_fd;
	fds[2].events = POLLIN;
	fds[2].revents = 0;
	if (with_signals || extra_fd >= 0)
		nfds = 3;
	r = poll(fds, nfds, timeout_ms);
	if (r < 0)
		return errno == EINTR ? 0 : -1;
	if (fds[1].revents & POLLIN)
		signals_drain();
	if (extra_ready != NULL)
		*extra_ready = (fds[2].revents & (POLLIN | POLLERR | POLLHUP)) != 0;
	return fds[0].revents;
}

static int
wait_socket(int sock, short events, int timeout_ms, int with_signals)
{
	return wait_socket_or(sock, events, timeout_ms, with_signals, -1, NULL);
}

void
db_close(struct db *db)
{
	if (db->conn != NULL)
		PQfinish(db->conn);
	db->conn = NULL;
}

/* LISTEN "channel", as a failure of the connection when it fails. */
static enum db_status
listen_on(struct db *db, const char *channel)
{
	char	   *quoted = PQescapeIdentifier(db->conn, channel, strlen(channel));
	char	   *sql;
	PGresult   *res;
	enum db_status status;
	char		reason[sizeof(db->error) - 160];

	if (quoted == NULL)
	{
		set_error(db, "cannot quote a channel name: ", PQerrorMessage(db->conn));
		db_close(db);
		return DB_LOST;
	}
	sql = malloc(strlen(quoted) + 8);
	if (sql == NULL)
	{
		PQfreemem(quoted);
		set_error(db, "", "out of memory");
		db_close(db);
		return DB_LOST;
	}
	sprintf(sql, "LISTEN %s", quoted);
	PQfreemem(quoted);
	status = db_query(db, sql, 0, NULL, &res);
	if (status != DB_OK)
	{
		/* the reason may lose its tail to make room for the prefix */
		snprintf(reason, sizeof(reason), "%.*s", (int) sizeof(reason) - 1, db->error);
		snprintf(db->error, sizeof(db->error), "%.100s failed: %s", sql, reason);
		free(sql);
		db_close(db);
		return DB_LOST;
	}
	free(sql);
	PQclear(res);
	return DB_OK;
}

/* How the last connection made learns of events; a change is logged. */
enum wake
{
	WAKE_LISTEN,				/* the state before any connection: not logged */
	WAKE_POLL_CONFIGURED,
	WAKE_POLL_POOLER
};
static atomic_int last_wake = WAKE_LISTEN;

static void
log_wake(enum wake wake, int announced, int actual)
{
	if (atomic_exchange(&last_wake, (int) wake) == (int) wake)
		return;
	if (wake == WAKE_LISTEN)
		log_info("notifications: listening again");
	else if (wake == WAKE_POLL_CONFIGURED)
		log_info("notifications: not listening (\"notify\": \"poll\"): waking every "
				 "poll_interval_ms");
	else
		log_warning("notifications: not listening, the connection goes through a pooler "
					"(its server session is backend pid %d, the connection was announced "
					"as pid %d), where LISTEN does not last beyond a transaction: waking "
					"every poll_interval_ms (\"notify\": \"listen\" listens anyway, for "
					"a pooler in session mode)", actual, announced);
}

/*
 * Whether the connection is a server session of its own: the backend pid
 * the server reports is the one announced at connection start.  *actual
 * gets the server's.  DB_LOST, the connection closed, when the query fails.
 */
static enum db_status
own_session(struct db *db, int *own, int *actual)
{
	PGresult   *res;

	if (db_query(db, "SELECT pg_catalog.pg_backend_pid()", 0, NULL, &res) != DB_OK)
	{
		db_close(db);
		return DB_LOST;
	}
	*actual = PQntuples(res) == 1 ? atoi(PQgetvalue(res, 0, 0)) : 0;
	*own = *actual == PQbackendPID(db->conn);
	PQclear(res);
	return DB_OK;
}

enum db_status
db_connect(struct db *db, const char *conninfo, int timeout_ms,
		   enum db_notify notify, const char *const *channels, size_t n_channels)
{
	const char *const keywords[] = {"client_encoding", "dbname",
	"fallback_application_name", NULL};
	const char *const values[] = {"UTF8", conninfo, "eventstore-worker", NULL};
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	long long	deadline = timeout_ms > 0 ? monotonic_ms() + timeout_ms : 0;
	PGconn	   *conn;

	db_close(db);
	db->error[0] = '\0';
	conn = PQconnectStartParams(keywords, values, 1);
	if (conn == NULL)
	{
		set_error(db, "", "out of memory");
		return DB_LOST;
	}
	if (PQstatus(conn) == CONNECTION_BAD)
		st = PGRES_POLLING_FAILED;

	while (st != PGRES_POLLING_OK)
	{
		int			sock = PQsocket(conn);
		int			wait_ms = -1;
		int			ready;

		if (st == PGRES_POLLING_FAILED || sock < 0)
		{
			set_error(db, "", PQerrorMessage(conn));
			PQfinish(conn);
			return DB_LOST;
		}
		if (signals_stopping())
		{
			set_error(db, "", "stop requested while connecting");
			PQfinish(conn);
			return DB_STOPPED;
		}
		if (deadline > 0)
		{
			long long	left = deadline - monotonic_ms();

			if (left <= 0)
			{
				snprintf(db->error, sizeof(db->error),
						 "connection timed out after %d ms (connect_timeout_ms)",
						 timeout_ms);
				PQfinish(conn);
				return DB_LOST;
			}
			wait_ms = left > 1000000 ? 1000000 : (int) left;
		}
		ready = wait_socket(sock, st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
							wait_ms, 1);
		if (ready < 0)
		{
			set_error(db, "poll failed: ", strerror(errno));
			PQfinish(conn);
			return DB_LOST;
		}
		if (ready == 0)
			continue;			/* a signal or the timeout: see above */
		st = PQconnectPoll(conn);
	}

	if (PQsetnonblocking(conn, 1) != 0)
	{
		set_error(db, "", PQerrorMessage(conn));
		PQfinish(conn);
		return DB_LOST;
	}
	PQsetNoticeReceiver(conn, notice_receiver, NULL);
	db->conn = conn;

	if (notify == DB_NOTIFY_POLL)
	{
		log_wake(WAKE_POLL_CONFIGURED, 0, 0);
		return DB_OK;
	}
	if (notify == DB_NOTIFY_AUTO)
	{
		int			own;
		int			actual;

		if (own_session(db, &own, &actual) != DB_OK)
			return DB_LOST;
		if (!own)
		{
			log_wake(WAKE_POLL_POOLER, PQbackendPID(db->conn), actual);
			return DB_OK;
		}
	}
	if (listen_on(db, LISTEN_CHANNEL) != DB_OK)
		return DB_LOST;
	for (size_t i = 0; i < n_channels; i++)
		if (strcmp(channels[i], LISTEN_CHANNEL) != 0 &&
			listen_on(db, channels[i]) != DB_OK)
			return DB_LOST;
	log_wake(WAKE_LISTEN, 0, 0);
	return DB_OK;
}

/* After a failed query: is the session gone? */
static int
connection_lost(PGconn *conn, const PGresult *res)
{
	const char *state;

	if (PQstatus(conn) == CONNECTION_BAD)
		return 1;
	state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (state == NULL)
		return 0;
	return strncmp(state, "08", 2) == 0 ||
		strcmp(state, "57P01") == 0 ||	/* admin_shutdown */
		strcmp(state, "57P02") == 0 ||	/* crash_shutdown */
		strcmp(state, "57P03") == 0;	/* cannot_connect_now */
}

static enum db_status
lost(struct db *db, const char *msg)
{
	set_error(db, "", msg);
	if (db->error[0] == '\0')
		set_error(db, "", "connection lost");
	db_close(db);
	return DB_LOST;
}

enum db_status
db_query(struct db *db, const char *sql, int n_params,
		 const char *const *params, PGresult **res)
{
	PGconn	   *conn = db->conn;
	PGresult   *last = NULL;
	PGresult   *r;
	int			flushed;

	*res = NULL;
	db->sqlstate[0] = '\0';
	if (conn == NULL)
	{
		set_error(db, "", "not connected");
		return DB_LOST;
	}
	if (PQstatus(conn) == CONNECTION_BAD)
		return lost(db, PQerrorMessage(conn));
	if (!PQsendQueryParams(conn, sql, n_params, NULL, params, NULL, NULL, 0))
	{
		if (PQstatus(conn) == CONNECTION_BAD)
			return lost(db, PQerrorMessage(conn));
		set_error(db, "", PQerrorMessage(conn));
		return DB_ERROR;
	}

	/* send everything; read while waiting so the server never stalls on us */
	while ((flushed = PQflush(conn)) != 0)
	{
		int			ready;

		if (flushed < 0)
			return lost(db, PQerrorMessage(conn));
		ready = wait_socket(PQsocket(conn), POLLIN | POLLOUT, -1, 0);
		if (ready < 0)
			return lost(db, strerror(errno));
		if ((ready & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(conn))
			return lost(db, PQerrorMessage(conn));
	}

	/* collect every result; the last one (or the first error) is the answer */
	for (;;)
	{
		while (!PQisBusy(conn))
		{
			r = PQgetResult(conn);
			if (r == NULL)
				goto done;
			if (last != NULL && PQresultStatus(last) == PGRES_FATAL_ERROR)
				PQclear(r);
			else
			{
				PQclear(last);
				last = r;
			}
		}
		if (wait_socket(PQsocket(conn), POLLIN, -1, 0) < 0)
		{
			PQclear(last);
			return lost(db, strerror(errno));
		}
		if (!PQconsumeInput(conn))
		{
			PQclear(last);
			return lost(db, PQerrorMessage(conn));
		}
	}

done:
	if (last == NULL)
	{
		if (PQstatus(conn) == CONNECTION_BAD)
			return lost(db, PQerrorMessage(conn));
		set_error(db, "", "the server returned no result");
		return DB_ERROR;
	}
	switch (PQresultStatus(last))
	{
		case PGRES_TUPLES_OK:
		case PGRES_COMMAND_OK:
			*res = last;
			return DB_OK;
		default:
			set_error(db, "", PQresultErrorMessage(last));
			if (db->error[0] == '\0')
				set_error(db, "", PQerrorMessage(conn));
			if (PQresultErrorField(last, PG_DIAG_SQLSTATE) != NULL)
				snprintf(db->sqlstate, sizeof(db->sqlstate), "%s",
						 PQresultErrorField(last, PG_DIAG_SQLSTATE));
			if (connection_lost(conn, last))
			{
				PQclear(last);
				db_close(db);
				if (db->error[0] == '\0')
					set_error(db, "", "connection lost");
				return DB_LOST;
			}
			PQclear(last);
			return DB_ERROR;
	}
}

static int
collect_notifications(struct db *db)
{
	PGnotify   *n;
	int			got = 0;

	while ((n = PQnotifies(db->conn)) != NULL)
	{
		log_debug("notification channel=%s payload=%s", n->relname, n->extra);
		if (db->on_notify != NULL)
			db->on_notify(db->notify_arg, n->relname);
		PQfreemem(n);
		got = 1;
	}
	return got;
}

enum db_status
db_wait(struct db *db, int timeout_ms, int *notified, int extra_fd, int *extra_ready)
{
	PGconn	   *conn = db->conn;
	int			ready;

	*notified = 0;
	*extra_ready = 0;
	if (conn == NULL)
	{
		set_error(db, "", "not connected");
		return DB_LOST;
	}
	/* notifications read during the last queries come first */
	if (!PQconsumeInput(conn))
		return lost(db, PQerrorMessage(conn));
	*notified = collect_notifications(db);
	if (*notified || stop_requested || reload_requested)
		return DB_OK;

	ready = wait_socket_or(PQsocket(conn), POLLIN, timeout_ms, 1, extra_fd, extra_ready);
	if (ready < 0)
		return lost(db, strerror(errno));
	if (ready != 0)
	{
		if (!PQconsumeInput(conn))
			return lost(db, PQerrorMessage(conn));
		*notified = collect_notifications(db);
	}
	if (PQstatus(conn) == CONNECTION_BAD)
		return lost(db, PQerrorMessage(conn));
	return DB_OK;
}
