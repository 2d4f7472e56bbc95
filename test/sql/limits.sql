-- Limits and bad input: what the store accepts at its edges and
-- how it refuses the rest.
--   1. event size: eventstore.max_event_bytes, just under and just over,
--      huge strings, many keys, stream and topic name lengths;
--   2. 10,000-event batches: append_batch (plain, in a stream with
--      expected_version, with duplicates, with a bad event at 9,999: all or
--      nothing), read of 10,000, consumer batch_size and poll at their
--      maximum;
--   3. NULL in every argument of every function of eventstore and birdwatch,
--      found in the catalogue (pg_depend deptype 'e'): each call runs in a
--      subtransaction that is rolled back, and its outcome is printed so that
--      the behaviour is reviewed here; the rule checked at the end: no
--      internal error (class XX or 58), no "cache lookup failed", messages
--      start in lower case, and the backend survives (a crash ends the test).
-- This database has no dispatcher: consumers run only through run_consumer.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
DROP EXTENSION IF EXISTS pgcrypto;
CREATE EXTENSION birdwatch CASCADE;
DROP SCHEMA IF EXISTS test_limits CASCADE;
CREATE SCHEMA test_limits;
SET search_path = test_limits, public;
DROP ROLE IF EXISTS limits_role;
CREATE ROLE limits_role IN ROLE eventstore_reader, eventstore_writer;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT eventstore.create_topic('limits');
SELECT eventstore.create_topic('big');
SELECT eventstore.create_topic('bulk');
CREATE FUNCTION ev(n int, data jsonb DEFAULT NULL, type text DEFAULT 'new') RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'id', ('e0000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid,
        'type', type, 'version', '1.0', 'data', coalesce(data, jsonb_build_object('n', n)),
        'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z'))
$$;
-- The size eventstore.max_event_bytes measures: the jsonb value's, without
-- its 4-byte header.
CREATE FUNCTION size_of(e jsonb) RETURNS int LANGUAGE sql AS $$
    SELECT pg_column_size(e) - 4
$$;
-- An event of exactly the given size, its data one long string.  jsonb
-- aligns the objects inside it to 4 bytes, so the last bytes are set with
-- metadata.source, the last value of the envelope.
CREATE FUNCTION event_of_size(n int, bytes int) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    e jsonb := ev(n, '{"s": ""}');
BEGIN
    e := jsonb_set(e, '{data,s}', to_jsonb(repeat('x', bytes - size_of(e) - 8)));
    FOR pad IN 0 .. 8 LOOP
        IF size_of(jsonb_set(e, '{metadata,source}', to_jsonb('test' || repeat('w', pad)))) = bytes THEN
            RETURN jsonb_set(e, '{metadata,source}', to_jsonb('test' || repeat('w', pad)));
        END IF;
    END LOOP;
    RAISE EXCEPTION 'no event of % bytes', bytes;
END
$$;

------------------------------------------------------------------------------
-- 1. Event size
------------------------------------------------------------------------------
SHOW eventstore.max_event_bytes;
-- the default, 1MB: exactly 1048576 bytes is stored, one byte more is not
SELECT size_of(event_of_size(1, 1048576)), size_of(event_of_size(2, 1048577));
SELECT eventstore.append('big', event_of_size(1, 1048576)) > 0 AS stored;
SELECT eventstore.append('big', event_of_size(2, 1048577));
SELECT eventstore.is_valid(event_of_size(2, 1048577)), eventstore.is_valid(event_of_size(2, 1048576));
-- read back whole
SELECT length(envelope->'data'->>'s') AS length, envelope = event_of_size(1, 1048576) AS same
  FROM eventstore.read('big');
-- a 20 MB string is refused before anything else is looked at
SELECT eventstore.append('big', ev(3, jsonb_build_object('s', repeat('x', 20 * 1024 * 1024))));
-- also as the third event of a batch: the DETAIL names it, nothing is stored
SELECT count(*) FROM eventstore.append_batch('big',
    ARRAY[ev(4), ev(5), event_of_size(6, 1048577)]);
SELECT count(*) AS events FROM eventstore.read('big');
-- many keys: 20,000 members in data are fine when the event is small enough
SELECT eventstore.append('big', ev(7, (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 20000) i))) > 0 AS stored;
SELECT (SELECT count(*) FROM jsonb_object_keys(envelope->'data')) AS keys
  FROM eventstore.read('big') WHERE id = 'e0000000-0000-4000-8000-000000000007';
