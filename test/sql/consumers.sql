-- Consumers: registry, poll/ack/nack, in-database handlers with retries and
-- parking, replay, reset, upcasting and derived ids.  Every entry point's
-- bad input is refused with its SQLSTATE.  This database has no dispatcher,
-- so in-database consumers run only when run_consumer() is called.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
DROP SCHEMA IF EXISTS test_consumers CASCADE;
CREATE SCHEMA test_consumers;
SET search_path = test_consumers, public;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT eventstore.create_topic('tick');
SELECT eventstore.create_topic('rate', '3.0');

CREATE FUNCTION tick(n int, topic_version text DEFAULT '1.0') RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'id', ('c0000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid,
        'type', 'new', 'version', topic_version, 'data', jsonb_build_object('n', n),
        'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z'))
$$;

------------------------------------------------------------------------------
-- create_consumer: bad input
------------------------------------------------------------------------------
SELECT eventstore.create_consumer(NULL, ARRAY['tick']);
SELECT eventstore.create_consumer('Upper', ARRAY['tick']);
SELECT eventstore.create_consumer('a;b', ARRAY['tick']);
SELECT eventstore.create_consumer('it''s', ARRAY['tick']);
SELECT eventstore.create_consumer('é', ARRAY['tick']);
SELECT eventstore.create_consumer(repeat('a', 64), ARRAY['tick']);
SELECT eventstore.create_consumer('c', NULL);
SELECT eventstore.create_consumer('c', ARRAY[]::text[]);
SELECT eventstore.create_consumer('c', ARRAY['tick', NULL]);
SELECT eventstore.create_consumer('c', ARRAY['nope']);
SELECT eventstore.create_consumer('c', ARRAY['tick'], batch_size => 0);
SELECT eventstore.create_consumer('c', ARRAY['tick'], batch_size => NULL);
SELECT eventstore.create_consumer('c', ARRAY['tick'], max_attempts => 0);
SELECT eventstore.create_consumer('c', ARRAY['tick'], 'abs(integer)');
CREATE FUNCTION wrong_result(e eventstore.event) RETURNS int LANGUAGE sql AS 'SELECT 1';
SELECT eventstore.create_consumer('c', ARRAY['tick'], 'wrong_result(eventstore.event)');
SELECT count(*) AS consumers FROM eventstore.consumers;

------------------------------------------------------------------------------
-- Outside consumers: poll, ack, nack
------------------------------------------------------------------------------
SELECT eventstore.create_consumer('watcher', ARRAY['tick']);
SELECT eventstore.create_consumer('watcher', ARRAY['tick']);
SELECT eventstore.append('tick', tick(n)) FROM generate_series(1, 5) AS n;

SELECT * FROM eventstore.poll(NULL);
SELECT eventstore.ack(NULL, 1);
SELECT eventstore.nack(NULL, 1, 'x');
SELECT * FROM eventstore.poll('nobody');
SELECT * FROM eventstore.poll('watcher', 0);
SELECT * FROM eventstore.poll('watcher', NULL);
SELECT eventstore.ack('watcher', 1);
SELECT eventstore.ack('nobody', 1);

SELECT position, id, topic, envelope -> 'data' AS data, batch_id, attempt
  FROM eventstore.poll('watcher', 2);
-- leased: nothing for a second poll
SELECT count(*) FROM eventstore.poll('watcher', 2);
SELECT eventstore.ack('watcher', NULL);
SELECT eventstore.ack('watcher', 2);
SELECT eventstore.ack('watcher', 1);
SELECT eventstore.ack('watcher', 1);        -- again: harmless
SELECT position, batch_id, attempt FROM eventstore.poll('watcher', 2);

-- nack: counted, redelivered after the retry delay, parked after max_attempts
SET eventstore.retry_delay = 0;
SELECT eventstore.nack('watcher', 3, NULL);
SELECT eventstore.nack('watcher', 1, 'late');    -- an old batch: nothing happens
SELECT eventstore.nack('watcher', 2, 'mail server down');
SELECT eventstore.nack('watcher', 2, 'counted once per delivery');
SELECT attempts, last_error FROM eventstore.consumer_status WHERE name = 'watcher';
SELECT position, batch_id, attempt FROM eventstore.poll('watcher', 2);
SELECT eventstore.ack('watcher', 2);
SELECT name, kind, position, lag_events, handled, attempts, parked
  FROM eventstore.consumer_status;

-- poll refuses in-database consumers, run_consumer refuses outside ones
SELECT eventstore.run_consumer('watcher');

------------------------------------------------------------------------------
-- In-database consumers
------------------------------------------------------------------------------
CREATE TABLE effects (consumer text, position bigint, n int);
CREATE FUNCTION record(e eventstore.event) RETURNS void LANGUAGE sql AS $$
    INSERT INTO effects VALUES ('recorder', e.position, (e.envelope -> 'data' ->> 'n')::int)
