-- eventstore 1.3 -> 1.4: what 1.4 changes in the SQL objects against 1.3.
--
-- A fresh CREATE EXTENSION eventstore runs eventstore--1.4.sql, which make
-- builds from the current source, sql/eventstore/*.sql; an installation of
-- 1.3 runs this script instead, and test/shell/upgrade.sh checks that both
-- end up the same, object for object.  Once 1.4 is released this script is
-- never edited again: later changes go into eventstore--1.4--<next>.sql.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '1.4'" to load this file. \quit

------------------------------------------------------------------------------
-- A consumer's lag at a cost that does not grow with it: each topic's
-- undelivered events counted in a sample of the first 10,000 after the
-- member's floor, the rest estimated.
------------------------------------------------------------------------------

-- Events of a member's topics (and types) it has not been given yet, and
-- the oldest one's recording time.  A member that has a done snapshot has
-- been given everything at or below its floor, and a new or reset one
-- everything up to its start, so only events after that position are looked
-- at: for each topic, the first sample_size of them by position (through
-- the index on (topic, position)).  When a topic has more, the rest is
-- estimated at the rate the sample found, over the positions after it: the
-- count is exact up to sample_size events per topic and an estimate beyond,
-- so that its cost does not grow with the lag.  Without a floor,
-- everything older than the done snapshot's xmin has been given, so only
-- events from there on are counted, through the BRIN index on xid (as in
-- open_window).  A retiring member is given nothing after its fence.
CREATE OR REPLACE FUNCTION member_undelivered(m members, OUT events bigint, OUT oldest timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp SET enable_seqscan = off
AS $$
DECLARE
    sample_size constant integer := 10000;
    c eventstore.consumers;
    low bigint;
    newest bigint;
BEGIN
    SELECT * INTO c FROM eventstore.consumers WHERE name = m.consumer;
    IF m.done_snapshot IS NULL OR m.done_floor IS NOT NULL THEN
        low := CASE WHEN m.done_snapshot IS NULL THEN m.start_after ELSE m.done_floor END;
        SELECT max(e.position) INTO newest FROM eventstore.events e;
        SELECT sum(CASE WHEN t.scanned < sample_size OR t.last_seen >= newest THEN t.mine
                        ELSE t.mine + round(t.mine::numeric * (newest - t.last_seen) / (t.last_seen - low))
                   END)::bigint,
               min(t.oldest)
          INTO events, oldest
          FROM unnest(c.topics) AS ct(topic),
               LATERAL (SELECT count(*) AS scanned, max(s.position) AS last_seen,
                               count(*) FILTER (WHERE s.mine) AS mine,
                               min(s.recorded_at) FILTER (WHERE s.mine) AS oldest
                          FROM (SELECT e.position, e.recorded_at,
                                       (c.types IS NULL OR e.type = ANY (c.types))
                                       AND (m.member_count = 1
                                            OR eventstore.member_of(e.stream, e.id, m.member_count) = m.member)
                                       AND eventstore.member_is_undelivered(m, e.position, e.xid) AS mine
                                  FROM eventstore.events e
                                 WHERE e.topic = ct.topic AND e.position > low
                                 ORDER BY e.position
                                 LIMIT sample_size) s) t;
    ELSE
        SELECT count(*), min(e.recorded_at) INTO events, oldest
          FROM eventstore.events e
         WHERE e.xid >= pg_snapshot_xmin(m.done_snapshot)
           AND (e.topic || '') = ANY (c.topics)
           AND (c.types IS NULL OR e.type = ANY (c.types))
           AND (m.member_count = 1 OR eventstore.member_of(e.stream, e.id, m.member_count) = m.member)
           AND eventstore.member_is_undelivered(m, e.position, e.xid);
    END IF;
    events := coalesce(events, 0);
END
$$;
