-- Type filters: a consumer of some event types only, in-database and
-- outside, its lag and skipped counts, and read(..., types).  The events of
-- other types are passed over where the events are found.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
DROP SCHEMA IF EXISTS test_type_filters CASCADE;
CREATE SCHEMA test_type_filters;
SET search_path = test_type_filters, public;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT eventstore.create_topic('account');
CREATE FUNCTION ev(n int, type text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'id', ('f0000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid,
        'type', type, 'version', '1.0', 'data', jsonb_build_object('n', n),
        'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z'))
$$;
-- nine events, the types opened, deposited, withdrawn in turn
SELECT count(eventstore.append('account', ev(n, (ARRAY['opened', 'deposited', 'withdrawn'])[1 + n % 3])))
  FROM generate_series(1, 9) n;

-- bad types: 22023
SELECT eventstore.create_consumer('c', ARRAY['account'], types => '{}');
SELECT eventstore.create_consumer('c', ARRAY['account'], types => ARRAY['deposited', NULL]);
SELECT eventstore.create_consumer('c', ARRAY['account'], types => ARRAY['']);
SELECT eventstore.create_consumer('c', ARRAY['account'], types => array_fill('t'::text, ARRAY[65]));
SELECT * FROM eventstore.read('account', types => '{}');
SELECT * FROM eventstore.read('account', types => ARRAY[NULL]::text[]);

-- an in-database consumer of deposits only
CREATE TABLE handled (consumer text, n int, type text);
CREATE FUNCTION deposits(e eventstore.event) RETURNS void LANGUAGE sql AS $$
    INSERT INTO test_type_filters.handled VALUES ('deposits', (e.envelope->'data'->>'n')::int, e.envelope->>'type')
$$;
SELECT eventstore.create_consumer('deposits', ARRAY['account'], 'deposits(eventstore.event)',
                                  batch_size => 2, types => ARRAY['deposited']);
SELECT lag_events FROM eventstore.consumer_status WHERE name = 'deposits';
SELECT eventstore.run_consumer('deposits') AS handled;
SELECT n, type FROM handled ORDER BY n;
SELECT lag_events, handled FROM eventstore.consumer_status WHERE name = 'deposits';

-- an outside consumer of openings and withdrawals
SELECT eventstore.create_consumer('others', ARRAY['account'], types => ARRAY['opened', 'withdrawn']);
SELECT lag_events FROM eventstore.consumer_status WHERE name = 'others';
SELECT batch_id, position, envelope->>'type' AS type FROM eventstore.poll('others', 10);
SELECT eventstore.ack('others', 1);
SELECT count(*) AS nothing_more FROM eventstore.poll('others', 10);

-- new events: each consumer gets its own types, in later windows
SELECT count(eventstore.append('account', ev(n, (ARRAY['opened', 'deposited', 'withdrawn'])[1 + n % 3])))
  FROM generate_series(10, 12) n;
SELECT eventstore.run_consumer('deposits') AS handled;
SELECT n, type FROM handled WHERE n > 9;
SELECT position, envelope->>'type' AS type FROM eventstore.poll('others', 10);

-- events erased before a consumer got them count as skipped only for the
-- consumers of their type
SELECT count(eventstore.append('account', ev(n, (ARRAY['opened', 'deposited', 'withdrawn'])[1 + n % 3]), 'gone'))
  FROM generate_series(13, 15) n;
SELECT eventstore.erase_stream('account', 'gone') AS erased;
SELECT name, skipped FROM eventstore.consumer_status ORDER BY name;

-- read: the types given, after a position, up to a limit
SELECT position, envelope->>'type' AS type FROM eventstore.read('account', 0, 100, ARRAY['withdrawn']);
SELECT position, envelope->>'type' AS type FROM eventstore.read('account', 5, 2, ARRAY['opened', 'deposited']);
SELECT count(*) AS all_types FROM eventstore.read('account', types => NULL);
