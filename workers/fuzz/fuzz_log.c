/*
 * fuzz_log.c
 *		libFuzzer target: log records made of text from outside, in each
 *		log format.
 *
 * The daemon logs what it does not control: the server's error and notice
 * texts (db.c's notice_receiver, failed statements), the ids and columns of
 * outbox rows, a handler's reason, curl's error buffer.  log_record()
 * (src/log.c) promises that whatever the message and the fields, a record
 * is one line:
 *   text    "<time> <level> <fields> <message>[: <error>]\n", control
 *           characters written as spaces, trailing blanks dropped, at most
 *           4096 bytes;
 *   logfmt  key=value pairs, values bare or quoted with escapes, valid UTF-8;
 *   json    one JSON object (jansson must load it back), valid UTF-8;
 * and that in logfmt and JSON each field comes back as given when it was
 * UTF-8 and short enough.  The member is a field of logfmt and JSON only:
 * a text record has no "member=" that the message or the other fields do
 * not bring.
 *
 * Input: the first byte picks the level (bits 0-1) and the format (bits
 * 2-3: 0 text, 1 logfmt, 2 json, 3 text); the rest, split at NUL bytes, is
 * the message, then the fields in order (consumer, outbox, batch, position,
 * id, attempt, error, member: the last added last, so that older seeds
 * keep their meaning).  The record is caught on a pipe in place of stderr
 * and checked.  log_level_parse() and log_format_parse() get the message
 * too: they may accept only their names.
 */
#include <ctype.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sanitizer/common_interface_defs.h>

#include "log.h"

#define N_FIELDS 8
#define MAX_INPUT 8192			/* escaped six-fold at most: fits the pipe */

static const char *const field_keys[N_FIELDS] = {
	"consumer", "outbox", "batch", "position", "id", "attempt", "error", "member"
};
static const char *const level_names[] = {"debug", "info", "warning", "error"};

static int	real_stderr = -1;
static int	pipe_fds[2];

static void
fail(const char *what)
{
	dprintf(real_stderr >= 0 ? real_stderr : 2, "fuzz_log: %s\n", what);
	abort();
}

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	/* sanitizer reports keep going to the real stderr while fd 2 is the pipe */
	real_stderr = dup(STDERR_FILENO);
	if (real_stderr < 0 || pipe(pipe_fds) < 0 ||
		fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK) < 0)
	{
		perror("fuzz_log: setup");
		abort();
	}
	__sanitizer_set_report_fd((void *) (intptr_t) real_stderr);
	log_set_level(LOG_LEVEL_DEBUG);
	return 0;
}

/* s is short enough and valid UTF-8: a machine format gives it back as is */
static int
kept_as_is(const char *s, size_t max)
{
	json_t	   *j;

	if (strlen(s) > max)
		return 0;
	j = json_string(s);			/* NULL when not UTF-8 */
	json_decref(j);
	return j != NULL;
}

static void
check_text(const char *record, size_t n, enum log_level level)
{
	const char *rest;

	if (n > 4096)
		fail("text: a record of more than 4096 bytes");
	for (size_t i = 0; i < n - 1; i++)
		if ((unsigned char) record[i] < 0x20 || record[i] == 0x7f)
			fail("text: a control character inside a record");
	/* "YYYY-MM-DDTHH:MM:SS.mmmZ level message" */
	if (n < 25 || record[4] != '-' || record[10] != 'T' || record[23] != 'Z' ||
		record[24] != ' ')
		fail("text: a record without its time stamp");
	rest = record + 25;
	if (strncmp(rest, level_names[level], strlen(level_names[level])) != 0 ||
		rest[strlen(level_names[level])] != ' ')
		fail("text: a record without its level");
	/* the message's trailing blanks are dropped (an empty one leaves "level ") */
	if (record + n - 1 > rest + strlen(level_names[level]) + 1 && record[n - 2] == ' ')
		fail("text: a record ending in a blank");
}