$$;
SELECT eventstore.create_consumer('recorder', ARRAY['tick'], 'record(eventstore.event)', batch_size => 2);
SELECT * FROM eventstore.poll('recorder');
SELECT eventstore.run_consumer(NULL);
SELECT eventstore.run_consumer('recorder', 0);
SELECT eventstore.run_consumer('nobody');
SELECT eventstore.run_consumer('recorder', 3) AS handled;
SELECT eventstore.run_consumer('recorder') AS handled;
SELECT eventstore.run_consumer('recorder') AS handled;
SELECT position, n FROM effects ORDER BY position;

-- A handler that fails three times, then succeeds.  The sequence survives
-- the rollback of each failed attempt; the effect is written once.
CREATE SEQUENCE failures;
CREATE FUNCTION flaky(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO effects VALUES ('flaky', e.position, (e.envelope -> 'data' ->> 'n')::int);
    IF (e.envelope -> 'data' ->> 'n')::int = 2 AND nextval('failures') <= 3 THEN
        RAISE EXCEPTION 'flaky failure %', currval('failures');
    END IF;
END
$$;
SELECT eventstore.create_consumer('flaky', ARRAY['tick'], 'flaky(eventstore.event)');
SELECT eventstore.run_consumer('flaky') AS handled;
SELECT attempts, last_error, lag_events FROM eventstore.consumer_status WHERE name = 'flaky';
SELECT eventstore.run_consumer('flaky') AS handled;
SELECT eventstore.run_consumer('flaky') AS handled;
SELECT attempts, last_error, lag_events FROM eventstore.consumer_status WHERE name = 'flaky';
SELECT eventstore.run_consumer('flaky') AS handled;
SELECT attempts, lag_events, parked FROM eventstore.consumer_status WHERE name = 'flaky';
SELECT n, count(*) FROM effects WHERE consumer = 'flaky' GROUP BY n ORDER BY n;

-- Backoff: with a delay, a failed consumer waits before its next attempt.
SET eventstore.retry_delay = '1h';
SELECT setval('failures', 1, false);
SELECT eventstore.reset_consumer('flaky', 1);
SELECT eventstore.run_consumer('flaky') AS handled;
SELECT eventstore.run_consumer('flaky') AS handled;
SELECT retry_at > now() + interval '59 minutes' AS backing_off FROM eventstore.consumer_status WHERE name = 'flaky';
SET eventstore.retry_delay = 0;

-- A handler that always fails ends in parked, and the consumer moves on.
CREATE TABLE broken_flag (broken boolean);
INSERT INTO broken_flag VALUES (true);
CREATE FUNCTION fragile(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF (e.envelope -> 'data' ->> 'n')::int = 3 AND (SELECT broken FROM broken_flag) THEN
        RAISE EXCEPTION 'cannot handle event %', e.envelope -> 'data' ->> 'n';
    END IF;
    INSERT INTO effects VALUES ('fragile', e.position, (e.envelope -> 'data' ->> 'n')::int);
END
$$;
SELECT eventstore.create_consumer('fragile', ARRAY['tick'], 'fragile(eventstore.event)', max_attempts => 2);
SELECT eventstore.run_consumer('fragile') AS handled;
SELECT eventstore.run_consumer('fragile') AS handled;
SELECT consumer, position, attempts, error, replay FROM eventstore.parked;
SELECT n FROM effects WHERE consumer = 'fragile' ORDER BY n;
SELECT attempts, lag_events, parked FROM eventstore.consumer_status WHERE name = 'fragile';

-- replay_parked: delivered again on the next run; still failing, it stays
SELECT eventstore.replay_parked('fragile', NULL);
SELECT eventstore.replay_parked('fragile', 'c0000000-0000-4000-8000-000000000001');
SELECT eventstore.replay_parked('fragile', 'c0000000-0000-4000-8000-000000000003');
SELECT eventstore.run_consumer('fragile') AS handled;
SELECT position, attempts, error, replay FROM eventstore.parked;
UPDATE broken_flag SET broken = false;
SELECT eventstore.replay_parked('fragile', 'c0000000-0000-4000-8000-000000000003');
SELECT eventstore.run_consumer('fragile') AS handled;
SELECT count(*) AS parked FROM eventstore.parked;
SELECT n FROM effects WHERE consumer = 'fragile' ORDER BY n;

-- reset_consumer: everything after the position again
SELECT eventstore.reset_consumer('recorder', -1);
SELECT eventstore.reset_consumer('recorder', NULL);
SELECT eventstore.reset_consumer('nobody');
SELECT eventstore.reset_consumer('recorder', 3);
SELECT eventstore.run_consumer('recorder') AS handled;
SELECT n, count(*) FROM effects WHERE consumer = 'recorder' GROUP BY n ORDER BY n;

-- drop_consumer: gone with its parked events
SELECT eventstore.drop_consumer('nobody');
SELECT eventstore.drop_consumer('fragile');
SELECT name FROM eventstore.consumer_status ORDER BY name;

------------------------------------------------------------------------------
-- Upcasting: rate is at 3.0; events of 1.0 go through 1 -> 2 -> 3
------------------------------------------------------------------------------
CREATE FUNCTION rate_1_to_2(envelope jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_set(jsonb_set(envelope, '{version}', '"2.0"'),
                     '{data,steps}', coalesce(envelope #> '{data,steps}', '[]') || '"1->2"')
$$;
CREATE FUNCTION rate_2_to_3(envelope jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_set(jsonb_set(envelope, '{version}', '"3.0"'),
                     '{data,steps}', coalesce(envelope #> '{data,steps}', '[]') || '"2->3"')
$$;
CREATE FUNCTION bad_upcaster(envelope jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT envelope - 'metadata'
$$;
SELECT eventstore.create_upcaster('nope', 1, 2, 'rate_1_to_2(jsonb)');
SELECT eventstore.create_upcaster('rate', 2, 2, 'rate_1_to_2(jsonb)');
SELECT eventstore.create_upcaster('rate', NULL, 2, 'rate_1_to_2(jsonb)');
SELECT eventstore.create_upcaster('rate', 1, 2, 'abs(integer)');
SELECT eventstore.create_upcaster('rate', 1, 2, NULL);
SELECT eventstore.create_upcaster(NULL, 1, 2, 'rate_1_to_2(jsonb)');
SELECT eventstore.create_consumer('c', ARRAY['tick'], run_as => '-');
SELECT eventstore.create_upcaster('rate', 1, 2, 'rate_1_to_2(jsonb)');
SELECT eventstore.create_upcaster('rate', 1, 2, 'rate_2_to_3(jsonb)');

SELECT eventstore.append('rate', tick(101, '1.0'));
SELECT eventstore.append('rate', tick(102, '2.1'));
SELECT eventstore.append('rate', tick(103, '3.0'));
SELECT eventstore.create_consumer('rates', ARRAY['rate']);
-- no upcaster from 2 yet: the batch cannot be delivered
SELECT position, envelope FROM eventstore.poll('rates');
SELECT eventstore.create_upcaster('rate', 2, 3, 'rate_2_to_3(jsonb)');
SELECT position, envelope ->> 'version' AS version, envelope -> 'data' AS data
  FROM eventstore.poll('rates');
-- the stored events never change
SELECT position, envelope ->> 'version' AS version, envelope -> 'data' AS data
  FROM eventstore.read('rate');
-- readers can ask for the current version
SELECT (eventstore.upcast(e)).envelope -> 'data' AS data FROM eventstore.read('rate') AS e;
-- an upcaster that breaks the envelope is an error naming it
SELECT eventstore.set_topic_version('rate', '4.0');
SELECT eventstore.create_upcaster('rate', 3, 4, 'bad_upcaster(jsonb)');
SELECT (eventstore.upcast(e)).envelope FROM eventstore.read('rate') AS e;
SELECT eventstore.set_topic_version('rate', '4');
SELECT eventstore.set_topic_version('nope', '4.0');
SELECT eventstore.upcast(NULL);

------------------------------------------------------------------------------
-- derived_id: HMAC-SHA-256 under the installation's key as a UUID v8, or
-- the legacy UUID v5; deterministic, per consumer
------------------------------------------------------------------------------
-- Under a known key (the bytes 0 to 31), the id Python's hmac module gives
-- (HMAC-SHA-256 of the 16 bytes of the source and the name, version and
-- variant bits set); with no key (an installation updated from 1.3), RFC
-- 4122's example: "python.org" in the DNS namespace.  Inserting a key
-- replaces the one stored; the transaction puts the installation's back.
BEGIN;
INSERT INTO eventstore.derived_id_key (key) SELECT decode(string_agg(lpad(to_hex(b), 2, '0'), '' ORDER BY b), 'hex')
  FROM generate_series(0, 31) b;
SELECT eventstore.derived_id('6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'python.org') AS keyed;
INSERT INTO eventstore.derived_id_key (key) VALUES (NULL);
SELECT eventstore.derived_id('6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'python.org') AS legacy;
ROLLBACK;
SELECT eventstore.derived_id('c0000000-0000-4000-8000-000000000001', 'score_model')
     = eventstore.derived_id('c0000000-0000-4000-8000-000000000001', 'score_model') AS same,
       eventstore.derived_id('c0000000-0000-4000-8000-000000000001', 'score_model')
     <> eventstore.derived_id('c0000000-0000-4000-8000-000000000001', 'notifier') AS per_consumer;
SELECT eventstore.derived_id(NULL, 'x') IS NULL AS null_in_null_out;

DROP SCHEMA test_consumers CASCADE;
