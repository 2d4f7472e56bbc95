-- The inbox: appending by COPY or INSERT, in input order, all or nothing
-- per statement, duplicates discarded, rows checked like append_batch's
-- events, and the append privilege of each row's topic.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
DROP SCHEMA IF EXISTS test_inbox CASCADE;
CREATE SCHEMA test_inbox;
SET search_path = test_inbox, public;
DROP ROLE IF EXISTS es_inbox_writer;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT eventstore.create_topic('tick');
SELECT eventstore.create_topic('rate');
SELECT eventstore.stats_reset();

-- envelope number n (ids ...0001, ...0002, ...), data {"n": n}
CREATE FUNCTION ev(n integer, data jsonb DEFAULT NULL) RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object(
      'id', format('bbbbbbbb-0000-4000-8000-%s', lpad(n::text, 12, '0')),
      'type', 'new', 'version', '1.0',
      'data', coalesce(data, jsonb_build_object('n', n)),
      'metadata', jsonb_build_object('source', 'import', 'time', '2026-01-01T00:00:00Z'))
$$;

-- COPY: one row per event, the statement's count is the rows taken
COPY eventstore.inbox (topic, envelope) FROM STDIN;
tick	{"id": "bbbbbbbb-0000-4000-8000-000000000001", "type": "new", "version": "1.0", "data": {"n": 1}, "metadata": {"source": "import", "time": "2026-01-01T00:00:00Z"}}
tick	{"id": "bbbbbbbb-0000-4000-8000-000000000002", "type": "new", "version": "1.0", "data": {"n": 2}, "metadata": {"source": "import", "time": "2026-01-01T00:00:00Z"}}
rate	{"id": "bbbbbbbb-0000-4000-8000-000000000003", "type": "new", "version": "1.0", "data": {"n": 3}, "metadata": {"source": "import", "time": "2026-01-01T00:00:00Z"}}
\.
SELECT position, topic, data, stream, stream_version FROM eventstore.events ORDER BY position;
-- the inbox itself holds nothing
SELECT count(*) AS rows_in_inbox FROM eventstore.inbox;

-- INSERT ... SELECT: 2500 rows, more than one group; positions follow the
-- input order; an id repeated across groups is discarded
INSERT INTO eventstore.inbox (topic, envelope)
SELECT 'tick', ev(CASE WHEN n = 2500 THEN 10 ELSE n END) FROM generate_series(10, 2500) AS n ORDER BY n;
SELECT count(*) AS stored,
       bool_and(ordered) AS in_input_order
  FROM (SELECT (data->>'n')::int > lag((data->>'n')::int, 1, 0) OVER (ORDER BY position) AS ordered
          FROM eventstore.events WHERE (data->>'n')::int >= 10) e;

-- CSV, and all three columns without a column list (\N: no stream)
COPY eventstore.inbox FROM STDIN (FORMAT csv);
rate,,"{""id"": ""bbbbbbbb-0000-4000-8000-000000002601"", ""type"": ""new"", ""version"": ""1.0"", ""data"": {""n"": 2601}, ""metadata"": {""source"": ""import"", ""time"": ""2026-01-01T00:00:00Z""}}"
\.
COPY eventstore.inbox FROM STDIN;
rate	csv-and-text	{"id": "bbbbbbbb-0000-4000-8000-000000002602", "type": "new", "version": "1.0", "data": {"n": 2602}, "metadata": {"source": "import", "time": "2026-01-01T00:00:00Z"}}
rate	\N	{"id": "bbbbbbbb-0000-4000-8000-000000002603", "type": "new", "version": "1.0", "data": {"n": 2603}, "metadata": {"source": "import", "time": "2026-01-01T00:00:00Z"}}
\.
SELECT topic, stream, stream_version, data FROM eventstore.events
 WHERE (data->>'n')::int BETWEEN 2601 AND 2603 ORDER BY position;
DELETE FROM eventstore.events WHERE (data->>'n')::int BETWEEN 2601 AND 2603;

-- a retry of the same rows stores nothing new
INSERT INTO eventstore.inbox (topic, envelope)
SELECT 'tick', ev(n) FROM generate_series(10, 2499) AS n;
SELECT count(*) AS still_stored FROM eventstore.events;

-- streams: versions gap-free in input order, one stream after another or mixed
INSERT INTO eventstore.inbox (topic, stream, envelope)
SELECT 'tick', 's' || (n % 3), ev(n) FROM generate_series(3001, 3009) AS n ORDER BY n;
SELECT stream, array_agg(stream_version ORDER BY position) AS versions,
       array_agg((data->>'n')::int ORDER BY position) AS events
  FROM eventstore.events WHERE stream IS NOT NULL GROUP BY stream ORDER BY stream;

-- all or nothing: a bad row anywhere leaves nothing of its statement
SELECT max(position) AS last_position_before FROM eventstore.events \gset
INSERT INTO eventstore.inbox (topic, envelope)
SELECT 'tick', CASE WHEN n = 4500 THEN ev(n) - 'type' ELSE ev(n) END
  FROM generate_series(4001, 4600) AS n ORDER BY n;
