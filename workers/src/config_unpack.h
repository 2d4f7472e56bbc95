/*
 * config_unpack.h
 *		Reading one object of the configuration file with jansson's
 *		json_unpack_ex, every message naming the key at fault.
 */
#ifndef WORKER_CONFIG_UNPACK_H
#define WORKER_CONFIG_UNPACK_H

#include <stddef.h>

#include <jansson.h>

/*
 * json_unpack_ex(obj, &error, JSON_STRICT, fmt, ...) for a flat object
 * format, every key optional ("{s?s s?I s?o}": values s, s%, i, b, I, o, O,
 * no nesting).  Returns 0, or -1 with a message in err that starts with the
 * path of the key at fault: "where.key: expected integer, got string",
 * "where.key: unknown key (known: a, b)", or "where: expected object, got
 * array".  A key left out leaves its variable as it was: set the defaults
 * before.
 */
int			config_unpack(json_t *obj, const char *where, char *err, size_t errlen,
						  const char *fmt,...);

/*
 * Writes "where.key: message" into err ("key: message" when where is "",
 * "where: message" when key is NULL, the message alone when both are
 * missing) and returns -1.
 */
int			config_error(char *err, size_t errlen, const char *where, const char *key,
						 const char *fmt,...) __attribute__((format(printf, 5, 6)));

/* 0 when min <= value <= max; otherwise -1 with a message naming the key. */
int			config_range(json_int_t value, json_int_t min, json_int_t max,
						 const char *where, const char *key, char *err, size_t errlen);

/* Appends item to the ", "-separated list in list (len bytes), cut to fit. */
void		config_list_add(char *list, size_t len, const char *item);

#endif
