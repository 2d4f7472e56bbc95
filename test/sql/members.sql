-- Consumers split into members: the bad arguments (22023 and the others),
-- an in-database consumer of 4 members handling each event once with each
-- stream in order, the status of a consumer (summed) and of its members,
-- an outside consumer's poll of a given member, and changes of the member
-- count (the retiring members, the replaced ones, reset).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
DROP SCHEMA IF EXISTS test_members CASCADE;
CREATE SCHEMA test_members;
SET search_path = test_members, public;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT eventstore.create_topic('account');
CREATE FUNCTION ev(n int) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'id', ('f1000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid,
        'type', 'deposited', 'version', '1.0', 'data', jsonb_build_object('n', n),
        'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z'))
$$;
CREATE TABLE handled (n serial, stream text, stream_version bigint, id uuid);
CREATE FUNCTION note(e eventstore.event) RETURNS void LANGUAGE sql AS $$
    INSERT INTO test_members.handled (stream, stream_version, id) VALUES (e.stream, e.stream_version, e.id)
$$;

-- bad member counts: 22023, naming the argument
SELECT eventstore.create_consumer('c', ARRAY['account'], members => 0);
SELECT eventstore.create_consumer('c', ARRAY['account'], members => 257);
SELECT eventstore.create_consumer('c', ARRAY['account'], members => NULL);
SELECT eventstore.create_consumer('outside', ARRAY['account'], batch_size => 10, members => 3);
SELECT eventstore.set_consumer_members('outside', 0);
SELECT eventstore.set_consumer_members('outside', 1000);
SELECT eventstore.set_consumer_members('outside', NULL);
SELECT eventstore.set_consumer_members('nobody', 2);
SELECT eventstore.set_consumer_members(NULL, 2);
SELECT eventstore.set_consumer_members('Bad Name', 2);
-- bad members for poll: 22023
SELECT * FROM eventstore.poll('outside', 10, 3);
SELECT * FROM eventstore.poll('outside', 10, -1);
SELECT * FROM eventstore.poll('outside', 10, 256);
SELECT * FROM eventstore.poll('nobody', 10, 0);
-- member_of (internal): the member of an event, NULL without a count
SELECT eventstore.member_of('acct-1', NULL, 4) = eventstore.member_of('acct-1', gen_random_uuid(), 4) AS by_stream,
       eventstore.member_of(NULL, 'f1000000-0000-4000-8000-000000000001', 1) AS one_member,
       eventstore.member_of('acct-1', NULL, NULL) AS no_count;
SELECT eventstore.member_of('acct-1', NULL, 0);

-- 40 events in 8 streams, then an in-database consumer of 4 members
SELECT count(eventstore.append('account', ev(n), 'acct-' || n % 8)) FROM generate_series(1, 40) n;
SELECT eventstore.create_consumer('notes', ARRAY['account'], 'note(eventstore.event)', batch_size => 3,
                                  members => 4);
SELECT member, members, generation, retiring, position, lag_events
  FROM eventstore.consumer_members WHERE consumer = 'notes' ORDER BY member;
SELECT members, lag_events FROM eventstore.consumer_status WHERE name = 'notes';
SELECT eventstore.run_consumer('notes', 5) AS taken;   -- five events, from the first members
SELECT eventstore.run_consumer('notes') AS taken;
-- each event once, each stream in version order, each on its stream's member
SELECT count(*) AS handled, count(DISTINCT id) AS distinct_handled,
       bool_and(stream_version = k) AS streams_in_order
  FROM (SELECT *, row_number() OVER (PARTITION BY stream ORDER BY n) AS k FROM handled) h;
SELECT m.member, m.handled = (SELECT count(*) FROM eventstore.events e
                               WHERE eventstore.member_of(e.stream, e.id, 4) = m.member) AS its_events,
       m.lag_events
  FROM eventstore.consumer_members m WHERE m.consumer = 'notes' ORDER BY m.member;
SELECT members, handled, lag_events, position FROM eventstore.consumer_status WHERE name = 'notes';

-- 4 -> 2: the four retire at a fence, the two start after them
SELECT count(eventstore.append('account', ev(n), 'acct-' || n % 8)) FROM generate_series(41, 50) n;
SELECT eventstore.set_consumer_members('notes', 2);
SELECT eventstore.set_consumer_members('notes', 2);   -- no change
SELECT member, members, generation, retiring, lag_events
  FROM eventstore.consumer_members WHERE consumer = 'notes' ORDER BY generation, member;
SELECT count(eventstore.append('account', ev(n), 'acct-' || n % 8)) FROM generate_series(51, 60) n;
-- 2 -> 3 while the four still retire: the waiting two are replaced
SELECT eventstore.set_consumer_members('notes', 3);
SELECT member, members, generation, retiring, lag_events
  FROM eventstore.consumer_members WHERE consumer = 'notes' ORDER BY generation, member;
SELECT eventstore.run_consumer('notes') AS taken;
SELECT member, members, generation, retiring, lag_events
  FROM eventstore.consumer_members WHERE consumer = 'notes' ORDER BY generation, member;
SELECT count(*) AS handled, count(DISTINCT id) AS distinct_handled,
       bool_and(stream_version = k) AS streams_in_order
  FROM (SELECT *, row_number() OVER (PARTITION BY stream ORDER BY n) AS k FROM handled) h;
-- what the retired members handled still counts
SELECT handled FROM eventstore.consumer_status WHERE name = 'notes';

-- reset: a new generation of three from the position asked for
SELECT eventstore.reset_consumer('notes', 55);
SELECT member, members, generation, retiring, position, lag_events
  FROM eventstore.consumer_members WHERE consumer = 'notes' ORDER BY member;
SELECT eventstore.run_consumer('notes') AS taken;
SELECT handled FROM eventstore.consumer_status WHERE name = 'notes';   -- 60 and 5 again

-- an outside consumer: poll a given member, the batch is that member's
SELECT count(*) AS events, bool_and(member = 1) AS member_1,
       bool_and(eventstore.member_of(stream, id, 3) = 1) AS its_streams,
       min(batch_id) = max(batch_id) AS one_batch
  FROM eventstore.poll('outside', 100, 1);
SELECT count(*) AS events FROM eventstore.poll('outside', 100, 1);   -- leased
SELECT count(DISTINCT member) AS members FROM eventstore.poll('outside', 100);
-- ack of a batch never given out, and of one that was
SELECT eventstore.ack('outside', 1000);
SELECT eventstore.ack('outside', batch_id) FROM eventstore.consumer_members
 WHERE consumer = 'outside' AND member = 1;
-- member 1 is free again with its 8 events handled; the poll of any member
-- leased member 0 or 2, whichever its random start found first
SELECT bool_and(leased_until IS NULL) FILTER (WHERE member = 1) AS member_1_free,
       sum(handled) FILTER (WHERE member = 1) AS member_1_handled,
       count(*) FILTER (WHERE member <> 1 AND leased_until IS NOT NULL) AS others_leased,
       sum(handled) FILTER (WHERE member <> 1) AS others_handled
  FROM eventstore.consumer_members WHERE consumer = 'outside';

DROP SCHEMA test_members CASCADE;