-- 100,000 members are over 1MB
SELECT eventstore.append('big', ev(8, (SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 100000) i)));
-- 1,000 unknown top-level members: the first one is named (clipped to 64 bytes)
SELECT eventstore.validate(ev(9) || (SELECT jsonb_object_agg(repeat('z', 100) || i, i) FROM generate_series(1, 1000) i));
-- the limit is a superuser's setting; lower it for this session
SET eventstore.max_event_bytes = 200;
SELECT eventstore.append('big', event_of_size(10, 200)) > 0 AS stored;
SELECT eventstore.append('big', event_of_size(11, 201));
SET eventstore.max_event_bytes = 63;
SET eventstore.max_event_bytes = '513MB';
RESET eventstore.max_event_bytes;
SET ROLE limits_role;
SET eventstore.max_event_bytes = '2MB';
RESET ROLE;
-- stream names: 1 to 1024 bytes; topic names: at most 63 characters
SELECT eventstore.append('big', ev(12), repeat('s', 1024)) > 0 AS stored;
SELECT eventstore.append('big', ev(13), repeat('s', 1025));
SELECT eventstore.append('big', ev(13), '');
SELECT eventstore.create_topic(repeat('t', 63));
SELECT eventstore.create_topic(repeat('t', 64));
SELECT count(*) AS events FROM eventstore.read('big');

------------------------------------------------------------------------------
-- 2. 10,000-event batches
------------------------------------------------------------------------------
CREATE TABLE positions (i int, position bigint);
-- the positions come back in input order, consecutive in a fresh table
INSERT INTO positions
SELECT row_number() OVER (), p
  FROM eventstore.append_batch('bulk', ARRAY(SELECT ev(100000 + i) FROM generate_series(1, 10000) i)) p;
SELECT count(*), count(DISTINCT position), max(position) - min(position) + 1 AS span,
       bool_and(position = (SELECT min(position) FROM positions) + i - 1) AS in_order
  FROM positions;
-- retried as a whole: the same positions, nothing written
SELECT count(*) AS same_positions
  FROM eventstore.append_batch('bulk', ARRAY(SELECT ev(100000 + i) FROM generate_series(1, 10000) i))
       WITH ORDINALITY AS r(position, i)
  JOIN positions USING (i, position);
SELECT count(*) FROM eventstore.read('bulk', 0, 100000);
-- read of 10,000 at once, in position order
SELECT count(*), bool_and(position > 0), min(position) = (SELECT min(position) FROM positions) AS from_first
  FROM eventstore.read('bulk', 0, 10000);
SELECT count(*) FROM eventstore.read('bulk', (SELECT max(position) - 10 FROM positions), 10000);
-- into a new stream with expected_version 0: versions 1 to 10,000
SELECT count(*) FROM eventstore.append_batch('bulk',
    ARRAY(SELECT ev(200000 + i) FROM generate_series(1, 10000) i), 'big-stream', 0);
SELECT count(*), min(stream_version), max(stream_version),
       bool_and(stream_version = position - (SELECT min(position) FROM eventstore.read_stream('bulk', 'big-stream', 0, 1)) + 1) AS gap_free
  FROM eventstore.read_stream('bulk', 'big-stream', 0, 10000);
-- the next 10,000 must expect version 10,000
SELECT count(*) FROM eventstore.append_batch('bulk',
    ARRAY(SELECT ev(210000 + i) FROM generate_series(1, 10000) i), 'big-stream', 9999);
SELECT count(*) FROM eventstore.append_batch('bulk',
    ARRAY(SELECT ev(210000 + i) FROM generate_series(1, 10000) i), 'big-stream', 10000);
SELECT max(stream_version) FROM eventstore.read_stream('bulk', 'big-stream', 19990, 10000);
-- 10,000 elements, each event twice: 5,000 stored, repeats get the position
-- of their first occurrence
SELECT count(*) AS returned, count(DISTINCT p) AS distinct_positions
  FROM eventstore.append_batch('bulk',
       ARRAY(SELECT ev(300000 + (i + 1) / 2) FROM generate_series(1, 10000) i)) p;
SELECT count(*) FROM eventstore.read('bulk', 0, 100000);
-- one bad event at 9,999: the whole batch is refused, and named
SELECT count(*) FROM eventstore.append_batch('bulk',
    ARRAY(SELECT CASE WHEN i = 9999 THEN ev(400000 + i) - 'type' ELSE ev(400000 + i) END
            FROM generate_series(1, 10000) i));
