/*
 * status.c
 *		The status page at /: read-only HTML, inline CSS, no JavaScript.
 *
 * Sections, each from its own query on the daemon's connection (the page
 * is rendered by http.c between two steps of the loop, never while a batch
 * is open):
 *   consumers      eventstore.consumer_status: name, kind, lag_events,
 *                  lag_seconds, parked, attempts, last_error, last_run, and
 *                  the lag over the last hour as an inline SVG line, drawn
 *                  from the samples the loop takes (status_sample, every
 *                  SAMPLE_MS, one hour kept per consumer)
 *   dispatchers    pg_stat_activity's eventstore dispatcher and launcher
 *   outboxes       each configured outbox's backlog and oldest unsent age,
 *                  from its backlog_query (none configured: a note)
 *   birdwatch      birdwatch.admin_overview() as tables, when the extension
 *                  is installed
 * A query that fails (a missing privilege, an extension not installed, no
 * connection) leaves a note in its section; the rest of the page is drawn.
 * Every value from the database is HTML-escaped.  Values carry data-
 * attributes for machines (and the test): a consumer's row is
 * data-consumer="NAME" with data-field="lag_events" cells, an outbox's
 * data-outbox, the overview's scalars data-overview="users" or
 * "statistics.KEY", a NULL has data-null.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "status.h"
#include "text.h"

#define SAMPLE_MS 15000
#define N_SAMPLES 240			/* one hour of SAMPLE_MS */
#define MAX_SERIES 64
#define CHART_W 240
#define CHART_H 48

#define CONSUMERS_SQL \
	"SELECT name, kind, lag_events, lag_seconds, parked, attempts, last_error, " \
	"last_run FROM eventstore.consumer_status ORDER BY name"
#define DISPATCHERS_SQL \
	"SELECT backend_type, datname, pid, backend_start, state, wait_event " \
	"FROM pg_stat_activity WHERE backend_type IN ('eventstore dispatcher', " \
	"'eventstore launcher') ORDER BY backend_type DESC, datname, pid"
#define SAMPLE_SQL "SELECT name, lag_events FROM eventstore.consumer_status"
#define HAS_BIRDWATCH_SQL \
	"SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'birdwatch')"
#define OVERVIEW_SQL "SELECT birdwatch.admin_overview()::text"

/* One consumer's lag samples: a ring of (wall-clock time, lag_events). */
struct lag_series
{
	char		name[64];
	time_t		t[N_SAMPLES];
	long long	v[N_SAMPLES];
	int			n;
	int			next;
};

static struct lag_series series[MAX_SERIES];
static int	n_series;
static long long next_sample;	/* monotonic ms; 0: at once */

static const char *const consumer_fields[] = {
	"name", "kind", "lag_events", "lag_seconds", "parked", "attempts", "last_error", "last_run"
};

static const char style[] =
	"body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}"
	"h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}"
	"table{border-collapse:collapse;margin:.4em 0;background:#fff}"
	"th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}"
	"th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}"
	".note{color:#8a5a00;background:#fff6e0;border:1px solid #f0d9a0;padding:.4em .6em}"
	".err{color:#a00}svg{background:#fff;border:1px solid #ddd}"
	"polyline{fill:none;stroke:#2a6fdb;stroke-width:1.5}"
	"figure{display:inline-block;margin:.3em 1em .3em 0}figcaption{font-size:.85em}";

/* s, HTML-escaped (for text and attribute values alike). */
static void
html(struct strbuf *b, const char *s)
{
	for (; *s != '\0'; s++)
	{
		switch (*s)
		{
			case '&':
				strbuf_str(b, "&amp;");
				break;
			case '<':
				strbuf_str(b, "&lt;");
				break;
			case '>':
				strbuf_str(b, "&gt;");
				break;
			case '"':
				strbuf_str(b, "&quot;");
				break;
			case '\'':
				strbuf_str(b, "&#39;");
				break;
			default:
				strbuf_add(b, s, 1);
		}
	}
}

