/*
 * log.c
 *		Log records on stderr, one per line, filtered by level, in the text,
 *		logfmt or JSON format.
 *
 * Every record is one line written with a single write(2), so that lines
 * from the daemon and from the commands it runs (which inherit stderr) do
 * not interleave within a line.
 *
 * text    "<UTC time with milliseconds> <level> <fields> <message>[: <error>]",
 *         the fields as "key=value " (all but member: the lines stay as
 *         they were before consumers had members), at most 4096 bytes.  A
 *         newline or other control character anywhere (an error text from
 *         the server, say) is written as a space, trailing blanks are
 *         dropped.
 * logfmt  "ts=<time> level=<level> msg=<message> <key>=<value> ... error=<error>":
 *         a value is written bare when it is not empty and has no byte below
 *         0x21, no '"', '=', '\' or DEL; otherwise it is quoted, with \" \\
 *         \n \r \t and \u00XX for the other control characters.
 * json    one object: {"ts":..., "level":..., "msg":..., "<key>":..., "error":...},
 *         made and escaped by jansson.
 * In logfmt and JSON, bytes that are not UTF-8 are each written as U+FFFD,
 * so that a record is always valid UTF-8 (and JSON), and each value is cut
 * to MAX_VALUE bytes.  The message itself is at most 4095 bytes in any
 * format.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "text.h"

#define MAX_VALUE 2048

static enum log_level min_level = LOG_LEVEL_INFO;
static enum log_format format = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"debug", "info", "warning", "error"};
static const char *const format_names[] = {"text", "logfmt", "json"};

/* the fields in their order (text: before the message; error last) */
#define N_FIELDS 8

struct field
{
	const char *key;
	const char *value;
};

void
log_set_level(enum log_level level)
{
	min_level = level;
}

void
log_set_format(enum log_format f)
{
	format = f;
}

static int
parse_name(const char *name, const char *const *names, size_t n, int *out)
{
	for (size_t i = 0; i < n; i++)
	{
		if (strcmp(name, names[i]) == 0)
		{
			*out = (int) i;
			return 0;
		}
	}
	return -1;
}

int
log_level_parse(const char *name, enum log_level *level)
{
	int			i;

	if (parse_name(name, level_names, 4, &i) < 0)
		return -1;
	*level = (enum log_level) i;
	return 0;
}

int
log_format_parse(const char *name, enum log_format *f)
{
	int			i;

	if (parse_name(name, format_names, 3, &i) < 0)
		return -1;
	*f = (enum log_format) i;
	return 0;
}

/* value, at most MAX_VALUE bytes of it, as UTF-8 (U+FFFD for each bad byte) */
static void
buf_utf8(struct strbuf *b, const char *value)
{
	const unsigned char *s = (const unsigned char *) value;
	size_t		n = strnlen(value, MAX_VALUE);

	for (size_t i = 0; i < n;)
	{
		size_t		len = utf8_sequence(s + i, n - i);

		if (len == 0)
		{
			strbuf_str(b, "\xef\xbf\xbd");
			i++;
			continue;
		}
		strbuf_add(b, (const char *) s + i, len);
		i += len;
	}
}

/* "<time> <level> <fields> <message>[: <error>]\n" in line; its length */
static size_t
format_text(char line[4096], const char *ts, enum log_level level,
			const struct field *fields, size_t n, const char *msg)
{
	size_t		len;
	size_t		start;
	const char *error = NULL;
	int			w;

	w = snprintf(line, 4096, "%s %s ", ts, level_names[level]);
	len = start = (size_t) w;
	for (size_t i = 0; i < n; i++)
	{
		if (strcmp(fields[i].key, "error") == 0)
		{
			error = fields[i].value;
			continue;
		}
		if (strcmp(fields[i].key, "member") == 0)
			continue;
		w = snprintf(line + len, 4096 - len, "%s=%s ", fields[i].key, fields[i].value);
		len += (size_t) w;
		if (len >= 4096)
			len = 4095;
	}
	w = snprintf(line + len, 4096 - len, "%s%s%s", msg,
				 error != NULL ? ": " : "", error != NULL ? error : "");
	len += (size_t) w;
	if (len > 4094)
		len = 4094;				/* truncated: keep room for the newline */
	for (size_t i = start; i < len; i++)
		if ((unsigned char) line[i] < 0x20 || line[i] == 0x7f)
			line[i] = ' ';
	/* messages from libpq end in a newline: drop the trailing blanks */
	while (len > start && line[len - 1] == ' ')
		len--;
	line[len++] = '\n';
	return len;
}

