/*
 * handler.c
 *		The table of handler types and the generic open/close.
 *
 * The config loader hands each outside consumer's "handler" object to
 * handler_open(), which checks "type" and passes the object on to that
 * type's open function.  New types are added to the table below.
 */
#include <stdio.h>
#include <string.h>

#include "handler.h"

static const struct handler_type *const handler_types[] = {
	&command_handler_type,
};

#define N_HANDLER_TYPES (sizeof(handler_types) / sizeof(handler_types[0]))

/* "a, b, c": the known type names, for messages. */
static void
known_types(char *buf, size_t len)
{
	size_t		used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < N_HANDLER_TYPES && used < len; i++)
	{
		int			n = snprintf(buf + used, len - used, "%s%s",
								 i > 0 ? ", " : "", handler_types[i]->name);

		if (n < 0)
			break;
		used += (size_t) n;
	}
}

int
handler_open(struct handler *h, json_t *spec, const char *where,
			 char *err, size_t errlen)
{
	json_t	   *type = json_object_get(spec, "type");
	const char *name;
	char		known[256];

	known_types(known, sizeof(known));
	h->type = NULL;
	h->state = NULL;
	if (type == NULL)
	{
		snprintf(err, errlen, "%s.type: missing (one of: %s)", where, known);
		return -1;
	}
	if (!json_is_string(type))
	{
		snprintf(err, errlen, "%s.type: must be a string", where);
		return -1;
	}
	name = json_string_value(type);
	for (size_t i = 0; i < N_HANDLER_TYPES; i++)
	{
		if (strcmp(name, handler_types[i]->name) != 0)
			continue;
		h->state = handler_types[i]->open(spec, where, err, errlen);
		if (h->state == NULL)
			return -1;
		h->type = handler_types[i];
		return 0;
	}
	snprintf(err, errlen, "%s.type: unknown handler type \"%s\" (known: %s)",
			 where, name, known);
	return -1;
}

void
handler_close(struct handler *h)
{
	if (h->type != NULL)
		h->type->close(h->state);
	h->type = NULL;
	h->state = NULL;
}
