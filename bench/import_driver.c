/*
 * bench/import_driver.c: the client side of the import bench
 * (bench/run-import).  Sends batches of N client-made events, each with a
 * fresh id, in one of three ways, from CLIENTS processes for SECONDS, and
 * prints the events stored per second:
 *
 *   append_batch  SELECT count(*) FROM eventstore.append_batch('bench', '<literal jsonb[]>')
 *           as one simple query per transaction
 *   copy    COPY import_copy (id, topic, type, version_major, version_minor,
 *           data, metadata) FROM STDIN: the same events decomposed into
 *           columns, one COPY per transaction
 *   parse   SELECT count(*) FROM unnest('<the same literal>'::jsonb[]): what
 *           turning the literal into a jsonb[] costs, before append_batch runs
 *   inbox   COPY eventstore.inbox (topic, envelope) FROM STDIN: the same
 *           envelopes, one per line, one COPY per transaction
 *
 * "import TOTAL CONNINFO" sends TOTAL events to the inbox in one COPY (one
 * transaction, all or nothing), in chunks of 1000 lines, and prints how
 * long it took; bench/run-import watches its progress from another
 * session.  Their ids are unique and in no particular order, as random
 * ids would be.
 *
 * "script N FILE" writes a pgbench script sending append_batch the same
 * literal, its ids made unique per transaction by pgbench variables.
 *
 * Usage: import_driver MODE N CLIENTS SECONDS CONNINFO
 *        import_driver script N FILE
 *        import_driver import TOTAL CONNINFO
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

/* the envelope of bench/setup.sql's bench_envelope(), without its id */
#define DATA "{\"user\": {\"id\": \"6f1c2a7e-3b4d-4e5f-9a0b-1c2d3e4f5a6b\"}, \"image\": {\"url\": \"https://images.birdwatch.example/2024/05/01/blackbird-0042.jpg\"}}"
#define METADATA "{\"time\": \"2024-05-01T12:34:56.789Z\", \"source\": \"services/TickAPI\"}"

/* room for one event, quoted */
#define EVENT_MAX 2048

static void
envelope(char *buf, size_t size, const char *id, int quoted)
{
	/* quoted: as an element of an array literal, its quotes escaped */
	const char *q = quoted ? "\\\"" : "\"";
	char		data[400], meta[400];
	const char *src[2] = {DATA, METADATA};
	char	   *dst[2] = {data, meta};

	for (int k = 0; k < 2; k++)
	{
		char	   *d = dst[k];

		for (const char *s = src[k]; *s; s++)
		{
			if (*s == '"' && quoted)
				*d++ = '\\';
			*d++ = *s;
		}
		*d = '\0';
	}
	snprintf(buf, size, "{%sid%s: %s%s%s, %stype%s: %snew%s, %sversion%s: %s1.0%s, %sdata%s: %s, %smetadata%s: %s}",
			 q, q, q, id, q, q, q, q, q, q, q, q, q, q, q, data, q, q, meta);
}

static void
fail(PGconn *conn, const char *what)
{
	fprintf(stderr, "import_driver: %s: %s", what, PQerrorMessage(conn));
	exit(1);
}

