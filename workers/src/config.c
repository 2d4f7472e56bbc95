/*
 * config.c
 *		Loading and checking the JSON configuration file.
 *
 * The file is one JSON object.  Its keys, their types, bounds and defaults
 * are the tables below (workers/README.md documents the same); anything
 * else is refused: an unknown key, a duplicate key, a value of the wrong
 * type or out of bounds.  Every message starts with the path to the key at
 * fault ("consumers[1].handler.command: ..."), so that a reload refused on
 * SIGHUP can be fixed from the log line alone.
 *
 * A loaded configuration owns copies of its strings and its consumers' and
 * outboxes' handler states; the jansson tree is freed before config_load
 * returns.  Handlers are opened here, so a configuration that loads is ready
 * to run, and a reload that fails leaves the running configuration
 * untouched.  An outbox entry is checked by outbox_config.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"

/* The integer keys: where each lives in struct config, its bounds and default. */
struct int_key
{
	const char *name;
	size_t		offset;
	int			min;
	int			max;
	int			dflt;
};

static const struct int_key int_keys[] = {
	{"poll_interval_ms", offsetof(struct config, poll_interval_ms), 1, 86400000, 1000},
	{"batch_size", offsetof(struct config, batch_size), 1, 10000, 100},
	{"reconnect_min_ms", offsetof(struct config, reconnect_min_ms), 1, 3600000, 100},
	{"reconnect_max_ms", offsetof(struct config, reconnect_max_ms), 1, 3600000, 30000},
	{"connect_timeout_ms", offsetof(struct config, connect_timeout_ms), 0, 3600000, 10000},
};

#define N_INT_KEYS (sizeof(int_keys) / sizeof(int_keys[0]))

static const char *const other_keys[] = {"conninfo", "log_level", "consumers", "outboxes"};

#define N_OTHER_KEYS (sizeof(other_keys) / sizeof(other_keys[0]))

static int
known_top_key(const char *key)
{
	for (size_t i = 0; i < N_INT_KEYS; i++)
		if (strcmp(key, int_keys[i].name) == 0)
			return 1;
	for (size_t i = 0; i < N_OTHER_KEYS; i++)
		if (strcmp(key, other_keys[i]) == 0)
			return 1;
	return 0;
}

/* A string without embedded NULs (jansson allows them; C strings do not). */
static int
is_c_string(json_t *value)
{
	return json_is_string(value) &&
		strlen(json_string_value(value)) == json_string_length(value);
}

void
config_free(struct config *config)
{
	if (config == NULL)
		return;
	for (size_t i = 0; i < config->n_consumers; i++)
	{
		free(config->consumers[i].name);
		handler_close(&config->consumers[i].handler);
	}
	free(config->consumers);
	for (size_t i = 0; i < config->n_outboxes; i++)
		outbox_free(&config->outboxes[i]);
	free(config->outboxes);
	free(config->conninfo);
	free(config);
}

