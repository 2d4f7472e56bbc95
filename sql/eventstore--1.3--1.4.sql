-- eventstore 1.3 -> 1.4: what 1.4 changes in the SQL objects against 1.3.
--
-- A fresh CREATE EXTENSION eventstore runs eventstore--1.4.sql, which make
-- builds from the current source, sql/eventstore/*.sql; an installation of
-- 1.3 runs this script instead, and test/shell/upgrade.sh checks that both
-- end up the same, object for object.  Once 1.4 is released this script is
-- never edited again: later changes go into eventstore--1.4--<next>.sql.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '1.4'" to load this file. \quit

------------------------------------------------------------------------------
-- derived_id under a key of the installation, and retention cleanups that
-- other extensions register (sql/eventstore/25_append.sql, 45_retention.sql)
------------------------------------------------------------------------------

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

-- Updated from 1.3: the legacy derivation where there are events, some
-- of which consumers may have derived (README, "derived_id").
INSERT INTO derived_id_key (key)
SELECT CASE WHEN EXISTS (SELECT FROM events) THEN NULL
            ELSE uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) END;
SELECT pg_catalog.pg_extension_config_dump('derived_id_key', '');

-- STABLE, not IMMUTABLE: the key is read from a table.  The same source
-- and consumer give the same id for as long as the key stays, which is for
-- ever once set (set_derived_id_key refuses to change it).
CREATE OR REPLACE FUNCTION derived_id(source_id uuid, consumer text) RETURNS uuid
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

/*
 * A cleanup another extension registered (register_cleanup): fn(older_than
 * timestamptz, max integer) RETURNS bigint removes at most max of its rows
 * older than older_than and returns how many.  Every retention pass calls
 * it with now() minus its retention, after the expired events; a failing
 * cleanup is logged and noted here (last_error) and does not keep events
 * from expiring.  A row whose function is gone (its extension dropped) is
 * passed over; a re-created extension registers again and keeps the
 * retention set here.
 */
CREATE TABLE retention_cleanups (
    name       text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]*$'),
    fn         regprocedure NOT NULL,
    retention  interval NOT NULL CHECK (retention > interval '0'),
    last_error text
);
COMMENT ON TABLE retention_cleanups IS
    'cleanups of other extensions'' tables that the retention passes run, each with its retention';

-- A restore runs the registering extension's script, which registers its
-- cleanup with the default retention, before it copies the dumped rows in:
-- the dumped row, with the retention set then, replaces it.
CREATE FUNCTION replace_retention_cleanup() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM eventstore.retention_cleanups c WHERE c.name = NEW.name;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION replace_retention_cleanup() IS
    'trigger: a cleanup inserted under a registered name replaces it (a restore copies in the dumped one)';
CREATE TRIGGER one_retention_cleanup BEFORE INSERT ON retention_cleanups
    FOR EACH ROW EXECUTE FUNCTION replace_retention_cleanup();
SELECT pg_catalog.pg_extension_config_dump('retention_cleanups', '');

-- Raises 22004 for NULL (what must not live for ever has a retention) and
-- 22023 for an interval that is not positive.
CREATE FUNCTION check_cleanup_retention(retention interval) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF retention IS NULL THEN
        RAISE EXCEPTION 'cleanup retention must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'Argument "retention" is NULL; a cleanup''s rows must not be kept for ever.';
    END IF;
    IF retention <= interval '0' THEN
        RAISE EXCEPTION 'invalid cleanup retention'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "retention" is %s; it must be a positive interval.', retention);
    END IF;
END
$$;

