/*-------------------------------------------------------------------------
 *
 * eventstore.h
 *		Declarations shared by the files of the eventstore extension.
 *
 * Each .c file owns one concern (see its header comment); this header lists
 * what they offer each other.  Nothing here is exported to other extensions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENTSTORE_H
#define EVENTSTORE_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "nodes/pg_list.h"
#include "utils/relcache.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

/* The NOTIFY channel outside listeners LISTEN on; the payload is a topic. */
#define EVENTSTORE_CHANNEL "eventstore"

/* eventstore.c: module entry point and GUCs */
extern PGDLLEXPORT void _PG_init(void);
extern int	eventstore_max_event_bytes;
extern int	eventstore_notify_interval;
extern char *eventstore_database;
extern char *eventstore_databases;
extern int	eventstore_workers;
extern int	eventstore_max_topic_slots;
extern int	eventstore_poll_interval;
extern int	eventstore_batch_delay;
extern int	eventstore_lease_timeout_ms;
extern int	eventstore_retry_delay_ms;
extern int	eventstore_retention_interval_ms;
extern int	eventstore_stats_max;
extern bool eventstore_track_stats;

/* Most dispatcher workers eventstore.workers can ask for. */
#define MAX_DISPATCHER_WORKERS 8

/* Attributes of the composite type eventstore.event. */
#define EVENT_ATT_POSITION 1
#define EVENT_ATT_ID 2
#define EVENT_ATT_TOPIC 3
#define EVENT_ATT_STREAM 4
#define EVENT_ATT_STREAM_VERSION 5
#define EVENT_ATT_ENVELOPE 6
#define EVENT_ATT_RECORDED_AT 7
#define EVENT_NATTS 7
/* eventstore.delivery: the event's attributes, then batch_id and attempt */
#define DELIVERY_ATT_BATCH_ID 8
#define DELIVERY_ATT_ATTEMPT 9
#define DELIVERY_ATT_MEMBER 10
#define DELIVERY_NATTS 10
#define DELIVERY_NATTS_BEFORE_1_3 9	/* without member */

/*
 * envelope.c: validation of the event envelope (its rules are listed in
 * the README, in the order they are checked).
 *
 * envelope_check() returns false and fills *err on the first rule broken;
 * on success it fills *parts (when not NULL) with the decomposed envelope.
 */
typedef struct EnvelopeParts
{
	pg_uuid_t	id;
	text	   *type;
	int32		version_major;
	int32		version_minor;
	Jsonb	   *data;
	Jsonb	   *metadata;
} EnvelopeParts;

typedef struct EnvelopeError
{
	const char *field;			/* dotted path of the member, or NULL for the
								 * event as a whole */
	char	   *rule;			/* what is wrong, to follow the field name */
} EnvelopeError;

extern bool envelope_check(Jsonb *event, EnvelopeParts *parts,
						   EnvelopeError *err);
extern char *envelope_error_text(const EnvelopeError *err);
extern void envelope_report(const EnvelopeError *err, int batch_index)
			pg_attribute_noreturn();

/*
 * append.c: storing checked envelopes (append, append_batch, and the
 * inbox's groups of rows).
 */
extern char *stream_name_check(text *stream, const char *what);
extern void append_checked_batch(const char *topic, const char *stream,
								 EnvelopeParts *events, int n, int first_number);

/* rfc3339.c: strict RFC 3339 date-time syntax and calendar check. */
extern bool rfc3339_check(const char *s, int len, char *why, size_t whylen);

/*
 * catalog.c: the extension's relations and owner, resolved once per backend
 * and forgotten on relcache invalidation; the topic cache.
 */
/* Most roles a topic grants one privilege to (topics.appenders, readers). */
#define MAX_TOPIC_GRANTEES 16

typedef struct TopicInfo
{
	char		name[NAMEDATALEN];	/* hash key */
	int32		current_major;
	int32		current_minor;
	int			nappenders;		/* roles granted append on this topic alone */
	Oid			appenders[MAX_TOPIC_GRANTEES];
	int			nreaders;		/* roles granted read on this topic alone */
	Oid			readers[MAX_TOPIC_GRANTEES];
	bool		protected;		/* has personal fields (eventstore.protections) */
} TopicInfo;