/*
 * A strict logfmt reader: key=value pairs separated by one space, a value
 * bare (bytes above 0x20 but '"', '=', '\', DEL) or quoted (\" \\ \n \r \t
 * \u00XX escapes only).  Returns a JSON object of the pairs (a key twice
 * fails), for the same checks as the JSON format.
 */
static json_t *
parse_logfmt(const char *p, const char *end)
{
	json_t	   *obj = json_object();
	char	   *value = malloc((size_t) (end - p) + 1);

	if (obj == NULL || value == NULL)
		fail("out of memory");
	while (p < end)
	{
		const char *key = p;
		size_t		keylen;
		size_t		len = 0;
		char		keybuf[32];

		while (p < end && *p >= 'a' && *p <= 'z')
			p++;
		keylen = (size_t) (p - key);
		if (keylen == 0 || keylen >= sizeof(keybuf) || p >= end || *p != '=')
			fail("logfmt: a key that is not [a-z]+ followed by '='");
		snprintf(keybuf, sizeof(keybuf), "%.*s", (int) keylen, key);
		p++;
		if (p < end && *p == '"')
		{
			for (p++;; p++)
			{
				if (p >= end)
					fail("logfmt: an unterminated quoted value");
				if (*p == '"')
					break;
				if ((unsigned char) *p < 0x20 || *p == 0x7f)
					fail("logfmt: a raw control character in a quoted value");
				if (*p != '\\')
				{
					value[len++] = *p;
					continue;
				}
				p++;
				if (p >= end)
					fail("logfmt: a backslash at the end");
				if (*p == '"' || *p == '\\')
					value[len++] = *p;
				else if (*p == 'n')
					value[len++] = '\n';
				else if (*p == 'r')
					value[len++] = '\r';
				else if (*p == 't')
					value[len++] = '\t';
				else if (*p == 'u' && end - p >= 5 && strncmp(p + 1, "00", 2) == 0)
				{
					unsigned int c = 0;

					if (!isxdigit((unsigned char) p[3]) || !isxdigit((unsigned char) p[4]) ||
						sscanf(p + 3, "%2x", &c) != 1 || (c >= 0x20 && c != 0x7f))
						fail("logfmt: a \\u escape of a character that needs none");
					value[len++] = (char) c;
					p += 4;
				}
				else
					fail("logfmt: an unknown escape");
			}
			p++;
		}
		else
		{
			while (p < end && *p != ' ')
			{
				if ((unsigned char) *p < 0x21 || *p == '"' || *p == '=' || *p == '\\' ||
					*p == 0x7f)
					fail("logfmt: a bare value with a byte that needs quoting");
				value[len++] = *p++;
			}
			if (len == 0)
				fail("logfmt: an empty bare value");
		}
		if (json_object_get(obj, keybuf) != NULL)
			fail("logfmt: a key twice");
		if (json_object_set_new(obj, keybuf, json_stringn(value, len)) < 0)
			fail("logfmt: a value that is not UTF-8");
		if (p < end)
		{
			if (*p != ' ' || p + 1 >= end)
				fail("logfmt: pairs not separated by one space");
			p++;
		}
	}
	free(value);
	return obj;
}