-- For extension scripts (no role is granted it: the cleanup runs in the
-- dispatcher as the bootstrap superuser, so fn should be SECURITY DEFINER,
-- owned by the role that owns its rows).  Registering a name again changes
-- its function and keeps its retention.
CREATE FUNCTION register_cleanup(name text, fn regprocedure, retention interval DEFAULT interval '30 days')
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL OR name !~ '^[a-z][a-z0-9_]*$' THEN
        RAISE EXCEPTION 'invalid cleanup name'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "name" is %s; it must match ^[a-z][a-z0-9_]*$.', coalesce(quote_literal(name), 'NULL'));
    END IF;
    IF NOT EXISTS (SELECT FROM pg_proc p
                    WHERE p.oid = fn AND p.prorettype = 'bigint'::regtype AND p.prokind = 'f'
                      AND p.proargtypes = '1184 23'::oidvector) THEN
        RAISE EXCEPTION 'invalid cleanup function'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "fn" is %s; it must be a function (older_than timestamptz, max integer) RETURNS bigint.', coalesce(fn::text, 'NULL'));
    END IF;
    UPDATE eventstore.retention_cleanups c SET fn = register_cleanup.fn WHERE c.name = register_cleanup.name;
    IF NOT FOUND THEN
        PERFORM eventstore.check_cleanup_retention(retention);
        INSERT INTO eventstore.retention_cleanups (name, fn, retention) VALUES (name, fn, retention);
    END IF;
END
$$;
COMMENT ON FUNCTION register_cleanup(text, regprocedure, interval) IS
    'for extension scripts: have the retention passes call fn(older_than, max) with now() minus the retention';

CREATE FUNCTION set_cleanup_retention(name text, retention interval) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.check_cleanup_retention(retention);
    UPDATE eventstore.retention_cleanups c SET retention = set_cleanup_retention.retention
     WHERE c.name = set_cleanup_retention.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cleanup "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  DETAIL = 'Argument "name" names no row of eventstore.retention_cleanups.';
    END IF;
END
$$;
COMMENT ON FUNCTION set_cleanup_retention(text, interval) IS
    'keep the rows of a registered cleanup for this long; older ones are removed by the dispatcher or purge_expired()';

/*
 * The registered cleanups, for at most max rows: each in a subtransaction
 * of its own, so that one that fails (logged, and noted in last_error)
 * neither undoes the events this batch removed nor keeps the other
 * cleanups from running.  Returns how many rows they removed.
 */
