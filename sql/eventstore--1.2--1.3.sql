-- eventstore 1.2 -> 1.3: what 1.3 changes in the SQL objects against 1.2.
--
-- A fresh CREATE EXTENSION eventstore runs eventstore--1.3.sql, which make
-- builds from the current source, sql/eventstore/*.sql; an installation of
-- 1.2 runs this script instead, and test/shell/upgrade.sh checks that both
-- end up the same, object for object.  Once 1.3 is released this script is
-- never edited again: later changes go into eventstore--1.3--<next>.sql.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '1.3'" to load this file. \quit

------------------------------------------------------------------------------
-- Members: a consumer's progress moves from its row of consumers to a row
-- per member in members; each consumer keeps the progress it had, as its
-- one member.
------------------------------------------------------------------------------

-- What reads the progress columns of consumers goes, or is replaced (below)
-- before they go.
DROP FUNCTION is_undelivered(consumers, bigint, xid8);

CREATE TABLE members (
    consumer        text COLLATE "C" NOT NULL REFERENCES consumers (name) ON DELETE CASCADE,
    -- set_consumer_members starts a new generation; the older one retires
    generation      integer NOT NULL CHECK (generation >= 0),
    member          integer NOT NULL CHECK (member >= 0 AND member < member_count),
    member_count    integer NOT NULL CHECK (member_count BETWEEN 1 AND 256),
    -- retiring: the member delivers what is visible here, then is removed
    fence_snapshot  pg_snapshot,
    -- progress
    start_after     bigint NOT NULL DEFAULT 0,
    done_snapshot   pg_snapshot,
    window_snapshot pg_snapshot,
    window_after    bigint,
    -- each snapshot's floor: a position at or below which every event the
    -- snapshot does not show has aborted (NULL: not known, without the
    -- preloaded library); the next window is found by position from there
    fence_floor     bigint,
    done_floor      bigint,
    window_floor    bigint,
    position        bigint NOT NULL DEFAULT 0,
    handled         bigint NOT NULL DEFAULT 0,
    -- the batch an outside consumer has been given and not acked yet
    batch_id        bigint NOT NULL DEFAULT 0,
    batch_kind      text CHECK (batch_kind IN ('window', 'replay')),
    batch_upto      bigint,
    batch_attempt   integer NOT NULL DEFAULT 0,
    leased_until    timestamptz,
    -- failures of the event (or batch) at the head
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    retry_at        timestamptz,
    last_run        timestamptz,
    PRIMARY KEY (consumer, generation, member),
    CHECK ((window_snapshot IS NULL) = (window_after IS NULL)),
    CHECK ((batch_kind = 'window') = (batch_upto IS NOT NULL))
);
COMMENT ON TABLE members IS 'the members of each consumer and how far each has got';

CREATE SEQUENCE batch_ids;
-- Batch ids handed out from now on are above every one given before, which
-- an outside consumer may still ack.
SELECT pg_catalog.setval('batch_ids', max(batch_id)) FROM consumers HAVING max(batch_id) > 0;

INSERT INTO members (consumer, generation, member, member_count, start_after, done_snapshot,
                     window_snapshot, window_after, position, handled, batch_id, batch_kind,
                     batch_upto, batch_attempt, leased_until, attempts, last_error, retry_at,
                     last_run)
SELECT name, 0, 0, 1, start_after, done_snapshot, window_snapshot, window_after, position,
       handled, batch_id, batch_kind, batch_upto, batch_attempt, leased_until, attempts,
       last_error, retry_at, last_run
  FROM consumers;

ALTER TABLE consumers
    ADD COLUMN members integer NOT NULL DEFAULT 1 CHECK (members BETWEEN 1 AND 256);
COMMENT ON TABLE consumers IS 'registered consumers';

ALTER TYPE delivery ADD ATTRIBUTE member integer;
COMMENT ON TYPE delivery IS 'an event as polled by an outside consumer, with its batch, delivery attempt and member';

CREATE FUNCTION member_of(stream text, id uuid, member_count integer) RETURNS integer
    LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'eventstore_member_of';

CREATE FUNCTION check_member_count(members integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF members IS NULL OR members NOT BETWEEN 1 AND 256 THEN
        RAISE EXCEPTION 'invalid number of consumer members'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "members" is %s; it must be between 1 and 256.',
                                  coalesce(members::text, 'NULL'));
    END IF;
END
$$;

CREATE FUNCTION start_members(consumer text, generation integer, members integer,
                              start_after bigint, done pg_snapshot, done_floor bigint,
                              last_batch_id bigint, handled bigint)
RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO eventstore.members (consumer, generation, member, member_count,
                                    start_after, position, done_snapshot, done_floor, batch_id,
                                    handled)
    SELECT consumer, generation, m, members, start_after, start_after, done, done_floor,
           last_batch_id, CASE WHEN m = 0 THEN handled ELSE 0 END
      FROM generate_series(0, members - 1) AS m;
$$;

CREATE FUNCTION window_floor() RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'eventstore_window_floor';

-- register_consumer, create_consumer and poll gain an argument: new
-- functions beside the old ones, which go once their privileges are
-- carried over (below).
CREATE FUNCTION register_consumer(name text, topics text[], handler regprocedure,
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

CREATE FUNCTION create_consumer(name text, topics text[],
                                handler regprocedure DEFAULT NULL,
                                batch_size integer DEFAULT 100,
                                max_attempts integer DEFAULT 5,
                                run_as regrole DEFAULT NULL,
                                types text[] DEFAULT NULL,
                                members integer DEFAULT 1)
RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_create_consumer';
COMMENT ON FUNCTION create_consumer(text, text[], regprocedure, integer, integer, regrole, text[], integer) IS
    'register a consumer of topics (of some event types only, with types): in-database with a handler f(eventstore.event), outside (poll/ack) without; it acts as run_as (default: the caller) and is split into members by stream';

CREATE OR REPLACE FUNCTION reset_consumer(name text, to_position bigint DEFAULT 0) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    next_generation integer;
    last_batch_id   bigint;
    handled         bigint;
BEGIN
    IF to_position IS NULL OR to_position < 0 THEN
        RAISE EXCEPTION 'invalid consumer position'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "to_position" is %s; it must be 0 or more.', coalesce(to_position::text, 'NULL'));
    END IF;
    PERFORM eventstore.lock_consumer(name);
    -- every member starts again: a new generation with nothing to wait for
    SELECT max(m.generation) + 1, max(m.batch_id), sum(m.handled)
      INTO next_generation, last_batch_id, handled
      FROM eventstore.members m WHERE m.consumer = reset_consumer.name;
    DELETE FROM eventstore.members m WHERE m.consumer = reset_consumer.name;
    PERFORM eventstore.start_members(name, coalesce(next_generation, 0),
                                     (SELECT c.members FROM eventstore.consumers c
                                       WHERE c.name = reset_consumer.name),
                                     to_position, NULL, NULL, coalesce(last_batch_id, 0),
                                     coalesce(handled, 0));
    UPDATE eventstore.parked p SET batch_id = NULL WHERE p.consumer = reset_consumer.name;
    PERFORM eventstore.consumers_changed();
END
$$;
COMMENT ON FUNCTION reset_consumer(text, bigint) IS
    'deliver again every event after to_position (0: replay from the start)';

CREATE FUNCTION set_consumer_members(name text, members integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_count     integer;
    newest        integer;
    fence         pg_snapshot;
    fence_at      bigint;
    last_batch_id bigint;
    replaced      bigint := 0;
BEGIN
    PERFORM eventstore.check_member_count(members);
    PERFORM eventstore.lock_consumer(name);
    SELECT c.members INTO old_count FROM eventstore.consumers c WHERE c.name = set_consumer_members.name;
    IF old_count = members THEN
        RETURN;
    END IF;
    SELECT max(m.generation), max(m.batch_id) INTO newest, last_batch_id
      FROM eventstore.members m WHERE m.consumer = set_consumer_members.name;
    SELECT m.fence_snapshot, m.fence_floor INTO fence, fence_at
      FROM eventstore.members m
     WHERE m.consumer = set_consumer_members.name AND m.fence_snapshot IS NOT NULL
     LIMIT 1;
    IF FOUND THEN
        -- the newest generation waits for the retiring one: it has not
        -- started (its count of handled events is what retired members left)
        WITH gone AS (
            DELETE FROM eventstore.members m
             WHERE m.consumer = set_consumer_members.name AND m.generation = newest
            RETURNING m.handled)
        SELECT coalesce(sum(gone.handled), 0) INTO replaced FROM gone;
    ELSE
        -- the floor first: every event the fence does not show is above it
        fence_at := eventstore.window_floor();
        fence := eventstore.window_snapshot();
        UPDATE eventstore.members m
           SET fence_snapshot = fence, fence_floor = fence_at
         WHERE m.consumer = set_consumer_members.name;
    END IF;
    PERFORM eventstore.start_members(name, newest + 1, members, 0, fence, fence_at,
                                     last_batch_id, replaced);
    UPDATE eventstore.members m
       SET position = (SELECT max(o.position) FROM eventstore.members o
                        WHERE o.consumer = m.consumer AND o.generation <= newest)
     WHERE m.consumer = set_consumer_members.name AND m.generation = newest + 1;
    UPDATE eventstore.consumers c SET members = set_consumer_members.members
     WHERE c.name = set_consumer_members.name;
    PERFORM eventstore.consumers_changed();
END
$$;
COMMENT ON FUNCTION set_consumer_members(text, integer) IS
    'spread a consumer over 1 to 256 members, while it runs: nothing is lost or delivered twice, streams stay in order';

CREATE FUNCTION poll(consumer text, max integer DEFAULT 100, member integer DEFAULT NULL)
RETURNS SETOF delivery
    LANGUAGE c ROWS 100 AS 'MODULE_PATHNAME', 'eventstore_poll';
COMMENT ON FUNCTION poll(text, integer, integer) IS
    'next batch of an outside consumer (of member, or of any member with work and no lease); the same batch again after its lease runs out, until acked';

CREATE FUNCTION member_undelivered(m members, OUT events bigint, OUT oldest timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp SET enable_seqscan = off
AS $$
DECLARE
    c eventstore.consumers;
BEGIN
    SELECT * INTO c FROM eventstore.consumers WHERE name = m.consumer;
    IF m.done_snapshot IS NULL THEN
        SELECT count(*), min(e.recorded_at) INTO events, oldest
          FROM eventstore.events e
         WHERE e.topic = ANY (c.topics)
           AND (c.types IS NULL OR e.type = ANY (c.types))
           AND (m.member_count = 1 OR eventstore.member_of(e.stream, e.id, m.member_count) = m.member)
           AND e.position > m.start_after
           AND eventstore.member_is_undelivered(m, e.position, e.xid);
    ELSIF m.done_floor IS NOT NULL THEN
        -- by position from the floor: the events since, not a scan of the
        -- whole BRIN index
        SELECT count(*), min(e.recorded_at) INTO events, oldest
          FROM eventstore.events e
         WHERE e.position > m.done_floor
           AND e.topic = ANY (c.topics)
           AND (c.types IS NULL OR e.type = ANY (c.types))
           AND (m.member_count = 1 OR eventstore.member_of(e.stream, e.id, m.member_count) = m.member)
           AND eventstore.member_is_undelivered(m, e.position, e.xid);
    ELSE
        SELECT count(*), min(e.recorded_at) INTO events, oldest
          FROM eventstore.events e
         WHERE e.xid >= pg_snapshot_xmin(m.done_snapshot)
           AND (e.topic || '') = ANY (c.topics)
           AND (c.types IS NULL OR e.type = ANY (c.types))
           AND (m.member_count = 1 OR eventstore.member_of(e.stream, e.id, m.member_count) = m.member)
           AND eventstore.member_is_undelivered(m, e.position, e.xid);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION undelivered(consumer text, OUT events bigint, OUT oldest timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sum(u.events)::bigint, min(u.oldest)
      FROM eventstore.members m, LATERAL eventstore.member_undelivered(m) u
     WHERE m.consumer = undelivered.consumer
$$;

CREATE FUNCTION member_status(consumer text, generation integer, member integer,
                              OUT events bigint, OUT oldest timestamptz, OUT parked bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.events, u.oldest,
           (SELECT count(*) FROM eventstore.parked p JOIN eventstore.events e ON e.id = p.event_id
             WHERE p.consumer = m.consumer
               AND eventstore.member_of(e.stream, e.id, m.member_count) = m.member)
      FROM eventstore.members m, LATERAL eventstore.member_undelivered(m) u
     WHERE m.consumer = member_status.consumer AND m.generation = member_status.generation
       AND m.member = member_status.member
$$;

CREATE FUNCTION member_is_undelivered(m members, event_position bigint, event_xid xid8)
RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN m.done_snapshot IS NULL THEN event_position > m.start_after
                ELSE NOT pg_visible_in_snapshot(event_xid, m.done_snapshot) END
       AND NOT (m.window_snapshot IS NOT NULL
                AND pg_visible_in_snapshot(event_xid, m.window_snapshot)
                AND event_position <= m.window_after)
       AND (m.fence_snapshot IS NULL OR pg_visible_in_snapshot(event_xid, m.fence_snapshot))
$$;

CREATE FUNCTION is_undelivered(c consumers, event_stream text, event_id uuid,
                               event_position bigint, event_xid xid8)
RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM eventstore.members m
                    WHERE m.consumer = c.name
                      AND m.member = eventstore.member_of(event_stream, event_id, m.member_count)
                      AND eventstore.member_is_undelivered(m, event_position, event_xid))
$$;

CREATE FUNCTION wait_for_batches(topic text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    SELECT FROM eventstore.members m JOIN eventstore.consumers c ON c.name = m.consumer
     WHERE wait_for_batches.topic = ANY (c.topics)
       FOR SHARE OF m
$$;

-- Removals count what a consumer missed per member.
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
    RETURN removed;
END
$$;

CREATE OR REPLACE FUNCTION remove_stream_events(topic text, stream text, before_version bigint)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed bigint;
BEGIN
    DELETE FROM eventstore.snapshots s
     WHERE s.topic = remove_stream_events.topic AND s.stream = remove_stream_events.stream
       AND s.version < before_version;
    PERFORM eventstore.wait_for_batches(topic);
    WITH gone AS (
        DELETE FROM eventstore.events e
         WHERE e.topic = remove_stream_events.topic AND e.stream = remove_stream_events.stream
           AND e.stream_version < before_version
        RETURNING e.position, e.xid, e.type, e.id, e.stream
    ), missed AS (
        UPDATE eventstore.consumers c
           SET skipped = c.skipped + (SELECT count(*) FROM gone g
                                       WHERE eventstore.is_undelivered(c, g.stream, g.id, g.position, g.xid)
                                         AND (c.types IS NULL OR g.type = ANY (c.types)))
         WHERE remove_stream_events.topic = ANY (c.topics)
    )
    SELECT count(*) INTO removed FROM gone;
    RETURN removed;
END
$$;

CREATE OR REPLACE FUNCTION topic_privilege_functions(privilege text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE privilege
        WHEN 'append' THEN 'eventstore.append(text, jsonb, text, bigint), '
                           'eventstore.append_batch(text, jsonb[], text, bigint), '
                           'eventstore.validate(jsonb), eventstore.is_valid(jsonb), '
                           'eventstore.derived_id(uuid, text)'
        WHEN 'read' THEN 'eventstore.poll(text, integer, integer), eventstore.ack(text, bigint), '
                         'eventstore.nack(text, bigint, text), eventstore.upcast(eventstore.event), '
                         'eventstore.unprotect(eventstore.event), eventstore.derived_id(uuid, text)'
        WHEN 'erase' THEN 'eventstore.erase_stream(text, text), '
                          'eventstore.truncate_stream(text, text, bigint), '
                          'eventstore.set_stream_max_count(text, text, bigint)'
    END
$$;

------------------------------------------------------------------------------
-- Status: consumer_status sums its members (replaced in place, keeping the
-- privileges others gave on it), consumer_members shows each.
------------------------------------------------------------------------------

CREATE OR REPLACE VIEW consumer_status AS
SELECT c.name,
       c.topics,
       CASE WHEN c.handler IS NULL THEN 'outside' ELSE 'in-database' END AS kind,
       c.handler,
       p.position,
       u.events AS lag_events,
       coalesce(extract(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) u.oldest), 0)::double precision AS lag_seconds,
       p.handled,
       w.attempts,
       (SELECT pg_catalog.count(*) FROM parked p WHERE p.consumer = c.name) AS parked,
       w.last_error,
       w.retry_at,
       p.last_run,
       p.batch_id,
       p.leased_until,
       c.skipped,
       c.types,
       c.members
  FROM consumers c
  LEFT JOIN LATERAL (SELECT pg_catalog.max(m.position) AS position,
                            pg_catalog.sum(m.handled)::bigint AS handled,
                            pg_catalog.max(m.last_run) AS last_run,
                            pg_catalog.max(m.batch_id) AS batch_id,
                            pg_catalog.max(m.leased_until) AS leased_until
                       FROM members m WHERE m.consumer = c.name) p ON true
  LEFT JOIN LATERAL (SELECT m.attempts, m.last_error, m.retry_at
                       FROM members m WHERE m.consumer = c.name
                      ORDER BY m.attempts DESC, m.last_error IS NULL, m.retry_at DESC NULLS LAST
                      LIMIT 1) w ON true,
  LATERAL undelivered(c.name) u;
COMMENT ON VIEW consumer_status IS 'every consumer: how far it got, its lag, failures and parked events';

CREATE VIEW consumer_members AS
SELECT m.consumer,
       m.member,
       m.member_count AS members,
       m.generation,
       m.fence_snapshot IS NOT NULL AS retiring,
       m.position,
       s.events AS lag_events,
       coalesce(extract(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) s.oldest), 0)::double precision AS lag_seconds,
       m.handled,
       m.batch_id,
       m.leased_until,
       m.attempts,
       s.parked,
       m.last_error,
       m.retry_at,
       m.last_run
  FROM members m, LATERAL member_status(m.consumer, m.generation, m.member) s;
COMMENT ON VIEW consumer_members IS 'every member of every consumer: how far it got, its lag, lease, failures and parked events';

-- Nothing reads the progress columns of consumers any more.
ALTER TABLE consumers
    DROP COLUMN start_after, DROP COLUMN done_snapshot, DROP COLUMN window_snapshot,
    DROP COLUMN window_after, DROP COLUMN position, DROP COLUMN handled,
    DROP COLUMN batch_id, DROP COLUMN batch_kind, DROP COLUMN batch_upto,
    DROP COLUMN batch_attempt, DROP COLUMN leased_until, DROP COLUMN attempts,
    DROP COLUMN last_error, DROP COLUMN retry_at, DROP COLUMN last_run;

------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------

REVOKE ALL ON members, consumer_members FROM PUBLIC;
REVOKE ALL ON SEQUENCE batch_ids FROM PUBLIC;
REVOKE ALL ON FUNCTION member_of(text, uuid, integer), check_member_count(integer),
                       start_members(text, integer, integer, bigint, pg_snapshot, bigint, bigint, bigint),
                       window_floor(),
                       register_consumer(text, text[], regprocedure, integer, integer, regrole, text[], integer),
                       create_consumer(text, text[], regprocedure, integer, integer, regrole, text[], integer),
                       set_consumer_members(text, integer), poll(text, integer, integer),
                       member_undelivered(members), member_is_undelivered(members, bigint, xid8),
                       is_undelivered(consumers, text, uuid, bigint, xid8), wait_for_batches(text),
                       member_status(text, integer, integer)
    FROM PUBLIC;
GRANT SELECT ON consumer_members TO eventstore_reader, eventstore_admin;
GRANT EXECUTE ON FUNCTION member_status(text, integer, integer) TO eventstore_reader, eventstore_admin;
GRANT EXECUTE ON FUNCTION set_consumer_members(text, integer) TO eventstore_admin;
DO $grants$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT a.grantee::regrole AS grantee, f.new
               FROM (VALUES ('eventstore.poll(text, integer)'::regprocedure,
                             'eventstore.poll(text, integer, integer)'::regprocedure),
                            ('eventstore.create_consumer(text, text[], regprocedure, integer, integer, regrole, text[])',
                             'eventstore.create_consumer(text, text[], regprocedure, integer, integer, regrole, text[], integer)'))
                    AS f(old, new),
                    pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(p.proacl) a
              WHERE p.oid = f.old AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', g.new, g.grantee);
    END LOOP;
END
$grants$;
DROP FUNCTION register_consumer(text, text[], regprocedure, integer, integer, regrole, text[]);
DROP FUNCTION create_consumer(text, text[], regprocedure, integer, integer, regrole, text[]);
DROP FUNCTION poll(text, integer);
