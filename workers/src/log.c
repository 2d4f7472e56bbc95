/*
 * log.c
 *		One-line log records on stderr, filtered by level.
 *
 * Every record is "<UTC time with milliseconds> <level> <message>\n", written
 * with a single write(2) so that lines from the daemon and from the commands
 * it runs (which inherit stderr) do not interleave within a line.  Messages
 * are sanitized: a newline or other control character inside a message (an
 * error text from the server, say) is written as a space, so that one record
 * is always one line.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static enum log_level min_level = LOG_LEVEL_INFO;

static const char *const level_names[] = {"debug", "info", "warning", "error"};

void
log_set_level(enum log_level level)
{
	min_level = level;
}

int
log_level_parse(const char *name, enum log_level *level)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
	{
		if (strcmp(name, level_names[i]) == 0)
		{
			*level = (enum log_level) i;
			return 0;
		}
	}
	return -1;
}

void
log_write(enum log_level level, const char *fmt, ...)
{
	char		line[4096];
	struct timespec now;
	struct tm	tm;
	size_t		len;
	size_t		start;
	int			saved_errno = errno;
	va_list		ap;
	int			n;

	if (level < min_level)
		return;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line + len, sizeof(line) - len, ".%03ldZ %s ",
				 now.tv_nsec / 1000000L, level_names[level]);
	len += (size_t) n;
	start = len;

	va_start(ap, fmt);
	n = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	len += (size_t) n;
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2; /* truncated: keep room for the newline */
	for (size_t i = start; i < len; i++)
		if ((unsigned char) line[i] < 0x20 || line[i] == 0x7f)
			line[i] = ' ';
	/* messages from libpq end in a newline: drop the trailing blanks */
	while (len > start && line[len - 1] == ' ')
		len--;
	line[len++] = '\n';

	for (size_t off = 0; off < len;)
	{
		ssize_t		w = write(STDERR_FILENO, line + off, len - off);

		if (w < 0)
		{
			if (errno == EINTR)
				continue;
			break;
		}
		off += (size_t) w;
	}
	errno = saved_errno;
}
