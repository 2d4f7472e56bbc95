-- eventstore 1.4 -> 1.5: what 1.5 changes in the SQL objects against 1.4.
--
-- A fresh CREATE EXTENSION eventstore runs eventstore--1.5.sql, which make
-- builds from the current source, sql/eventstore/*.sql; an installation of
-- 1.4 runs this script instead, and test/shell/upgrade.sh checks that both
-- end up the same, object for object.  Once 1.5 is released this script is
-- never edited again: later changes go into eventstore--1.5--<next>.sql.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '1.5'" to load this file. \quit

------------------------------------------------------------------------------
-- a consumer's lag at a cost that does not grow with the lag
-- (sql/eventstore/40_consumers.sql)
------------------------------------------------------------------------------

-- Events of a member's topics (and types) it has not been given yet, and
-- the oldest one's recording time, at a cost that does not grow with the
-- lag.  Each topic's events are looked at through events_topic_position,
-- in position order, in two parts:
--  * from the member's floor (every event at or below it has been given to
--    it: the start of a new or reset member, else the floor of its done
--    snapshot) to its frontier, the highest position it has delivered or
--    has in its open window: counted exactly.  These are mostly delivered
--    events; the undelivered ones are late commits, whose positions were
--    taken before the delivered ones' and committed after.  This part is
--    as long as what was delivered past the floor, a batch or two.
--  * past the frontier, where nothing has been delivered: the first rows
--    up to a share of lag_budget (split between the topics and members)
--    are counted exactly (by the index alone for a consumer of every type
--    with one member, since all of them are undelivered then); if the topic has more, the rest is estimated as
--    the undelivered events per position over the positions the counted
--    rows span, times the positions from the last one counted to the
--    topic's newest.  If none
--    of the counted rows was undelivered (other types, other members'
--    streams), the rest counts as 1 when one of them is, so that a lag is
--    never 0 while an event is still to come.
-- lag_seconds is the age of the oldest among those counted.  A member without a
-- floor (a done snapshot taken without the preloaded library) counts
-- exactly, through the BRIN index on xid from its snapshot's xmin.  A
-- retiring member is given nothing after its fence.
CREATE OR REPLACE FUNCTION member_undelivered(m members, OUT events bigint, OUT oldest timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp SET enable_seqscan = off
AS $$
DECLARE
    lag_budget CONSTANT integer := 10000;
    c eventstore.consumers;
    floor bigint := CASE WHEN m.done_snapshot IS NULL THEN m.start_after ELSE m.done_floor END;
    frontier bigint;
    share integer;
    t text;
    counted bigint;
    undelivered bigint;
    first_at timestamptz;
    first_counted bigint;
    last_counted bigint;
    newest bigint;
BEGIN
    SELECT * INTO c FROM eventstore.consumers WHERE name = m.consumer;
    IF floor IS NULL THEN
        SELECT count(*), min(e.recorded_at) INTO events, oldest
          FROM eventstore.events e
         WHERE e.xid >= pg_snapshot_xmin(m.done_snapshot)
           AND (e.topic || '') = ANY (c.topics)
           AND (c.types IS NULL OR e.type = ANY (c.types))
           AND (m.member_count = 1 OR eventstore.member_of(e.stream, e.id, m.member_count) = m.member)
           AND eventstore.member_is_undelivered(m, e.position, e.xid);
        RETURN;
    END IF;

    frontier := greatest(floor, m.position, m.window_after);
    share := greatest(lag_budget / (cardinality(c.topics) * m.member_count), 100);
    events := 0;
    FOREACH t IN ARRAY c.topics LOOP
        SELECT count(*), min(e.recorded_at) INTO undelivered, first_at
          FROM eventstore.events e
         WHERE e.topic = t AND e.position > floor AND e.position <= frontier
           AND (c.types IS NULL OR e.type = ANY (c.types))
           AND (m.member_count = 1 OR eventstore.member_of(e.stream, e.id, m.member_count) = m.member)
           AND eventstore.member_is_undelivered(m, e.position, e.xid);
        events := events + undelivered;
        oldest := least(oldest, first_at);

        IF c.types IS NULL AND m.member_count = 1 AND m.fence_snapshot IS NULL THEN
            -- every event past the frontier is undelivered: an index-only count
            SELECT count(*), count(*), min(e.position), max(e.position)
              INTO counted, undelivered, first_counted, last_counted
              FROM (SELECT e.position FROM eventstore.events e
                     WHERE e.topic = t AND e.position > frontier
                     ORDER BY e.position
                     LIMIT share) e;
            SELECT e.recorded_at INTO first_at FROM eventstore.events e WHERE e.position = first_counted;
        ELSE
            SELECT count(*), count(*) FILTER (WHERE u), min(e.recorded_at) FILTER (WHERE u),
                   min(e.position), max(e.position)
              INTO counted, undelivered, first_at, first_counted, last_counted
              FROM (SELECT e.position, e.recorded_at,
                           (c.types IS NULL OR e.type = ANY (c.types))
                           AND (m.member_count = 1
                                OR eventstore.member_of(e.stream, e.id, m.member_count) = m.member)
                           AND eventstore.member_is_undelivered(m, e.position, e.xid) AS u
                      FROM eventstore.events e
                     WHERE e.topic = t AND e.position > frontier
                     ORDER BY e.position
                     LIMIT share) e;
        END IF;
        events := events + undelivered;
        oldest := least(oldest, first_at);
        CONTINUE WHEN counted < share;
        SELECT max(e.position) INTO newest FROM eventstore.events e WHERE e.topic = t;
        CONTINUE WHEN newest = last_counted;
        IF undelivered > 0 THEN
            events := events + round(undelivered::numeric * (newest - last_counted)
                                     / (last_counted - first_counted + 1))::bigint;
        ELSIF EXISTS (SELECT FROM eventstore.events e
                       WHERE e.topic = t AND e.position > last_counted
                         AND (c.types IS NULL OR e.type = ANY (c.types))
                         AND (m.member_count = 1
                              OR eventstore.member_of(e.stream, e.id, m.member_count) = m.member)
                         AND eventstore.member_is_undelivered(m, e.position, e.xid)) THEN
            events := events + 1;
        END IF;
    END LOOP;
END
$$;
