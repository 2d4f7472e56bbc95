/* eventstore--0.1.sql: the event store's tables, types, roles and SQL API. */

\echo Use "CREATE EXTENSION eventstore" to load this file. \quit

-- Roles are cluster-wide: create them only where they do not exist yet, so
-- that the extension can be created in several databases or re-created.
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin',
                              'eventstore_decrypt']
    LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$roles$;

------------------------------------------------------------------------------
-- Storage
------------------------------------------------------------------------------

-- Topic and stream names are compared byte-wise (COLLATE "C"): topic names
-- are ASCII by rule, stream names are only ever compared for equality, and
-- a locale's collation would make every index comparison of an append
-- slower for nothing.
CREATE TABLE topics (
    name          text COLLATE "C" PRIMARY KEY
                  CHECK (name ~ '^[a-z][a-z0-9_]*$' AND pg_catalog.length(name) < 64),
    current_major integer NOT NULL CHECK (current_major >= 0),
    current_minor integer NOT NULL CHECK (current_minor >= 0),
    retention     interval CHECK (retention > interval '0'),
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- Roles granted one privilege on this topic alone (grant_topic);
    -- eventstore_writer and eventstore_reader hold it on every topic.
    appenders     regrole[] NOT NULL DEFAULT '{}'
                  CHECK (pg_catalog.cardinality(appenders) <= 16),
    readers       regrole[] NOT NULL DEFAULT '{}'
                  CHECK (pg_catalog.cardinality(readers) <= 16),
    erasers       regrole[] NOT NULL DEFAULT '{}'
                  CHECK (pg_catalog.cardinality(erasers) <= 16)
);
COMMENT ON TABLE topics IS 'topics that events can be appended to, with their current version and per-topic grants';

-- The envelope is stored decomposed: the columns a reader filters on are
-- real columns, and the envelope is rebuilt on read (see stored_events).
CREATE TABLE events (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             uuid NOT NULL UNIQUE,
    topic          text COLLATE "C" NOT NULL,
    type           text NOT NULL,
    version_major  integer NOT NULL,
    version_minor  integer NOT NULL,
    data           jsonb NOT NULL,
    metadata       jsonb NOT NULL,
    stream         text COLLATE "C",
    stream_version bigint,
    recorded_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    xid            xid8 NOT NULL,
    CHECK ((stream IS NULL) = (stream_version IS NULL))
);
COMMENT ON TABLE events IS 'every appended event; written only through eventstore.append*';
CREATE INDEX events_topic_position ON events (topic, position);
CREATE UNIQUE INDEX events_stream_version ON events (topic, stream, stream_version)
    WHERE stream IS NOT NULL;

-- One row per stream: its current version, and the row appenders lock to
-- serialise writers of one stream.
CREATE TABLE streams (
    topic   text COLLATE "C" NOT NULL,
    stream  text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (topic, stream)
);
COMMENT ON TABLE streams IS 'current version of every stream; locked by appenders to the stream';

-- The events as readers see them: the envelope rebuilt from its columns.
CREATE VIEW stored_events AS
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
       e.recorded_at
  FROM events e;

CREATE TYPE event AS (
    position       bigint,
    id             uuid,
    topic          text,
    stream         text,
    stream_version bigint,
    envelope       jsonb,
    recorded_at    timestamptz
);
COMMENT ON TYPE event IS 'an event as read: its position, stream and envelope as appended';

------------------------------------------------------------------------------
-- Topic cache invalidation: backends cache topics; any change to the table
-- tells them to drop the cache (relcache invalidation at commit).
------------------------------------------------------------------------------

CREATE FUNCTION topics_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_topics_changed';
CREATE TRIGGER topics_changed
    AFTER UPDATE OR DELETE OR TRUNCATE ON topics
    FOR EACH STATEMENT EXECUTE FUNCTION topics_changed();

------------------------------------------------------------------------------
-- SQL API
------------------------------------------------------------------------------

CREATE FUNCTION validate(event jsonb) RETURNS void
    LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'eventstore_validate';
COMMENT ON FUNCTION validate(jsonb) IS
    'raise 22023 with a detail naming the field when the event envelope is invalid';

CREATE FUNCTION is_valid(event jsonb) RETURNS boolean
    LANGUAGE c STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'eventstore_is_valid';
COMMENT ON FUNCTION is_valid(jsonb) IS 'whether the event envelope is valid';

CREATE FUNCTION create_topic(name text,
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
COMMENT ON FUNCTION create_topic(text, text, interval) IS
    'create a topic; events can only be appended to existing topics';

-- Per-topic privileges.  Members of eventstore_writer may append to every
-- topic and members of eventstore_reader read every topic; grant_topic()
-- gives a role one privilege on one topic, so that a service can be confined
-- to what it produces and consumes.  "read" lets the role consume the topic
-- (as a consumer's run_as, or an upcaster's registrar); the ad hoc read
-- functions stay with eventstore_reader.  The functions a privilege needs
-- are granted along with it and revoked with its role's last grant.
CREATE FUNCTION check_topic_grant_args(topic text, privilege text, grantee regrole)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF privilege IS NULL OR privilege NOT IN ('append', 'read', 'erase') THEN
        RAISE EXCEPTION 'invalid topic privilege'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "privilege" is %s; it must be ''append'', ''read'' or ''erase''.',
                                  coalesce(quote_literal(privilege), 'NULL'));
    END IF;
    IF grantee IS NULL OR grantee::oid = 0 THEN
        RAISE EXCEPTION 'invalid topic grantee'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Argument "grantee" must name a role.';
    END IF;
    IF topic IS NULL OR NOT EXISTS (SELECT FROM eventstore.topics t WHERE t.name = topic) THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object',
                  HINT = format('Create it with eventstore.create_topic(%L).', topic);
    END IF;
END
$$;

