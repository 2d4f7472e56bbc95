-- A consumer's lag (consumer_status.lag_events, consumer_members) costs the
-- same whatever the lag: what lies between a member's floor and what it has
-- delivered is counted exactly, and past that the first 10,000 events
-- (split between topics and members), the rest estimated from them.  Exact
-- below, within a few percent above (with a type filter, two topics and
-- members), also after a batch of 10,000 was acked (the estimate starts
-- after what was delivered, never at 0 while events are to come), and 0
-- once caught up.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
DROP SCHEMA IF EXISTS test_lag CASCADE;
CREATE SCHEMA test_lag;
SET search_path = test_lag, public;
RESET client_min_messages;

SELECT eventstore.create_topic('big'), eventstore.create_topic('small');
CREATE FUNCTION ev(n int, type text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'id', gen_random_uuid(), 'type', type, 'version', '1.0',
        'data', jsonb_build_object('n', n),
        'metadata', jsonb_build_object('source', 'test/consumer_lag', 'time', '2026-12-04T00:00:00Z'))
$$;
SELECT eventstore.create_consumer('every', ARRAY['big', 'small']);
SELECT eventstore.create_consumer('odd', ARRAY['big'], types => ARRAY['odd']);
SELECT eventstore.create_consumer('spread', ARRAY['big', 'small'], members => 4);

-- below the sample: exact
SELECT count(eventstore.append('small', ev(n, 'even'), stream => 's' || n % 7)) FROM generate_series(1, 300) n;
SELECT name, lag_events FROM eventstore.consumer_status ORDER BY name;
SELECT sum(lag_events) AS members_sum FROM eventstore.consumer_members WHERE consumer = 'spread';

-- above it: 30,000 more in topic big, every second one of type odd
SELECT count(*) FROM eventstore.append_batch('big',
    ARRAY(SELECT ev(n, CASE WHEN n % 2 = 1 THEN 'odd' ELSE 'even' END) FROM generate_series(1, 30000) n));
SELECT name, lag_events BETWEEN expected * 0.95 AND expected * 1.05 AS within_5_percent
  FROM eventstore.consumer_status
  JOIN (VALUES ('every', 30300), ('odd', 15000), ('spread', 30300)) AS x(name, expected) USING (name)
 ORDER BY name;
SELECT lag_seconds >= 0 AS has_age FROM eventstore.consumer_status WHERE name = 'every';

-- a batch of 10,000 open (not acked: still to come), then acked: the other
-- 20,300 are still to come
SELECT count(*) FROM eventstore.poll('every', 10000);
SELECT lag_events BETWEEN 30300 * 0.95 AND 30300 * 1.05 AS open_batch_within_5_percent
  FROM eventstore.consumer_status WHERE name = 'every';
SELECT eventstore.ack('every', (SELECT batch_id FROM eventstore.consumer_status WHERE name = 'every'));
SELECT lag_events BETWEEN 20300 * 0.95 AND 20300 * 1.05 AS acked_within_5_percent
  FROM eventstore.consumer_status WHERE name = 'every';

-- caught up: 0
DO $$
DECLARE
    b bigint;
BEGIN
    FOR i IN 1 .. 10 LOOP
        SELECT max(batch_id) INTO b FROM eventstore.poll('every', 10000);
        EXIT WHEN b IS NULL;
        PERFORM eventstore.ack('every', b);
        COMMIT;
    END LOOP;
END $$;
SELECT lag_events FROM eventstore.consumer_status WHERE name = 'every';

DROP SCHEMA test_lag CASCADE;
