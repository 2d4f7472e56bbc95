/*
 * outbox_config.c
 *		Loading and checking one entry of the configuration's "outboxes".
 *
 *   {"name": "notifier", "claim": "app.claim_emails", "sent": "app.email_sent",
 *    "failed": "app.email_failed", "listen": "app_outbox", "batch_size": 10,
 *    "sender": {"type": "smtp", ...},
 *    "backlog_query": "SELECT count(*), ... FROM app.outbox WHERE sent_at IS NULL"}
 *
 * backlog_query, optional, is only read by the status page (status.c), which
 * runs it as a subquery; it is the operator's, like conninfo.
 *
 * "handler" is accepted for "sender", its older name; the messages then
 * name it as the file does.  The three function names must be
 * schema-qualified lower-case identifiers
 * (^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$, each part at most 63 bytes): they
 * are quoted with PQescapeIdentifier when the statements are built
 * (outbox.c), and the check keeps anything unexpected out of the config in
 * the first place.  Every message names the key at fault
 * ("outboxes[0].sender.tls: ...").
 */
#include <stdio.h>
#include <string.h>

#include "config_unpack.h"
#include "outbox.h"

#define DEFAULT_BATCH_SIZE 10
#define MAX_IDENTIFIER 63		/* NAMEDATALEN - 1 */

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
check_function(const char *name, const char *where, const char *key, char *err, size_t errlen)
{
	const char *dot = name != NULL ? strchr(name, '.') : NULL;

	if (name == NULL)
		return config_error(err, errlen, where, key,
							"missing (a function name, schema.function)");
	if (dot == NULL || !identifier_valid(name, (size_t) (dot - name)) ||
		!identifier_valid(dot + 1, strlen(dot + 1)))
		return config_error(err, errlen, where, key, "must be a schema-qualified function "
							"name matching ^[a-z_][a-z0-9_]*\\.[a-z_][a-z0-9_]*$ (each part "
							"at most 63 bytes)");
	return 0;
}

/* A NOTIFY channel: 1 to 63 bytes, no control characters. */
static int
channel_valid(const char *s)
{
	if (s[0] == '\0' || strlen(s) > MAX_IDENTIFIER)
		return 0;
	for (; *s; s++)
		if ((unsigned char) *s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

int
outbox_load(json_t *obj, const char *where, void *out, char *err, size_t errlen)
{
	struct outbox *o = out;
	json_int_t	batch_size = DEFAULT_BATCH_SIZE;
	json_t	   *sender = NULL;
	json_t	   *handler = NULL;
	const char *key;
	char		path[64];

	if (config_unpack(obj, where, err, errlen, "{s?s s?s s?s s?s s?s s?I s?o s?o s?s}",
					  "name", &o->name, "claim", &o->claim, "sent", &o->sent,
					  "failed", &o->failed, "listen", &o->listen,
					  "batch_size", &batch_size, "sender", &sender, "handler", &handler,
					  "backlog_query", &o->backlog_query) < 0)
		return -1;
	if (o->backlog_query != NULL && (o->backlog_query[0] == '\0' ||
									 strchr(o->backlog_query, ';') != NULL))
		return config_error(err, errlen, where, "backlog_query", "must be one SELECT "
							"statement returning one row (backlog, oldest_seconds), "
							"without ';'");
	if (o->name == NULL || o->name[0] == '\0')
		return config_error(err, errlen, where, "name", o->name == NULL ? "missing" :
							"must be a non-empty string");
	if (check_function(o->claim, where, "claim", err, errlen) < 0 ||
		check_function(o->sent, where, "sent", err, errlen) < 0 ||
		check_function(o->failed, where, "failed", err, errlen) < 0)
		return -1;
	if (o->listen != NULL && !channel_valid(o->listen))
		return config_error(err, errlen, where, "listen", "must be a channel name of 1 to "
							"63 bytes without control characters");
	if (config_range(batch_size, 1, 10000, where, "batch_size", err, errlen) < 0)
		return -1;
	o->batch_size = (int) batch_size;

	if (sender != NULL && handler != NULL)
		return config_error(err, errlen, where, "handler", "not allowed with \"sender\" "
							"(it is the older name of \"sender\")");
	if (sender == NULL && handler == NULL)
		return config_error(err, errlen, where, "sender", "missing (how to send the messages)");
	key = sender != NULL ? "sender" : "handler";
	snprintf(path, sizeof(path), "%s.%s", where, key);
	return plugin_open(&o->sender, PLUGIN_SENDER, sender != NULL ? sender : handler,
					   path, err, errlen);
}
