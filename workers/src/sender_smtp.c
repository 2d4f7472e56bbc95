/*
 * sender_smtp.c
 *		The "smtp" sender: each outbox message as an email, sent with
 *		libcurl.
 *
 *   "sender": {"type": "smtp", "host": "mail.example.org", "port": 587,
 *              "from": "noreply@example.org", "tls": "starttls",
 *              "username": "...", "password": "...",
 *              "timeout_ms": 10000, "message_id_domain": "example.org"}
 *
 * open checks the settings and makes the curl handle (no network I/O).
 * send builds the message (mail_format.c: Message-ID <id@domain> from the
 * row id, so that receivers can drop a repeat) and hands it to libcurl:
 * MAIL FROM the configured address, RCPT TO the recipient, DATA the message
 * through a read callback.  The handle is kept between messages, so one SMTP
 * connection serves many of them (libcurl drops it when it has gone stale).
 *
 *   tls "off"       smtp://host:port, no TLS (credentials then travel in clear)
 *   tls "starttls"  smtp://host:port, STARTTLS required (CURLUSESSL_ALL)
 *   tls "implicit"  smtps://host:port, TLS from the first byte
 * Certificates are verified against the system's store.
 *
 * Every transfer is bounded by timeout_ms (CURLOPT_TIMEOUT_MS: connecting,
 * TLS, the whole dialogue); CURLOPT_NOSIGNAL keeps libcurl away from
 * SIGALRM.  libcurl's wait is not interrupted by the daemon's signals: a
 * stop request waits for the message in hand, at most timeout_ms.
 *
 * A refused message (SEND_REFUSED) is one that cannot be made (mail_build:
 * header injection, an address that is not bare, text that is not UTF-8).
 * Anything that fails on the way (connection, timeout, TLS, any reply of
 * the server) is SEND_FAILED, with the server's last reply code in the
 * reason: even a 5xx is not called permanent, because it may be the
 * server's verdict on the sender or the credentials (every message would
 * then be given up) as well as on this message; the database can read the
 * code ("(server replied 550)") if it wants to give up sooner.  A reply
 * from 550 to 554 (mailbox unavailable, user not local, storage exceeded,
 * mailbox name not allowed, transaction failed: the verdict on this
 * recipient or message) returns SEND_REJECTED, failed all the same but
 * counted as refused in the metrics; 530 to 535 (authentication, TLS
 * required) stay SEND_FAILED.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "config_unpack.h"
#include "mail_format.h"
#include "plugin.h"

#define DEFAULT_TIMEOUT_MS 10000

enum smtp_tls
{
	TLS_OFF,
	TLS_STARTTLS,
	TLS_IMPLICIT
};

struct smtp
{
	CURL	   *curl;
	char	   *url;			/* smtp[s]://host:port, for messages too */
	const char *from;			/* this and id_domain: the document's strings */
	char	   *envelope_from;	/* "<from>" */
	const char *id_domain;
	char		curl_error[CURL_ERROR_SIZE];
};

/* The message being uploaded by the read callback. */
struct upload
{
	const char *data;
	size_t		len;
	size_t		sent;
};

static int
smtp_init(char *err, size_t errlen)
{
	CURLcode	rc = curl_global_init(CURL_GLOBAL_DEFAULT);

	if (rc != CURLE_OK)
	{
		snprintf(err, errlen, "cannot initialize libcurl: %s", curl_easy_strerror(rc));
		return -1;
	}
	return 0;
}

static void
smtp_cleanup(void)
{
	curl_global_cleanup();
}

static void
smtp_close(void *state)
{
	struct smtp *s = state;

	if (s == NULL)
		return;
	if (s->curl != NULL)
		curl_easy_cleanup(s->curl);
	free(s->url);
	free(s->envelope_from);
	free(s);
}

/* "host" may be a name, an IPv4 address or an IPv6 address (bracketed in URLs). */
static int
host_valid(const char *host, int *ipv6)
{
	*ipv6 = strchr(host, ':') != NULL;
	if (*ipv6)
		return strspn(host, "0123456789abcdefABCDEF:.") == strlen(host) &&
			strlen(host) <= 45;
	return mail_domain_valid(host);
}

