-- sql/eventstore/65_status.sql: the status view of every consumer, for
-- monitoring.

CREATE VIEW consumer_status AS
SELECT c.name,
       c.topics,
       CASE WHEN c.handler IS NULL THEN 'outside' ELSE 'in-database' END AS kind,
       c.handler,
       c.position,
       u.events AS lag_events,
       coalesce(extract(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) u.oldest), 0)::double precision AS lag_seconds,
       c.handled,
       c.attempts,
       (SELECT pg_catalog.count(*) FROM parked p WHERE p.consumer = c.name) AS parked,
       c.last_error,
       c.retry_at,
       c.last_run,
       c.batch_id,
       c.leased_until,
       c.skipped,
       c.types
  FROM consumers c, LATERAL undelivered(c.name) u;
COMMENT ON VIEW consumer_status IS 'every consumer: how far it got, its lag, failures and parked events';
