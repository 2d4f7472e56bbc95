-- sql/eventstore/65_status.sql: the status views of consumers and of their
-- members, for monitoring.

-- One row per consumer: its members' progress together (position: the
-- highest any member has delivered; the lag and the events handled summed;
-- the attempts, error and next retry of the member with the most failed
-- attempts; the last run of any).
CREATE VIEW consumer_status AS
SELECT c.name,
       c.topics,
       CASE WHEN c.handler IS NULL THEN 'outside' ELSE 'in-database' END AS kind,
       c.handler,
       p.position,
       u.events AS lag_events,
       coalesce(extract(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) u.oldest), 0)::double precision AS lag_seconds,
       p.handled,
       w.attempts,
       (SELECT pg_catalog.count(*) FROM parked p WHERE p.consumer = c.name) AS parked,
       w.last_error,
       w.retry_at,
       p.last_run,
       p.batch_id,
       p.leased_until,
       c.skipped,
       c.types,
       c.members
  FROM consumers c
  LEFT JOIN LATERAL (SELECT pg_catalog.max(m.position) AS position,
                            pg_catalog.sum(m.handled)::bigint AS handled,
                            pg_catalog.max(m.last_run) AS last_run,
                            pg_catalog.max(m.batch_id) AS batch_id,
                            pg_catalog.max(m.leased_until) AS leased_until
                       FROM members m WHERE m.consumer = c.name) p ON true
  LEFT JOIN LATERAL (SELECT m.attempts, m.last_error, m.retry_at
                       FROM members m WHERE m.consumer = c.name
                      ORDER BY m.attempts DESC, m.last_error IS NULL, m.retry_at DESC NULLS LAST
                      LIMIT 1) w ON true,
  LATERAL undelivered(c.name) u;
COMMENT ON VIEW consumer_status IS 'every consumer: how far it got, its lag, failures and parked events';

-- One row per member, the retiring ones of a change of the member count
-- too.  A member's parked events are those of its stream hashes.
CREATE VIEW consumer_members AS
SELECT m.consumer,
       m.member,
       m.member_count AS members,
       m.generation,
       m.fence_snapshot IS NOT NULL AS retiring,
       m.position,
       s.events AS lag_events,
       coalesce(extract(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) s.oldest), 0)::double precision AS lag_seconds,
       m.handled,
       m.batch_id,
       m.leased_until,
       m.attempts,
       s.parked,
       m.last_error,
       m.retry_at,
       m.last_run
  FROM members m, LATERAL member_status(m.consumer, m.generation, m.member) s;
COMMENT ON VIEW consumer_members IS 'every member of every consumer: how far it got, its lag, lease, failures and parked events';
