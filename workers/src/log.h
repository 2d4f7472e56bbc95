/*
 * log.h
 *		Log records on stderr, one per line, filtered by level, in one of
 *		three formats: text (for people), logfmt or JSON (for machines).
 *
 * A record is a level, a message and a few optional fields (the consumer,
 * the outbox, the batch id, the event's position and id, the attempt, the
 * error text).  Call sites pass the fields apart from the message, never
 * formatted into it, so that the logfmt and JSON formats carry each as its
 * own key:
 *
 *     log_error_f(LOG_FIELDS(.consumer = c->name, .batch = id, .error = why),
 *                 "failed");
 *
 * The text format writes them as it always has: "consumer=c batch=7 failed: why"
 * (the member of a batch is not among them: logfmt and JSON only).
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

enum log_format
{
	LOG_FORMAT_TEXT,			/* "<ts> <level> [k=v ...] message[: error]" */
	LOG_FORMAT_LOGFMT,			/* ts=... level=... msg="..." k=v ... error="..." */
	LOG_FORMAT_JSON				/* {"ts":..., "level":..., "msg":..., ...} */
};

/*
 * The fields a record may carry; NULL members are left out.  In the text
 * format they come before the message, in this order, and the error after
 * it, following ": ".
 */
struct log_fields
{
	const char *consumer;
	const char *outbox;
	const char *batch;			/* a consumer's batch id */
	const char *member;			/* the member the batch is of (not in text) */
	const char *position;		/* an event's position */
	const char *id;				/* an event's or an outbox row's id */
	const char *attempt;
	const char *error;			/* why something failed */
};

/* A pointer to a struct log_fields made on the spot, for log_*_f. */
#define LOG_FIELDS(...) (&(const struct log_fields) {__VA_ARGS__})

/* The lowest level written; records below it are dropped. */
void		log_set_level(enum log_level level);

/* Parses "debug", "info", "warning" or "error"; returns 0 on success. */
int			log_level_parse(const char *name, enum log_level *level);

void		log_set_format(enum log_format format);

/* Parses "text", "logfmt" or "json"; returns 0 on success. */
int			log_format_parse(const char *name, enum log_format *format);

/* A record with fields (NULL: none). */
void		log_record(enum log_level level, const struct log_fields *fields,
					   const char *fmt,...) __attribute__((format(printf, 3, 4)));

#define log_write(level, ...)	log_record((level), NULL, __VA_ARGS__)

#define log_debug(...)		log_record(LOG_LEVEL_DEBUG, NULL, __VA_ARGS__)
#define log_info(...)		log_record(LOG_LEVEL_INFO, NULL, __VA_ARGS__)
#define log_warning(...)	log_record(LOG_LEVEL_WARNING, NULL, __VA_ARGS__)
#define log_error(...)		log_record(LOG_LEVEL_ERROR, NULL, __VA_ARGS__)

#define log_debug_f(f, ...)		log_record(LOG_LEVEL_DEBUG, (f), __VA_ARGS__)
#define log_info_f(f, ...)		log_record(LOG_LEVEL_INFO, (f), __VA_ARGS__)
#define log_warning_f(f, ...)	log_record(LOG_LEVEL_WARNING, (f), __VA_ARGS__)
#define log_error_f(f, ...)		log_record(LOG_LEVEL_ERROR, (f), __VA_ARGS__)

#endif
