-- sql/eventstore/34_snapshots.sql: snapshots of an aggregate's state at a
-- version of its stream, so that loading it reads the newest snapshot and
-- the events after it instead of the whole stream.  A snapshot lives as
-- long as the event of its version: erase_stream and retention remove it
-- with that event, and load_snapshot never returns one whose event is gone.

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
