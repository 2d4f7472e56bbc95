/*-------------------------------------------------------------------------
 *
 * dispatcher_shmem.c
 *		The dispatcher's registry in shared memory: which databases are
 *		served, where each one's workers wait, whether they have consumer
 *		work, and how to reach the launcher.
 *
 * The launcher (dispatcher_launcher.c) gives each database it serves an
 * entry and starts that database's workers (dispatcher.c) with the entry's
 * number; committing backends (commit_hook.c) find the entry of their own
 * database to decide how to tell the world about their events and to wake
 * that database's workers, and no other.  Statements that need a database
 * without connections (DROP DATABASE and its kin, dispatcher_utility.c)
 * hold it here so that its workers leave and are not started again.  The
 * region is reserved by shmem.c; it has one entry per possible background
 * worker (max_worker_processes), since each served database takes at least
 * one.
 *
 * Shared state and its locking:
 * - an entry's dboid: written by the launcher only (claiming and freeing
 *   the entry), under the spinlock `mutex`.  Committers read it without
 *   the lock to find their database's entry: an Oid is read atomically, and
 *   a stale value only sends one transaction down the fallback path (a
 *   NOTIFY of its own) or raises a topic flag that the database's next
 *   worker 0 collects.  The launcher frees an entry only once all its
 *   workers have exited.
 * - worker_latches[]: written by a worker attaching (its latch) and by its
 *   on_shmem_exit callback, under mutex.  Wakers copy the latches under
 *   mutex and set them after releasing it.  Worker 0 is its database's
 *   notifier: while its latch is there, appends in the database flag their
 *   topics for it instead of notifying (read without the lock, like dboid).
 * - consumer_work: every commit that appended in the database swaps it
 *   0 -> 1 and, only on that transition, sets the latch of every worker of
 *   that database; a worker swaps it 1 -> 0 before a round of in-database
 *   consumers.  A commit after that swap raises it again, so no work is
 *   missed, and a burst of commits costs each worker one wake-up.  Unlike
 *   the topic flags this is not held back by notify_interval: consumers run
 *   as soon as events commit.
 * - consumers_changed: a bit per worker, all set by a commit that created,
 *   reset or replayed a consumer or changed its members (or a member that
 *   retired); each worker clears its own bit and then looks at the
 *   consumers again even if it had found none.  One flag for all would be
 *   taken by the first worker to wake, and the others would find the new
 *   consumer's members only at their next fallback poll.
 * - absent: set by a worker that found the extension missing in a database
 *   served because every database is ('*'); read by the launcher, which
 *   then frees the entry and looks again later.
 * - held[]: databases a statement needs without connections, with the
 *   holding backend's pid, under mutex: their workers exit, and the
 *   launcher starts none, until the holder's transaction ends.
 * - launcher_latch, launcher_request: the launcher's latch (under mutex)
 *   and a flag that asks it to look at the databases now (CREATE DATABASE,
 *   CREATE EXTENSION, a consumer created where nobody serves), swapped
 *   0 -> 1 by the asker, which sets the latch only on that transition.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "postmaster/bgworker_internals.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "eventstore.h"

/* Databases held for a statement at once (DROP DATABASE, ...). */
#define MAX_HELD_DATABASES 8


/* consumers_changed with the bit of every worker set */
#define ALL_WORKERS ((uint32) ((1 << MAX_DISPATCHER_WORKERS) - 1))
StaticAssertDecl(MAX_DISPATCHER_WORKERS <= 32, "a bit per worker in a uint32");

typedef struct DispatcherDatabase
{
	Oid			dboid;			/* InvalidOid: a free entry */
	bool		absent;			/* a worker found no extension */
	/* raised by commits that appended, lowered by a worker starting a round */
	pg_atomic_uint32 consumer_work;
	/* raised by commits that created or reset a consumer */
	pg_atomic_uint32 consumers_changed;
	Latch	   *worker_latches[MAX_DISPATCHER_WORKERS];	/* [0]: the notifier */
} DispatcherDatabase;

typedef struct HeldDatabase
{
	Oid			dboid;
	int			pid;			/* of the backend holding it */
	TimestampTz until;			/* in case the holder never lets go */
} HeldDatabase;

