/*
 * fuzz_log.c
 *		libFuzzer target: log records made of text from outside.
 *
 * The daemon logs what it does not control: the server's error and notice
 * texts (db.c's notice_receiver, failed statements), the ids and columns of
 * outbox rows, a handler's reason, curl's error buffer.  log_write()
 * (src/log.c) promises that whatever the message, a record is one line:
 * "<time> <level> <message>\n", control characters written as spaces,
 * trailing blanks dropped, at most 4096 bytes, in one write(2).  The input
 * is the level (first byte) and the message; the record is caught on a
 * pipe in place of stderr and checked.  log_level_parse() gets the message
 * too: it may accept only the four names.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sanitizer/common_interface_defs.h>

#include "log.h"

static int	real_stderr = -1;
static int	pipe_fds[2];

static void
fail(const char *what)
{
	dprintf(real_stderr >= 0 ? real_stderr : 2, "fuzz_log: %s\n", what);
	abort();
}

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	/* sanitizer reports keep going to the real stderr while fd 2 is the pipe */
	real_stderr = dup(STDERR_FILENO);
	if (real_stderr < 0 || pipe(pipe_fds) < 0 ||
		fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK) < 0)
	{
		perror("fuzz_log: setup");
		abort();
	}
	__sanitizer_set_report_fd((void *) (intptr_t) real_stderr);
	log_set_level(LOG_LEVEL_DEBUG);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char record[8192];
	static const char *const names[] = {"debug ", "info ", "warning ", "error "};
	enum log_level level;
	enum log_level parsed;
	char	   *msg;
	ssize_t		n;
	const char *rest;

	if (size < 1)
		return 0;
	level = (enum log_level) (data[0] % 4);
	msg = malloc(size);
	if (msg == NULL)
		return 0;
	memcpy(msg, data + 1, size - 1);
	msg[size - 1] = '\0';

	if (log_level_parse(msg, &parsed) == 0 &&
		(strlen(msg) + 1 != strlen(names[parsed]) ||
		 strncmp(msg, names[parsed], strlen(msg)) != 0))
		fail("log_level_parse accepts a name that is not a level");

	/* the record, through the pipe (64 KiB of buffer: never blocks) */
	fflush(stderr);
	if (dup2(pipe_fds[1], STDERR_FILENO) < 0)
		fail("dup2");
	log_write(level, "%s", msg);
	dup2(real_stderr, STDERR_FILENO);
	n = read(pipe_fds[0], record, sizeof(record));
	if (n <= 0)
		fail("no record written");
	if (read(pipe_fds[0], record, 1) > 0)
		fail("a record of more than 8192 bytes");
	if (n > 4096)
		fail("a record of more than 4096 bytes");
	if (record[n - 1] != '\n')
		fail("a record that does not end in a newline");
	for (ssize_t i = 0; i < n - 1; i++)
		if ((unsigned char) record[i] < 0x20 || record[i] == 0x7f)
			fail("a control character inside a record");
	/* "YYYY-MM-DDTHH:MM:SS.mmmZ level message" */
	if (n < 25 || record[4] != '-' || record[10] != 'T' || record[23] != 'Z' ||
		record[24] != ' ')
		fail("a record without its time stamp");
	rest = record + 25;
	if (strncmp(rest, names[level], strlen(names[level])) != 0)
		fail("a record without its level");
	/* the message's trailing blanks are dropped (an empty one leaves "level ") */
	if (record + n - 1 > rest + strlen(names[level]) && record[n - 2] == ' ')
		fail("a record ending in a blank");
	free(msg);
	return 0;
}
