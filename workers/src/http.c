/*
 * http.c
 *		The daemon's HTTP endpoint: libmicrohttpd in external select mode,
 *		driven from the daemon's loop.
 *
 * No thread: MHD is started without MHD_USE_INTERNAL_POLLING_THREAD, with
 * epoll, and the loop (loop.c) adds the epoll fd (http_fd) to every wait
 * between steps and calls http_run when it is readable or when MHD's own
 * timeout (idle connections) comes.  A request is served to its end inside
 * http_run, in the loop's thread, between two steps: never while a
 * consumer's batch or an outbox's claim is open.  So the pages may use the
 * daemon's own libpq connection, and the counters (metrics.c) need no lock.
 * While a step runs (a handler, an SMTP transfer), requests wait in the
 * listen queue.
 *
 *   GET /metrics   the counters, Prometheus text format 0.0.4
 *   GET /          the status page (status.c)
 * Other paths: 404; other methods: 405 (HEAD is served as GET without the
 * body).
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "status.h"

#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

static struct MHD_Daemon *daemon_;
static struct db *context_db;
static const struct config *context_config;

static void mhd_logger(void *cls, const char *fmt, va_list ap)
			__attribute__((format(printf, 2, 0)));

static void
mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char		msg[512];

	(void) cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_error_f(LOG_FIELDS(.error = msg), "http server");
}

/* A response of len bytes of text (taken over: freed by MHD) with status and type. */
static enum MHD_Result
respond(struct MHD_Connection *connection, unsigned int status, const char *type,
		char *text, size_t len)
{
	struct MHD_Response *response;
	enum MHD_Result rc;

	response = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (response == NULL)
	{
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	rc = MHD_queue_response(connection, status, response);
	MHD_destroy_response(response);
	return rc;
}

static enum MHD_Result
respond_text(struct MHD_Connection *connection, unsigned int status, const char *msg)
{
	char	   *text = strdup(msg);

	if (text == NULL)
		return MHD_NO;
	return respond(connection, status, "text/plain; charset=utf-8", text, strlen(text));
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *connection, const char *url,
	   const char *method, const char *version, const char *upload_data,
	   size_t *upload_data_size, void **req_cls)
{
	unsigned int status;
	enum MHD_Result rc;
	char	   *text;
	size_t		len = 0;

	(void) cls;
	(void) version;
	(void) upload_data;
	(void) upload_data_size;
	(void) req_cls;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
	{
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
		rc = respond_text(connection, status, "method not allowed: GET or HEAD only\n");
	}
	else if (strcmp(url, "/metrics") == 0)
	{
		text = metrics_render(&len);
		status = text != NULL ? MHD_HTTP_OK : MHD_HTTP_INTERNAL_SERVER_ERROR;
		rc = text != NULL ? respond(connection, status, METRICS_TYPE, text, len) :
			respond_text(connection, status, "out of memory\n");
	}
	else if (strcmp(url, "/") == 0)
	{
		text = status_render(context_db, context_config, &len);
		status = text != NULL ? MHD_HTTP_OK : MHD_HTTP_INTERNAL_SERVER_ERROR;
		rc = text != NULL ? respond(connection, status, "text/html; charset=utf-8", text, len) :
			respond_text(connection, status, "out of memory\n");
	}
	else
	{
		status = MHD_HTTP_NOT_FOUND;
		rc = respond_text(connection, status, "not found: try /metrics or /\n");
	}
	log_debug("http %s %s %u", method, url, status);
	return rc;
}

int
http_start(const struct http_config *hc, char *err, size_t errlen)
{
	unsigned int flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;

	http_stop();
	if (!hc->enabled)
		return 0;
	if (hc->addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	daemon_ = MHD_start_daemon(flags, 0, NULL, NULL, handle, NULL,
							   MHD_OPTION_SOCK_ADDR, (const struct sockaddr *) &hc->addr,
							   MHD_OPTION_CONNECTION_LIMIT, (unsigned int) 32,
							   MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 10,
							   MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
							   MHD_OPTION_END);
	if (daemon_ == NULL)
	{
		snprintf(err, errlen, "cannot listen on %s for http (in use, or not an "
				 "address of this host?)", hc->listen);
		return -1;
	}
	log_info("http: listening on %s, port %d (/metrics, /)", hc->listen, http_port());
	return 0;
}

void
http_stop(void)
{
	if (daemon_ != NULL)
		MHD_stop_daemon(daemon_);
	daemon_ = NULL;
}

void
http_set_context(struct db *db, const struct config *config)
{
	context_db = db;
	context_config = config;
}

int
http_fd(void)
{
	const union MHD_DaemonInfo *info;

	if (daemon_ == NULL)
		return -1;
	info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_EPOLL_FD);
	return info != NULL ? info->epoll_fd : -1;
}

int
http_timeout_ms(void)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (daemon_ == NULL || MHD_get_timeout(daemon_, &ms) != MHD_YES)
		return -1;
	return ms > 1000000 ? 1000000 : (int) ms;
}

void
http_run(void)
{
	if (daemon_ != NULL)
		MHD_run(daemon_);
}

int
http_port(void)
{
	const union MHD_DaemonInfo *info;

	if (daemon_ == NULL)
		return 0;
	info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
	return info != NULL ? info->port : 0;
}
