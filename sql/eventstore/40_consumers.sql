-- sql/eventstore/40_consumers.sql: consumers and their progress: the
-- tables, the in-database (run_consumer) and outside (poll/ack/nack)
-- consumer API, parked events, and how far behind a consumer is.  The
-- protocol itself (locking, windows, batches, leases, retries, parking) is
-- the consumer engine in C, extension/consumer_engine.c.

------------------------------------------------------------------------------
-- Consumers and their progress.
--
-- Progress is a pair of snapshots (docs/architecture.md).  Events whose
-- transaction is visible in done_snapshot are delivered.  The open window is
-- what is visible in window_snapshot and not in done_snapshot; it is paged by
-- position, and window_after is the last position delivered inside it.  When
-- the window is drained, window_snapshot becomes done_snapshot.  An event
-- committed late (its position taken before others that committed first)
-- simply falls into a later window: nothing is skipped.
--
-- A new or reset consumer has no done_snapshot: its first window is every
-- event after start_after.
------------------------------------------------------------------------------

CREATE TABLE consumers (
    name            text COLLATE "C" PRIMARY KEY
                    CHECK (name ~ '^[a-z][a-z0-9_]*$' AND pg_catalog.length(name) < 64),
    topics          text[] COLLATE "C" NOT NULL CHECK (pg_catalog.cardinality(topics) > 0),
    -- The handler's regprocedure as text, resolved when the consumer runs: a
    -- reg* column other than regclass/regtype/regrole would block pg_upgrade.
    -- NULL for an outside consumer (poll/ack).
    handler         text,
    -- The consumer's role: its handler and upcasters run as this role, and
    -- only its members may poll, ack, nack or run the consumer.
    run_as          regrole NOT NULL CHECK (run_as::oid <> 0),
    batch_size      integer NOT NULL CHECK (batch_size BETWEEN 1 AND 10000),
    max_attempts    integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 1000),
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- progress
    start_after     bigint NOT NULL DEFAULT 0,
    done_snapshot   pg_snapshot,
    window_snapshot pg_snapshot,
    window_after    bigint,
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
    -- events of its topics removed (retention, erase_stream) before it got them
    skipped         bigint NOT NULL DEFAULT 0,
    -- the event types it is given, NULL: all; the others are passed over
    -- where events are found (consumer_engine.c)
    types           text[] COLLATE "C"
                    CHECK (pg_catalog.cardinality(types) BETWEEN 1 AND 64),
    CHECK ((window_snapshot IS NULL) = (window_after IS NULL)),
    CHECK ((batch_kind = 'window') = (batch_upto IS NOT NULL))
);
COMMENT ON TABLE consumers IS 'registered consumers and how far each has got';

CREATE TABLE parked (
    consumer  text COLLATE "C" NOT NULL REFERENCES consumers (name) ON DELETE CASCADE,
    event_id  uuid NOT NULL,
    position  bigint NOT NULL,
    topic     text COLLATE "C" NOT NULL,
    attempts  integer NOT NULL,
    error     text,
    parked_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    replay    boolean NOT NULL DEFAULT false,   -- replay_parked() asked for redelivery
    batch_id  bigint,                           -- the replay batch it went out in
    PRIMARY KEY (consumer, event_id)
);
COMMENT ON TABLE parked IS 'events a consumer failed max_attempts times; replay_parked() redelivers one';

CREATE TYPE delivery AS (
    position       bigint,
    id             uuid,
    topic          text,
    stream         text,
    stream_version bigint,
    envelope       jsonb,
    recorded_at    timestamptz,
    batch_id       bigint,
    attempt        integer
);
COMMENT ON TYPE delivery IS 'an event as polled by an outside consumer, with its batch and delivery attempt';

------------------------------------------------------------------------------
-- Internal helpers of the consumer functions (not granted to anyone).
------------------------------------------------------------------------------

-- Wakes the dispatcher workers when this transaction commits.
CREATE FUNCTION consumers_changed() RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_consumers_changed';