typedef struct DispatcherShared
{
	slock_t		mutex;
	Latch	   *launcher_latch;
	pg_atomic_uint32 launcher_request;
	pg_atomic_uint32 launcher_generation;	/* one more at each launcher start */
	HeldDatabase held[MAX_HELD_DATABASES];
	int			ndatabases;
	DispatcherDatabase databases[FLEXIBLE_ARRAY_MEMBER];
} DispatcherShared;

static DispatcherShared *registry = NULL;

/* This backend's guess at its database's entry (checked at every use). */
static int	my_entry = -1;

Size
dispatcher_shmem_size(void)
{
	return add_size(offsetof(DispatcherShared, databases),
					mul_size(max_worker_processes, sizeof(DispatcherDatabase)));
}

void
dispatcher_shmem_attach(void *region, bool created)
{
	registry = region;
	if (!created)
		return;
	SpinLockInit(&registry->mutex);
	pg_atomic_init_u32(&registry->launcher_request, 0);
	pg_atomic_init_u32(&registry->launcher_generation, 0);
	registry->ndatabases = max_worker_processes;
	for (int i = 0; i < registry->ndatabases; i++)
	{
		pg_atomic_init_u32(&registry->databases[i].consumer_work, 0);
		pg_atomic_init_u32(&registry->databases[i].consumers_changed, 0);
	}
}

int
dispatcher_max_databases(void)
{
	return registry != NULL ? registry->ndatabases : 0;
}

/* The entry of this backend's database, or NULL when it is not served. */
static DispatcherDatabase *
own_entry(void)
{
	if (registry == NULL || !OidIsValid(MyDatabaseId))
		return NULL;
	if (my_entry >= 0 && registry->databases[my_entry].dboid == MyDatabaseId)
		return &registry->databases[my_entry];
	for (int i = 0; i < registry->ndatabases; i++)
	{
		if (registry->databases[i].dboid == MyDatabaseId)
		{
			my_entry = i;
			return &registry->databases[i];
		}
	}
	return NULL;
}

/*
 * Whether this backend's database has a notifier (its worker 0), so that
 * appends flag their topics instead of notifying.
 */
bool
dispatcher_serves_own_database(void)
{
	DispatcherDatabase *db = own_entry();

	return db != NULL && db->worker_latches[0] != NULL;
}

static void
set_latches(DispatcherDatabase *db, int upto)
{
	Latch	   *latches[MAX_DISPATCHER_WORKERS];

	SpinLockAcquire(&registry->mutex);
	memcpy(latches, db->worker_latches, sizeof(latches));
	SpinLockRelease(&registry->mutex);
	for (int i = 0; i < upto; i++)
	{
		if (latches[i])
			SetLatch(latches[i]);
	}
}

/* After commit, when a topic flag went up: wake the database's notifier. */
void
dispatcher_wake_notifier(void)
{
	DispatcherDatabase *db = own_entry();

	if (db != NULL)
		set_latches(db, 1);
}

/*
 * After commit: tell this database's workers there is consumer work,
 * waking them only when the work flag goes up (they lower it when they
 * start a round).
 */
void
dispatcher_wake_consumers(void)
{
	DispatcherDatabase *db = own_entry();

	if (db == NULL ||
		pg_atomic_read_u32(&db->consumer_work) != 0 ||
		pg_atomic_exchange_u32(&db->consumer_work, 1) != 0)
		return;
	set_latches(db, MAX_DISPATCHER_WORKERS);
}

/*
 * After a commit that created, reset or replayed a consumer: every worker
 * of the database looks at the consumers again, at once.  The work flag is
 * lowered first so that the wake-up happens even while it was left up (no
 * consumers).  Where nobody serves the database, the launcher is asked to
 * look at it.
 */
void
dispatcher_consumers_changed(void)
{
	DispatcherDatabase *db;

	if (registry == NULL)
		return;
	db = own_entry();
	if (db == NULL)
	{
		dispatcher_request_launcher();
		return;
	}
	pg_atomic_write_u32(&db->consumers_changed, ALL_WORKERS);
	pg_atomic_write_u32(&db->consumer_work, 0);
	dispatcher_wake_consumers();
}

