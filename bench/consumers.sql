-- bench/consumers.sql: topics, handlers and helpers of the consumer cases.
-- Run by bench/run in every database the consumer cases use, after
-- bench/setup.sql (bench_envelope()).
--
-- Latency: the pgbench script bench/latency_append.sql appends one event per
-- transaction to topic 'latency'; the in-database consumer bench_latency
-- (handler bench_latency_handler) records when it saw each event, and the
-- latency of an event is that time minus its transaction's commit timestamp
-- (track_commit_timestamp = on).
--
-- Throughput: events preloaded into topic 'src'; the handler
-- bench_derive_handler appends one derived event per event to topic
-- 'derived'.  The baselines do the same work in a plain plpgsql loop.

SELECT eventstore.create_topic('latency'), eventstore.create_topic('src'), eventstore.create_topic('mixed'),
       eventstore.create_topic('derived'), eventstore.create_topic('wake');

------------------------------------------------------------------------------
-- Latency
------------------------------------------------------------------------------

CREATE TABLE latency_seen (
    position   bigint NOT NULL,
    handled_at timestamptz NOT NULL
);

CREATE FUNCTION bench_latency_handler(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO latency_seen (position, handled_at) VALUES (e.position, clock_timestamp());
END
$$;

-- Waits until consumer has handled n events or timeout passed; returns the
-- number handled.
CREATE FUNCTION bench_wait_handled(consumer text, n bigint, timeout interval)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
    done     bigint;
BEGIN
    LOOP
        SELECT c.handled INTO done FROM eventstore.consumers c WHERE c.name = consumer;
        EXIT WHEN done >= n OR clock_timestamp() > deadline;
        PERFORM pg_sleep(0.005);
    END LOOP;
    RETURN done;
END
$$;

-- Commit-to-handler latency of every event of topic 'latency', in ms.
CREATE VIEW latency_ms AS
SELECT e.position, c.committed_at, s.handled_at,
       1000 * extract(epoch FROM s.handled_at - c.committed_at) AS ms
  FROM eventstore.events e
  JOIN latency_seen s USING (position),
       LATERAL (SELECT pg_xact_commit_timestamp(e.xid::xid) AS committed_at) c
 WHERE e.topic = 'latency';

-- p50/p99 of the latency per 5 seconds of the run (by commit time), to
-- show whether it drifts as the run goes on.
CREATE VIEW latency_drift AS
SELECT string_agg(p50 || '/' || p99, ', ' ORDER BY slice) AS p50_p99
  FROM (SELECT slice,
               round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS p50,
               round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS p99
          FROM (SELECT floor(extract(epoch FROM committed_at - min(committed_at) OVER ()) / 5) AS slice, ms
                  FROM latency_ms) l
         GROUP BY slice) s;

------------------------------------------------------------------------------
-- Throughput
------------------------------------------------------------------------------

-- The source events: n tick events with fresh ids, appended in batches of
-- 1000, one transaction each.
CREATE PROCEDURE bench_preload(n integer)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 0 .. (n - 1) / 1000 LOOP
        PERFORM count(*)
           FROM eventstore.append_batch('src',
                  ARRAY(SELECT jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text))
                          FROM generate_series(1, least(1000, n - i * 1000))));
        COMMIT;
    END LOOP;
END
$$;

