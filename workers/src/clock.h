/*
 * clock.h: the monotonic clock the daemon's waits and deadlines use.
 */
#ifndef EVENTSTORE_WORKER_CLOCK_H
#define EVENTSTORE_WORKER_CLOCK_H

/* Milliseconds on the monotonic clock (not wall time: immune to clock steps). */
extern long long monotonic_ms(void);

#endif
