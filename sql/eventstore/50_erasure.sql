-- sql/eventstore/50_erasure.sql: erasure of every event of one stream, at
-- once (extension/erase.c), for the personal data of one person, and
-- the removal of a stream's older events (truncate_stream, max_count).

-- The version (and closing) an erased stream had reached, so that a stream
-- appended to again after erase_stream goes on from there and read models
-- keyed on stream and version never meet a version twice.  The name is
-- not kept: only a digest of it under a key of this installation
-- (stream_name_key), which cannot be turned back into the name without the
-- key, and which no role may read.
CREATE TABLE erased_streams (
    topic     text COLLATE "C" NOT NULL,
    digest    bytea NOT NULL,
    version   bigint NOT NULL,
    closed_at timestamptz,
    PRIMARY KEY (topic, digest)
);
COMMENT ON TABLE erased_streams IS 'the versions erased streams reached, by a keyed digest of their name';

-- One key, made by the first erasure (so that a restored dump brings its
-- own): 32 bytes from the server's strong random source.
CREATE TABLE stream_name_key (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    key      bytea NOT NULL CHECK (pg_catalog.length(key) = 32)
);
COMMENT ON TABLE stream_name_key IS 'the key of the digests in erased_streams; readable by no role';
SELECT pg_catalog.pg_extension_config_dump('erased_streams', '');
SELECT pg_catalog.pg_extension_config_dump('stream_name_key', '');

-- The digest of a stream's name, NULL while nothing has been erased.
CREATE FUNCTION stream_digest(stream text) RETURNS bytea
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sha256(k.key || convert_to(stream, 'UTF8')) FROM eventstore.stream_name_key k
$$;

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

-- Removes the events of a stream below before_version, and their
-- snapshots, counting for each consumer those it had not received yet
-- (consumers.skipped); returns how many.  The callers hold the stream's
-- lock or row (or have deleted it): erase_stream_as, truncate_stream_as,
-- set_stream_max_count_as and purge_batch.
CREATE FUNCTION remove_stream_events(topic text, stream text, before_version bigint)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed bigint;
BEGIN
    DELETE FROM eventstore.snapshots s
     WHERE s.topic = remove_stream_events.topic AND s.stream = remove_stream_events.stream
       AND s.version < before_version;
    PERFORM eventstore.wait_for_batches(topic);
    WITH gone AS (
        DELETE FROM eventstore.events e
         WHERE e.topic = remove_stream_events.topic AND e.stream = remove_stream_events.stream
           AND e.stream_version < before_version
        RETURNING e.position, e.xid, e.type, e.id, e.stream
    ), missed AS (
        UPDATE eventstore.consumers c
           SET skipped = c.skipped + (SELECT count(*) FROM gone g
                                       WHERE eventstore.is_undelivered(c, g.stream, g.id, g.position, g.xid)
                                         AND (c.types IS NULL OR g.type = ANY (c.types)))
         WHERE remove_stream_events.topic = ANY (c.topics)
    )
    SELECT count(*) INTO removed FROM gone;
    RETURN removed;
END
$$;

CREATE FUNCTION erase_stream_as(topic text, stream text, caller oid) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    head record;
BEGIN
    PERFORM eventstore.check_erase_allowed(topic, caller);
    -- The stream's lock first: appends to the stream wait until this
    -- commits.  What it had reached is kept under the digest of its name.
    PERFORM eventstore.lock_stream(topic, stream);
    DELETE FROM eventstore.stream_heads h WHERE h.topic = erase_stream_as.topic AND h.stream = erase_stream_as.stream
    RETURNING eventstore.head_version(h.topic, h.stream, h.version_floor) AS version, h.closed_at INTO head;
    IF FOUND THEN
        INSERT INTO eventstore.stream_name_key (key)
        VALUES (uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()))
        ON CONFLICT DO NOTHING;
        INSERT INTO eventstore.erased_streams (topic, digest, version, closed_at)
        VALUES (topic, eventstore.stream_digest(stream), head.version, head.closed_at)
        ON CONFLICT ON CONSTRAINT erased_streams_pkey
        DO UPDATE SET version = excluded.version, closed_at = excluded.closed_at;
    END IF;
    RETURN eventstore.remove_stream_events(topic, stream, 9223372036854775807);
