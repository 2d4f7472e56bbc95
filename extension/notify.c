/*-------------------------------------------------------------------------
 *
 * notify.c
 *		Telling listeners that a topic has new events, without a NOTIFY per
 *		appending transaction.
 *
 * Every committing NOTIFY takes one cluster-wide lock, which caps appends at
 * about a third of what plain inserts reach (DESIGN.md decision 3).  So when
 * the library is preloaded, an appending transaction only remembers which
 * topics it wrote to, and at commit (XactCallback, after the commit is
 * visible) it raises a flag per topic in shared memory and sets the
 * dispatcher's latch; the dispatcher (dispatcher.c) sends at most one
 * NOTIFY per flagged topic per eventstore.notify_interval.
 *
 * Shared state and its locking:
 * - slots: one per (database, topic) ever appended to since the postmaster
 *   started, never freed.  Assigning a slot (once per topic) and reading the
 *   slot table's size happen under the spinlock `mutex`; a backend then keeps
 *   the slot number in a local hash.
 * - slot->pending is an atomic flag.  A committing appender swaps it 0 -> 1
 *   and, only on that transition, sets the dispatcher's latch; the dispatcher
 *   swaps it 1 -> 0 before it notifies.  An append that committed before the
 *   dispatcher's swap is covered by the NOTIFY that follows the swap; one that
 *   commits after it raises the flag again.  Nothing is ever missed, and a
 *   burst of commits costs the dispatcher one wake-up.
 * - dispatcher_dboid and dispatcher_latch: set by dispatcher worker 0, the
 *   one that sends NOTIFYs, while it is attached (under mutex).
 * - consumer_work and worker_latches: every commit that appended in the
 *   dispatcher's database swaps consumer_work 0 -> 1 and, on that
 *   transition, sets the latch of every dispatcher worker; a worker swaps it
 *   back to 0 before a round of in-database consumers.  Unlike the topic
 *   flags this is not held back by notify_interval: consumers run as soon
 *   as events commit.
 *
 * Within a transaction the remembered topics carry the subtransaction level
 * that appended them: a rolled-back subtransaction forgets its topics, a
 * committed one hands them to its parent, so a rollback never notifies.
 *
 * Fallback: without shared memory (library not preloaded), when the session
 * is not in the dispatcher's database, or when the dispatcher is not running,
 * the append queues an ordinary transactional NOTIFY (Async_Notify), which
 * PostgreSQL sends at commit and drops on rollback.  Correct, but slow under
 * concurrency; documented in the README.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "eventstore.h"

#define MAX_TOPIC_SLOTS 1024

typedef struct TopicSlot
{
	Oid			dboid;
	char		name[NAMEDATALEN];
	pg_atomic_uint32 pending;
} TopicSlot;

typedef struct NotifyShared
{
	slock_t		mutex;
	int			nslots;
	Oid			dispatcher_dboid;
	Latch	   *dispatcher_latch;
	/* raised by commits that appended, lowered by a worker starting a round */
	pg_atomic_uint32 consumer_work;
	/* raised by commits that created or reset a consumer */
	pg_atomic_uint32 consumers_changed;
	Latch	   *worker_latches[MAX_DISPATCHER_WORKERS];
	TopicSlot	slots[MAX_TOPIC_SLOTS];
} NotifyShared;

/*
 * A topic this transaction appended to, and the nesting level that did.
 * slot -1 stands for the topics that went the fallback way (Async_Notify):
 * nothing to do for them at commit, but PREPARE must still be refused.
 */
typedef struct PendingTopic
{
	int			slot;
	int			level;
} PendingTopic;

#define FALLBACK_SLOT (-1)

typedef struct SlotCacheEntry
{
	char		name[NAMEDATALEN];	/* hash key */
	int			slot;			/* -1: the slot table is full */
} SlotCacheEntry;

static NotifyShared *shared = NULL;
static HTAB *slot_cache = NULL;
static List *pending_topics = NIL;	/* of PendingTopic, TopTransactionContext */

static bool consumers_changed = false;	/* by this transaction */

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
notify_shmem_size(void)
{
	return sizeof(NotifyShared);
}

static void
notify_shmem_request_hook(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(notify_shmem_size());
}

