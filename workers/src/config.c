/*
 * config.c
 *		Loading and checking the JSON configuration file.
 *
 * The file is one JSON object.  Its keys, their types, bounds and defaults
 * are below (workers/README.md documents the same); anything else is
 * refused: an unknown key, a duplicate key, a value of the wrong type or out
 * of bounds.  jansson checks the shape (config_unpack.c: the types, the
 * unknown keys; its parser refuses duplicate keys and, without
 * JSON_ALLOW_NUL, a NUL in a string, so every string is a C string), this
 * file the rest.  Every message starts with the path to the key at fault
 * ("consumers[1].handler.command: ..."), so that a reload refused on SIGHUP
 * can be fixed from the log line alone.
 *
 * A loaded configuration keeps the parsed document, which its strings point
 * into, and owns its consumers' handlers and its outboxes' senders.
 * Plugins are opened here, so a configuration that loads is ready to run,
 * and a reload that fails leaves the running configuration untouched.  An
 * outbox entry is checked by outbox_config.c.
 *
 * An outside consumer may name the member it polls ("member": k, 0 to 255)
 * or ask for several pollers of any free member ("members": N, 1 to 256,
 * each a thread with its own connection, pollers.c), not both; an
 * in_database consumer takes neither (run_consumer has no member).
 *
 * "notify" says how the daemon's connections learn of new events (db.h):
 * "auto" (LISTEN unless a pooler stands between the daemon and the
 * server), "listen" or "poll".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_unpack.h"

/* load_list reads the name of either kind of entry at the same place */
_Static_assert(offsetof(struct consumer, name) == 0, "name first");
_Static_assert(offsetof(struct outbox, name) == 0, "name first");

void
config_free(struct config *config)
{
	if (config == NULL)
		return;
	for (size_t i = 0; i < config->n_consumers; i++)
		plugin_close(&config->consumers[i].handler);
	free(config->consumers);
	for (size_t i = 0; i < config->n_outboxes; i++)
		plugin_close(&config->outboxes[i].sender);
	free(config->outboxes);
	json_decref(config->doc);
	free(config);
}

/*
 * An optional integer from min to max at key (value NULL: left out, *out
 * untouched).  Read as "o" rather than "I" so that the message can say
 * what the key is for.
 */
static int
load_count(json_t *value, int min, int max, const char *where, const char *key,
		   int *out, char *err, size_t errlen)
{
	if (value == NULL)
		return 0;
	if (!json_is_integer(value) || json_integer_value(value) < min ||
		json_integer_value(value) > max)
		return config_error(err, errlen, where, key, "must be an integer from %d to %d "
							"(%s)", min, max, strcmp(key, "member") == 0 ?
							"the member to poll, numbered from 0" :
							"how many pollers of any free member to run");
	*out = (int) json_integer_value(value);
	return 0;
}

static int
load_consumer(json_t *obj, const char *where, void *out, char *err, size_t errlen)
{
	struct consumer *c = out;
	const char *kind = NULL;
	json_t	   *handler = NULL;
	json_t	   *member = NULL;
	json_t	   *members = NULL;
	char		path[64];

	c->member = -1;
	c->pollers = 1;
	if (config_unpack(obj, where, err, errlen, "{s?s s?s s?o s?o s?o}",
					  "name", &c->name, "kind", &kind, "handler", &handler,
					  "member", &member, "members", &members) < 0)
		return -1;
	if (c->name == NULL || c->name[0] == '\0')
		return config_error(err, errlen, where, "name", c->name == NULL ? "missing" :
							"must be a non-empty string");
	if (kind == NULL)
		return config_error(err, errlen, where, "kind",
							"missing (\"in_database\" or \"outside\")");
	if (strcmp(kind, "in_database") == 0)
		c->kind = CONSUMER_IN_DATABASE;
	else if (strcmp(kind, "outside") == 0)
		c->kind = CONSUMER_OUTSIDE;
	else
		return config_error(err, errlen, where, "kind", "must be \"in_database\" or "
							"\"outside\", not \"%s\"", kind);

	if (c->kind == CONSUMER_IN_DATABASE)
	{
		if (member != NULL || members != NULL)
			return config_error(err, errlen, where, member != NULL ? "member" : "members",
								"not allowed for an in_database consumer (run_consumer "
								"takes no member; the dispatcher runs the members in "
								"parallel)");
		return handler == NULL ? 0 :
			config_error(err, errlen, where, "handler", "not allowed for an in_database "
						 "consumer (its handler is the SQL function given to create_consumer)");
	}
	if (member != NULL && members != NULL)
		return config_error(err, errlen, where, "members", "not allowed with \"member\" "
							"(\"member\": k polls member k alone; \"members\": N runs N "
							"pollers of any free member)");
	if (load_count(member, 0, MAX_MEMBERS - 1, where, "member", &c->member, err, errlen) < 0 ||
		load_count(members, 1, MAX_MEMBERS, where, "members", &c->pollers, err, errlen) < 0)
		return -1;
	if (handler == NULL)
		return config_error(err, errlen, where, "handler",
							"missing (an outside consumer needs one)");
	snprintf(path, sizeof(path), "%s.handler", where);
	return plugin_open(&c->handler, PLUGIN_HANDLER, handler, path, err, errlen);
}

