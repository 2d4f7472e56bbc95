-- bench/birdwatch_setup.sql: the birdwatch benchmark's world.  Run once by
-- bench/run-birdwatch in the bench database (where the dispatcher runs the
-- consumers), with psql variables watchers, images and password.
--
-- The extension with its four consumers; two login roles: bench_app (a
-- member of birdwatch_app, pgbench's role: it may call tick and rate and
-- read the two tables below) and bench_mailer (a member of
-- birdwatch_notifier, eventstore-worker's role for the outbox).  Then
-- :watchers watchers registered with an email address, their tokens kept in
-- bench_watchers, and :images images ticked by them (image i by watcher
-- 1 + (i - 1) % watchers), kept in bench_images: the targets of the ratings.

-- The default version, or the one bench/run-birdwatch was asked for.
\if :{?version}
CREATE EXTENSION birdwatch VERSION :'version' CASCADE;
\else
CREATE EXTENSION birdwatch CASCADE;
\endif

CREATE ROLE bench_app LOGIN PASSWORD :'password' IN ROLE birdwatch_app;
CREATE ROLE bench_mailer LOGIN PASSWORD :'password' IN ROLE birdwatch_notifier;

CREATE TABLE bench_watchers (
    n       integer PRIMARY KEY,
    user_id uuid NOT NULL,
    token   text NOT NULL
);
INSERT INTO bench_watchers (n, user_id, token)
SELECT g, r.user_id, r.token
  FROM generate_series(1, :watchers) AS g,
       LATERAL birdwatch.register_user(format('watcher%s@bench.example.org', g),
                                       format('Watcher %s', g)) AS r;

CREATE TABLE bench_images (
    n     integer PRIMARY KEY,
    url   text NOT NULL,
    owner integer NOT NULL REFERENCES bench_watchers
);
INSERT INTO bench_images (n, url, owner)
SELECT g, format('https://birds.example.org/seed/%s.jpg', g), 1 + (g - 1) % :watchers
  FROM generate_series(1, :images) AS g;
SELECT count(birdwatch.tick(w.token, i.url)) AS seed_ticks
  FROM bench_images i JOIN bench_watchers w ON w.n = i.owner;

GRANT SELECT ON bench_watchers, bench_images TO bench_app;
ANALYZE bench_watchers, bench_images;

-- What the lag sampler records, every 200 ms: every birdwatch consumer's
-- lag_events and lag_seconds (in ms) from eventstore.consumer_status:
-- lag_seconds is now() minus the recorded_at of the oldest event of the
-- consumer's topics not delivered to it yet, and recorded_at is the
-- appending transaction's start (now()).  Called as its own statement,
-- autocommitted, so that now() is the time of the sample.  And the
-- outbox: rows not sent yet, and the age of the oldest (created_at is the
-- start of the notifier's transaction that wrote it).
CREATE FUNCTION bench_bw_lag(OUT name text, OUT lag_events bigint, OUT lag_ms double precision)
RETURNS SETOF record
LANGUAGE sql STABLE AS $$
    SELECT c.name, c.lag_events, 1000 * c.lag_seconds
      FROM eventstore.consumer_status c
     WHERE c.name LIKE 'birdwatch\_%'
    UNION ALL
    SELECT 'outbox', count(*), coalesce(1000 * extract(epoch FROM now() - min(o.created_at)), 0)
      FROM birdwatch.outbox o
     WHERE o.sent_at IS NULL
$$;

-- The samples, loaded from the sampler's output after each phase.
CREATE TABLE bench_bw_samples (
    phase      text NOT NULL,
    i          integer NOT NULL,
    at         double precision NOT NULL,      -- epoch seconds
    name       text NOT NULL,
    lag_events bigint NOT NULL,
    lag_ms     double precision NOT NULL
);

-- Marks: the state at the start and end of each phase.
CREATE TABLE bench_bw_marks (
    label      text PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    handled    jsonb NOT NULL,       -- consumer name -> handled
    unsent     bigint NOT NULL,      -- outbox rows not sent
    leased     bigint NOT NULL,      -- of which claimed (leased), not reported yet
    -- updates of eventstore.members rows so far (statistics, flushed by
    -- the dispatcher at most once a second): a batch that handled events
    -- writes its member's row two or three times (open_window, the
    -- outcome, close_window); a round that finds nothing new for a
    -- member once or not at all
    consumer_updates bigint NOT NULL
);

CREATE PROCEDURE bench_bw_mark(label text)
LANGUAGE sql AS $$
    INSERT INTO bench_bw_marks (label, handled, unsent, leased, consumer_updates)
    SELECT label,
           (SELECT jsonb_object_agg(c.name, c.handled) FROM eventstore.consumer_status c
             WHERE c.name LIKE 'birdwatch\_%'),
           count(*),
           count(*) FILTER (WHERE o.leased_until > now()),
           (SELECT t.n_tup_upd FROM pg_stat_user_tables t
             WHERE t.relid = 'eventstore.members'::regclass)
      FROM birdwatch.outbox o
     WHERE o.sent_at IS NULL
$$;

-- Lag percentiles of a phase: one row per consumer, one for the outbox, and
-- "all" for the worst consumer at each sample (the outbox left out).
CREATE FUNCTION bench_bw_lag_stats(p text)
RETURNS TABLE (name text, samples bigint, p50 numeric, p99 numeric, max numeric, max_events bigint)
LANGUAGE sql STABLE AS $$
    WITH per_sample AS (
        SELECT s.name, s.i, s.lag_ms, s.lag_events FROM bench_bw_samples s WHERE s.phase = p
        UNION ALL
        SELECT 'all', s.i, max(s.lag_ms), max(s.lag_events)
          FROM bench_bw_samples s WHERE s.phase = p AND s.name <> 'outbox'
         GROUP BY s.i
    )
    SELECT ps.name, count(*),
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ps.lag_ms)::numeric, 1),
           round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ps.lag_ms)::numeric, 1),
           round(max(ps.lag_ms)::numeric, 1),
           max(ps.lag_events)
      FROM per_sample ps
     GROUP BY ps.name
$$;
