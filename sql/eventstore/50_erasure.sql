-- sql/eventstore/50_erasure.sql: erasure of every event of one stream, at
-- once (extension/erase.c), for the personal data of one person.

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
    DELETE FROM eventstore.stream_heads h WHERE h.topic = erase_stream_as.topic AND h.stream = erase_stream_as.stream;
    DELETE FROM eventstore.snapshots s WHERE s.topic = erase_stream_as.topic AND s.stream = erase_stream_as.stream;
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