CREATE FUNCTION run_cleanups(max bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c       record;
    removed bigint := 0;
    n       bigint;
    err     text;
BEGIN
    FOR c IN SELECT rc.name, rc.retention, rc.last_error,
                    format('%I.%I', ns.nspname, p.proname) AS fn
               FROM eventstore.retention_cleanups rc
               JOIN pg_proc p ON p.oid = rc.fn AND p.proargtypes = '1184 23'::oidvector
                             AND p.prorettype = 'bigint'::regtype
               JOIN pg_namespace ns ON ns.oid = p.pronamespace
              ORDER BY rc.name
    LOOP
        EXIT WHEN removed >= max;
        BEGIN
            EXECUTE format('SELECT %s($1, $2)', c.fn) INTO n USING now() - c.retention, (max - removed)::integer;
            removed := removed + coalesce(n, 0);
            IF c.last_error IS NOT NULL THEN
                UPDATE eventstore.retention_cleanups rc SET last_error = NULL WHERE rc.name = c.name;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err = MESSAGE_TEXT;
            RAISE WARNING 'retention cleanup "%" failed: %', c.name, err;
            UPDATE eventstore.retention_cleanups rc SET last_error = left(err, 1000) WHERE rc.name = c.name;
        END;
    END LOOP;
    RETURN removed;
END
$$;

/*
 * Removes at most max expired events (recorded more than their topic's
 * retention ago), oldest first, topic after topic, and counts for every
 * consumer of their topic those it had not received yet
 * (consumers.skipped); snapshots of removed events go with them.  Then
 * the events that appends pushed out of streams with a max_count, a
 * stream's all at once; then the rows of the registered cleanups
 * (run_cleanups), all counted together.  Returns how many it removed:
 * fewer than max means nothing is left to remove.  The dispatcher worker
 * calls it batch after batch, a transaction each, so that no transaction
 * holds many row locks or a long snapshot; appends are not blocked (a DELETE takes no lock that
 * an INSERT waits for), except those to a stream whose excess is being
 * removed, which wait for that transaction.
 */
CREATE OR REPLACE FUNCTION purge_batch(max integer) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t       record;
    h       record;
    removed bigint := 0;
    n       bigint;
BEGIN
    FOR t IN SELECT tp.name, tp.retention FROM eventstore.topics tp
              WHERE tp.retention IS NOT NULL ORDER BY tp.name
    LOOP
        EXIT WHEN removed >= max;
        -- The topic's oldest events, through its (topic, position) index,
        -- and of them those expired: a bounded scan however large the
        -- table, also when nothing has expired.  Removal follows position
        -- order, so an event expires no later than those before it do.
        -- The topic is bounded by row comparisons, not "topic = ...", for
        -- the planner: then only that index gives the order asked for, and
        -- the scan does not walk the primary key instead, reading every
        -- event of the other topics on the way (bench/RESULTS.md).
        -- The positions are collected first and deleted through the
        -- primary key: a join would let the planner read the whole table.
        PERFORM eventstore.wait_for_batches(t.name);
        WITH gone AS (
            DELETE FROM eventstore.events e
             WHERE e.position = ANY (ARRAY(
                   SELECT oldest.position
                     FROM (SELECT e2.position, e2.recorded_at FROM eventstore.events e2
                            WHERE (e2.topic, e2.position) > (t.name COLLATE "C", 0::bigint)
                              AND (e2.topic, e2.position) < (t.name COLLATE "C", 9223372036854775807::bigint)
                            ORDER BY e2.topic, e2.position
                            LIMIT max - removed) AS oldest
                    WHERE oldest.recorded_at < now() - t.retention))
            RETURNING e.position, e.xid, e.type, e.id, e.stream, e.stream_version
        ), snapshots_gone AS (
            -- A snapshot goes with the event of its version.
            DELETE FROM eventstore.snapshots s
             USING gone g
             WHERE s.topic = t.name AND s.stream = g.stream AND s.version = g.stream_version
        ), missed AS (
            UPDATE eventstore.consumers c
               SET skipped = c.skipped + (SELECT count(*) FROM gone g
                                           WHERE eventstore.is_undelivered(c, g.stream, g.id, g.position, g.xid)
                                             AND (c.types IS NULL OR g.type = ANY (c.types)))
             WHERE t.name = ANY (c.topics)
        )
        SELECT count(*) INTO n FROM gone;
        PERFORM eventstore.stats_count_purged(t.name, n);
        removed := removed + n;
    END LOOP;
    -- Streams over their max_count (set_stream_max_count): the events that
    -- appends pushed out, a stream at a time, each stream's row locked as
    -- appends lock it (a stream being appended to waits for the next pass).
    FOR h IN SELECT sh.topic, sh.stream, sh.version - sh.max_count + 1 AS keep_from
               FROM eventstore.stream_heads sh
              WHERE sh.max_count IS NOT NULL
                AND EXISTS (SELECT FROM eventstore.events e
                             WHERE e.topic = sh.topic AND e.stream = sh.stream
                               AND e.stream_version <= sh.version - sh.max_count)
                FOR UPDATE SKIP LOCKED
    LOOP
        EXIT WHEN removed >= max;
        n := eventstore.remove_stream_events(h.topic, h.stream, h.keep_from);
        PERFORM eventstore.stats_count_purged(h.topic, n);
        removed := removed + n;
    END LOOP;
    -- Then the rows of other extensions that expired (register_cleanup).
    IF removed < max THEN
        removed := removed + eventstore.run_cleanups(max - removed);
    END IF;
    RETURN removed;
END
$$;

COMMENT ON FUNCTION purge_expired() IS
    'remove now, in this transaction, every event older than its topic''s retention, and the expired rows of registered cleanups; returns how many';

REVOKE ALL ON derived_id_key, retention_cleanups FROM PUBLIC;
REVOKE ALL ON FUNCTION replace_derived_id_key(), derived_id_key_changed(), set_derived_id_key(),
                       replace_retention_cleanup(), check_cleanup_retention(interval),
                       register_cleanup(text, regprocedure, interval),
                       set_cleanup_retention(text, interval), run_cleanups(bigint)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION set_cleanup_retention(text, interval), set_derived_id_key() TO eventstore_admin;
GRANT SELECT ON retention_cleanups TO eventstore_admin;

------------------------------------------------------------------------------
-- Logical backups that restore everything (sql/eventstore/80_restore.sql):
-- topics and their grants, consumers, members and parked events, upcasters
-- and protections are in pg_dump's output; a restore's rows replace those
-- an extension's script created again; a restored store is rebased onto the
-- transaction ids of its new cluster.
------------------------------------------------------------------------------

-- The functions that create topics, consumers and upcasters refuse an
-- existing one before they insert.
CREATE OR REPLACE FUNCTION create_topic(name text,
                             current_version text DEFAULT '1.0',
                             retention interval DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts text[];
BEGIN
    IF name IS NULL OR name !~ '^[a-z][a-z0-9_]*$' OR length(name) > 63 THEN
        RAISE EXCEPTION 'invalid topic name'
            USING ERRCODE = 'invalid_name',
                  DETAIL = format('Topic name %L must match ^[a-z][a-z0-9_]*$ and be at most 63 characters.', name);
    END IF;
    parts := regexp_match(current_version, '^(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})$');
    IF parts IS NULL OR parts[1]::bigint > 2147483647 OR parts[2]::bigint > 2147483647 THEN
        RAISE EXCEPTION 'invalid topic version'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Version %L must be "MAJOR.MINOR" with non-negative integers without signs, spaces or leading zeros.', current_version);
    END IF;
    IF retention IS NOT NULL AND retention <= interval '0' THEN
        RAISE EXCEPTION 'invalid topic retention'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Retention %s must be a positive interval or NULL.', retention);
    END IF;
    -- refused before the insert, which a restore's trigger would make a
    -- replacement (80_restore.sql)
    IF EXISTS (SELECT FROM eventstore.topics t WHERE t.name = create_topic.name) THEN
        RAISE unique_violation;
    END IF;
    INSERT INTO eventstore.topics (name, current_major, current_minor, retention)
    VALUES (name, parts[1]::integer, parts[2]::integer, retention);
    IF retention IS NOT NULL THEN
        PERFORM eventstore.refresh_archive();
    END IF;
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'topic "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  DETAIL = format('Topic %L is at version %s.', name,
                                  (SELECT t.current_major || '.' || t.current_minor
                                     FROM eventstore.topics t WHERE t.name = create_topic.name));
END
$$;

CREATE OR REPLACE FUNCTION register_upcaster(topic text, from_major integer, to_major integer,
                                  fn regprocedure, run_as regrole)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p pg_proc;
BEGIN
    IF topic IS NULL THEN
        RAISE EXCEPTION 'topic must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'Argument "topic" is NULL.';
    END IF;
    IF NOT EXISTS (SELECT FROM eventstore.topics t WHERE t.name = topic) THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object',
                  HINT = format('Create it with eventstore.create_topic(%L).', topic);
    END IF;
    IF from_major IS NULL OR to_major IS NULL OR from_major < 0 OR to_major <= from_major THEN
        RAISE EXCEPTION 'invalid upcaster versions'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "to_major" (%s) must be greater than "from_major" (%s), which must be 0 or more.',
                                  coalesce(to_major::text, 'NULL'), coalesce(from_major::text, 'NULL'));
    END IF;
    SELECT * INTO p FROM pg_proc WHERE oid = fn;
    IF NOT FOUND OR p.prokind <> 'f' OR p.pronargs <> 1 OR p.proargtypes[0] <> 'jsonb'::regtype
       OR p.prorettype <> 'jsonb'::regtype OR p.proretset THEN
        RAISE EXCEPTION 'invalid upcaster function'
            USING ERRCODE = 'invalid_function_definition',
                  DETAIL = format('Function %s must be f(jsonb) RETURNS jsonb.', coalesce(fn::text, 'NULL'));
    END IF;
    PERFORM eventstore.check_topics_readable(run_as, ARRAY[topic], 'the upcaster''s registrar');
    -- refused before the insert, which a restore's trigger would make a
    -- replacement (80_restore.sql)
    IF EXISTS (SELECT FROM eventstore.upcasters u
                WHERE u.topic = register_upcaster.topic AND u.from_major = register_upcaster.from_major) THEN
        RAISE unique_violation;
    END IF;
    INSERT INTO eventstore.upcasters (topic, from_major, to_major, fn, run_as)
    VALUES (topic, from_major, to_major, fn::text, run_as);
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'topic "%" has an upcaster from major version % already', topic, from_major
            USING ERRCODE = 'duplicate_object';
