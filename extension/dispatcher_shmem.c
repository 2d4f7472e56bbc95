/*-------------------------------------------------------------------------
 *
 * dispatcher_shmem.c
 *		The dispatcher workers' registry in shared memory: where they run,
 *		how to wake them, and whether they have consumer work.
 *
 * Committing backends (commit_hook.c) read it to decide how to tell the
 * world about their events, and wake the workers through it; the workers
 * (dispatcher.c) announce themselves in it and take their work flags from
 * it.  The region is reserved by shmem.c.
 *
 * Shared state and its locking:
 * - dboid and worker_latches[]: written by a worker attaching (its latch;
 *   worker 0 also the database it runs in) and by its on_shmem_exit
 *   callback, under the spinlock `mutex`.  Wakers copy the latches under
 *   mutex and set them after releasing it.  dboid is read without the lock
 *   by committers: an Oid is read atomically, and a stale value only sends
 *   one transaction down the fallback path (a NOTIFY of its own) or raises
 *   a topic flag that the next worker 0 collects.  Worker 0 is the notifier:
 *   appends in dboid flag their topics for it instead of notifying.
 * - consumer_work: every commit that appended in the dispatcher's database
 *   swaps it 0 -> 1 and, only on that transition, sets the latch of every
 *   worker; a worker swaps it 1 -> 0 before a round of in-database
 *   consumers.  A commit after that swap raises it again, so no work is
 *   missed, and a burst of commits costs each worker one wake-up.  Unlike
 *   the topic flags this is not held back by notify_interval: consumers run
 *   as soon as events commit.
 * - consumers_changed: written 1 by a commit that created, reset or
 *   replayed a consumer, swapped back to 0 by a worker, which then looks at
 *   the consumers again even if it had found none.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/spin.h"

#include "eventstore.h"

typedef struct DispatcherShared
{
	slock_t		mutex;
	Oid			dboid;			/* worker 0's database while it is attached */
	/* raised by commits that appended, lowered by a worker starting a round */
	pg_atomic_uint32 consumer_work;
	/* raised by commits that created or reset a consumer */
	pg_atomic_uint32 consumers_changed;
	Latch	   *worker_latches[MAX_DISPATCHER_WORKERS];	/* [0]: the notifier */
} DispatcherShared;

static DispatcherShared *registry = NULL;

Size
dispatcher_shmem_size(void)
{
	return sizeof(DispatcherShared);
}

void
dispatcher_shmem_attach(void *region, bool created)
{
	registry = region;
	if (!created)
		return;
	SpinLockInit(&registry->mutex);
	pg_atomic_init_u32(&registry->consumer_work, 0);
	pg_atomic_init_u32(&registry->consumers_changed, 0);
}

/*
 * The database whose appends flag their topics for the notifier, or
 * InvalidOid (no shared memory, or no worker 0 attached).
 */
Oid
dispatcher_database(void)
{
	return registry != NULL ? registry->dboid : InvalidOid;
}

/* After commit, when a topic flag went up: wake worker 0, the notifier. */
void
dispatcher_wake_notifier(void)
{
	Latch	   *latch;

	SpinLockAcquire(&registry->mutex);
	latch = registry->worker_latches[0];
	SpinLockRelease(&registry->mutex);
	if (latch)
		SetLatch(latch);
}

/*
 * After commit: tell the workers there is consumer work, waking them only
 * when the work flag goes up (they lower it when they start a round).
 */
void
dispatcher_wake_consumers(void)
{
	Latch	   *latches[MAX_DISPATCHER_WORKERS];

	if (pg_atomic_read_u32(&registry->consumer_work) != 0 ||
		pg_atomic_exchange_u32(&registry->consumer_work, 1) != 0)
		return;
	SpinLockAcquire(&registry->mutex);
	memcpy(latches, registry->worker_latches, sizeof(latches));
	SpinLockRelease(&registry->mutex);
	for (int i = 0; i < MAX_DISPATCHER_WORKERS; i++)
	{
		if (latches[i])
			SetLatch(latches[i]);
	}
}

/*
 * After a commit that created, reset or replayed a consumer: every worker
 * looks at the consumers again, at once.  The work flag is lowered first so
 * that the wake-up happens even while it was left up (no consumers).
 */
void
dispatcher_consumers_changed(void)
{
	if (registry == NULL)
		return;
	pg_atomic_write_u32(&registry->consumers_changed, 1);
	pg_atomic_write_u32(&registry->consumer_work, 0);
	dispatcher_wake_consumers();
}

static void
worker_detach(int code, Datum arg)
{
	int			worker = DatumGetInt32(arg);

	SpinLockAcquire(&registry->mutex);
	if (worker == 0)
		registry->dboid = InvalidOid;
	registry->worker_latches[worker] = NULL;
	SpinLockRelease(&registry->mutex);
}

/*
 * A dispatcher worker announces itself: commits that appended now wake it.
 * Worker 0 also becomes the notifier: appends in its database raise topic
 * flags for it instead of notifying themselves.  Undone at exit.
 */
void
dispatcher_worker_attach(int worker)
{
	Assert(worker >= 0 && worker < MAX_DISPATCHER_WORKERS);
	SpinLockAcquire(&registry->mutex);
	if (worker == 0)
		registry->dboid = MyDatabaseId;
	registry->worker_latches[worker] = MyLatch;
	SpinLockRelease(&registry->mutex);
	on_shmem_exit(worker_detach, Int32GetDatum(worker));
}

/* A worker starts a round of consumers: true if commits asked for one. */
bool
dispatcher_take_consumer_work(void)
{
	return pg_atomic_read_u32(&registry->consumer_work) != 0 &&
		pg_atomic_exchange_u32(&registry->consumer_work, 0) != 0;
}

/* A worker learns whether consumers were created or reset since it looked. */
bool
dispatcher_take_consumers_changed(void)
{
	return pg_atomic_read_u32(&registry->consumers_changed) != 0 &&
		pg_atomic_exchange_u32(&registry->consumers_changed, 0) != 0;
}
