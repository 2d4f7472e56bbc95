-- sql/eventstore/50_erasure.sql: erasure of every event of one stream, at
-- once (extension/erase.c), for the personal data of one person, and
-- truncation of a stream's older events.

-- Raises 42704 for a topic that does not exist, and 42501 unless caller
-- may remove events of the topic: an eventstore_admin, or a role granted
-- erase on it.
CREATE FUNCTION check_erase_allowed(topic text, caller oid) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
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
END
$$;

CREATE FUNCTION erase_stream_as(topic text, stream text, caller oid) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed bigint;
BEGIN
    PERFORM eventstore.check_erase_allowed(topic, caller);
    -- The stream's row first: appends to the stream wait until this commits.
    DELETE FROM eventstore.stream_heads h WHERE h.topic = erase_stream_as.topic AND h.stream = erase_stream_as.stream;
    DELETE FROM eventstore.snapshots s WHERE s.topic = erase_stream_as.topic AND s.stream = erase_stream_as.stream;
    WITH gone AS (
        DELETE FROM eventstore.events e
         WHERE e.topic = erase_stream_as.topic AND e.stream = erase_stream_as.stream
        RETURNING e.position, e.xid, e.type
    ), missed AS (
        UPDATE eventstore.consumers c
           SET skipped = c.skipped + (SELECT count(*) FROM gone g
                                       WHERE eventstore.is_undelivered(c, g.position, g.xid)
                                         AND (c.types IS NULL OR g.type = ANY (c.types)))
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

-- Removes the stream's events below before_version, and their snapshots;
-- the stream keeps its version, so the next event goes on from it.  The
-- stream's row is locked first, as appends lock it: they wait for this.
CREATE FUNCTION truncate_stream_as(topic text, stream text, before_version bigint, caller oid)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current bigint;
    removed bigint;
BEGIN
    PERFORM eventstore.check_erase_allowed(topic, caller);
    IF before_version IS NULL THEN
        RAISE EXCEPTION 'before_version must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "before_version" is NULL.';
    END IF;
    SELECT h.version INTO current FROM eventstore.stream_heads h
     WHERE h.topic = truncate_stream_as.topic AND h.stream = truncate_stream_as.stream
       FOR UPDATE;
    IF before_version < 1 OR before_version > coalesce(current, 0) + 1 THEN
        RAISE EXCEPTION 'invalid truncation version'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "before_version" is %s; stream "%s" is at version %s, so it must be between 1 and %s.',
                                  before_version, stream, coalesce(current, 0), coalesce(current, 0) + 1);
    END IF;
    DELETE FROM eventstore.snapshots s
     WHERE s.topic = truncate_stream_as.topic AND s.stream = truncate_stream_as.stream
       AND s.version < before_version;
    WITH gone AS (
        DELETE FROM eventstore.events e
         WHERE e.topic = truncate_stream_as.topic AND e.stream = truncate_stream_as.stream
           AND e.stream_version < before_version
        RETURNING e.position, e.xid, e.type
    ), missed AS (
        UPDATE eventstore.consumers c
           SET skipped = c.skipped + (SELECT count(*) FROM gone g
                                       WHERE eventstore.is_undelivered(c, g.position, g.xid)
                                         AND (c.types IS NULL OR g.type = ANY (c.types)))
         WHERE truncate_stream_as.topic = ANY (c.topics)
    )
    SELECT count(*) INTO removed FROM gone;
    RETURN removed;
END
$$;

CREATE FUNCTION truncate_stream(topic text, stream text, before_version bigint) RETURNS bigint
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_truncate_stream';
COMMENT ON FUNCTION truncate_stream(text, text, bigint) IS
    'remove the events of a stream below a version now; the stream goes on from its version; returns how many';
