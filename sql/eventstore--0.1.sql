/* eventstore--0.1.sql: the event store's tables, types, roles and SQL API. */

\echo Use "CREATE EXTENSION eventstore" to load this file. \quit

-- Roles are cluster-wide: create them only where they do not exist yet, so
-- that the extension can be created in several databases or re-created.
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['eventstore_writer', 'eventstore_reader', 'eventstore_admin']
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
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE topics IS 'topics that events can be appended to, with their current version';

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
-- Privileges: nothing for PUBLIC; each role gets exactly its functions.
------------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA eventstore FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA eventstore FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA eventstore FROM PUBLIC;
REVOKE ALL ON TYPE event FROM PUBLIC;
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
GRANT EXECUTE ON FUNCTION create_topic(text, text, interval) TO eventstore_admin;
GRANT SELECT ON topics TO eventstore_reader, eventstore_writer, eventstore_admin;