/* Ask the launcher to look at the databases now. */
void
dispatcher_request_launcher(void)
{
	Latch	   *latch;

	if (registry == NULL ||
		pg_atomic_read_u32(&registry->launcher_request) != 0 ||
		pg_atomic_exchange_u32(&registry->launcher_request, 1) != 0)
		return;
	SpinLockAcquire(&registry->mutex);
	latch = registry->launcher_latch;
	SpinLockRelease(&registry->mutex);
	if (latch)
		SetLatch(latch);
}

/* The launcher: whether someone asked it to look (lowering the flag). */
bool
dispatcher_take_launcher_request(void)
{
	return pg_atomic_read_u32(&registry->launcher_request) != 0 &&
		pg_atomic_exchange_u32(&registry->launcher_request, 0) != 0;
}

static void
launcher_detach(int code, Datum arg)
{
	SpinLockAcquire(&registry->mutex);
	registry->launcher_latch = NULL;
	SpinLockRelease(&registry->mutex);
}

/* The launcher announces itself; returns its generation. */
uint32
dispatcher_launcher_attach(void)
{
	SpinLockAcquire(&registry->mutex);
	registry->launcher_latch = MyLatch;
	SpinLockRelease(&registry->mutex);
	on_shmem_exit(launcher_detach, (Datum) 0);
	return pg_atomic_add_fetch_u32(&registry->launcher_generation, 1);
}

/* A worker's check: the launcher that started it is still the one. */
bool
dispatcher_launcher_is(uint32 generation)
{
	return pg_atomic_read_u32(&registry->launcher_generation) == generation;
}

/* Wakes every worker of a database. */
void
dispatcher_wake_database(Oid dboid)
{
	for (int i = 0; i < registry->ndatabases; i++)
	{
		if (registry->databases[i].dboid == dboid)
			set_latches(&registry->databases[i], MAX_DISPATCHER_WORKERS);
	}
}

/* The launcher: the database an entry serves (InvalidOid: free). */
Oid
dispatcher_entry_database(int entry)
{
	return registry->databases[entry].dboid;
}

/* The launcher: whether a worker of the entry found no extension. */
bool
dispatcher_entry_absent(int entry)
{
	return registry->databases[entry].absent;
}

/*
 * The launcher claims a free entry for a database (-1: none is free), or
 * frees one (dboid InvalidOid) once all its workers have exited.
 */
int
dispatcher_claim_entry(Oid dboid)
{
	int			found = -1;

	SpinLockAcquire(&registry->mutex);
	for (int i = 0; i < registry->ndatabases && found < 0; i++)
	{
		DispatcherDatabase *db = &registry->databases[i];

		if (OidIsValid(db->dboid))
			continue;
		db->dboid = dboid;
		db->absent = false;
		memset(db->worker_latches, 0, sizeof(db->worker_latches));
		found = i;
	}
	SpinLockRelease(&registry->mutex);
	if (found >= 0)
	{
		/* a first round at start, like a commit asking for one */
		pg_atomic_write_u32(&registry->databases[found].consumers_changed, ALL_WORKERS);
		pg_atomic_write_u32(&registry->databases[found].consumer_work, 0);
	}
	return found;
}

void
dispatcher_free_entry(int entry)
{
	SpinLockAcquire(&registry->mutex);
	registry->databases[entry].dboid = InvalidOid;
	SpinLockRelease(&registry->mutex);
}

static void
worker_detach(int code, Datum arg)
{
	int			entry = DatumGetInt32(arg) / MAX_DISPATCHER_WORKERS;
	int			worker = DatumGetInt32(arg) % MAX_DISPATCHER_WORKERS;

	SpinLockAcquire(&registry->mutex);
	registry->databases[entry].worker_latches[worker] = NULL;
	SpinLockRelease(&registry->mutex);
}

/*
 * A dispatcher worker announces itself in its database's entry: commits
 * that appended there now wake it.  Worker 0 also becomes the notifier:
 * appends in its database raise topic flags for it instead of notifying.
 * Undone at exit.  False if the entry is not its database's (any more).
 */
