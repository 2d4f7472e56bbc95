/*
 * type_table.h
 *		Choosing a handler type by the "type" key of a config object.
 *
 * Both kinds of handler (handler.h for consumers, message.h for outboxes)
 * keep a table of types, each named by its first member; a config object
 * names one of them with "type".
 */
#ifndef WORKER_TYPE_TABLE_H
#define WORKER_TYPE_TABLE_H

#include <stddef.h>

#include <jansson.h>

/*
 * The index in names[0..n) of the string spec's "type" names, or -1 with a
 * message in err (missing, not a string, unknown: the known names listed).
 * where is spec's key path; kind names the table in messages ("handler").
 */
int			type_table_find(json_t *spec, const char *where, const char *kind,
							const char *const *names, size_t n,
							char *err, size_t errlen);

#endif
