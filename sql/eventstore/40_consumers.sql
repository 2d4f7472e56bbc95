-- sql/eventstore/40_consumers.sql: consumers and their progress: the
-- tables, the in-database (run_consumer) and outside (poll/ack/nack)
-- consumer API, parked events, and how far behind a consumer is.  The
-- protocol itself (locking, windows, batches, leases, retries, parking) is
-- the consumer engine in C, extension/consumer_engine.c.

------------------------------------------------------------------------------
-- Consumers, their members and their progress.
--
-- A consumer is split into members (1 by default): an event belongs to
-- member member_of(stream, id, members), so all the events of a stream go
-- to one member, and each member delivers its events in position order,
-- which within a stream is version order.  Members run in parallel: each
-- has its own row in members, locked by whoever runs a batch of it.
--
-- A member's progress is a pair of snapshots (docs/architecture.md).
-- Events whose transaction is visible in done_snapshot are delivered.  The
-- open window is what is visible in window_snapshot and not in
-- done_snapshot; it is paged by position, and window_after is the last
-- position delivered inside it.  When the window is drained,
-- window_snapshot becomes done_snapshot.  An event committed late (its
-- position taken before others that committed first) simply falls into a
-- later window: nothing is skipped.  A new or reset member has no
-- done_snapshot: its first window is every event after start_after.
--
-- Changing the number of members (set_consumer_members) starts a new
-- generation of members and fences the old one at a snapshot: the old
-- members deliver what is visible in fence_snapshot and are then removed;
-- the new ones start with that snapshot as done and wait until no old
-- member is left, so that no event is delivered twice and each stream's
-- events stay in order across the change.
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
    -- events of its topics removed (retention, erase_stream) before it got them
    skipped         bigint NOT NULL DEFAULT 0,
    -- the event types it is given, NULL: all; the others are passed over
    -- where events are found (consumer_engine.c)
    types           text[] COLLATE "C"
                    CHECK (pg_catalog.cardinality(types) BETWEEN 1 AND 64),
    -- how many members its events are spread over
    members         integer NOT NULL DEFAULT 1 CHECK (members BETWEEN 1 AND 256)
);
COMMENT ON TABLE consumers IS 'registered consumers';

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

-- The numbers of the batches given to outside consumers: unique across a
-- consumer's members, so that ack and nack need nothing else.
CREATE SEQUENCE batch_ids;

-- The member of a consumer with member_count members an event belongs to:
-- by its stream, so that a stream's events stay together and in order, or
-- by its id when it has none (extension/consumer_members.c).
CREATE FUNCTION member_of(stream text, id uuid, member_count integer) RETURNS integer
    LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'eventstore_member_of';

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
    attempt        integer,
    member         integer
);
COMMENT ON TYPE delivery IS 'an event as polled by an outside consumer, with its batch, delivery attempt and member';

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

-- Inserts generation's members 0 .. members - 1 of a consumer, each
-- starting after position start_after or, with done, from that snapshot
-- (and its floor).  They carry on the consumer's last batch id (ack and
-- nack tell a batch never given out by the highest of its members') and,
-- in member 0, the count of events handled by the members they replace.
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

-- The floor of a snapshot this transaction takes next: see
-- extension/horizon.c.  NULL without the preloaded library.
CREATE FUNCTION window_floor() RETURNS bigint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'eventstore_window_floor';

------------------------------------------------------------------------------
-- Consumer API
------------------------------------------------------------------------------

-- create_consumer() (C) checks who may create a consumer for run_as, then
-- calls this as the extension's owner.
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

-- Changes the number of members.  Batches in flight end first: the
-- consumer's row is locked, which waits for every batch being run or polled
-- (they hold it shared).  The members then retire at a fence, a snapshot
-- taken now: each delivers what is visible in it and not delivered yet
-- (leased batches are acked or redelivered as before), then goes.  The new
-- members start with the fence as their done snapshot, so nothing before it
-- is theirs, and take no batch until every retiring member has gone
-- (consumer_engine.c): a stream's events before the fence are handled
-- before its events after it.  While members still retire, the new ones
-- have handled nothing and are simply replaced.
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

