/*
 * text.h
 *		Growable strings, and UTF-8 sequences: what the log writer, the mail
 *		builder and the HTTP pages build their text with.
 */
#ifndef WORKER_TEXT_H
#define WORKER_TEXT_H

#include <stddef.h>

/*
 * A growable string, kept NUL-terminated; zero it to start.  A failed
 * allocation sets failed, and every later append does nothing.  free(data)
 * at the end.
 */
struct strbuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	int			failed;
};

void		strbuf_add(struct strbuf *b, const char *s, size_t n);
void		strbuf_str(struct strbuf *b, const char *s);
void		strbuf_printf(struct strbuf *b, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

/*
 * The length of the well-formed UTF-8 sequence at s (n bytes available,
 * n > 0), or 0 when there is none: a stray byte, a truncated sequence, an
 * overlong form, a surrogate or a code point past U+10FFFF.
 */
size_t		utf8_sequence(const unsigned char *s, size_t n);

#endif