SELECT count(*) FROM eventstore.append_batch('bulk',
    ARRAY(SELECT CASE WHEN i = 9999 THEN NULL ELSE ev(400000 + i) END
            FROM generate_series(1, 10000) i));
-- a conflicting duplicate at 9,999 (same id as element 1, other content)
SELECT count(*) FROM eventstore.append_batch('bulk',
    ARRAY(SELECT CASE WHEN i = 9999 THEN ev(400001, '{"other": true}') ELSE ev(400000 + i) END
            FROM generate_series(1, 10000) i));
SELECT count(*) FROM eventstore.read('bulk', 0, 100000);
SELECT count(*) FROM eventstore.events WHERE id >= 'e0000000-0000-4000-8000-000000400000';
-- consumers: batch_size at most 10,000, poll at most 10,000
CREATE TABLE handled (position bigint);
CREATE FUNCTION count_handler(e eventstore.event) RETURNS void LANGUAGE sql AS $$
    INSERT INTO test_limits.handled VALUES (e.position)
$$;
SELECT eventstore.create_consumer('bulk_many', ARRAY['bulk'], batch_size => 10001);
SELECT eventstore.create_consumer('bulk_many', ARRAY['bulk'], 'count_handler(eventstore.event)', batch_size => 10000);
SELECT eventstore.create_consumer('bulk_poll', ARRAY['bulk']);
SELECT eventstore.run_consumer('bulk_many', 10000);
SELECT count(*), count(DISTINCT position) FROM handled;
SELECT eventstore.run_consumer('bulk_many');
SELECT count(*), count(DISTINCT position),
       count(*) = (SELECT count(*) FROM eventstore.read('bulk', 0, 100000)) AS all_events
  FROM handled;
SELECT position = (SELECT max(position) FROM eventstore.read('bulk', 0, 100000)) AS at_the_end, lag_events, handled
  FROM eventstore.consumer_status WHERE name = 'bulk_many';
SELECT count(*) FROM eventstore.poll('bulk_poll', 10001);
SELECT count(*), min(batch_id), max(batch_id) FROM eventstore.poll('bulk_poll', 10000);
SELECT eventstore.ack('bulk_poll', 1);
SELECT count(*), min(batch_id) FROM eventstore.poll('bulk_poll', 10000);

