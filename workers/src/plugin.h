/*
 * plugin.h
 *		The plugins: a consumer's handler and an outbox's sender, each chosen
 *		by the "type" of its config object from one registry (plugin.c).
 *
 * A handler does something with each event of an outside consumer (the
 * "command" handler runs a program); a sender delivers each message an
 * outbox claims (the "smtp" sender mails it).  To add a type: write
 * handler_<type>.c or sender_<type>.c defining a const struct plugin_type,
 * and list it in plugin.c.
 *
 *   init     Optional.  Called once at start, before any configuration is
 *            loaded (libcurl's global initialization, say).  Returns 0, or
 *            -1 with a message in err: the daemon then exits.
 *   cleanup  Optional.  Called once at exit, after every state is closed.
 *   open     Called when a configuration is loaded (at start and on every
 *            SIGHUP) with the plugin's config object.  Checks its own keys
 *            (config_unpack: "type" among them, any other key refused) and
 *            returns the type's state, or NULL after writing a message that
 *            names the key at fault (where is the object's path, e.g.
 *            "consumers[0].handler") into err.  It must not block or do
 *            network I/O: a reload that is refused keeps the old plugins.
 *            The strings of spec live as long as the state: the
 *            configuration keeps its document until it closes its plugins.
 *   handle   Handlers: called once per event, in position order.  Returns 0
 *            when the event is done with, or -1 with a one-line reason in
 *            err; the daemon then nacks the batch with that reason and hands
 *            on no further event of it.  It may block (one event at a time)
 *            but should bound its own waiting.  Signals set flags only; a
 *            handler that waits with poll(2) should include signals_fd() and
 *            call signals_drain() when it is readable.  For a consumer with
 *            "members" above 1 it is called from that many threads at once
 *            (pollers.c), with the same state: the state must be read-only
 *            or locked, descriptors made close-on-exec atomically (another
 *            thread may be starting a program), and SIGCHLD does not wake
 *            a poller's thread (signals_in_poller(); handler_command.c).
 *   handle_batch  Optional, for handlers that can take a whole batch at once
 *            (the "command" handler with "per": "batch").  by_batch(state)
 *            says whether this configuration does; then handle_batch is
 *            called once per batch with its n events in position order,
 *            instead of handle once per event.  Returns 0 when all of them
 *            are done with, or -1 with a reason in err: the whole batch is
 *            then nacked.  The same rules as for handle apply otherwise.
 *   send     Senders: called once per claimed message.  Returns SEND_OK when
 *            the message is delivered, or SEND_FAILED (may succeed later: a
 *            server down, a timeout, a rejection by the server) or
 *            SEND_REFUSED (retrying the same row cannot help: a recipient
 *            with a line break) or SEND_REJECTED (the server's permanent
 *            refusal of this recipient or message, SMTP 550-554; the row
 *            is still retried by the database, as the reason does not say
 *            "permanent: ") with a one-line reason in err.  It may block
 *            but must bound its waiting; it is not interrupted by signals (a
 *            stop waits for the message in hand).
 *   close    Frees the state, at exit or when a reload replaces the
 *            configuration.
 */
#ifndef WORKER_PLUGIN_H
#define WORKER_PLUGIN_H

#include <stddef.h>

#include <jansson.h>

/* One event as delivered by eventstore.poll(): what a handler gets. */
struct delivery
{
	const char *consumer;		/* the consumer's name */
	const char *batch_id;		/* decimal, as the server sent it */
	const char *position;		/* decimal */
	const char *id;				/* the event's uuid */
	const char *attempt;		/* decimal, or "" if the server did not say */
	const char *member;			/* decimal, or "" if the server did not say (before 1.3) */
	const char *json;			/* the whole delivery row as a JSON object */
	size_t		json_len;
};

/* One claimed outbox row, NULL columns as "": what a sender gets. */
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
	SEND_REFUSED,				/* permanent: retrying will not help */
	SEND_REJECTED				/* the server refused the recipient or the message
								 * with a permanent reply (SMTP 550-554): reported
								 * failed as SEND_FAILED is, counted as refused */
};

enum plugin_kind
{
	PLUGIN_HANDLER,				/* a consumer's "handler" */
	PLUGIN_SENDER				/* an outbox's "sender" */
};

struct plugin_type
{
	const char *name;			/* the config's "type" */
	enum plugin_kind kind;
	int			(*init) (char *err, size_t errlen);
	void		(*cleanup) (void);
	void	   *(*open) (json_t *spec, const char *where, char *err, size_t errlen);
	int			(*handle) (void *state, const struct delivery *d, char *err, size_t errlen);
	int			(*by_batch) (const void *state);
	int			(*handle_batch) (void *state, const struct delivery *d, int n,
								 char *err, size_t errlen);
	enum send_result (*send) (void *state, const struct outbox_message *m,
							  char *err, size_t errlen);
	void		(*close) (void *state);
};

/* A plugin as a consumer or an outbox holds it: its type and that type's state. */
struct plugin
{
	const struct plugin_type *type;
	void	   *state;
};

/* Every type's init, in registry order; stops at the first failure. */
int			plugins_init(char *err, size_t errlen);
void		plugins_cleanup(void);

/*
 * Opens the plugin of the given kind that the config object spec (at key
 * path where) names with "type".  Returns 0, or -1 with a message in err.
 */
int			plugin_open(struct plugin *p, enum plugin_kind kind, json_t *spec,
						const char *where, char *err, size_t errlen);
void		plugin_close(struct plugin *p);

static inline int
plugin_handle(const struct plugin *p, const struct delivery *d, char *err, size_t errlen)
{
	return p->type->handle(p->state, d, err, errlen);
}

/* Whether the handler takes whole batches (plugin_handle_batch). */
static inline int
plugin_by_batch(const struct plugin *p)
{
	return p->type->by_batch != NULL && p->type->by_batch(p->state);
}

static inline int
plugin_handle_batch(const struct plugin *p, const struct delivery *d, int n,
					char *err, size_t errlen)
{
	return p->type->handle_batch(p->state, d, n, err, errlen);
}

static inline enum send_result
plugin_send(const struct plugin *p, const struct outbox_message *m, char *err, size_t errlen)
{
	return p->type->send(p->state, m, err, errlen);
}

/* The types, defined in handler_<type>.c and sender_<type>.c. */
extern const struct plugin_type command_handler;
extern const struct plugin_type smtp_sender;

#endif