-- Events of a member's topics (and types) it has not been given yet, and
-- the oldest one's recording time, at a cost that does not grow with the
-- lag.  Each topic's events are looked at through events_topic_position,
-- in position order, in two parts:
--  * from the member's floor (every event at or below it has been given to
--    it: the start of a new or reset member, else the floor of its done
--    snapshot) to its frontier, the highest position it has delivered or
--    has in its open window: counted exactly.  These are mostly delivered
--    events; the undelivered ones are late commits, whose positions were
--    taken before the delivered ones' and committed after.  This part is
--    as long as what was delivered past the floor, a batch or two.
--  * past the frontier, where nothing has been delivered: the first rows
--    up to a share of lag_budget (split between the topics and members)
--    are counted exactly (by the index alone for a consumer of every type
--    with one member, since all of them are undelivered then); if the topic has more, the rest is estimated as
--    the undelivered events per position over the positions the counted
--    rows span, times the positions from the last one counted to the
--    topic's newest.  If none
--    of the counted rows was undelivered (other types, other members'
--    streams), the rest counts as 1 when one of them is, so that a lag is
--    never 0 while an event is still to come.
-- lag_seconds is the age of the oldest among those counted.  A member without a
-- floor (a done snapshot taken without the preloaded library) counts
-- exactly, through the BRIN index on xid from its snapshot's xmin.  A
-- retiring member is given nothing after its fence.
CREATE FUNCTION member_undelivered(m members, OUT events bigint, OUT oldest timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp SET enable_seqscan = off
AS $$
DECLARE
    lag_budget CONSTANT integer := 10000;
    c eventstore.consumers;
    floor bigint := CASE WHEN m.done_snapshot IS NULL THEN m.start_after ELSE m.done_floor END;
    frontier bigint;
    share integer;
    t text;
    counted bigint;
    undelivered bigint;
    first_at timestamptz;
    first_counted bigint;
    last_counted bigint;
    newest bigint;
BEGIN
    SELECT * INTO c FROM eventstore.consumers WHERE name = m.consumer;
    IF floor IS NULL THEN
        SELECT count(*), min(e.recorded_at) INTO events, oldest
          FROM eventstore.events e
         WHERE e.xid >= pg_snapshot_xmin(m.done_snapshot)
           AND (e.topic || '') = ANY (c.topics)
           AND (c.types IS NULL OR e.type = ANY (c.types))
           AND (m.member_count = 1 OR eventstore.member_of(e.stream, e.id, m.member_count) = m.member)
           AND eventstore.member_is_undelivered(m, e.position, e.xid);
        RETURN;
    END IF;

    frontier := greatest(floor, m.position, m.window_after);
    share := greatest(lag_budget / (cardinality(c.topics) * m.member_count), 100);
    events := 0;
    FOREACH t IN ARRAY c.topics LOOP
        SELECT count(*), min(e.recorded_at) INTO undelivered, first_at
          FROM eventstore.events e
         WHERE e.topic = t AND e.position > floor AND e.position <= frontier
           AND (c.types IS NULL OR e.type = ANY (c.types))
           AND (m.member_count = 1 OR eventstore.member_of(e.stream, e.id, m.member_count) = m.member)
           AND eventstore.member_is_undelivered(m, e.position, e.xid);
        events := events + undelivered;
        oldest := least(oldest, first_at);

        IF c.types IS NULL AND m.member_count = 1 AND m.fence_snapshot IS NULL THEN
            -- every event past the frontier is undelivered: an index-only count
            SELECT count(*), count(*), min(e.position), max(e.position)
              INTO counted, undelivered, first_counted, last_counted
              FROM (SELECT e.position FROM eventstore.events e
                     WHERE e.topic = t AND e.position > frontier
                     ORDER BY e.position
                     LIMIT share) e;
            SELECT e.recorded_at INTO first_at FROM eventstore.events e WHERE e.position = first_counted;
        ELSE
            SELECT count(*), count(*) FILTER (WHERE u), min(e.recorded_at) FILTER (WHERE u),
                   min(e.position), max(e.position)
              INTO counted, undelivered, first_at, first_counted, last_counted
              FROM (SELECT e.position, e.recorded_at,
                           (c.types IS NULL OR e.type = ANY (c.types))
                           AND (m.member_count = 1
                                OR eventstore.member_of(e.stream, e.id, m.member_count) = m.member)
                           AND eventstore.member_is_undelivered(m, e.position, e.xid) AS u
                      FROM eventstore.events e
                     WHERE e.topic = t AND e.position > frontier
                     ORDER BY e.position
                     LIMIT share) e;
        END IF;
        events := events + undelivered;
        oldest := least(oldest, first_at);
        CONTINUE WHEN counted < share;
        SELECT max(e.position) INTO newest FROM eventstore.events e WHERE e.topic = t;
        CONTINUE WHEN newest = last_counted;
        IF undelivered > 0 THEN
            events := events + round(undelivered::numeric * (newest - last_counted)
                                     / (last_counted - first_counted + 1))::bigint;
        ELSIF EXISTS (SELECT FROM eventstore.events e
                       WHERE e.topic = t AND e.position > last_counted
                         AND (c.types IS NULL OR e.type = ANY (c.types))
                         AND (m.member_count = 1
                              OR eventstore.member_of(e.stream, e.id, m.member_count) = m.member)
                         AND eventstore.member_is_undelivered(m, e.position, e.xid)) THEN
            events := events + 1;
        END IF;
    END LOOP;
END
$$;

-- The same for a consumer: summed over its members.
CREATE FUNCTION undelivered(consumer text, OUT events bigint, OUT oldest timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sum(u.events)::bigint, min(u.oldest)
      FROM eventstore.members m, LATERAL eventstore.member_undelivered(m) u
     WHERE m.consumer = undelivered.consumer
$$;

-- What consumer_members shows of a member beside its row: its lag and
-- its parked events (those of its streams), as the extension's owner.
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

-- Whether event (position, xid) is still to come for member m, if it is
-- one of m's: the predicate of member_undelivered() for one event.
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

-- Waits for the batches in flight of the consumers of topic: a removal
-- (retention, erasure) then counts what they have not received from
-- their progress once those batches are committed, in its next statement.
CREATE FUNCTION wait_for_batches(topic text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    SELECT FROM eventstore.members m JOIN eventstore.consumers c ON c.name = m.consumer
     WHERE wait_for_batches.topic = ANY (c.topics)
       FOR SHARE OF m
$$;

-- Whether an event is still to come for consumer c: for the member it
-- belongs to (in either generation while the members change).  The
-- consumer's types are the caller's to check.
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