extern Oid	eventstore_owner(void);

/* The caller's identity while an entry point works as the owner. */
typedef struct AsOwner
{
	Oid			caller;
	int			sec_context;
} AsOwner;

extern void as_owner_begin(AsOwner *as);
extern void as_owner_end(AsOwner *as);

/* Plans kept for the backend's lifetime (saved_plans.c). */
typedef enum PlanFor
{
	PLAN_GENERIC,				/* planned once: a lookup or write by key */
	PLAN_EACH_CALL				/* planned for each call's arguments and settings */
} PlanFor;

extern SPIPlanPtr prepare_plan(const char *query, int nargs, Oid *argtypes);
extern SPIPlanPtr kept_plan(const char *query, int nargs, Oid *argtypes, PlanFor how);
extern void run_plan(SPIPlanPtr plan, Datum *values, const char *nulls, int expected);
extern Oid	eventstore_events_relid(void);
extern bool eventstore_has_stream_heads(void);

/* Where a stream's version is read from (stream_head.c). */
typedef struct StreamTables
{
	Oid			heads;			/* eventstore.stream_heads */
	Oid			heads_key;		/* its primary key, (topic, stream) */
	bool		floors;			/* 1.7 on: the version is the greater of
								 * version_floor and the newest event's */
	AttrNumber	floor_att;		/* stream_heads.version_floor */
	AttrNumber	closed_att;		/* stream_heads.closed_at */
	Oid			version_index;	/* events_stream_version */
} StreamTables;

extern const StreamTables *stream_tables(void);

/* stream_head.c: a stream's version, and the lock of its writers. */
extern int64 stream_head_lock(const char *topic, const char *stream, bool *has_head,
							  bool *closed);
extern void stream_head_unlock(const char *topic, const char *stream);

/* stream_claim.c: an append's hold on its stream. */
extern int64 stream_append_begin(const char *topic, const char *stream, int n, bool *closed);
extern void stream_append_end(const char *topic, const char *stream, int64 version, int n,
							  int stored);
extern Oid	eventstore_position_sequence(void);
extern bool eventstore_consumers_have_types(void);
extern bool eventstore_consumers_have_members(void);

/* Columns of eventstore.events; events_columns() maps them to attributes. */
typedef enum EventColumn
{
	COL_POSITION,
	COL_ID,
	COL_TOPIC,
	COL_TYPE,
	COL_VERSION_MAJOR,
	COL_VERSION_MINOR,
	COL_DATA,
	COL_METADATA,
	COL_STREAM,
	COL_STREAM_VERSION,
	COL_RECORDED_AT,
	COL_XID,
	NUM_EVENT_COLUMNS
} EventColumn;

extern const int *events_columns(void);
extern Oid	events_id_index(void);
extern Oid	eventstore_namespace(void);
extern void report_altered_events(const char *detail) pg_attribute_noreturn();

/* standby.c: 25006 on a hot standby, before an entry point writes. */
extern void refuse_on_standby(const char *what);
extern TopicInfo *topic_lookup(const char *name, int len);
extern void check_topic_append(const TopicInfo *topic, Oid caller);
extern char *unreadable_topic(Oid role, ArrayType *topics);
extern void check_topics_readable(Oid role, ArrayType *topics, const char *what);

/* event_row.c: one row of eventstore.events, decoded. */
typedef struct StoredEvent
{
	int64		position;
	text	   *topic;
	text	   *stream;			/* NULL: no stream */
	int64		stream_version; /* when stream is not NULL */
	EnvelopeParts parts;		/* id, type, version, data, metadata */
	TimestampTz recorded_at;
	FullTransactionId xid;		/* the appending transaction */
} StoredEvent;

extern void event_columns_map(TupleDesc desc, int *att);
extern void stored_event_decode(const Datum *values, const bool *isnull, bool copy,
								StoredEvent *s);
extern void stored_event_from_row(Datum row, StoredEvent *s);
extern void stored_event_encode(const StoredEvent *s, int natts, Datum *values,
								bool *isnull);
