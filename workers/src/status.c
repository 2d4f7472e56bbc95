/*
 * status.c
 *		The status page at /.
 */
#include <stdlib.h>
#include <string.h>

#include "status.h"

char *
status_render(struct db *db, const struct config *config, size_t *len)
{
	char	   *page = strdup("<!DOCTYPE html>\n<title>eventstore-worker</title>\n");

	(void) db;
	(void) config;
	if (page != NULL)
		*len = strlen(page);
	return page;
}
