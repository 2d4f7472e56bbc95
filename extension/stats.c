/*-------------------------------------------------------------------------
 *
 * stats.c
 *		Cumulative counters per (database, topic) in shared memory: what the
 *		store did since the server started or since eventstore.stats_reset().
 *
 * The counters (StatsCounter in eventstore.h) are bumped where the work
 * happens: appends and refused appends (append.c), notifications
 * (commit_hook.c, notify.c), dispatcher rounds (dispatcher_rounds.c),
 * handler calls and failures (consumer_run.c), parked events
 * (consumer_engine.c), events removed by retention (purge_batch, through
 * eventstore.stats_count_purged).  eventstore.stats and
 * eventstore.stats_refused (sql/eventstore/70_stats.sql) show them.
 *
 * They count calls as they happen, not what commits: an append whose
 * transaction rolls back was still counted, as pg_stat_statements counts a
 * statement whatever became of its transaction.  The events table says
 * what is stored; these say what the store was asked to do and did.
 *
 * Shared state and its locking (the region is reserved by shmem.c):
 * - entries: one per (database, topic) counted since the postmaster
 *   started, at most eventstore.stats_max, never freed.  Assigning an entry
 *   and reading the entry count happen under the spinlock `mutex`; a
 *   backend keeps the entry number in a local hash, so the spinlock is
 *   taken once per topic per backend.  An entry's database and topic never
 *   change once assigned and are read without the lock.
 * - counters are atomics: bumping one is a single fetch-add, with no lock,
 *   which is what keeps counting off the append path's cost.
 * - reset_at is written by eventstore.stats_reset() under the spinlock.
 *
 * Counters without a topic (dispatcher rounds, refusals of topics that
 * have counted nothing yet) go to the database's entry with no topic; so do the counters
 * of topics beyond eventstore.stats_max entries.  When even that entry
 * cannot be had, the count is dropped.  Without shared memory (the library
 * not preloaded) nothing is counted, and the views are empty.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "eventstore.h"

int			eventstore_stats_max = 1000;
bool		eventstore_track_stats = true;

/* SQL names of the counters, in StatsCounter order. */
static const char *const counter_names[STATS_NCOUNTERS] = {
	[STATS_APPENDED] = "appended",
	[STATS_DUPLICATES] = "duplicates",
	[STATS_BATCHES] = "batches",
	[STATS_NOTIFICATIONS] = "notifications",
	[STATS_DISPATCHER_ROUNDS] = "dispatcher_rounds",
	[STATS_HANDLER_CALLS] = "handler_calls",
	[STATS_HANDLER_FAILURES] = "handler_failures",
	[STATS_PARKED] = "parked",
	[STATS_PURGED] = "purged",
};

/*
 * The SQLSTATE classes refused appends are counted by; any other class is
 * counted as "other".
 */
static const char *const refused_classes[] = {
	"22",						/* data exception: a bad envelope */
	"23",						/* integrity: an id stored with other content */
	"40",						/* transaction rollback: expected_version */
	"42",						/* access rule or name: privileges, no topic */
	"53",						/* insufficient resources */
	"54",						/* program limit: the event too large */
	"55",						/* object not in prerequisite state */
	"57",						/* operator intervention: cancel, shutdown */
	"XX",						/* internal error */
};

#define NREFUSED_CLASSES (lengthof(refused_classes) + 1)	/* + "other" */

typedef struct StatsEntry
{
	Oid			dboid;
	bool		has_topic;
	char		topic[NAMEDATALEN];
	TimestampTz reset_at;		/* under the mutex */
	pg_atomic_uint64 counters[STATS_NCOUNTERS];
	pg_atomic_uint64 refused[NREFUSED_CLASSES];
} StatsEntry;

typedef struct StatsShared
{
	slock_t		mutex;
	int			maxentries;		/* eventstore.stats_max at start */
	int			nentries;
	StatsEntry	entries[FLEXIBLE_ARRAY_MEMBER];
} StatsShared;

/* The local hash: (database, topic) -> entry, -1 when none could be had. */
typedef struct EntryKey
{
	Oid			dboid;
	bool		has_topic;
	char		topic[NAMEDATALEN];
} EntryKey;

typedef struct EntryCacheEntry
{
	EntryKey	key;
	int			entry;
} EntryCacheEntry;

static StatsShared *shared = NULL;
static HTAB *entry_cache = NULL;

/*
 * The entry counted last, so that a backend appending to one topic again
 * and again finds it without hashing the key.
 */
static struct
{
	Oid			dboid;
	int			len;			/* of topic; -1: no topic; -2: nothing yet */
	char		topic[NAMEDATALEN];
	int			entry;
}			last = {InvalidOid, -2, "", -1};