static void
note(struct strbuf *b, const char *what, const char *why)
{
	strbuf_str(b, "<p class=\"note\">");
	html(b, what);
	if (why != NULL)
	{
		strbuf_str(b, ": <span class=\"err\">");
		html(b, why);
		strbuf_str(b, "</span>");
	}
	strbuf_str(b, "</p>\n");
}

/* <td data-field="field">value</td>, a NULL marked data-null */
static void
cell(struct strbuf *b, const char *field, const PGresult *res, int row, int col, int num)
{
	strbuf_str(b, num ? "<td class=\"num\" data-field=\"" : "<td data-field=\"");
	html(b, field);
	if (PQgetisnull(res, row, col))
	{
		strbuf_str(b, "\" data-null=\"1\"></td>");
		return;
	}
	strbuf_str(b, "\">");
	html(b, PQgetvalue(res, row, col));
	strbuf_str(b, "</td>");
}

/* Runs sql; NULL with a note in b when it cannot. */
static PGresult *
query(struct strbuf *b, struct db *db, const char *sql, const char *what)
{
	PGresult   *res = NULL;
	char		why[1100];

	if (db == NULL || db->conn == NULL)
	{
		note(b, what, "not connected to the database");
		return NULL;
	}
	if (db_query(db, sql, 0, NULL, &res) != DB_OK)
	{
		snprintf(why, sizeof(why), "%s", db->error);
		note(b, what, why);
		return NULL;
	}
	return res;
}

static struct lag_series *
find_series(const char *name, int create)
{
	for (int i = 0; i < n_series; i++)
		if (strcmp(series[i].name, name) == 0)
			return &series[i];
	if (!create || n_series == MAX_SERIES || strlen(name) >= sizeof(series[0].name))
		return NULL;
	memset(&series[n_series], 0, sizeof(series[0]));
	strcpy(series[n_series].name, name);
	return &series[n_series++];
}

int
status_sample_wait_ms(void)
{
	long long	left = next_sample - monotonic_ms();

	return left <= 0 ? 0 : (int) left;
}

void
status_sample(struct db *db)
{
	PGresult   *res;
	time_t		now = time(NULL);

	next_sample = monotonic_ms() + SAMPLE_MS;
	if (db->conn == NULL || db_query(db, SAMPLE_SQL, 0, NULL, &res) != DB_OK)
	{
		log_debug("status: no lag sample: %s", db->error);
		return;
	}
	for (int r = 0; r < PQntuples(res); r++)
	{
		struct lag_series *s = find_series(PQgetvalue(res, r, 0), 1);

		if (s == NULL)
			continue;
		s->t[s->next] = now;
		s->v[s->next] = strtoll(PQgetvalue(res, r, 1), NULL, 10);
		s->next = (s->next + 1) % N_SAMPLES;
		if (s->n < N_SAMPLES)
			s->n++;
	}
	PQclear(res);
}

/* The consumer's lag over the last hour: an inline SVG line. */
static void
lag_chart(struct strbuf *b, const char *name)
{
	struct lag_series *s = find_series(name, 0);
	time_t		now = time(NULL);
	long long	max = 1;
	long long	last = 0;
	int			shown = 0;

	strbuf_printf(b, "<svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">",
				  CHART_W, CHART_H, CHART_W, CHART_H);
	if (s != NULL)
	{
		for (int i = 0; i < s->n; i++)
			if (s->v[i] > max && now - s->t[i] <= 3600)
				max = s->v[i];
		strbuf_str(b, "<polyline points=\"");
		/* oldest first: the ring starts at next once full */
		for (int k = 0; k < s->n; k++)
		{
			int			i = (s->n < N_SAMPLES ? k : (s->next + k) % N_SAMPLES);
			double		x = CHART_W * (double) (3600 - (now - s->t[i])) / 3600.0;
			double		y = CHART_H - 2 - (CHART_H - 4) * (double) s->v[i] / (double) max;

			if (now - s->t[i] > 3600)
				continue;
			strbuf_printf(b, "%.1f,%.1f ", x, y);
			last = s->v[i];
			shown++;
		}
		strbuf_str(b, "\"/>");
	}
	strbuf_str(b, "<title>lag_events of ");
	html(b, name);
	strbuf_printf(b, " over the last hour: %d sample(s), at most %lld</title></svg>",
				  shown, max);
	strbuf_printf(b, "<figcaption data-samples=\"%d\" data-last=\"%lld\">%d sample(s), "
				  "max %lld</figcaption>", shown, last, shown, max);
}

