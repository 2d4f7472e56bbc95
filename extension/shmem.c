/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		What the extension keeps in shared memory, and the one pair of hooks
 *		that reserves and sets it up.
 *
 * Four files own a region of shared memory each, and only they know its
 * layout and its locking (see their headers):
 * - notify.c: the pending-notification slot of every (database, topic);
 * - dispatcher_shmem.c: the dispatcher's registry (the databases served,
 *   their workers' latches and work flags, the launcher's latch);
 * - stats.c: the cumulative counters of eventstore.stats;
 * - horizon.c: each backend's lowest position in flight, for the read
 *   horizon.
 *
 * Only a preloaded library gets shared memory.  Here one shmem_request_hook
 * asks every owner for its size, and one shmem_startup_hook creates (or,
 * in a backend started later under EXEC_BACKEND, finds) each owner's
 * region under its own ShmemInitStruct name, zeroed when new, and hands it
 * to the owner, which initializes its locks and atomics.  One chain rather
 * than a pair of hooks per owner: the regions exist together or not at all
 * (the commit hook checks one of them and uses both), the extension's whole
 * footprint is listed in one table below, and the chaining of the previous
 * hooks is written once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "eventstore.h"

typedef struct ShmemOwner
{
	const char *name;			/* of its ShmemInitStruct */
	Size		(*size) (void);
	/* given its region, zeroed when created (holding AddinShmemInitLock) */
	void		(*attach) (void *region, bool created);
} ShmemOwner;

static const ShmemOwner owners[] = {
	{"eventstore notify", notify_shmem_size, notify_shmem_attach},
	{"eventstore dispatcher", dispatcher_shmem_size, dispatcher_shmem_attach},
	{"eventstore stats", stats_shmem_size, stats_shmem_attach},
	{"eventstore horizon", horizon_shmem_size, horizon_shmem_attach},
};

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
eventstore_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	for (size_t i = 0; i < lengthof(owners); i++)
		RequestAddinShmemSpace(owners[i].size());
}

static void
eventstore_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	for (size_t i = 0; i < lengthof(owners); i++)
	{
		Size		size = owners[i].size();
		bool		found;
		void	   *region = ShmemInitStruct(owners[i].name, size, &found);

		if (!found)
			memset(region, 0, size);
		owners[i].attach(region, !found);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Called from _PG_init: installs the hooks when the library is preloaded. */
void
shmem_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = eventstore_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = eventstore_shmem_startup;
}
