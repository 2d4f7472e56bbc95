-- sql/eventstore/45_retention.sql: events of a topic with a retention are
-- removed once older (by the dispatcher, extension/retention.c, or
-- purge_expired()); consumers count those they had not received yet.

/*
 * Removes at most max expired events (recorded more than their topic's
 * retention ago), oldest first, topic after topic, and counts for every
 * consumer of their topic those it had not received yet
 * (consumers.skipped); snapshots of removed events go with them.  Then
 * the events that appends pushed out of streams with a max_count, a
 * stream's all at once.  Returns how many it removed: fewer than max means
 * nothing is left to remove.  The dispatcher worker calls it batch after
 * batch, a transaction each, so that no transaction holds many row locks
 * or a long snapshot; appends are not blocked (a DELETE takes no lock that
 * an INSERT waits for), except those to a stream whose excess is being
 * removed, which wait for that transaction.
 */
CREATE FUNCTION purge_batch(max integer) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t       record;
    h       record;
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
        PERFORM eventstore.wait_for_batches(t.name);
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
            RETURNING e.position, e.xid, e.type, e.id, e.stream, e.stream_version
        ), snapshots_gone AS (
            -- A snapshot goes with the event of its version.
            DELETE FROM eventstore.snapshots s
             USING gone g
             WHERE s.topic = t.name AND s.stream = g.stream AND s.version = g.stream_version
        ), missed AS (
            UPDATE eventstore.consumers c
               SET skipped = c.skipped + (SELECT count(*) FROM gone g
                                           WHERE eventstore.is_undelivered(c, g.stream, g.id, g.position, g.xid)
                                             AND (c.types IS NULL OR g.type = ANY (c.types)))
             WHERE t.name = ANY (c.topics)
        )
        SELECT count(*) INTO n FROM gone;
        PERFORM eventstore.stats_count_purged(t.name, n);
        removed := removed + n;
    END LOOP;
    -- Streams over their max_count (set_stream_max_count): the events that
    -- appends pushed out, a stream at a time, each stream's row locked as
    -- appends lock it (a stream being appended to waits for the next pass).
    FOR h IN SELECT sh.topic, sh.stream, sh.version - sh.max_count + 1 AS keep_from
               FROM eventstore.stream_heads sh
              WHERE sh.max_count IS NOT NULL
                AND EXISTS (SELECT FROM eventstore.events e
                             WHERE e.topic = sh.topic AND e.stream = sh.stream
                               AND e.stream_version <= sh.version - sh.max_count)
                FOR UPDATE SKIP LOCKED
    LOOP
        EXIT WHEN removed >= max;
        n := eventstore.remove_stream_events(h.topic, h.stream, h.keep_from);
        PERFORM eventstore.stats_count_purged(h.topic, n);
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