Size
stats_shmem_size(void)
{
	return add_size(offsetof(StatsShared, entries),
					mul_size(eventstore_stats_max, sizeof(StatsEntry)));
}

void
stats_shmem_attach(void *region, bool created)
{
	shared = region;
	if (!created)
		return;
	SpinLockInit(&shared->mutex);
	shared->maxentries = eventstore_stats_max;
}

static void
init_counters(StatsEntry *e)
{
	for (int i = 0; i < STATS_NCOUNTERS; i++)
		pg_atomic_init_u64(&e->counters[i], 0);
	for (int i = 0; i < (int) NREFUSED_CLASSES; i++)
		pg_atomic_init_u64(&e->refused[i], 0);
}

/*
 * Finds the shared entry of key or, with create, assigns one; -1 if there
 * is none (the table is full, or not create).
 */
static int
shared_entry(const EntryKey *key, bool create)
{
	int			found = -1;

	SpinLockAcquire(&shared->mutex);
	for (int i = 0; i < shared->nentries; i++)
	{
		StatsEntry *e = &shared->entries[i];

		if (e->dboid == key->dboid && e->has_topic == key->has_topic &&
			strcmp(e->topic, key->topic) == 0)
		{
			found = i;
			break;
		}
	}
	if (found < 0 && create && shared->nentries < shared->maxentries)
	{
		StatsEntry *e = &shared->entries[shared->nentries];

		/* written before nentries counts it, read without the lock after */
		e->dboid = key->dboid;
		e->has_topic = key->has_topic;
		strlcpy(e->topic, key->topic, NAMEDATALEN);
		e->reset_at = GetCurrentTimestamp();
		init_counters(e);
		found = shared->nentries++;
	}
	SpinLockRelease(&shared->mutex);
	return found;
}

/*
 * The entry of topic (len bytes; NULL: no topic) in this database, through
 * the local hash.  A topic too long to be a topic's name counts as none.
 * Without create, a topic that has no entry yet gets none: the database's
 * entry without a topic stands in, and nothing is cached.
 */