static void
consumers_section(struct strbuf *b, struct db *db)
{
	PGresult   *res;
	int			n;

	strbuf_str(b, "<h2>Consumers</h2>\n");
	res = query(b, db, CONSUMERS_SQL, "eventstore.consumer_status cannot be read");
	if (res == NULL)
		return;
	n = PQntuples(res);
	strbuf_str(b, "<table id=\"consumers\">\n<tr>");
	for (size_t f = 0; f < sizeof(consumer_fields) / sizeof(consumer_fields[0]); f++)
	{
		strbuf_str(b, "<th>");
		html(b, consumer_fields[f]);
		strbuf_str(b, "</th>");
	}
	strbuf_str(b, "<th>lag over the last hour</th></tr>\n");
	for (int r = 0; r < n; r++)
	{
		strbuf_str(b, "<tr data-consumer=\"");
		html(b, PQgetvalue(res, r, 0));
		strbuf_str(b, "\">");
		for (int c = 0; c < PQnfields(res) && c < 8; c++)
			cell(b, consumer_fields[c], res, r, c, c >= 2 && c <= 5);
		strbuf_str(b, "<td data-field=\"lag_chart\"><figure>");
		lag_chart(b, PQgetvalue(res, r, 0));
		strbuf_str(b, "</figure></td></tr>\n");
	}
	strbuf_str(b, "</table>\n");
	if (n == 0)
		note(b, "no consumers", NULL);
	PQclear(res);
}

static void
dispatchers_section(struct strbuf *b, struct db *db)
{
	static const char *const fields[] = {
		"backend_type", "datname", "pid", "backend_start", "state", "wait_event"
	};
	PGresult   *res;

	strbuf_str(b, "<h2>Dispatcher workers</h2>\n");
	res = query(b, db, DISPATCHERS_SQL, "pg_stat_activity cannot be read");
	if (res == NULL)
		return;
	if (PQntuples(res) == 0)
		note(b, "no eventstore dispatcher or launcher runs (is eventstore in "
			 "shared_preload_libraries?)", NULL);
	else
	{
		strbuf_str(b, "<table id=\"dispatchers\">\n<tr>");
		for (int c = 0; c < 6; c++)
			strbuf_printf(b, "<th>%s</th>", fields[c]);
		strbuf_str(b, "</tr>\n");
		for (int r = 0; r < PQntuples(res); r++)
		{
			strbuf_str(b, "<tr data-pid=\"");
			html(b, PQgetvalue(res, r, 2));
			strbuf_str(b, "\">");
			for (int c = 0; c < 6; c++)
				cell(b, fields[c], res, r, c, c == 2);
			strbuf_str(b, "</tr>\n");
		}
		strbuf_str(b, "</table>\n");
	}
	PQclear(res);
}

