/*
 * handler_command.c
 *		The "command" handler: run a program once per event, or once per
 *		batch.
 *
 *   "handler": {"type": "command", "command": ["/path/prog", "arg", ...],
 *               "timeout_ms": 60000, "per": "event"}
 *
 * For each event ("per": "event", the default) the daemon starts the
 * command with posix_spawnp (no shell, PATH searched when the name has no
 * slash), its stdin the read end of a pipe, writes the delivery into the
 * pipe as one line of JSON and closes it, and waits for the child to exit.
 * With "per": "batch" it starts the command once per batch and writes it
 * every delivery of the batch, a line each in position order: a program
 * that pays for its start (an interpreter, a connection it opens) pays
 * once per batch, and several pollers keep their members' batches going
 * without a process per event.  Exit status 0 means the event (the whole
 * batch) is handled; any other status, death by a signal, a failed start
 * or the timeout is a failure whose text becomes the nack's error.  The
 * child inherits stdout and stderr, gets the signals the daemon catches or
 * ignores back at their default and none blocked, and finds the delivery's
 * coordinates in its environment as well (EVENTSTORE_CONSUMER,
 * EVENTSTORE_BATCH_ID, EVENTSTORE_POSITION, EVENTSTORE_EVENT_ID,
 * EVENTSTORE_ATTEMPT, EVENTSTORE_MEMBER, EVENTSTORE_EVENTS; for a batch,
 * position and event id are empty: the lines carry them).  posix_spawnp
 * itself reports a program that cannot be executed (glibc waits for the
 * exec), so the error says why ("cannot execute ...: No such file or
 * directory") instead of a bare exit status.
 *
 * Waiting: the stdin pipe is non-blocking and the wait polls it together
 * with the signal self-pipe, which SIGCHLD makes readable when the child
 * exits; waitpid(WNOHANG) is tried after every wake-up.  A child that exits
 * without reading all of its input is judged by its exit status alone
 * (EPIPE on the write is not an error: SIGPIPE is ignored in the daemon).
 * The timeout is per start: per event, or per batch.
 *
 * In a poller's thread (a consumer with "members" above 1, pollers.c) the
 * self-pipe is the loop's, not to be drained there, and SIGCHLD goes to
 * whichever thread the kernel picks: the wait polls a pidfd of the child
 * instead (pidfd_open, Linux 5.3), readable once it has exited.  Where
 * there is none (an older kernel, a seccomp filter that refuses it,
 * valgrind before 3.20) it looks again after 1, 2, 4 ... 16 ms.  Several
 * threads may be starting programs at once, so the stdin pipe is made
 * close-on-exec as it is created (pipe2): another thread's child must not
 * inherit its write end, which would keep this child's stdin open.
 */
/* pipe2() and syscall(); the package build defines it on the command line */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config_unpack.h"
#include "plugin.h"
#include "signals.h"

#define DEFAULT_TIMEOUT_MS 60000
#define MAX_NAP_MS 16			/* a poller's wait without a pidfd */

extern char **environ;

static const char *const env_names[] = {
	"EVENTSTORE_CONSUMER", "EVENTSTORE_BATCH_ID", "EVENTSTORE_POSITION",
	"EVENTSTORE_EVENT_ID", "EVENTSTORE_ATTEMPT", "EVENTSTORE_MEMBER",
	"EVENTSTORE_EVENTS",
};

#define N_ENV (sizeof(env_names) / sizeof(env_names[0]))

struct command
{
	int			timeout_ms;		/* 0: no limit */
	int			per_batch;		/* "per": "batch": one start per batch */
	char	   *argv[];			/* NULL-terminated; the document's strings */
};

static void *
command_open(json_t *spec, const char *where, char *err, size_t errlen)
{
	struct command *c;
	const char *type;
	const char *per = "event";
	json_t	   *argv = NULL;
	json_int_t	timeout_ms = DEFAULT_TIMEOUT_MS;
	size_t		argc;

	if (config_unpack(spec, where, err, errlen, "{s?s s?o s?I s?s}", "type", &type,
					  "command", &argv, "timeout_ms", &timeout_ms, "per", &per) < 0 ||
		config_range(timeout_ms, 0, 86400000, where, "timeout_ms", err, errlen) < 0)
		return NULL;
	if (strcmp(per, "event") != 0 && strcmp(per, "batch") != 0)
	{
		config_error(err, errlen, where, "per", "must be \"event\" or \"batch\"");
		return NULL;
	}
	if (argv == NULL || json_array_size(argv) == 0)
	{
		config_error(err, errlen, where, "command", argv == NULL ? "missing" :
					 "must be a non-empty array of strings (the program and its arguments)");
		return NULL;
	}
	argc = json_array_size(argv);
	c = calloc(1, sizeof(*c) + (argc + 1) * sizeof(char *));
	if (c == NULL)
	{
		config_error(err, errlen, where, NULL, "out of memory");
		return NULL;
	}
	c->timeout_ms = (int) timeout_ms;
	c->per_batch = strcmp(per, "batch") == 0;
	for (size_t i = 0; i < argc; i++)
	{
		json_t	   *arg = json_array_get(argv, i);
		char		key[32];

		if (!json_is_string(arg) || (i == 0 && json_string_length(arg) == 0))
		{
			snprintf(key, sizeof(key), "command[%zu]", i);
			config_error(err, errlen, where, key, json_is_string(arg) ?
						 "must name a program" : "must be a string");
			free(c);
			return NULL;
		}
		/* posix_spawnp takes char *const[] but writes nothing */
		c->argv[i] = (char *) json_string_value(arg);
	}
	return c;
}

