/*
 * plugin.c
 *		The registry of plugin types (consumers' handlers and outboxes'
 *		senders), their global set-up, and the generic open/close.
 *
 * The config loader hands a consumer's "handler" object or an outbox's
 * "sender" object to plugin_open(), which looks its "type" up among the
 * types of that kind and passes the object on to that type's open.  New
 * types are added to the table below.
 */
#include <stdio.h>
#include <string.h>

#include "config_unpack.h"
#include "plugin.h"

static const struct plugin_type *const types[] = {
	&command_handler,
	&smtp_sender,
};

#define N_TYPES (sizeof(types) / sizeof(types[0]))

int
plugins_init(char *err, size_t errlen)
{
	for (size_t i = 0; i < N_TYPES; i++)
		if (types[i]->init != NULL && types[i]->init(err, errlen) < 0)
			return -1;
	return 0;
}

void
plugins_cleanup(void)
{
	for (size_t i = N_TYPES; i > 0; i--)
		if (types[i - 1]->cleanup != NULL)
			types[i - 1]->cleanup();
}

int
plugin_open(struct plugin *p, enum plugin_kind kind, json_t *spec, const char *where,
			char *err, size_t errlen)
{
	const char *what = kind == PLUGIN_HANDLER ? "handler" : "sender";
	const char *name = NULL;
	char		known[128] = "";
	json_error_t jerr;

	p->type = NULL;
	p->state = NULL;
	for (size_t i = 0; i < N_TYPES; i++)
		if (types[i]->kind == kind)
			config_list_add(known, sizeof(known), types[i]->name);
	if (!json_is_object(spec))
		return config_error(err, errlen, where, NULL, "must be an object with \"type\" "
							"(one of: %s)", known);
	if (json_unpack_ex(spec, &jerr, 0, "{s?s}", "type", &name) < 0)
		return config_error(err, errlen, where, "type", "must be a string (one of: %s)", known);
	if (name == NULL)
		return config_error(err, errlen, where, "type", "missing (one of: %s)", known);
	for (size_t i = 0; i < N_TYPES; i++)
	{
		if (types[i]->kind != kind || strcmp(types[i]->name, name) != 0)
			continue;
		p->state = types[i]->open(spec, where, err, errlen);
		if (p->state == NULL)
			return -1;
		p->type = types[i];
		return 0;
	}
	return config_error(err, errlen, where, "type", "unknown %s type \"%s\" (known: %s)",
						what, name, known);
}

void
plugin_close(struct plugin *p)
{
	if (p->type != NULL)
		p->type->close(p->state);
	p->type = NULL;
	p->state = NULL;
}
