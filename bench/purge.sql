-- bench/purge.sql: topics, loader and samplers of the purge cases.  Run by
-- bench/run-purge in the bench database, after bench/setup.sql
-- (bench_envelope(), topic 'bench', which pgbench appends to with
-- bench/append.sql while the dispatcher purges).
--
-- Topic 'expiring' keeps its events for a day; topic 'kept' has no
-- retention.  bench_purge_load() inserts their events straight into
-- eventstore.events (as the superuser; the same columns eventstore.append
-- writes for the template event), with recorded_at in the past for the
-- expired ones, so that they expire without waiting.

SELECT eventstore.create_topic('expiring', retention => interval '1 day'),
       eventstore.create_topic('kept');

-- expired events of 'expiring' recorded two days ago, then unexpired ones
-- recorded an hour ago; the events of 'kept' (no retention) are spread
-- evenly among both, half among the old ones and half among the new ones,
-- as another topic's events would be.  Positions follow recorded_at.  One
-- transaction per chunk; returns nothing.
CREATE PROCEDURE bench_purge_load(expired integer, unexpired integer, kept integer,
                                  chunk integer DEFAULT 50000)
LANGUAGE plpgsql AS $$
DECLARE
    ph   record;
    done integer;
    n    integer;
BEGIN
    FOR ph IN SELECT * FROM (VALUES (expired, kept / 2, now() - interval '2 days'),
                                    (unexpired, kept - kept / 2, now() - interval '1 hour'))
                            v(ex, kp, t0)
    LOOP
        done := 0;
        WHILE done < ph.ex + ph.kp LOOP
            n := least(chunk, ph.ex + ph.kp - done);
            INSERT INTO eventstore.events (id, topic, type, version_major, version_minor,
                                           data, metadata, recorded_at, xid)
            SELECT gen_random_uuid(),
                   -- the (k+1)th 'kept' event where the running share of
                   -- 'kept' events reaches k+1
                   CASE WHEN floor((done + i) * ph.kp::numeric / (ph.ex + ph.kp))
                             < floor((done + i + 1) * ph.kp::numeric / (ph.ex + ph.kp))
                        THEN 'kept' ELSE 'expiring' END,
                   'new', 1, 0, bench_envelope()->'data', bench_envelope()->'metadata',
                   ph.t0 + (done + i) * interval '1 ms', pg_current_xact_id()
              FROM generate_series(0, n - 1) i
             ORDER BY i;
            done := done + n;
            COMMIT;
        END LOOP;
    END LOOP;
END
$$;

-- n events appended through the API, append_batch of batch, a transaction
-- each.
CREATE PROCEDURE bench_purge_append(topic text, n integer, batch integer DEFAULT 1000)
LANGUAGE plpgsql AS $$
DECLARE
    done integer := 0;
BEGIN
    WHILE done < n LOOP
        PERFORM count(*) FROM eventstore.append_batch(topic,
            ARRAY(SELECT jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text))
                    FROM generate_series(1, least(batch, n - done))));
        done := done + least(batch, n - done);
        COMMIT;
    END LOOP;
END
$$;

-- purge_batch(10000) until nothing expired is left, a transaction per
-- batch, as the dispatcher worker calls it.
CREATE PROCEDURE bench_purge_loop()
LANGUAGE plpgsql AS $$
BEGIN
    LOOP
        EXIT WHEN eventstore.purge_batch(10000) < 10000;
        COMMIT;
    END LOOP;
END
$$;

-- Sizes of eventstore.events and of each of its indexes at every stage.
CREATE TABLE bench_purge_sizes (
    stage    text NOT NULL,
    relation text NOT NULL,
    bytes    bigint NOT NULL,
    ord      integer NOT NULL
);

