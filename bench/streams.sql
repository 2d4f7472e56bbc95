-- bench/streams.sql: the store of bench/run-streams.  Streams of the topic
-- 'account', each of stream_length events, inserted straight into
-- eventstore.events and eventstore.stream_heads (as the superuser; the
-- columns eventstore.append writes for the template event of
-- bench/setup.sql), stream after stream in position order as if each
-- stream's events had been appended together, and a snapshot of every
-- stream at version snapshot_at.

SELECT eventstore.create_topic('account');

-- Streams first_stream .. first_stream + streams - 1 ('s<number>'), one
-- transaction per chunk of streams.
CREATE PROCEDURE bench_streams_load(first_stream integer, streams integer, stream_length integer,
                                    snapshot_at integer, chunk integer DEFAULT 2000)
LANGUAGE plpgsql AS $$
DECLARE
    s integer := first_stream;
    n integer;
BEGIN
    WHILE s < first_stream + streams LOOP
        n := least(chunk, first_stream + streams - s);
        INSERT INTO eventstore.events (id, topic, type, version_major, version_minor,
                                       data, metadata, stream, stream_version, xid)
        SELECT gen_random_uuid(), 'account', 'new', 1, 0,
               bench_envelope()->'data', bench_envelope()->'metadata',
               's' || k, v, pg_current_xact_id()
          FROM generate_series(s, s + n - 1) k, generate_series(1, stream_length) v
         ORDER BY k, v;
        INSERT INTO eventstore.stream_heads (topic, stream, version_floor)
        SELECT 'account', 's' || k, 0 FROM generate_series(s, s + n - 1) k;
        INSERT INTO eventstore.snapshots (topic, stream, version, state)
        SELECT 'account', 's' || k, snapshot_at, jsonb_build_object('balance', k)
          FROM generate_series(s, s + n - 1) k;
        s := s + n;
        COMMIT;
    END LOOP;
END
$$;

-- read() of this release without the read horizon, the baseline of the
-- "read" script: declared as read() is, the same query without
-- safe_position() and its bound.
CREATE FUNCTION bench_read_without_horizon(topic text, after bigint, max integer)
RETURNS SETOF eventstore.event
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM eventstore.check_read_args(topic, max);
    RETURN QUERY
        SELECT s.position, s.id, s.topic, s.stream, s.stream_version, s.envelope, s.recorded_at
          FROM eventstore.stored_events s
         WHERE s.topic = bench_read_without_horizon.topic
           AND s.position > coalesce(after, 0)
         ORDER BY s.position
         LIMIT max;
END
$$;
