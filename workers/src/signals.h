/*
 * signals.h
 *		Signal flags and the self-pipe that lets a signal interrupt a wait.
 */
#ifndef WORKER_SIGNALS_H
#define WORKER_SIGNALS_H

#include <signal.h>
#include <stdatomic.h>

/*
 * The flags are lock-free atomics, which C11 lets a signal handler set, so
 * that the pollers' threads (pollers.c) may read them too.
 */

/* Set by SIGTERM or SIGINT: finish the current batch, then exit. */
extern atomic_int stop_requested;

/* Set by SIGHUP: reload the configuration at the next loop turn. */
extern atomic_int reload_requested;

/* Installs the handlers; returns 0, or -1 with errno set. */
int			signals_init(void);

/* Restores the default handlers and closes the pipe. */
void		signals_close(void);

/*
 * The read end of the self-pipe: readable after any of SIGTERM, SIGINT,
 * SIGHUP or SIGCHLD.  Add it to a poll(2) set, and call signals_drain()
 * when it is readable; then look at the flags.
 */
int			signals_fd(void);
void		signals_drain(void);

/*
 * Threads of the pollers (pollers.c) wait on a pipe of their own.  The
 * signal handler writes it on SIGTERM, SIGINT and SIGHUP (not SIGCHLD), and
 * nothing in a poller's thread drains it: once written it stays readable,
 * so that every poller's wait sees it, until signals_reset_pollers().
 *
 * signals_enter_poller() makes the calling thread a poller's: in it,
 * signals_fd() is that pipe's read end, signals_drain() does nothing, and
 * signals_stopping() is true on a reload request as well (a reload stops
 * the pollers, and the loop starts them again).  signals_in_poller() tells
 * which kind of thread calls.
 */
void		signals_enter_poller(void);
int			signals_in_poller(void);

/*
 * Whether to stop waiting for the database (db.c) and end: in the loop's
 * thread stop_requested, in a poller's stop_requested, reload_requested or
 * signals_stop_pollers().
 */
int			signals_stopping(void);

/* The loop's thread: tells the pollers to stop, and wakes their waits. */
void		signals_stop_pollers(void);

/*
 * The loop's thread, once no poller runs: forgets signals_stop_pollers()
 * and empties the pollers' pipe.
 */
void		signals_reset_pollers(void);

/*
 * The signals whose disposition the daemon changes (caught or ignored),
 * for a child process to get them back at their default
 * (posix_spawnattr_setsigdefault).
 */
void		signals_changed(sigset_t *set);

#endif
