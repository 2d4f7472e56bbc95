/*
 * fuzz_mail.c
 *		libFuzzer target: building an email from an outbox row.
 *
 * The outbox rows (recipient, subject, body, id) come from the application's
 * table, so they are the daemon's least trusted input; mail_build()
 * (src/mail_format.c) validates them and writes the message.  The input is
 *     4 bytes          the Date (seconds since 1970, unsigned little-endian;
 *                      the daemon passes time(NULL))
 *     recipient NUL subject NUL id NUL body
 * (a missing field is "", as a NULL column is).  From and the Message-ID's
 * domain are fixed: the configuration has checked them already.
 *
 * Besides the sanitizers, the harness checks the message against what
 * mail_format.h promises, with its own decoders:
 *   - refused (MAIL_INVALID) exactly when the recipient has a problem
 *     (mail_address_problem), the subject a line break, subject or body is
 *     not UTF-8 (checked here independently, by the table of well-formed
 *     byte sequences of the Unicode standard), or the id is unusable;
 *   - otherwise: NUL-terminated at len, 7-bit, CRLF line endings only, no
 *     line over 998 characters (78 in the Subject, 76 in the body) nor
 *     starting with a dot, the body lines not starting with "From " nor
 *     ending in a blank; the headers in order with To, From and Message-ID
 *     as given; and the Subject (unfolded, encoded-words decoded) and the
 *     body (quoted-printable decoded) give the input back, the body's line
 *     breaks as LF with a final one added.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mail_format.h"

#define FROM "noreply@example.org"
#define ID_DOMAIN "example.org"

static void
fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_mail: %s%s%s\n", what, detail != NULL ? ": " : "",
			detail != NULL ? detail : "");
	abort();
}

/* Well-formed UTF-8, by Table 3-7 of the Unicode standard. */
static int
oracle_utf8(const unsigned char *s)
{
	while (*s)
	{
		unsigned char c = *s;
		unsigned char lo = 0x80,
					hi = 0xbf;
		int			more;

		if (c <= 0x7f)
			more = 0;
		else if (c >= 0xc2 && c <= 0xdf)
			more = 1;
		else if (c == 0xe0)
			more = 2, lo = 0xa0;
		else if (c == 0xed)
			more = 2, hi = 0x9f;
		else if (c >= 0xe1 && c <= 0xef)
			more = 2;
		else if (c == 0xf0)
			more = 3, lo = 0x90;
		else if (c == 0xf4)
			more = 3, hi = 0x8f;
		else if (c >= 0xf1 && c <= 0xf3)
			more = 3;
		else
			return 0;
		s++;
		for (int i = 0; i < more; i++, s++)
		{
			if (*s < (i == 0 ? lo : 0x80) || *s > (i == 0 ? hi : 0xbf))
				return 0;
		}
	}
	return 1;
}

static int
oracle_id(const char *id)
{
	size_t		n = strlen(id);

	return n >= 1 && n <= 128 &&
		strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") == n;
}

/* A growable byte string for the decoded texts. */
struct text
{
	char	   *data;
	size_t		len;
	size_t		cap;
};

static void
text_add(struct text *t, const char *s, size_t n)
{
	if (t->len + n + 1 > t->cap)
	{
		t->cap = 2 * (t->len + n + 1) + 64;
		t->data = realloc(t->data, t->cap);
		if (t->data == NULL)
			fail("out of memory", NULL);
	}
	memcpy(t->data + t->len, s, n);
	t->len += n;
	t->data[t->len] = '\0';
}

