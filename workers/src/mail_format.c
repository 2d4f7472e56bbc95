/*
 * mail_format.c
 *		Building an RFC 5322 text message and checking the addresses and
 *		names that go into it.
 *
 * The message is
 *     Date: Thu, 27 Nov 2026 05:40:00 +0000
 *     From: <from>
 *     To: <recipient>
 *     Subject: <subject, RFC 2047 encoded-words when not plain ASCII>
 *     Message-ID: <id@id_domain>
 *     MIME-Version: 1.0
 *     Content-Type: text/plain; charset=utf-8
 *     Content-Transfer-Encoding: quoted-printable
 *     Auto-Submitted: auto-generated
 *
 *     <body, quoted-printable>
 * with CRLF line endings throughout.
 *
 * Header injection is refused, not repaired: a recipient or subject with a
 * CR or LF in it is MAIL_INVALID, as is a recipient that is not a bare
 * address (so that "a@b, c@d" cannot add a recipient either).
 *
 * The body's line breaks (CRLF, CR or LF) become CRLF, and a final one is
 * added if missing.  Quoted-printable keeps every line at most 76
 * characters and 7-bit, whatever the text (long lines, non-ASCII, a server
 * without 8BITMIME), and lets the body be dot-safe by construction: a line
 * that would start with "." has it written =2E, so no line on the wire ever
 * starts with a dot, and SMTP's end-of-data marker cannot occur in the
 * text, whether or not the transport dot-stuffs.  ("From " at the start of
 * a line is written =46rom for the same kind of reason: mbox mangling.)
 *
 * libcurl's MIME API (curl_mime_*, CURLOPT_MIMEPOST) does not build this
 * message: for SMTP it always makes the message multipart/mixed, the text
 * its one part, and its quoted-printable encoder leaves a leading dot and
 * "From " as they are and writes a lone LF as =0A.  Neither does it encode
 * headers (the Subject's encoded-words).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mail_format.h"
#include "text.h"

static int
has_line_break(const char *s)
{
	return strpbrk(s, "\r\n") != NULL;
}

/* Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static int
utf8_valid(const char *str)
{
	const unsigned char *s = (const unsigned char *) str;
	size_t		n = strlen(str);

	for (size_t i = 0; i < n;)
	{
		size_t		len = utf8_sequence(s + i, n - i);

		if (len == 0)
			return 0;
		i += len;
	}
	return 1;
}

int
mail_domain_valid(const char *name)
{
	size_t		label = 0;
	size_t		total = strlen(name);

	if (total == 0 || total > 253)
		return 0;
	for (const char *p = name;; p++)
	{
		if (*p == '.' || *p == '\0')
		{
			if (label == 0 || p[-1] == '-')
				return 0;
			if (*p == '\0')
				return 1;
			label = 0;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '-'))
			return 0;
		if (label == 0 && *p == '-')
			return 0;
		if (++label > 63)
			return 0;
	}
}

static int
is_atext(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

const char *
mail_address_problem(const char *addr)
{
	const char *at = strrchr(addr, '@');
	char		domain[256];

	if (has_line_break(addr))
		return "contains CR or LF (header injection refused)";
	if (addr[0] == '\0')
		return "is empty";
	if (strlen(addr) > 254)
		return "is longer than 254 characters";
	if (at == NULL || at == addr)
		return "is not a bare address local@domain";
	if (at - addr > 64)
		return "has a local part longer than 64 characters";
	for (const char *p = addr; p < at; p++)
	{
		if (*p == '.')
		{
			if (p == addr || p + 1 == at || p[1] == '.')
				return "is not a bare address local@domain (misplaced dot)";
		}
		else if (!is_atext(*p))
			return "is not a bare address local@domain (only letters, digits, "
				"dots and !#$%&'*+-/=?^_`{|}~ before the @)";
	}
	snprintf(domain, sizeof(domain), "%s", at + 1);
	if (!mail_domain_valid(domain))
		return "has an invalid domain (a host name is expected after the @)";
	return NULL;
}

static void
add_date(struct strbuf *b, time_t when)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct tm	tm;
	char		line[64];

	/* a time gmtime_r cannot convert (out of struct tm's range) dates 1970 */
	if (gmtime_r(&when, &tm) == NULL)
	{
		when = 0;
		gmtime_r(&when, &tm);
	}
	snprintf(line, sizeof(line), "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n",
			 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
			 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
	strbuf_str(b, line);
}