/* Everything that does not change between messages. */
static int
set_fixed_options(struct smtp *s, enum smtp_tls tls, const char *username,
				  const char *password, long timeout_ms)
{
	CURL	   *c = s->curl;

	return curl_easy_setopt(c, CURLOPT_URL, s->url) != CURLE_OK ||
#if LIBCURL_VERSION_NUM >= 0x075500	/* 7.85.0 */
		curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps") != CURLE_OK ||
#else
		curl_easy_setopt(c, CURLOPT_PROTOCOLS,
						 (long) (CURLPROTO_SMTP | CURLPROTO_SMTPS)) != CURLE_OK ||
#endif
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms) != CURLE_OK ||
		curl_easy_setopt(c, CURLOPT_ERRORBUFFER, s->curl_error) != CURLE_OK ||
		curl_easy_setopt(c, CURLOPT_USE_SSL,
						 tls == TLS_STARTTLS ? (long) CURLUSESSL_ALL :
						 (long) CURLUSESSL_NONE) != CURLE_OK ||
		curl_easy_setopt(c, CURLOPT_MAIL_FROM, s->envelope_from) != CURLE_OK ||
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L) != CURLE_OK ||
		(username != NULL &&
		 (curl_easy_setopt(c, CURLOPT_USERNAME, username) != CURLE_OK ||
		  curl_easy_setopt(c, CURLOPT_PASSWORD, password) != CURLE_OK)) ? -1 : 0;
}

static void *
smtp_open(json_t *spec, const char *where, char *err, size_t errlen)
{
	const char *type;
	const char *host = NULL;
	const char *from = NULL;
	const char *tls_name = "starttls";
	const char *username = NULL;
	const char *password = NULL;
	const char *id_domain = NULL;
	const char *problem;
	json_int_t	port = 0;
	json_int_t	timeout_ms = DEFAULT_TIMEOUT_MS;
	enum smtp_tls tls;
	int			ipv6;
	struct smtp *s;
	size_t		n;

	if (config_unpack(spec, where, err, errlen, "{s?s s?s s?I s?s s?s s?s s?s s?I s?s}",
					  "type", &type, "host", &host, "port", &port, "from", &from,
					  "tls", &tls_name, "username", &username, "password", &password,
					  "timeout_ms", &timeout_ms, "message_id_domain", &id_domain) < 0 ||
		(json_object_get(spec, "port") != NULL &&
		 config_range(port, 1, 65535, where, "port", err, errlen) < 0) ||
		config_range(timeout_ms, 1, 3600000, where, "timeout_ms", err, errlen) < 0)
		return NULL;
	if (host == NULL || !host_valid(host, &ipv6))
	{
		config_error(err, errlen, where, "host", host == NULL ? "missing (the SMTP "
					 "server's name or address)" : "must be a host name or an IP address");
		return NULL;
	}
	problem = from == NULL ? "missing (the sender's address)" : mail_address_problem(from);
	if (problem != NULL)
	{
		config_error(err, errlen, where, "from", "%s", problem);
		return NULL;
	}
	if (strcmp(tls_name, "off") == 0)
		tls = TLS_OFF;
	else if (strcmp(tls_name, "starttls") == 0)
		tls = TLS_STARTTLS;
	else if (strcmp(tls_name, "implicit") == 0)
		tls = TLS_IMPLICIT;
	else
	{
		config_error(err, errlen, where, "tls", "must be \"off\", \"starttls\" or "
					 "\"implicit\", not \"%s\"", tls_name);
		return NULL;
	}
	if (port == 0)
		port = tls == TLS_OFF ? 25 : tls == TLS_STARTTLS ? 587 : 465;
	if ((username == NULL) != (password == NULL))
	{
		config_error(err, errlen, where, username == NULL ? "username" : "password",
					 "missing (username and password go together)");
		return NULL;
	}
	if (username != NULL && (username[0] == '\0' || password[0] == '\0'))
	{
		config_error(err, errlen, where, username[0] == '\0' ? "username" : "password",
					 "must be a non-empty string");
		return NULL;
	}
	if (id_domain == NULL)
		id_domain = strrchr(from, '@') + 1;
	else if (!mail_domain_valid(id_domain))
	{
		config_error(err, errlen, where, "message_id_domain", "must be a domain name");
		return NULL;
	}

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		goto oom;
	n = strlen(host) + 32;
	s->url = malloc(n);
	s->envelope_from = malloc(strlen(from) + 3);
	s->from = from;
	s->id_domain = id_domain;
	s->curl = curl_easy_init();
	if (s->url == NULL || s->envelope_from == NULL || s->curl == NULL)
		goto oom;
	snprintf(s->url, n, "%s://%s%s%s:%" JSON_INTEGER_FORMAT, tls == TLS_IMPLICIT ? "smtps" : "smtp",
			 ipv6 ? "[" : "", host, ipv6 ? "]" : "", port);
	sprintf(s->envelope_from, "<%s>", from);
	if (set_fixed_options(s, tls, username, password, (long) timeout_ms) < 0)
	{
		config_error(err, errlen, where, NULL, "libcurl refuses the settings (is it built "
					 "with SMTP and TLS?)");
		smtp_close(s);
		return NULL;
	}
	return s;

oom:
	smtp_close(s);
	config_error(err, errlen, where, NULL, "out of memory");
	return NULL;
}