static int
entry_of(const char *topic, int len, bool create)
{
	EntryKey	key;
	EntryCacheEntry *cached;
	bool		found;
	int			last_len = topic != NULL && len > 0 && len < NAMEDATALEN ? len : -1;

	if (create && last.dboid == MyDatabaseId && last.len == last_len &&
		(last_len < 0 || memcmp(last.topic, topic, last_len) == 0))
		return last.entry;

	if (entry_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(EntryKey);
		ctl.entrysize = sizeof(EntryCacheEntry);
		ctl.hcxt = TopMemoryContext;
		entry_cache = hash_create("eventstore stats entries", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.dboid = MyDatabaseId;
	key.has_topic = topic != NULL && len > 0 && len < NAMEDATALEN;
	if (key.has_topic)
		memcpy(key.topic, topic, len);

	cached = hash_search(entry_cache, &key, create ? HASH_ENTER : HASH_FIND, &found);
	if (found && create)
	{
		last.dboid = key.dboid;
		last.len = last_len;
		memcpy(last.topic, key.topic, NAMEDATALEN);
		last.entry = cached->entry;
	}
	if (found)
		return cached->entry;
	if (!create)
	{
		int			entry = shared_entry(&key, false);

		return entry >= 0 ? entry : entry_of(NULL, 0, true);
	}
	cached->entry = shared_entry(&key, true);
	/* a full table: the database's entry without a topic instead */
	if (cached->entry < 0 && key.has_topic)
		cached->entry = entry_of(NULL, 0, true);
	return cached->entry;
}

static bool
counting(void)
{
	return shared != NULL && eventstore_track_stats && OidIsValid(MyDatabaseId);
}

void
stats_count(const char *topic, int len, StatsCounter counter, uint64 n)
{
	int			entry;

	if (!counting() || n == 0)
		return;
	entry = entry_of(topic, len, true);
	if (entry >= 0)
		pg_atomic_fetch_add_u64(&shared->entries[entry].counters[counter], n);
}

void
stats_count_text(text *topic, StatsCounter counter, uint64 n)
{
	if (topic == NULL)
		stats_count(NULL, 0, counter, n);
	else
		stats_count(VARDATA_ANY(topic), VARSIZE_ANY_EXHDR(topic), counter, n);
}

/*
 * Counts a refused append of topic (NULL: unknown) by the class of
 * sqlerrcode.  A refusal takes no new entry, so that appends to made-up
 * topic names cannot fill the table: it counts under its topic when the
 * topic has counted something before, else in the database's row without
 * a topic.
 */
void
stats_count_refused(const char *topic, int sqlerrcode)
{
	char	   *sqlstate;
	int			class = lengthof(refused_classes);	/* other */
	int			entry;

	if (!counting())
		return;
	sqlstate = unpack_sql_state(sqlerrcode);
	for (int i = 0; i < (int) lengthof(refused_classes); i++)
		if (strncmp(sqlstate, refused_classes[i], 2) == 0)
			class = i;
	entry = entry_of(topic, topic != NULL ? strlen(topic) : 0, false);
	if (entry >= 0)
		pg_atomic_fetch_add_u64(&shared->entries[entry].refused[class], 1);
}

/*
 * Called in the PG_CATCH of an append: counts the error being thrown as a
 * refusal of topic.  The error stays current for the caller to rethrow.
 */
void
stats_count_current_error(const char *topic)
{
	MemoryContext old;
	ErrorData  *edata;

	if (!counting())
		return;
	old = MemoryContextSwitchTo(TopTransactionContext != NULL ?
								TopTransactionContext : TopMemoryContext);
	edata = CopyErrorData();
	MemoryContextSwitchTo(old);
	stats_count_refused(topic, edata->sqlerrcode);
	FreeErrorData(edata);
}

/*
 * eventstore.stats_counters(): every entry's counters, a row per counter,
 * the refused ones as "refused:<class>" and only when not zero.  The views
 * of 70_stats.sql arrange them.
 */
PG_FUNCTION_INFO_V1(eventstore_stats_counters);
Datum
eventstore_stats_counters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	if (shared == NULL)
		return (Datum) 0;
	SpinLockAcquire(&shared->mutex);
	n = shared->nentries;
	SpinLockRelease(&shared->mutex);

	for (int i = 0; i < n; i++)
	{
		StatsEntry *e = &shared->entries[i];
		Datum		values[5];
		bool		nulls[5] = {false, !e->has_topic, false, false, false};
		TimestampTz reset_at;

		SpinLockAcquire(&shared->mutex);
		reset_at = e->reset_at;
		SpinLockRelease(&shared->mutex);
		values[0] = ObjectIdGetDatum(e->dboid);
		values[1] = e->has_topic ? CStringGetTextDatum(e->topic) : (Datum) 0;
		values[4] = TimestampTzGetDatum(reset_at);
		for (int c = 0; c < STATS_NCOUNTERS; c++)
		{
			values[2] = CStringGetTextDatum(counter_names[c]);
			values[3] = Int64GetDatum((int64) pg_atomic_read_u64(&e->counters[c]));
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		for (int c = 0; c < (int) NREFUSED_CLASSES; c++)
		{
			uint64		v = pg_atomic_read_u64(&e->refused[c]);

			if (v == 0)
				continue;
			values[2] = CStringGetTextDatum(psprintf("refused:%s",
													 c < (int) lengthof(refused_classes) ?
													 refused_classes[c] : "other"));
			values[3] = Int64GetDatum((int64) v);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	return (Datum) 0;
}

/*
 * eventstore.stats_reset(): sets every counter of this database to zero
 * and its entries' reset time to now.  Counts made while it runs may be
 * lost, never doubled.
 */
PG_FUNCTION_INFO_V1(eventstore_stats_reset);
Datum
eventstore_stats_reset(PG_FUNCTION_ARGS)
{
	TimestampTz now = GetCurrentTimestamp();
	int			n;

	if (shared == NULL)
		PG_RETURN_VOID();
	SpinLockAcquire(&shared->mutex);
	n = shared->nentries;
	SpinLockRelease(&shared->mutex);
	for (int i = 0; i < n; i++)
	{
		StatsEntry *e = &shared->entries[i];

		if (e->dboid != MyDatabaseId)
			continue;
		for (int c = 0; c < STATS_NCOUNTERS; c++)
			pg_atomic_write_u64(&e->counters[c], 0);
		for (int c = 0; c < (int) NREFUSED_CLASSES; c++)
			pg_atomic_write_u64(&e->refused[c], 0);
		SpinLockAcquire(&shared->mutex);
		e->reset_at = now;
		SpinLockRelease(&shared->mutex);
	}
	PG_RETURN_VOID();
}

/*
 * eventstore.stats_count_purged(topic, n): purge_batch's report of the
 * events it removed from topic.  Not granted to anyone: purge_batch runs
 * as the extension's owner or as a superuser's dispatcher.
 */
PG_FUNCTION_INFO_V1(eventstore_stats_count_purged);
Datum
eventstore_stats_count_purged(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0) && !PG_ARGISNULL(1) && PG_GETARG_INT64(1) > 0)
		stats_count_text(PG_GETARG_TEXT_PP(0), STATS_PURGED,
						 (uint64) PG_GETARG_INT64(1));
	PG_RETURN_VOID();
}
