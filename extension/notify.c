/*-------------------------------------------------------------------------
 *
 * notify.c
 *		Telling listeners that a topic has new events, without a NOTIFY per
 *		appending transaction: the per-(database, topic) pending flags in
 *		shared memory, and the notifier task that sends them.
 *
 * Every committing NOTIFY takes one cluster-wide lock (the notification
 * queue's), which caps appends at about a third of what plain inserts
 * reach.  So when the library is preloaded, a transaction that appended in
 * a database the dispatcher serves raises, once committed, a flag per topic
 * here (commit_hook.c), and that database's worker 0 runs the "notify" task
 * (dispatcher_tasks.c): one NOTIFY eventstore, '<topic>' per flagged topic,
 * at most once per eventstore.notify_interval, so that a burst of commits
 * costs one NOTIFY per topic per interval.  A notification is a hint, not
 * data: listeners read the events themselves.
 *
 * Shared state and its locking (the region is reserved by shmem.c):
 * - slots: one per (database, topic) ever appended to since the postmaster
 *   started, never freed.  Assigning a slot (once per topic) and reading the
 *   slot table's size happen under the spinlock `mutex`; a backend then keeps
 *   the slot number in a local hash.  A slot's database and name never
 *   change once assigned, so they are read without the lock.
 * - slot->pending is an atomic flag.  A committing appender swaps it 0 -> 1
 *   and, only on that transition, wakes the notifier; the notifier swaps it
 *   1 -> 0 before it notifies.  An append that committed before the
 *   notifier's swap is covered by the NOTIFY that follows the swap; one that
 *   commits after it raises the flag again.  Nothing is ever missed, and a
 *   burst of commits costs the notifier one wake-up.
 *
 * The table has eventstore.max_topic_slots slots (PGC_POSTMASTER, 1024 by
 * default), shared by every database the dispatcher serves.  Topics beyond
 * them get no slot: their appends notify themselves (commit_hook.c's
 * fallback), as the README says.  Each database's notifier (its worker 0)
 * sends the NOTIFYs of its own database's slots only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/spin.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "eventstore.h"

/* Topics one run of the notifier can notify; more wait for the next run. */
#define MAX_TOPICS_PER_RUN 256

typedef struct TopicSlot
{
	Oid			dboid;
	char		name[NAMEDATALEN];
	pg_atomic_uint32 pending;
} TopicSlot;

typedef struct TopicSlots
{
	slock_t		mutex;
	int			maxslots;		/* eventstore.max_topic_slots at start */
	int			nslots;
	TopicSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} TopicSlots;

typedef struct SlotCacheEntry
{
	char		name[NAMEDATALEN];	/* hash key */
	int			slot;			/* -1: the slot table is full */
} SlotCacheEntry;

static TopicSlots *shared = NULL;
static HTAB *slot_cache = NULL;

/* The notifier's own state (worker 0 only). */
static TimestampTz next_notify = 0;
static char (*topics)[NAMEDATALEN] = NULL;

Size
notify_shmem_size(void)
{
	return add_size(offsetof(TopicSlots, slots),
					mul_size(eventstore_max_topic_slots, sizeof(TopicSlot)));
}

void
notify_shmem_attach(void *region, bool created)
{
	shared = region;
	if (!created)
		return;
	SpinLockInit(&shared->mutex);
	shared->maxslots = eventstore_max_topic_slots;
	for (int i = 0; i < shared->maxslots; i++)
		pg_atomic_init_u32(&shared->slots[i].pending, 0);
}

/*
 * The slot of a topic of this database, assigning one if needed; -1 if the
 * table is full.  Only with shared memory (the dispatcher attached).
 */
int
notify_topic_slot(const char *topic)
{
	SlotCacheEntry *entry;
	char		key[NAMEDATALEN];
	bool		found;
	int			slot = -1;

	Assert(shared != NULL);
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
	if (slot < 0 && shared->nslots < shared->maxslots)
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

/*
 * After commit: raises a slot's flag.  True when it went up, and so the
 * notifier must be woken; false when it was up already.
 */
bool
notify_raise(int slot)
{
	TopicSlot  *s = &shared->slots[slot];

	return pg_atomic_read_u32(&s->pending) == 0 &&
		pg_atomic_exchange_u32(&s->pending, 1) == 0;
}

/*
 * Takes the flagged topics of this database (at most max): copies their
 * names and lowers their flags.  Returns how many.
 */
static int
collect_flagged(char (*names)[NAMEDATALEN], int max)
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

/*
 * The "notify" task's schedule: 0 (at every pass of worker 0, which a
 * commit raising a flag wakes) once notify_interval has passed since the
 * last NOTIFYs, else the end of that interval.
 */
TimestampTz
notify_task_due(void)
{
	return next_notify;
}

/*
 * The "notify" task: one NOTIFY per flagged topic, in a transaction of its
 * own; the next ones wait notify_interval from now.  Flags raised meanwhile
 * stay up until then.
 */
void
notify_task_run(TimestampTz now)
{
	int			n;

	if (topics == NULL)
		topics = MemoryContextAlloc(TopMemoryContext,
									MAX_TOPICS_PER_RUN * NAMEDATALEN);
	n = collect_flagged(topics, MAX_TOPICS_PER_RUN);
	next_notify = 0;
	if (n == 0)
		return;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "NOTIFY eventstore");
	for (int i = 0; i < n; i++)
	{
		Async_Notify(EVENTSTORE_CHANNEL, topics[i]);
		stats_count(topics[i], strlen(topics[i]), STATS_NOTIFICATIONS, 1);
	}
	CommitTransactionCommand();
	if (eventstore_notify_interval > 0)
		next_notify = TimestampTzPlusMilliseconds(now, eventstore_notify_interval);
}
