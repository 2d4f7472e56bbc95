/*-------------------------------------------------------------------------
 *
 * catalog.c
 *		The extension's own relations, their owner, working as the owner,
 *		and the topic cache.
 *
 * Appends check the topic of every event, run as the owner of
 * eventstore.events, and write that table directly (bulk_insert.c,
 * event_lookup.c), which needs its column numbers and its unique index on
 * id.  These facts are looked up once per backend and kept in backend-local
 * memory:
 *
 * - the owner, the column map, the id index, the position sequence and
 *   which table holds the streams' versions (and whether consumers have
 *   types) are forgotten on any relcache invalidation of events, topics,
 *   that table or consumers (ALTER TABLE, ALTER ... OWNER, CREATE/DROP
 *   INDEX, DROP EXTENSION, 1.2's update);
 * - topics are cached by name.  Plain DML does not invalidate anything, so a
 *   statement trigger on eventstore.topics (topics_changed, below) sends a
 *   relcache invalidation for the table on UPDATE, DELETE and TRUNCATE; every
 *   backend then marks its entries stale at its next transaction start.
 *   INSERT needs no invalidation: only existing topics are cached.
 *
 * An invalidation can arrive in the middle of an append (any lock
 * acquisition processes them), so it only marks things stale: the values
 * stay in place until the next lookup replaces them, topic entries are
 * never freed, and topic_lookup() hands out copies.
 *
 * as_owner_begin()/as_owner_end() are how every entry point (append, the
 * consumer functions, upcast) works on these tables as their owner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "fmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_topics_changed);
PG_FUNCTION_INFO_V1(eventstore_unreadable_topic);
PG_FUNCTION_INFO_V1(eventstore_check_topics_readable);

typedef struct TopicEntry
{
	TopicInfo	info;			/* info.name is the hash key */
	bool		valid;
} TopicEntry;

static bool catalog_valid = false;
static Oid	events_relid = InvalidOid;
static Oid	events_namespace = InvalidOid;
static Oid	topics_relid = InvalidOid;
static Oid	owner_oid = InvalidOid;
static Oid	id_index_oid = InvalidOid;
static Oid	position_sequence = InvalidOid; /* of events.position */
static Oid	stream_table_relid = InvalidOid;	/* stream_heads, or streams */
static bool stream_heads = false;	/* stream_table_relid is stream_heads */
static StreamTables stream_tables_info;	/* valid when stream_heads */
static Oid	consumers_relid = InvalidOid;
static bool consumers_types = false;	/* consumers has the column types (1.2) */
static bool consumers_members = false;	/* consumers has members (1.3) */
static int	event_att[NUM_EVENT_COLUMNS];
static HTAB *topic_cache = NULL;
static uint64 invalidations = 0;
static bool callback_registered = false;
static Oid	writer_role = InvalidOid;	/* eventstore_writer; see writer_role_oid() */
static Oid	reader_role = InvalidOid;	/* eventstore_reader; see reader_role_oid() */

/* Any change to pg_authid: the role may have been dropped or re-created. */
static void
roles_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	writer_role = InvalidOid;
	reader_role = InvalidOid;
}

static void
catalog_invalidate(Datum arg, Oid relid)
{
	if (OidIsValid(relid) && relid != events_relid && relid != topics_relid &&
		relid != stream_table_relid && relid != consumers_relid)
		return;

	catalog_valid = false;
	invalidations++;
	if (topic_cache)
	{
		HASH_SEQ_STATUS status;
		TopicEntry *entry;

		hash_seq_init(&status, topic_cache);
		while ((entry = hash_seq_search(&status)) != NULL)
			entry->valid = false;
	}
}

/* The table was changed by hand in a way appends cannot live with. */
void
report_altered_events(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("eventstore.events has been altered"),
			 errdetail("%s", detail),
			 errhint("Undo the change: the table is written only by the extension.")));
}

/* The unique, non-partial index on the id column of rel. */
static Oid
find_id_index(Relation rel, int id_att)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			result = InvalidOid;

	foreach(lc, indexes)
	{
		HeapTuple	tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index index;

		if (!HeapTupleIsValid(tuple))
			continue;
		index = (Form_pg_index) GETSTRUCT(tuple);
		if (index->indisunique && index->indisvalid && index->indnkeyatts == 1 &&
			index->indkey.values[0] == id_att + 1 &&
			heap_attisnull(tuple, Anum_pg_index_indpred, NULL))
			result = index->indexrelid;
		ReleaseSysCache(tuple);
	}
	list_free(indexes);
	if (!OidIsValid(result))
		report_altered_events("The unique index on column \"id\" is missing.");
	return result;
}

