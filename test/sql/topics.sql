-- Topics: creation, validation of names, versions and retention, and the
-- refusal of appends and reads to topics that do not exist.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
-- this file's own helpers live in its own schema
DROP SCHEMA IF EXISTS test_topics CASCADE;
CREATE SCHEMA test_topics;
SET search_path = test_topics, public;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT eventstore.create_topic('tick');
SELECT eventstore.create_topic('rate', '2.0');
SELECT eventstore.create_topic('user', '1.0', interval '30 days');
SELECT name, current_major, current_minor, retention FROM eventstore.topics ORDER BY name;

-- a topic exists once
SELECT eventstore.create_topic('tick');

-- names: ^[a-z][a-z0-9_]*$, at most 63 characters
SELECT eventstore.create_topic('Tick');
SELECT eventstore.create_topic('1tick');
SELECT eventstore.create_topic('tick-tock');
SELECT eventstore.create_topic('tick; DROP TABLE eventstore.events');
SELECT eventstore.create_topic('');
SELECT eventstore.create_topic(NULL);
SELECT eventstore.create_topic(repeat('a', 64));
SELECT eventstore.create_topic(repeat('a', 63)) IS NULL AS created_63;

-- versions: MAJOR.MINOR
SELECT eventstore.create_topic('v1', '1');
SELECT eventstore.create_topic('v2', '01.0');
SELECT eventstore.create_topic('v3', '1.0.0');
SELECT eventstore.create_topic('v4', '2147483648.0');
SELECT eventstore.create_topic('v5', NULL);

-- retention must be positive
SELECT eventstore.create_topic('r1', '1.0', interval '0');
SELECT eventstore.create_topic('r2', '1.0', interval '-1 day');

-- unknown topics: appends and reads say so, with a hint
SELECT eventstore.append('nope', '{"id": "11111111-1111-4111-8111-111111111111", "type": "new",
  "version": "1.0", "data": {}, "metadata": {"source": "s", "time": "2026-01-01T00:00:00Z"}}');
SELECT * FROM eventstore.append_batch('nope', ARRAY[]::jsonb[]);
SELECT * FROM eventstore.read('nope');
SELECT * FROM eventstore.read_stream('nope', 's');

-- the topic cache notices a topic that was removed (by its owner)
SELECT eventstore.create_topic('gone');
SELECT eventstore.append('gone', '{"id": "22222222-2222-4222-8222-222222222222", "type": "new",
  "version": "1.0", "data": {}, "metadata": {"source": "s", "time": "2026-01-01T00:00:00Z"}}');
DELETE FROM eventstore.events WHERE topic = 'gone';
DELETE FROM eventstore.topics WHERE name = 'gone';
SELECT eventstore.append('gone', '{"id": "33333333-3333-4333-8333-333333333333", "type": "new",
  "version": "1.0", "data": {}, "metadata": {"source": "s", "time": "2026-01-01T00:00:00Z"}}');

-- the cache invalidation function is a trigger only
SELECT eventstore.topics_changed();
