/*
 * readiness.h
 *		Telling the service manager how the daemon is doing: systemd's
 *		sd_notify protocol (Type=notify units).  Every call is a no-op when
 *		NOTIFY_SOCKET is not set (started by hand, by cron, in a test) or the
 *		daemon was built without libsystemd.
 */
#ifndef WORKER_READINESS_H
#define WORKER_READINESS_H

/* READY=1 the first time (the first connection is made), STATUS= always. */
void		readiness_connected(const char *database);

/* STATUS=: the connection is down, a new attempt is scheduled. */
void		readiness_disconnected(const char *reason);

/* STOPPING=1: a graceful stop has begun. */
void		readiness_stopping(void);

#endif