CREATE PROCEDURE bench_purge_record_sizes(stage text)
LANGUAGE sql AS $$
    INSERT INTO bench_purge_sizes
    SELECT stage, 'total (pg_total_relation_size)', pg_total_relation_size('eventstore.events'), 0
    UNION ALL
    SELECT stage, 'events (table)', pg_relation_size('eventstore.events'), 1
    UNION ALL
    SELECT stage, c.relname, pg_relation_size(c.oid), 2
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
     WHERE i.indrelid = 'eventstore.events'::regclass;
$$;

-- The sampler: every interval_s, until bench_purge_control.stop, what the
-- appenders (pgbench's backends) are waiting on, which locks anyone waits
-- for, and whether the dispatcher is removing expired events.  A
-- transaction per sample: pg_stat_activity is read once per transaction.
CREATE TABLE bench_purge_control (stop boolean NOT NULL);
INSERT INTO bench_purge_control VALUES (false);

-- Relation extension locks are apart: appends take them among themselves
-- to add pages to the table, with or without a purge.
CREATE TABLE bench_purge_samples (
    run            text NOT NULL,
    t              timestamptz NOT NULL,
    appenders      integer NOT NULL,  -- pgbench's backends
    lock_waiters   integer NOT NULL,  -- of them, waiting on a lock (not extension)
    extend_waiters integer NOT NULL,  -- of them, waiting on a relation extension lock
    ungranted      integer NOT NULL,  -- pg_locks not granted (not extension), anyone's
    purging        boolean NOT NULL   -- dispatcher in a purge batch
);

CREATE TABLE bench_purge_waits (
    run             text NOT NULL,
    t               timestamptz NOT NULL,
    who             text NOT NULL,  -- 'appender' or 'purge' (the dispatcher in a batch)
    wait_event_type text NOT NULL,  -- 'CPU' when running and not waiting
    wait_event      text NOT NULL,
    n               integer NOT NULL
);

CREATE TABLE bench_purge_lock_waits (
    run   text NOT NULL,
    t     timestamptz NOT NULL,
    pid   integer NOT NULL,
    what  text NOT NULL,
    query text
);

CREATE PROCEDURE bench_purge_sample(run text, interval_s float8 DEFAULT 0.05)
LANGUAGE plpgsql AS $$
DECLARE
    ts timestamptz;
BEGIN
    UPDATE bench_purge_control SET stop = false;
    COMMIT;
    LOOP
        ts := clock_timestamp();
        INSERT INTO bench_purge_samples
        SELECT run, ts,
               count(*) FILTER (WHERE a.application_name = 'pgbench'),
               count(*) FILTER (WHERE a.application_name = 'pgbench' AND a.wait_event_type = 'Lock'
                                  AND a.wait_event <> 'extend'),
               count(*) FILTER (WHERE a.application_name = 'pgbench' AND a.wait_event_type = 'Lock'
                                  AND a.wait_event = 'extend'),
               (SELECT count(*) FROM pg_locks l WHERE NOT l.granted AND l.locktype <> 'extend'),
               coalesce(bool_or(a.backend_type = 'eventstore dispatcher' AND a.state = 'active'
                                AND a.query = 'eventstore: removing expired events'), false)
          FROM pg_stat_activity a;
        INSERT INTO bench_purge_waits
        SELECT run, ts,
               CASE WHEN a.application_name = 'pgbench' THEN 'appender' ELSE 'purge' END,
               coalesce(a.wait_event_type, 'CPU'), coalesce(a.wait_event, '-'), count(*)
          FROM pg_stat_activity a
         WHERE a.application_name = 'pgbench'
            OR (a.backend_type = 'eventstore dispatcher' AND a.state = 'active'
                AND a.query = 'eventstore: removing expired events')
         GROUP BY 3, 4, 5;
        INSERT INTO bench_purge_lock_waits
        SELECT run, ts, l.pid,
               l.locktype || ' ' || l.mode || coalesce(' on ' || l.relation::regclass::text, ''),
               a.query
          FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE NOT l.granted;
        COMMIT;
        EXIT WHEN (SELECT stop FROM bench_purge_control);
        PERFORM pg_sleep(interval_s);
    END LOOP;
END
$$;