extern char *stored_event_insert_sql(Oid *argtypes);
extern void stored_event_insert_args(const StoredEvent *s, Datum *values, char *nulls);
extern Jsonb *stored_event_envelope(const StoredEvent *s);
extern void stored_event_values(const StoredEvent *s, Jsonb *envelope, Datum *values,
								bool *nulls);
extern void check_event_type(TupleDesc desc, const char *type_name, int natts);
extern TupleDesc event_type_desc(void);
extern Datum stored_event_datum(const StoredEvent *s, TupleDesc desc);

/* event_lookup.c: stored events by id, through the unique index on id. */
extern StoredEvent **lookup_stored_events(pg_uuid_t **ids, int n);

/* correlation.c: metadata.causation_id and correlation_id filled in. */
extern void correlation_handling(const StoredEvent *event);
extern Jsonb *correlation_complete(Jsonb *metadata);

/* bulk_insert.c: storing a batch of new events like COPY does. */
extern void bulk_insert_events(const char *topic, const char *stream,
							   EnvelopeParts **events, int n, int64 first_version,
							   int64 *positions, bool *skipped);

/* shmem.c: the hooks that reserve and set up the shared memory below. */
extern void shmem_init(void);

/* commit_hook.c: what a committing transaction tells the dispatcher. */
extern void commit_hook_init(void);
extern void notify_topic_appended(const char *topic);
extern void consumers_changed_at_commit(void);

/* notify.c: per-topic pending notifications, and the notifier task. */
extern Size notify_shmem_size(void);
extern void notify_shmem_attach(void *region, bool created);
extern int	notify_topic_slot(const char *topic);
extern bool notify_raise(int slot);
extern TimestampTz notify_task_due(void);
extern void notify_task_run(TimestampTz now);

/* stats.c: cumulative counters per (database, topic), eventstore.stats. */
typedef enum StatsCounter
{
	STATS_APPENDED,				/* events stored */
	STATS_DUPLICATES,			/* events discarded as already stored */
	STATS_BATCHES,				/* append_batch calls */
	STATS_NOTIFICATIONS,		/* NOTIFYs sent or queued */
	STATS_DISPATCHER_ROUNDS,	/* rounds of a dispatcher worker */
	STATS_HANDLER_CALLS,		/* in-database handler calls, per event */
	STATS_HANDLER_FAILURES,		/* those that raised an error */
	STATS_PARKED,				/* events parked */
	STATS_PURGED,				/* events removed by retention */
	STATS_NCOUNTERS
} StatsCounter;

extern Size stats_shmem_size(void);
extern void stats_shmem_attach(void *region, bool created);
extern void stats_count(const char *topic, int len, StatsCounter counter, uint64 n);
extern void stats_count_text(text *topic, StatsCounter counter, uint64 n);
extern void stats_count_refused(const char *topic, int sqlerrcode);
extern void stats_count_current_error(const char *topic);

/*
 * horizon.c: the read horizon, the position up to which every appending
 * transaction has ended (eventstore.safe_position()).
 */
extern Size horizon_shmem_size(void);
extern void horizon_shmem_attach(void *region, bool created);
extern void horizon_before_append(void);
extern void horizon_xact_end(void);
extern bool horizon_safe_position(bool include_own, int64 *safe);

/* dispatcher_shmem.c: the dispatcher's registry of databases. */
extern Size dispatcher_shmem_size(void);
extern void dispatcher_shmem_attach(void *region, bool created);
extern int	dispatcher_max_databases(void);
extern bool dispatcher_serves_own_database(void);
extern void dispatcher_wake_notifier(void);
extern void dispatcher_wake_consumers(void);
extern void dispatcher_consumers_changed(void);
extern void dispatcher_request_launcher(void);
extern bool dispatcher_take_launcher_request(void);
extern uint32 dispatcher_launcher_attach(void);
extern bool dispatcher_launcher_is(uint32 generation);
extern void dispatcher_wake_database(Oid dboid);
extern Oid	dispatcher_entry_database(int entry);
extern bool dispatcher_entry_absent(int entry);
extern int	dispatcher_claim_entry(Oid dboid);
extern void dispatcher_free_entry(int entry);
extern bool dispatcher_worker_attach(int entry, int worker);
extern void dispatcher_worker_found_absent(void);
extern bool dispatcher_take_consumer_work(void);
extern bool dispatcher_take_consumers_changed(int worker);
extern bool dispatcher_database_held(Oid dboid);
extern bool dispatcher_hold_database(Oid dboid, int timeout_ms);
extern bool dispatcher_database_has_workers(Oid dboid);
extern void dispatcher_release_held(void);