------------------------------------------------------------------------------
-- 3. NULL in every argument of every function
------------------------------------------------------------------------------
-- A plausible value for each argument: by function and argument name, by
-- argument name and type, or by type alone, as SQL expressions.
CREATE FUNCTION handler(e eventstore.event) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION upcaster(envelope jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT envelope $$;
SELECT eventstore.append('limits', ev(1), 'limits-stream') > 0 AS stored;
SELECT eventstore.create_consumer('watcher', ARRAY['limits']);
SELECT eventstore.create_consumer('runner', ARRAY['limits'], 'handler(eventstore.event)');
SELECT count(*) FROM eventstore.poll('watcher');      -- batch 1 is delivered
SELECT birdwatch.resolve_token('bw_limits_token') IS NOT NULL AS registered;
-- what the calls must leave as it was
CREATE FUNCTION state() RETURNS TABLE (what text, n bigint) LANGUAGE sql AS $$
    SELECT 'topics', count(*) FROM eventstore.topics
    UNION ALL SELECT 'events', count(*) FROM eventstore.events
    UNION ALL SELECT 'consumers', count(*) FROM eventstore.consumers
    UNION ALL SELECT 'parked', count(*) FROM eventstore.parked
    UNION ALL SELECT 'upcasters', count(*) FROM eventstore.upcasters
    UNION ALL SELECT 'subject keys', count(*) FROM eventstore.subject_keys
    UNION ALL SELECT 'users', count(*) FROM birdwatch.users
$$;
CREATE TABLE state_before AS SELECT * FROM state();

CREATE TABLE sample (proname text, argname text, argtype regtype, expr text NOT NULL);
INSERT INTO sample VALUES
    -- by type
    (NULL, NULL, 'text', $$'limits'$$),
    (NULL, NULL, 'integer', '10'),
    (NULL, NULL, 'bigint', '1'),
    (NULL, NULL, 'boolean', 'true'),
    (NULL, NULL, 'uuid', $$'e0000000-0000-4000-8000-000000000001'$$),
    (NULL, NULL, 'interval', $$'1 day'$$),
    (NULL, NULL, 'date', $$'2026-11-27'$$),
    (NULL, NULL, 'timestamp with time zone', 'now()'),
    (NULL, NULL, 'bytea', $$'\x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff'$$),
    (NULL, NULL, 'oid', $$'limits_role'::regrole$$),
    (NULL, NULL, 'xid8', $$'1'$$),
    (NULL, NULL, 'xid8[]', $$ARRAY['1'::xid8]$$),
    (NULL, NULL, 'regrole', $$'limits_role'$$),
    (NULL, NULL, 'regprocedure', $$'test_limits.handler(eventstore.event)'$$),
    (NULL, NULL, 'text[]', $$ARRAY['limits']$$),
    (NULL, NULL, 'jsonb', 'test_limits.ev(2)'),
    (NULL, NULL, 'jsonb[]', 'ARRAY[test_limits.ev(2), test_limits.ev(3)]'),
    (NULL, NULL, 'eventstore.event', $$(SELECT e FROM eventstore.read('limits') e LIMIT 1)$$),
    (NULL, NULL, 'eventstore.consumers', $$(SELECT c FROM eventstore.consumers c WHERE name = 'watcher')$$),
    (NULL, NULL, 'eventstore.members', $$(SELECT m FROM eventstore.members m WHERE consumer = 'watcher' LIMIT 1)$$),
    (NULL, NULL, 'pg_snapshot', 'pg_current_snapshot()'),
    -- by argument name
    (NULL, 'topic', 'text', $$'limits'$$),
    (NULL, 'consumer', 'text', $$'watcher'$$),
    (NULL, 'name', 'text', $$'watcher'$$),
    (NULL, 'stream', 'text', $$'limits-stream'$$),
    (NULL, 'current_version', 'text', $$'1.0'$$),
    (NULL, 'version', 'text', $$'1.0'$$),
    (NULL, 'privilege', 'text', $$'read'$$),
    (NULL, 'kind', 'text', $$'outside'$$),
    (NULL, 'subject', 'text', $$'alice'$$),
    (NULL, 'subject_path', 'text', $$'user.id'$$),
    (NULL, 'path', 'text', $$'client.ip'$$),
    (NULL, 'argument', 'text', $$'paths'$$),
    (NULL, 'paths', 'text[]', $$ARRAY['client.ip']$$),
    (NULL, 'types', 'text[]', $$ARRAY['new']$$),
    (NULL, 'email', 'text', $$'null.matrix@example.org'$$),
    (NULL, 'display_name', 'text', $$'Null Matrix'$$),
    (NULL, 'token', 'text', $$'bw_limits_token'$$),
    (NULL, 'image_url', 'text', $$'https://birds.example/robin.jpg'$$),
    (NULL, 'user_agent', 'text', $$'Mozilla/5.0'$$),
    (NULL, 'rating', 'integer', '4'),
    (NULL, 'user_id', 'uuid', $$birdwatch.resolve_token('bw_limits_token')$$),
    (NULL, 'fn', 'regprocedure', $$'test_limits.upcaster(jsonb)'$$),
    (NULL, 'from_major', 'integer', '1'),
    (NULL, 'to_major', 'integer', '2'),
    (NULL, 'after', 'bigint', '0'),
    (NULL, 'after_version', 'bigint', '0'),
    (NULL, 'expected_version', 'bigint', '1'),
    (NULL, 'to_position', 'bigint', '0'),
    (NULL, 'skip', 'integer', '0'),
    (NULL, 'batch_index', 'integer', '0'),
    (NULL, 'data', 'jsonb', $$'{"user": {"id": "alice"}}'$$),
    (NULL, 'target', 'jsonb', $$'{}'$$),
    (NULL, 'v', 'jsonb', $$'"x"'$$),
    (NULL, 'to_day', 'date', $$'2026-11-28'$$),
    ('create_topic', 'name', 'text', $$'limits_new_topic'$$),
    ('create_consumer', 'name', 'text', $$'limits_new'$$),
    ('register_consumer', 'name', 'text', $$'limits_new'$$),
    ('run_consumer', 'name', 'text', $$'runner'$$),
    ('register_cleanup', 'name', 'text', $$'limits_cleanup'$$),
    ('register_cleanup', 'fn', 'regprocedure', $$'birdwatch.purge_notifier(timestamptz, integer)'$$);

-- One call of function f with argument position i NULL, in a subtransaction
-- that is always rolled back; returns what happened.
CREATE FUNCTION try_call(f regprocedure, i int, OUT call text, OUT outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    p pg_proc;
    args text[] := '{}';
    r text;
    n bigint;
    state text;
    msg text;
BEGIN
    SELECT * INTO p FROM pg_proc WHERE oid = f;
    FOR k IN 0 .. p.pronargs - 1 LOOP
        args := args || CASE WHEN k = i THEN format('NULL::%s', p.proargtypes[k]::regtype)
            ELSE format('(%s)::%s', (
                SELECT s.expr FROM test_limits.sample s
                 WHERE s.argtype = p.proargtypes[k]
                   AND (s.argname IS NULL OR s.argname = p.proargnames[k + 1])
                   AND (s.proname IS NULL OR s.proname = p.proname)
                 ORDER BY s.proname IS NULL, s.argname IS NULL LIMIT 1),
                p.proargtypes[k]::regtype) END;
    END LOOP;
    call := format('%s.%s(%s)', p.pronamespace::regnamespace, p.proname, array_to_string(args, ', '));
    BEGIN
        IF p.proretset THEN
            EXECUTE format('SELECT count(*) FROM %s', call) INTO n;
            r := format('returned %s rows', n);
        ELSE
            EXECUTE format('SELECT CASE WHEN %s IS NULL THEN ''returned null'' ELSE ''returned a value'' END', call) INTO r;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'ZZ999', MESSAGE = r;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
        outcome := CASE WHEN state = 'ZZ999' THEN msg ELSE format('%s %s', state, msg) END;
    END;
END
$$;


-- Every function with an argument, every argument position NULL in turn.
-- Functions returning trigger, event_trigger or internal cannot be called
-- from SQL and are left out (eventstore.topics_changed() is a trigger).
CREATE TABLE outcomes AS
SELECT p.oid::regprocedure AS fn,
       CASE WHEN p.proisstrict THEN 'strict' ELSE '' END AS strict,
       -- api: granted to a role other than its owner; internal: only its
       -- owner may call it (the extension's helpers, birdwatch's handlers)
       CASE WHEN EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee <> p.proowner)
            THEN 'api' ELSE 'internal' END AS kind,
       i + 1 AS arg, p.proargnames[i + 1] AS argname, (try_call(p.oid, i)).*
  FROM pg_depend d
  JOIN pg_extension x ON x.oid = d.refobjid
  JOIN pg_proc p ON p.oid = d.objid
  CROSS JOIN LATERAL generate_series(0, p.pronargs - 1) AS i
 WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass
   AND d.deptype = 'e' AND x.extname IN ('eventstore', 'birdwatch')
   AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype, 'internal'::regtype);