static int
load_consumer(json_t *obj, size_t index, struct consumer *out,
			  char *err, size_t errlen)
{
	char		where[64];
	const char *key;
	json_t	   *value;
	json_t	   *name;
	json_t	   *kind;
	json_t	   *handler;

	snprintf(where, sizeof(where), "consumers[%zu]", index);
	if (!json_is_object(obj))
	{
		snprintf(err, errlen, "%s: must be an object with \"name\" and \"kind\"", where);
		return -1;
	}
	json_object_foreach(obj, key, value)
	{
		if (strcmp(key, "name") != 0 && strcmp(key, "kind") != 0 &&
			strcmp(key, "handler") != 0)
		{
			snprintf(err, errlen, "%s.%s: unknown key (known: name, kind, handler)",
					 where, key);
			return -1;
		}
	}

	name = json_object_get(obj, "name");
	if (name == NULL)
	{
		snprintf(err, errlen, "%s.name: missing", where);
		return -1;
	}
	if (!is_c_string(name) || json_string_length(name) == 0)
	{
		snprintf(err, errlen, "%s.name: must be a non-empty string", where);
		return -1;
	}

	kind = json_object_get(obj, "kind");
	if (kind == NULL)
	{
		snprintf(err, errlen, "%s.kind: missing (\"in_database\" or \"outside\")", where);
		return -1;
	}
	if (!json_is_string(kind))
	{
		snprintf(err, errlen, "%s.kind: must be a string, \"in_database\" or \"outside\"",
				 where);
		return -1;
	}
	if (strcmp(json_string_value(kind), "in_database") == 0)
		out->kind = CONSUMER_IN_DATABASE;
	else if (strcmp(json_string_value(kind), "outside") == 0)
		out->kind = CONSUMER_OUTSIDE;
	else
	{
		snprintf(err, errlen, "%s.kind: must be \"in_database\" or \"outside\", not \"%s\"",
				 where, json_string_value(kind));
		return -1;
	}

	handler = json_object_get(obj, "handler");
	if (out->kind == CONSUMER_IN_DATABASE && handler != NULL)
	{
		snprintf(err, errlen, "%s.handler: not allowed for an in_database consumer "
				 "(its handler is the SQL function given to create_consumer)", where);
		return -1;
	}
	if (out->kind == CONSUMER_OUTSIDE)
	{
		if (handler == NULL)
		{
			snprintf(err, errlen, "%s.handler: missing (an outside consumer needs one)",
					 where);
			return -1;
		}
		if (!json_is_object(handler))
		{
			snprintf(err, errlen, "%s.handler: must be an object", where);
			return -1;
		}
		strncat(where, ".handler", sizeof(where) - strlen(where) - 1);
		if (handler_open(&out->handler, handler, where, err, errlen) < 0)
			return -1;
	}

	out->name = strdup(json_string_value(name));
	if (out->name == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int
load_consumers(json_t *array, struct config *config, char *err, size_t errlen)
{
	size_t		n;

	if (!json_is_array(array) || json_array_size(array) == 0)
	{
		snprintf(err, errlen, "consumers: must be a non-empty array of consumers");
		return -1;
	}
	n = json_array_size(array);
	config->consumers = calloc(n, sizeof(struct consumer));
	if (config->consumers == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
	{
		/* counted first, so that config_free cleans up a half-built entry */
		config->n_consumers = i + 1;
		if (load_consumer(json_array_get(array, i), i, &config->consumers[i],
						  err, errlen) < 0)
			return -1;
		for (size_t j = 0; j < i; j++)
		{
			if (strcmp(config->consumers[j].name, config->consumers[i].name) == 0)
			{
				snprintf(err, errlen, "consumers[%zu].name: \"%s\" is already "
						 "consumers[%zu]", i, config->consumers[i].name, j);
				return -1;
			}
		}
	}
	return 0;
}

static int
load_outboxes(json_t *array, struct config *config, char *err, size_t errlen)
{
	size_t		n;

	if (!json_is_array(array) || json_array_size(array) == 0)
	{
		snprintf(err, errlen, "outboxes: must be a non-empty array of outboxes");
		return -1;
	}
	n = json_array_size(array);
	config->outboxes = calloc(n, sizeof(struct outbox));
	if (config->outboxes == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
	{
		/* counted first, so that config_free cleans up a half-built entry */
		config->n_outboxes = i + 1;
		if (outbox_load(json_array_get(array, i), i, &config->outboxes[i],
						err, errlen) < 0)
			return -1;
		for (size_t j = 0; j < i; j++)
		{
			if (strcmp(config->outboxes[j].name, config->outboxes[i].name) == 0)
			{
				snprintf(err, errlen, "outboxes[%zu].name: \"%s\" is already "
						 "outboxes[%zu]", i, config->outboxes[i].name, j);
				return -1;
			}
		}
	}
	return 0;
}

static int
load_object(json_t *root, struct config *config, char *err, size_t errlen)
{
	const char *key;
	json_t	   *value;
	json_t	   *consumers;
	json_t	   *outboxes;

	if (!json_is_object(root))
	{
		snprintf(err, errlen, "the file must hold one JSON object");
		return -1;
	}
	json_object_foreach(root, key, value)
	{
		if (!known_top_key(key))
		{
			snprintf(err, errlen, "%s: unknown key (known: conninfo, poll_interval_ms, "
					 "batch_size, reconnect_min_ms, reconnect_max_ms, "
					 "connect_timeout_ms, log_level, consumers, outboxes)", key);
			return -1;
		}
	}

	value = json_object_get(root, "conninfo");
	if (value != NULL && !is_c_string(value))
	{
		snprintf(err, errlen, "conninfo: must be a string (a libpq connection string)");
		return -1;
	}
	config->conninfo = strdup(value != NULL ? json_string_value(value) : "");
	if (config->conninfo == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return -1;
	}

	for (size_t i = 0; i < N_INT_KEYS; i++)
	{
		const struct int_key *k = &int_keys[i];
		int		   *field = (int *) ((char *) config + k->offset);

		value = json_object_get(root, k->name);
		*field = k->dflt;
		if (value == NULL)
			continue;
		if (!json_is_integer(value) || json_integer_value(value) < k->min ||
			json_integer_value(value) > k->max)
		{
			snprintf(err, errlen, "%s: must be an integer from %d to %d",
					 k->name, k->min, k->max);
			return -1;
		}
		*field = (int) json_integer_value(value);
	}
	if (config->reconnect_max_ms < config->reconnect_min_ms)
	{
		snprintf(err, errlen, "reconnect_max_ms: must not be less than "
				 "reconnect_min_ms (%d)", config->reconnect_min_ms);
		return -1;
	}

	config->log_level = LOG_LEVEL_INFO;
	value = json_object_get(root, "log_level");
	if (value != NULL &&
		(!json_is_string(value) ||
		 log_level_parse(json_string_value(value), &config->log_level) < 0))
	{
		snprintf(err, errlen, "log_level: must be one of \"debug\", \"info\", "
				 "\"warning\", \"error\"");
		return -1;
	}

	consumers = json_object_get(root, "consumers");
	outboxes = json_object_get(root, "outboxes");
	if (consumers == NULL && outboxes == NULL)
	{
		snprintf(err, errlen, "consumers: missing (a non-empty array of consumers; "
				 "it may be left out when outboxes are given)");
		return -1;
	}
	if (consumers != NULL && load_consumers(consumers, config, err, errlen) < 0)
		return -1;
	if (outboxes != NULL && load_outboxes(outboxes, config, err, errlen) < 0)
		return -1;
	return 0;
}

/* The checks and copies, for a parsed document; name prefixes messages. */
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
	if (load_object(root, config, msg, sizeof(msg)) < 0)
	{
		snprintf(err, errlen, "config %s: %s", name, msg);
		config_free(config);
		config = NULL;
	}
	json_decref(root);
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
