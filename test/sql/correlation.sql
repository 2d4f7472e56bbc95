-- Correlation and causation: metadata.correlation_id and causation_id are
-- checked when present, filled in by appends (from a cause named by the
-- producer, or from the event an in-database handler is handling), and
-- read_correlated finds the events of one story through its index.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
DROP SCHEMA IF EXISTS test_correlation CASCADE;
CREATE SCHEMA test_correlation;
SET search_path = test_correlation, public;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT eventstore.create_topic('tick');
SELECT eventstore.create_topic('score');

CREATE FUNCTION ev(id text, metadata jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object('id', id, 'type', 'new', 'version', '1.0', 'data', '{}'::jsonb,
         'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z') || metadata)
$$;
CREATE FUNCTION meta(event_id text) RETURNS jsonb LANGUAGE sql AS $$
  SELECT e.metadata - 'source' - 'time' FROM eventstore.events e WHERE e.id = event_id::uuid
$$;

-- bad values: 22023 naming the member
SELECT eventstore.append('tick', ev('c0000000-0000-4000-8000-000000000001', '{"correlation_id": "story-1"}'));
SELECT eventstore.append('tick', ev('c0000000-0000-4000-8000-000000000001', '{"causation_id": 7}'));
SELECT eventstore.is_valid(ev('c0000000-0000-4000-8000-000000000001', '{"correlation_id": "C0000000-0000-4000-8000-0000000000AA"}')) AS uppercase_ok;

-- an event that starts a story: what the producer set, nothing added
SELECT eventstore.append('tick', ev('c0000000-0000-4000-8000-000000000001',
       '{"correlation_id": "c0000000-0000-4000-8000-000000000001"}')) AS p;
SELECT meta('c0000000-0000-4000-8000-000000000001');
-- and one without any: nothing added either
SELECT eventstore.append('tick', ev('c0000000-0000-4000-8000-000000000002')) AS p;
SELECT meta('c0000000-0000-4000-8000-000000000002');

-- a cause named by the producer: the correlation is the cause's, or the
-- cause's id when it has none or is not stored
SELECT eventstore.append('score', ev('c0000000-0000-4000-8000-000000000011',
       '{"causation_id": "c0000000-0000-4000-8000-000000000001"}')) AS p;
SELECT meta('c0000000-0000-4000-8000-000000000011');
SELECT eventstore.append('score', ev('c0000000-0000-4000-8000-000000000012',
       '{"causation_id": "c0000000-0000-4000-8000-000000000002"}')) AS p;
SELECT meta('c0000000-0000-4000-8000-000000000012');
SELECT eventstore.append('score', ev('c0000000-0000-4000-8000-000000000013',
       '{"causation_id": "c0000000-0000-4000-8000-0000000000ff"}')) AS p;
SELECT meta('c0000000-0000-4000-8000-000000000013');
-- a cause stored before correlation ids were checked, with something else
-- in its correlation_id: the cause's id is passed on instead
INSERT INTO eventstore.events (id, topic, type, version_major, version_minor, data, metadata, xid)
VALUES ('c0000000-0000-4000-8000-0000000000a0', 'tick', 'new', 1, 0, '{}',
        '{"source": "old", "time": "2020-01-01T00:00:00Z", "correlation_id": "x\", \"evil\": \"y"}',
        pg_current_xact_id());
SELECT eventstore.append('score', ev('c0000000-0000-4000-8000-000000000014',
       '{"causation_id": "c0000000-0000-4000-8000-0000000000a0"}')) > 0 AS stored;
SELECT meta('c0000000-0000-4000-8000-000000000014');
-- a retry of the same append is a duplicate, not a conflict
SELECT eventstore.append('score', ev('c0000000-0000-4000-8000-000000000011',
       '{"causation_id": "c0000000-0000-4000-8000-000000000001"}')) AS same_position;

-- an in-database consumer deriving events: each is caused by the event
-- handled, and carries its correlation
CREATE FUNCTION derive(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM eventstore.append('score', jsonb_build_object(
        'id', eventstore.derived_id(e.id, 'deriver'), 'type', 'update', 'version', '1.0',
        'data', '{}'::jsonb,
        'metadata', jsonb_build_object('source', 'deriver', 'time', '2026-11-27T10:00:01Z')));
END
$$;
SELECT eventstore.create_consumer('deriver', ARRAY['tick'], 'derive(eventstore.event)');
SELECT eventstore.run_consumer('deriver') AS handled;
SELECT e.metadata->>'causation_id' = t.id::text AS caused_by_tick,
       e.metadata->>'correlation_id' AS correlation
  FROM eventstore.events t
  JOIN eventstore.events e ON e.id = eventstore.derived_id(t.id, 'deriver')
 WHERE t.topic = 'tick' ORDER BY t.position;
-- handled again from the start: the same completion, so duplicates
SELECT eventstore.reset_consumer('deriver', 0);
SELECT eventstore.run_consumer('deriver') AS handled_again;
SELECT count(*) AS score_events FROM eventstore.events WHERE topic = 'score';

-- read_correlated: the story of tick 1, in position order (the derived id
-- is the installation's own: shown by what it is)
SELECT topic, CASE WHEN (envelope->>'id')::uuid = eventstore.derived_id('c0000000-0000-4000-8000-000000000001', 'deriver')
                   THEN 'derived from tick 1 by deriver' ELSE envelope->>'id' END AS id
  FROM eventstore.read_correlated('c0000000-0000-4000-8000-000000000001');
SELECT count(*) AS none FROM eventstore.read_correlated('c0000000-0000-4000-8000-0000000000ee');
SELECT * FROM eventstore.read_correlated(NULL);
-- through the index
SET enable_seqscan = off;
EXPLAIN (COSTS OFF)
SELECT e.position FROM eventstore.events e
 WHERE e.metadata ? 'correlation_id'
   AND lower(e.metadata ->> 'correlation_id') = 'c0000000-0000-4000-8000-000000000001';
RESET enable_seqscan;
