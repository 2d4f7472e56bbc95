/*
 * http.h
 *		The daemon's HTTP endpoint (libmicrohttpd, driven from the loop):
 *		/metrics and the status page.
 */
#ifndef WORKER_HTTP_H
#define WORKER_HTTP_H

#include <stddef.h>
#include <sys/socket.h>

#include <jansson.h>

#include "db.h"

/* The configuration's "http" object. */
struct http_config
{
	int			enabled;		/* "http" was given */
	const char *listen;			/* as written, "127.0.0.1:9188" by default */
	int			allow_remote;
	struct sockaddr_storage addr;	/* listen, parsed */
	socklen_t	addrlen;
};

/*
 * Loads the "http" object obj into out (zeroed): listen "IPV4:PORT" or
 * "[IPV6]:PORT" (port 0: one the system picks), loopback unless
 * allow_remote.  Returns 0, or -1 with a message naming the key.
 * (http_config.c)
 */
int			http_config_load(json_t *obj, struct http_config *out, char *err, size_t errlen);

/* The two say the same address and allow_remote. */
int			http_config_same(const struct http_config *a, const struct http_config *b);

struct config;

/*
 * Starts the server (none when !hc->enabled): a socket bound and listening,
 * no thread.  Returns 0, or -1 with a message in err.
 */
int			http_start(const struct http_config *hc, char *err, size_t errlen);
void		http_stop(void);

/* What the pages may use: the loop's connection and configuration. */
void		http_set_context(struct db *db, const struct config *config);

/* The fd to poll for POLLIN (-1 without a server). */
int			http_fd(void);

/* Milliseconds until http_run must be called anyway (-1: no need). */
int			http_timeout_ms(void);

/* Serves what is ready, in this thread: requests run to their end here. */
void		http_run(void);

/* The port listened on (0 without a server). */
int			http_port(void);

#endif