static void
exec_ok(PGconn *conn, const char *sql)
{
	PGresult   *r = PQexec(conn, sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		fail(conn, sql);
	PQclear(r);
}

static void
copy_buffer(PGconn *conn, const char *sql, const char *buf, size_t len)
{
	PGresult   *r = PQexec(conn, sql);

	if (PQresultStatus(r) != PGRES_COPY_IN)
		fail(conn, sql);
	PQclear(r);
	if (PQputCopyData(conn, buf, (int) len) != 1 || PQputCopyEnd(conn, NULL) != 1)
		fail(conn, "copy data");
	r = PQgetResult(conn);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fail(conn, sql);
	PQclear(r);
	while ((r = PQgetResult(conn)) != NULL)
		PQclear(r);
}

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* One client: batches until SECONDS have passed; returns how many. */
static long
client(const char *mode, int n, double seconds, const char *conninfo, unsigned prefix)
{
	PGconn	   *conn = PQconnectdb(conninfo);
	size_t		size = (size_t) n * EVENT_MAX + 200;
	char	   *buf = malloc(size);
	char		id[40], ev[EVENT_MAX];
	unsigned long long seq = 0;
	long		batches = 0;
	double		end;

	if (PQstatus(conn) != CONNECTION_OK)
		fail(conn, "connect");
	end = now() + seconds;
	while (now() < end)
	{
		size_t		len = 0;

		int			copy = strcmp(mode, "copy") == 0;
		int			inbox = strcmp(mode, "inbox") == 0;
		int			literal = !copy && !inbox;

		if (strcmp(mode, "append_batch") == 0)
			len = snprintf(buf, size, "SELECT count(*) FROM eventstore.append_batch('bench', '{");
		else if (literal)
			len = snprintf(buf, size, "SELECT count(*) FROM unnest('{");
		for (int k = 0; k < n; k++)
		{
			snprintf(id, sizeof(id), "%08x-0000-4000-8000-%012llx", prefix, ++seq);
			if (literal)
			{
				envelope(ev, sizeof(ev), id, 1);
				len += snprintf(buf + len, size - len, "%s\"%s\"", k ? "," : "", ev);
			}
			else if (inbox)
			{
				envelope(ev, sizeof(ev), id, 0);
				len += snprintf(buf + len, size - len, "bench\t%s\n", ev);
			}
			else
				len += snprintf(buf + len, size - len, "%s\tbench\tnew\t1\t0\t%s\t%s\n",
								id, DATA, METADATA);
		}
		if (literal)
		{
			snprintf(buf + len, size - len, "}'::jsonb[])");
			exec_ok(conn, buf);
		}
		else if (inbox)
			copy_buffer(conn, "COPY eventstore.inbox (topic, envelope) FROM STDIN", buf, len);
		else
			copy_buffer(conn, "COPY import_copy (id, topic, type, version_major, version_minor, data, metadata) FROM STDIN",
						buf, len);
		batches++;
	}
	PQfinish(conn);
	return batches;
}

/* TOTAL events into the inbox by one COPY; prints the seconds it took. */
static int
import(long total, const char *conninfo)
{
	PGconn	   *conn = PQconnectdb(conninfo);
	size_t		size = (size_t) 1000 * EVENT_MAX;
	char	   *buf = malloc(size);
	char		id[40], ev[EVENT_MAX];
	double		start = now();
	PGresult   *r;

	if (PQstatus(conn) != CONNECTION_OK)
		fail(conn, "connect");
	r = PQexec(conn, "COPY eventstore.inbox (topic, envelope) FROM STDIN");
	if (PQresultStatus(r) != PGRES_COPY_IN)
		fail(conn, "COPY eventstore.inbox");
	PQclear(r);
	for (long sent = 0; sent < total;)
	{
		size_t		len = 0;

		for (int k = 0; k < 1000 && sent < total; k++, sent++)
		{
			/* the first group scattered, as random ids are in an index */
			snprintf(id, sizeof(id), "%08x-0000-4000-8000-%012lx",
					 (unsigned) (sent + 1) * 2654435761u, sent + 1);
			envelope(ev, sizeof(ev), id, 0);
			len += snprintf(buf + len, size - len, "bench\t%s\n", ev);
		}
		if (PQputCopyData(conn, buf, (int) len) != 1)
			fail(conn, "copy data");
	}
	if (PQputCopyEnd(conn, NULL) != 1)
		fail(conn, "copy end");
	r = PQgetResult(conn);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fail(conn, "COPY eventstore.inbox");
	printf("%s in %.1f s\n", PQcmdTuples(r), now() - start);
	PQclear(r);
	PQfinish(conn);
	free(buf);
	return 0;
}

/* A pgbench script: the ids' first two groups are pgbench variables. */
static int
script(int n, const char *file)
{
	FILE	   *f = fopen(file, "w");
	char		id[40], ev[EVENT_MAX];

	if (f == NULL)
		return 1;
	fprintf(f, "\\set a random(10000000, 99999999)\n\\set b random(1000, 9999)\n");
	fprintf(f, "SELECT count(*) FROM eventstore.append_batch('bench', '{");
	for (int k = 0; k < n; k++)
	{
		snprintf(id, sizeof(id), ":a-:b-4000-8000-%012d", k);
		envelope(ev, sizeof(ev), id, 1);
		fprintf(f, "%s\"%s\"", k ? "," : "", ev);
	}
	fprintf(f, "}'::jsonb[]);\n");
	return fclose(f) != 0;
}

int
main(int argc, char **argv)
{
	int			n, clients;
	double		seconds, start;
	long		total = 0;

	if (argc == 4 && strcmp(argv[1], "script") == 0)
		return script(atoi(argv[2]), argv[3]);
	if (argc == 4 && strcmp(argv[1], "import") == 0)
		return import(atol(argv[2]), argv[3]);
	if (argc != 6)
	{
		fprintf(stderr, "usage: import_driver append_batch|parse|copy|inbox N CLIENTS SECONDS CONNINFO\n"
				"       import_driver script N FILE\n"
				"       import_driver import TOTAL CONNINFO\n");
		return 2;
	}
	n = atoi(argv[2]);
	clients = atoi(argv[3]);
	seconds = atof(argv[4]);
	start = now();
	for (int c = 0; c < clients; c++)
	{
		int			fd[2];

		if (pipe(fd) != 0)
			return 1;
		if (fork() == 0)
		{
			long		b;

			close(fd[0]);
			b = client(argv[1], n, seconds, argv[5],
					   (unsigned) (getpid() * 2654435761u) ^ (unsigned) time(NULL));
			if (write(fd[1], &b, sizeof(b)) != sizeof(b))
				_exit(1);
			_exit(0);
		}
		close(fd[1]);
		/* collected below, in order */
		dup2(fd[0], 100 + c);
		close(fd[0]);
	}
	for (int c = 0; c < clients; c++)
	{
		long		b = 0;
		int			status;

		if (read(100 + c, &b, sizeof(b)) != sizeof(b))
			return 1;
		total += b;
		wait(&status);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			return 1;
	}
	printf("%.0f\n", total * (double) n / (now() - start));
	return 0;
}
