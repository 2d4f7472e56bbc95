-- sql/eventstore/25_append.sql: validating and appending events
-- (extension/append.c, extension/envelope.c), and the id of an event
-- derived from another.

CREATE FUNCTION validate(event jsonb) RETURNS void
    LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'eventstore_validate';
COMMENT ON FUNCTION validate(jsonb) IS
    'raise 22023 with a detail naming the field when the event envelope is invalid';

CREATE FUNCTION is_valid(event jsonb) RETURNS boolean
    LANGUAGE c STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'eventstore_is_valid';
COMMENT ON FUNCTION is_valid(jsonb) IS 'whether the event envelope is valid';

CREATE FUNCTION append(topic text, event jsonb,
                       stream text DEFAULT NULL,
                       expected_version bigint DEFAULT NULL)
RETURNS bigint
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_append';
COMMENT ON FUNCTION append(text, jsonb, text, bigint) IS
    'validate and store one event; returns its position (the original one for a duplicate id)';

CREATE FUNCTION append_batch(topic text, events jsonb[],
                             stream text DEFAULT NULL,
                             expected_version bigint DEFAULT NULL)
RETURNS SETOF bigint
    LANGUAGE c ROWS 100 AS 'MODULE_PATHNAME', 'eventstore_append_batch';
COMMENT ON FUNCTION append_batch(text, jsonb[], text, bigint) IS
    'validate and store events all or nothing; one position per event, in input order';

/*
 * The key of derived_id() (extension/derived_id.c): 32 random bytes made
 * at installation, so that nobody can compute in advance the id a consumer
 * will derive from an event whose id they know.  It goes into dumps and
 * to physical replicas with the events; no role may read it (derived_id()
 * reads it as the owner).  NULL is the legacy derivation of 1.3 and
 * before, which an installation updated from 1.3 with events keeps until
 * set_derived_id_key(): consumers without a ledger of their own would
 * otherwise append a second event under a new id when they see an old
 * event again.
 */
CREATE TABLE derived_id_key (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    key        bytea CHECK (pg_catalog.length(key) = 32),
    changed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE derived_id_key IS 'the key of derived_id() (NULL: the legacy derivation); readable by no role';

-- The table holds one key, so inserting one replaces the one stored: a
-- restore runs this script, which stores a new key, before it copies the
-- dumped key in.  Owned by the extension's owner; it runs as whoever inserts.
CREATE FUNCTION replace_derived_id_key() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM eventstore.derived_id_key;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION replace_derived_id_key() IS
    'trigger: a new derived_id key replaces the one stored (a restore copies in the dumped one)';
CREATE TRIGGER one_derived_id_key BEFORE INSERT ON derived_id_key
    FOR EACH ROW EXECUTE FUNCTION replace_derived_id_key();

-- Every backend drops its cached key once the change commits.
CREATE FUNCTION derived_id_key_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_derived_id_key_changed';
CREATE TRIGGER derived_id_key_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON derived_id_key
    FOR EACH STATEMENT EXECUTE FUNCTION derived_id_key_changed();

INSERT INTO derived_id_key (key) VALUES (uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));
SELECT pg_catalog.pg_extension_config_dump('derived_id_key', '');

-- STABLE, not IMMUTABLE: the key is read from a table.  The same source
-- and consumer give the same id for as long as the key stays, which is for
-- ever once set (set_derived_id_key refuses to change it).
CREATE FUNCTION derived_id(source_id uuid, consumer text) RETURNS uuid
    LANGUAGE c STABLE STRICT PARALLEL RESTRICTED AS 'MODULE_PATHNAME', 'eventstore_derived_id';
COMMENT ON FUNCTION derived_id(uuid, text) IS
    'the id of the event a consumer derives from a source event: HMAC-SHA-256 of both under this installation''s key, as a UUID version 8';

-- Leaves the legacy derivation for good: a random key from now on.
CREATE FUNCTION set_derived_id_key() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM eventstore.derived_id_key k WHERE k.key IS NOT NULL) THEN
        RAISE EXCEPTION 'derived ids already use a key of this installation'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Another key would derive other ids from the same events, and a replay would append them again.';
    END IF;
    INSERT INTO eventstore.derived_id_key (key) VALUES (uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));
END
$$;
COMMENT ON FUNCTION set_derived_id_key() IS
    'an installation updated from 1.3: derive ids under a random key of its own from now on (once; see README)';

-- The inbox: the way in for imports.  A view of (topic, stream, envelope)
-- that holds nothing: its triggers (extension/inbox.c) append the rows
-- inserted into it, by COPY or INSERT, checked like append_batch's events,
-- in input order, all or nothing per statement, duplicates discarded.
--   COPY eventstore.inbox (topic, envelope) FROM STDIN
CREATE VIEW inbox AS
SELECT NULL::text COLLATE "C" AS topic,
       NULL::text COLLATE "C" AS stream,
       NULL::jsonb AS envelope
 WHERE false;
COMMENT ON VIEW inbox IS
    'insert or COPY (topic, stream, envelope) rows to append them, all or nothing per statement; always empty';

CREATE FUNCTION inbox_begin() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_inbox_begin';
CREATE FUNCTION inbox_row() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_inbox_row';
CREATE FUNCTION inbox_end() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_inbox_end';
COMMENT ON FUNCTION inbox_row() IS
    'trigger: check an inbox row''s envelope and keep it to be appended with its neighbours';
CREATE TRIGGER inbox_begin BEFORE INSERT ON inbox
    FOR EACH STATEMENT EXECUTE FUNCTION inbox_begin();
CREATE TRIGGER inbox_row INSTEAD OF INSERT ON inbox
    FOR EACH ROW EXECUTE FUNCTION inbox_row();
CREATE TRIGGER inbox_end AFTER INSERT ON inbox
    FOR EACH STATEMENT EXECUTE FUNCTION inbox_end();

-- They fire whatever session_replication_role says: with "replica" (which
-- some bulk loaders set to skip foreign keys) an ordinary trigger does not
-- fire, and a row inserted into the inbox would silently vanish.  ALTER
-- TABLE ... ENABLE ALWAYS TRIGGER does not take views, so the catalog is set
-- here as that command sets it, on the triggers just created.
UPDATE pg_catalog.pg_trigger SET tgenabled = 'A'
 WHERE tgrelid = 'eventstore.inbox'::pg_catalog.regclass;
