-- eventstore 1.6 -> 1.7: what 1.7 changes in the SQL objects against 1.6.
--
-- A fresh CREATE EXTENSION eventstore runs eventstore--1.7.sql, which make
-- builds from the current source, sql/eventstore/*.sql; an installation of
-- 1.6 runs this script instead, and test/shell/upgrade.sh checks that both
-- end up the same, object for object.  Once 1.7 is released this script is
-- never edited again: later changes go into eventstore--1.7--<next>.sql.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '1.7'" to load this file. \quit

------------------------------------------------------------------------------
-- appends to a stream write only their events: a stream's version is the
-- greater of its newest event's and the floor its row keeps
-- (sql/eventstore/15_storage.sql, 32_streams.sql, extension/stream_head.c)
------------------------------------------------------------------------------

-- Every row's version is exact under 1.6, so it is a right floor.
ALTER TABLE stream_heads RENAME COLUMN version TO version_floor;
COMMENT ON TABLE stream_heads IS 'every stream: the floor of its version, when it was closed and how many events it keeps';

-- The version of a stream whose row of stream_heads has version_floor:
-- the greater of that and its newest event's, the last entry of
-- events_stream_version, as the query's snapshot sees it
-- (extension/stream_head.c).
CREATE FUNCTION head_version(topic text, stream text, version_floor bigint) RETURNS bigint
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'eventstore_head_version';

-- Takes a stream's lock until the end of the transaction, once appends to
-- it in progress have ended (extension/stream_head.c).
CREATE FUNCTION lock_stream(topic text, stream text) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_lock_stream';

REVOKE ALL ON FUNCTION head_version(text, text, bigint), lock_stream(text, text) FROM PUBLIC;

-- The readers of a stream's version, and the writers that close, limit,
-- shorten or erase a stream, as in the current source.

CREATE OR REPLACE FUNCTION stream_version(topic text, stream text) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.check_stream_args(topic, stream);
    RETURN coalesce((SELECT eventstore.head_version(h.topic, h.stream, h.version_floor)
                       FROM eventstore.stream_heads h
                      WHERE h.topic = stream_version.topic
                        AND h.stream = stream_version.stream),
                    (SELECT x.version FROM eventstore.erased_streams x
                      WHERE x.topic = stream_version.topic
                        AND x.digest = eventstore.stream_digest(stream_version.stream)),
                    0);
END
$$;

CREATE OR REPLACE FUNCTION close_stream(topic text, stream text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.check_stream_args(topic, stream);
    PERFORM eventstore.lock_stream(topic, stream);
    INSERT INTO eventstore.stream_heads AS h (topic, stream, version_floor, closed_at)
    VALUES (topic, stream, 0, now())
    ON CONFLICT ON CONSTRAINT stream_heads_pkey
    DO UPDATE SET closed_at = coalesce(h.closed_at, excluded.closed_at);
END
$$;

CREATE OR REPLACE FUNCTION read_stream(topic text, stream text,
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
    SELECT eventstore.head_version(h.topic, h.stream, h.version_floor) - h.max_count
      INTO pushed_out FROM eventstore.stream_heads h
     WHERE h.topic = read_stream.topic AND h.stream = read_stream.stream
       AND h.max_count IS NOT NULL;
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

CREATE OR REPLACE FUNCTION save_snapshot(topic text, stream text, version bigint, state jsonb) RETURNS void
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
    SELECT eventstore.head_version(h.topic, h.stream, h.version_floor) INTO current
      FROM eventstore.stream_heads h
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

CREATE OR REPLACE FUNCTION erase_stream_as(topic text, stream text, caller oid) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    head record;
BEGIN
    PERFORM eventstore.check_erase_allowed(topic, caller);
    -- The stream's lock first: appends to the stream wait until this
    -- commits.  What it had reached is kept under the digest of its name.
    PERFORM eventstore.lock_stream(topic, stream);
    DELETE FROM eventstore.stream_heads h WHERE h.topic = erase_stream_as.topic AND h.stream = erase_stream_as.stream
    RETURNING eventstore.head_version(h.topic, h.stream, h.version_floor) AS version, h.closed_at INTO head;
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

CREATE OR REPLACE FUNCTION truncate_stream_as(topic text, stream text, before_version bigint, caller oid)
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
    PERFORM eventstore.lock_stream(topic, stream);
    SELECT eventstore.head_version(h.topic, h.stream, h.version_floor) INTO current
      FROM eventstore.stream_heads h
     WHERE h.topic = truncate_stream_as.topic AND h.stream = truncate_stream_as.stream
       FOR UPDATE;
    IF before_version < 1 OR before_version > coalesce(current, 0) + 1 THEN
        RAISE EXCEPTION 'invalid truncation version'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "before_version" is %s; stream "%s" is at version %s, so it must be between 1 and %s.',
                                  before_version, stream, coalesce(current, 0), coalesce(current, 0) + 1);
    END IF;
    IF before_version > current THEN
        -- its newest events go: the floor keeps the version
        UPDATE eventstore.stream_heads h SET version_floor = current
         WHERE h.topic = truncate_stream_as.topic AND h.stream = truncate_stream_as.stream;
    END IF;
    RETURN eventstore.remove_stream_events(topic, stream, before_version);
END
$$;

CREATE OR REPLACE FUNCTION set_stream_max_count_as(topic text, stream text, max_count bigint, caller oid)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current bigint;
BEGIN
    PERFORM eventstore.check_erase_allowed(topic, caller);
    PERFORM eventstore.lock_stream(topic, stream);
    IF max_count < 1 THEN
        RAISE EXCEPTION 'invalid stream max_count'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "max_count" is %s; it must be at least 1, or NULL for no limit.', max_count);
    END IF;
    INSERT INTO eventstore.stream_heads AS h (topic, stream, version_floor, max_count)
    VALUES (topic, stream, 0, max_count)
    ON CONFLICT ON CONSTRAINT stream_heads_pkey
    DO UPDATE SET max_count = excluded.max_count
    RETURNING eventstore.head_version(h.topic, h.stream, h.version_floor) INTO current;
    IF max_count IS NULL OR current - max_count < 1 THEN
        RETURN 0;
    END IF;
    RETURN eventstore.remove_stream_events(topic, stream, current - max_count + 1);
END
$$;

CREATE OR REPLACE VIEW streams AS
SELECT h.topic,
       h.stream,
       GREATEST(h.version_floor, l.stream_version) AS version,
       f.position AS first_position,
       l.position AS last_position,
       l.recorded_at AS last_recorded_at,
       CASE WHEN h.closed_at IS NULL THEN 'open' ELSE 'closed' END AS state,
       h.closed_at,
       h.max_count
  FROM stream_heads h
  JOIN topics t ON t.name OPERATOR(pg_catalog.=) h.topic
  LEFT JOIN LATERAL (SELECT e.position, e.recorded_at, e.stream_version FROM events e
                      WHERE e.topic OPERATOR(pg_catalog.=) h.topic
                        AND e.stream OPERATOR(pg_catalog.=) h.stream
                      ORDER BY e.stream_version DESC
                      LIMIT 1) l ON true
  LEFT JOIN LATERAL (SELECT e.position FROM events e
                      WHERE e.topic OPERATOR(pg_catalog.=) h.topic
                        AND e.stream OPERATOR(pg_catalog.=) h.stream
                        AND e.stream_version OPERATOR(pg_catalog.>)
                            COALESCE(GREATEST(h.version_floor, l.stream_version)
                                     OPERATOR(pg_catalog.-) h.max_count, 0)
                      ORDER BY e.stream_version
                      LIMIT 1) f ON true
 WHERE pg_catalog.pg_has_role('eventstore_reader', 'USAGE')
    OR EXISTS (SELECT FROM pg_catalog.unnest(t.readers) AS r(role)
                WHERE pg_catalog.pg_has_role(r.role, 'USAGE'));