END
$$;

CREATE FUNCTION erase_stream(topic text, stream text) RETURNS bigint
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_erase_stream';
COMMENT ON FUNCTION erase_stream(text, text) IS
    'remove every event of a stream now (for erasure of personal data), its name with them; returns how many';

-- Removes the stream's events below before_version, and their snapshots;
-- the stream keeps its version, so the next event goes on from it.  The
-- stream's lock is taken first, as appends take it: they wait for this.
CREATE FUNCTION truncate_stream_as(topic text, stream text, before_version bigint, caller oid)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current bigint;
BEGIN
    PERFORM eventstore.check_erase_allowed(topic, caller);
    IF before_version IS NULL THEN
        RAISE EXCEPTION 'before_version must not be null'
            USING ERRCODE = 'null_value_not_allowed', DETAIL = 'Argument "before_version" is NULL.';
    END IF;
    PERFORM eventstore.lock_stream(topic, stream);
    SELECT eventstore.head_version(h.topic, h.stream, h.version_floor) INTO current
      FROM eventstore.stream_heads h
     WHERE h.topic = truncate_stream_as.topic AND h.stream = truncate_stream_as.stream
       FOR UPDATE;
    IF before_version < 1 OR before_version > coalesce(current, 0) + 1 THEN
        RAISE EXCEPTION 'invalid truncation version'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "before_version" is %s; stream "%s" is at version %s, so it must be between 1 and %s.',
                                  before_version, stream, coalesce(current, 0), coalesce(current, 0) + 1);
    END IF;
    IF before_version > current THEN
        -- its newest events go: the floor keeps the version
        UPDATE eventstore.stream_heads h SET version_floor = current
         WHERE h.topic = truncate_stream_as.topic AND h.stream = truncate_stream_as.stream;
    END IF;
    RETURN eventstore.remove_stream_events(topic, stream, before_version);
END
$$;

CREATE FUNCTION truncate_stream(topic text, stream text, before_version bigint) RETURNS bigint
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_truncate_stream';
COMMENT ON FUNCTION truncate_stream(text, text, bigint) IS
    'remove the events of a stream below a version now; the stream goes on from its version; returns how many';

-- Keeps the newest max_count events of the stream (NULL: all of them from
-- now on): removes the older ones now, and the retention task removes
-- those that later appends push out (purge_batch).  A stream that has no
-- events yet can be given its limit.
CREATE FUNCTION set_stream_max_count_as(topic text, stream text, max_count bigint, caller oid)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current bigint;
BEGIN
    PERFORM eventstore.check_erase_allowed(topic, caller);
    PERFORM eventstore.lock_stream(topic, stream);
    IF max_count < 1 THEN
        RAISE EXCEPTION 'invalid stream max_count'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Argument "max_count" is %s; it must be at least 1, or NULL for no limit.', max_count);
    END IF;
    INSERT INTO eventstore.stream_heads AS h (topic, stream, version_floor, max_count)
    VALUES (topic, stream, 0, max_count)
    ON CONFLICT ON CONSTRAINT stream_heads_pkey
    DO UPDATE SET max_count = excluded.max_count
    RETURNING eventstore.head_version(h.topic, h.stream, h.version_floor) INTO current;
    IF max_count IS NULL OR current - max_count < 1 THEN
        RETURN 0;
    END IF;
    RETURN eventstore.remove_stream_events(topic, stream, current - max_count + 1);
END
$$;

CREATE FUNCTION set_stream_max_count(topic text, stream text, max_count bigint) RETURNS bigint
    LANGUAGE c AS 'MODULE_PATHNAME', 'eventstore_set_stream_max_count';
COMMENT ON FUNCTION set_stream_max_count(text, text, bigint) IS
    'keep the newest max_count events of a stream (NULL: no limit); removes the older ones now and as appends push them out; returns how many it removed now';
