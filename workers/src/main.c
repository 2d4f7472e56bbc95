/*
 * main.c
 *		eventstore-worker: command line, start-up and exit.
 *
 *   eventstore-worker --config PATH [--once]
 *
 * Exit statuses: 0 after a graceful stop or a completed --once run; 1 for a
 * runtime failure (in --once mode: could not connect, connection lost, a
 * query failed; in any mode: the process could not set itself up, e.g.
 * libcurl's initialization failed); 2 for a
 * usage or configuration error.  See workers/README.md.
 */
#include <stdio.h>
#include <string.h>
#include <errno.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "plugin.h"
#include "signals.h"

#define WORKER_VERSION "0.1"

static void
usage(FILE *out)
{
	fputs("Usage: eventstore-worker --config PATH [--once]\n"
		  "\n"
		  "Drives eventstore consumers from outside the database: polls outside\n"
		  "consumers and hands their events to handlers, runs in-database\n"
		  "consumers with eventstore.run_consumer(), wakes on LISTEN eventstore;\n"
		  "sends the messages of outboxes (claim, send by SMTP, mark sent/failed).\n"
		  "\n"
		  "Options:\n"
		  "  --config PATH  the JSON configuration file (required)\n"
		  "  --once         drain every consumer and outbox once, then exit\n"
		  "  --help         show this help and exit\n"
		  "  --version      show the version and exit\n"
		  "\n"
		  "Signals: SIGHUP reloads the configuration; SIGTERM or SIGINT finish the\n"
		  "current batch and exit 0.\n"
		  "Exit status: 0 done, 1 runtime failure, 2 usage or configuration error.\n",
		  out);
}

int
main(int argc, char **argv)
{
	const char *config_path = NULL;
	struct config *config;
	int			once = 0;
	int			status;
	char		err[1024];

	for (int i = 1; i < argc; i++)
	{
		const char *arg = argv[i];

		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
		{
			usage(stdout);
			return 0;
		}
		else if (strcmp(arg, "--version") == 0)
		{
			printf("eventstore-worker %s\n", WORKER_VERSION);
			return 0;
		}
		else if (strcmp(arg, "--once") == 0)
			once = 1;
		else if (strcmp(arg, "--config") == 0 && i + 1 < argc)
			config_path = argv[++i];
		else if (strncmp(arg, "--config=", 9) == 0)
			config_path = arg + 9;
		else
		{
			fprintf(stderr, "eventstore-worker: %s: %s\n",
					strcmp(arg, "--config") == 0 ? "option requires a path" :
					"unknown argument", arg);
			usage(stderr);
			return 2;
		}
	}
	if (config_path == NULL || config_path[0] == '\0')
	{
		fprintf(stderr, "eventstore-worker: --config PATH is required\n");
		usage(stderr);
		return 2;
	}

	if (plugins_init(err, sizeof(err)) < 0)
	{
		log_error("%s", err);
		plugins_cleanup();
		return 1;
	}
	config = config_load(config_path, err, sizeof(err));
	if (config == NULL)
	{
		log_error("%s", err);
		plugins_cleanup();
		return 2;
	}
	log_set_level(config->log_level);
	log_set_format(config->log_format);

	if (signals_init() < 0)
	{
		log_error("cannot install signal handlers: %s", strerror(errno));
		config_free(config);
		plugins_cleanup();
		signals_close();
		return 1;
	}

	log_info("eventstore-worker %s starting%s: config %s, %zu consumer(s), %zu outbox(es)",
			 WORKER_VERSION, once ? " (once)" : "", config_path, config->n_consumers,
			 config->n_outboxes);
	status = loop_run(config_path, &config, once);

	config_free(config);
	plugins_cleanup();
	signals_close();
	return status;
}