static void
notify_shmem_startup_hook(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("eventstore notify", notify_shmem_size(), &found);
	if (!found)
	{
		memset(shared, 0, notify_shmem_size());
		SpinLockInit(&shared->mutex);
		for (int i = 0; i < MAX_TOPIC_SLOTS; i++)
			pg_atomic_init_u32(&shared->slots[i].pending, 0);
		pg_atomic_init_u32(&shared->consumer_work, 0);
		pg_atomic_init_u32(&shared->consumers_changed, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* The slot of a topic of this database, assigning one if needed; -1 if full. */
static int
slot_for_topic(const char *topic)
{
	SlotCacheEntry *entry;
	char		key[NAMEDATALEN];
	bool		found;
	int			slot = -1;

	if (slot_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(SlotCacheEntry);
		slot_cache = hash_create("eventstore topic slots", 64, &ctl,
								 HASH_ELEM | HASH_STRINGS);
	}
	strlcpy(key, topic, NAMEDATALEN);
	entry = hash_search(slot_cache, key, HASH_FIND, NULL);
	if (entry)
		return entry->slot;

	SpinLockAcquire(&shared->mutex);
	for (int i = 0; i < shared->nslots; i++)
	{
		if (shared->slots[i].dboid == MyDatabaseId &&
			strcmp(shared->slots[i].name, key) == 0)
		{
			slot = i;
			break;
		}
	}
	if (slot < 0 && shared->nslots < MAX_TOPIC_SLOTS)
	{
		slot = shared->nslots++;
		shared->slots[slot].dboid = MyDatabaseId;
		memcpy(shared->slots[slot].name, key, NAMEDATALEN);
	}
	SpinLockRelease(&shared->mutex);

	entry = hash_search(slot_cache, key, HASH_ENTER, &found);
	entry->slot = slot;
	return slot;
}

static void
remember_slot(int slot)
{
	ListCell   *lc;
	PendingTopic *p;
	MemoryContext old;

	foreach(lc, pending_topics)
	{
		if (((PendingTopic *) lfirst(lc))->slot == slot)
			return;				/* at this level or an outer one already */
	}
	old = MemoryContextSwitchTo(TopTransactionContext);
	p = palloc(sizeof(PendingTopic));
	p->slot = slot;
	p->level = GetCurrentTransactionNestLevel();
	pending_topics = lappend(pending_topics, p);
	MemoryContextSwitchTo(old);
}

/*
 * Called by an append that stored at least one event in topic: make sure
 * listeners hear about the topic once this transaction commits.
 */
void
notify_topic_appended(const char *topic)
{
	if (shared != NULL && shared->dispatcher_dboid == MyDatabaseId)
	{
		int			slot = slot_for_topic(topic);

		if (slot >= 0)
		{
			remember_slot(slot);
			return;
		}
	}
	Async_Notify(EVENTSTORE_CHANNEL, topic);
	remember_slot(FALLBACK_SLOT);
}

/*
 * After commit: tell the consumer workers there is work, waking them only
 * when the work flag goes up (they lower it when they start a round).
 */
static void
signal_consumer_work(void)
{
	Latch	   *latches[MAX_DISPATCHER_WORKERS];

	if (pg_atomic_read_u32(&shared->consumer_work) != 0 ||
		pg_atomic_exchange_u32(&shared->consumer_work, 1) != 0)
		return;
	SpinLockAcquire(&shared->mutex);
	memcpy(latches, shared->worker_latches, sizeof(latches));
	SpinLockRelease(&shared->mutex);
	for (int i = 0; i < MAX_DISPATCHER_WORKERS; i++)
	{
		if (latches[i])
			SetLatch(latches[i]);
	}
}

/* After commit: raise the flags, wake the dispatcher if one went up. */
static void
signal_pending_topics(void)
{
	ListCell   *lc;
	bool		wake = false;
	bool		in_dispatcher_db = false;
	Latch	   *latch;

	foreach(lc, pending_topics)
	{
		int			n = ((PendingTopic *) lfirst(lc))->slot;
		TopicSlot  *slot;

		if (n == FALLBACK_SLOT)
			continue;
		in_dispatcher_db = true;
		slot = &shared->slots[n];
		if (pg_atomic_read_u32(&slot->pending) == 0 &&
			pg_atomic_exchange_u32(&slot->pending, 1) == 0)
			wake = true;
	}
	if (in_dispatcher_db)
		signal_consumer_work();
	if (!wake)
		return;
	SpinLockAcquire(&shared->mutex);
	latch = shared->dispatcher_latch;
	SpinLockRelease(&shared->mutex);
	if (latch)
		SetLatch(latch);
}

static void
notify_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (pending_topics != NIL)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that appended events"),
						 errdetail("Listeners are told about new events when the appending transaction commits, and a prepared transaction commits elsewhere.")));
			break;
		case XACT_EVENT_COMMIT:
			if (pending_topics != NIL)
				signal_pending_topics();
			pending_topics = NIL;
			if (consumers_changed && shared != NULL)
			{
				pg_atomic_write_u32(&shared->consumers_changed, 1);
				pg_atomic_write_u32(&shared->consumer_work, 0);
				signal_consumer_work();
			}
			consumers_changed = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			pending_topics = NIL;
			consumers_changed = false;
			break;
		default:
			break;
	}
}