static void
outboxes_section(struct strbuf *b, struct db *db, const struct config *config)
{
	strbuf_str(b, "<h2>Outboxes</h2>\n");
	if (config == NULL || config->n_outboxes == 0)
	{
		note(b, "no outboxes configured", NULL);
		return;
	}
	strbuf_str(b, "<table id=\"outboxes\">\n<tr><th>name</th><th>claim</th>"
			   "<th>backlog</th><th>oldest unsent (s)</th></tr>\n");
	for (size_t i = 0; i < config->n_outboxes; i++)
	{
		const struct outbox *o = &config->outboxes[i];
		struct strbuf why = {0};
		PGresult   *res = NULL;
		char	   *sql;

		strbuf_str(b, "<tr data-outbox=\"");
		html(b, o->name);
		strbuf_str(b, "\"><td data-field=\"name\">");
		html(b, o->name);
		strbuf_str(b, "</td><td data-field=\"claim\">");
		html(b, o->claim);
		strbuf_str(b, "</td>");
		if (o->backlog_query == NULL)
		{
			strbuf_str(b, "<td colspan=\"2\" class=\"note\">no backlog_query configured</td></tr>\n");
			continue;
		}
		sql = malloc(strlen(o->backlog_query) + 100);
		if (sql != NULL)
		{
			sprintf(sql, "SELECT q.backlog, q.oldest_seconds FROM (%s) AS q(backlog, "
					"oldest_seconds)", o->backlog_query);
			res = query(&why, db, sql, "backlog_query failed");
			free(sql);
		}
		if (res == NULL || PQntuples(res) != 1)
		{
			strbuf_str(b, "<td colspan=\"2\">");
			if (res != NULL)
				note(b, "backlog_query must return one row", NULL);
			else if (why.data != NULL)
				strbuf_str(b, why.data);
			strbuf_str(b, "</td></tr>\n");
		}
		else
		{
			cell(b, "backlog", res, 0, 0, 1);
			cell(b, "oldest_seconds", res, 0, 1, 1);
			strbuf_str(b, "</tr>\n");
		}
		PQclear(res);
		free(why.data);
	}
	strbuf_str(b, "</table>\n");
}

/* A JSON scalar as text: strings as they are, the rest as JSON. */
static void
json_scalar(struct strbuf *b, const json_t *v)
{
	char	   *text;

	if (json_is_string(v))
	{
		html(b, json_string_value(v));
		return;
	}
	text = json_dumps(v, JSON_ENCODE_ANY);
	if (text != NULL)
		html(b, text);
	free(text);
}

static void json_object_table(struct strbuf *b, json_t *obj, const char *path);

/* An array of objects as one table, its columns the keys met in order. */
static void
json_array_table(struct strbuf *b, json_t *array, const char *path)
{
	json_t	   *columns = json_array();
	size_t		i;
	size_t		c;
	json_t	   *row;
	json_t	   *col;

	if (columns == NULL)
		return;
	json_array_foreach(array, i, row)
	{
		const char *key;
		json_t	   *v;
		int			known;

		json_object_foreach(row, key, v)
		{
			known = 0;
			json_array_foreach(columns, c, col)
				known = known || strcmp(json_string_value(col), key) == 0;
			if (!known)
				json_array_append_new(columns, json_string(key));
		}
	}
	strbuf_str(b, "<table>\n<tr>");
	json_array_foreach(columns, c, col)
	{
		strbuf_str(b, "<th>");
		html(b, json_string_value(col));
		strbuf_str(b, "</th>");
	}
	strbuf_str(b, "</tr>\n");
	json_array_foreach(array, i, row)
	{
		strbuf_str(b, "<tr>");
		json_array_foreach(columns, c, col)
		{
			json_t	   *v = json_object_get(row, json_string_value(col));

			strbuf_str(b, "<td data-overview=\"");
			html(b, path);
			strbuf_printf(b, "[%zu].", i);
			html(b, json_string_value(col));
			strbuf_str(b, v == NULL || json_is_null(v) ? "\" data-null=\"1\">" : "\">");
			if (v != NULL && !json_is_null(v))
				json_scalar(b, v);
			strbuf_str(b, "</td>");
		}
		strbuf_str(b, "</tr>\n");
	}
	strbuf_str(b, "</table>\n");
	json_decref(columns);
}