static int
logfmt_bare(const char *value)
{
	if (value[0] == '\0')
		return 0;
	for (const unsigned char *p = (const unsigned char *) value; *p != '\0'; p++)
		if (*p <= 0x20 || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
			return 0;
	return 1;
}

static void
logfmt_pair(struct strbuf *b, const char *key, const char *value)
{
	struct strbuf clean = {0};
	const char *v;

	buf_utf8(&clean, value);
	if (clean.failed)
	{
		b->failed = 1;
		return;
	}
	v = clean.data != NULL ? clean.data : "";
	if (b->len > 0)
		strbuf_str(b, " ");
	strbuf_str(b, key);
	strbuf_str(b, "=");
	if (logfmt_bare(v))
		strbuf_str(b, v);
	else
	{
		strbuf_str(b, "\"");
		for (const unsigned char *p = (const unsigned char *) v; *p != '\0'; p++)
		{
			char		esc[8];

			switch (*p)
			{
				case '"':
					strbuf_str(b, "\\\"");
					break;
				case '\\':
					strbuf_str(b, "\\\\");
					break;
				case '\n':
					strbuf_str(b, "\\n");
					break;
				case '\r':
					strbuf_str(b, "\\r");
					break;
				case '\t':
					strbuf_str(b, "\\t");
					break;
				default:
					if (*p < 0x20 || *p == 0x7f)
					{
						snprintf(esc, sizeof(esc), "\\u%04x", *p);
						strbuf_str(b, esc);
					}
					else
						strbuf_add(b, (const char *) p, 1);
			}
		}
		strbuf_str(b, "\"");
	}
	free(clean.data);
}

static void
format_logfmt(struct strbuf *b, const char *ts, enum log_level level,
			  const struct field *fields, size_t n, const char *msg)
{
	logfmt_pair(b, "ts", ts);
	logfmt_pair(b, "level", level_names[level]);
	logfmt_pair(b, "msg", msg);
	for (size_t i = 0; i < n; i++)
		logfmt_pair(b, fields[i].key, fields[i].value);
	strbuf_str(b, "\n");
}

/* key: value as a JSON string, the value made UTF-8 first */
static int
json_set(json_t *obj, const char *key, const char *value)
{
	struct strbuf clean = {0};
	int			rc;

	buf_utf8(&clean, value);
	if (clean.failed)
		return -1;
	rc = json_object_set_new(obj, key, json_stringn(clean.data != NULL ? clean.data : "",
													clean.len));
	free(clean.data);
	return rc;
}

static void
format_json(struct strbuf *b, const char *ts, enum log_level level,
			const struct field *fields, size_t n, const char *msg)
{
	json_t	   *obj = json_object();
	char	   *text = NULL;
	int			bad = obj == NULL;

	bad = bad || json_set(obj, "ts", ts) < 0 ||
		json_set(obj, "level", level_names[level]) < 0 ||
		json_set(obj, "msg", msg) < 0;
	for (size_t i = 0; !bad && i < n; i++)
		bad = json_set(obj, fields[i].key, fields[i].value) < 0;
	if (!bad)
		text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (text == NULL)
		b->failed = 1;
	else
	{
		strbuf_str(b, text);
		strbuf_str(b, "\n");
	}
	free(text);
	json_decref(obj);
}

/* The fields that are set, in their order. */
static size_t
collect_fields(const struct log_fields *f, struct field *out)
{
	const struct field all[N_FIELDS] = {
		{"consumer", f->consumer},
		{"outbox", f->outbox},
		{"batch", f->batch},
		{"member", f->member},
		{"position", f->position},
		{"id", f->id},
		{"attempt", f->attempt},
		{"error", f->error},
	};
	size_t		n = 0;

	for (size_t i = 0; i < N_FIELDS; i++)
		if (all[i].value != NULL)
			out[n++] = all[i];
	return n;
}

static void
write_all(const char *data, size_t len)
{
	for (size_t off = 0; off < len;)
	{
		ssize_t		w = write(STDERR_FILENO, data + off, len - off);

		if (w < 0)
		{
			if (errno == EINTR)
				continue;
			break;
		}
		off += (size_t) w;
	}
}

void
log_record(enum log_level level, const struct log_fields *fields, const char *fmt,...)
{
	char		msg[4096];
	char		ts[40];
	struct field list[N_FIELDS];
	size_t		n = 0;
	struct timespec now;
	struct tm	tm;
	struct strbuf b = {0};
	size_t		len;
	int			saved_errno = errno;
	va_list		ap;

	if (level < min_level)
		return;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	len = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + len, sizeof(ts) - len, ".%03ldZ", now.tv_nsec / 1000000L);

	va_start(ap, fmt);
	if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
		msg[0] = '\0';
	va_end(ap);
	if (fields != NULL)
		n = collect_fields(fields, list);

	if (format == LOG_FORMAT_LOGFMT)
		format_logfmt(&b, ts, level, list, n, msg);
	else if (format == LOG_FORMAT_JSON)
		format_json(&b, ts, level, list, n, msg);
	if (format == LOG_FORMAT_TEXT || b.failed)
	{
		/* the text format needs no memory: the fallback when none was left */
		char		line[4096];

		write_all(line, format_text(line, ts, level, list, n, msg));
	}
	else
		write_all(b.data, b.len);
	free(b.data);
	errno = saved_errno;
}