SELECT fn, arg, argname, strict, kind, outcome FROM outcomes ORDER BY fn::text, arg;
-- left out: no argument to make NULL, or not callable from SQL
SELECT p.oid::regprocedure AS fn,
       CASE WHEN p.prorettype = 'trigger'::regtype THEN 'returns trigger' ELSE 'no arguments' END AS reason
  FROM pg_depend d
  JOIN pg_extension x ON x.oid = d.refobjid
  JOIN pg_proc p ON p.oid = d.objid
 WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass
   AND d.deptype = 'e' AND x.extname IN ('eventstore', 'birdwatch')
   AND (p.pronargs = 0 OR p.prorettype IN ('trigger'::regtype, 'event_trigger'::regtype, 'internal'::regtype))
 ORDER BY p.oid::regprocedure::text;
-- The rule: nothing internal, nothing from the catalogue caches, messages in
-- lower case; every call either returned or raised a SQLSTATE.  No rows.
SELECT fn, arg, call, outcome FROM outcomes
 WHERE outcome !~ '^(returned |[0-9A-Z]{5} [^A-Z])'
    OR outcome ~ '^(XX|58)' OR outcome ~ 'cache lookup failed';
-- The API (granted functions) refuses NULL with 22004, 22023 or 42602
-- naming the argument, or treats it as documented; these raise something
-- else, each for a reason given in README "Limits and bad input".
SELECT fn, arg, outcome FROM outcomes
 WHERE kind = 'api' AND outcome !~ '^(returned |22004 |22023 |42602 )'
 ORDER BY fn::text, arg;
-- the session is still alive, and nothing of the calls was kept: no rows
(SELECT * FROM state() EXCEPT SELECT * FROM state_before)
UNION ALL (SELECT * FROM state_before EXCEPT SELECT * FROM state());

-- clean up
SET client_min_messages = warning;
DROP SCHEMA test_limits CASCADE;
DROP EXTENSION birdwatch CASCADE;
DROP EXTENSION eventstore CASCADE;
DROP ROLE limits_role;
