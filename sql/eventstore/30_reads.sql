-- sql/eventstore/30_reads.sql: ad hoc reads of stored events: a topic (or
-- all) by position up to the read horizon, a stream by stream version, one
-- event by id, the events of one story by correlation id.

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
COMMENT ON FUNCTION read_stream(text, text, bigint, integer, boolean) IS
    'events of one stream after a stream version in version order, or backward from the newest or from below a version';

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

CREATE FUNCTION get(id uuid) RETURNS event
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.position, s.id, s.topic, s.stream, s.stream_version, s.envelope, s.recorded_at
      FROM eventstore.stored_events s
     WHERE s.id = get.id
$$;
COMMENT ON FUNCTION get(uuid) IS 'one event by id; NULL when there is none';
