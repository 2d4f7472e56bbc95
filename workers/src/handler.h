/*
 * handler.h
 *		The interface every outside-consumer handler type implements.
 *
 * A handler type is a name (the config's handler "type") and three
 * functions.  To add one (SMTP, say): write handler_<type>.c defining a
 * const struct handler_type, and list it in handler.c's table.
 *
 *   open    Called when a configuration is loaded (at start and on every
 *           SIGHUP).  Checks the handler's own keys in the config object
 *           (every key other than "type"), refusing unknown ones, and
 *           returns the type's state, or NULL after writing a message that
 *           names the offending key into err.  It must not block or do
 *           network I/O: a reload that is refused keeps the old handlers.
 *   handle  Called once per event, in position order.  Returns 0 when the
 *           event is done with, or -1 with a one-line reason in err; the
 *           daemon then nacks the batch with that reason and handles no
 *           further event of it.  It may block (the daemon handles one
 *           event at a time) but should bound its own waiting.  Signals set
 *           flags only; a handler that waits with poll(2) should include
 *           signals_fd() and call signals_drain() when it is readable.
 *   close   Frees the state.  Called when the daemon exits or a reload
 *           replaces the configuration.
 */
#ifndef WORKER_HANDLER_H
#define WORKER_HANDLER_H

#include <stddef.h>

#include <jansson.h>

/* One event as delivered by eventstore.poll(). */
struct delivery
{
	const char *consumer;		/* the consumer's name */
	const char *batch_id;		/* decimal, as the server sent it */
	const char *position;		/* decimal */
	const char *id;				/* the event's uuid */
	const char *attempt;		/* decimal, or "" if the server did not say */
	const char *json;			/* the whole delivery row as a JSON object */
	size_t		json_len;
};

struct handler_type
{
	const char *name;
	void	   *(*open) (json_t *spec, const char *where, char *err, size_t errlen);
	int			(*handle) (void *state, const struct delivery *d, char *err, size_t errlen);
	void		(*close) (void *state);
};

/* A handler as a consumer holds it: its type and that type's state. */
struct handler
{
	const struct handler_type *type;
	void	   *state;
};

/*
 * Opens the handler described by the config object spec (at key path
 * where, for messages).  Returns 0, or -1 with a message in err.
 */
int			handler_open(struct handler *h, json_t *spec, const char *where,
						 char *err, size_t errlen);
void		handler_close(struct handler *h);

static inline int
handler_handle(const struct handler *h, const struct delivery *d, char *err, size_t errlen)
{
	return h->type->handle(h->state, d, err, errlen);
}

/* The handler types, defined in handler_<type>.c. */
extern const struct handler_type command_handler_type;

#endif
