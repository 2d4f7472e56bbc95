/*
 * log.h
 *		One-line log records on stderr, filtered by level.
 */
#ifndef WORKER_LOG_H
#define WORKER_LOG_H

enum log_level
{
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARNING,
	LOG_LEVEL_ERROR
};

/* The lowest level written; records below it are dropped. */
void		log_set_level(enum log_level level);

/* Parses "debug", "info", "warning" or "error"; returns 0 on success. */
int			log_level_parse(const char *name, enum log_level *level);

void		log_write(enum log_level level, const char *fmt, ...)
			__attribute__((format(printf, 2, 3)));

#define log_debug(...)		log_write(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...)		log_write(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warning(...)	log_write(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_error(...)		log_write(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