/* dispatcher_utility.c: statements the dispatcher makes way for. */
extern void dispatcher_utility_init(void);
extern void dispatcher_utility_xact_end(bool committed);

/* upcast.c: events as their topic's current major version. */
extern void check_function_runs_as(Oid fn, Oid role);
extern Datum call_as_role(Oid fn, Oid role, Datum arg, bool fixed_search_path,
						  bool *isnull);
extern Jsonb *upcast_envelope(const char *topic, Jsonb *envelope, int32 major);
extern Datum upcast_event(Datum event);

/* protect.c: crypto-shredding of personal fields. */
extern Jsonb *protect_event_data(const char *topic, Jsonb *data, pg_uuid_t *id,
								 int batch_index);

/*
 * consumer_engine.c: the consumer protocol, the same for in-database and
 * outside consumers.
 */
typedef enum ConsumerKind
{
	CONSUMER_ANY,
	CONSUMER_IN_DATABASE,		/* has a handler function */
	CONSUMER_OUTSIDE			/* takes its events with poll/ack */
} ConsumerKind;

typedef enum BatchKind
{
	BATCH_NONE,
	BATCH_WINDOW,				/* a page of the consumer's open window */
	BATCH_REPLAY				/* parked events asked for again */
} BatchKind;

/* A member of a consumer: its generation and number (see 40_consumers.sql). */
typedef struct MemberRef
{
	int32		generation;
	int32		member;
} MemberRef;

/*
 * A member of a consumer, as locked: the consumer's settings and the
 * member's progress.  Before 1.3 a consumer has one member, whose progress
 * is in the consumer's own row (generation 0, member 0).
 */
typedef struct Consumer
{
	char	   *name;
	char	   *handler_name;	/* regprocedure text; NULL: outside consumer */
	Oid			run_as;
	Datum		topics;			/* text[] */
	Datum		types;			/* text[], (Datum) 0 when NULL: every type */
	int			batch_size;
	int			max_attempts;
	int			members;		/* the consumer's number of members */
	/* the member */
	MemberRef	ref;
	int			member_count;	/* the number of members of its generation */
	Datum		fence_snapshot; /* pg_snapshot of a retiring member, else 0 */
	int64		fence_floor;	/* the floors of its snapshots, -1: unknown */
	int64		window_floor;
	int64		done_floor;
	bool		waiting;		/* a newer generation: older members remain */
	bool		retired;		/* the retiring member is done and removed */
	/* its progress */
	int64		start_after;
	Datum		done_snapshot;	/* pg_snapshot, (Datum) 0 when NULL */
	Datum		window_snapshot;	/* likewise */
	int64		window_after;
	int64		batch_id;		/* the last batch leased */
	BatchKind	batch_kind;		/* the leased batch, BATCH_NONE if none */
	int64		batch_upto;
	int32		batch_attempt;
	bool		leased;			/* its lease has not run out */
	int32		attempts;		/* failures of the batch or event at the head */
	bool		backing_off;	/* retry_at is in the future */
	char	   *last_error;
} Consumer;

/* Events taken for one run of a handler. */
typedef struct Batch
{
	BatchKind	kind;
	int			n;
	StoredEvent *events;		/* point into rows */
	bool		drained;		/* a window page that ends the window */
	SPITupleTable *rows;
} Batch;

/* An in-database consumer's member for the dispatcher to run. */
typedef struct ConsumerTask
{
	char	   *name;
	MemberRef	ref;
} ConsumerTask;

extern void check_consumer_name(const char *name);
extern void consumer_settings(const char *name, ConsumerKind kind, bool lock, Consumer *c);
extern bool consumer_lock(const char *name, ConsumerKind kind, MemberRef ref,
						  bool skip_locked, Consumer *c);