static void
add_base64(struct strbuf *b, const unsigned char *s, size_t n)
{
	static const char digits[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	for (size_t i = 0; i < n; i += 3)
	{
		unsigned long v = (unsigned long) s[i] << 16;
		char		out[4];

		if (i + 1 < n)
			v |= (unsigned long) s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		out[0] = digits[(v >> 18) & 63];
		out[1] = digits[(v >> 12) & 63];
		out[2] = i + 1 < n ? digits[(v >> 6) & 63] : '=';
		out[3] = i + 2 < n ? digits[v & 63] : '=';
		strbuf_add(b, out, 4);
	}
}

/*
 * Subject: as is when it is plain, that is words of printable ASCII
 * separated by single spaces, none looking like an encoded-word ("=?") and
 * each short enough that folding before the spaces keeps every line within
 * 78 characters; unfolding (removing the CRLFs) gives the subject back
 * exactly.  Anything else (non-ASCII, control characters, tabs, leading,
 * trailing or repeated spaces, a long word) becomes RFC 2047 "B"
 * encoded-words of at most 39 bytes of text each (72 characters), never
 * splitting a UTF-8 sequence, one per line.
 */
#define WORD_BYTES 39
#define HEADER_LINE 78
#define SUBJECT_PREFIX "Subject:"

static int
plain_subject(const char *s, size_t len)
{
	size_t		word = 0;

	if (len == 0)
		return 1;
	if (s[0] == ' ' || s[len - 1] == ' ' || strstr(s, "=?") != NULL ||
		strstr(s, "  ") != NULL)
		return 0;
	for (size_t i = 0; i < len; i++)
	{
		if ((unsigned char) s[i] < 0x20 || (unsigned char) s[i] >= 0x7f)
			return 0;
		word = s[i] == ' ' ? 0 : word + 1;
		/* the first line is "Subject: word", the others " word" */
		if (word + strlen(SUBJECT_PREFIX) + 1 > HEADER_LINE)
			return 0;
	}
	return 1;
}

/* A plain subject, folded before a space when the next word would not fit. */
static void
add_folded(struct strbuf *b, const char *value, size_t len)
{
	size_t		col = strlen(SUBJECT_PREFIX);
	size_t		start = 0;

	while (start < len)
	{
		size_t		end = start + 1;

		while (end < len && value[end] != ' ')
			end++;
		if (start == 0)
		{
			strbuf_str(b, " ");
			col++;
		}
		else if (col + (end - start) > HEADER_LINE)
		{
			strbuf_str(b, "\r\n");
			col = 0;
		}
		strbuf_add(b, value + start, end - start);
		col += end - start;
		start = end;
	}
}

static void
add_subject(struct strbuf *b, const char *subject)
{
	const unsigned char *s = (const unsigned char *) subject;
	size_t		len = strlen(subject);

	strbuf_str(b, SUBJECT_PREFIX);
	if (plain_subject(subject, len))
	{
		add_folded(b, subject, len);
		strbuf_str(b, "\r\n");
		return;
	}
	for (size_t i = 0; i < len;)
	{
		size_t		n = len - i < WORD_BYTES ? len - i : WORD_BYTES;

		/* back off to a character boundary */
		while (i + n < len && (s[i + n] & 0xc0) == 0x80 && n > 1)
			n--;
		strbuf_str(b, i == 0 ? " =?UTF-8?B?" : "\r\n =?UTF-8?B?");
		add_base64(b, s + i, n);
		strbuf_str(b, "?=");
		i += n;
	}
	strbuf_str(b, "\r\n");
}

#define QP_LINE 76				/* characters, the soft break's '=' included */

/* One line of the body (without its line break), quoted-printable. */
static void
add_qp_line(struct strbuf *b, const unsigned char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t		col = 0;

	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = s[i];
		int			encode = c == '=' || c >= 0x7f || (c < 0x20 && c != '\t') ||
			((c == ' ' || c == '\t') && i + 1 == n);
		char		piece[3];

		if (col + (encode ? 3 : 1) > QP_LINE - 1)
		{
			strbuf_str(b, "=\r\n");
			col = 0;
		}
		/* what a line on the wire starts with: never "." nor "From " */
		if (col == 0 && (c == '.' || (n - i >= 5 && memcmp(s + i, "From ", 5) == 0)))
			encode = 1;
		if (encode)
		{
			piece[0] = '=';
			piece[1] = hex[c >> 4];
			piece[2] = hex[c & 15];
			strbuf_add(b, piece, 3);
			col += 3;
		}
		else
		{
			strbuf_add(b, (const char *) &c, 1);
			col++;
		}
	}
	strbuf_str(b, "\r\n");
}

