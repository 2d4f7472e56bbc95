/*
 * outbox_config.c
 *		Loading and checking one entry of the configuration's "outboxes".
 *
 *   {"name": "notifier", "claim": "app.claim_emails", "sent": "app.email_sent",
 *    "failed": "app.email_failed", "listen": "app_outbox", "batch_size": 10,
 *    "handler": {"type": "smtp", ...}}
 *
 * The three function names must be schema-qualified lower-case identifiers
 * (^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$, each part at most 63 bytes): they
 * are quoted with PQescapeIdentifier when the statements are built
 * (outbox.c), and the check keeps anything unexpected out of the config in
 * the first place.  Every message names the key at fault
 * ("outboxes[0].handler.tls: ...").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outbox.h"

#define DEFAULT_BATCH_SIZE 10
#define MAX_IDENTIFIER 63		/* NAMEDATALEN - 1 */

static const char *const outbox_keys[] = {
	"name", "claim", "sent", "failed", "listen", "batch_size", "handler",
};

#define N_OUTBOX_KEYS (sizeof(outbox_keys) / sizeof(outbox_keys[0]))

void
outbox_free(struct outbox *o)
{
	free(o->name);
	free(o->claim);
	free(o->sent);
	free(o->failed);
	free(o->listen);
	message_handler_close(&o->handler);
	memset(o, 0, sizeof(*o));
}

/* One part of schema.function: [a-z_][a-z0-9_]*, 1 to 63 bytes. */
static int
identifier_valid(const char *s, size_t len)
{
	if (len == 0 || len > MAX_IDENTIFIER || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return 0;
	for (size_t i = 1; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

static int
load_function(json_t *obj, const char *key, const char *where, char **out,
			  char *err, size_t errlen)
{
	json_t	   *value = json_object_get(obj, key);
	const char *name;
	const char *dot;

	if (value == NULL)
	{
		snprintf(err, errlen, "%s.%s: missing (a function name, schema.function)",
				 where, key);
		return -1;
	}
	name = json_is_string(value) ? json_string_value(value) : NULL;
	dot = name != NULL ? strchr(name, '.') : NULL;
	if (dot == NULL || strlen(name) != json_string_length(value) ||
		!identifier_valid(name, (size_t) (dot - name)) ||
		!identifier_valid(dot + 1, strlen(dot + 1)))
	{
		snprintf(err, errlen, "%s.%s: must be a schema-qualified function name "
				 "matching ^[a-z_][a-z0-9_]*\\.[a-z_][a-z0-9_]*$ (each part at most "
				 "63 bytes)", where, key);
		return -1;
	}
	*out = strdup(name);
	if (*out == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* A NOTIFY channel: 1 to 63 bytes, no control characters. */
static int
channel_valid(json_t *value)
{
	const char *s;

	if (!json_is_string(value) || json_string_length(value) == 0 ||
		json_string_length(value) > MAX_IDENTIFIER)
		return 0;
	s = json_string_value(value);
	if (strlen(s) != json_string_length(value))
		return 0;
	for (; *s; s++)
		if ((unsigned char) *s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

int
outbox_load(json_t *obj, size_t index, struct outbox *out, char *err, size_t errlen)
{
	char		where[64];
	const char *key;
	json_t	   *value;

	snprintf(where, sizeof(where), "outboxes[%zu]", index);
	if (!json_is_object(obj))
	{
		snprintf(err, errlen, "%s: must be an object with \"name\", \"claim\", "
				 "\"sent\", \"failed\" and \"handler\"", where);
		return -1;
	}
	json_object_foreach(obj, key, value)
	{
		size_t		i;

		for (i = 0; i < N_OUTBOX_KEYS && strcmp(key, outbox_keys[i]) != 0; i++)
			;
		if (i == N_OUTBOX_KEYS)
		{
			snprintf(err, errlen, "%s.%s: unknown key (known: name, claim, sent, "
					 "failed, listen, batch_size, handler)", where, key);
			return -1;
		}
	}

	value = json_object_get(obj, "name");
	if (value == NULL)
	{
		snprintf(err, errlen, "%s.name: missing", where);
		return -1;
	}
	if (!json_is_string(value) || json_string_length(value) == 0 ||
		strlen(json_string_value(value)) != json_string_length(value))
	{
		snprintf(err, errlen, "%s.name: must be a non-empty string", where);
		return -1;
	}
	out->name = strdup(json_string_value(value));
	if (out->name == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return -1;
	}

	if (load_function(obj, "claim", where, &out->claim, err, errlen) < 0 ||
		load_function(obj, "sent", where, &out->sent, err, errlen) < 0 ||
		load_function(obj, "failed", where, &out->failed, err, errlen) < 0)
		return -1;

	value = json_object_get(obj, "listen");
	if (value != NULL)
	{
		if (!channel_valid(value))
		{
			snprintf(err, errlen, "%s.listen: must be a channel name of 1 to 63 "
					 "bytes without control characters", where);
			return -1;
		}
		out->listen = strdup(json_string_value(value));
		if (out->listen == NULL)
		{
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}

	out->batch_size = DEFAULT_BATCH_SIZE;
	value = json_object_get(obj, "batch_size");
	if (value != NULL)
	{
		if (!json_is_integer(value) || json_integer_value(value) < 1 ||
			json_integer_value(value) > 10000)
		{
			snprintf(err, errlen, "%s.batch_size: must be an integer from 1 to 10000",
					 where);
			return -1;
		}
		out->batch_size = (int) json_integer_value(value);
	}

	value = json_object_get(obj, "handler");
	if (value == NULL)
	{
		snprintf(err, errlen, "%s.handler: missing (how to send the messages)", where);
		return -1;
	}
	if (!json_is_object(value))
	{
		snprintf(err, errlen, "%s.handler: must be an object", where);
		return -1;
	}
	strncat(where, ".handler", sizeof(where) - strlen(where) - 1);
	return message_handler_open(&out->handler, value, where, err, errlen);
}
