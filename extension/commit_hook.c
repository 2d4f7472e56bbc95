/*-------------------------------------------------------------------------
 *
 * commit_hook.c
 *		What a transaction that appended events, or changed the consumers,
 *		tells the dispatcher once it commits.
 *
 * An append (append.c) calls notify_topic_appended() for each topic it
 * stored events in.  In a database the dispatcher serves, with the library
 * preloaded, the transaction only remembers the topic's slot (notify.c);
 * at commit (XactCallback, after the commit is visible) it raises each
 * slot's flag, wakes the database's notifier (its dispatcher worker 0)
 * when a flag went up, and raises the database's consumer work flag, which
 * wakes every dispatcher worker of that database, and no other, when it
 * goes up (dispatcher_shmem.c).  That is one atomic swap
 * per topic and one per commit, and a latch set only on a 0 -> 1
 * transition: the commit path takes no lock but a spinlock to copy latch
 * pointers when it does wake someone.
 *
 * Within a transaction the remembered topics carry the subtransaction level
 * that appended them: a rolled-back subtransaction forgets its topics, a
 * committed one hands them to its parent, so a rollback never notifies.
 * All of this is backend-local (TopTransactionContext); the shared state
 * and its locking are described in notify.c and dispatcher_shmem.c.  The
 * end of a transaction also ends its holds on databases and sends its
 * requests to the launcher (dispatcher_utility.c), and clears its bound in
 * the read horizon (horizon.c).
 *
 * Fallback: without shared memory (library not preloaded), when the session
 * is in a database the dispatcher does not serve (or not yet: its worker 0
 * is not running), or when the topic slots (eventstore.max_topic_slots)
 * are all taken, the append queues an ordinary
 * transactional NOTIFY (Async_Notify), which PostgreSQL sends at commit and
 * drops on rollback.  Correct, but slow under concurrency; documented in
 * the README.
 *
 * A transaction that appended cannot be prepared: listeners are told at
 * commit, and a prepared transaction commits elsewhere.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/memutils.h"

#include "eventstore.h"

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

static List *pending_topics = NIL;	/* of PendingTopic, TopTransactionContext */

static bool consumers_changed = false;	/* by this transaction */

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
	if (dispatcher_serves_own_database())
	{
		int			slot = notify_topic_slot(topic);

		if (slot >= 0)
		{
			remember_slot(slot);
			return;
		}
	}
	Async_Notify(EVENTSTORE_CHANNEL, topic);
	stats_count(topic, strlen(topic), STATS_NOTIFICATIONS, 1);
	remember_slot(FALLBACK_SLOT);
}

/* After commit: raise the flags, wake the workers if a flag went up. */
static void
signal_pending_topics(void)
{
	ListCell   *lc;
	bool		wake = false;
	bool		in_dispatcher_db = false;

	foreach(lc, pending_topics)
	{
		int			slot = ((PendingTopic *) lfirst(lc))->slot;

		if (slot == FALLBACK_SLOT)
			continue;
		in_dispatcher_db = true;
		if (notify_raise(slot))
			wake = true;
	}
	if (in_dispatcher_db)
		dispatcher_wake_consumers();
	if (wake)
		dispatcher_wake_notifier();
}

static void
commit_hook_xact_callback(XactEvent event, void *arg)
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
			if (consumers_changed)
				dispatcher_consumers_changed();
			consumers_changed = false;
			dispatcher_utility_xact_end(true);
			horizon_xact_end();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			pending_topics = NIL;
			consumers_changed = false;
			dispatcher_utility_xact_end(false);
			horizon_xact_end();
			break;
		default:
			break;
	}
}

static void
commit_hook_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
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

/* Called from _PG_init, preloaded or not. */
void
commit_hook_init(void)
{
	RegisterXactCallback(commit_hook_xact_callback, NULL);
	RegisterSubXactCallback(commit_hook_subxact_callback, NULL);
}

/*
 * eventstore.consumers_changed(): called by the functions that create,
 * reset or replay consumers (and by the consumer engine when a member
 * retires, so that the members waiting for it start), so that the dispatcher workers look at the
 * consumers as soon as this transaction commits, even when they had none.
 */
void
consumers_changed_at_commit(void)
{
	consumers_changed = true;
}

PG_FUNCTION_INFO_V1(eventstore_consumers_changed);
Datum
eventstore_consumers_changed(PG_FUNCTION_ARGS)
{
	refuse_on_standby("a change of an eventstore consumer");

	consumers_changed_at_commit();
	PG_RETURN_VOID();
}
