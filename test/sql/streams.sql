-- Streams: per-stream versions from 1, optimistic concurrency with
-- expected_version, idempotent retries, and read_stream.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
-- this file's own helpers live in its own schema
DROP SCHEMA IF EXISTS test_streams CASCADE;
CREATE SCHEMA test_streams;
SET search_path = test_streams, public;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT eventstore.create_topic('tick');
SELECT eventstore.create_topic('rate');

CREATE FUNCTION ev(id text, n int DEFAULT 0) RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object('id', id, 'type', 'new', 'version', '1.0',
         'data', jsonb_build_object('n', n),
         'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z'))
$$;

-- a new stream: expected_version 0
SELECT eventstore.append('tick', ev('00000000-0000-4000-8000-000000000001'), 'watcher-1', 0) AS p;
-- then 1, without and with an expected version
SELECT eventstore.append('tick', ev('00000000-0000-4000-8000-000000000002'), 'watcher-1') AS p;
SELECT eventstore.append('tick', ev('00000000-0000-4000-8000-000000000003'), 'watcher-1', 2) AS p;
-- stale expected version: 40001 with expected and actual
SELECT eventstore.append('tick', ev('00000000-0000-4000-8000-000000000004'), 'watcher-1', 1);
SELECT eventstore.append('tick', ev('00000000-0000-4000-8000-000000000004'), 'watcher-1', 0);
-- a retry of a stored append returns its position, even with an old expected version
SELECT eventstore.append('tick', ev('00000000-0000-4000-8000-000000000002'), 'watcher-1', 1) AS retry;
-- and without one: its insertion finds it, and the stream's version stays
SELECT eventstore.append('tick', ev('00000000-0000-4000-8000-000000000002'), 'watcher-1') AS retry;
SELECT eventstore.stream_version('tick', 'watcher-1') AS version;
-- the same id in another stream is a conflict, not a duplicate
SELECT eventstore.append('tick', ev('00000000-0000-4000-8000-000000000002'), 'watcher-2');
SELECT eventstore.append('tick', ev('00000000-0000-4000-8000-000000000002'));

-- streams are per topic
SELECT eventstore.append('rate', ev('00000000-0000-4000-8000-000000000005'), 'watcher-1', 0) AS p;

-- a batch into a stream: consecutive versions, duplicates skipped without gaps
SELECT * FROM eventstore.append_batch('tick', ARRAY[
  ev('00000000-0000-4000-8000-000000000010'),
  ev('00000000-0000-4000-8000-000000000001'),
  ev('00000000-0000-4000-8000-000000000011'),
  ev('00000000-0000-4000-8000-000000000010')], 'watcher-1', 3) WITH ORDINALITY AS r(position, n);
SELECT stream, stream_version, id FROM eventstore.events
 WHERE topic = 'tick' AND stream = 'watcher-1' ORDER BY stream_version;
SELECT topic, stream, version FROM eventstore.streams ORDER BY topic, stream;

-- a batch with a stale expected version stores nothing
SELECT * FROM eventstore.append_batch('tick', ARRAY[
  ev('00000000-0000-4000-8000-000000000020')], 'watcher-1', 3);
-- a batch that is all retries returns the stored positions
SELECT * FROM eventstore.append_batch('tick', ARRAY[
  ev('00000000-0000-4000-8000-000000000010'),
  ev('00000000-0000-4000-8000-000000000011')], 'watcher-1', 0);

-- read_stream: in version order, after a version, limited
SELECT stream_version, envelope->>'id' AS id, envelope->'data' AS data
  FROM eventstore.read_stream('tick', 'watcher-1');
SELECT stream_version FROM eventstore.read_stream('tick', 'watcher-1', 2);
SELECT stream_version FROM eventstore.read_stream('tick', 'watcher-1', 0, 2);
SELECT count(*) FROM eventstore.read_stream('tick', 'nobody');
SELECT * FROM eventstore.read_stream('tick', NULL);
SELECT * FROM eventstore.read_stream(NULL, 'watcher-1');
SELECT * FROM eventstore.read_stream('tick', 'watcher-1', 0, 0);

-- stream names are text, not SQL
SELECT eventstore.append('tick', ev('00000000-0000-4000-8000-000000000030'),
                         $$it's; DROP TABLE eventstore.events; --$$, 0) > 0 AS stored;
SELECT stream FROM eventstore.streams WHERE stream LIKE 'it%';
