-- Reads: read by topic and across topics, get by id, and envelopes exactly
-- as appended.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
-- this file's own helpers live in its own schema
DROP SCHEMA IF EXISTS test_read CASCADE;
CREATE SCHEMA test_read;
SET search_path = test_read, public;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT eventstore.create_topic('tick');
SELECT eventstore.create_topic('rate', '2.0');
SELECT eventstore.create_topic('empty');

CREATE TEMP TABLE appended (n serial, topic text, envelope jsonb);
INSERT INTO appended (topic, envelope) VALUES
 ('tick', '{"id": "10000000-0000-4000-8000-000000000001", "type": "new", "version": "1.0",
   "data": {"user": {"id": "7f9c2a34-3f57-4b8e-9a4b-0c1e5d2b6a10"}, "image": {"url": "https://birds.example/1.jpg"}},
   "metadata": {"source": "services/TickAPI", "time": "2026-11-27T10:00:00.123456+01:00", "trace": "abc"}}'),
 ('rate', '{"id": "10000000-0000-4000-8000-000000000002", "type": "update", "version": "2.0",
   "data": {"user": {"id": "7f9c2a34-3f57-4b8e-9a4b-0c1e5d2b6a10"},
            "image": {"url": "https://birds.example/1.jpg", "owner": "7f9c2a34-3f57-4b8e-9a4b-0c1e5d2b6a10"}, "rating": 3},
   "metadata": {"source": "services/TickAPI", "time": "2026-11-27T10:00:01Z"}}'),
 ('rate', '{"id": "10000000-0000-4000-8000-000000000003", "type": "update", "version": "1.0",
   "data": {"user": {"id": "7f9c2a34-3f57-4b8e-9a4b-0c1e5d2b6a10"}, "image_url": "https://birds.example/1.jpg", "rating": 1.50},
   "metadata": {"source": "services/TickAPI", "time": "1985-04-12t23:20:50.52z"}}'),
 ('tick', '{"id": "10000000-0000-4000-8000-000000000004", "type": "new", "version": "1.0",
   "data": {"unicode": "Grünfink \u00e9 \ud83d\udc26", "nested": {"a": [1, 2, {"b": null}]}, "big": 12345678901234567890.5},
   "metadata": {"source": "services/TickAPI", "time": "2026-11-27T10:00:02Z"}}');

SELECT n, eventstore.append(topic, envelope) AS position FROM appended ORDER BY n;

-- every envelope reads back equal to what was appended
SELECT a.n, e.envelope = a.envelope AS same_envelope, e.topic = a.topic AS same_topic
  FROM appended a JOIN eventstore.read(NULL) e ON e.id = (a.envelope->>'id')::uuid
 ORDER BY a.n;
SELECT a.n, (eventstore.get((a.envelope->>'id')::uuid)).envelope = a.envelope AS get_same
  FROM appended a ORDER BY a.n;

-- read: by topic, after a position, limited; all topics when NULL
SELECT position, topic, envelope->>'id' AS id FROM eventstore.read('tick');
SELECT position, topic FROM eventstore.read('rate', 2);
SELECT position, topic FROM eventstore.read(NULL);
SELECT position, topic FROM eventstore.read(NULL, 1, 2);
SELECT count(*) FROM eventstore.read('empty');
SELECT * FROM eventstore.read('tick', 0, 0);
SELECT * FROM eventstore.read('tick', 0, NULL);

-- get: one event, NULL for an unknown id
SELECT position, topic, stream, stream_version, envelope->>'type' AS type
  FROM eventstore.get('10000000-0000-4000-8000-000000000002');
SELECT eventstore.get('99999999-0000-4000-8000-000000000000') IS NULL AS missing;
