/*
 * clock.c: the monotonic clock the daemon's waits and deadlines use.
 */
#include <time.h>

#include "clock.h"

long long
monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
