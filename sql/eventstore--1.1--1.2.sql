-- eventstore 1.1 -> 1.2: what 1.2 changes in the SQL objects against 1.1.
--
-- A fresh CREATE EXTENSION eventstore runs eventstore--1.2.sql, which make
-- builds from the current source, sql/eventstore/*.sql; an installation of
-- 1.1 runs this script instead, and test/shell/upgrade.sh checks that both
-- end up the same, object for object.  Once 1.2 is released this script is
-- never edited again: later changes go into eventstore--1.2--<next>.sql.

\echo Use "ALTER EXTENSION eventstore UPDATE TO '1.2'" to load this file. \quit

------------------------------------------------------------------------------
-- Statistics: cumulative counters per database and topic in shared memory
-- (extension/stats.c), shown by the views stats and stats_refused.
------------------------------------------------------------------------------

CREATE FUNCTION stats_counters(OUT database oid, OUT topic text, OUT counter text,
                               OUT value bigint, OUT stats_reset timestamptz)
RETURNS SETOF record
LANGUAGE c STRICT VOLATILE
AS 'MODULE_PATHNAME', 'eventstore_stats_counters';
COMMENT ON FUNCTION stats_counters() IS
    'every counter of eventstore.stats, a row each, refusals as refused:<SQLSTATE class>';

CREATE VIEW stats AS
SELECT d.datname AS database,
       s.topic,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'appended'), 0)::bigint AS appended,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'duplicates'), 0)::bigint AS duplicates,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'batches'), 0)::bigint AS batches,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter LIKE 'refused:%'), 0)::bigint AS refused,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'notifications'), 0)::bigint AS notifications,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'dispatcher_rounds'), 0)::bigint AS dispatcher_rounds,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'handler_calls'), 0)::bigint AS handler_calls,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'handler_failures'), 0)::bigint AS handler_failures,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'parked'), 0)::bigint AS parked,
       coalesce(pg_catalog.sum(s.value) FILTER (WHERE s.counter = 'purged'), 0)::bigint AS purged,
       pg_catalog.max(s.stats_reset) AS stats_reset
  FROM stats_counters() s
  JOIN pg_catalog.pg_database d ON d.oid = s.database
 GROUP BY d.datname, s.topic;
COMMENT ON VIEW stats IS
    'what the store did per database and topic (topic NULL: without a topic) since the server started or stats_reset()';

CREATE VIEW stats_refused AS
SELECT d.datname AS database,
       s.topic,
       pg_catalog.substr(s.counter, 9) AS sqlstate_class,
       s.value AS refused
  FROM stats_counters() s
  JOIN pg_catalog.pg_database d ON d.oid = s.database
 WHERE s.counter LIKE 'refused:%';
COMMENT ON VIEW stats_refused IS
    'refused appends per database, topic and SQLSTATE class (other: a class not listed)';

CREATE FUNCTION stats_reset() RETURNS void
LANGUAGE c STRICT VOLATILE
AS 'MODULE_PATHNAME', 'eventstore_stats_reset';
COMMENT ON FUNCTION stats_reset() IS
    'set the counters of eventstore.stats of this database to zero';

-- purge_batch's report of what it removed; granted to nobody.
CREATE FUNCTION stats_count_purged(topic text, n bigint) RETURNS void
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'eventstore_stats_count_purged';

REVOKE ALL ON FUNCTION stats_counters(), stats_reset(), stats_count_purged(text, bigint) FROM PUBLIC;
REVOKE ALL ON stats, stats_refused FROM PUBLIC;
GRANT USAGE ON SCHEMA eventstore TO pg_monitor;
GRANT SELECT ON stats, stats_refused TO eventstore_reader, eventstore_admin, pg_monitor;
GRANT EXECUTE ON FUNCTION stats_counters() TO eventstore_reader, eventstore_admin, pg_monitor;
GRANT EXECUTE ON FUNCTION stats_reset() TO eventstore_admin;

------------------------------------------------------------------------------
-- Retention reports what it removed to the statistics (purged).
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION purge_batch(max integer) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t       record;
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
            RETURNING e.position, e.xid
        ), missed AS (
            UPDATE eventstore.consumers c
               SET skipped = c.skipped + (SELECT count(*) FROM gone g
                                           WHERE eventstore.is_undelivered(c, g.position, g.xid))
             WHERE t.name = ANY (c.topics)
        )
        SELECT count(*) INTO n FROM gone;
        PERFORM eventstore.stats_count_purged(t.name, n);
        removed := removed + n;
    END LOOP;
    RETURN removed;
END
$$;
