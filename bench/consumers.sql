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
--
-- Members: events spread over many streams in topic 'spread'; a handler
-- that waits 5 ms per event (bench_sleep_handler) and records each call in
-- members_seen, or bench_derive_handler, run by consumers of 1 or more
-- members.

SELECT eventstore.create_topic('latency'), eventstore.create_topic('src'), eventstore.create_topic('mixed'),
       eventstore.create_topic('derived'), eventstore.create_topic('wake'),
       eventstore.create_topic('spread');

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

-- Waits until consumer has handled n events or timeout passed, looking
-- every poll seconds; returns the number handled.  The count is summed
-- over the consumer's members (eventstore.members, 1.3), read directly
-- rather than through consumer_status, whose lag this would compute too.
CREATE FUNCTION bench_wait_handled(consumer text, n bigint, timeout interval,
                                   poll double precision DEFAULT 0.005)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
    done     bigint;
BEGIN
    LOOP
        SELECT coalesce(sum(m.handled), 0) INTO done
          FROM eventstore.members m WHERE m.consumer = bench_wait_handled.consumer;
        EXIT WHEN done >= n OR clock_timestamp() > deadline;
        PERFORM pg_sleep(poll);
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

------------------------------------------------------------------------------
-- Members
------------------------------------------------------------------------------

-- n tick events with fresh ids in topic, spread over the streams
-- bench-0 .. bench-(streams - 1): event k of the load goes to stream
-- k % streams, so that every stream gets n / streams of them (one more for
-- the first n % streams).  One append_batch per stream, a transaction per
-- 100 streams.
CREATE PROCEDURE bench_preload_streams(topic text, n integer, streams integer)
LANGUAGE plpgsql AS $$
BEGIN
    FOR s IN 0 .. streams - 1 LOOP
        CONTINUE WHEN n / streams + (s < n % streams)::integer = 0;
        PERFORM count(*)
           FROM eventstore.append_batch(topic,
                  ARRAY(SELECT jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text))
                          FROM generate_series(1, n / streams + (s < n % streams)::integer)),
                  'bench-' || s);
        IF s % 100 = 99 THEN
            COMMIT;
        END IF;
    END LOOP;
END
$$;

