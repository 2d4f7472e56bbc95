/*
 * fuzz_config.c
 *		libFuzzer target: the configuration file.
 *
 * The input is the text of a configuration file, handed to config_parse()
 * (src/config.c), which is config_load() minus the reading of the file:
 * jansson's parser with JSON_REJECT_DUPLICATES, then every check of the
 * daemon's own: the top-level keys and their bounds (json_unpack_ex and its
 * messages rewritten in config_unpack.c), each consumer (its member or
 * members) and its handler ("type" through plugin.c, the command handler's
 * open in handler_command.c), each outbox (outbox_config.c: function names,
 * channels) and its sender (sender_smtp.c's open: host, port, tls,
 * addresses and domains through mail_format.c, and the curl handle, which
 * is made but never used: no network I/O).
 *
 * Besides what the sanitizers catch (memory errors, leaks of a half-built
 * configuration, undefined behaviour), the harness checks what the callers
 * rely on: a refused file leaves a message that starts with "config NAME: ",
 * and a loaded one is within the documented bounds.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "plugin.h"

#define NAME "fuzz.json"

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_config: %s\n", what);
	abort();
}

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char		err[256];

	(void) argc;
	(void) argv;
	/* what main() does before loading a configuration: curl_global_init */
	if (plugins_init(err, sizeof(err)) < 0)
		fail(err);
	atexit(plugins_cleanup);
	return 0;
}

/*
 * An http object that loaded: listen parsed into an IPv4 or IPv6 address
 * with the port written after its last ':', and a loopback address unless
 * allow_remote.
 */
static void
check_http(const struct http_config *h)
{
	const char *colon = h->listen != NULL ? strrchr(h->listen, ':') : NULL;
	long		port = colon != NULL ? strtol(colon + 1, NULL, 10) : -1;
	int			loopback = 0;

	if (colon == NULL)
		fail("an http listen without a port");
	if (h->addr.ss_family == AF_INET)
	{
		const struct sockaddr_in *a = (const struct sockaddr_in *) &h->addr;

		if (ntohs(a->sin_port) != port || h->listen[0] == '[')
			fail("an http listen parsed to another port or family");
		loopback = ((const unsigned char *) &a->sin_addr)[0] == 127;
	}
	else if (h->addr.ss_family == AF_INET6)
	{
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *) &h->addr;
		static const unsigned char one[16] = {[15] = 1};

		if (ntohs(a->sin6_port) != port || h->listen[0] != '[')
			fail("an http listen parsed to another port or family");
		loopback = memcmp(&a->sin6_addr, one, 16) == 0;
	}
	else
		fail("an http listen of no address family");
	if (!loopback && !h->allow_remote)
		fail("a non-loopback http address without allow_remote");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		err[1024];
	struct config *c;

	memset(err, 0, sizeof(err));
	c = config_parse((const char *) data, size, NAME, err, sizeof(err));
	if (c == NULL)
	{
		if (strncmp(err, "config " NAME ": ", strlen("config " NAME ": ")) != 0)
			fail("a refused configuration without a message");
		return 0;
	}

	if (err[0] != '\0')
		fail("a loaded configuration with a message");
	if (c->conninfo == NULL)
		fail("conninfo is NULL");
	if (c->n_consumers == 0 && c->n_outboxes == 0)
		fail("neither consumers nor outboxes");
	if (c->poll_interval_ms < 1 || c->batch_size < 1 || c->batch_size > 10000 ||
		c->reconnect_min_ms < 1 || c->reconnect_max_ms < c->reconnect_min_ms ||
		c->connect_timeout_ms < 0)
		fail("an integer out of bounds");
	for (size_t i = 0; i < c->n_consumers; i++)
	{
		const struct consumer *k = &c->consumers[i];

		if (k->name == NULL || k->name[0] == '\0')
			fail("a consumer without a name");
		if ((k->kind == CONSUMER_OUTSIDE) != (k->handler.type != NULL))
			fail("an outside consumer without a handler, or the reverse");
		if (k->member < -1 || k->member >= MAX_MEMBERS || k->pollers < 1 ||
			k->pollers > MAX_MEMBERS)
			fail("a member or members out of bounds");
		if (k->member >= 0 && k->pollers > 1)
			fail("a member and members together");
		if (k->kind == CONSUMER_IN_DATABASE && (k->member >= 0 || k->pollers > 1))
			fail("an in_database consumer with a member or members");
		for (size_t j = 0; j < i; j++)
			if (strcmp(c->consumers[j].name, k->name) == 0)
				fail("two consumers of the same name");
	}
	for (size_t i = 0; i < c->n_outboxes; i++)
	{
		const struct outbox *o = &c->outboxes[i];

		if (o->name == NULL || o->name[0] == '\0' || o->claim == NULL ||
			o->sent == NULL || o->failed == NULL || o->sender.type == NULL)
			fail("an outbox with a missing part");
		if (strchr(o->claim, '.') == NULL || strchr(o->sent, '.') == NULL ||
			strchr(o->failed, '.') == NULL)
			fail("an outbox function that is not schema-qualified");
		if (o->batch_size < 1 || o->batch_size > 10000)
			fail("an outbox batch_size out of bounds");
		if (o->backlog_query != NULL &&
			(o->backlog_query[0] == '\0' || strchr(o->backlog_query, ';') != NULL))
			fail("a backlog_query that is empty or holds a ';'");
	}
	if (c->log_format != LOG_FORMAT_TEXT && c->log_format != LOG_FORMAT_LOGFMT &&
		c->log_format != LOG_FORMAT_JSON)
		fail("a log_format out of bounds");
	if (c->http.enabled)
		check_http(&c->http);
	config_free(c);
	return 0;
}
