/*
 * mail_format.h
 *		Building an RFC 5322 text message and checking the addresses and
 *		names that go into it.
 */
#ifndef WORKER_MAIL_FORMAT_H
#define WORKER_MAIL_FORMAT_H

#include <stddef.h>
#include <time.h>

struct mail_fields
{
	const char *from;			/* a bare address, checked by the caller */
	const char *to;				/* a bare address, checked here */
	const char *subject;		/* UTF-8, one line */
	const char *body;			/* UTF-8, any line endings */
	const char *id;				/* Message-ID's left part: [0-9A-Za-z-]+ */
	const char *id_domain;		/* Message-ID's right part, a domain name */
	time_t		date;
};

enum mail_status
{
	MAIL_OK,
	MAIL_INVALID,				/* the fields cannot make a message: permanent */
	MAIL_NOMEM
};

/*
 * Builds the message (headers, a blank line, the body) with CRLF line
 * endings, 7-bit clean and with no line longer than 998 characters or
 * starting with a dot, so that it can go to any SMTP server as is.  On
 * MAIL_OK *out is a malloc'd buffer of *len bytes (also NUL-terminated);
 * otherwise err holds the reason.
 */
enum mail_status mail_build(const struct mail_fields *f, char **out, size_t *len,
							char *err, size_t errlen);

/*
 * NULL when addr is a bare address the daemon accepts (local@domain,
 * ASCII, dot-atom local part, host name domain); otherwise the reason.
 */
const char *mail_address_problem(const char *addr);

/* 1 when name is a host name: dot-separated labels of letters, digits, '-'. */
int			mail_domain_valid(const char *name);

#endif
