/*
 * handler_command.c
 *		The "command" handler: run a program once per event.
 *
 *   "handler": {"type": "command", "command": ["/path/prog", "arg", ...],
 *               "timeout_ms": 60000}
 *
 * For each event the daemon forks and execs the command directly (execvp:
 * no shell, PATH searched when the name has no slash), writes the delivery
 * as one line of JSON to the child's stdin and closes it, and waits for the
 * child to exit.  Exit status 0 means the event is handled; any other
 * status, death by a signal, a failed exec or the timeout is a failure whose
 * text becomes the nack's error.  The child inherits stdout and stderr and
 * gets the delivery's coordinates in its environment as well
 * (EVENTSTORE_CONSUMER, EVENTSTORE_BATCH_ID, EVENTSTORE_POSITION,
 * EVENTSTORE_EVENT_ID, EVENTSTORE_ATTEMPT).
 *
 * Waiting: the stdin pipe is non-blocking and the wait polls it together
 * with the signal self-pipe, which SIGCHLD makes readable when the child
 * exits; waitpid(WNOHANG) is tried after every wake-up.  A child that exits
 * without reading all of its input is judged by its exit status alone
 * (EPIPE on the write is not an error: SIGPIPE is ignored in the daemon).
 * A failed exec is reported through a close-on-exec pipe, so the error says
 * why ("cannot execute ...: No such file or directory") instead of a bare
 * exit status.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "handler.h"
#include "signals.h"

#define DEFAULT_TIMEOUT_MS 60000

struct command
{
	char	  **argv;			/* NULL-terminated */
	int			timeout_ms;		/* 0: no limit */
};

static void
command_free(struct command *c)
{
	if (c == NULL)
		return;
	if (c->argv != NULL)
		for (char **a = c->argv; *a != NULL; a++)
			free(*a);
	free(c->argv);
	free(c);
}

static void *
command_open(json_t *spec, const char *where, char *err, size_t errlen)
{
	struct command *c;
	const char *key;
	json_t	   *value;
	json_t	   *argv;
	size_t		argc;

	json_object_foreach(spec, key, value)
	{
		if (strcmp(key, "type") != 0 && strcmp(key, "command") != 0 &&
			strcmp(key, "timeout_ms") != 0)
		{
			snprintf(err, errlen, "%s.%s: unknown key for a command handler "
					 "(known: type, command, timeout_ms)", where, key);
			return NULL;
		}
	}

	argv = json_object_get(spec, "command");
	if (argv == NULL)
	{
		snprintf(err, errlen, "%s.command: missing", where);
		return NULL;
	}
	if (!json_is_array(argv) || json_array_size(argv) == 0)
	{
		snprintf(err, errlen, "%s.command: must be a non-empty array of strings "
				 "(the program and its arguments)", where);
		return NULL;
	}
	argc = json_array_size(argv);
	for (size_t i = 0; i < argc; i++)
	{
		json_t	   *arg = json_array_get(argv, i);

		if (!json_is_string(arg))
		{
			snprintf(err, errlen, "%s.command[%zu]: must be a string", where, i);
			return NULL;
		}
		if (i == 0 && json_string_length(arg) == 0)
		{
			snprintf(err, errlen, "%s.command[0]: must name a program", where);
			return NULL;
		}
		if (strlen(json_string_value(arg)) != json_string_length(arg))
		{
			snprintf(err, errlen, "%s.command[%zu]: must not contain a NUL character",
					 where, i);
			return NULL;
		}
	}

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		goto oom;
	c->timeout_ms = DEFAULT_TIMEOUT_MS;
	value = json_object_get(spec, "timeout_ms");
	if (value != NULL)
	{
		if (!json_is_integer(value) || json_integer_value(value) < 0 ||
			json_integer_value(value) > 86400000)
		{
			snprintf(err, errlen, "%s.timeout_ms: must be an integer from 0 "
					 "(no limit) to 86400000", where);
			command_free(c);
			return NULL;
		}
		c->timeout_ms = (int) json_integer_value(value);
	}

	c->argv = calloc(argc + 1, sizeof(char *));
	if (c->argv == NULL)
		goto oom;
	for (size_t i = 0; i < argc; i++)
	{
		c->argv[i] = strdup(json_string_value(json_array_get(argv, i)));
		if (c->argv[i] == NULL)
			goto oom;
	}
	return c;

oom:
	command_free(c);
	snprintf(err, errlen, "%s: out of memory", where);
	return NULL;
}

static void
command_close(void *state)
{
	command_free(state);
}