-- The column of eventstore.topics that lists a privilege's grantees.
CREATE FUNCTION topic_privilege_column(privilege text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE privilege WHEN 'append' THEN 'appenders' WHEN 'read' THEN 'readers'
                          WHEN 'erase' THEN 'erasers' END
$$;

-- The functions that come with a privilege, as a GRANT/REVOKE object list.
CREATE FUNCTION topic_privilege_functions(privilege text) RETURNS text
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
        WHEN 'erase' THEN 'eventstore.erase_stream(text, text)'
    END
$$;

-- The privileges role holds on some topic through grant_topic.
CREATE FUNCTION topic_privileges_of(role regrole) RETURNS text[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY(SELECT p FROM unnest(ARRAY['append', 'read', 'erase']) AS p
                  WHERE EXISTS (SELECT FROM eventstore.topics t
                                 WHERE role = ANY (CASE p WHEN 'append' THEN t.appenders
                                                          WHEN 'read' THEN t.readers
                                                          ELSE t.erasers END)))
$$;

CREATE FUNCTION grant_topic(topic text, privilege text, grantee regrole) RETURNS void
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
EXCEPTION
    WHEN check_violation THEN
        RAISE EXCEPTION 'too many grantees of % on topic "%"', privilege, topic
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = 'A topic has at most 16 grantees per privilege.',
                  HINT = 'Grant the privilege to a group role and make the roles its members.';
END
$$;
COMMENT ON FUNCTION grant_topic(text, text, regrole) IS
    'let a role append to (''append''), consume (''read'') or erase streams of (''erase'') one topic, with the functions that needs';

CREATE FUNCTION revoke_topic(topic text, privilege text, grantee regrole) RETURNS void
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
COMMENT ON FUNCTION revoke_topic(text, text, regrole) IS
    'take back a privilege given by grant_topic, and its functions with the role''s last grant';

-- The first of topics that role may not consume, or NULL when it may
-- consume them all.
CREATE FUNCTION unreadable_topic(role oid, topics text[]) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.name::text
      FROM eventstore.topics t
     WHERE t.name = ANY (topics)
       AND NOT pg_has_role(role, 'eventstore_reader', 'USAGE')
       AND NOT EXISTS (SELECT FROM unnest(t.readers) AS r WHERE pg_has_role(role, r, 'USAGE'))
     ORDER BY array_position(topics, t.name::text)
     LIMIT 1
$$;

CREATE FUNCTION check_topics_readable(role oid, topics text[], what text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    denied text := eventstore.unreadable_topic(role, topics);
BEGIN
    IF denied IS NOT NULL THEN
        RAISE EXCEPTION 'permission denied to read topic "%"', denied
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('Role %s, %s, is not a member of eventstore_reader and has no read grant on the topic.',
                                  role::regrole, what),
                  HINT = format('An eventstore_admin can grant it with eventstore.grant_topic(%L, ''read'', %L).',
                                denied, role::regrole::text);
    END IF;
END
$$;

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

-- Reads raise 42704 for a topic that does not exist, like append does, so a
-- typo in a topic name is an error rather than an empty result.
CREATE FUNCTION check_read_args(topic text, max integer) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF max IS NULL OR max < 1 THEN
        RAISE EXCEPTION 'invalid read limit'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "max" is %s; it must be at least 1.', coalesce(max::text, 'NULL'));
    END IF;
    IF topic IS NOT NULL
       AND NOT EXISTS (SELECT FROM eventstore.topics t WHERE t.name = topic) THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object',
                  HINT = format('Create it with eventstore.create_topic(%L).', topic);
    END IF;
END
$$;

CREATE FUNCTION read(topic text, after bigint DEFAULT 0, max integer DEFAULT 1000)
RETURNS SETOF event
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.check_read_args(topic, max);
    -- Two queries rather than "topic IS NULL OR ...", so that each can use
    -- its index under a generic plan.
    IF topic IS NULL THEN
        RETURN QUERY
            SELECT s.position, s.id, s.topic, s.stream, s.stream_version, s.envelope, s.recorded_at
              FROM eventstore.stored_events s
             WHERE s.position > coalesce(after, 0)
             ORDER BY s.position
             LIMIT max;
    ELSE
        RETURN QUERY
            SELECT s.position, s.id, s.topic, s.stream, s.stream_version, s.envelope, s.recorded_at
              FROM eventstore.stored_events s
             WHERE s.topic = read.topic
               AND s.position > coalesce(after, 0)
             ORDER BY s.position
             LIMIT max;
    END IF;
END
$$;
COMMENT ON FUNCTION read(text, bigint, integer) IS
    'events of a topic (all topics when NULL) after a position, in position order';

CREATE FUNCTION read_stream(topic text, stream text,
                            after_version bigint DEFAULT 0, max integer DEFAULT 1000)
RETURNS SETOF event
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF topic IS NULL OR stream IS NULL THEN
        RAISE EXCEPTION 'topic and stream must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = format('Argument "%s" is NULL.', CASE WHEN topic IS NULL THEN 'topic' ELSE 'stream' END);
    END IF;
    PERFORM eventstore.check_read_args(topic, max);
    RETURN QUERY
        SELECT s.position, s.id, s.topic, s.stream, s.stream_version, s.envelope, s.recorded_at
          FROM eventstore.stored_events s
         WHERE s.topic = read_stream.topic
           AND s.stream = read_stream.stream
           AND s.stream_version > coalesce(after_version, 0)
         ORDER BY s.stream_version
         LIMIT max;
END
$$;
COMMENT ON FUNCTION read_stream(text, text, bigint, integer) IS
    'events of one stream after a stream version, in stream version order';

CREATE FUNCTION get(id uuid) RETURNS event
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.position, s.id, s.topic, s.stream, s.stream_version, s.envelope, s.recorded_at
      FROM eventstore.stored_events s
     WHERE s.id = get.id
$$;
COMMENT ON FUNCTION get(uuid) IS 'one event by id; NULL when there is none';

------------------------------------------------------------------------------
-- Versioning: upcasters turn an event of an older major version into the
-- next one on the way to consumers (and to readers that ask for it).
------------------------------------------------------------------------------

CREATE TABLE upcasters (
    topic      text COLLATE "C" NOT NULL REFERENCES topics (name),
    from_major integer NOT NULL CHECK (from_major >= 0),
    to_major   integer NOT NULL,
    fn         text NOT NULL,       -- a regprocedure, kept as text (see consumers.handler)
    run_as     regrole NOT NULL CHECK (run_as::oid <> 0),   -- its registrar; fn runs as this role
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (topic, from_major),
    CHECK (to_major > from_major)
);
COMMENT ON TABLE upcasters IS 'functions that turn an event of from_major into to_major, chained up to the topic''s current major';
-- An upcaster runs as the role that registered it, with search_path fixed
-- to pg_catalog, pg_temp, as a security-restricted operation: it lends its
-- privileges to nobody, and borrows none from the role receiving the event.

------------------------------------------------------------------------------
-- Consumers and their progress.
--
-- Progress is a pair of snapshots (DESIGN.md decision 4).  Events whose
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

-- A consumer's window needs the events by transaction id.  Events are
-- appended in roughly xid order, so a BRIN index serves that for almost no
-- cost on the append path (a btree would cost every append an index
-- insertion).  PostgreSQL has no BRIN operator class for xid8; this one is
-- the stock minmax strategy over xid8's ordering operators.
CREATE OPERATOR CLASS xid8_minmax_ops FOR TYPE xid8 USING brin AS
    OPERATOR 1 pg_catalog.< (xid8, xid8),
    OPERATOR 2 pg_catalog.<= (xid8, xid8),
    OPERATOR 3 pg_catalog.= (xid8, xid8),
    OPERATOR 4 pg_catalog.>= (xid8, xid8),
    OPERATOR 5 pg_catalog.> (xid8, xid8),
    FUNCTION 1 pg_catalog.brin_minmax_opcinfo(internal),
    FUNCTION 2 pg_catalog.brin_minmax_add_value(internal, internal, internal, internal),
    FUNCTION 3 pg_catalog.brin_minmax_consistent(internal, internal, internal),
    FUNCTION 4 pg_catalog.brin_minmax_union(internal, internal, internal);
CREATE INDEX events_xid ON events USING brin (xid xid8_minmax_ops)
    WITH (pages_per_range = 16, autosummarize = on);

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

CREATE FUNCTION lease_timeout() RETURNS interval
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'eventstore_lease_timeout';
CREATE FUNCTION retry_delay(attempts integer) RETURNS interval
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'eventstore_retry_delay';

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

-- The consumer's row, locked; kind 'outside' or 'in_database' refuses the
-- other kind.
CREATE FUNCTION lock_consumer(consumer text, kind text DEFAULT NULL)
RETURNS consumers
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c eventstore.consumers;
BEGIN
    PERFORM eventstore.check_consumer_name(consumer);
    SELECT * INTO c FROM eventstore.consumers WHERE name = consumer FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'consumer "%" does not exist', consumer
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create it with eventstore.create_consumer().';
    END IF;
    IF kind = 'outside' AND c.handler IS NOT NULL THEN
        RAISE EXCEPTION 'consumer "%" is an in-database consumer', consumer
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = format('Its handler is %s.', c.handler),
                  HINT = 'Run it with eventstore.run_consumer().';
    ELSIF kind = 'in_database' AND c.handler IS NULL THEN
        RAISE EXCEPTION 'consumer "%" is an outside consumer', consumer
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'It has no handler.',
                  HINT = 'Take its events with eventstore.poll() and eventstore.ack().';
    END IF;
    RETURN c;
END
$$;

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

-- Opens a window for a consumer whose row the caller has locked; false when
-- there is nothing new.  An empty window moves done_snapshot on at once.
-- enable_seqscan is off so that the window's events are found through the
-- BRIN index on xid even before the table has statistics.
CREATE FUNCTION open_window(consumer text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET enable_seqscan = off
AS $$
DECLARE
    c   eventstore.consumers;
    s   pg_snapshot;
    low bigint;
BEGIN
    SELECT * INTO STRICT c FROM eventstore.consumers WHERE name = consumer;
    IF c.window_snapshot IS NOT NULL THEN
        RETURN true;
    END IF;
    s := eventstore.window_snapshot();
    IF c.done_snapshot IS NULL THEN
        low := c.start_after;
    ELSIF s::text = c.done_snapshot::text THEN
        RETURN false;               -- no transaction has ended since
    ELSE
        -- The lowest position in the window, found through the BRIN index
        -- on xid and nothing else: "position + 0" keeps the planner off a
        -- min() by primary key, "topic || ''" off the topic index, either
        -- of which reads every event of the topic.  Paging starts there.
        EXECUTE format('SELECT min(e.position OPERATOR(pg_catalog.+) 0) - 1
                          FROM eventstore.events e
                         WHERE e.xid >= %L::xid8 AND e.xid < %L::xid8
                           AND (e.topic OPERATOR(pg_catalog.||) '''') = ANY (%L::text[])
                           AND pg_visible_in_snapshot(e.xid, %L::pg_snapshot)
                           AND NOT pg_visible_in_snapshot(e.xid, %L::pg_snapshot)',
                       pg_snapshot_xmin(c.done_snapshot), pg_snapshot_xmax(s),
                       c.topics, s, c.done_snapshot)
            INTO low;
        IF low IS NULL THEN
            UPDATE eventstore.consumers SET done_snapshot = s WHERE name = consumer;
            RETURN false;
        END IF;
    END IF;
    UPDATE eventstore.consumers
       SET window_snapshot = s, window_after = low
     WHERE name = consumer;
    RETURN true;
END
$$;

-- The window is drained: what it saw is now delivered.
CREATE FUNCTION close_window(consumer text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE eventstore.consumers
       SET done_snapshot = window_snapshot, window_snapshot = NULL, window_after = NULL
     WHERE name = consumer AND window_snapshot IS NOT NULL
$$;

-- The open window's events after window_after (up to upto), as stored.
-- Dynamic SQL, so that every page is planned with its real bounds.
CREATE FUNCTION window_events(consumer text, upto bigint, max integer)
RETURNS SETOF event
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c eventstore.consumers;
BEGIN
    SELECT * INTO STRICT c FROM eventstore.consumers WHERE name = consumer;
    RETURN QUERY EXECUTE
        'SELECT e.position, e.id, e.topic, e.stream, e.stream_version,
                pg_catalog.jsonb_build_object(
                    ''id'', e.id, ''type'', e.type,
                    ''version'', e.version_major::text OPERATOR(pg_catalog.||) ''.''
                                 OPERATOR(pg_catalog.||) e.version_minor::text,
                    ''data'', e.data, ''metadata'', e.metadata),
                e.recorded_at
           FROM eventstore.events e
          WHERE e.topic = ANY ($1) AND e.position > $2 AND e.position <= $3
            AND pg_visible_in_snapshot(e.xid, $4)
            AND ($5 IS NULL OR NOT pg_visible_in_snapshot(e.xid, $5))
          ORDER BY e.position
          LIMIT $6'
        USING c.topics, c.window_after, coalesce(upto, 9223372036854775807),
              c.window_snapshot, c.done_snapshot, max;
END
$$;

-- Events of an outside consumer's open batch as deliveries, as stored: poll()
-- upcasts them as the consumer's role.
CREATE FUNCTION batch_deliveries(consumer text) RETURNS SETOF delivery
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c eventstore.consumers;
BEGIN
    SELECT * INTO STRICT c FROM eventstore.consumers WHERE name = consumer;
    IF c.batch_kind = 'window' THEN
        RETURN QUERY
            SELECT w.position, w.id, w.topic, w.stream, w.stream_version,
                   w.envelope, w.recorded_at, c.batch_id, c.batch_attempt
              FROM eventstore.window_events(consumer, c.batch_upto, 2147483647) w;
    ELSE
        RETURN QUERY
            SELECT e.position, e.id, e.topic, e.stream, e.stream_version,
                   e.envelope, e.recorded_at, c.batch_id, c.batch_attempt
              FROM eventstore.parked p, LATERAL eventstore.get(p.event_id) e
             WHERE p.consumer = batch_deliveries.consumer AND p.batch_id = c.batch_id
             ORDER BY p.position;
    END IF;
END
$$;

-- Parks the events of an outside consumer's open batch and moves on.
CREATE FUNCTION park_batch(consumer text, error text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c eventstore.consumers;
BEGIN
    SELECT * INTO STRICT c FROM eventstore.consumers WHERE name = consumer;
    IF c.batch_kind = 'window' THEN
        INSERT INTO eventstore.parked AS p (consumer, event_id, position, topic, attempts, error)
        SELECT consumer, w.id, w.position, w.topic, c.attempts, park_batch.error
          FROM eventstore.window_events(consumer, c.batch_upto, 2147483647) w
            ON CONFLICT ON CONSTRAINT parked_pkey DO UPDATE
           SET attempts = p.attempts + excluded.attempts, error = excluded.error,
               parked_at = excluded.parked_at, replay = false, batch_id = NULL;
    ELSE
        UPDATE eventstore.parked p
           SET attempts = p.attempts + c.attempts, error = park_batch.error,
               replay = false, batch_id = NULL
         WHERE p.consumer = park_batch.consumer AND p.batch_id = c.batch_id;
    END IF;
    PERFORM eventstore.finish_batch(consumer, false);
END
$$;

-- The open batch of an outside consumer is done (acked, or parked).
CREATE FUNCTION finish_batch(consumer text, acked boolean) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c eventstore.consumers;
    n bigint;
BEGIN
    SELECT * INTO STRICT c FROM eventstore.consumers WHERE name = consumer;
    IF c.batch_kind = 'window' THEN
        SELECT count(*) INTO n FROM eventstore.window_events(consumer, c.batch_upto, 2147483647);
        UPDATE eventstore.consumers
           SET window_after = c.batch_upto,
               position = greatest(position, c.batch_upto)
         WHERE name = consumer;
    ELSE
        DELETE FROM eventstore.parked p
         WHERE p.consumer = finish_batch.consumer AND p.batch_id = c.batch_id AND acked;
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    UPDATE eventstore.consumers
       SET batch_kind = NULL, batch_upto = NULL, batch_attempt = 0, leased_until = NULL,
           attempts = 0, retry_at = NULL, last_run = now(),
           handled = handled + CASE WHEN acked THEN n ELSE 0 END
     WHERE name = consumer;
END
$$;

------------------------------------------------------------------------------
-- Consumer API
------------------------------------------------------------------------------

-- create_consumer() (C) checks who may create a consumer for run_as, then
-- calls this as the extension's owner.
CREATE FUNCTION register_consumer(name text, topics text[], handler regprocedure,
                                  batch_size integer, max_attempts integer,
                                  run_as regrole)
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
    INSERT INTO eventstore.consumers (name, topics, handler, run_as, batch_size, max_attempts)
    VALUES (name, topics, handler::text, run_as, batch_size, max_attempts);
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
                                run_as regrole DEFAULT NULL)
RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_create_consumer';
COMMENT ON FUNCTION create_consumer(text, text[], regprocedure, integer, integer, regrole) IS
    'register a consumer of topics: in-database with a handler f(eventstore.event), outside (poll/ack) without; it acts as run_as (default: the caller)';

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

-- poll(), ack() and nack() (C) check that the caller is a member of the
-- consumer's role, then call these as the extension's owner.
CREATE FUNCTION poll_batch(consumer text, max integer) RETURNS SETOF delivery
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c    eventstore.consumers;
    upto bigint;
BEGIN
    IF max IS NULL OR max < 1 OR max > 10000 THEN
        RAISE EXCEPTION 'invalid poll limit'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "max" is %s; it must be between 1 and 10000.', coalesce(max::text, 'NULL'));
    END IF;
    c := eventstore.lock_consumer(consumer, 'outside');
    -- Checked on every poll, so that a revoke_topic takes effect at once.
    PERFORM eventstore.check_topics_readable(c.run_as, c.topics, 'the consumer''s role');

    IF c.batch_kind IS NOT NULL THEN
        IF c.leased_until > now() THEN
            RETURN;                 -- leased to another poller, or backing off after a nack
        END IF;
        IF c.batch_attempt > c.attempts THEN
            -- Delivered, neither acked nor nacked before the lease ran out.
            UPDATE eventstore.consumers
               SET attempts = attempts + 1,
                   last_error = format('batch %s not acked within %s', c.batch_id, eventstore.lease_timeout())
             WHERE name = consumer
            RETURNING * INTO c;
        END IF;
        IF c.attempts < c.max_attempts THEN
            UPDATE eventstore.consumers
               SET batch_attempt = batch_attempt + 1,
                   leased_until = now() + eventstore.lease_timeout(), last_run = now()
             WHERE name = consumer;
            RETURN QUERY SELECT * FROM eventstore.batch_deliveries(consumer);
            RETURN;
        END IF;
        PERFORM eventstore.park_batch(consumer, c.last_error);
        c := eventstore.lock_consumer(consumer);
    END IF;

    -- Parked events asked for again go out first, in a batch of their own.
    UPDATE eventstore.parked p SET batch_id = c.batch_id + 1
     WHERE p.consumer = poll_batch.consumer AND p.replay AND p.position IN (
           SELECT q.position FROM eventstore.parked q
            WHERE q.consumer = poll_batch.consumer AND q.replay
            ORDER BY q.position LIMIT max);
    IF FOUND THEN
        UPDATE eventstore.consumers
           SET batch_id = batch_id + 1, batch_kind = 'replay', batch_attempt = 1,
               leased_until = now() + eventstore.lease_timeout(), last_run = now()
         WHERE name = consumer;
        RETURN QUERY SELECT * FROM eventstore.batch_deliveries(consumer);
        RETURN;
    END IF;

    -- The next page of the window; a drained window gives way to a new one.
    FOR i IN 1..2 LOOP
        EXIT WHEN NOT eventstore.open_window(consumer);
        SELECT pg_catalog.max(w.position) INTO upto
          FROM eventstore.window_events(consumer, NULL, max) w;
        IF upto IS NOT NULL THEN
            UPDATE eventstore.consumers
               SET batch_id = batch_id + 1, batch_kind = 'window', batch_upto = upto,
                   batch_attempt = 1, leased_until = now() + eventstore.lease_timeout(),
                   last_run = now()
             WHERE name = consumer;
            RETURN QUERY SELECT * FROM eventstore.batch_deliveries(consumer);
            RETURN;
        END IF;
        PERFORM eventstore.close_window(consumer);
    END LOOP;
    UPDATE eventstore.consumers SET last_run = now() WHERE name = consumer;
END
$$;
CREATE FUNCTION poll(consumer text, max integer DEFAULT 100) RETURNS SETOF delivery
    LANGUAGE c ROWS 100 AS 'MODULE_PATHNAME', 'eventstore_poll';
COMMENT ON FUNCTION poll(text, integer) IS
    'next batch of an outside consumer; the same batch again after its lease runs out, until acked';

-- The outside consumer's row, locked, after checking that batch_id is one
-- that poll() gave out.
CREATE FUNCTION lock_batch(consumer text, batch_id bigint) RETURNS consumers
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c eventstore.consumers := eventstore.lock_consumer(consumer, 'outside');
BEGIN
    IF batch_id IS NULL OR batch_id < 1 OR batch_id > c.batch_id THEN
        RAISE EXCEPTION 'batch % of consumer "%" was never delivered', coalesce(batch_id::text, 'NULL'), consumer
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "batch_id" must be a batch returned by eventstore.poll(); the last one is %s.', c.batch_id);
    END IF;
    RETURN c;
END
$$;

CREATE FUNCTION ack_batch(consumer text, batch_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c eventstore.consumers := eventstore.lock_batch(consumer, batch_id);
BEGIN
    IF batch_id < c.batch_id OR c.batch_kind IS NULL THEN
        RETURN;                     -- acked already: a repeated ack changes nothing
    END IF;
    PERFORM eventstore.finish_batch(consumer, true);
END
$$;
CREATE FUNCTION ack(consumer text, batch_id bigint) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_ack';
COMMENT ON FUNCTION ack(text, bigint) IS 'an outside consumer is done with a batch; acking it again is harmless';

CREATE FUNCTION nack_batch(consumer text, batch_id bigint, error text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c eventstore.consumers := eventstore.lock_batch(consumer, batch_id);
BEGIN
    IF batch_id < c.batch_id OR c.batch_kind IS NULL OR c.batch_attempt <= c.attempts THEN
        RETURN;                     -- finished, or this delivery was counted already
    END IF;
    UPDATE eventstore.consumers
       SET attempts = attempts + 1, last_error = coalesce(error, 'nacked without an error text'),
           leased_until = now() + eventstore.retry_delay(attempts + 1)
     WHERE name = consumer
    RETURNING * INTO c;
    IF c.attempts >= c.max_attempts THEN
        PERFORM eventstore.park_batch(consumer, c.last_error);
    END IF;
END
$$;
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

-- create_upcaster() (C) checks that the caller may execute fn, then calls
-- this as the extension's owner.
CREATE FUNCTION register_upcaster(topic text, from_major integer, to_major integer,
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
    INSERT INTO eventstore.upcasters (topic, from_major, to_major, fn, run_as)
    VALUES (topic, from_major, to_major, fn::text, run_as);
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'topic "%" has an upcaster from major version % already', topic, from_major
            USING ERRCODE = 'duplicate_object';
END
$$;
CREATE FUNCTION create_upcaster(topic text, from_major integer, to_major integer, fn regprocedure)
RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_create_upcaster';
COMMENT ON FUNCTION create_upcaster(text, integer, integer, regprocedure) IS
    'register fn(envelope jsonb) RETURNS jsonb turning events of topic from from_major to to_major';

CREATE FUNCTION set_topic_version(topic text, current_version text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts text[] := regexp_match(current_version, '^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$');
BEGIN
    IF parts IS NULL THEN
        RAISE EXCEPTION 'invalid topic version'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Version %L must be "MAJOR.MINOR" with non-negative integers without signs, spaces or leading zeros.', current_version);
    END IF;
    UPDATE eventstore.topics t SET current_major = parts[1]::integer, current_minor = parts[2]::integer
     WHERE t.name = set_topic_version.topic;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;
COMMENT ON FUNCTION set_topic_version(text, text) IS
    'move a topic to a new current version; consumers then receive its events upcast to that major';

CREATE FUNCTION upcast(e event) RETURNS event
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'eventstore_upcast';
COMMENT ON FUNCTION upcast(event) IS
    'the event turned into its topic''s current major version by the registered upcasters';

CREATE FUNCTION derived_id(source_id uuid, consumer text) RETURNS uuid
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'eventstore_derived_id';
COMMENT ON FUNCTION derived_id(uuid, text) IS
    'UUID v5 of the consumer name in the namespace of the source event id: the id of an event derived from it';

-- Events of a consumer's topics it has not been given yet, and the oldest
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
           AND e.position > c.start_after
           AND NOT (c.window_snapshot IS NOT NULL
                    AND pg_visible_in_snapshot(e.xid, c.window_snapshot)
                    AND e.position <= c.window_after);
    ELSE
        SELECT count(*), min(e.recorded_at) INTO events, oldest
          FROM eventstore.events e
         WHERE e.xid >= pg_snapshot_xmin(c.done_snapshot)
           AND (e.topic || '') = ANY (c.topics)
           AND NOT pg_visible_in_snapshot(e.xid, c.done_snapshot)
           AND NOT (c.window_snapshot IS NOT NULL
                    AND pg_visible_in_snapshot(e.xid, c.window_snapshot)
                    AND e.position <= c.window_after);
    END IF;
END
$$;

------------------------------------------------------------------------------
-- Retention: events of a topic with a retention are removed once older
------------------------------------------------------------------------------

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

/*
 * Removes at most max expired events (recorded more than their topic's
 * retention ago), oldest first, topic after topic, and counts for every
 * consumer of their topic those it had not received yet
 * (consumers.skipped).  Returns how many it removed: fewer than max means
 * nothing expired is left.  The dispatcher worker calls it batch after
 * batch, a transaction each, so that no transaction holds many row locks
 * or a long snapshot; appends are never blocked (a DELETE takes no lock
 * that an INSERT waits for).
 */
CREATE FUNCTION purge_batch(max integer) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t       record;
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
            RETURNING e.position, e.xid
        ), missed AS (
            UPDATE eventstore.consumers c
               SET skipped = c.skipped + (SELECT count(*) FROM gone g
                                           WHERE eventstore.is_undelivered(c, g.position, g.xid))
             WHERE t.name = ANY (c.topics)
        )
        SELECT count(*) INTO n FROM gone;
        removed := removed + n;
    END LOOP;
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
    'remove now, in this transaction, every event older than its topic''s retention; returns how many';

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

------------------------------------------------------------------------------
-- Erasure: every event of one stream, at once (extension/erase.c)
------------------------------------------------------------------------------

CREATE FUNCTION erase_stream_as(topic text, stream text, caller oid) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed bigint;
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
    -- The stream's row first: appends to the stream wait until this commits.
    DELETE FROM eventstore.streams s WHERE s.topic = erase_stream_as.topic AND s.stream = erase_stream_as.stream;
    WITH gone AS (
        DELETE FROM eventstore.events e
         WHERE e.topic = erase_stream_as.topic AND e.stream = erase_stream_as.stream
        RETURNING e.position, e.xid
    ), missed AS (
        UPDATE eventstore.consumers c
           SET skipped = c.skipped + (SELECT count(*) FROM gone g
                                       WHERE eventstore.is_undelivered(c, g.position, g.xid))
         WHERE erase_stream_as.topic = ANY (c.topics)
    )
    SELECT count(*) INTO removed FROM gone;
    RETURN removed;
END
$$;

CREATE FUNCTION erase_stream(topic text, stream text) RETURNS bigint
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_erase_stream';
COMMENT ON FUNCTION erase_stream(text, text) IS
    'remove every event of a stream now (for erasure of personal data); returns how many';

------------------------------------------------------------------------------
-- Crypto-shredding: personal fields encrypted with a key per subject
-- (extension/protect.c).  A topic declares the dotted paths of its personal
-- fields in data and the path of the subject (the person) they belong to.
-- Appends replace each present field by {"protected": <base64>, "key": <key
-- id>}, AES-256-CBC under the subject's key; forget_subject() deletes the
-- key, after which those fields can no longer be decrypted by anyone.  The
-- cipher comes from pgcrypto, which eventstore does not require: it is
-- looked up when a topic is protected and at every use.
------------------------------------------------------------------------------

CREATE TABLE protections (
    topic        text COLLATE "C" PRIMARY KEY REFERENCES topics (name) ON DELETE CASCADE,
    subject_path text NOT NULL,
    paths        text[] NOT NULL CHECK (pg_catalog.cardinality(paths) BETWEEN 1 AND 16),
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE protections IS
    'topics whose personal fields (dotted paths in data) are encrypted per subject';

-- Appends cache whether a topic is protected with the topic itself.
CREATE TRIGGER protections_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON protections
    FOR EACH STATEMENT EXECUTE FUNCTION topics_changed();

-- One key per subject, created by the first append that needs it; readable
-- by the extension's owner only.  key_id tells the key apart from a later
-- one of the same subject (after forget_subject), so that events encrypted
-- under a destroyed key read as shredded rather than as garbage.
CREATE TABLE subject_keys (
    subject    text PRIMARY KEY,
    key_id     bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    key        bytea NOT NULL CHECK (pg_catalog.length(key) = 32),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE subject_keys IS
    'the key of every subject with protected fields; forget_subject() deletes it';

-- The schema of pgcrypto, quoted, or 55000 when it is not installed.
CREATE FUNCTION crypto_schema() RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s text;
BEGIN
    SELECT quote_ident(n.nspname) INTO s
      FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
     WHERE x.extname = 'pgcrypto';
    IF s IS NULL THEN
        RAISE EXCEPTION 'crypto-shredding needs the extension pgcrypto'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'pgcrypto is not installed in this database.',
                  HINT = 'Run CREATE EXTENSION pgcrypto (Debian: package postgresql-contrib).';
    END IF;
    RETURN s;
END
$$;

-- Encrypts (or decrypts) one field of one event: AES-256-CBC with a key
-- derived from the subject's key, and an IV derived from the event's id
-- and the field's path.  Deterministic, so that appending the same event
-- again gives the same stored content (an idempotent duplicate); two
-- different events or fields never share an IV.  Arguments are cast to
-- pgcrypto's exact signatures.
CREATE FUNCTION crypt_field(encrypt boolean, key bytea, event_id uuid, path text, input bytea)
RETURNS bytea
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result bytea;
BEGIN
    EXECUTE format('SELECT %1$s.%2$s($1,'
                   ' %1$s.hmac(''eventstore field key''::bytea, $2, ''sha256''::text),'
                   ' substring(%1$s.hmac(convert_to($3::text || ''/'' || $4, ''UTF8''), $2, ''sha256''::text) FROM 1 FOR 16),'
                   ' ''aes-cbc/pad:pkcs''::text)',
                   eventstore.crypto_schema(), CASE WHEN encrypt THEN 'encrypt_iv' ELSE 'decrypt_iv' END)
        USING input, key, event_id, path
        INTO result;
    RETURN result;
END
$$;

-- Validates one dotted path argument: segments of [a-z0-9_].
CREATE FUNCTION check_protect_path(argument text, path text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF path IS NULL OR path !~ '^[a-z0-9_]+(\.[a-z0-9_]+)*$' OR length(path) > 255 THEN
        RAISE EXCEPTION 'invalid protected path'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "%s" has %s; a path is dot-separated members of [a-z0-9_], at most 255 characters.',
                                  argument, coalesce(quote_literal(path), 'NULL'));
    END IF;
END
$$;

CREATE FUNCTION protect_fields(topic text, subject_path text, paths text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old     eventstore.protections;
    merged  text[];
    p       text;
    q       text;
BEGIN
    IF topic IS NULL OR NOT EXISTS (SELECT FROM eventstore.topics t WHERE t.name = topic) THEN
        RAISE EXCEPTION 'topic "%" does not exist', topic
            USING ERRCODE = 'undefined_object',
                  HINT = format('Create it with eventstore.create_topic(%L).', topic);
    END IF;
    PERFORM eventstore.check_protect_path('subject_path', subject_path);
    IF paths IS NULL OR cardinality(paths) = 0 OR array_ndims(paths) <> 1 THEN
        RAISE EXCEPTION 'invalid protected paths'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Argument "paths" must be a one-dimensional array of 1 to 16 paths.';
    END IF;
    FOREACH p IN ARRAY paths LOOP
        PERFORM eventstore.check_protect_path('paths', p);
    END LOOP;
    SELECT * INTO old FROM eventstore.protections r WHERE r.topic = protect_fields.topic FOR UPDATE;
    IF FOUND AND old.subject_path <> subject_path THEN
        RAISE EXCEPTION 'invalid subject path'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "subject_path" is %L; topic %L protects the fields of subject %L, which cannot change.',
                                  subject_path, topic, old.subject_path);
    END IF;
    -- Paths only ever grow: a field once protected stays protected, and
    -- older events keep reading.
    merged := ARRAY(SELECT DISTINCT x FROM unnest(coalesce(old.paths, '{}') || paths) AS x ORDER BY x);
    IF cardinality(merged) > 16 THEN
        RAISE EXCEPTION 'invalid protected paths'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "paths" would make %s protected paths on topic %L; at most 16.',
                                  cardinality(merged), topic);
    END IF;
    -- The subject must stay readable, and no field may lie inside another.
    FOREACH p IN ARRAY merged LOOP
        IF p = subject_path OR starts_with(subject_path, p || '.') OR starts_with(p, subject_path || '.') THEN
            RAISE EXCEPTION 'invalid protected paths'
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Argument "paths" has %L, which overlaps the subject path %L.', p, subject_path);
        END IF;
        FOREACH q IN ARRAY merged LOOP
            IF starts_with(q, p || '.') THEN
                RAISE EXCEPTION 'invalid protected paths'
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = format('Argument "paths" has %L inside %L.', q, p);
            END IF;
        END LOOP;
    END LOOP;
    PERFORM eventstore.crypto_schema();
    INSERT INTO eventstore.protections AS r (topic, subject_path, paths)
    VALUES (topic, subject_path, merged)
    ON CONFLICT ON CONSTRAINT protections_pkey DO UPDATE SET paths = EXCLUDED.paths;
    PERFORM eventstore.refresh_archive();
END
$$;
COMMENT ON FUNCTION protect_fields(text, text, text[]) IS
    'encrypt the personal fields at paths (in data) of every event appended to topic from now on, per subject (subject_path)';

-- The key of a subject, created when it has none.  Called by appends as the
-- owner.
CREATE FUNCTION subject_key(subject text, OUT key bytea, OUT key_id bigint)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT s.key, s.key_id INTO key, key_id FROM eventstore.subject_keys s WHERE s.subject = subject_key.subject;
    IF FOUND THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT %s.gen_random_bytes(32)', eventstore.crypto_schema()) INTO key;
    INSERT INTO eventstore.subject_keys AS s (subject, key) VALUES (subject, key)
    ON CONFLICT ON CONSTRAINT subject_keys_pkey DO NOTHING
    RETURNING s.key_id INTO key_id;
    IF key_id IS NULL THEN
        -- a concurrent append created it first; READ COMMITTED sees it now
        SELECT s.key, s.key_id INTO key, key_id FROM eventstore.subject_keys s WHERE s.subject = subject_key.subject;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'could not serialize access due to a concurrent append for the same subject'
                USING ERRCODE = 'serialization_failure',
                      HINT = 'Retry the append.';
        END IF;
    END IF;
END
$$;

-- The data of an event appended to a protected topic, its personal fields
-- encrypted.  Called by append (C) as the owner for each event of a
-- protected topic; batch_index is 0 for a single event.
CREATE FUNCTION protect_data(topic text, data jsonb, event_id uuid, batch_index integer)
RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pr      eventstore.protections;
    subject jsonb;
    k       record;
    p       text;
    path    text[];
    v       jsonb;
    keyed   boolean := false;
BEGIN
    SELECT * INTO pr FROM eventstore.protections r WHERE r.topic = protect_data.topic;
    IF NOT FOUND THEN
        RETURN data;
    END IF;
    subject := data #> string_to_array(pr.subject_path, '.');
    IF subject IS NULL OR jsonb_typeof(subject) NOT IN ('string', 'number') OR subject #>> '{}' = '' THEN
        RAISE EXCEPTION 'event names no subject'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('%sField "data.%s" must be a non-empty string or a number: topic %L encrypts personal fields per subject.',
                                  CASE WHEN batch_index > 0 THEN format('Event %s of the batch: ', batch_index) ELSE '' END,
                                  pr.subject_path, topic);
    END IF;
    FOREACH p IN ARRAY pr.paths LOOP
        path := string_to_array(p, '.');
        v := data #> path;
        CONTINUE WHEN v IS NULL OR v = 'null'::jsonb;
        -- A subject gets a key with its first personal value, not before.
        IF NOT keyed THEN
            SELECT * INTO k FROM eventstore.subject_key(subject #>> '{}');
            keyed := true;
        END IF;
        data := jsonb_set(data, path, jsonb_build_object(
            'protected', translate(encode(eventstore.crypt_field(true, k.key, event_id, p, convert_to(v::text, 'UTF8')),
                                          'base64'), E'\n', ''),
            'key', k.key_id));
    END LOOP;
    RETURN data;
END
$$;

-- unprotect() (C) passes its caller: members of eventstore_decrypt get the
-- plain values; fields whose key is gone read as null, listed in
-- metadata.shredded, whoever asks.
CREATE FUNCTION unprotect_as(e event, caller oid) RETURNS event
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pr       eventstore.protections;
    data     jsonb;
    decrypt  boolean;
    k        record;
    p        text;
    path     text[];
    v        jsonb;
    shredded text[] := '{}';
BEGIN
    IF e.topic IS NULL OR e.envelope IS NULL THEN
        RETURN e;
    END IF;
    PERFORM eventstore.check_topics_readable(caller, ARRAY[e.topic], 'calling unprotect');
    SELECT * INTO pr FROM eventstore.protections r WHERE r.topic = e.topic;
    IF NOT FOUND THEN
        RETURN e;
    END IF;
    decrypt := pg_has_role(caller, 'eventstore_decrypt', 'USAGE');
    data := e.envelope->'data';
    SELECT s.key, s.key_id INTO k FROM eventstore.subject_keys s
     WHERE s.subject = data #>> string_to_array(pr.subject_path, '.');
    FOREACH p IN ARRAY pr.paths LOOP
        path := string_to_array(p, '.');
        v := data #> path;
        CONTINUE WHEN v IS NULL OR jsonb_typeof(v) <> 'object' OR jsonb_typeof(v->'protected') <> 'string'
                   OR jsonb_typeof(v->'key') <> 'number';
        IF k.key IS NULL OR k.key_id <> (v->>'key')::numeric THEN
            data := jsonb_set(data, path, 'null'::jsonb);
            shredded := shredded || p;
        ELSIF decrypt THEN
            data := jsonb_set(data, path, convert_from(
                eventstore.crypt_field(false, k.key, e.id, p, decode(v->>'protected', 'base64')), 'UTF8')::jsonb);
        END IF;
    END LOOP;
    e.envelope := jsonb_set(e.envelope, '{data}', data);
    IF cardinality(shredded) > 0 THEN
        e.envelope := jsonb_set(e.envelope, '{metadata,shredded}', to_jsonb(shredded));
    END IF;
    RETURN e;
END
$$;

CREATE FUNCTION unprotect(e event) RETURNS event
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'eventstore_unprotect';
COMMENT ON FUNCTION unprotect(event) IS
    'the event with its protected fields decrypted for members of eventstore_decrypt; fields whose subject was forgotten read as null (metadata.shredded)';

CREATE FUNCTION forget_subject(subject text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF subject IS NULL THEN
        RAISE EXCEPTION 'subject must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'Argument "subject" is NULL.';
    END IF;
    DELETE FROM eventstore.subject_keys s WHERE s.subject = forget_subject.subject;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION forget_subject(text) IS
    'destroy the key of a subject: its protected fields in every topic become unreadable; returns whether it had one';

------------------------------------------------------------------------------
-- The analysis archive: a publication for logical replication
------------------------------------------------------------------------------

-- The row filter of the publication eventstore_archive: every topic
-- except those whose events must not outlive them here (a retention) or
-- carry personal fields (protect_fields).
CREATE FUNCTION archive_row_filter() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('NOT (topic = ANY (%L::text[]))',
                  coalesce(array_agg(t.name::text ORDER BY t.name), '{}'))
      FROM eventstore.topics t
     WHERE t.retention IS NOT NULL
        OR EXISTS (SELECT FROM eventstore.protections p WHERE p.topic = t.name)
$$;

-- Brings the publication's row filter up to date, when it exists.
CREATE FUNCTION refresh_archive() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM pg_publication WHERE pubname = 'eventstore_archive') THEN
        EXECUTE format('ALTER PUBLICATION eventstore_archive SET TABLE eventstore.events WHERE (%s)',
                       eventstore.archive_row_filter());
    END IF;
END
$$;

CREATE FUNCTION publish_archive() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'eventstore_archive') THEN
        EXECUTE format('CREATE PUBLICATION eventstore_archive FOR TABLE eventstore.events WHERE (%s)'
                       ' WITH (publish = ''insert'')',
                       eventstore.archive_row_filter());
    ELSE
        PERFORM eventstore.refresh_archive();
    END IF;
END
$$;
COMMENT ON FUNCTION publish_archive() IS
    'create (or bring up to date) the publication eventstore_archive: inserts of events of every topic without retention';

CREATE VIEW consumer_status AS
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
       c.skipped
  FROM consumers c, LATERAL undelivered(c.name) u;
COMMENT ON VIEW consumer_status IS 'every consumer: how far it got, its lag, failures and parked events';

------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC; each role gets exactly its functions.
------------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA eventstore FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA eventstore FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA eventstore FROM PUBLIC;
REVOKE ALL ON TYPE event, delivery FROM PUBLIC;
REVOKE ALL ON SCHEMA eventstore FROM PUBLIC;

GRANT USAGE ON SCHEMA eventstore
    TO eventstore_writer, eventstore_reader, eventstore_admin;
GRANT USAGE ON TYPE event TO eventstore_writer, eventstore_reader, eventstore_admin;
GRANT EXECUTE ON FUNCTION validate(jsonb), is_valid(jsonb)
    TO eventstore_writer, eventstore_reader, eventstore_admin;
GRANT EXECUTE ON FUNCTION append(text, jsonb, text, bigint),
                          append_batch(text, jsonb[], text, bigint)
    TO eventstore_writer;
GRANT EXECUTE ON FUNCTION read(text, bigint, integer),
                          read_stream(text, text, bigint, integer),
                          get(uuid)
    TO eventstore_reader;
GRANT EXECUTE ON FUNCTION create_topic(text, text, interval),
                          set_retention(text, interval), purge_expired(), publish_archive(),
                          erase_stream(text, text),
                          grant_topic(text, text, regrole), revoke_topic(text, text, regrole)
    TO eventstore_admin;
GRANT SELECT ON topics TO eventstore_reader, eventstore_writer, eventstore_admin;

GRANT USAGE ON TYPE delivery TO eventstore_reader, eventstore_admin;
GRANT EXECUTE ON FUNCTION poll(text, integer), ack(text, bigint), nack(text, bigint, text),
                          upcast(event)
    TO eventstore_reader;
GRANT EXECUTE ON FUNCTION derived_id(uuid, text)
    TO eventstore_writer, eventstore_reader, eventstore_admin;
GRANT EXECUTE ON FUNCTION create_consumer(text, text[], regprocedure, integer, integer, regrole),
                          drop_consumer(text), reset_consumer(text, bigint),
                          run_consumer(text, integer), replay_parked(text, uuid),
                          create_upcaster(text, integer, integer, regprocedure),
                          set_topic_version(text, text)
    TO eventstore_admin;
GRANT EXECUTE ON FUNCTION undelivered(text) TO eventstore_reader, eventstore_admin;
GRANT EXECUTE ON FUNCTION unprotect(event) TO eventstore_reader;
GRANT EXECUTE ON FUNCTION protect_fields(text, text, text[]), forget_subject(text)
    TO eventstore_admin;
GRANT SELECT ON protections TO eventstore_reader, eventstore_writer, eventstore_admin;
GRANT SELECT ON consumer_status, parked, upcasters TO eventstore_reader, eventstore_admin;
