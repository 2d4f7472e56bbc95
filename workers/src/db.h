/*
 * db.h
 *		One libpq connection, driven without ever blocking in libpq.
 */
#ifndef WORKER_DB_H
#define WORKER_DB_H

#include <libpq-fe.h>

enum db_status
{
	DB_OK,
	DB_ERROR,					/* the query failed; the connection is fine */
	DB_LOST,					/* the connection is gone: reconnect */
	DB_STOPPED					/* a stop was requested while connecting */
};

/*
 * How a connection learns of new events: "notify" in the configuration.
 * LISTEN needs a server session of its own, which a pooler in transaction
 * mode does not give: auto listens on a direct connection and polls
 * through a pooler (see db_connect).
 */
enum db_notify
{
	DB_NOTIFY_AUTO,
	DB_NOTIFY_LISTEN,
	DB_NOTIFY_POLL
};

struct db
{
	PGconn	   *conn;			/* NULL when not connected */
	char		error[1024];	/* the last failure, one line */
	char		sqlstate[6];	/* the failed statement's SQLSTATE, or "" */
	/* called by db_wait for every notification read; may be NULL */
	void		(*on_notify) (void *arg, const char *channel);
	void	   *notify_arg;
};

/*
 * Connects with conninfo (non-blocking: PQconnectStartParams and
 * PQconnectPoll under poll(2)) and, as notify says, issues LISTEN
 * eventstore, then LISTEN for each of the n_channels channels (quoted with
 * PQescapeIdentifier).  client_encoding is UTF8
 * unless conninfo says otherwise.  timeout_ms 0 waits for as long as libpq
 * does.  A stop request aborts the attempt (DB_STOPPED).  On failure the
 * reason is in db->error.
 */
enum db_status db_connect(struct db *db, const char *conninfo, int timeout_ms,
						  enum db_notify notify, const char *const *channels,
						  size_t n_channels);

void		db_close(struct db *db);

/*
 * Runs one statement with text parameters and returns its result in *res
 * (the caller PQclears it) when DB_OK; on failure the reason is in
 * db->error (and the server's SQLSTATE, if it sent one, in db->sqlstate)
 * and the connection, if lost, is closed.
 */
enum db_status db_query(struct db *db, const char *sql, int n_params,
						const char *const *params, PGresult **res);

/*
 * Waits up to timeout_ms for a notification on the connection, a signal or
 * extra_fd (-1: none) to be readable.  Sets *notified when at least one
 * notification was read (all pending ones are consumed, each passed to
 * db->on_notify), *extra_ready when extra_fd is readable.  Returns DB_OK or
 * DB_LOST.
 */
enum db_status db_wait(struct db *db, int timeout_ms, int *notified,
					   int extra_fd, int *extra_ready);

#endif