-- Every call of the handlers below: the event and the backend (the
-- dispatcher worker) that handled it.  No unique constraint, so that an
-- event handled twice shows as two rows; the daemon's handler writes the
-- same to a file, loaded here after its run (pid NULL).
CREATE TABLE members_seen (
    position   bigint NOT NULL,
    pid        integer,
    handled_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The slow handler: waits 5 ms (a call to a remote service, say), then a
-- cheap insert that shows it ran.
CREATE FUNCTION bench_sleep_handler(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.005);
    INSERT INTO members_seen (position, pid) VALUES (e.position, pg_backend_pid());
END
$$;

-- Creates consumer name of topic 'spread' with members members and wakes
-- the dispatcher's workers (see bench_create_derive); handler NULL makes
-- an outside consumer.
CREATE PROCEDURE bench_create_spread(name text, handler regprocedure, batch_size integer, members integer)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM eventstore.create_consumer(name, ARRAY['spread'], handler, batch_size, members => members);
    PERFORM eventstore.append('wake',
                              jsonb_set(bench_envelope(), '{id}', to_jsonb(gen_random_uuid()::text)));
END
$$;

-- Whether consumer handled every one of the n events of topic 'spread'
-- exactly once, going by members_seen: one row per event, nothing else,
-- and the consumer agrees (handled, no lag, nothing parked).  Returns
-- 'ok' or what is wrong.
CREATE FUNCTION bench_check_spread(consumer text, n bigint) RETURNS text
LANGUAGE sql AS $$
SELECT CASE WHEN s.events <> n THEN format('%s events in topic spread, not %s', s.events, n)
            WHEN s.missing > 0 OR s.twice > 0 OR s.strays > 0
                THEN format('%s events not handled, %s handled more than once, %s rows for no event',
                            s.missing, s.twice, s.strays)
            WHEN c.handled <> n OR c.lag_events <> 0 OR c.parked <> 0
                THEN format('consumer_status: handled %s, lag_events %s, parked %s',
                            c.handled, c.lag_events, c.parked)
            ELSE 'ok' END
  FROM (SELECT count(*) FILTER (WHERE e.position IS NOT NULL) AS events,
               count(*) FILTER (WHERE e.position IS NOT NULL AND coalesce(h.calls, 0) = 0) AS missing,
               count(*) FILTER (WHERE h.calls > 1) AS twice,
               count(*) FILTER (WHERE e.position IS NULL) AS strays
          FROM (SELECT position FROM eventstore.events WHERE topic = 'spread') e
          FULL JOIN (SELECT position, count(*) AS calls FROM members_seen GROUP BY position) h
            USING (position)) s,
       eventstore.consumer_status c
 WHERE c.name = consumer
$$;

-- Whether consumer (of topic 'spread', handler bench_derive_handler)
-- handled every one of its n events exactly once: one derived event each,
-- no append of a derived event found already stored (a second delivery
-- would make one: eventstore.stats, reset before the run), as many handler
-- calls as events and none failed, and the consumer agrees.  Returns 'ok'
-- or what is wrong.
CREATE FUNCTION bench_check_derive_spread(consumer text, n bigint) RETURNS text
LANGUAGE sql AS $$
SELECT CASE WHEN d.derived <> n THEN format('%s derived events, not %s', d.derived, n)
            WHEN st.calls <> n OR st.failures <> 0 OR st.duplicates <> 0
                THEN format('eventstore.stats: %s handler calls, %s failed, %s duplicate derived events',
                            st.calls, st.failures, st.duplicates)
            WHEN c.handled <> n OR c.lag_events <> 0 OR c.parked <> 0
                THEN format('consumer_status: handled %s, lag_events %s, parked %s',
                            c.handled, c.lag_events, c.parked)
            ELSE 'ok' END
  FROM (SELECT count(*) AS derived FROM eventstore.events WHERE topic = 'derived') d,
       (SELECT coalesce(sum(handler_calls) FILTER (WHERE topic = 'spread'), 0) AS calls,
               coalesce(sum(handler_failures) FILTER (WHERE topic = 'spread'), 0) AS failures,
               coalesce(sum(duplicates) FILTER (WHERE topic = 'derived'), 0) AS duplicates
          FROM eventstore.stats WHERE database = current_database()) st,
       eventstore.consumer_status c
 WHERE c.name = consumer
$$;

-- The plan of a member's first page of a window over topic 'spread' when
-- the consumer has members members: the query of window_page() in
-- extension/consumer_engine.c (no done snapshot, no type filter), its
-- arguments inlined as the engine's are known when it is planned, the
-- member condition left out for 1 member.  Returns the scan that found
-- the rows, the rows it was estimated to return, the rows it read and
-- kept, and the execution time.
CREATE FUNCTION bench_page_plan(members integer, page integer) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    plan  jsonb;
    scan  jsonb;
BEGIN
    EXECUTE format('EXPLAIN (ANALYZE, FORMAT JSON)
                    SELECT e FROM eventstore.events e
                     WHERE e.topic = ANY (%L::text[]) AND e.position > 0 AND e.position <= %s
                       AND pg_visible_in_snapshot(e.xid, %L::pg_snapshot)%s
                     ORDER BY e.position LIMIT %s',
                   '{spread}', (SELECT max(position) FROM eventstore.events), pg_current_snapshot(),
                   CASE WHEN members > 1
                        THEN format(' AND eventstore.member_of(e.stream, e.id, %s) = 0', members)
                        ELSE '' END,
                   page)
       INTO plan;
    scan := plan -> 0 -> 'Plan';
    WHILE scan ? 'Plans' LOOP
        scan := scan -> 'Plans' -> 0;
    END LOOP;
    RETURN format('%s, %s rows estimated, %s read, %s kept, %s ms',
                  scan ->> 'Node Type', scan ->> 'Plan Rows',
                  (scan ->> 'Actual Rows')::bigint + coalesce((scan ->> 'Rows Removed by Filter')::bigint, 0),
                  scan ->> 'Actual Rows', round((plan -> 0 ->> 'Execution Time')::numeric, 1));
END
$$;
