/*-------------------------------------------------------------------------
 *
 * derived_id.c
 *		The ids of the events a consumer derives: eventstore.derived_id().
 *
 * derived_id(source, consumer) is HMAC-SHA-256, under this installation's
 * key (eventstore.derived_id_key), of the source event's id followed by
 * the consumer's name; its first 16 bytes are the id, a UUID of version 8
 * (RFC 9562's version for ids made to a scheme of one's own).  The same
 * source and consumer always give the same id in one installation, and in
 * its dumps and physical replicas, which carry the key: a consumer that
 * derives events appends nothing new when it sees an event again.  Without
 * the key nobody can work out in advance the id a consumer will derive
 * from an event whose id they know.
 *
 * While the key is NULL (an installation updated from 1.3 that held
 * events, until eventstore.set_derived_id_key()), and while the SQL of 1.3
 * is installed with this library, the id is the legacy one: a name-based UUID (RFC 4122 version 5, SHA-1) of the consumer's
 * name in the namespace of the source event's id.
 *
 * No role may read the key: it is read here as the tables' owner, and kept
 * in the backend until a statement changes its table, whose trigger
 * (eventstore_derived_id_key_changed) sends a relcache invalidation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha1.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "eventstore.h"

PG_FUNCTION_INFO_V1(eventstore_derived_id);
PG_FUNCTION_INFO_V1(eventstore_derived_id_key_changed);

#define DERIVED_ID_KEY_LEN 32

static bool key_valid = false;	/* the cached key is current */
static bool key_legacy = false;	/* the key is NULL: the legacy derivation */
static uint8 key[DERIVED_ID_KEY_LEN];
static Oid	key_relid = InvalidOid; /* eventstore.derived_id_key */

static void
key_invalidate(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == key_relid)
		key_valid = false;
}

/* The key into key[] (or key_legacy), read as the owner unless cached. */
static void
load_key(void)
{
	static SPIPlanPtr plan = NULL;
	static bool callback_registered = false;
	AsOwner		as;
	Oid			schema;
	bool		isnull;
	Datum		value;

	if (key_valid)
		return;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(key_invalidate, (Datum) 0);
		callback_registered = true;
	}
	schema = get_namespace_oid("eventstore", false);
	key_relid = get_relname_relid("derived_id_key", schema);
	if (!OidIsValid(key_relid))
	{
		/*
		 * The SQL of 1.3 or before with this library, until ALTER
		 * EXTENSION eventstore UPDATE: the ids those versions derived.
		 * Not cached: the table may come at any time.
		 */
		key_legacy = true;
		return;
	}
	as_owner_begin(&as);
	if (plan == NULL)
		plan = prepare_plan("SELECT key FROM eventstore.derived_id_key", 0, NULL);
	/* valid from here, unless an invalidation arrives while it is read */
	key_valid = true;

	/*
	 * The latest snapshot, not the transaction's: an invalidation already
	 * processed may concern a change an older snapshot does not see, and
	 * the old key would then stay cached as valid.
	 */
	if (SPI_execute_snapshot(plan, NULL, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 true, false, 2) != SPI_OK_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("derived_id key lookup failed")));
	if (SPI_processed != 1)
	{
		key_valid = false;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("eventstore.derived_id_key holds no key"),
				 errdetail("Table \"eventstore.derived_id_key\" has " UINT64_FORMAT " rows; derived_id() needs one.",
						   (uint64) SPI_processed)));
	}
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	key_legacy = isnull;
	if (!isnull)
	{
		bytea	   *k = DatumGetByteaPP(value);

		if (VARSIZE_ANY_EXHDR(k) != DERIVED_ID_KEY_LEN)
		{
			key_valid = false;
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("eventstore.derived_id_key holds a key of the wrong length"),
					 errdetail("Column \"key\" has %zu bytes; it must have %d.",
							   (size_t) VARSIZE_ANY_EXHDR(k), DERIVED_ID_KEY_LEN)));
		}
		memcpy(key, VARDATA_ANY(k), DERIVED_ID_KEY_LEN);
	}
	as_owner_end(&as);
}

static void
hash_failed(const char *what, const char *error)
{
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg_internal("could not compute %s: %s", what, error)));
}

/* The legacy id: SHA-1 of the source id (the namespace) and the name. */
static void
legacy_id(const pg_uuid_t *source, const text *name, uint8 *digest)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA1);

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, source->data, UUID_LEN) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name)) < 0 ||
		pg_cryptohash_final(ctx, digest, SHA1_DIGEST_LENGTH) < 0)
		hash_failed("SHA-1", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
}

/* The keyed id: HMAC-SHA-256 of the source id and the name. */
static void
keyed_id(const pg_uuid_t *source, const text *name, uint8 *digest)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (pg_hmac_init(ctx, key, DERIVED_ID_KEY_LEN) < 0 ||
		pg_hmac_update(ctx, source->data, UUID_LEN) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name)) < 0 ||
		pg_hmac_final(ctx, digest, PG_SHA256_DIGEST_LENGTH) < 0)
		hash_failed("HMAC-SHA-256", pg_hmac_error(ctx));
	pg_hmac_free(ctx);
}

/* eventstore.derived_id(source_id uuid, consumer text) RETURNS uuid */
Datum
eventstore_derived_id(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *source = PG_GETARG_UUID_P(0);
	text	   *name = PG_GETARG_TEXT_PP(1);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	pg_uuid_t  *result = palloc(sizeof(pg_uuid_t));

	StaticAssertStmt(SHA1_DIGEST_LENGTH >= UUID_LEN, "a SHA-1 digest holds a UUID");
	load_key();
	if (key_legacy)
		legacy_id(source, name, digest);
	else
		keyed_id(source, name, digest);
	memcpy(result->data, digest, UUID_LEN);
	/* the version: 5 (name-based, SHA-1) or 8 (a scheme of our own) */
	result->data[6] = (result->data[6] & 0x0f) | (key_legacy ? 0x50 : 0x80);
	result->data[8] = (result->data[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
	PG_RETURN_UUID_P(result);
}

/*
 * Statement trigger on eventstore.derived_id_key: every backend drops its
 * cached key once this transaction commits (this one at its next command).
 */
Datum
eventstore_derived_id_key_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("derived_id_key_changed() must be called as a trigger")));
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}