extern void consumer_check_topics(Consumer *c);
extern int64 consumer_retry_delay_ms(int attempts);
extern Datum ms_interval_datum(int64 ms);
extern bool consumer_next_batch(Consumer *c, int limit, Batch *b);
extern void consumer_leased_batch(Consumer *c, Batch *b);
extern void batch_free(Batch *b);
extern void consumer_lease_batch(Consumer *c, Batch *b);
extern void consumer_renew_lease(Consumer *c);
extern void consumer_count_failure(Consumer *c, const char *error);
extern void consumer_count_expired_lease(Consumer *c);
extern void consumer_touch(Consumer *c);
extern void consumer_park(Consumer *c, Batch *b, int from, int to, int attempts,
						  const char *error);
extern void consumer_record(Consumer *c, Batch *b, int done, int64 handled,
							const char *error, int64 retry_ms);
extern bool consumer_record_error(const char *name, MemberRef ref, const char *message);

/*
 * Within the consumer engine: consumer_engine.c's statements, shared with
 * consumer_windows.c, which finds a member's windows.  A member's row is
 * keyed by the consumer's name, its generation and its number: the first
 * CONSUMER_KEY_ARGS arguments of consumer_update's statements.
 */
#define CONSUMER_KEY_ARGS 3
extern void consumer_sql(const char *query, int nargs, Oid *argtypes, Datum *values,
						 const char *nulls, int expected);
extern void consumer_sql_planned_per_call(const char *query, int nargs, Oid *argtypes,
										  Datum *values, const char *nulls, int expected);
extern Datum consumer_result_datum(int i, bool *isnull);
extern void consumer_update(Consumer *c, const char *set, int nargs, Oid *argtypes,
							Datum *values, const char *nulls);
extern void consumer_batch_from_result(Batch *b, BatchKind kind);
extern const char *consumer_member_condition(Consumer *c, int param);
extern void consumer_member_args(Consumer *c, Oid *types, Datum *values);
extern bool consumer_window_open(Consumer *c);
extern void consumer_window_close(Consumer *c);
extern void consumer_window_page(Consumer *c, int64 upto, int limit, Batch *b);

/* consumer_members.c: which members of a consumer there are and are free. */
extern MemberRef *consumer_member_refs(const char *name, int member, bool free_only,
									   int *n, int *members);
extern bool consumer_lock_batch(const char *name, int64 batch_id, Consumer *c);
extern List *consumers_due(bool *any, TimestampTz *next_retry);

/* consumer_api.c: the SQL entry points of consumers, and who may use them. */
extern void check_consumer_role(Oid caller, Oid role, const char *action,
								const char *consumer);

/* consumer_run.c: running in-database consumers. */
extern int64 consumer_run(const char *name, int64 max_events);
extern int64 consumer_run_member(const ConsumerTask *task, bool *full);

/* retention.c: removing expired events, a task of dispatcher worker 0. */
extern TimestampTz retention_task_due(void);
extern void retention_task_run(TimestampTz now);

/* restore.c: a restored store rebased before its first append or batch. */
extern void restore_check(void);

/* summarize.c: summarizing the BRIN index on xid, a task of worker 0. */
extern TimestampTz summarize_task_due(void);
extern void summarize_task_run(TimestampTz now);

/* dispatcher_launcher.c: the launcher, starting every database's workers. */
extern void dispatcher_register(void);

/* What the launcher tells a dispatcher worker (in its bgw_extra). */
typedef struct DispatcherWorkerArgs
{
	Oid			dboid;			/* the database to serve */
	bool		discover;		/* found by '*': leave if no extension */
	uint32		generation;		/* of the launcher that started it */
} DispatcherWorkerArgs;

/* dispatcher.c: the per-database workers and their transactions. */
extern void dispatcher_begin_transaction(const char *activity);
extern void dispatcher_commit_transaction(void);
extern ErrorData *dispatcher_catch_error(MemoryContext cxt);
extern bool dispatcher_extension_installed(void);

/* dispatcher_tasks.c: worker 0's periodic tasks. */
extern TimestampTz dispatcher_run_due_tasks(bool have_consumers);

/* dispatcher_rounds.c: a worker's round of in-database consumers. */
extern int64 dispatcher_run_consumers(int worker, MemoryContext round_cxt,
									 bool *any, TimestampTz *next_retry,
									 bool *installed, bool *full);

#endif							/* EVENTSTORE_H */
