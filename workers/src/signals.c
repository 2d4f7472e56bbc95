/*
 * signals.c
 *		Signal flags and the self-pipe that lets a signal interrupt a wait.
 *
 * The handlers only set a flag (a lock-free atomic_int: the pollers'
 * threads read them as well) and write one byte into a non-blocking pipe;
 * everything else happens in the main loop.  Every wait in the daemon
 * (connecting, waiting for a notification, backing off before a reconnect,
 * waiting for a handler's child process) polls the pipe's read end
 * together with whatever else it waits for, so a signal that arrives just
 * before poll(2) is called still wakes it: the byte is already there.
 * A byte may be drained by a wait other than the one that cares about it;
 * that is harmless because the flags, not the bytes, carry the meaning, and
 * every loop looks at the flags before it waits again.
 *
 * SIGCHLD is caught (not ignored) only to wake the command handler when its
 * child exits.  SIGPIPE is ignored: a command that exits without reading
 * its whole input must not kill the daemon.
 *
 * The pollers' threads (pollers.c) must not drain the self-pipe: the loop's
 * thread could then miss the byte it waits for.  They wait on a second
 * pipe, written by the handler on SIGTERM, SIGINT and SIGHUP and drained
 * only by the loop's thread once it has joined them, so that one byte wakes
 * every poller; signals_stop_pollers() writes it too, for the loop to stop
 * them on its own account.  Which pipe signals_fd() names is a property of
 * the thread (a _Thread_local flag).  Both pipes live from signals_init() to
 * signals_close(), so the handler never writes into a descriptor that was
 * closed and reused.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "signals.h"

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "a signal handler sets an atomic_int");

atomic_int	stop_requested = 0;
atomic_int	reload_requested = 0;

static int	pipe_fds[2] = {-1, -1};
static int	poller_fds[2] = {-1, -1};	/* the pollers' pipe */
static _Thread_local int in_poller;
static atomic_int pollers_stop;	/* signals_stop_pollers() */

static const int caught[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD};

#define N_CAUGHT (sizeof(caught) / sizeof(caught[0]))

static void
on_signal(int signo)
{
	int			saved_errno = errno;
	ssize_t		ignored;

	if (signo == SIGHUP)
		reload_requested = 1;
	else if (signo == SIGTERM || signo == SIGINT)
		stop_requested = 1;
	/* a full pipe already wakes the reader: EAGAIN is fine */
	ignored = write(pipe_fds[1], "", 1);
	if (signo != SIGCHLD)
		ignored = write(poller_fds[1], "", 1);
	(void) ignored;
	errno = saved_errno;
}

static int
set_flags(int fd)
{
	int			fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -1;
	return 0;
}

int
signals_init(void)
{
	struct sigaction sa;

	if (pipe(pipe_fds) < 0 || pipe(poller_fds) < 0)
		return -1;
	if (set_flags(pipe_fds[0]) < 0 || set_flags(pipe_fds[1]) < 0 ||
		set_flags(poller_fds[0]) < 0 || set_flags(poller_fds[1]) < 0)
		return -1;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	for (size_t i = 0; i < N_CAUGHT; i++)
		if (sigaction(caught[i], &sa, NULL) < 0)
			return -1;

	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) < 0)
		return -1;
	return 0;
}

void
signals_close(void)
{
	for (size_t i = 0; i < N_CAUGHT; i++)
		signal(caught[i], SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	for (int i = 0; i < 2; i++)
	{
		if (pipe_fds[i] >= 0)
			close(pipe_fds[i]);
		if (poller_fds[i] >= 0)
			close(poller_fds[i]);
		pipe_fds[i] = -1;
		poller_fds[i] = -1;
	}
}

int
signals_fd(void)
{
	return in_poller ? poller_fds[0] : pipe_fds[0];
}

static void
drain_pipe(int fd)
{
	char		buf[64];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

void
signals_drain(void)
{
	if (!in_poller)
		drain_pipe(pipe_fds[0]);
}

void
signals_enter_poller(void)
{
	in_poller = 1;
}

int
signals_in_poller(void)
{
	return in_poller;
}

int
signals_stopping(void)
{
	return stop_requested ||
		(in_poller && (reload_requested || atomic_load(&pollers_stop)));
}

void
signals_stop_pollers(void)
{
	ssize_t		ignored;

	atomic_store(&pollers_stop, 1);
	ignored = write(poller_fds[1], "", 1);
	(void) ignored;
}

void
signals_reset_pollers(void)
{
	atomic_store(&pollers_stop, 0);
	if (poller_fds[0] >= 0)
		drain_pipe(poller_fds[0]);
}

void
signals_changed(sigset_t *set)
{
	sigemptyset(set);
	for (size_t i = 0; i < N_CAUGHT; i++)
		sigaddset(set, caught[i]);
	sigaddset(set, SIGPIPE);
}
