/*
 * config_unpack.c
 *		Reading one object of the configuration file with jansson's
 *		json_unpack_ex, every message naming the key at fault.
 *
 * jansson checks the shape of the object: that it is one, the type of each
 * value, and (JSON_STRICT) that it holds no key the format does not list.
 * Its messages say what is wrong, not always where: an unknown key is named
 * in the text ("1 object item(s) left unpacked: hots"), a value of the
 * wrong type only by the position of its token in the format.  The keys
 * are the format's arguments, so config_unpack reads them back from a copy
 * of its va_list, walking the format as jansson does, and writes the
 * message as every other one of the configuration: the path to the key
 * first ("outboxes[0].sender.port: expected integer, got string"), so that a
 * reload refused on SIGHUP can be fixed from the log line alone.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config_unpack.h"

#define LEFT_UNPACKED "left unpacked: "

/*
 * Reads the keys of a flat object format from ap alongside fmt, up to the
 * token at column stop (jansson's 1-based position; 0: to the end).
 * Returns the last key read; known, when not NULL, gets every key read,
 * separated by ", ".
 */
static const char *
format_keys(const char *fmt, int stop, va_list ap, char *known, size_t knownlen)
{
	const char *key = NULL;
	int			want_key = 0;

	for (int i = 0; fmt[i] != '\0' && (stop <= 0 || i < stop - 1); i++)
	{
		switch (fmt[i])
		{
			case '{':
				want_key = 1;
				continue;
			case 's':
				if (want_key)
				{
					key = va_arg(ap, const char *);
					if (known != NULL)
						config_list_add(known, knownlen, key);
					want_key = 0;
					continue;
				}
				(void) va_arg(ap, const char **);
				if (fmt[i + 1] == '%')
					(void) va_arg(ap, size_t *);
				break;
			case 'i':
			case 'b':
				(void) va_arg(ap, int *);
				break;
			case 'I':
				(void) va_arg(ap, json_int_t *);
				break;
			case 'o':
			case 'O':
				(void) va_arg(ap, json_t **);
				break;
			default:			/* '?', '%', ':', ' ', '}' */
				continue;
		}
		want_key = 1;			/* a value was read: a key comes next */
	}
	return key;
}

int
config_unpack(json_t *obj, const char *where, char *err, size_t errlen, const char *fmt,...)
{
	json_error_t jerr;
	va_list		ap;
	va_list		keys;
	const char *unknown;
	int			rc;

	va_start(ap, fmt);
	va_copy(keys, ap);
	rc = json_vunpack_ex(obj, &jerr, JSON_STRICT, fmt, ap);
	va_end(ap);
	if (rc < 0)
	{
		jerr.text[0] = (char) tolower((unsigned char) jerr.text[0]);
		unknown = strstr(jerr.text, LEFT_UNPACKED);
		if (json_error_code(&jerr) == json_error_wrong_type)
			config_error(err, errlen, where, format_keys(fmt, jerr.position, keys, NULL, 0),
						 "%s", jerr.text);
		else if (json_error_code(&jerr) == json_error_end_of_input_expected && unknown != NULL)
		{
			char		known[256] = "";
			char		key[JSON_ERROR_TEXT_LENGTH];

			/* the first of the keys jansson lists, "a, b" */
			unknown += strlen(LEFT_UNPACKED);
			snprintf(key, sizeof(key), "%.*s", (int) strcspn(unknown, ","), unknown);
			format_keys(fmt, 0, keys, known, sizeof(known));
			config_error(err, errlen, where, key, "unknown key (known: %s)", known);
		}
		else
			config_error(err, errlen, where, NULL, "%s", jerr.text);
	}
	va_end(keys);
	return rc;
}

int
config_error(char *err, size_t errlen, const char *where, const char *key, const char *fmt,...)
{
	va_list		ap;
	int			n;

	n = snprintf(err, errlen, "%s%s%s%s", where, where[0] != '\0' && key != NULL ? "." : "",
				 key != NULL ? key : "", where[0] != '\0' || key != NULL ? ": " : "");
	if (n >= 0 && (size_t) n < errlen)
	{
		va_start(ap, fmt);
		vsnprintf(err + n, errlen - (size_t) n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

void
config_list_add(char *list, size_t len, const char *item)
{
	size_t		used = strlen(list);

	if (used + 1 < len)
		snprintf(list + used, len - used, "%s%s", used > 0 ? ", " : "", item);
}

int
config_range(json_int_t value, json_int_t min, json_int_t max, const char *where,
			 const char *key, char *err, size_t errlen)
{
	if (value >= min && value <= max)
		return 0;
	return config_error(err, errlen, where, key, "must be an integer from %"
						JSON_INTEGER_FORMAT " to %" JSON_INTEGER_FORMAT, min, max);
}
