-- sql/eventstore/45_retention.sql: events of a topic with a retention are
-- removed once older (by the dispatcher, extension/retention.c, or
-- purge_expired()); consumers count those they had not received yet.
-- Other extensions register cleanups of their own tables, which the same
-- passes run, each with its retention.

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
CREATE FUNCTION purge_batch(max integer) RETURNS bigint
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
        ), floors_raised AS (
            -- A stream whose newest events go keeps their version
            -- (extension/stream_head.c).
            UPDATE eventstore.stream_heads sh
               SET version_floor = newest.version
              FROM (SELECT g.stream, max(g.stream_version) AS version FROM gone g
                     WHERE g.stream IS NOT NULL GROUP BY g.stream) newest
             WHERE sh.topic = t.name AND sh.stream = newest.stream
               AND sh.version_floor < newest.version
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
    -- appends pushed out, a stream at a time, each stream's row locked (a
    -- stream being limited or closed waits for the next pass).  Appends go
    -- on meanwhile: they only push more out.
    FOR h IN SELECT sh.topic, sh.stream, v.version - sh.max_count + 1 AS keep_from
               FROM eventstore.stream_heads sh
              CROSS JOIN LATERAL (SELECT eventstore.head_version(sh.topic, sh.stream, sh.version_floor)
                                         AS version) v
              WHERE sh.max_count IS NOT NULL
                AND EXISTS (SELECT FROM eventstore.events e
                             WHERE e.topic = sh.topic AND e.stream = sh.stream
                               AND e.stream_version <= v.version - sh.max_count)
                FOR UPDATE OF sh SKIP LOCKED
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

CREATE FUNCTION purge_expired() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total bigint := 0;
    n     bigint;
BEGIN
    LOOP
        n := eventstore.purge_batch(10000);
        total := total + n;
        EXIT WHEN n < 10000;
    END LOOP;
    RETURN total;
END
$$;
COMMENT ON FUNCTION purge_expired() IS
    'remove now, in this transaction, every event older than its topic''s retention, and the expired rows of registered cleanups; returns how many';

CREATE FUNCTION set_retention(topic text, retention interval) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF topic IS NULL THEN
        RAISE EXCEPTION 'topic must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'Argument "topic" is NULL.';
    END IF;
    IF retention <= interval '0' THEN
        RAISE EXCEPTION 'invalid topic retention'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Retention %s must be a positive interval or NULL.', retention);
    END IF;
    UPDATE eventstore.topics t SET retention = set_retention.retention WHERE t.name = topic;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object',
                  HINT = format('Create it with eventstore.create_topic(%L).', topic);
    END IF;
    PERFORM eventstore.refresh_archive();
END
$$;
COMMENT ON FUNCTION set_retention(text, interval) IS
    'keep the events of a topic for this long (NULL: for ever); older ones are removed by the dispatcher or purge_expired()';