SELECT count(*) AS stored_after_error FROM eventstore.events WHERE position > :last_position_before;
-- a repeated id with other content: 23505, naming both rows of the statement
INSERT INTO eventstore.inbox (topic, envelope)
SELECT 'tick', CASE WHEN n = 4003 THEN ev(4001, '{"other": true}') ELSE ev(n) END
  FROM generate_series(4001, 4005) AS n ORDER BY n;
-- the same against a stored event
INSERT INTO eventstore.inbox (topic, envelope) VALUES ('tick', ev(1, '{"other": true}'));
SELECT count(*) AS stored_after_errors FROM eventstore.events WHERE position > :last_position_before;

-- errors name the row and field; COPY's context names the line
\set SHOW_CONTEXT errors
COPY eventstore.inbox (topic, envelope) FROM STDIN;
tick	{"id": "bbbbbbbb-0000-4000-8000-000000005001", "type": "new", "version": "1.0", "data": {"n": 1}, "metadata": {"source": "import", "time": "2026-01-01T00:00:00Z"}}
tick	{"id": "bbbbbbbb-0000-4000-8000-000000005002", "type": "new", "version": "1", "data": {"n": 2}, "metadata": {"source": "import", "time": "2026-01-01T00:00:00Z"}}
\.
COPY eventstore.inbox (topic, envelope) FROM STDIN;
tick	{"id": "bbbbbbbb-0000-4000-8000-000000005003", "type": "new"
\.
\set SHOW_CONTEXT never
INSERT INTO eventstore.inbox (topic, envelope) VALUES (NULL, ev(5004));
INSERT INTO eventstore.inbox (topic, envelope) VALUES ('tick', NULL);
INSERT INTO eventstore.inbox (topic, stream, envelope) VALUES ('tick', '', ev(5005));
INSERT INTO eventstore.inbox (topic, stream, envelope) VALUES ('tick', repeat('x', 1025), ev(5005));
INSERT INTO eventstore.inbox (topic, envelope) VALUES ('nosuch', ev(5006));
INSERT INTO eventstore.inbox (topic, envelope) VALUES ('tick', '[1, 2]');
SELECT count(*) AS stored_after_bad_rows FROM eventstore.events WHERE position > :last_position_before;

-- a failed import in a savepoint leaves nothing behind for the next one
BEGIN;
SAVEPOINT a;
INSERT INTO eventstore.inbox (topic, envelope) VALUES ('tick', ev(6001)), ('nosuch', ev(6002));
ROLLBACK TO a;
INSERT INTO eventstore.inbox (topic, envelope) VALUES ('tick', ev(6003));
COMMIT;
SELECT array_agg((data->>'n')::int ORDER BY position) AS stored_after_savepoint
  FROM eventstore.events WHERE position > :last_position_before;

-- an import caught by a function's exception block, then another one
CREATE FUNCTION try_import(n integer, t text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO eventstore.inbox (topic, envelope) VALUES ('tick', ev(n)), (t, ev(n + 1));
    RETURN 'stored';
EXCEPTION WHEN undefined_object THEN
    RETURN 'refused: ' || SQLERRM;
END
$$;
SELECT try_import(7001, 'nosuch') AS first, try_import(7011, 'tick') AS second;
SELECT array_agg((data->>'n')::int ORDER BY position) AS stored_after_function
  FROM eventstore.events WHERE (data->>'n')::int > 7000;

-- with session_replication_role = replica (as some bulk loaders set it)
-- the inbox's triggers still fire: nothing vanishes
SET session_replication_role = replica;
INSERT INTO eventstore.inbox (topic, envelope) VALUES ('tick', ev(7501));
RESET session_replication_role;
SELECT count(*) AS stored_as_replica FROM eventstore.events WHERE (data->>'n')::int = 7501;
SELECT DISTINCT tgenabled FROM pg_trigger WHERE tgrelid = 'eventstore.inbox'::regclass;

-- privileges: the inbox is the writers'; grant_topic('append') gives it
-- for one topic, whose rows alone it then takes
CREATE ROLE es_inbox_writer;
GRANT USAGE ON SCHEMA test_inbox TO es_inbox_writer;
SET ROLE es_inbox_writer;
INSERT INTO eventstore.inbox (topic, envelope) VALUES ('tick', ev(8001));
RESET ROLE;
SELECT eventstore.grant_topic('tick', 'append', 'es_inbox_writer');
SET ROLE es_inbox_writer;
INSERT INTO eventstore.inbox (topic, envelope) VALUES ('tick', ev(8002));
INSERT INTO eventstore.inbox (topic, envelope) VALUES ('rate', ev(8003));
RESET ROLE;
SELECT eventstore.revoke_topic('tick', 'append', 'es_inbox_writer');
SELECT has_table_privilege('es_inbox_writer', 'eventstore.inbox', 'INSERT') AS insert_after_revoke;
SELECT array_agg((data->>'n')::int ORDER BY position) AS stored_by_role
  FROM eventstore.events WHERE (data->>'n')::int > 8000;

-- appended and refused events are counted per topic
SELECT topic, appended, duplicates, refused FROM eventstore.stats
 WHERE appended + duplicates + refused > 0 ORDER BY topic;

SET client_min_messages = warning;
DROP SCHEMA test_inbox CASCADE;
DROP ROLE es_inbox_writer;