bool
dispatcher_worker_attach(int entry, int worker)
{
	DispatcherDatabase *db = &registry->databases[entry];
	bool		ok;

	Assert(worker >= 0 && worker < MAX_DISPATCHER_WORKERS);
	Assert(entry >= 0 && entry < registry->ndatabases);
	SpinLockAcquire(&registry->mutex);
	ok = db->dboid == MyDatabaseId;
	if (ok)
		db->worker_latches[worker] = MyLatch;
	SpinLockRelease(&registry->mutex);
	if (ok)
		on_shmem_exit(worker_detach,
					  Int32GetDatum(entry * MAX_DISPATCHER_WORKERS + worker));
	my_entry = entry;
	return ok;
}

/* A worker tells the launcher that its database has no extension. */
void
dispatcher_worker_found_absent(void)
{
	DispatcherDatabase *db = own_entry();

	if (db != NULL)
		db->absent = true;
}

/* A worker starts a round of consumers: true if commits asked for one. */
bool
dispatcher_take_consumer_work(void)
{
	DispatcherDatabase *db = own_entry();

	return db != NULL && pg_atomic_read_u32(&db->consumer_work) != 0 &&
		pg_atomic_exchange_u32(&db->consumer_work, 0) != 0;
}

/* Worker worker learns whether consumers were created or reset since it looked. */
bool
dispatcher_take_consumers_changed(int worker)
{
	DispatcherDatabase *db = own_entry();
	uint32		bit = (uint32) 1 << worker;

	return db != NULL && (pg_atomic_read_u32(&db->consumers_changed) & bit) != 0 &&
		(pg_atomic_fetch_and_u32(&db->consumers_changed, ~bit) & bit) != 0;
}

/*
 * Whether a statement holds the database (its workers must leave, and
 * none may start); forgets holds whose time ran out.
 */
bool
dispatcher_database_held(Oid dboid)
{
	bool		held = false;
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&registry->mutex);
	for (int i = 0; i < MAX_HELD_DATABASES; i++)
	{
		HeldDatabase *h = &registry->held[i];

		if (OidIsValid(h->dboid) && h->until < now)
			h->dboid = InvalidOid;
		if (OidIsValid(h->dboid) && h->dboid == dboid)
			held = true;
	}
	SpinLockRelease(&registry->mutex);
	return held;
}

/*
 * Holds a database for this backend for at most timeout_ms, waking its
 * workers so that they see it.  False when there is no room for another
 * hold (then nothing waits for the workers).
 */
bool
dispatcher_hold_database(Oid dboid, int timeout_ms)
{
	bool		held = false;

	if (registry == NULL)
		return false;
	SpinLockAcquire(&registry->mutex);
	for (int i = 0; i < MAX_HELD_DATABASES && !held; i++)
	{
		HeldDatabase *h = &registry->held[i];

		if (OidIsValid(h->dboid))
			continue;
		h->dboid = dboid;
		h->pid = MyProcPid;
		h->until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
		held = true;
	}
	SpinLockRelease(&registry->mutex);
	dispatcher_wake_database(dboid);
	return held;
}

/* Whether any worker of the database is still attached. */
bool
dispatcher_database_has_workers(Oid dboid)
{
	bool		any = false;

	SpinLockAcquire(&registry->mutex);
	for (int i = 0; i < registry->ndatabases; i++)
	{
		DispatcherDatabase *db = &registry->databases[i];

		if (db->dboid != dboid)
			continue;
		for (int w = 0; w < MAX_DISPATCHER_WORKERS; w++)
		{
			if (db->worker_latches[w] != NULL)
				any = true;
		}
	}
	SpinLockRelease(&registry->mutex);
	return any;
}

/* At the end of the holder's transaction: let go of its databases. */
void
dispatcher_release_held(void)
{
	bool		any = false;

	if (registry == NULL)
		return;
	SpinLockAcquire(&registry->mutex);
	for (int i = 0; i < MAX_HELD_DATABASES; i++)
	{
		if (registry->held[i].pid == MyProcPid)
		{
			registry->held[i].dboid = InvalidOid;
			registry->held[i].pid = 0;
			any = true;
		}
	}
	SpinLockRelease(&registry->mutex);
	if (any)
		dispatcher_request_launcher();	/* serve it again if it is still there */
}
