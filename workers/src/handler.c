/*
 * handler.c
 *		The table of handler types and the generic open/close.
 *
 * The config loader hands each outside consumer's "handler" object to
 * handler_open(), which checks "type" and passes the object on to that
 * type's open function.  New types are added to the table below.
 */
#include "handler.h"
#include "type_table.h"

static const struct handler_type *const handler_types[] = {
	&command_handler_type,
};

#define N_HANDLER_TYPES (sizeof(handler_types) / sizeof(handler_types[0]))

int
handler_open(struct handler *h, json_t *spec, const char *where,
			 char *err, size_t errlen)
{
	const char *names[N_HANDLER_TYPES];
	int			i;

	for (size_t k = 0; k < N_HANDLER_TYPES; k++)
		names[k] = handler_types[k]->name;
	h->type = NULL;
	h->state = NULL;
	i = type_table_find(spec, where, "handler", names, N_HANDLER_TYPES, err, errlen);
	if (i < 0)
		return -1;
	h->state = handler_types[i]->open(spec, where, err, errlen);
	if (h->state == NULL)
		return -1;
	h->type = handler_types[i];
	return 0;
}

void
handler_close(struct handler *h)
{
	if (h->type != NULL)
		h->type->close(h->state);
	h->type = NULL;
	h->state = NULL;
}
