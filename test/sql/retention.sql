-- Retention: set_retention, purge_expired removing only expired events of
-- topics with a retention, consumers counting what expired before they got
-- it, dedupe of retained events, and the archive publication's row filter.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
DROP SCHEMA IF EXISTS test_retention CASCADE;
CREATE SCHEMA test_retention;
SET search_path = test_retention, public;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

CREATE FUNCTION ev(n int) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'id', ('e0000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid,
        'type', 'login', 'version', '1.0', 'data', jsonb_build_object('n', n),
        'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z'))
$$;
-- Events are made old by moving their recording time back.
CREATE FUNCTION age_events(topic text, upto int, by interval) RETURNS void LANGUAGE sql AS $$
    UPDATE eventstore.events e SET recorded_at = recorded_at - by
     WHERE e.topic = age_events.topic
       AND e.id <= ('e0000000-0000-4000-8000-' || lpad(upto::text, 12, '0'))::uuid
$$;

SELECT eventstore.create_topic('user', retention => interval '30 days');
SELECT eventstore.create_topic('tick');
SELECT eventstore.create_topic('audit');
SELECT name, retention FROM eventstore.topics ORDER BY name;

-- set_retention
SELECT eventstore.set_retention('audit', interval '1 year');
SELECT eventstore.set_retention('audit', NULL);
SELECT eventstore.set_retention('audit', interval '0');
SELECT eventstore.set_retention('audit', interval '-1 day');
SELECT eventstore.set_retention('nope', interval '1 day');
SELECT eventstore.set_retention(NULL, interval '1 day');
SELECT name, retention FROM eventstore.topics ORDER BY name;

-- 10 user events and 10 tick events; a consumer of user that has taken
-- the first 3, and one that has taken none.
SELECT count(eventstore.append('user', ev(n))) FROM generate_series(1, 10) n;
SELECT count(eventstore.append('tick', ev(100 + n))) FROM generate_series(1, 10) n;
SELECT eventstore.create_consumer('reader_ahead', ARRAY['user']);
SELECT eventstore.create_consumer('reader_behind', ARRAY['user', 'tick']);
SELECT count(*) AS polled FROM eventstore.poll('reader_ahead', 3);
SELECT eventstore.ack('reader_ahead', 1);

-- Nothing has expired yet.
SELECT eventstore.purge_expired() AS removed;

-- The first 6 user events and every tick event become 31 days old: only
-- the user events go, tick has no retention.
SELECT age_events('user', 6, interval '31 days');
SELECT age_events('tick', 110, interval '400 days');
SELECT eventstore.purge_expired() AS removed;
SELECT topic, count(*) FROM eventstore.events GROUP BY topic ORDER BY topic;
SELECT min((envelope->'data'->>'n')::int) AS first_user_event_left FROM eventstore.stored_events WHERE topic = 'user';
SELECT eventstore.purge_expired() AS removed_again;

-- Consumers: reader_ahead had 3 of the 6, reader_behind none of them.
SELECT name, skipped, lag_events FROM eventstore.consumer_status ORDER BY name;
SELECT count(*) AS reader_behind_gets, min((envelope->'data'->>'n')::int) AS first
  FROM eventstore.poll('reader_behind', 100);
SELECT count(*) AS reader_ahead_gets, min((envelope->'data'->>'n')::int) AS first
  FROM eventstore.poll('reader_ahead', 100);

-- A retained event is still deduplicated: same position, nothing written.
SELECT eventstore.append('user', ev(7)) = (SELECT position FROM eventstore.events WHERE id = (ev(7)->>'id')::uuid)
    AS retained_duplicate;
SELECT count(*) AS user_events FROM eventstore.events WHERE topic = 'user';

-- The archive publication: inserts only, every topic without retention.
SELECT eventstore.publish_archive();
SELECT pubname, pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication;
SELECT pg_get_expr(prqual, prrelid) AS row_filter FROM pg_publication_rel;
SELECT eventstore.set_retention('audit', interval '90 days');
SELECT pg_get_expr(prqual, prrelid) AS row_filter FROM pg_publication_rel;
SELECT eventstore.set_retention('audit', NULL);
SELECT eventstore.create_topic('session', retention => interval '1 day');
SELECT pg_get_expr(prqual, prrelid) AS row_filter FROM pg_publication_rel;
SELECT eventstore.publish_archive();
DROP PUBLICATION eventstore_archive;

-- erase_stream: every event of one stream at once, by an eventstore_admin
-- or a role granted erase on the topic; consumers count what they missed.
SELECT count(eventstore.append('user', ev(200 + n), stream => 'person-1')) FROM generate_series(1, 5) n;
SELECT count(eventstore.append('user', ev(300 + n), stream => 'person-2')) FROM generate_series(1, 3) n;
SELECT count(*) AS reader_ahead_gets FROM eventstore.poll('reader_ahead', 100);
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'es_test_eraser') THEN
        CREATE ROLE es_test_eraser;
    END IF;
END $$;
SET ROLE es_test_eraser;
SELECT eventstore.erase_stream('user', 'person-1');
RESET ROLE;
SELECT eventstore.grant_topic('user', 'erase', 'es_test_eraser');
SET ROLE es_test_eraser;
SELECT eventstore.erase_stream('tick', 'person-1');
SELECT eventstore.erase_stream('user', 'person-1') AS erased;
SELECT eventstore.erase_stream('user', 'person-1') AS erased_again;
SELECT eventstore.erase_stream(NULL, 'person-1');
SELECT eventstore.erase_stream('user', NULL);
SELECT eventstore.erase_stream('nope', 'x');
RESET ROLE;
SELECT stream, count(*) FROM eventstore.events WHERE topic = 'user' AND stream IS NOT NULL GROUP BY stream;
SELECT count(*) AS person_1_stream_row FROM eventstore.streams WHERE stream = 'person-1';
-- Neither consumer had received person-1's 5 events (reader_ahead still
-- holds its last batch, unacked): each counts them as skipped.
SELECT name, skipped FROM eventstore.consumer_status ORDER BY name;
-- The stream's name is gone (only a keyed digest of it is kept), and a new
-- event of the stream goes on from the version it had reached: 6.
SELECT count(*) AS erased_rows,
       count(*) FILTER (WHERE position(convert_to('person-1', 'UTF8') IN digest) > 0) AS holding_the_name,
       min(length(digest)) AS digest_bytes
  FROM eventstore.erased_streams WHERE topic = 'user';
SELECT eventstore.stream_version('user', 'person-1') AS version_kept;
SELECT eventstore.append('user', ev(210), stream => 'person-1', expected_version => 0);
SELECT eventstore.append('user', ev(210), stream => 'person-1', expected_version => 5) > 0 AS goes_on;
SELECT stream_version FROM eventstore.events WHERE stream = 'person-1';
SELECT eventstore.revoke_topic('user', 'erase', 'es_test_eraser');
DROP ROLE es_test_eraser;
