-- Append: positions, idempotence, conflicts, batches, argument checks and
-- the stored, decomposed form of an event.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
-- this file's own helpers live in its own schema
DROP SCHEMA IF EXISTS test_append CASCADE;
CREATE SCHEMA test_append;
SET search_path = test_append, public;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT eventstore.create_topic('tick');
SELECT eventstore.create_topic('rate', '2.0');

-- an envelope maker for the tests
CREATE FUNCTION ev(id text, data jsonb DEFAULT '{"user": {"id": "7f9c2a34-3f57-4b8e-9a4b-0c1e5d2b6a10"}}',
                   type text DEFAULT 'new', version text DEFAULT '1.0')
RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object('id', id, 'type', type, 'version', version, 'data', data,
         'metadata', jsonb_build_object('source', 'services/TickAPI',
                                        'time', '2026-11-27T10:00:00Z'))
$$;

-- positions grow; each row records the appending transaction
BEGIN;
SELECT eventstore.append('tick', ev('aaaaaaaa-0000-4000-8000-000000000001')) AS p1;
SELECT eventstore.append('tick', ev('aaaaaaaa-0000-4000-8000-000000000002')) AS p2;
SELECT count(*) AS own_xid FROM eventstore.events WHERE xid = pg_current_xact_id();
COMMIT;

-- the stored row is decomposed
SELECT position, id, topic, type, version_major, version_minor, data, metadata,
       stream, stream_version, recorded_at <= now() AS recorded
  FROM eventstore.events ORDER BY position;

-- a duplicate with the identical envelope: original position, nothing written
SELECT eventstore.append('tick', ev('aaaaaaaa-0000-4000-8000-000000000001')) AS dup;
-- key order and number formatting do not matter, jsonb equality does
SELECT eventstore.append('tick',
  '{"version": "1.0", "type": "new", "id": "aaaaaaaa-0000-4000-8000-000000000001",
    "metadata": {"time": "2026-11-27T10:00:00Z", "source": "services/TickAPI"},
    "data": {"user": {"id": "7f9c2a34-3f57-4b8e-9a4b-0c1e5d2b6a10"}}}') AS dup_reordered;
-- the upper-case spelling of the same id is the same id
SELECT eventstore.append('tick', ev('AAAAAAAA-0000-4000-8000-000000000001')) AS dup_upper;
SELECT count(*) AS stored FROM eventstore.events;

-- same id, different content: 23505 naming the id and what differs
SELECT eventstore.append('tick', ev('aaaaaaaa-0000-4000-8000-000000000001', '{"x": 1}'));
SELECT eventstore.append('tick', ev('aaaaaaaa-0000-4000-8000-000000000001', type => 'update'));
SELECT eventstore.append('tick', ev('aaaaaaaa-0000-4000-8000-000000000001', version => '1.1'));
SELECT eventstore.append('rate', ev('aaaaaaaa-0000-4000-8000-000000000001'));
SELECT eventstore.append('tick', ev('aaaaaaaa-0000-4000-8000-000000000001'), 'some-stream');
SELECT eventstore.append('tick', jsonb_set(ev('aaaaaaaa-0000-4000-8000-000000000001'),
                                           '{metadata,extra}', '"x"'));
SELECT count(*) AS stored FROM eventstore.events;

-- batches: positions in input order, duplicates inside and outside the batch
SELECT * FROM eventstore.append_batch('tick', ARRAY[
  ev('bbbbbbbb-0000-4000-8000-000000000001'),
  ev('aaaaaaaa-0000-4000-8000-000000000002'),
  ev('bbbbbbbb-0000-4000-8000-000000000002'),
  ev('bbbbbbbb-0000-4000-8000-000000000001'),
  ev('bbbbbbbb-0000-4000-8000-000000000003')]) WITH ORDINALITY AS r(position, n);
SELECT count(*) AS stored FROM eventstore.events;
-- the whole batch again writes nothing and returns the same positions
SELECT * FROM eventstore.append_batch('tick', ARRAY[
  ev('bbbbbbbb-0000-4000-8000-000000000001'),
  ev('aaaaaaaa-0000-4000-8000-000000000002'),
  ev('bbbbbbbb-0000-4000-8000-000000000002'),
  ev('bbbbbbbb-0000-4000-8000-000000000001'),
  ev('bbbbbbbb-0000-4000-8000-000000000003')]) WITH ORDINALITY AS r(position, n);
SELECT count(*) AS stored FROM eventstore.events;

