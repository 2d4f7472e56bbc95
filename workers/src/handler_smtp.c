/*
 * handler_smtp.c
 *		The "smtp" message handler: each outbox message as an email, sent
 *		with libcurl.
 *
 *   "handler": {"type": "smtp", "host": "mail.example.org", "port": 587,
 *               "from": "noreply@example.org", "tls": "starttls",
 *               "username": "...", "password": "...",
 *               "timeout_ms": 10000, "message_id_domain": "example.org"}
 *
 * open checks and copies the settings and makes the curl handle (no network
 * I/O).  send builds the message (mail_format.c: Message-ID <id@domain> from
 * the row id, so that receivers can drop a repeat) and hands it to libcurl:
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
 * code ("(server replied 550)") if it wants to give up sooner.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "mail_format.h"
#include "message.h"

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
	char	   *from;
	char	   *envelope_from;	/* "<from>" */
	char	   *id_domain;
	char		curl_error[CURL_ERROR_SIZE];
};

/* The message being uploaded by the read callback. */
struct upload
{
	const char *data;
	size_t		len;
	size_t		sent;
};

static const char *const smtp_keys[] = {
	"type", "host", "port", "from", "tls", "username", "password",
	"timeout_ms", "message_id_domain",
};

#define N_SMTP_KEYS (sizeof(smtp_keys) / sizeof(smtp_keys[0]))

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
smtp_free(struct smtp *s)
{
	if (s == NULL)
		return;
	if (s->curl != NULL)
		curl_easy_cleanup(s->curl);
	free(s->url);
	free(s->from);
	free(s->envelope_from);
	free(s->id_domain);
	free(s);
}

/* A string option: NULL when absent; *bad set (and err written) when wrong. */
static const char *
string_key(json_t *spec, const char *key, const char *where, int *bad,
		   char *err, size_t errlen)
{
	json_t	   *value = json_object_get(spec, key);

	if (value == NULL || *bad)
		return NULL;
	if (!json_is_string(value) || json_string_length(value) == 0 ||
		strlen(json_string_value(value)) != json_string_length(value))
	{
		snprintf(err, errlen, "%s.%s: must be a non-empty string", where, key);
		*bad = 1;
		return NULL;
	}
	return json_string_value(value);
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

static int
int_key(json_t *spec, const char *key, const char *where, long long min,
		long long max, long long *out, char *err, size_t errlen)
{
	json_t	   *value = json_object_get(spec, key);

	if (value == NULL)
		return 0;
	if (!json_is_integer(value) || json_integer_value(value) < min ||
		json_integer_value(value) > max)
	{
		snprintf(err, errlen, "%s.%s: must be an integer from %lld to %lld",
				 where, key, min, max);
		return -1;
	}
	*out = json_integer_value(value);
	return 0;
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
	const char *key;
	json_t	   *value;
	int			bad = 0;
	int			ipv6;
	const char *host;
	const char *from;
	const char *tls_name;
	const char *username;
	const char *password;
	const char *id_domain;
	const char *problem;
	enum smtp_tls tls = TLS_STARTTLS;
	long long	port = 0;
	long long	timeout_ms = DEFAULT_TIMEOUT_MS;
	struct smtp *s;
	size_t		n;

	json_object_foreach(spec, key, value)
	{
		size_t		i;

		for (i = 0; i < N_SMTP_KEYS && strcmp(key, smtp_keys[i]) != 0; i++)
			;
		if (i == N_SMTP_KEYS)
		{
			snprintf(err, errlen, "%s.%s: unknown key for an smtp handler (known: "
					 "type, host, port, from, tls, username, password, timeout_ms, "
					 "message_id_domain)", where, key);
			return NULL;
		}
	}

	host = string_key(spec, "host", where, &bad, err, errlen);
	from = string_key(spec, "from", where, &bad, err, errlen);
	tls_name = string_key(spec, "tls", where, &bad, err, errlen);
	username = string_key(spec, "username", where, &bad, err, errlen);
	password = string_key(spec, "password", where, &bad, err, errlen);
	id_domain = string_key(spec, "message_id_domain", where, &bad, err, errlen);
	if (bad)
		return NULL;

	if (host == NULL)
	{
		snprintf(err, errlen, "%s.host: missing (the SMTP server's name or address)", where);
		return NULL;
	}
	if (!host_valid(host, &ipv6))
	{
		snprintf(err, errlen, "%s.host: must be a host name or an IP address", where);
		return NULL;
	}
	if (from == NULL)
	{
		snprintf(err, errlen, "%s.from: missing (the sender's address)", where);
		return NULL;
	}
	if ((problem = mail_address_problem(from)) != NULL)
	{
		snprintf(err, errlen, "%s.from: %s", where, problem);
		return NULL;
	}
	if (tls_name != NULL)
	{
		if (strcmp(tls_name, "off") == 0)
			tls = TLS_OFF;
		else if (strcmp(tls_name, "starttls") == 0)
			tls = TLS_STARTTLS;
		else if (strcmp(tls_name, "implicit") == 0)
			tls = TLS_IMPLICIT;
		else
		{
			snprintf(err, errlen, "%s.tls: must be \"off\", \"starttls\" or "
					 "\"implicit\", not \"%s\"", where, tls_name);
			return NULL;
		}
	}
	if (int_key(spec, "port", where, 1, 65535, &port, err, errlen) < 0 ||
		int_key(spec, "timeout_ms", where, 1, 3600000, &timeout_ms, err, errlen) < 0)
		return NULL;
	if (port == 0)
		port = tls == TLS_OFF ? 25 : tls == TLS_STARTTLS ? 587 : 465;
	if ((username == NULL) != (password == NULL))
	{
		snprintf(err, errlen, "%s.%s: missing (username and password go together)",
				 where, username == NULL ? "username" : "password");
		return NULL;
	}
	if (id_domain == NULL)
		id_domain = strrchr(from, '@') + 1;
	else if (!mail_domain_valid(id_domain))
	{
		snprintf(err, errlen, "%s.message_id_domain: must be a domain name", where);
		return NULL;
	}

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		goto oom;
	n = strlen(host) + 32;
	s->url = malloc(n);
	s->envelope_from = malloc(strlen(from) + 3);
	s->from = strdup(from);
	s->id_domain = strdup(id_domain);
	s->curl = curl_easy_init();
	if (s->url == NULL || s->envelope_from == NULL || s->from == NULL ||
		s->id_domain == NULL || s->curl == NULL)
		goto oom;
	snprintf(s->url, n, "%s://%s%s%s:%lld", tls == TLS_IMPLICIT ? "smtps" : "smtp",
			 ipv6 ? "[" : "", host, ipv6 ? "]" : "", port);
	sprintf(s->envelope_from, "<%s>", from);
	if (set_fixed_options(s, tls, username, password, (long) timeout_ms) < 0)
	{
		snprintf(err, errlen, "%s: libcurl refuses the settings (is it built with "
				 "SMTP and TLS?)", where);
		smtp_free(s);
		return NULL;
	}
	return s;

oom:
	smtp_free(s);
	snprintf(err, errlen, "%s: out of memory", where);
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
	return SEND_FAILED;
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

static void
smtp_close(void *state)
{
	smtp_free(state);
}

const struct message_handler_type smtp_message_handler_type = {
	.name = "smtp",
	.init = smtp_init,
	.cleanup = smtp_cleanup,
	.open = smtp_open,
	.send = smtp_send,
	.close = smtp_close,
};