END
$$;

CREATE OR REPLACE FUNCTION register_consumer(name text, topics text[], handler regprocedure,
                                  batch_size integer, max_attempts integer,
                                  run_as regrole, types text[], members integer)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    missing text;
    fn      pg_proc;
BEGIN
    PERFORM eventstore.check_consumer_name(name);
    IF topics IS NULL OR cardinality(topics) = 0 OR array_position(topics, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'invalid consumer topics'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Argument "topics" must be a non-empty array of topic names without NULLs.';
    END IF;
    SELECT t INTO missing FROM unnest(topics) AS t
     WHERE NOT EXISTS (SELECT FROM eventstore.topics tp WHERE tp.name = t) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'topic "%" does not exist', missing
            USING ERRCODE = 'undefined_object',
                  HINT = format('Create it with eventstore.create_topic(%L).', missing);
    END IF;
    IF types IS NOT NULL AND (cardinality(types) NOT BETWEEN 1 AND 64
                              OR array_position(types, NULL) IS NOT NULL
                              OR EXISTS (SELECT FROM unnest(types) AS t WHERE t = '')) THEN
        RAISE EXCEPTION 'invalid consumer types'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Argument "types" must be NULL (every type) or an array of 1 to 64 event types without NULLs or empty strings.';
    END IF;
    IF batch_size IS NULL OR batch_size NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'invalid consumer batch size'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "batch_size" is %s; it must be between 1 and 10000.', coalesce(batch_size::text, 'NULL'));
    END IF;
    IF max_attempts IS NULL OR max_attempts NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'invalid consumer max_attempts'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "max_attempts" is %s; it must be between 1 and 1000.', coalesce(max_attempts::text, 'NULL'));
    END IF;
    PERFORM eventstore.check_member_count(members);
    IF handler IS NOT NULL THEN
        SELECT * INTO fn FROM pg_proc p WHERE p.oid = handler;
        IF fn.prokind <> 'f' OR fn.pronargs <> 1
           OR fn.proargtypes[0] <> 'eventstore.event'::regtype
           OR fn.prorettype <> 'void'::regtype OR fn.proretset THEN
            RAISE EXCEPTION 'invalid consumer handler'
                USING ERRCODE = 'invalid_function_definition',
                      DETAIL = format('Handler %s must be a function f(eventstore.event) RETURNS void.', handler);
        END IF;
        IF NOT has_function_privilege(run_as, handler, 'EXECUTE') THEN
            RAISE EXCEPTION 'permission denied for handler %', handler
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('Role %s, the consumer''s role, cannot execute it.', run_as);
        END IF;
    END IF;
    PERFORM eventstore.check_topics_readable(run_as, topics, 'the consumer''s role');
    -- refused before the insert, which a restore's trigger would make a
    -- replacement (80_restore.sql)
    IF EXISTS (SELECT FROM eventstore.consumers c WHERE c.name = register_consumer.name) THEN
        RAISE unique_violation;
    END IF;
    INSERT INTO eventstore.consumers (name, topics, handler, run_as, batch_size, max_attempts,
                                      types, members)
    VALUES (name, topics, handler::text, run_as, batch_size, max_attempts, types, members);
    PERFORM eventstore.start_members(name, 0, members, 0, NULL, NULL, 0, 0);
    PERFORM eventstore.consumers_changed();
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'consumer "%" already exists', name
            USING ERRCODE = 'duplicate_object';
END
$$;

-- Detecting a logical restore.  installation holds a random token that the
-- install script writes and pg_dump leaves out; dumped_installation, which
-- pg_dump holds, gets a copy at the first append or consumer call (never
-- from the install script, so a restore's own installation adds none).  A
-- physical copy, a replica or pg_upgrade keeps both tables as they are; a
-- restored dump brings the old token beside the new one.
CREATE TABLE installation (
    token uuid NOT NULL PRIMARY KEY
);
COMMENT ON TABLE installation IS
    'a token of this installation; not in logical dumps';
INSERT INTO installation VALUES (pg_catalog.gen_random_uuid());

CREATE TABLE dumped_installation (
    token uuid NOT NULL PRIMARY KEY
);
COMMENT ON TABLE dumped_installation IS
    'the token of the installation the data was written in; in logical dumps, so that a restore is told apart';
SELECT pg_catalog.pg_extension_config_dump('dumped_installation', '');
-- A backend that found the store settled asks again once this changes
-- (extension/restore.c).
CREATE FUNCTION installation_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_installation_changed';
CREATE TRIGGER installation_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON dumped_installation
    FOR EACH STATEMENT EXECUTE FUNCTION installation_changed();

-- Consumers, their members and parked events, topics with their grants
-- (the grantee arrays here, the privileges on the extension's functions as
-- pg_dump's own ACLs of extension objects), upcasters and protections.
-- One call per statement: each call rewrites the extension's catalog row.
SELECT pg_catalog.pg_extension_config_dump('topics', '');
SELECT pg_catalog.pg_extension_config_dump('consumers', '');
SELECT pg_catalog.pg_extension_config_dump('members', '');
SELECT pg_catalog.pg_extension_config_dump('parked', '');
SELECT pg_catalog.pg_extension_config_dump('batch_ids', '');
SELECT pg_catalog.pg_extension_config_dump('upcasters', '');
SELECT pg_catalog.pg_extension_config_dump('protections', '');

-- A restore first runs the install scripts again (CREATE EXTENSION), and an
-- extension such as birdwatch creates its topics, consumers, grants and
-- protections there; the dump's rows then arrive for the same keys.  The
-- dump's row wins: it replaces the one just created (a consumer with its
-- fresh members, so that the dump's members and progress come in after
-- it).  The functions that create these rows refuse an existing name
-- before they insert, so outside a restore nothing reaches this; inside an
-- extension script an insert is never a replacement.
CREATE FUNCTION in_extension_script() RETURNS boolean
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'eventstore_in_extension_script';

CREATE FUNCTION restored_row_replaces() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF eventstore.in_extension_script() THEN
        RETURN NEW;
    END IF;
    CASE TG_TABLE_NAME
    WHEN 'topics' THEN
        -- in place: upcasters and protections refer to it
        UPDATE eventstore.topics t
           SET current_major = NEW.current_major, current_minor = NEW.current_minor,
               retention = NEW.retention, created_at = NEW.created_at,
               appenders = NEW.appenders, readers = NEW.readers, erasers = NEW.erasers
         WHERE t.name = NEW.name;
        IF FOUND THEN
            RETURN NULL;
        END IF;
    WHEN 'consumers' THEN
        DELETE FROM eventstore.consumers c WHERE c.name = NEW.name;
    WHEN 'upcasters' THEN
        DELETE FROM eventstore.upcasters u
         WHERE u.topic = NEW.topic AND u.from_major = NEW.from_major;
    WHEN 'protections' THEN
        DELETE FROM eventstore.protections p WHERE p.topic = NEW.topic;
    END CASE;
    RETURN NEW;
END
$$;
CREATE TRIGGER restored_row_replaces BEFORE INSERT ON topics
    FOR EACH ROW EXECUTE FUNCTION restored_row_replaces();
CREATE TRIGGER restored_row_replaces BEFORE INSERT ON consumers
    FOR EACH ROW EXECUTE FUNCTION restored_row_replaces();
CREATE TRIGGER restored_row_replaces BEFORE INSERT ON upcasters
    FOR EACH ROW EXECUTE FUNCTION restored_row_replaces();
CREATE TRIGGER restored_row_replaces BEFORE INSERT ON protections
    FOR EACH ROW EXECUTE FUNCTION restored_row_replaces();

-- The id of the current subtransaction (pg_current_xact_id() gives the
-- top transaction's), assigned if it has none.
CREATE FUNCTION subtransaction_id() RETURNS xid8
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'eventstore_subtransaction_id';

-- The rebase.  Restored events carry the transaction ids of the cluster
-- they were appended in, and the members' progress is snapshots of that
-- cluster: consistent with each other, meaningless here.  In one
-- transaction:
--  * every member's undelivered events are found with the old ids and
--    snapshots (member_is_undelivered);
--  * events no member still needs get xid 3, visible to every snapshot of
--    this cluster (a consumer created later gets them all);
--  * the others are grouped by the members that still need them, and each
--    group gets a transaction id of this cluster: its UPDATE runs in a
--    subtransaction of its own, committed with the rebase;
--  * a member with progress gets as done snapshot this transaction's
--    snapshot (which shows the groups and hides this transaction and the
--    ones in progress) with the groups it still needs added as in
--    progress; its window is closed (the rest of it comes in the next
--    one), its floor is below the groups' first position, and a batch
--    given out and not acked is given out again.  A retiring member's
--    fence is made the same way from the groups its successors need.
--    A member that has not started keeps its start position.
-- It rewrites the xid of every restored event once.
CREATE FUNCTION rebase_restored() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g     record;
    gx    xid8;
    fl    bigint;
    snap  pg_snapshot;
BEGIN
    CREATE TEMP TABLE eventstore_rebase_needs ON COMMIT DROP AS
    SELECT e.position,
           array_agg(format('%s/%s/%s', m.consumer, m.generation, m.member)
                     ORDER BY m.consumer, m.generation, m.member) AS members
      FROM eventstore.events e
      JOIN eventstore.consumers c
        ON e.topic = ANY (c.topics) AND (c.types IS NULL OR e.type = ANY (c.types))
      JOIN eventstore.members m
        ON m.consumer = c.name
       AND m.member = eventstore.member_of(e.stream, e.id, m.member_count)
     WHERE eventstore.member_is_undelivered(m, e.position, e.xid)
     GROUP BY e.position;
    CREATE TEMP TABLE eventstore_rebase_groups (xid xid8, members text[], first bigint)
        ON COMMIT DROP;

    UPDATE eventstore.events e SET xid = '3'
     WHERE e.xid <> '3'
       AND NOT EXISTS (SELECT FROM pg_temp.eventstore_rebase_needs n WHERE n.position = e.position);
    FOR g IN SELECT n.members, array_agg(n.position) AS positions, min(n.position) AS first
               FROM pg_temp.eventstore_rebase_needs n GROUP BY n.members ORDER BY min(n.position) LOOP
        BEGIN
            gx := eventstore.subtransaction_id();
            UPDATE eventstore.events e SET xid = gx WHERE e.position = ANY (g.positions);
            INSERT INTO pg_temp.eventstore_rebase_groups VALUES (gx, g.members, g.first);
        EXCEPTION WHEN no_data_found THEN
            RAISE;  -- only the subtransaction is wanted
        END;
    END LOOP;

    -- the floor first: every event the snapshot does not show is above it
    fl := eventstore.window_floor();
    snap := eventstore.window_snapshot();
    UPDATE eventstore.members m
       SET done_snapshot = r.done, done_floor = r.done_floor,
           window_snapshot = NULL, window_after = NULL, window_floor = NULL,
           batch_kind = nullif(m.batch_kind, 'window'),
           batch_upto = CASE WHEN m.batch_kind = 'window' THEN NULL ELSE m.batch_upto END,
           leased_until = CASE WHEN m.batch_kind = 'window' THEN NULL ELSE m.leased_until END
      FROM (SELECT o.consumer, o.generation, o.member,
                   eventstore.snapshot_with(snap, array_agg(x.xid) FILTER (WHERE x.xid IS NOT NULL)) AS done,
                   CASE WHEN fl IS NOT NULL THEN least(fl, min(x.first) - 1) END AS done_floor
              FROM eventstore.members o
              LEFT JOIN pg_temp.eventstore_rebase_groups x
                ON format('%s/%s/%s', o.consumer, o.generation, o.member) = ANY (x.members)
             WHERE o.done_snapshot IS NOT NULL OR o.window_snapshot IS NOT NULL
             GROUP BY o.consumer, o.generation, o.member) r
     WHERE (m.consumer, m.generation, m.member) = (r.consumer, r.generation, r.member);
    -- a fence hides what the newest generation is to deliver
    UPDATE eventstore.members m
       SET fence_snapshot = r.fence, fence_floor = r.fence_floor
      FROM (SELECT c.name AS consumer,
                   eventstore.snapshot_with(snap, array_agg(x.xid) FILTER (WHERE x.xid IS NOT NULL)) AS fence,
                   CASE WHEN fl IS NOT NULL THEN least(fl, min(x.first) - 1) END AS fence_floor
              FROM eventstore.consumers c
              LEFT JOIN pg_temp.eventstore_rebase_groups x
                ON EXISTS (SELECT FROM eventstore.members n
                            WHERE n.consumer = c.name AND n.fence_snapshot IS NULL
                              AND format('%s/%s/%s', n.consumer, n.generation, n.member) = ANY (x.members))
             GROUP BY c.name) r
     WHERE m.consumer = r.consumer AND m.fence_snapshot IS NOT NULL;
END
$$;

-- snap with the transactions xids added as in progress (NULL xids: none).
CREATE FUNCTION snapshot_with(snap pg_snapshot, xids xid8[]) RETURNS pg_snapshot
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF snap IS NULL OR coalesce(cardinality(xids), 0) = 0 THEN
        RETURN snap;
    END IF;
    RETURN format('%s:%s:%s',
                  least(pg_snapshot_xmin(snap), (SELECT min(x) FROM unnest(xids) x)),
                  greatest(pg_snapshot_xmax(snap)::text::numeric,
                           (SELECT max(x) FROM unnest(xids) x)::text::numeric + 1),
                  (SELECT string_agg(x::text, ',' ORDER BY x)
                     FROM (SELECT pg_snapshot_xip(snap) UNION SELECT unnest(xids)) AS xs(x)))::pg_snapshot;
END
$$;

-- Called by the first append or consumer call of a backend
-- (extension/restore.c), as the extension's owner: in a restored database
-- (a token other than this installation's in dumped_installation), rebases
-- once, under a lock, so that a second caller finds it done.  Returns true
-- when it found the store settled (no other token, nothing written: the
-- common case takes no lock and writes nothing, so that concurrent first
-- appends never wait for each other), which the backend then remembers.
CREATE FUNCTION rebase_if_restored() RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    local uuid := (SELECT i.token FROM eventstore.installation i);
BEGIN
    IF NOT EXISTS (SELECT FROM eventstore.dumped_installation d WHERE d.token <> local) THEN
        RETURN true;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('eventstore.rebase_restored'));
    IF NOT EXISTS (SELECT FROM eventstore.dumped_installation d WHERE d.token <> local) THEN
        RETURN false;
    END IF;
    PERFORM eventstore.rebase_restored();
    DELETE FROM eventstore.dumped_installation;
    INSERT INTO eventstore.dumped_installation VALUES (local);
    RAISE LOG 'eventstore: a restored store was rebased onto the transaction ids of this cluster';
    RETURN false;
END
$$;

-- The installation's token goes into its dumps, as a fresh installation's
-- does (sql/eventstore/80_restore.sql).
INSERT INTO dumped_installation SELECT token FROM installation;

REVOKE ALL ON installation, dumped_installation FROM PUBLIC;
REVOKE ALL ON FUNCTION installation_changed(), in_extension_script(), restored_row_replaces(), subtransaction_id(),
                       rebase_restored(), snapshot_with(pg_snapshot, xid8[]),
                       rebase_if_restored()
    FROM PUBLIC;