/*
 * The relations, indexes and columns a stream's version is read from
 * (stream_head.c); floors is false before 1.7, whose appends still update
 * stream_heads.version.
 */
static void
stream_tables_resolve(Oid schema)
{
	StreamTables *t = &stream_tables_info;

	t->heads = stream_table_relid;
	t->floor_att = get_attnum(t->heads, "version_floor");
	t->floors = t->floor_att != InvalidAttrNumber;
	t->closed_att = get_attnum(t->heads, "closed_at");
	t->heads_key = get_relname_relid("stream_heads_pkey", schema);
	t->version_index = get_relname_relid("events_stream_version", schema);
	if (t->floors && (!OidIsValid(t->heads_key) || !OidIsValid(t->version_index) ||
					  t->closed_att == InvalidAttrNumber))
		report_altered_events("The index events_stream_version, the primary key of "
							  "eventstore.stream_heads or its column closed_at is missing.");
}

static void
catalog_resolve(void)
{
	uint64		before = invalidations;
	Oid			schema;
	Oid			events;
	Oid			topics;
	Relation	rel;

	if (catalog_valid)
		return;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(catalog_invalidate, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHOID, roles_invalidate, (Datum) 0);
		callback_registered = true;
	}

	schema = get_namespace_oid("eventstore", true);
	events = OidIsValid(schema) ? get_relname_relid("events", schema) : InvalidOid;
	topics = OidIsValid(schema) ? get_relname_relid("topics", schema) : InvalidOid;
	if (!OidIsValid(events) || !OidIsValid(topics))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("eventstore is not installed in this database"),
				 errhint("Run CREATE EXTENSION eventstore.")));

	rel = table_open(events, AccessShareLock);
	owner_oid = rel->rd_rel->relowner;
	event_columns_map(RelationGetDescr(rel), event_att);
	id_index_oid = find_id_index(rel, event_att[COL_ID]);
	table_close(rel, NoLock);
	position_sequence = getIdentitySequence(events, event_att[COL_POSITION] + 1, true);
	stream_table_relid = get_relname_relid("stream_heads", schema);
	stream_heads = OidIsValid(stream_table_relid);
	if (stream_heads)
		stream_tables_resolve(schema);
	else
		stream_table_relid = get_relname_relid("streams", schema);
	consumers_relid = get_relname_relid("consumers", schema);
	consumers_types = OidIsValid(consumers_relid) &&
		get_attnum(consumers_relid, "types") != InvalidAttrNumber;
	consumers_members = OidIsValid(consumers_relid) &&
		get_attnum(consumers_relid, "members") != InvalidAttrNumber;
	events_relid = events;
	events_namespace = schema;
	topics_relid = topics;
	/* an invalidation while we looked may concern what we just read */
	catalog_valid = (invalidations == before);
}

/* The role that owns the extension's tables; appends run as this role. */
Oid
eventstore_owner(void)
{
	catalog_resolve();
	return owner_oid;
}

/*
 * Whether the table of stream versions is eventstore.stream_heads (1.2 and
 * later) or still eventstore.streams, as before 1.2 gave that name to a
 * view: an installation keeps its old tables until ALTER EXTENSION UPDATE.
 */
bool
eventstore_has_stream_heads(void)
{
	catalog_resolve();
	return stream_heads;
}

/*
 * Where streams' versions are, when they are in eventstore.stream_heads
 * (eventstore_has_stream_heads()).
 */
const StreamTables *
stream_tables(void)
{
	catalog_resolve();
	Assert(stream_heads);
	return &stream_tables_info;
}

/*
 * Whether eventstore.consumers has the column types (1.2 and later); an
 * installation not updated yet reads its consumers as of every type.
 */
bool
eventstore_consumers_have_types(void)
{
	catalog_resolve();
	return consumers_types;
}

/*
 * Whether consumers are split into members (1.3 and later): then their
 * progress is in eventstore.members, a row per member; before, it is in
 * the consumer's row of eventstore.consumers, which an installation not
 * updated yet still has.
 */
bool
eventstore_consumers_have_members(void)
{
	catalog_resolve();
	return consumers_members;
}

/* The identity sequence that numbers eventstore.events. */
Oid
eventstore_position_sequence(void)
{
	catalog_resolve();
	if (!OidIsValid(position_sequence))
		report_altered_events("Column \"position\" has no identity sequence.");
	return position_sequence;
}

/* eventstore.events */
Oid
eventstore_events_relid(void)
{
	catalog_resolve();
	return events_relid;
}

/* The attribute index (0-based) in eventstore.events of each EventColumn. */
const int *
events_columns(void)
{
	catalog_resolve();
	return event_att;
}