-- The consumer's handler: one derived event (a score of the ticked image)
-- per event, its id derived from the source event's, so that a redelivery
-- appends nothing twice.
CREATE FUNCTION bench_derive_handler(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM eventstore.append('derived', jsonb_build_object(
        'id', eventstore.derived_id(e.id, 'bench'),
        'type', 'update',
        'version', '1.0',
        'data', jsonb_build_object('image', e.envelope #> '{data,image}',
                                   'score', 1 + e.position % 5),
        'metadata', jsonb_build_object('source', 'services/ScoreModel',
                                       'time', e.envelope #> '{metadata,time}')));
END
$$;

-- Creates consumer bench_derive and wakes the dispatcher (an append to
-- another topic, committed with it: creating a consumer alone does not set
-- the workers' latches, they would find it at their next poll_interval).
CREATE PROCEDURE bench_create_derive(batch_size integer)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM eventstore.create_consumer('bench_derive', ARRAY['src'],
                                       'bench_derive_handler(eventstore.event)'::regprocedure,
                                       batch_size);
    PERFORM eventstore.append('wake',
                              jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text)));
END
$$;

-- run_consumer in a loop from one session, a transaction per call, until it
-- has nothing left.  Returns the events taken.
CREATE PROCEDURE bench_run_consumer_loop(consumer text, max_events integer, INOUT total bigint DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    total := 0;
    LOOP
        n := eventstore.run_consumer(consumer, max_events);
        COMMIT;
        EXIT WHEN n = 0;
        total := total + n;
    END LOOP;
END
$$;

-- Baseline 1: the handler's eventstore.append, inline, in a plpgsql loop
-- over the source events in position order (read through
-- eventstore.stored_events, which rebuilds the envelope like the consumer's
-- window does), committing every page of page_size events.
CREATE PROCEDURE bench_baseline_append(page_size integer, INOUT total bigint DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
    e     record;
    after bigint := 0;
    n     integer;
BEGIN
    total := 0;
    LOOP
        n := 0;
        FOR e IN SELECT s.position, s.id, s.envelope FROM eventstore.stored_events s
                  WHERE s.topic = 'src' AND s.position > after
                  ORDER BY s.position LIMIT page_size
        LOOP
            PERFORM eventstore.append('derived', jsonb_build_object(
                'id', eventstore.derived_id(e.id, 'bench'),
                'type', 'update',
                'version', '1.0',
                'data', jsonb_build_object('image', e.envelope #> '{data,image}',
                                           'score', 1 + e.position % 5),
                'metadata', jsonb_build_object('source', 'services/ScoreModel',
                                               'time', e.envelope #> '{metadata,time}')));
            after := e.position;
            n := n + 1;
        END LOOP;
        COMMIT;
        EXIT WHEN n = 0;
        total := total + n;
    END LOOP;
END
$$;

-- Baseline 2: the same loop, each derived event an idempotent INSERT into a
-- plain table shaped like eventstore.events (same columns, defaults and
-- indexes), without validation or a function call.
CREATE TABLE baseline_derived (LIKE eventstore.events INCLUDING ALL);

CREATE PROCEDURE bench_baseline_insert(page_size integer, INOUT total bigint DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
    e     record;
    after bigint := 0;
    n     integer;
BEGIN
    total := 0;
    LOOP
        n := 0;
        FOR e IN SELECT s.position, s.id, s.envelope FROM eventstore.stored_events s
                  WHERE s.topic = 'src' AND s.position > after
                  ORDER BY s.position LIMIT page_size
        LOOP
            INSERT INTO baseline_derived (id, topic, type, version_major, version_minor,
                                          data, metadata, xid)
            VALUES (eventstore.derived_id(e.id, 'bench'), 'derived', 'update', 1, 0,
                    jsonb_build_object('image', e.envelope #> '{data,image}',
                                       'score', 1 + e.position % 5),
                    jsonb_build_object('source', 'services/ScoreModel',
                                       'time', e.envelope #> '{metadata,time}'),
                    pg_current_xact_id())
            ON CONFLICT (id) DO NOTHING;
            after := e.position;
            n := n + 1;
        END LOOP;
        COMMIT;
        EXIT WHEN n = 0;
        total := total + n;
    END LOOP;
END
$$;

------------------------------------------------------------------------------
-- Type filters
------------------------------------------------------------------------------

-- n events of topic 'mixed', their types t0 .. t9 in turn, appended in
-- batches of 1000, one transaction each.
CREATE PROCEDURE bench_preload_types(n integer)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 0 .. (n - 1) / 1000 LOOP
        PERFORM count(*)
           FROM eventstore.append_batch('mixed',
                  ARRAY(SELECT jsonb_set(jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text)),
                                         '{type}', to_jsonb('t' || (k % 10)))
                          FROM generate_series(i * 1000, least(i * 1000 + 999, n - 1)) k));
        COMMIT;
    END LOOP;
END
$$;
