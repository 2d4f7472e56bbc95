-- sql/eventstore/70_stats.sql: the store's cumulative counters, kept in
-- shared memory by extension/stats.c, per database and topic.

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