static size_t
read_message(char *buf, size_t size, size_t nitems, void *arg)
{
	struct upload *u = arg;
	size_t		n = size * nitems;

	if (n > u->len - u->sent)
		n = u->len - u->sent;
	memcpy(buf, u->data + u->sent, n);
	u->sent += n;
	return n;
}

/* The failure as one line: curl's words, and the server's reply code. */
static enum send_result
transfer_failed(struct smtp *s, CURLcode rc, char *err, size_t errlen)
{
	long		code = 0;
	const char *what = s->curl_error[0] != '\0' ? s->curl_error : curl_easy_strerror(rc);
	size_t		len;

	curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &code);
	if (code > 0)
		snprintf(err, errlen, "%s: %s (server replied %ld)", s->url, what, code);
	else
		snprintf(err, errlen, "%s: %s", s->url, what);
	len = strlen(err);
	while (len > 0 && (err[len - 1] == '\n' || err[len - 1] == '\r'))
		err[--len] = '\0';
	for (size_t i = 0; i < len; i++)
		if (err[i] == '\r' || err[i] == '\n')
			err[i] = ' ';
	return code >= 550 && code <= 554 ? SEND_REJECTED : SEND_FAILED;
}

static enum send_result
smtp_send(void *state, const struct outbox_message *m, char *err, size_t errlen)
{
	struct smtp *s = state;
	struct mail_fields f = {
		.from = s->from,
		.to = m->recipient,
		.subject = m->subject,
		.body = m->body,
		.id = m->id,
		.id_domain = s->id_domain,
		.date = time(NULL),
	};
	struct upload u = {0};
	struct curl_slist *rcpt = NULL;
	char	   *message;
	char	   *rcpt_addr;
	size_t		len;
	enum send_result result = SEND_OK;
	CURLcode	rc;

	switch (mail_build(&f, &message, &len, err, errlen))
	{
		case MAIL_OK:
			break;
		case MAIL_INVALID:
			return SEND_REFUSED;
		case MAIL_NOMEM:
			return SEND_FAILED;
	}
	rcpt_addr = malloc(strlen(m->recipient) + 3);
	if (rcpt_addr != NULL)
	{
		sprintf(rcpt_addr, "<%s>", m->recipient);
		rcpt = curl_slist_append(NULL, rcpt_addr);
		free(rcpt_addr);
	}
	if (rcpt == NULL)
	{
		free(message);
		snprintf(err, errlen, "out of memory");
		return SEND_FAILED;
	}

	u.data = message;
	u.len = len;
	s->curl_error[0] = '\0';
	if (curl_easy_setopt(s->curl, CURLOPT_MAIL_RCPT, rcpt) != CURLE_OK ||
		curl_easy_setopt(s->curl, CURLOPT_READFUNCTION, read_message) != CURLE_OK ||
		curl_easy_setopt(s->curl, CURLOPT_READDATA, &u) != CURLE_OK)
	{
		snprintf(err, errlen, "libcurl refuses the message's options");
		result = SEND_FAILED;
	}
	else if ((rc = curl_easy_perform(s->curl)) != CURLE_OK)
		result = transfer_failed(s, rc, err, errlen);

	/* the handle must not keep pointers to what is freed here */
	curl_easy_setopt(s->curl, CURLOPT_MAIL_RCPT, (struct curl_slist *) NULL);
	curl_easy_setopt(s->curl, CURLOPT_READDATA, (void *) NULL);
	curl_slist_free_all(rcpt);
	free(message);
	return result;
}

const struct plugin_type smtp_sender = {
	.name = "smtp",
	.kind = PLUGIN_SENDER,
	.init = smtp_init,
	.cleanup = smtp_cleanup,
	.open = smtp_open,
	.send = smtp_send,
	.close = smtp_close,
};