static void
add_body(struct strbuf *b, const char *body)
{
	const unsigned char *s = (const unsigned char *) body;
	size_t		start = 0;
	size_t		i = 0;
	size_t		len = strlen(body);

	while (i < len)
	{
		if (s[i] == '\r' || s[i] == '\n')
		{
			add_qp_line(b, s + start, i - start);
			i += (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') ? 2 : 1;
			start = i;
		}
		else
			i++;
	}
	if (start < len)
		add_qp_line(b, s + start, len - start);
}

static int
id_valid(const char *id)
{
	if (id[0] == '\0' || strlen(id) > 128)
		return 0;
	for (const char *p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '-'))
			return 0;
	return 1;
}

enum mail_status
mail_build(const struct mail_fields *f, char **out, size_t *len,
		   char *err, size_t errlen)
{
	struct strbuf b = {0};
	const char *problem = mail_address_problem(f->to);

	*out = NULL;
	*len = 0;
	if (problem != NULL)
	{
		snprintf(err, errlen, "recipient %s", problem);
		return MAIL_INVALID;
	}
	if (has_line_break(f->subject))
	{
		snprintf(err, errlen, "subject contains CR or LF (header injection refused)");
		return MAIL_INVALID;
	}
	if (!utf8_valid(f->subject) || !utf8_valid(f->body))
	{
		snprintf(err, errlen, "%s is not valid UTF-8",
				 utf8_valid(f->subject) ? "body" : "subject");
		return MAIL_INVALID;
	}
	if (!id_valid(f->id))
	{
		snprintf(err, errlen, "id is not usable in a Message-ID "
				 "(letters, digits and '-' only)");
		return MAIL_INVALID;
	}

	add_date(&b, f->date);
	strbuf_str(&b, "From: ");
	strbuf_str(&b, f->from);
	strbuf_str(&b, "\r\nTo: ");
	strbuf_str(&b, f->to);
	strbuf_str(&b, "\r\n");
	add_subject(&b, f->subject);
	strbuf_str(&b, "Message-ID: <");
	strbuf_str(&b, f->id);
	strbuf_str(&b, "@");
	strbuf_str(&b, f->id_domain);
	strbuf_str(&b, ">\r\n"
			 "MIME-Version: 1.0\r\n"
			 "Content-Type: text/plain; charset=utf-8\r\n"
			 "Content-Transfer-Encoding: quoted-printable\r\n"
			 "Auto-Submitted: auto-generated\r\n"
			 "\r\n");
	add_body(&b, f->body);
	if (b.failed)
	{
		free(b.data);
		snprintf(err, errlen, "out of memory building the message");
		return MAIL_NOMEM;
	}
	*out = b.data;
	*len = b.len;
	return MAIL_OK;
}
