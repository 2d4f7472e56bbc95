/*
 * message.c
 *		The table of outbox message handler types, their global set-up, and
 *		the generic open/close.
 *
 * The config loader hands each outbox's "handler" object to
 * message_handler_open(), which checks "type" and passes the object on to
 * that type's open function.  New types are added to the table below.
 */
#include "message.h"
#include "type_table.h"

static const struct message_handler_type *const message_types[] = {
	&smtp_message_handler_type,
};

#define N_MESSAGE_TYPES (sizeof(message_types) / sizeof(message_types[0]))

int
message_types_init(char *err, size_t errlen)
{
	for (size_t i = 0; i < N_MESSAGE_TYPES; i++)
		if (message_types[i]->init != NULL && message_types[i]->init(err, errlen) < 0)
			return -1;
	return 0;
}

void
message_types_cleanup(void)
{
	for (size_t i = N_MESSAGE_TYPES; i > 0; i--)
		if (message_types[i - 1]->cleanup != NULL)
			message_types[i - 1]->cleanup();
}

int
message_handler_open(struct message_handler *h, json_t *spec, const char *where,
					 char *err, size_t errlen)
{
	const char *names[N_MESSAGE_TYPES];
	int			i;

	for (size_t k = 0; k < N_MESSAGE_TYPES; k++)
		names[k] = message_types[k]->name;
	h->type = NULL;
	h->state = NULL;
	i = type_table_find(spec, where, "message handler", names, N_MESSAGE_TYPES, err, errlen);
	if (i < 0)
		return -1;
	h->state = message_types[i]->open(spec, where, err, errlen);
	if (h->state == NULL)
		return -1;
	h->type = message_types[i];
	return 0;
}

void
message_handler_close(struct message_handler *h)
{
	if (h->type != NULL)
		h->type->close(h->state);
	h->type = NULL;
	h->state = NULL;
}