static void
check_fields(json_t *obj, enum log_level level, const char *msg,
			 const char *const *fields)
{
	const char *v;

	if (!json_is_object(obj))
		fail("not an object");
	v = json_string_value(json_object_get(obj, "ts"));
	if (v == NULL || strlen(v) != 24 || v[10] != 'T' || v[23] != 'Z')
		fail("no ts");
	v = json_string_value(json_object_get(obj, "level"));
	if (v == NULL || strcmp(v, level_names[level]) != 0)
		fail("no level, or the wrong one");
	v = json_string_value(json_object_get(obj, "msg"));
	if (v == NULL || (kept_as_is(msg, 2048) && strcmp(v, msg) != 0))
		fail("no msg, or not the message given");
	for (int i = 0; i < N_FIELDS; i++)
	{
		json_t	   *f = json_object_get(obj, field_keys[i]);

		if ((f != NULL) != (fields[i] != NULL))
			fail("a field missing, or one that was not given");
		if (f != NULL && kept_as_is(fields[i], 2048) &&
			strcmp(json_string_value(f), fields[i]) != 0)
			fail("a field that does not come back as given");
	}
	if (json_object_size(obj) != 3 + (size_t) (fields[0] != NULL) + (fields[1] != NULL) +
		(fields[2] != NULL) + (fields[3] != NULL) + (fields[4] != NULL) +
		(fields[5] != NULL) + (fields[6] != NULL) + (fields[7] != NULL))
		fail("keys other than ts, level, msg and the fields");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char record[65536];
	static const char *const names[] = {"debug", "info", "warning", "error"};
	static const char *const formats[] = {"text", "logfmt", "json"};
	enum log_level level;
	enum log_level parsed;
	enum log_format format;
	enum log_format parsed_format;
	const char *fields[N_FIELDS] = {0};
	struct log_fields lf;
	char	   *text;
	char	   *p;
	char	   *end;
	ssize_t		n;

	if (size < 1 || size > MAX_INPUT)
		return 0;
	level = (enum log_level) (data[0] & 3);
	format = (data[0] >> 2 & 3) == 3 ? LOG_FORMAT_TEXT : (enum log_format) (data[0] >> 2 & 3);
	text = malloc(size);
	if (text == NULL)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	/* the message, then each field up to the next NUL */
	end = text + size - 1;
	p = text + strlen(text);
	for (int i = 0; i < N_FIELDS && p < end; i++)
	{
		fields[i] = p + 1;
		p += 1 + strlen(p + 1);
	}

	if (log_level_parse(text, &parsed) == 0 && strcmp(text, names[parsed]) != 0)
		fail("log_level_parse accepts a name that is not a level");
	if (log_format_parse(text, &parsed_format) == 0 &&
		strcmp(text, formats[parsed_format]) != 0)
		fail("log_format_parse accepts a name that is not a format");

	lf = (struct log_fields) {
		.consumer = fields[0], .outbox = fields[1], .batch = fields[2],
		.position = fields[3], .id = fields[4], .attempt = fields[5], .error = fields[6],
		.member = fields[7],
	};
	/* the record, through the pipe (64 KiB of buffer: never blocks) */
	fflush(stderr);
	if (dup2(pipe_fds[1], STDERR_FILENO) < 0)
		fail("dup2");
	log_set_format(format);
	log_record(level, &lf, "%s", text);
	dup2(real_stderr, STDERR_FILENO);
	n = read(pipe_fds[0], record, sizeof(record) - 1);
	if (n <= 0)
		fail("no record written");
	if (read(pipe_fds[0], record, 1) > 0)
		fail("a record of more than 64 KiB");
	record[n] = '\0';
	if (record[n - 1] != '\n' || memchr(record, '\n', (size_t) n - 1) != NULL)
		fail("a record that is not one line");
	if (format == LOG_FORMAT_TEXT)
	{
		int			brought = strstr(text, "member=") != NULL;

		check_text(record, (size_t) n, level);
		for (int i = 0; i < N_FIELDS - 1; i++)
			brought |= fields[i] != NULL && strstr(fields[i], "member=") != NULL;
		if (!brought && strstr(record, "member=") != NULL)
			fail("text: a record with the member");
	}
	else
	{
		json_error_t jerr;
		json_t	   *obj;

		if (format == LOG_FORMAT_JSON)
		{
			obj = json_loadb(record, (size_t) n - 1, JSON_REJECT_DUPLICATES, &jerr);
			if (obj == NULL)
				fail("json: a record that is not JSON");
		}
		else
			obj = parse_logfmt(record, record + n - 1);
		check_fields(obj, level, text, fields);
		json_decref(obj);
	}
	free(text);
	return 0;
}