/* The extension's schema. */
Oid
eventstore_namespace(void)
{
	catalog_resolve();
	return events_namespace;
}

/* The unique index on eventstore.events (id). */
Oid
events_id_index(void)
{
	catalog_resolve();
	return id_index_oid;
}

/* Copies an oid[] of grantees (topics.appenders, readers) into roles. */
static int
read_grantees(Datum array, Oid *roles)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			nroles = 0;

	deconstruct_array(DatumGetArrayTypeP(array), OIDOID, sizeof(Oid), true, TYPALIGN_INT,
					  &elems, &nulls, &n);
	for (int i = 0; i < n && i < MAX_TOPIC_GRANTEES; i++)
		if (!nulls[i])
			roles[nroles++] = DatumGetObjectId(elems[i]);
	return nroles;
}

/*
 * Refuses an append by caller unless it has the privileges of
 * eventstore_writer or of a role granted append on this topic alone.
 */
static Oid
writer_role_oid(void)
{
	if (!OidIsValid(writer_role))
		writer_role = get_role_oid("eventstore_writer", true);
	return writer_role;
}

static Oid
reader_role_oid(void)
{
	if (!OidIsValid(reader_role))
		reader_role = get_role_oid("eventstore_reader", true);
	return reader_role;
}

void
check_topic_append(const TopicInfo *topic, Oid caller)
{
	Oid			writer = writer_role_oid();

	if (OidIsValid(writer) && has_privs_of_role(caller, writer))
		return;
	for (int i = 0; i < topic->nappenders; i++)
		if (has_privs_of_role(caller, topic->appenders[i]))
			return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to append to topic \"%s\"", topic->name),
			 errdetail("Role \"%s\" is not a member of eventstore_writer and has no append grant on the topic.",
					   GetUserNameFromId(caller, false)),
			 errhint("An eventstore_admin can grant it with eventstore.grant_topic('%s', 'append', role).",
					 topic->name)));
}

/*
 * The first of topics (text[], in order) that role may not consume, or
 * NULL when it may consume them all: it may if it has the privileges of
 * eventstore_reader or of a role granted read on the topic.  Names that are
 * not topics are passed over.  Must be called inside SPI_connect, as the
 * owner role (topic_lookup).
 */
char *
unreadable_topic(Oid role, ArrayType *topics)
{
	Oid			reader = reader_role_oid();
	Datum	   *names;
	bool	   *nulls;
	int			n;

	if (OidIsValid(reader) && has_privs_of_role(role, reader))
		return NULL;
	deconstruct_array(topics, TEXTOID, -1, false, TYPALIGN_INT, &names, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		text	   *name = nulls[i] ? NULL : DatumGetTextPP(names[i]);
		TopicInfo  *topic = name ? topic_lookup(VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name)) : NULL;
		bool		readable = false;

		if (topic == NULL)
			continue;
		for (int k = 0; k < topic->nreaders && !readable; k++)
			readable = has_privs_of_role(role, topic->readers[k]);
		if (!readable)
			return pstrdup(topic->name);
	}
	return NULL;
}

/*
 * Raises 42501 unless role may consume every one of topics; what says who
 * the role is ("the consumer's role").  As unreadable_topic.
 */
void
check_topics_readable(Oid role, ArrayType *topics, const char *what)
{
	char	   *denied = unreadable_topic(role, topics);
	char	   *role_name;

	if (denied == NULL)
		return;
	role_name = DatumGetCString(DirectFunctionCall1(regroleout, ObjectIdGetDatum(role)));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to read topic \"%s\"", denied),
			 errdetail("Role %s, %s, is not a member of eventstore_reader and has no read grant on the topic.",
					   role_name, what),
			 errhint("An eventstore_admin can grant it with eventstore.grant_topic(%s, 'read', %s).",
					 quote_literal_cstr(denied), quote_literal_cstr(role_name))));
}

/*
 * Looks a topic up by name; returns a palloc'd copy of its cache entry, or
 * NULL if there is no such topic.  Must be called inside SPI_connect, as the
 * owner role.
 */