static void
notify_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	ListCell   *lc;

	if (pending_topics == NIL)
		return;
	foreach(lc, pending_topics)
	{
		PendingTopic *p = lfirst(lc);

		if (p->level < level)
			continue;
		if (event == SUBXACT_EVENT_ABORT_SUB)
			pending_topics = foreach_delete_current(pending_topics, lc);
		else if (event == SUBXACT_EVENT_COMMIT_SUB)
			p->level = level - 1;
	}
}

/* Called from _PG_init. */
void
notify_init(void)
{
	if (process_shared_preload_libraries_in_progress)
	{
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = notify_shmem_request_hook;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = notify_shmem_startup_hook;
	}
	RegisterXactCallback(notify_xact_callback, NULL);
	RegisterSubXactCallback(notify_subxact_callback, NULL);
}

static void
worker_detach(int code, Datum arg)
{
	int			worker = DatumGetInt32(arg);

	SpinLockAcquire(&shared->mutex);
	if (worker == 0)
	{
		shared->dispatcher_dboid = InvalidOid;
		shared->dispatcher_latch = NULL;
	}
	shared->worker_latches[worker] = NULL;
	SpinLockRelease(&shared->mutex);
}

/*
 * A dispatcher worker announces itself: commits that appended now wake it.
 * Worker 0 also sends the NOTIFYs: appends in its database raise topic flags
 * for it instead of notifying themselves.
 */
void
notify_worker_attach(int worker)
{
	Assert(worker >= 0 && worker < MAX_DISPATCHER_WORKERS);
	SpinLockAcquire(&shared->mutex);
	if (worker == 0)
	{
		shared->dispatcher_dboid = MyDatabaseId;
		shared->dispatcher_latch = MyLatch;
	}
	shared->worker_latches[worker] = MyLatch;
	SpinLockRelease(&shared->mutex);
	on_shmem_exit(worker_detach, Int32GetDatum(worker));
}

/*
 * eventstore.consumers_changed(): called by the functions that create,
 * reset or replay consumers, so that the dispatcher workers look at the
 * consumers as soon as this transaction commits, even when they had none.
 */
PG_FUNCTION_INFO_V1(eventstore_consumers_changed);
Datum
eventstore_consumers_changed(PG_FUNCTION_ARGS)
{
	consumers_changed = true;
	PG_RETURN_VOID();
}

/* A worker learns whether consumers were created or reset since it looked. */
bool
notify_worker_consumers_changed(void)
{
	return pg_atomic_read_u32(&shared->consumers_changed) != 0 &&
		pg_atomic_exchange_u32(&shared->consumers_changed, 0) != 0;
}

/* A worker starts a round of consumers: true if commits asked for one. */
bool
notify_worker_take_work(void)
{
	return pg_atomic_read_u32(&shared->consumer_work) != 0 &&
		pg_atomic_exchange_u32(&shared->consumer_work, 0) != 0;
}

/*
 * The dispatcher takes the flagged topics of its database (at most max):
 * copies their names and lowers their flags.  Returns how many.
 */
int
notify_dispatcher_collect(char (*names)[NAMEDATALEN], int max)
{
	int			nslots;
	int			n = 0;

	SpinLockAcquire(&shared->mutex);
	nslots = shared->nslots;
	SpinLockRelease(&shared->mutex);

	for (int i = 0; i < nslots && n < max; i++)
	{
		TopicSlot  *slot = &shared->slots[i];

		if (slot->dboid != MyDatabaseId ||
			pg_atomic_read_u32(&slot->pending) == 0)
			continue;
		if (pg_atomic_exchange_u32(&slot->pending, 0) == 1)
			memcpy(names[n++], slot->name, NAMEDATALEN);
	}
	return n;
}
