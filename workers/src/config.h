/*
 * config.h
 *		The daemon's configuration, loaded from a JSON file.
 */
#ifndef WORKER_CONFIG_H
#define WORKER_CONFIG_H

#include <stddef.h>

#include <jansson.h>

#include "db.h"
#include "http.h"
#include "log.h"
#include "outbox.h"
#include "plugin.h"

enum consumer_kind
{
	CONSUMER_IN_DATABASE,		/* driven with eventstore.run_consumer() */
	CONSUMER_OUTSIDE			/* eventstore.poll() + a handler + ack/nack */
};

/* The most members a consumer has, and the most pollers "members" asks for. */
#define MAX_MEMBERS 256

/* name first, as in struct outbox: config.c checks both lists alike */
struct consumer
{
	const char *name;
	enum consumer_kind kind;
	struct plugin handler;		/* outside consumers only */
	int			member;			/* "member": poll only this member; -1: any */
	int			pollers;		/* "members": pollers in threads of their own
								 * (pollers.c) when more than 1; 1: the loop's */
};

/*
 * The strings point into doc, the parsed file, which the configuration
 * keeps until config_free.
 */
struct config
{
	json_t	   *doc;
	const char *conninfo;
	int			poll_interval_ms;
	int			batch_size;
	int			reconnect_min_ms;
	int			reconnect_max_ms;
	int			connect_timeout_ms;
	enum db_notify notify;		/* "notify": auto, listen or poll */
	enum log_level log_level;
	enum log_format log_format;
	struct http_config http;	/* http.enabled 0: no HTTP server */
	struct consumer *consumers;
	size_t		n_consumers;
	struct outbox *outboxes;
	size_t		n_outboxes;
};

/*
 * Reads and checks the file at path.  Returns a new configuration (free it
 * with config_free), or NULL with a message naming the key in err.
 */
struct config *config_load(const char *path, char *err, size_t errlen);

/*
 * The same for the file's text (len bytes, not necessarily NUL-terminated;
 * name stands for the path in messages): what config_load does once it has
 * read the file.  For the fuzzer (workers/fuzz/fuzz_config.c).
 */
struct config *config_parse(const char *text, size_t len, const char *name,
							char *err, size_t errlen);

void		config_free(struct config *config);

#endif