CREATE FUNCTION check_consumer_name(name text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL OR name !~ '^[a-z][a-z0-9_]*$' OR length(name) > 63 THEN
        RAISE EXCEPTION 'invalid consumer name'
            USING ERRCODE = 'invalid_name',
                  DETAIL = format('Consumer name %L must match ^[a-z][a-z0-9_]*$ and be at most 63 characters.', name);
    END IF;
END
$$;

-- The consumer's row, locked for the rest of the transaction by the consumer
-- engine (extension/consumer_engine.c), which the C entry points share;
-- drop_consumer, reset_consumer and replay_parked take it through here.
-- kind 'outside' or 'in_database' refuses the other kind.
CREATE FUNCTION lock_consumer(consumer text, kind text DEFAULT NULL) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_lock_consumer';

-- This transaction's snapshot, with this transaction itself counted as in
-- progress: pg_current_snapshot() leaves it out, so events this transaction
-- appends after opening a window would otherwise count as delivered.
CREATE FUNCTION window_snapshot() RETURNS pg_snapshot
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s   pg_snapshot := pg_current_snapshot();
    own xid8 := pg_current_xact_id_if_assigned();
BEGIN
    IF own IS NULL OR own >= pg_snapshot_xmax(s) THEN
        RETURN s;
    END IF;
    RETURN format('%s:%s:%s',
                  least(pg_snapshot_xmin(s), own),
                  pg_snapshot_xmax(s),
                  (SELECT string_agg(x::text, ',' ORDER BY x)
                     FROM (SELECT pg_snapshot_xip(s) UNION SELECT own) AS xs(x)))::pg_snapshot;
END
$$;

------------------------------------------------------------------------------
-- Consumer API
------------------------------------------------------------------------------

-- create_consumer() (C) checks who may create a consumer for run_as, then
-- calls this as the extension's owner.
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

CREATE FUNCTION drop_consumer(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.lock_consumer(name);
    DELETE FROM eventstore.consumers c WHERE c.name = drop_consumer.name;
END
$$;
COMMENT ON FUNCTION drop_consumer(text) IS 'forget a consumer, its progress and its parked events';

CREATE FUNCTION reset_consumer(name text, to_position bigint DEFAULT 0) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_position IS NULL OR to_position < 0 THEN
        RAISE EXCEPTION 'invalid consumer position'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "to_position" is %s; it must be 0 or more.', coalesce(to_position::text, 'NULL'));
    END IF;
    PERFORM eventstore.lock_consumer(name);
    UPDATE eventstore.consumers c
       SET start_after = to_position, done_snapshot = NULL,
           window_snapshot = NULL, window_after = NULL, position = to_position,
           batch_kind = NULL, batch_upto = NULL, batch_attempt = 0, leased_until = NULL,
           attempts = 0, retry_at = NULL
     WHERE c.name = reset_consumer.name;
    UPDATE eventstore.parked p SET batch_id = NULL WHERE p.consumer = reset_consumer.name;
    PERFORM eventstore.consumers_changed();
END
$$;
COMMENT ON FUNCTION reset_consumer(text, bigint) IS
    'deliver again every event after to_position (0: replay from the start)';

CREATE FUNCTION poll(consumer text, max integer DEFAULT 100) RETURNS SETOF delivery
    LANGUAGE c ROWS 100 AS 'MODULE_PATHNAME', 'eventstore_poll';
COMMENT ON FUNCTION poll(text, integer) IS
    'next batch of an outside consumer; the same batch again after its lease runs out, until acked';

CREATE FUNCTION ack(consumer text, batch_id bigint) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_ack';
COMMENT ON FUNCTION ack(text, bigint) IS 'an outside consumer is done with a batch; acking it again is harmless';

CREATE FUNCTION nack(consumer text, batch_id bigint, error text) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_nack';
COMMENT ON FUNCTION nack(text, bigint, text) IS
    'an outside consumer failed a batch: counted as an attempt, redelivered after a backoff, parked after max_attempts';

CREATE FUNCTION run_consumer(name text, max_events integer DEFAULT NULL) RETURNS bigint
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_run_consumer';
COMMENT ON FUNCTION run_consumer(text, integer) IS
    'run an in-database consumer now, in this transaction; returns the number of events handled';

CREATE FUNCTION replay_parked(consumer text, event_id uuid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.lock_consumer(consumer);
    IF event_id IS NULL THEN
        RAISE EXCEPTION 'event_id must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "event_id" is NULL.';
    END IF;
    UPDATE eventstore.parked p SET replay = true
     WHERE p.consumer = replay_parked.consumer AND p.event_id = replay_parked.event_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event % is not parked for consumer "%"', event_id, consumer
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM eventstore.consumers_changed();
END
$$;
COMMENT ON FUNCTION replay_parked(text, uuid) IS
    'deliver a parked event again: first thing on the consumer''s next run or poll';

-- Events of a consumer's topics (and types) it has not been given yet, and the oldest
-- one's recording time.  A consumer that has a done snapshot has been given
-- everything older than its xmin, so only events from there on are looked
-- at, through the BRIN index on xid (as in open_window); a new or reset one
-- counts by position.
CREATE FUNCTION undelivered(consumer text, OUT events bigint, OUT oldest timestamptz)
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

-- Whether event (position, xid) is still to come for consumer c: the
-- predicate of undelivered() for one event.
CREATE FUNCTION is_undelivered(c consumers, event_position bigint, event_xid xid8)
RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN c.done_snapshot IS NULL THEN event_position > c.start_after
                ELSE NOT pg_visible_in_snapshot(event_xid, c.done_snapshot) END
       AND NOT (c.window_snapshot IS NOT NULL
                AND pg_visible_in_snapshot(event_xid, c.window_snapshot)
                AND event_position <= c.window_after)
$$;