TopicInfo *
topic_lookup(const char *name, int len)
{
	static SPIPlanPtr plan = NULL;
	TopicEntry *entry;
	char		key[NAMEDATALEN];
	bool		found;
	uint64		before;
	Datum		arg;

	catalog_resolve();
	if (len >= NAMEDATALEN)
		return NULL;			/* longer than any topic name can be */
	memset(key, 0, sizeof(key));
	memcpy(key, name, len);

	if (topic_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(TopicEntry);
		topic_cache = hash_create("eventstore topics", 64, &ctl,
								  HASH_ELEM | HASH_STRINGS);
	}
	entry = hash_search(topic_cache, key, HASH_FIND, NULL);
	if (entry && entry->valid)
		return memcpy(palloc(sizeof(TopicInfo)), &entry->info, sizeof(TopicInfo));

	if (plan == NULL)
	{
		Oid			argtypes[1] = {TEXTOID};

		plan = prepare_plan("SELECT current_major, current_minor, appenders::pg_catalog.oid[],"
							"       readers::pg_catalog.oid[],"
							"       EXISTS (SELECT FROM eventstore.protections p"
							"                WHERE p.topic OPERATOR(pg_catalog.=) t.name)"
							"  FROM eventstore.topics t"
							" WHERE name OPERATOR(pg_catalog.=) $1",
							1, argtypes);
	}
	before = invalidations;
	arg = PointerGetDatum(cstring_to_text(key));

	/*
	 * The latest snapshot, not the transaction's: an invalidation already
	 * processed may concern a change that an older snapshot (repeatable
	 * read, or a worker's transaction begun before the change committed)
	 * does not see, and the stale row would then stay cached as valid.
	 */
	if (SPI_execute_snapshot(plan, &arg, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 true, false, 1) != SPI_OK_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("topic lookup failed")));
	if (SPI_processed == 0)
		return NULL;

	entry = hash_search(topic_cache, key, HASH_ENTER, &found);
	entry->info.current_major = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
															SPI_tuptable->tupdesc, 1, &found));
	entry->info.current_minor = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
															SPI_tuptable->tupdesc, 2, &found));
	entry->info.nappenders = read_grantees(SPI_getbinval(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc, 3, &found),
										   entry->info.appenders);
	entry->info.nreaders = read_grantees(SPI_getbinval(SPI_tuptable->vals[0],
													   SPI_tuptable->tupdesc, 4, &found),
										 entry->info.readers);
	entry->info.protected = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
													   SPI_tuptable->tupdesc, 5, &found));
	/* An invalidation during the query may concern this very row. */
	entry->valid = (invalidations == before);
	return memcpy(palloc(sizeof(TopicInfo)), &entry->info, sizeof(TopicInfo));
}

/*
 * Connects to SPI and works as the owner of the extension's tables from
 * here on, remembering the caller in *as: how every entry point reaches
 * tables that no role may write directly.
 */
void
as_owner_begin(AsOwner *as)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("SPI_connect failed")));
	GetUserIdAndSecContext(&as->caller, &as->sec_context);
	SetUserIdAndSecContext(eventstore_owner(),
						   as->sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

/* Back to the caller, and out of SPI. */
void
as_owner_end(AsOwner *as)
{
	SetUserIdAndSecContext(as->caller, as->sec_context);
	SPI_finish();
}

/*
 * Statement trigger on eventstore.topics and eventstore.protections (whether
 * a topic is protected is cached with it): make every backend drop its
 * cached topics once this transaction commits.
 */
Datum
eventstore_topics_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("topics_changed() must be called as a trigger")));
	if (strcmp(RelationGetRelationName(trigdata->tg_relation), "topics") == 0)
		CacheInvalidateRelcache(trigdata->tg_relation);
	else
	{
		Oid			topics = get_relname_relid("topics",
											   RelationGetNamespace(trigdata->tg_relation));

		if (OidIsValid(topics))
			CacheInvalidateRelcacheByRelid(topics);
	}
	return PointerGetDatum(NULL);
}

/* eventstore.unreadable_topic(role oid, topics text[]) RETURNS text, strict */
Datum
eventstore_unreadable_topic(PG_FUNCTION_ARGS)
{
	AsOwner		as;
	char	   *denied;
	Datum		result = (Datum) 0;

	as_owner_begin(&as);
	denied = unreadable_topic(PG_GETARG_OID(0), PG_GETARG_ARRAYTYPE_P(1));
	/* out of SPI's memory, which as_owner_end frees */
	if (denied != NULL)
		result = SPI_datumTransfer(PointerGetDatum(cstring_to_text(denied)), false, -1);
	as_owner_end(&as);
	if (denied == NULL)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/* eventstore.check_topics_readable(role oid, topics text[], what text), strict */
Datum
eventstore_check_topics_readable(PG_FUNCTION_ARGS)
{
	AsOwner		as;

	as_owner_begin(&as);
	check_topics_readable(PG_GETARG_OID(0), PG_GETARG_ARRAYTYPE_P(1),
						  text_to_cstring(PG_GETARG_TEXT_PP(2)));
	as_owner_end(&as);
	PG_RETURN_VOID();
}
