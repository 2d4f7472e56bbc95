/*
 * message.h
 *		The interface every outbox message handler type implements.
 *
 * An outbox (outbox.c) claims rows from the database and hands each one, as
 * a struct outbox_message, to its message handler, which delivers it (today:
 * as an email over SMTP).  This is the outboxes' counterpart of handler.h,
 * whose handlers get eventstore deliveries; the two are separate because
 * their inputs are.  To add a type: write handler_<type>.c defining a const
 * struct message_handler_type, and list it in message.c's table.
 *
 *   init     Optional.  Called once at start, before any configuration is
 *            loaded (libcurl's global initialization, say).  Returns 0, or
 *            -1 with a message in err: the daemon then exits.
 *   cleanup  Optional.  Called once at exit, after every state is closed.
 *   open     Called when a configuration is loaded (start and every SIGHUP)
 *            with the outbox's "handler" object.  Checks its own keys (every
 *            key other than "type"), refusing unknown ones, and returns its
 *            state, or NULL after writing a message that names the key at
 *            fault (where is its path, e.g. "outboxes[0].handler") into err.
 *            It must not block or do network I/O.
 *   send     Called once per claimed message.  Returns SEND_OK when the
 *            message is delivered, or SEND_FAILED (may succeed later: a
 *            server down, a timeout, a rejection by the server) or
 *            SEND_REFUSED (retrying the same row cannot help: a recipient
 *            with a line break) with a one-line reason in err.  It may block but must bound its waiting; it is
 *            not interrupted by signals (a stop waits for the message in
 *            hand).
 *   close    Frees the state.
 */
#ifndef WORKER_MESSAGE_H
#define WORKER_MESSAGE_H

#include <stddef.h>

#include <jansson.h>

/* One claimed outbox row; NULL columns arrive as "". */
struct outbox_message
{
	const char *outbox;			/* the outbox's name, for logs */
	const char *id;				/* the row's uuid, as the server sent it */
	const char *recipient;
	const char *subject;
	const char *body;
	const char *attempt;		/* decimal, or "" */
};

enum send_result
{
	SEND_OK,
	SEND_FAILED,				/* transient: the database retries it */
	SEND_REFUSED				/* permanent: retrying will not help */
};

struct message_handler_type
{
	const char *name;
	int			(*init) (char *err, size_t errlen);
	void		(*cleanup) (void);
	void	   *(*open) (json_t *spec, const char *where, char *err, size_t errlen);
	enum send_result (*send) (void *state, const struct outbox_message *m,
							  char *err, size_t errlen);
	void		(*close) (void *state);
};

/* A message handler as an outbox holds it: its type and that type's state. */
struct message_handler
{
	const struct message_handler_type *type;
	void	   *state;
};

/* Every type's init, in table order; stops at the first failure. */
int			message_types_init(char *err, size_t errlen);
void		message_types_cleanup(void);

/* Like handler_open: checks "type" and hands spec to that type's open. */
int			message_handler_open(struct message_handler *h, json_t *spec,
								 const char *where, char *err, size_t errlen);
void		message_handler_close(struct message_handler *h);

static inline enum send_result
message_handler_send(const struct message_handler *h, const struct outbox_message *m,
					 char *err, size_t errlen)
{
	return h->type->send(h->state, m, err, errlen);
}

/* The types, defined in handler_<type>.c. */
extern const struct message_handler_type smtp_message_handler_type;

#endif