/*
 * The array at key, consumers or outboxes: *items gets it as an array of
 * size-byte entries, each loaded by load, their names (every entry's first
 * member) unique.  *n counts the entries begun, so that config_free cleans
 * up a half-built one.
 */
static int
load_list(json_t *array, const char *key, size_t size,
		  int (*load) (json_t *obj, const char *where, void *out, char *err, size_t errlen),
		  void **items, size_t *n, char *err, size_t errlen)
{
	size_t		len = json_array_size(array);

	*items = NULL;
	if (!json_is_array(array) || len == 0)
		return config_error(err, errlen, "", key, "must be a non-empty array of %s", key);
	*items = calloc(len, size);
	if (*items == NULL)
		return config_error(err, errlen, "", NULL, "out of memory");
	for (size_t i = 0; i < len; i++)
	{
		char	   *item = (char *) *items + i * size;
		const char *name;
		char		where[32];

		*n = i + 1;
		snprintf(where, sizeof(where), "%s[%zu]", key, i);
		if (load(json_array_get(array, i), where, item, err, errlen) < 0)
			return -1;
		name = *(const char **) item;
		for (size_t j = 0; j < i; j++)
			if (strcmp(*(const char **) ((char *) *items + j * size), name) == 0)
				return config_error(err, errlen, where, "name",
									"\"%s\" is already %s[%zu]", name, key, j);
	}
	return 0;
}