static void
command_close(void *state)
{
	free(state);
}

static int
cloexec_pipe(int fds[2])
{
	return pipe2(fds, O_CLOEXEC);
}

/*
 * In a poller's thread: a descriptor readable once the child pid has
 * exited, or -1 where the system has none.  A refusal (ENOSYS, EPERM) is
 * remembered, so that valgrind warns about the call once, not per event.
 */
static int
child_fd(pid_t pid)
{
	static atomic_int unavailable;
	int			fd = -1;

#ifdef SYS_pidfd_open
	if (!atomic_load(&unavailable))
	{
		fd = (int) syscall(SYS_pidfd_open, pid, 0);
		if (fd < 0 && (errno == ENOSYS || errno == EPERM))
			atomic_store(&unavailable, 1);
	}
#else
	(void) pid;
	(void) unavailable;
#endif
	return fd;
}

static void
env_free(char **env)
{
	if (env == NULL)
		return;
	for (size_t i = 0; i < N_ENV; i++)
		free(env[i]);
	free(env);
}

/* 1 when entry, NAME=value, sets one of env_names. */
static int
sets_delivery_var(const char *entry)
{
	for (size_t i = 0; i < N_ENV; i++)
	{
		size_t		n = strlen(env_names[i]);

		if (strncmp(entry, env_names[i], n) == 0 && entry[n] == '=')
			return 1;
	}
	return 0;
}

/*
 * The child's environment for the n deliveries d: their variables (the
 * position and the event id only for one event), then the daemon's others.
 * NULL when out of memory.
 */
static char **
child_env(const struct delivery *d, int n_events, int per_batch)
{
	char		events[16];
	const char *values[N_ENV] = {d->consumer, d->batch_id,
		per_batch ? "" : d->position, per_batch ? "" : d->id, d->attempt,
	d->member != NULL ? d->member : "", events};
	size_t		n = 0;
	size_t		k = N_ENV;
	char	  **env;

	snprintf(events, sizeof(events), "%d", n_events);
	while (environ[n] != NULL)
		n++;
	env = calloc(N_ENV + n + 1, sizeof(char *));
	if (env == NULL)
		return NULL;
	for (size_t i = 0; i < N_ENV; i++)
	{
		size_t		len = strlen(env_names[i]) + strlen(values[i]) + 2;

		env[i] = malloc(len);
		if (env[i] == NULL)
		{
			env_free(env);
			return NULL;
		}
		snprintf(env[i], len, "%s=%s", env_names[i], values[i]);
	}
	for (size_t i = 0; i < n; i++)
		if (!sets_delivery_var(environ[i]))
			env[k++] = environ[i];
	return env;
}

/*
 * Starts the command with in_fd as its stdin (glibc clears close-on-exec
 * when in_fd is 0 already).  Returns 0, or an errno value.
 */
static int
spawn(const struct command *c, const struct delivery *d, int n, int in_fd, pid_t *pid)
{
	posix_spawn_file_actions_t actions;
	posix_spawnattr_t attr;
	sigset_t	defaults;
	sigset_t	none;
	char	  **env;
	int			rc;

	if ((rc = posix_spawn_file_actions_init(&actions)) != 0)
		return rc;
	if ((rc = posix_spawnattr_init(&attr)) != 0)
	{
		posix_spawn_file_actions_destroy(&actions);
		return rc;
	}
	signals_changed(&defaults);
	sigemptyset(&none);
	env = child_env(d, n, c->per_batch);
	rc = env == NULL ? ENOMEM : posix_spawn_file_actions_adddup2(&actions, in_fd, STDIN_FILENO);
	if (rc == 0)
		rc = posix_spawnattr_setsigdefault(&attr, &defaults);
	if (rc == 0)
		rc = posix_spawnattr_setsigmask(&attr, &none);
	if (rc == 0)
		rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
	if (rc == 0)
		rc = posix_spawnp(pid, c->argv[0], &actions, &attr, c->argv, env);
	env_free(env);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&actions);
	return rc;
}