static int
cloexec_pipe(int fds[2])
{
	if (pipe(fds) < 0)
		return -1;
	if (fcntl(fds[0], F_SETFD, FD_CLOEXEC) < 0 ||
		fcntl(fds[1], F_SETFD, FD_CLOEXEC) < 0)
	{
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	return 0;
}

/* In the child: never returns. */
static void
run_child(const struct command *c, const struct delivery *d, int in_fd, int err_fd)
{
	int			e;
	ssize_t		ignored;

	signals_reset_for_child();
	if (in_fd == STDIN_FILENO)
		fcntl(in_fd, F_SETFD, 0);
	else if (dup2(in_fd, STDIN_FILENO) < 0)
		goto fail;
	if (setenv("EVENTSTORE_CONSUMER", d->consumer, 1) < 0 ||
		setenv("EVENTSTORE_BATCH_ID", d->batch_id, 1) < 0 ||
		setenv("EVENTSTORE_POSITION", d->position, 1) < 0 ||
		setenv("EVENTSTORE_EVENT_ID", d->id, 1) < 0 ||
		setenv("EVENTSTORE_ATTEMPT", d->attempt, 1) < 0)
		goto fail;
	execvp(c->argv[0], c->argv);
fail:
	e = errno;
	ignored = write(err_fd, &e, sizeof(e));
	(void) ignored;
	_exit(127);
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

static int
command_handle(void *state, const struct delivery *d, char *err, size_t errlen)
{
	const struct command *c = state;
	int			in_pipe[2];
	int			err_pipe[2];
	int			exec_errno = 0;
	ssize_t		r;
	pid_t		pid;
	int			status = 0;
	int			exited = 0;
	int			in_fd;
	size_t		written = 0;
	size_t		total = d->json_len + 1;	/* the JSON and a newline */
	long long	deadline = c->timeout_ms > 0 ? monotonic_ms() + c->timeout_ms : 0;

	if (cloexec_pipe(in_pipe) < 0)
	{
		snprintf(err, errlen, "cannot create a pipe: %s", strerror(errno));
		return -1;
	}
	if (cloexec_pipe(err_pipe) < 0)
	{
		snprintf(err, errlen, "cannot create a pipe: %s", strerror(errno));
		close(in_pipe[0]);
		close(in_pipe[1]);
		return -1;
	}

	pid = fork();
	if (pid < 0)
	{
		snprintf(err, errlen, "cannot fork: %s", strerror(errno));
		close(in_pipe[0]);
		close(in_pipe[1]);
		close(err_pipe[0]);
		close(err_pipe[1]);
		return -1;
	}
	if (pid == 0)
		run_child(c, d, in_pipe[0], err_pipe[1]);

	close(in_pipe[0]);
	close(err_pipe[1]);

	/* EOF once exec succeeded (close-on-exec), an errno if it failed */
	do
		r = read(err_pipe[0], &exec_errno, sizeof(exec_errno));
	while (r < 0 && errno == EINTR);
	close(err_pipe[0]);
	if (r == (ssize_t) sizeof(exec_errno))
	{
		close(in_pipe[1]);
		reap(pid, &status, 0);
		snprintf(err, errlen, "cannot execute %s: %s", c->argv[0], strerror(exec_errno));
		return -1;
	}

	in_fd = in_pipe[1];
	fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_NONBLOCK);

	for (;;)
	{
		struct pollfd fds[2];
		int			nfds = 0;
		int			timeout = -1;
		int			ready;

		/* write what the pipe takes */
		while (in_fd >= 0 && written < total)
		{
			const char *buf = written < d->json_len ? d->json + written : "\n";
			size_t		len = written < d->json_len ? d->json_len - written : 1;

			r = write(in_fd, buf, len);
			if (r > 0)
				written += (size_t) r;
			else if (r < 0 && errno == EINTR)
				continue;
			else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			else
			{
				/* EPIPE: the child does not want the rest */
				close(in_fd);
				in_fd = -1;
			}
		}
		if (in_fd >= 0 && written == total)
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
		fds[nfds].fd = signals_fd();
		fds[nfds].events = POLLIN;
		nfds++;
		if (in_fd >= 0)
		{
			fds[nfds].fd = in_fd;
			fds[nfds].events = POLLOUT;
			nfds++;
		}
		ready = poll(fds, (nfds_t) nfds, timeout);
		if (ready < 0 && errno != EINTR)
		{
			snprintf(err, errlen, "poll failed: %s", strerror(errno));
			break;
		}
		/* an interrupted poll (the child's SIGCHLD) sets no revents */
		if (ready > 0 && (fds[0].revents & POLLIN))
			signals_drain();
	}

	if (in_fd >= 0)
		close(in_fd);
	if (!exited)
	{
		/* timed out (or poll failed): the child must not outlive the event */
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

const struct handler_type command_handler_type = {
	.name = "command",
	.open = command_open,
	.handle = command_handle,
	.close = command_close,
};