-- all or nothing: one bad event (invalid, or conflicting) stores none
SELECT * FROM eventstore.append_batch('tick', ARRAY[
  ev('cccccccc-0000-4000-8000-000000000001'),
  ev('not-a-uuid')]);
SELECT * FROM eventstore.append_batch('tick', ARRAY[
  ev('cccccccc-0000-4000-8000-000000000001'),
  ev('aaaaaaaa-0000-4000-8000-000000000001', '{"changed": true}')]);
SELECT * FROM eventstore.append_batch('tick', ARRAY[
  ev('cccccccc-0000-4000-8000-000000000001'),
  ev('cccccccc-0000-4000-8000-000000000001', '{"changed": true}')]);
SELECT count(*) AS stored FROM eventstore.events
 WHERE id = 'cccccccc-0000-4000-8000-000000000001';

-- empty batch: nothing, no error
SELECT count(*) FROM eventstore.append_batch('tick', ARRAY[]::jsonb[]);

-- arguments
SELECT eventstore.append(NULL, ev('dddddddd-0000-4000-8000-000000000001'));
SELECT eventstore.append('tick', NULL);
SELECT * FROM eventstore.append_batch('tick', NULL);
SELECT * FROM eventstore.append_batch(NULL, ARRAY[ev('dddddddd-0000-4000-8000-000000000001')]);
SELECT * FROM eventstore.append_batch('tick', ARRAY[ev('dddddddd-0000-4000-8000-000000000001'), NULL]);
SELECT * FROM eventstore.append_batch('tick', ARRAY[[ev('dddddddd-0000-4000-8000-000000000001')]]);
SELECT eventstore.append('tick', ev('dddddddd-0000-4000-8000-000000000001'), '');
SELECT eventstore.append('tick', ev('dddddddd-0000-4000-8000-000000000001'), repeat('s', 1025));
SELECT eventstore.append('tick', ev('dddddddd-0000-4000-8000-000000000001'), NULL, 0);
SELECT eventstore.append('tick', ev('dddddddd-0000-4000-8000-000000000001'), 's', -1);
SELECT count(*) AS stored FROM eventstore.events
 WHERE id = 'dddddddd-0000-4000-8000-000000000001';

-- an append inside a rolled-back transaction leaves nothing
BEGIN;
SELECT eventstore.append('tick', ev('eeeeeeee-0000-4000-8000-000000000001')) > 0 AS appended;
ROLLBACK;
SELECT count(*) AS stored FROM eventstore.events
 WHERE id = 'eeeeeeee-0000-4000-8000-000000000001';

-- and inside a rolled-back savepoint too, while the rest commits
BEGIN;
SAVEPOINT a;
SELECT eventstore.append('tick', ev('eeeeeeee-0000-4000-8000-000000000002')) > 0 AS appended;
ROLLBACK TO SAVEPOINT a;
SELECT eventstore.append('tick', ev('eeeeeeee-0000-4000-8000-000000000003')) > 0 AS appended;
COMMIT;
SELECT id FROM eventstore.events WHERE id::text LIKE 'eeeeeeee%' ORDER BY id;

-- a transaction that appended cannot be prepared (listeners are told at commit)
BEGIN;
SELECT eventstore.append('tick', ev('eeeeeeee-0000-4000-8000-000000000004')) > 0 AS appended;
PREPARE TRANSACTION 'es_test';
SELECT count(*) AS stored FROM eventstore.events
 WHERE id = 'eeeeeeee-0000-4000-8000-000000000004';

-- large batch in one call
SELECT count(*) AS positions, count(DISTINCT p) AS distinct_positions
  FROM eventstore.append_batch('tick', ARRAY(
         SELECT ev(gen_random_uuid()::text) FROM generate_series(1, 10000))) AS p;

-- the table is the extension's own: a trigger added by hand would be
-- bypassed by batch appends, so they refuse to run (55000)
CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER noop BEFORE INSERT ON eventstore.events FOR EACH ROW EXECUTE FUNCTION noop();
SELECT * FROM eventstore.append_batch('tick', ARRAY[
  ev('ffffffff-0000-4000-8000-000000000001'), ev('ffffffff-0000-4000-8000-000000000002')]);
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER noop ON eventstore.events;
SELECT count(*) FROM eventstore.append_batch('tick', ARRAY[
  ev('ffffffff-0000-4000-8000-000000000001'), ev('ffffffff-0000-4000-8000-000000000002')]);
