-- eventstore 1.1 -> 1.2: what 1.2 changes in the SQL objects against 1.1.
--
-- A fresh CREATE EXTENSION eventstore runs eventstore--1.2.sql, which make
-- builds from the current source, sql/eventstore/*.sql; an installation of
-- 1.1 runs this script instead, and test/shell/upgrade.sh checks that both
-- end up the same, object for object.  Once 1.2 is released this script is
-- never edited again: later changes go into eventstore--1.2--<next>.sql.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '1.2'" to load this file. \quit

------------------------------------------------------------------------------
-- Statistics: cumulative counters per database and topic in shared memory
-- (extension/stats.c), shown by the views stats and stats_refused.
------------------------------------------------------------------------------

CREATE FUNCTION stats_counters(OUT database oid, OUT topic text, OUT counter text,
                               OUT value bigint, OUT stats_reset timestamptz)
RETURNS SETOF record
LANGUAGE c STRICT VOLATILE
AS 'MODULE_PATHNAME', 'eventstore_stats_counters';
COMMENT ON FUNCTION stats_counters() IS
    'every counter of eventstore.stats, a row each, refusals as refused:<SQLSTATE class>';

CREATE VIEW stats AS
SELECT d.datname AS database,
       s.topic,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'appended'), 0)::bigint AS appended,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'duplicates'), 0)::bigint AS duplicates,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'batches'), 0)::bigint AS batches,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter LIKE 'refused:%'), 0)::bigint AS refused,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'notifications'), 0)::bigint AS notifications,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'dispatcher_rounds'), 0)::bigint AS dispatcher_rounds,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'handler_calls'), 0)::bigint AS handler_calls,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'handler_failures'), 0)::bigint AS handler_failures,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'parked'), 0)::bigint AS parked,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'purged'), 0)::bigint AS purged,
       pg_catalog.max(s.stats_reset) AS stats_reset
  FROM stats_counters() s
  JOIN pg_catalog.pg_database d ON d.oid = s.database
 GROUP BY d.datname, s.topic;
COMMENT ON VIEW stats IS
    'what the store did per database and topic (topic NULL: without a topic) since the server started or stats_reset()';

CREATE VIEW stats_refused AS
SELECT d.datname AS database,
       s.topic,
       pg_catalog.substr(s.counter, 9) AS sqlstate_class,
       s.value AS refused
  FROM stats_counters() s
  JOIN pg_catalog.pg_database d ON d.oid = s.database
 WHERE s.counter LIKE 'refused:%';
COMMENT ON VIEW stats_refused IS
    'refused appends per database, topic and SQLSTATE class (other: a class not listed)';

CREATE FUNCTION stats_reset() RETURNS void
LANGUAGE c STRICT VOLATILE
AS 'MODULE_PATHNAME', 'eventstore_stats_reset';
COMMENT ON FUNCTION stats_reset() IS
    'set the counters of eventstore.stats of this database to zero';

-- purge_batch's report of what it removed; granted to nobody.
CREATE FUNCTION stats_count_purged(topic text, n bigint) RETURNS void
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'eventstore_stats_count_purged';

REVOKE ALL ON FUNCTION stats_counters(), stats_reset(), stats_count_purged(text, bigint) FROM PUBLIC;
REVOKE ALL ON stats, stats_refused FROM PUBLIC;
GRANT USAGE ON SCHEMA eventstore TO pg_monitor;
GRANT SELECT ON stats, stats_refused TO eventstore_reader, eventstore_admin, pg_monitor;
GRANT EXECUTE ON FUNCTION stats_counters() TO eventstore_reader, eventstore_admin, pg_monitor;
GRANT EXECUTE ON FUNCTION stats_reset() TO eventstore_admin;

------------------------------------------------------------------------------
-- Retention reports what it removed to the statistics (purged), and
-- removes the snapshots of the events it removes (see below).
------------------------------------------------------------------------------

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
            RETURNING e.position, e.xid, e.type, e.stream, e.stream_version
        ), snapshots_gone AS (
            -- A snapshot goes with the event of its version.
            DELETE FROM eventstore.snapshots s
             USING gone g
             WHERE s.topic = t.name AND s.stream = g.stream AND s.version = g.stream_version
        ), missed AS (
            UPDATE eventstore.consumers c
               SET skipped = c.skipped + (SELECT count(*) FROM gone g
                                           WHERE eventstore.is_undelivered(c, g.position, g.xid)
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
    RETURN removed;
END
$$;

------------------------------------------------------------------------------
-- Streams: the table of stream versions becomes stream_heads, with when a
-- stream was closed, and the name streams goes to a view of every stream's
-- state; stream_version, last_event, backward read_stream, close_stream.
------------------------------------------------------------------------------

ALTER TABLE streams RENAME TO stream_heads;
ALTER INDEX streams_pkey RENAME TO stream_heads_pkey;
ALTER TABLE stream_heads ADD COLUMN closed_at timestamptz;
ALTER TABLE stream_heads ADD COLUMN max_count bigint CHECK (max_count >= 1);
COMMENT ON TABLE stream_heads IS 'current version of every stream, when it was closed and how many events it keeps; locked by appenders to the stream';
CREATE INDEX stream_heads_max_count ON stream_heads (topic, stream) WHERE max_count IS NOT NULL;

-- The version (and closing) an erased stream had reached, so that a stream
-- appended to again after erase_stream goes on from there and read models
-- keyed on stream and version never meet a version twice.  The name is
-- not kept: only a digest of it under a key of this installation
-- (stream_name_key), which cannot be turned back into the name without the
-- key, and which no role may read.
CREATE TABLE erased_streams (
    topic     text COLLATE "C" NOT NULL,
    digest    bytea NOT NULL,
    version   bigint NOT NULL,
    closed_at timestamptz,
    PRIMARY KEY (topic, digest)
);
COMMENT ON TABLE erased_streams IS 'the versions erased streams reached, by a keyed digest of their name';

-- One key, made by the first erasure (so that a restored dump brings its
-- own): 32 bytes from the server's strong random source.
CREATE TABLE stream_name_key (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    key      bytea NOT NULL CHECK (pg_catalog.length(key) = 32)
);
COMMENT ON TABLE stream_name_key IS 'the key of the digests in erased_streams; readable by no role';
SELECT pg_catalog.pg_extension_config_dump('erased_streams', '');
SELECT pg_catalog.pg_extension_config_dump('stream_name_key', '');

-- The digest of a stream's name, NULL while nothing has been erased.
CREATE FUNCTION stream_digest(stream text) RETURNS bytea
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sha256(k.key || convert_to(stream, 'UTF8')) FROM eventstore.stream_name_key k
$$;


-- The arguments every function on one stream takes: both given, the topic
-- one that exists, and a page size (max) as check_read_args wants it.
CREATE FUNCTION check_stream_args(topic text, stream text, max integer DEFAULT 1) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF topic IS NULL OR stream IS NULL THEN
        RAISE EXCEPTION 'topic and stream must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = format('Argument "%s" is NULL.', CASE WHEN topic IS NULL THEN 'topic' ELSE 'stream' END);
    END IF;
    PERFORM eventstore.check_read_args(topic, max);
END
$$;

DROP FUNCTION read_stream(text, text, bigint, integer);
-- Forward: the versions after after_version, oldest first.  Backward: the
-- newest first, from the stream's last version, or from the one below
-- after_version when it is given (not 0 or NULL), so that a backward reader
-- pages with the last version it saw, as a forward one does.  Either way an
-- index range scan of events_stream_version, as long as the page.
CREATE FUNCTION read_stream(topic text, stream text,
                            after_version bigint DEFAULT 0, max integer DEFAULT 1000,
                            backward boolean DEFAULT false)
RETURNS SETOF event
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pushed_out bigint;
BEGIN
    PERFORM eventstore.check_stream_args(topic, stream, max);
    IF backward IS NULL THEN
        RAISE EXCEPTION 'backward must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "backward" is NULL.';
    END IF;
    -- The versions a max_count has pushed out, which the retention task
    -- has not removed yet: not read.
    SELECT h.version - h.max_count INTO pushed_out FROM eventstore.stream_heads h
     WHERE h.topic = read_stream.topic AND h.stream = read_stream.stream;
    IF NOT backward THEN
        RETURN QUERY
            SELECT s.position, s.id, s.topic, s.stream, s.stream_version, s.envelope, s.recorded_at
              FROM eventstore.stored_events s
             WHERE s.topic = read_stream.topic
               AND s.stream = read_stream.stream
               AND s.stream_version > greatest(coalesce(after_version, 0), coalesce(pushed_out, 0))
             ORDER BY s.stream_version
             LIMIT max;
    ELSE
        RETURN QUERY
            SELECT s.position, s.id, s.topic, s.stream, s.stream_version, s.envelope, s.recorded_at
              FROM eventstore.stored_events s
             WHERE s.topic = read_stream.topic
               AND s.stream = read_stream.stream
               AND s.stream_version < coalesce(nullif(after_version, 0), 9223372036854775807)
               AND s.stream_version > coalesce(pushed_out, 0)
             ORDER BY s.stream_version DESC
             LIMIT max;
    END IF;
END
$$;
COMMENT ON FUNCTION read_stream(text, text, bigint, integer, boolean) IS
    'events of one stream after a stream version in version order, or backward from the newest or from below a version';

CREATE FUNCTION stream_version(topic text, stream text) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.check_stream_args(topic, stream);
    RETURN coalesce((SELECT h.version FROM eventstore.stream_heads h
                      WHERE h.topic = stream_version.topic
                        AND h.stream = stream_version.stream),
                    (SELECT x.version FROM eventstore.erased_streams x
                      WHERE x.topic = stream_version.topic
                        AND x.digest = eventstore.stream_digest(stream_version.stream)),
                    0);
END
$$;
COMMENT ON FUNCTION stream_version(text, text) IS
    'the version of a stream''s last event (or the one it had reached when it was erased), 0 for a stream with none: the expected_version of the next append';

CREATE FUNCTION last_event(topic text, stream text) RETURNS event
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.check_stream_args(topic, stream);
    RETURN (SELECT ROW(s.position, s.id, s.topic, s.stream, s.stream_version,
                       s.envelope, s.recorded_at)::eventstore.event
              FROM eventstore.stored_events s
             WHERE s.topic = last_event.topic
               AND s.stream = last_event.stream
             ORDER BY s.stream_version DESC
             LIMIT 1);
END
$$;
COMMENT ON FUNCTION last_event(text, text) IS
    'the newest event of a stream; NULL when it has none';

-- One row per stream of the topics the querying role may read (a member of
-- eventstore_reader, or granted read on the topic): current_user in a view
-- is the role that queries it.  The first and last events are found through
-- events_stream_version, one index probe each.  A stream whose events all
-- expired has its version and no positions.
CREATE VIEW streams AS
SELECT h.topic,
       h.stream,
       h.version,
       f.position AS first_position,
       l.position AS last_position,
       l.recorded_at AS last_recorded_at,
       CASE WHEN h.closed_at IS NULL THEN 'open' ELSE 'closed' END AS state,
       h.closed_at,
       h.max_count
  FROM stream_heads h
  JOIN topics t ON t.name OPERATOR(pg_catalog.=) h.topic
  LEFT JOIN LATERAL (SELECT e.position FROM events e
                      WHERE e.topic OPERATOR(pg_catalog.=) h.topic
                        AND e.stream OPERATOR(pg_catalog.=) h.stream
                        AND e.stream_version OPERATOR(pg_catalog.>)
                            COALESCE(h.version OPERATOR(pg_catalog.-) h.max_count, 0)
                      ORDER BY e.stream_version
                      LIMIT 1) f ON true
  LEFT JOIN LATERAL (SELECT e.position, e.recorded_at FROM events e
                      WHERE e.topic OPERATOR(pg_catalog.=) h.topic
                        AND e.stream OPERATOR(pg_catalog.=) h.stream
                      ORDER BY e.stream_version DESC
                      LIMIT 1) l ON true
 WHERE pg_catalog.pg_has_role('eventstore_reader', 'USAGE')
    OR EXISTS (SELECT FROM pg_catalog.unnest(t.readers) AS r(role)
                WHERE pg_catalog.pg_has_role(r.role, 'USAGE'));
COMMENT ON VIEW streams IS
    'every stream of the topics the querying role may read: version, first and last position, state';

-- A tombstone: appends of new events to the stream fail from now on (55000,
-- extension/append.c); its events stay readable and are delivered as
-- before.  The stream's row is locked as an append locks it, so an append
-- either committed before the close or sees it.  A stream that has no
-- events yet can be closed too, and closing a closed stream changes nothing.
CREATE FUNCTION close_stream(topic text, stream text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.check_stream_args(topic, stream);
    INSERT INTO eventstore.stream_heads AS h (topic, stream, version, closed_at)
    VALUES (topic, stream, 0, now())
    ON CONFLICT ON CONSTRAINT stream_heads_pkey
    DO UPDATE SET closed_at = coalesce(h.closed_at, excluded.closed_at);
END
$$;
COMMENT ON FUNCTION close_stream(text, text) IS
    'close a stream for good: no event can be appended to it any more; it can still be read';

------------------------------------------------------------------------------
-- Snapshots, removed with their stream by erase_stream (and by retention
-- with their event, in purge_batch above); erase_stream keeps what the
-- stream reached under a keyed digest of its name (erased_streams, above).
------------------------------------------------------------------------------

CREATE TABLE snapshots (
    topic    text COLLATE "C" NOT NULL,
    stream   text COLLATE "C" NOT NULL,
    version  bigint NOT NULL CHECK (version > 0),
    state    jsonb NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (topic, stream, version)
);
COMMENT ON TABLE snapshots IS 'states of aggregates at a version of their stream, saved by save_snapshot';
-- Written by applications, like events: part of a logical dump.
SELECT pg_catalog.pg_extension_config_dump('snapshots', '');

-- Saves state as the aggregate after the stream's event of version; saving
-- a version again replaces its state.  The stream's head is share-locked
-- first, so that an erase_stream running at the same time either removes
-- this snapshot with the stream or finds the stream gone before it.
CREATE FUNCTION save_snapshot(topic text, stream text, version bigint, state jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current bigint;
BEGIN
    PERFORM eventstore.check_stream_args(topic, stream);
    IF version IS NULL OR state IS NULL THEN
        RAISE EXCEPTION 'version and state must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = format('Argument "%s" is NULL.', CASE WHEN version IS NULL THEN 'version' ELSE 'state' END);
    END IF;
    SELECT h.version INTO current FROM eventstore.stream_heads h
     WHERE h.topic = save_snapshot.topic AND h.stream = save_snapshot.stream
       FOR KEY SHARE;
    IF NOT EXISTS (SELECT FROM eventstore.events e
                    WHERE e.topic = save_snapshot.topic AND e.stream = save_snapshot.stream
                      AND e.stream_version = save_snapshot.version) THEN
        RAISE EXCEPTION 'stream "%" of topic "%" has no event of version %', stream, topic, version
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "version" is %s; the stream is at version %s%s.', version,
                                  coalesce(current, 0),
                                  CASE WHEN version BETWEEN 1 AND current THEN ' and that event is no longer stored' ELSE '' END),
                  HINT = 'Snapshot a version the stream has, as read_stream or last_event return it.';
    END IF;
    INSERT INTO eventstore.snapshots AS s (topic, stream, version, state)
    VALUES (topic, stream, version, state)
    ON CONFLICT ON CONSTRAINT snapshots_pkey
    DO UPDATE SET state = excluded.state, taken_at = excluded.taken_at;
END
$$;
COMMENT ON FUNCTION save_snapshot(text, text, bigint, jsonb) IS
    'save the state of a stream''s aggregate as of one of its versions';

-- The newest snapshot at or below max_version (NULL: the newest of all),
-- no row when there is none.
CREATE FUNCTION load_snapshot(topic text, stream text, max_version bigint DEFAULT NULL)
RETURNS TABLE (version bigint, state jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.check_stream_args(topic, stream);
    RETURN QUERY
        SELECT s.version, s.state
          FROM eventstore.snapshots s
         WHERE s.topic = load_snapshot.topic
           AND s.stream = load_snapshot.stream
           AND s.version <= coalesce(max_version, 9223372036854775807)
           AND EXISTS (SELECT FROM eventstore.events e
                        WHERE e.topic = s.topic AND e.stream = s.stream
                          AND e.stream_version = s.version)
         ORDER BY s.version DESC
         LIMIT 1;
END
$$;
COMMENT ON FUNCTION load_snapshot(text, text, bigint) IS
    'the newest snapshot of a stream at or below a version: its version and state';

CREATE OR REPLACE FUNCTION erase_stream_as(topic text, stream text, caller oid) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    head record;
BEGIN
    PERFORM eventstore.check_erase_allowed(topic, caller);
    -- The stream's row first: appends to the stream wait until this commits.
    -- What it had reached is kept under the digest of its name.
    DELETE FROM eventstore.stream_heads h WHERE h.topic = erase_stream_as.topic AND h.stream = erase_stream_as.stream
    RETURNING h.version, h.closed_at INTO head;
    IF FOUND THEN
        INSERT INTO eventstore.stream_name_key (key)
        VALUES (uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()))
        ON CONFLICT DO NOTHING;
        INSERT INTO eventstore.erased_streams (topic, digest, version, closed_at)
        VALUES (topic, eventstore.stream_digest(stream), head.version, head.closed_at)
        ON CONFLICT ON CONSTRAINT erased_streams_pkey
        DO UPDATE SET version = excluded.version, closed_at = excluded.closed_at;
    END IF;
    RETURN eventstore.remove_stream_events(topic, stream, 9223372036854775807);
END
$$;

COMMENT ON FUNCTION erase_stream(text, text) IS
    'remove every event of a stream now (for erasure of personal data), its name with them; returns how many';

REVOKE ALL ON FUNCTION check_stream_args(text, text, integer), read_stream(text, text, bigint, integer, boolean),
                       stream_version(text, text), last_event(text, text), close_stream(text, text),
                       save_snapshot(text, text, bigint, jsonb), load_snapshot(text, text, bigint)
    FROM PUBLIC;
REVOKE ALL ON streams, snapshots, erased_streams, stream_name_key FROM PUBLIC;
REVOKE ALL ON FUNCTION stream_digest(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION read_stream(text, text, bigint, integer, boolean),
                          stream_version(text, text), last_event(text, text),
                          load_snapshot(text, text, bigint)
    TO eventstore_reader;
GRANT SELECT ON streams TO eventstore_reader, eventstore_admin;
GRANT EXECUTE ON FUNCTION close_stream(text, text) TO eventstore_writer, eventstore_admin;
GRANT EXECUTE ON FUNCTION save_snapshot(text, text, bigint, jsonb) TO eventstore_writer;

-- A role granted read on a topic sees that topic's streams in the view:
-- grant_topic and revoke_topic give and take SELECT on it, and the roles
-- granted read before this release get it now.
CREATE OR REPLACE FUNCTION grant_topic(topic text, privilege text, grantee regrole) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.check_topic_grant_args(topic, privilege, grantee);
    EXECUTE format('UPDATE eventstore.topics t SET %1$I = array_append(t.%1$I, $1)'
                   ' WHERE t.name = $2 AND NOT $1 = ANY (t.%1$I)',
                   eventstore.topic_privilege_column(privilege))
        USING grantee, topic;
    EXECUTE format('GRANT USAGE ON SCHEMA eventstore TO %s', grantee::text);
    EXECUTE format('GRANT USAGE ON TYPE eventstore.event, eventstore.delivery TO %s', grantee::text);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s',
                   eventstore.topic_privilege_functions(privilege), grantee::text);
    -- The view of streams shows a role the streams of the topics it may
    -- read, and only those.
    IF privilege = 'read' THEN
        EXECUTE format('GRANT SELECT ON eventstore.streams TO %s', grantee::text);
    END IF;
EXCEPTION
    WHEN check_violation THEN
        RAISE EXCEPTION 'too many grantees of % on topic "%"', privilege, topic
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = 'A topic has at most 16 grantees per privilege.',
                  HINT = 'Grant the privilege to a group role and make the roles its members.';
END
$$;

CREATE OR REPLACE FUNCTION revoke_topic(topic text, privilege text, grantee regrole) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed integer;
    held    text[];
    p       text;
BEGIN
    PERFORM eventstore.check_topic_grant_args(topic, privilege, grantee);
    EXECUTE format('UPDATE eventstore.topics t SET %1$I = array_remove(t.%1$I, $1)'
                   ' WHERE t.name = $2 AND $1 = ANY (t.%1$I)',
                   eventstore.topic_privilege_column(privilege))
        USING grantee, topic;
    GET DIAGNOSTICS removed = ROW_COUNT;
    IF removed = 0 THEN
        RETURN;
    END IF;
    -- The functions go with the role's last grant of the privilege; some
    -- (derived_id) come with several privileges, so those the role still
    -- holds are granted again.
    held := eventstore.topic_privileges_of(grantee);
    IF privilege = ANY (held) THEN
        RETURN;
    END IF;
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM %s',
                   eventstore.topic_privilege_functions(privilege), grantee::text);
    IF privilege = 'read' THEN
        EXECUTE format('REVOKE SELECT ON eventstore.streams FROM %s', grantee::text);
    END IF;
    FOREACH p IN ARRAY held LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s',
                       eventstore.topic_privilege_functions(p), grantee::text);
    END LOOP;
    IF cardinality(held) = 0 THEN
        EXECUTE format('REVOKE USAGE ON TYPE eventstore.event, eventstore.delivery FROM %s',
                       grantee::text);
        EXECUTE format('REVOKE USAGE ON SCHEMA eventstore FROM %s', grantee::text);
    END IF;
END
$$;

DO $$
DECLARE
    r regrole;
BEGIN
    FOR r IN SELECT DISTINCT unnest(t.readers) FROM eventstore.topics t LOOP
        EXECUTE format('GRANT SELECT ON eventstore.streams TO %s', r::text);
    END LOOP;
END
$$;

------------------------------------------------------------------------------
-- Reads that never skip: read() returns only events up to the read horizon
-- (safe_position(), extension/horizon.c).
------------------------------------------------------------------------------

-- The read horizon (extension/horizon.c): a position up to which every
-- transaction that appended has committed or aborted.  NULL when the
-- library is not preloaded (no shared memory to keep it in).
CREATE FUNCTION safe_position() RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'eventstore_safe_position';
COMMENT ON FUNCTION safe_position() IS
    'the position up to which every appending transaction has committed or aborted: read() returns nothing above it';

-- Only events at or below the horizon: a reader that pages with the last
-- position it saw never passes over an event that commits late.  The
-- horizon is taken in a statement of its own, before the one that reads
-- the events takes its snapshot, so the function is VOLATILE (under READ
-- COMMITTED, each statement of a VOLATILE function has a new snapshot).
DROP FUNCTION read(text, bigint, integer);
CREATE FUNCTION read(topic text, after bigint DEFAULT 0, max integer DEFAULT 1000,
                     types text[] DEFAULT NULL)
RETURNS SETOF event
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    horizon bigint;
BEGIN
    PERFORM eventstore.check_read_args(topic, max);
    IF types IS NOT NULL AND (cardinality(types) = 0 OR array_position(types, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION 'invalid read types'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Argument "types" must be NULL (every type) or a non-empty array of event types without NULLs.';
    END IF;
    horizon := coalesce(eventstore.safe_position(), 9223372036854775807);
    -- A query for each case rather than "topic IS NULL OR ..." and
    -- "types IS NULL OR ...": a generic plan cannot fold those, and pays
    -- for them on every row (and the topic's index goes unused).  The types
    -- are a filter of the same scan: the events of other types are passed
    -- over where they are found.
    IF topic IS NULL AND types IS NULL THEN
        RETURN QUERY
            SELECT s.position, s.id, s.topic, s.stream, s.stream_version, s.envelope, s.recorded_at
              FROM eventstore.stored_events s
             WHERE s.position > coalesce(after, 0) AND s.position <= horizon
             ORDER BY s.position LIMIT max;
    ELSIF topic IS NULL THEN
        RETURN QUERY
            SELECT s.position, s.id, s.topic, s.stream, s.stream_version, s.envelope, s.recorded_at
              FROM eventstore.stored_events s
             WHERE s.position > coalesce(after, 0) AND s.position <= horizon
               AND s.type = ANY (types)
             ORDER BY s.position LIMIT max;
    ELSIF types IS NULL THEN
        RETURN QUERY
            SELECT s.position, s.id, s.topic, s.stream, s.stream_version, s.envelope, s.recorded_at
              FROM eventstore.stored_events s
             WHERE s.topic = read.topic
               AND s.position > coalesce(after, 0) AND s.position <= horizon
             ORDER BY s.position LIMIT max;
    ELSE
        RETURN QUERY
            SELECT s.position, s.id, s.topic, s.stream, s.stream_version, s.envelope, s.recorded_at
              FROM eventstore.stored_events s
             WHERE s.topic = read.topic
               AND s.position > coalesce(after, 0) AND s.position <= horizon
               AND s.type = ANY (types)
             ORDER BY s.position LIMIT max;
    END IF;
END
$$;
COMMENT ON FUNCTION read(text, bigint, integer, text[]) IS
    'events of a topic (all topics when NULL; of some types only, with types) after a position and up to the read horizon, in position order';
REVOKE ALL ON FUNCTION read(text, bigint, integer, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION read(text, bigint, integer, text[]) TO eventstore_reader;

REVOKE ALL ON FUNCTION safe_position() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION safe_position() TO eventstore_reader;

------------------------------------------------------------------------------
-- Correlation and causation (extension/correlation.c): appends fill in
-- metadata.causation_id and correlation_id; read_correlated finds a story.
------------------------------------------------------------------------------

-- The events of one story (read_correlated, extension/correlation.c).
-- Partial: an event without a correlation id costs its append nothing here.
CREATE INDEX events_correlation
    ON events (pg_catalog.lower(metadata OPERATOR(pg_catalog.->>) 'correlation_id'))
    WHERE metadata OPERATOR(pg_catalog.?) 'correlation_id';

-- Every event of one story: the event that started it (its id is the
-- correlation id, whether or not it carries one itself) and those whose
-- metadata.correlation_id is that id, as producers set it or appends fill
-- it in (extension/correlation.c); by the primary key and the partial index
-- events_correlation, in position order.
CREATE FUNCTION read_correlated(correlation_id uuid) RETURNS SETOF event
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF correlation_id IS NULL THEN
        RAISE EXCEPTION 'correlation_id must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "correlation_id" is NULL.';
    END IF;
    RETURN QUERY
        SELECT s.position, s.id, s.topic, s.stream, s.stream_version, s.envelope, s.recorded_at
          FROM eventstore.stored_events s
         WHERE s.position IN (SELECT e.position FROM eventstore.events e
                               WHERE e.id = read_correlated.correlation_id
                              UNION ALL
                              SELECT e.position FROM eventstore.events e
                               WHERE e.metadata ? 'correlation_id'
                                 AND lower(e.metadata ->> 'correlation_id')
                                     = read_correlated.correlation_id::text)
         ORDER BY s.position;
END
$$;
COMMENT ON FUNCTION read_correlated(uuid) IS
    'the events of one story: the event with that id and those whose metadata.correlation_id is it, in position order';

REVOKE ALL ON FUNCTION read_correlated(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION read_correlated(uuid) TO eventstore_reader;

------------------------------------------------------------------------------
-- Type filters: a consumer of some event types only (consumers.types,
-- create_consumer(..., types)), read(..., types); the view stored_events
-- shows the type as a column for them.
------------------------------------------------------------------------------

ALTER TABLE consumers ADD COLUMN types text[] COLLATE "C"
    CHECK (pg_catalog.cardinality(types) BETWEEN 1 AND 64);

CREATE OR REPLACE VIEW stored_events AS
SELECT e.position,
       e.id,
       e.topic,
       e.stream,
       e.stream_version,
       pg_catalog.jsonb_build_object(
           'id', e.id,
           'type', e.type,
           'version', e.version_major::text OPERATOR(pg_catalog.||) '.'
                      OPERATOR(pg_catalog.||) e.version_minor::text,
           'data', e.data,
           'metadata', e.metadata) AS envelope,
       e.recorded_at,
       e.type
  FROM events e;

DROP FUNCTION register_consumer(text, text[], regprocedure, integer, integer, regrole);
CREATE FUNCTION register_consumer(name text, topics text[], handler regprocedure,
                                  batch_size integer, max_attempts integer,
                                  run_as regrole, types text[])
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
    INSERT INTO eventstore.consumers (name, topics, handler, run_as, batch_size, max_attempts, types)
    VALUES (name, topics, handler::text, run_as, batch_size, max_attempts, types);
    PERFORM eventstore.consumers_changed();
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'consumer "%" already exists', name
            USING ERRCODE = 'duplicate_object';
END
$$;

DROP FUNCTION create_consumer(text, text[], regprocedure, integer, integer, regrole);
CREATE FUNCTION create_consumer(name text, topics text[],
                                handler regprocedure DEFAULT NULL,
                                batch_size integer DEFAULT 100,
                                max_attempts integer DEFAULT 5,
                                run_as regrole DEFAULT NULL,
                                types text[] DEFAULT NULL)
RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_create_consumer';
COMMENT ON FUNCTION create_consumer(text, text[], regprocedure, integer, integer, regrole, text[]) IS
    'register a consumer of topics (of some event types only, with types): in-database with a handler f(eventstore.event), outside (poll/ack) without; it acts as run_as (default: the caller)';

CREATE OR REPLACE FUNCTION undelivered(consumer text, OUT events bigint, OUT oldest timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET enable_seqscan = off
AS $$
DECLARE
    c eventstore.consumers;
BEGIN
    SELECT * INTO c FROM eventstore.consumers WHERE name = consumer;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF c.done_snapshot IS NULL THEN
        SELECT count(*), min(e.recorded_at) INTO events, oldest
          FROM eventstore.events e
         WHERE e.topic = ANY (c.topics)
           AND (c.types IS NULL OR e.type = ANY (c.types))
           AND e.position > c.start_after
           AND NOT (c.window_snapshot IS NOT NULL
                    AND pg_visible_in_snapshot(e.xid, c.window_snapshot)
                    AND e.position <= c.window_after);
    ELSE
        SELECT count(*), min(e.recorded_at) INTO events, oldest
          FROM eventstore.events e
         WHERE e.xid >= pg_snapshot_xmin(c.done_snapshot)
           AND (e.topic || '') = ANY (c.topics)
           AND (c.types IS NULL OR e.type = ANY (c.types))
           AND NOT pg_visible_in_snapshot(e.xid, c.done_snapshot)
           AND NOT (c.window_snapshot IS NOT NULL
                    AND pg_visible_in_snapshot(e.xid, c.window_snapshot)
                    AND e.position <= c.window_after);
    END IF;
END
$$;

REVOKE ALL ON FUNCTION register_consumer(text, text[], regprocedure, integer, integer, regrole, text[]),
                       create_consumer(text, text[], regprocedure, integer, integer, regrole, text[])
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION create_consumer(text, text[], regprocedure, integer, integer, regrole, text[])
    TO eventstore_admin;

-- consumer_status shows each consumer's types.
CREATE OR REPLACE VIEW consumer_status AS
SELECT c.name,
       c.topics,
       CASE WHEN c.handler IS NULL THEN 'outside' ELSE 'in-database' END AS kind,
       c.handler,
       c.position,
       u.events AS lag_events,
       coalesce(extract(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) u.oldest), 0)::double precision AS lag_seconds,
       c.handled,
       c.attempts,
       (SELECT pg_catalog.count(*) FROM parked p WHERE p.consumer = c.name) AS parked,
       c.last_error,
       c.retry_at,
       c.last_run,
       c.batch_id,
       c.leased_until,
       c.skipped,
       c.types
  FROM consumers c, LATERAL undelivered(c.name) u;

------------------------------------------------------------------------------
-- truncate_stream and set_stream_max_count: a stream's older events
-- removed (now, and by the retention task as appends push them out), the
-- stream going on from its version; allowed to whom erase_stream is.
------------------------------------------------------------------------------

-- Raises 42704 for a topic that does not exist, and 42501 unless caller
-- may remove events of the topic: an eventstore_admin, or a role granted
-- erase on it.
CREATE FUNCTION check_erase_allowed(topic text, caller oid) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM eventstore.topics t WHERE t.name = topic) THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object',
                  HINT = format('Create it with eventstore.create_topic(%L).', topic);
    END IF;
    IF NOT pg_has_role(caller, 'eventstore_admin', 'USAGE')
       AND NOT EXISTS (SELECT FROM eventstore.topics t, unnest(t.erasers) AS r
                        WHERE t.name = topic AND pg_has_role(caller, r, 'USAGE')) THEN
        RAISE EXCEPTION 'permission denied to erase streams of topic "%"', topic
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('Role %s is not an eventstore_admin and has no erase grant on the topic.',
                                  caller::regrole),
                  HINT = format('An eventstore_admin can grant it with eventstore.grant_topic(%L, ''erase'', role).', topic);
    END IF;
END
$$;

-- Removes the events of a stream below before_version, and their
-- snapshots, counting for each consumer those it had not received yet
-- (consumers.skipped); returns how many.  The callers hold the stream's
-- row: truncate_stream_as, set_stream_max_count_as and purge_batch.
CREATE FUNCTION remove_stream_events(topic text, stream text, before_version bigint)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed bigint;
BEGIN
    DELETE FROM eventstore.snapshots s
     WHERE s.topic = remove_stream_events.topic AND s.stream = remove_stream_events.stream
       AND s.version < before_version;
    WITH gone AS (
        DELETE FROM eventstore.events e
         WHERE e.topic = remove_stream_events.topic AND e.stream = remove_stream_events.stream
           AND e.stream_version < before_version
        RETURNING e.position, e.xid, e.type
    ), missed AS (
        UPDATE eventstore.consumers c
           SET skipped = c.skipped + (SELECT count(*) FROM gone g
                                       WHERE eventstore.is_undelivered(c, g.position, g.xid)
                                         AND (c.types IS NULL OR g.type = ANY (c.types)))
         WHERE remove_stream_events.topic = ANY (c.topics)
    )
    SELECT count(*) INTO removed FROM gone;
    RETURN removed;
END
$$;

-- Removes the stream's events below before_version, and their snapshots;
-- the stream keeps its version, so the next event goes on from it.  The
-- stream's row is locked first, as appends lock it: they wait for this.
CREATE FUNCTION truncate_stream_as(topic text, stream text, before_version bigint, caller oid)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current bigint;
BEGIN
    PERFORM eventstore.check_erase_allowed(topic, caller);
    IF before_version IS NULL THEN
        RAISE EXCEPTION 'before_version must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "before_version" is NULL.';
    END IF;
    SELECT h.version INTO current FROM eventstore.stream_heads h
     WHERE h.topic = truncate_stream_as.topic AND h.stream = truncate_stream_as.stream
       FOR UPDATE;
    IF before_version < 1 OR before_version > coalesce(current, 0) + 1 THEN
        RAISE EXCEPTION 'invalid truncation version'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "before_version" is %s; stream "%s" is at version %s, so it must be between 1 and %s.',
                                  before_version, stream, coalesce(current, 0), coalesce(current, 0) + 1);
    END IF;
    RETURN eventstore.remove_stream_events(topic, stream, before_version);
END
$$;

CREATE FUNCTION truncate_stream(topic text, stream text, before_version bigint) RETURNS bigint
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_truncate_stream';
COMMENT ON FUNCTION truncate_stream(text, text, bigint) IS
    'remove the events of a stream below a version now; the stream goes on from its version; returns how many';

-- Keeps the newest max_count events of the stream (NULL: all of them from
-- now on): removes the older ones now, and the retention task removes
-- those that later appends push out (purge_batch).  A stream that has no
-- events yet can be given its limit.
CREATE FUNCTION set_stream_max_count_as(topic text, stream text, max_count bigint, caller oid)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current bigint;
BEGIN
    PERFORM eventstore.check_erase_allowed(topic, caller);
    IF max_count < 1 THEN
        RAISE EXCEPTION 'invalid stream max_count'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "max_count" is %s; it must be at least 1, or NULL for no limit.', max_count);
    END IF;
    INSERT INTO eventstore.stream_heads AS h (topic, stream, version, max_count)
    VALUES (topic, stream, 0, max_count)
    ON CONFLICT ON CONSTRAINT stream_heads_pkey
    DO UPDATE SET max_count = excluded.max_count
    RETURNING h.version INTO current;
    IF max_count IS NULL OR current - max_count < 1 THEN
        RETURN 0;
    END IF;
    RETURN eventstore.remove_stream_events(topic, stream, current - max_count + 1);
END
$$;

CREATE FUNCTION set_stream_max_count(topic text, stream text, max_count bigint) RETURNS bigint
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_set_stream_max_count';
COMMENT ON FUNCTION set_stream_max_count(text, text, bigint) IS
    'keep the newest max_count events of a stream (NULL: no limit); removes the older ones now and as appends push them out; returns how many it removed now';

CREATE OR REPLACE FUNCTION topic_privilege_functions(privilege text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE privilege
        WHEN 'append' THEN 'eventstore.append(text, jsonb, text, bigint), '
                           'eventstore.append_batch(text, jsonb[], text, bigint), '
                           'eventstore.validate(jsonb), eventstore.is_valid(jsonb), '
                           'eventstore.derived_id(uuid, text)'
        WHEN 'read' THEN 'eventstore.poll(text, integer), eventstore.ack(text, bigint), '
                         'eventstore.nack(text, bigint, text), eventstore.upcast(eventstore.event), '
                         'eventstore.unprotect(eventstore.event), eventstore.derived_id(uuid, text)'
        WHEN 'erase' THEN 'eventstore.erase_stream(text, text), '
                          'eventstore.truncate_stream(text, text, bigint), '
                          'eventstore.set_stream_max_count(text, text, bigint)'
    END
$$;

REVOKE ALL ON FUNCTION check_erase_allowed(text, oid), truncate_stream_as(text, text, bigint, oid),
                       truncate_stream(text, text, bigint), remove_stream_events(text, text, bigint),
                       set_stream_max_count_as(text, text, bigint, oid), set_stream_max_count(text, text, bigint)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION truncate_stream(text, text, bigint), set_stream_max_count(text, text, bigint)
    TO eventstore_admin;
-- the roles granted erase before this release get it with erase_stream
DO $$
DECLARE
    r regrole;
BEGIN
    FOR r IN SELECT DISTINCT unnest(t.erasers) FROM eventstore.topics t LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION eventstore.truncate_stream(text, text, bigint),'
                       ' eventstore.set_stream_max_count(text, text, bigint) TO %s', r::text);
    END LOOP;
END
$$;
