/*
 * type_table.c
 *		Choosing a handler type by the "type" key of a config object.
 */
#include <stdio.h>
#include <string.h>

#include "type_table.h"

/* "a, b, c": the known type names, for messages. */
static void
known_names(const char *const *names, size_t n, char *buf, size_t len)
{
	size_t		used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && used < len; i++)
	{
		int			w = snprintf(buf + used, len - used, "%s%s", i > 0 ? ", " : "", names[i]);

		if (w < 0)
			break;
		used += (size_t) w;
	}
}

int
type_table_find(json_t *spec, const char *where, const char *kind,
				const char *const *names, size_t n, char *err, size_t errlen)
{
	json_t	   *type = json_object_get(spec, "type");
	const char *name;
	char		known[256];

	known_names(names, n, known, sizeof(known));
	if (type == NULL)
	{
		snprintf(err, errlen, "%s.type: missing (one of: %s)", where, known);
		return -1;
	}
	if (!json_is_string(type))
	{
		snprintf(err, errlen, "%s.type: must be a string", where);
		return -1;
	}
	name = json_string_value(type);
	for (size_t i = 0; i < n; i++)
		if (strcmp(name, names[i]) == 0)
			return (int) i;
	snprintf(err, errlen, "%s.type: unknown %s type \"%s\" (known: %s)", where, kind, name, known);
	return -1;
}