static int
load_object(json_t *root, struct config *config, char *err, size_t errlen)
{
	const char *level = NULL;
	const char *log_format = NULL;
	const char *notify = NULL;
	json_t	   *consumers = NULL;
	json_t	   *outboxes = NULL;
	json_t	   *http = NULL;
	json_int_t	poll_interval_ms = 1000;
	json_int_t	batch_size = 100;
	json_int_t	reconnect_min_ms = 100;
	json_int_t	reconnect_max_ms = 30000;
	json_int_t	connect_timeout_ms = 10000;
	void	   *list;
	int			rc = 0;

	if (!json_is_object(root))
		return config_error(err, errlen, "", NULL, "the file must hold one JSON object");
	config->conninfo = "";
	config->log_level = LOG_LEVEL_INFO;
	if (config_unpack(root, "", err, errlen, "{s?s s?I s?I s?I s?I s?I s?s s?s s?s s?o s?o s?o}",
					  "conninfo", &config->conninfo,
					  "poll_interval_ms", &poll_interval_ms,
					  "batch_size", &batch_size,
					  "reconnect_min_ms", &reconnect_min_ms,
					  "reconnect_max_ms", &reconnect_max_ms,
					  "connect_timeout_ms", &connect_timeout_ms,
					  "notify", &notify,
					  "log_level", &level,
					  "log_format", &log_format,
					  "consumers", &consumers,
					  "outboxes", &outboxes,
					  "http", &http) < 0 ||
		config_range(poll_interval_ms, 1, 86400000, "", "poll_interval_ms", err, errlen) < 0 ||
		config_range(batch_size, 1, 10000, "", "batch_size", err, errlen) < 0 ||
		config_range(reconnect_min_ms, 1, 3600000, "", "reconnect_min_ms", err, errlen) < 0 ||
		config_range(reconnect_max_ms, 1, 3600000, "", "reconnect_max_ms", err, errlen) < 0 ||
		config_range(connect_timeout_ms, 0, 3600000, "", "connect_timeout_ms", err, errlen) < 0)
		return -1;
	if (reconnect_max_ms < reconnect_min_ms)
		return config_error(err, errlen, "", "reconnect_max_ms", "must not be less than "
							"reconnect_min_ms (%" JSON_INTEGER_FORMAT ")", reconnect_min_ms);
	config->poll_interval_ms = (int) poll_interval_ms;
	config->batch_size = (int) batch_size;
	config->reconnect_min_ms = (int) reconnect_min_ms;
	config->reconnect_max_ms = (int) reconnect_max_ms;
	config->connect_timeout_ms = (int) connect_timeout_ms;

	config->notify = DB_NOTIFY_AUTO;
	if (notify != NULL && strcmp(notify, "listen") == 0)
		config->notify = DB_NOTIFY_LISTEN;
	else if (notify != NULL && strcmp(notify, "poll") == 0)
		config->notify = DB_NOTIFY_POLL;
	else if (notify != NULL && strcmp(notify, "auto") != 0)
		return config_error(err, errlen, "", "notify", "must be one of \"auto\", "
							"\"listen\", \"poll\"");

	if (level != NULL && log_level_parse(level, &config->log_level) < 0)
		return config_error(err, errlen, "", "log_level", "must be one of \"debug\", "
							"\"info\", \"warning\", \"error\"");

	if (log_format != NULL && log_format_parse(log_format, &config->log_format) < 0)
		return config_error(err, errlen, "", "log_format", "must be one of \"text\", "
							"\"logfmt\", \"json\"");

	if (http != NULL && http_config_load(http, &config->http, err, errlen) < 0)
		return -1;

	if (consumers == NULL && outboxes == NULL)
		return config_error(err, errlen, "", "consumers", "missing (a non-empty array of "
							"consumers; it may be left out when outboxes are given)");
	if (consumers != NULL)
	{
		rc = load_list(consumers, "consumers", sizeof(struct consumer), load_consumer,
					   &list, &config->n_consumers, err, errlen);
		config->consumers = list;
		if (rc < 0)
			return -1;
	}
	if (outboxes != NULL)
	{
		rc = load_list(outboxes, "outboxes", sizeof(struct outbox), outbox_load,
					   &list, &config->n_outboxes, err, errlen);
		config->outboxes = list;
	}
	return rc;
}

/* The checks, for a parsed document (kept by the configuration); name prefixes messages. */
static struct config *
config_from_json(json_t *root, const char *name, char *err, size_t errlen)
{
	struct config *config;
	char		msg[512];

	config = calloc(1, sizeof(*config));
	if (config == NULL)
	{
		json_decref(root);
		snprintf(err, errlen, "config %s: out of memory", name);
		return NULL;
	}
	config->doc = root;
	if (load_object(root, config, msg, sizeof(msg)) < 0)
	{
		snprintf(err, errlen, "config %s: %s", name, msg);
		config_free(config);
		return NULL;
	}
	return config;
}

static void
parse_failed(const json_error_t *jerr, const char *name, char *err, size_t errlen)
{
	if (jerr->line > 0)
		snprintf(err, errlen, "config %s: line %d column %d: %s",
				 name, jerr->line, jerr->column, jerr->text);
	else
		snprintf(err, errlen, "config %s: %s", name, jerr->text);
}

struct config *
config_load(const char *path, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t	   *root;

	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
	{
		parse_failed(&jerr, path, err, errlen);
		return NULL;
	}
	return config_from_json(root, path, err, errlen);
}

struct config *
config_parse(const char *text, size_t len, const char *name, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t	   *root;

	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
	{
		parse_failed(&jerr, name, err, errlen);
		return NULL;
	}
	return config_from_json(root, name, err, errlen);
}
