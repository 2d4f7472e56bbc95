/*-------------------------------------------------------------------------
 *
 * dispatcher_tasks.c
 *		The periodic tasks of dispatcher worker 0, as a table: each with a
 *		name, its schedule and the function that runs it.
 *
 * Besides running consumers like every worker, worker 0 has jobs of its
 * own, each in the file of its concern:
 *
 *   name        schedule (GUC)                      runs           file
 *   notify      eventstore.notify_interval          on commits     notify.c
 *   summarize   every second, while any consumer    on any pass    summarize.c
 *   retention   eventstore.retention_interval       on its time    retention.c
 *
 * On every pass of its loop (dispatcher.c) worker 0 calls
 * dispatcher_run_due_tasks(), which goes through the table in order and
 * runs each task that is due.  A task's due() says when it should run
 * next, computed from its own state and its GUC every time (so that a
 * reload applies at once):
 * - 0: at every pass.  "notify" is so once notify_interval has passed
 *   since its last NOTIFYs: the commits that raise a topic flag set worker
 *   0's latch, so the worker wakes when there is something to send.
 * - DT_NOEND: not at all for now (retention_interval 0).
 * - any other time: on the first pass at or after it.  A task marked
 *   `wakes` ends the worker's wait at that time (returned to the loop);
 *   the others wait for a pass that happens anyway: "summarize" matters
 *   only to consumer rounds, which wake the worker themselves.
 * A task marked `with_consumers` runs only while the worker's database
 * has in-database consumers.
 *
 * A task runs in transactions of its own.  An error that escapes it is
 * logged with the task's name (and the task is due again by its schedule)
 * unless the extension is no longer installed: a DROP EXTENSION that
 * commits while a task works makes its queries fail, and that is no
 * failure of the task.  The worker goes on either way.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/elog.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "eventstore.h"

typedef struct DispatcherTask
{
	const char *name;			/* in the log when it fails */
	TimestampTz (*due) (void);	/* 0: every pass; DT_NOEND: not now */
	void		(*run) (TimestampTz now);
	bool		wakes;			/* the worker wakes up at its due time */
	bool		with_consumers; /* runs only while there are consumers */
} DispatcherTask;

static const DispatcherTask tasks[] = {
	{"notify", notify_task_due, notify_task_run, true, false},
	{"summarize", summarize_task_due, summarize_task_run, false, true},
	{"retention", retention_task_due, retention_task_run, true, false},
};

static void
run_task(const DispatcherTask *task, TimestampTz now)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		task->run(now);
	}
	PG_CATCH();
	{
		ErrorData  *edata = dispatcher_catch_error(cxt);

		if (dispatcher_extension_installed())
			ereport(LOG,
					(errmsg("eventstore dispatcher task \"%s\" failed: %s",
							task->name, edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/*
 * Runs the due tasks, in the table's order; returns when the earliest task
 * that wakes the worker is due next (DT_NOEND: none).  have_consumers:
 * whether the last round found an in-database consumer.
 */
TimestampTz
dispatcher_run_due_tasks(bool have_consumers)
{
	TimestampTz wake = DT_NOEND;

	for (size_t i = 0; i < lengthof(tasks); i++)
	{
		const DispatcherTask *task = &tasks[i];
		TimestampTz now = GetCurrentTimestamp();
		TimestampTz due;

		if (task->with_consumers && !have_consumers)
			continue;
		due = task->due();
		if (due == DT_NOEND)
			continue;
		if (due <= now)
		{
			run_task(task, now);
			due = task->due();
		}
		if (task->wakes && due != 0 && due < wake)
			wake = due;
	}
	return wake;
}
