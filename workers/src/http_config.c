/*
 * http_config.c
 *		Loading and checking the configuration's "http" object.
 *
 *   "http": {"listen": "127.0.0.1:9188", "allow_remote": false}
 *
 * listen is an IPv4 address and a port, "127.0.0.1:9188", or an IPv6
 * address in brackets and a port, "[::1]:9188"; no host names, so that
 * loading a configuration never waits for a resolver.  Port 0 lets the
 * system pick one (the log says which).  The address must be a loopback
 * one (127.0.0.0/8, ::1) unless allow_remote is true: the pages show the
 * consumers' errors and the application's overview, and have no
 * authentication of their own.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_unpack.h"
#include "http.h"

#define DEFAULT_LISTEN "127.0.0.1:9188"

/* "IPV4:PORT" or "[IPV6]:PORT" into out; 0, or -1. */
static int
parse_listen(const char *listen, struct http_config *out)
{
	char		host[64];
	const char *colon;
	const char *p;
	char	   *end;
	long		port;
	size_t		len;

	if (listen[0] == '[')
	{
		p = strchr(listen, ']');
		if (p == NULL || p[1] != ':')
			return -1;
		len = (size_t) (p - listen - 1);
		if (len >= sizeof(host))
			return -1;
		memcpy(host, listen + 1, len);
		colon = p + 1;
	}
	else
	{
		colon = strrchr(listen, ':');
		if (colon == NULL || (size_t) (colon - listen) >= sizeof(host))
			return -1;
		len = (size_t) (colon - listen);
		memcpy(host, listen, len);
	}
	host[len] = '\0';
	if (colon[1] < '0' || colon[1] > '9')
		return -1;
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 0 || port > 65535)
		return -1;

	memset(&out->addr, 0, sizeof(out->addr));
	if (listen[0] == '[')
	{
		struct sockaddr_in6 *a = (struct sockaddr_in6 *) &out->addr;

		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return -1;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t) port);
		out->addrlen = sizeof(*a);
	}
	else
	{
		struct sockaddr_in *a = (struct sockaddr_in *) &out->addr;

		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return -1;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t) port);
		out->addrlen = sizeof(*a);
	}
	return 0;
}

static int
is_loopback(const struct sockaddr_storage *addr)
{
	if (addr->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *) addr)->sin_addr.s_addr) >> 24) == 127;
	return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *) addr)->sin6_addr);
}

int
http_config_load(json_t *obj, struct http_config *out, char *err, size_t errlen)
{
	out->listen = DEFAULT_LISTEN;
	out->allow_remote = 0;
	if (config_unpack(obj, "http", err, errlen, "{s?s s?b}",
					  "listen", &out->listen, "allow_remote", &out->allow_remote) < 0)
		return -1;
	if (parse_listen(out->listen, out) < 0)
		return config_error(err, errlen, "http", "listen", "must be \"IPV4:PORT\" or "
							"\"[IPV6]:PORT\" (an address, not a host name; port 0 to "
							"65535), not \"%s\"", out->listen);
	if (!out->allow_remote && !is_loopback(&out->addr))
		return config_error(err, errlen, "http", "listen", "%s is not a loopback address: "
							"the pages have no authentication; set \"allow_remote\": true "
							"to listen there anyway", out->listen);
	out->enabled = 1;
	return 0;
}

int
http_config_same(const struct http_config *a, const struct http_config *b)
{
	if (a->enabled != b->enabled)
		return 0;
	return !a->enabled || (strcmp(a->listen, b->listen) == 0 &&
						   a->allow_remote == b->allow_remote);
}