static int
array_of_objects(json_t *v)
{
	size_t		i;
	json_t	   *e;

	if (!json_is_array(v) || json_array_size(v) == 0)
		return 0;
	json_array_foreach(v, i, e)
		if (!json_is_object(e))
		return 0;
	return 1;
}

/* An object as a key/value table; nested objects and arrays of objects as tables. */
static void
json_object_table(struct strbuf *b, json_t *obj, const char *path)
{
	const char *key;
	json_t	   *v;

	strbuf_str(b, "<table class=\"kv\">\n");
	json_object_foreach(obj, key, v)
	{
		struct strbuf sub = {0};

		strbuf_printf(&sub, "%s%s%s", path, path[0] != '\0' ? "." : "", key);
		strbuf_str(b, "<tr><th>");
		html(b, key);
		strbuf_str(b, "</th><td data-overview=\"");
		html(b, sub.data != NULL ? sub.data : "");
		strbuf_str(b, "\">");
		if (json_is_object(v))
			json_object_table(b, v, sub.data != NULL ? sub.data : "");
		else if (array_of_objects(v))
			json_array_table(b, v, sub.data != NULL ? sub.data : "");
		else if (!json_is_null(v))
			json_scalar(b, v);
		strbuf_str(b, "</td></tr>\n");
		free(sub.data);
	}
	strbuf_str(b, "</table>\n");
}

static void
birdwatch_section(struct strbuf *b, struct db *db)
{
	PGresult   *res;
	json_t	   *overview;
	json_error_t jerr;

	strbuf_str(b, "<h2>birdwatch</h2>\n");
	res = query(b, db, HAS_BIRDWATCH_SQL, "the extensions cannot be listed");
	if (res == NULL)
		return;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
	{
		note(b, "the birdwatch extension is not installed in this database", NULL);
		PQclear(res);
		return;
	}
	PQclear(res);
	res = query(b, db, OVERVIEW_SQL, "birdwatch.admin_overview() failed");
	if (res == NULL)
		return;
	overview = json_loads(PQgetvalue(res, 0, 0), 0, &jerr);
	PQclear(res);
	if (!json_is_object(overview))
		note(b, "birdwatch.admin_overview() did not return an object", NULL);
	else
	{
		strbuf_str(b, "<div id=\"birdwatch\">\n");
		json_object_table(b, overview, "");
		strbuf_str(b, "</div>\n");
	}
	json_decref(overview);
}

char *
status_render(struct db *db, const struct config *config, size_t *len)
{
	struct strbuf b = {0};
	char		now[40];
	time_t		t = time(NULL);
	struct tm	tm;
	int			connected = db != NULL && db->conn != NULL;

	gmtime_r(&t, &tm);
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
	strbuf_str(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
			   "<title>eventstore-worker status</title><style>");
	strbuf_str(&b, style);
	strbuf_str(&b, "</style></head>\n<body>\n<h1>eventstore-worker</h1>\n<p>");
	if (connected)
	{
		strbuf_str(&b, "Connected to database <b id=\"database\">");
		html(&b, PQdb(db->conn));
		strbuf_printf(&b, "</b> (backend pid %d)", PQbackendPID(db->conn));
	}
	else
		strbuf_str(&b, "<span id=\"database\" class=\"err\">not connected</span>");
	strbuf_printf(&b, "; rendered at <time id=\"rendered\">%s</time>. "
				  "Metrics: <a href=\"/metrics\">/metrics</a>.</p>\n", now);

	consumers_section(&b, db);
	dispatchers_section(&b, db);
	outboxes_section(&b, db, config);
	birdwatch_section(&b, db);
	strbuf_str(&b, "</body></html>\n");
	if (b.failed)
	{
		free(b.data);
		return NULL;
	}
	*len = b.len;
	return b.data;
}