static int
hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int
b64val(char c)
{
	static const char digits[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c != '\0' ? strchr(digits, c) : NULL;

	return p != NULL ? (int) (p - digits) : -1;
}

/* One encoded-word's base64 text (len a multiple of 4) onto t. */
static void
b64_decode(struct text *t, const char *s, size_t len)
{
	if (len % 4 != 0)
		fail("an encoded-word of the wrong length", s);
	for (size_t i = 0; i < len; i += 4)
	{
		int			v[4];
		char		out[3];
		int			n = 3;

		for (int k = 0; k < 4; k++)
		{
			v[k] = s[i + k] == '=' ? 0 : b64val(s[i + k]);
			if (v[k] < 0)
				fail("a character outside base64 in an encoded-word", NULL);
		}
		if (s[i + 3] == '=')
			n = s[i + 2] == '=' ? 1 : 2;
		out[0] = (char) (v[0] << 2 | v[1] >> 4);
		out[1] = (char) ((v[1] & 15) << 4 | v[2] >> 2);
		out[2] = (char) ((v[2] & 3) << 6 | v[3]);
		text_add(t, out, (size_t) n);
	}
}

/* The lines of a message: start and length of each, without the CRLF. */
struct line
{
	const char *s;
	size_t		len;
};

static void
check_subject(const struct line *lines, size_t first, size_t end, const char *subject)
{
	static const char open[] = " =?UTF-8?B?";
	struct text got = {0};
	const char *value = lines[first].s + strlen("Subject:");
	size_t		vlen = lines[first].len - strlen("Subject:");

	text_add(&got, "", 0);
	for (size_t i = first; i < end; i++)
		if (lines[i].len > 78)
			fail("a Subject line over 78 characters", NULL);
	if (vlen >= strlen(open) && memcmp(value, open, strlen(open)) == 0)
	{
		/* encoded-words, one per line */
		for (size_t i = first; i < end; i++)
		{
			const char *w = i == first ? value : lines[i].s;
			size_t		wlen = i == first ? vlen : lines[i].len;

			if (wlen < strlen(open) + 2 || memcmp(w, open, strlen(open)) != 0 ||
				memcmp(w + wlen - 2, "?=", 2) != 0)
				fail("a Subject line that is not one encoded-word", NULL);
			b64_decode(&got, w + strlen(open), wlen - strlen(open) - 2);
		}
	}
	else
	{
		/* unfolding: the lines joined, then the space after the colon */
		for (size_t i = first; i < end; i++)
		{
			if (i == first)
				text_add(&got, value, vlen);
			else
				text_add(&got, lines[i].s, lines[i].len);
		}
		if (got.len > 0)
		{
			if (got.data[0] != ' ')
				fail("no space after Subject:", NULL);
			memmove(got.data, got.data + 1, got.len--);
		}
	}
	if (got.len != strlen(subject) || memcmp(got.data, subject, got.len) != 0)
		fail("the Subject does not decode to the subject", subject);
	free(got.data);
}

static void
check_body(const struct line *lines, size_t first, size_t end, const char *body)
{
	struct text got = {0};
	struct text want = {0};

	text_add(&got, "", 0);
	text_add(&want, "", 0);
	for (size_t i = first; i < end; i++)
	{
		const char *s = lines[i].s;
		size_t		n = lines[i].len;
		int			soft = n > 0 && s[n - 1] == '=';

		if (n > 76)
			fail("a body line over 76 characters", NULL);
		if (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			fail("a body line ending in a blank", NULL);
		if (n >= 5 && memcmp(s, "From ", 5) == 0)
			fail("a body line starting with \"From \"", NULL);
		if (soft)
			n--;
		for (size_t k = 0; k < n; k++)
		{
			if (s[k] == '=')
			{
				char		c;

				if (k + 2 >= n || hexval(s[k + 1]) < 0 || hexval(s[k + 2]) < 0)
					fail("a bad quoted-printable escape", NULL);
				c = (char) (hexval(s[k + 1]) << 4 | hexval(s[k + 2]));
				text_add(&got, &c, 1);
				k += 2;
			}
			else
				text_add(&got, s + k, 1);
		}
		if (!soft)
			text_add(&got, "\n", 1);
		else if (i + 1 == end)
			fail("a soft line break at the end of the body", NULL);
	}

	for (const char *p = body; *p; p++)
	{
		if (*p == '\r')
		{
			if (p[1] == '\n')
				p++;
			text_add(&want, "\n", 1);
		}
		else
			text_add(&want, p, 1);
	}
	if (want.len > 0 && want.data[want.len - 1] != '\n')
		text_add(&want, "\n", 1);
	if (got.len != want.len || memcmp(got.data, want.data, got.len) != 0)
		fail("the body does not decode to the body", body);
	free(got.data);
	free(want.data);
}

static void
expect_line(const struct line *l, const char *prefix, const char *value, const char *suffix)
{
	size_t		p = strlen(prefix),
				v = strlen(value),
				s = strlen(suffix);

	if (l->len != p + v + s || memcmp(l->s, prefix, p) != 0 ||
		memcmp(l->s + p, value, v) != 0 || memcmp(l->s + p + v, suffix, s) != 0)
		fail("a header is not as expected", prefix);
}

static void
check_message(const char *out, size_t len, const struct mail_fields *f)
{
	static const char *const tail[] = {
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=utf-8",
		"Content-Transfer-Encoding: quoted-printable",
		"Auto-Submitted: auto-generated",
	};
	struct line *lines;
	size_t		n = 0;
	size_t		i;
	size_t		subject_end;

	if (strlen(out) != len)
		fail("len is not the length of the message", NULL);
	lines = malloc((len / 2 + 1) * sizeof(*lines));
	if (lines == NULL)
		fail("out of memory", NULL);
	for (size_t start = 0; start < len;)
	{
		const char *cr = strchr(out + start, '\r');

		if (cr == NULL || cr[1] != '\n')
			fail("a line that does not end in CRLF", NULL);
		lines[n].s = out + start;
		lines[n].len = (size_t) (cr - (out + start));
		if (memchr(lines[n].s, '\n', lines[n].len) != NULL)
			fail("a bare LF", NULL);
		if (lines[n].len > 998)
			fail("a line over 998 characters", NULL);
		if (lines[n].len > 0 && lines[n].s[0] == '.')
			fail("a line starting with a dot", NULL);
		for (size_t k = 0; k < lines[n].len; k++)
			if ((unsigned char) lines[n].s[k] >= 0x80)
				fail("an 8-bit character", NULL);
		n++;
		start = (size_t) (cr - out) + 2;
	}

	if (n < 10 || strncmp(lines[0].s, "Date: ", 6) != 0)
		fail("no Date header first", NULL);
	expect_line(&lines[1], "From: ", f->from, "");
	expect_line(&lines[2], "To: ", f->to, "");
	if (strncmp(lines[3].s, "Subject:", 8) != 0)
		fail("no Subject header fourth", NULL);
	for (subject_end = 4; subject_end < n && lines[subject_end].len > 0 &&
		 lines[subject_end].s[0] == ' '; subject_end++)
		;
	check_subject(lines, 3, subject_end, f->subject);
	i = subject_end;
	if (i + 6 > n)
		fail("the headers are cut short", NULL);
	expect_line(&lines[i++], "Message-ID: <", f->id, "@" ID_DOMAIN ">");
	for (size_t k = 0; k < sizeof(tail) / sizeof(tail[0]); k++)
		expect_line(&lines[i++], tail[k], "", "");
	if (lines[i++].len != 0)
		fail("no blank line after the headers", NULL);
	check_body(lines, i, n, f->body);
	free(lines);
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *buf;
	char	   *field[4];
	char		err[512];
	char	   *out;
	size_t		len;
	uint32_t	date = 0;
	struct mail_fields f;
	enum mail_status status;
	const char *problem;
	int			invalid;

	if (size < 4)
		return 0;
	for (int k = 0; k < 4; k++)
		date |= (uint32_t) data[k] << (8 * k);
	data += 4;
	size -= 4;

	buf = malloc(size + 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	field[0] = buf;
	for (int k = 1; k < 4; k++)
	{
		char	   *end = field[k - 1] + strlen(field[k - 1]);

		field[k] = end < buf + size ? end + 1 : end;
	}

	f.from = FROM;
	f.to = field[0];
	f.subject = field[1];
	f.id = field[2];
	f.body = field[3];
	f.id_domain = ID_DOMAIN;
	f.date = (time_t) date;

	problem = mail_address_problem(f.to);
	if (problem == NULL)
	{
		const char *at = strrchr(f.to, '@');

		if (at == NULL || strpbrk(f.to, "\r\n ,<>") != NULL || !mail_domain_valid(at + 1))
			fail("an address accepted that should not be", f.to);
	}
	invalid = problem != NULL || strpbrk(f.subject, "\r\n") != NULL ||
		!oracle_utf8((const unsigned char *) f.subject) ||
		!oracle_utf8((const unsigned char *) f.body) || !oracle_id(f.id);

	err[0] = '\0';
	status = mail_build(&f, &out, &len, err, sizeof(err));
	if (status == MAIL_OK)
	{
		if (invalid)
			fail("a message built from invalid fields", NULL);
		check_message(out, len, &f);
		free(out);
	}
	else if (status == MAIL_INVALID)
	{
		if (!invalid)
			fail("valid fields refused", err);
		if (out != NULL || err[0] == '\0')
			fail("a refusal with output or without a reason", NULL);
	}
	free(buf);
	return 0;
}
