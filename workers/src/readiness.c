/*
 * readiness.c
 *		Telling the service manager how the daemon is doing (sd_notify).
 *
 * The unit eventstore-worker@.service is Type=notify: systemd counts the
 * service as started once READY=1 arrives, which the daemon sends when its
 * first database connection is made, so that "systemctl start" returns
 * only when the daemon can work (or fails after TimeoutStartSec).  STATUS=
 * lines show in "systemctl status".  Built with HAVE_LIBSYSTEMD (the
 * Makefile sets it when pkg-config finds libsystemd); without it, or
 * without NOTIFY_SOCKET in the environment, nothing is sent.  The
 * variable is left in the environment: the unit's NotifyAccess=main makes
 * systemd ignore what a handler's child process might send.
 */
#include "readiness.h"

#ifdef HAVE_LIBSYSTEMD
#include <stddef.h>
#include <systemd/sd-daemon.h>

static int	ready_sent;

/*
 * The protocol is one assignment a line: a database name or a libpq error
 * (which ends in a newline, and may hold several) is sent as one line,
 * control characters as spaces, cut at 200 bytes.
 */
static const char *
one_line(const char *text, char *buf, size_t len)
{
	size_t		i;

	for (i = 0; i + 1 < len && text[i] != '\0'; i++)
		buf[i] = (unsigned char) text[i] < 0x20 ? ' ' : text[i];
	while (i > 0 && buf[i - 1] == ' ')
		i--;
	buf[i] = '\0';
	return buf;
}

void
readiness_connected(const char *database)
{
	char		buf[200];

	sd_notifyf(0, "%sSTATUS=connected to database %s",
			   ready_sent ? "" : "READY=1\n", one_line(database, buf, sizeof(buf)));
	ready_sent = 1;
}

void
readiness_disconnected(const char *reason)
{
	char		buf[200];

	sd_notifyf(0, "STATUS=not connected, retrying: %s", one_line(reason, buf, sizeof(buf)));
}

void
readiness_stopping(void)
{
	sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

#else

void
readiness_connected(const char *database)
{
	(void) database;
}

void
readiness_disconnected(const char *reason)
{
	(void) reason;
}

void
readiness_stopping(void)
{
}

#endif
