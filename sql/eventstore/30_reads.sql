-- sql/eventstore/30_reads.sql: ad hoc reads of stored events: a topic (or
-- all) by position, a stream by stream version, one event by id.

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