static void
describe_status(int status, char *err, size_t errlen)
{
	if (WIFEXITED(status))
		snprintf(err, errlen, "command exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(err, errlen, "command was killed by signal %d (%s)",
				 WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(err, errlen, "command ended with wait status %d", status);
}

static int
reap(pid_t pid, int *status, int options)
{
	for (;;)
	{
		pid_t		r = waitpid(pid, status, options);

		if (r >= 0 || errno != EINTR)
			return (int) r;
	}
}

/* What is still to be written to the child: lines of deliveries. */
struct input
{
	const struct delivery *d;
	int			n;				/* deliveries */
	int			line;			/* the one being written */
	size_t		offset;			/* into its JSON; json_len: its newline */
};

/*
 * Writes to fd what the pipe takes.  Returns 1 when everything is written,
 * 0 when the pipe is full, -1 when the child closed its end (EPIPE: it does
 * not want the rest).
 */
static int
write_input(int fd, struct input *in)
{
	while (in->line < in->n)
	{
		const struct delivery *d = &in->d[in->line];
		const char *buf = in->offset < d->json_len ? d->json + in->offset : "\n";
		size_t		len = in->offset < d->json_len ? d->json_len - in->offset : 1;
		ssize_t		r = write(fd, buf, len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (r <= 0)
			return -1;
		in->offset += (size_t) r;
		if (in->offset > d->json_len)
		{
			in->line++;
			in->offset = 0;
		}
	}
	return 1;
}

/*
 * Runs the command once with the n deliveries d on its stdin.  Returns 0
 * when it exits with status 0, else -1 with the reason in err.
 */
static int
run_command(const struct command *c, const struct delivery *d, int n, char *err,
			size_t errlen)
{
	struct input in = {.d = d, .n = n};
	int			in_pipe[2];
	pid_t		pid;
	int			rc;
	int			status = 0;
	int			exited = 0;
	int			in_fd;
	int			in_poller = signals_in_poller();
	int			wake;			/* what the child's exit makes readable, or -1 */
	int			nap_ms = 1;
	long long	deadline = c->timeout_ms > 0 ? monotonic_ms() + c->timeout_ms : 0;

	if (cloexec_pipe(in_pipe) < 0)
	{
		snprintf(err, errlen, "cannot create a pipe: %s", strerror(errno));
		return -1;
	}
	rc = spawn(c, d, n, in_pipe[0], &pid);
	close(in_pipe[0]);
	if (rc != 0)
	{
		close(in_pipe[1]);
		snprintf(err, errlen, "cannot execute %s: %s", c->argv[0], strerror(rc));
		return -1;
	}

	in_fd = in_pipe[1];
	fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_NONBLOCK);
	wake = in_poller ? child_fd(pid) : signals_fd();

	for (;;)
	{
		struct pollfd fds[2];
		int			nfds = 0;
		int			timeout = -1;
		int			ready;

		/* write what the pipe takes; all of it written: close it */
		if (in_fd >= 0 && write_input(in_fd, &in) != 0)
		{
			close(in_fd);
			in_fd = -1;
		}

		if (reap(pid, &status, WNOHANG) == pid)
		{
			exited = 1;
			break;
		}

		if (deadline > 0)
		{
			long long	left = deadline - monotonic_ms();

			if (left <= 0)
				break;
			timeout = left > 1000000 ? 1000000 : (int) left;
		}
		if (wake < 0)
		{
			/* nothing will wake us: look again soon */
			if (timeout < 0 || timeout > nap_ms)
				timeout = nap_ms;
			nap_ms = nap_ms * 2 > MAX_NAP_MS ? MAX_NAP_MS : nap_ms * 2;
		}
		/* poll(2) skips an fd of -1 */
		fds[nfds].fd = wake;
		fds[nfds].events = POLLIN;
		fds[nfds].revents = 0;
		nfds++;
		if (in_fd >= 0)
		{
			fds[nfds].fd = in_fd;
			fds[nfds].events = POLLOUT;
			fds[nfds].revents = 0;
			nfds++;
		}
		ready = poll(fds, (nfds_t) nfds, timeout);
		if (ready < 0 && errno != EINTR)
		{
			snprintf(err, errlen, "poll failed: %s", strerror(errno));
			break;
		}
		/* an interrupted poll (the child's SIGCHLD) sets no revents */
		if (ready > 0 && (fds[0].revents & POLLIN) && !in_poller)
			signals_drain();
	}

	if (in_poller && wake >= 0)
		close(wake);
	if (in_fd >= 0)
		close(in_fd);
	if (!exited)
	{
		/* timed out (or poll failed): the child must not outlive its events */
		kill(pid, SIGKILL);
		reap(pid, &status, 0);
		if (deadline > 0 && monotonic_ms() >= deadline)
			snprintf(err, errlen, "command timed out after %d ms", c->timeout_ms);
		return -1;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	describe_status(status, err, errlen);
	return -1;
}


static int
command_handle(void *state, const struct delivery *d, char *err, size_t errlen)
{
	return run_command(state, d, 1, err, errlen);
}

static int
command_by_batch(const void *state)
{
	return ((const struct command *) state)->per_batch;
}

static int
command_handle_batch(void *state, const struct delivery *d, int n, char *err, size_t errlen)
{
	return run_command(state, d, n, err, errlen);
}

const struct plugin_type command_handler = {
	.name = "command",
	.kind = PLUGIN_HANDLER,
	.open = command_open,
	.handle = command_handle,
	.by_batch = command_by_batch,
	.handle_batch = command_handle_batch,
	.close = command_close,
};
