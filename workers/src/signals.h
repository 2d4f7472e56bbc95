/*
 * signals.h
 *		Signal flags and the self-pipe that lets a signal interrupt a wait.
 */
#ifndef WORKER_SIGNALS_H
#define WORKER_SIGNALS_H

#include <signal.h>

/* Set by SIGTERM or SIGINT: finish the current batch, then exit. */
extern volatile sig_atomic_t stop_requested;

/* Set by SIGHUP: reload the configuration at the next loop turn. */
extern volatile sig_atomic_t reload_requested;

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
 * The signals whose disposition the daemon changes (caught or ignored),
 * for a child process to get them back at their default
 * (posix_spawnattr_setsigdefault).
 */
void		signals_changed(sigset_t *set);

#endif
