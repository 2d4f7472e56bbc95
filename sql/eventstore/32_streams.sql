-- sql/eventstore/32_streams.sql: the state of streams, each read by index
-- in one step whatever the stream's length: a stream's version, its last
-- event, the view eventstore.streams, and closing a stream.

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

CREATE FUNCTION stream_version(topic text, stream text) RETURNS bigint
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
COMMENT ON FUNCTION stream_version(text, text) IS
    'the version of a stream''s last event (or the one it had reached when it was erased), 0 for a stream with none: the expected_version of the next append';

CREATE FUNCTION last_event(topic text, stream text) RETURNS event
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM eventstore.check_stream_args(topic, stream);
    RETURN (SELECT ROW(s.position, s.id, s.topic, s.stream, s.stream_version,
                       s.envelope, s.recorded_at)::eventstore.event
              FROM eventstore.stored_events s
             WHERE s.topic = last_event.topic
               AND s.stream = last_event.stream
             ORDER BY s.stream_version DESC
             LIMIT 1);
END
$$;
COMMENT ON FUNCTION last_event(text, text) IS
    'the newest event of a stream; NULL when it has none';

-- One row per stream of the topics the querying role may read (a member of
-- eventstore_reader, or granted read on the topic): current_user in a view
-- is the role that queries it.  The first and last events are found through
-- events_stream_version, one index probe each (events a max_count has
-- pushed out are left out before the retention task removes them).  The
-- version is head_version()'s, written out: the view's readers may not
-- execute that function, and the newest event is at hand.  A stream whose
-- events all expired has its version and no positions.
CREATE VIEW streams AS
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
COMMENT ON VIEW streams IS
    'every stream of the topics the querying role may read: version, first and last position, state';

-- A tombstone: appends of new events to the stream fail from now on (55000,
-- extension/append.c); its events stay readable and are delivered as
-- before.  The stream's lock is taken first, as appends take it, so an
-- append either committed before the close or sees it.  A stream that has
-- no events yet can be closed too, and closing a closed stream changes
-- nothing.
CREATE FUNCTION close_stream(topic text, stream text) RETURNS void
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
COMMENT ON FUNCTION close_stream(text, text) IS
    'close a stream for good: no event can be appended to it any more; it can still be read';
