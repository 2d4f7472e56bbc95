-- Stream state: stream_version, last_event, backward read_stream, the view
-- eventstore.streams, close_stream, and snapshots (save_snapshot,
-- load_snapshot), with their NULLs and bad arguments, and what erasure
-- and retention do to snapshots.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
DROP SCHEMA IF EXISTS test_stream_state CASCADE;
CREATE SCHEMA test_stream_state;
SET search_path = test_stream_state, public;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

SELECT eventstore.create_topic('account');
SELECT eventstore.create_topic('other');

CREATE FUNCTION ev(n int) RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object('id', format('00000000-0000-4000-8000-%s', lpad(n::text, 12, '0')),
         'type', 'deposited', 'version', '1.0',
         'data', jsonb_build_object('amount', n),
         'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z'))
$$;

-- five events in acct-1, two in acct-2
SELECT count(eventstore.append('account', ev(n), 'acct-1')) FROM generate_series(1, 5) n;
SELECT count(eventstore.append('account', ev(n), 'acct-2')) FROM generate_series(6, 7) n;

-- stream_version: the last version, 0 for a stream without events
SELECT eventstore.stream_version('account', 'acct-1') AS acct_1,
       eventstore.stream_version('account', 'acct-2') AS acct_2,
       eventstore.stream_version('account', 'nobody') AS nobody,
       eventstore.stream_version('other', 'acct-1') AS other_topic;
-- it is what the next expected_version append needs
SELECT eventstore.append('account', ev(8), 'acct-2', eventstore.stream_version('account', 'acct-2')) > 0 AS appended;

-- last_event: the newest, NULL when none
SELECT stream_version, envelope->'data' AS data FROM eventstore.last_event('account', 'acct-1');
SELECT eventstore.last_event('account', 'nobody') IS NULL AS no_event;

-- read_stream backward: from the newest, or from below a version
SELECT stream_version FROM eventstore.read_stream('account', 'acct-1', backward => true);
SELECT stream_version FROM eventstore.read_stream('account', 'acct-1', 0, 2, true);
SELECT stream_version FROM eventstore.read_stream('account', 'acct-1', after_version => 4, max => 2, backward => true);
SELECT stream_version FROM eventstore.read_stream('account', 'acct-1', after_version => 1, backward => true);
-- and forward as before
SELECT stream_version FROM eventstore.read_stream('account', 'acct-1', 3);

-- the view: one row per stream, positions of its first and last events
SELECT topic, stream, version,
       first_position = (SELECT min(position) FROM eventstore.events e WHERE e.stream = s.stream) AS first_ok,
       last_position = (SELECT max(position) FROM eventstore.events e WHERE e.stream = s.stream) AS last_ok,
       last_recorded_at IS NOT NULL AS recorded, state, closed_at
  FROM eventstore.streams s ORDER BY topic, stream;

-- bad arguments
SELECT eventstore.stream_version(NULL, 'acct-1');
SELECT eventstore.stream_version('account', NULL);
SELECT eventstore.stream_version('no_such_topic', 'acct-1');
SELECT eventstore.last_event('account', NULL);
SELECT eventstore.last_event('no_such_topic', 'acct-1');
SELECT * FROM eventstore.read_stream('account', 'acct-1', backward => NULL);
SELECT * FROM eventstore.read_stream('account', 'acct-1', 0, 0, true);
SELECT * FROM eventstore.read_stream('account', NULL, backward => true);

-- close_stream: appends of new events fail with 55000, a retry of a stored
-- one still returns its position, reads go on
SELECT eventstore.close_stream('account', 'acct-2');
SELECT eventstore.append('account', ev(9), 'acct-2');
SELECT eventstore.append('account', ev(9), 'acct-2', 3);
SELECT * FROM eventstore.append_batch('account', ARRAY[ev(9), ev(10)], 'acct-2');
SELECT eventstore.append('account', ev(8), 'acct-2') = (SELECT position FROM eventstore.events WHERE stream_version = 3 AND stream = 'acct-2') AS retry_ok;
SELECT count(*) AS acct_2_events FROM eventstore.read_stream('account', 'acct-2');
SELECT stream, version, state, closed_at IS NOT NULL AS closed FROM eventstore.streams WHERE stream = 'acct-2';
-- closing again changes nothing; a stream without events can be closed
SELECT closed_at AS first_closed FROM eventstore.stream_heads WHERE stream = 'acct-2' \gset
SELECT eventstore.close_stream('account', 'acct-2');
SELECT closed_at = :'first_closed' AS unchanged FROM eventstore.stream_heads WHERE stream = 'acct-2';
SELECT eventstore.close_stream('account', 'never-used');
SELECT eventstore.append('account', ev(11), 'never-used');
SELECT stream, version, state, first_position FROM eventstore.streams WHERE stream = 'never-used';
-- the other streams are not affected
SELECT eventstore.append('account', ev(12), 'acct-1') > 0 AS appended;
SELECT eventstore.close_stream(NULL, 'x');
SELECT eventstore.close_stream('no_such_topic', 'x');

-- snapshots: save at versions the stream has, load the newest at or below
SELECT eventstore.save_snapshot('account', 'acct-1', 2, '{"balance": 3}');
SELECT eventstore.save_snapshot('account', 'acct-1', 4, '{"balance": 10}');
SELECT * FROM eventstore.load_snapshot('account', 'acct-1');
SELECT * FROM eventstore.load_snapshot('account', 'acct-1', 3);
SELECT * FROM eventstore.load_snapshot('account', 'acct-1', 1);
SELECT * FROM eventstore.load_snapshot('account', 'acct-2');
-- saving a version again replaces its state
SELECT eventstore.save_snapshot('account', 'acct-1', 4, '{"balance": 11}');
SELECT * FROM eventstore.load_snapshot('account', 'acct-1', 4);
-- an aggregate loaded as its snapshot and the events after it
SELECT s.version, s.state->'balance' AS snapshot_balance,
       (s.state->>'balance')::int + coalesce(sum((e.envelope->'data'->>'amount')::int), 0) AS balance
  FROM eventstore.load_snapshot('account', 'acct-1') s
  LEFT JOIN LATERAL eventstore.read_stream('account', 'acct-1', after_version => s.version) e ON true
 GROUP BY s.version, s.state;
-- bad snapshots: versions the stream does not have (22023), NULLs (22004)
SELECT eventstore.save_snapshot('account', 'acct-1', 7, '{}');
SELECT eventstore.save_snapshot('account', 'acct-1', 0, '{}');
SELECT eventstore.save_snapshot('account', 'nobody', 1, '{}');
SELECT eventstore.save_snapshot('account', 'acct-1', NULL, '{}');
SELECT eventstore.save_snapshot('account', 'acct-1', 1, NULL);
SELECT eventstore.save_snapshot('no_such_topic', 'acct-1', 1, '{}');
SELECT * FROM eventstore.load_snapshot(NULL, 'acct-1');
SELECT * FROM eventstore.load_snapshot('no_such_topic', 'acct-1');

-- erasure removes the stream's snapshots with its events
SELECT eventstore.save_snapshot('account', 'acct-2', 2, '{"balance": 13}');
SELECT eventstore.erase_stream('account', 'acct-2') AS erased;
SELECT count(*) AS acct_2_snapshots FROM eventstore.snapshots WHERE stream = 'acct-2';
SELECT count(*) AS acct_2_streams FROM eventstore.streams WHERE stream = 'acct-2';
-- the erased stream's version and closing are kept under a digest of its
-- name: it stays closed, and its version is still 3
SELECT eventstore.stream_version('account', 'acct-2') AS version_kept;
SELECT eventstore.append('account', ev(60), 'acct-2');

-- retention removes a snapshot with the event of its version
SELECT eventstore.create_topic('short');
SELECT count(eventstore.append('short', ev(n), 'old')) FROM generate_series(20, 22) n;
SELECT eventstore.save_snapshot('short', 'old', 1, '{"n": 1}');
SELECT eventstore.save_snapshot('short', 'old', 3, '{"n": 3}');
UPDATE eventstore.events SET recorded_at = now() - interval '2 days'
 WHERE topic = 'short' AND stream_version <= 2;
SELECT eventstore.set_retention('short', interval '1 day');
SELECT eventstore.purge_expired() AS purged;
SELECT version FROM eventstore.snapshots WHERE topic = 'short' ORDER BY version;
SELECT stream, version, first_position = last_position AS one_event_left FROM eventstore.streams WHERE topic = 'short';
-- a snapshot whose event is gone is not loaded, even before retention has
-- removed it (as when a purge and a save cross)
INSERT INTO eventstore.snapshots (topic, stream, version, state) VALUES ('short', 'old', 2, '{"n": 2}');
SELECT * FROM eventstore.load_snapshot('short', 'old', 2);

-- truncate_stream: the events below a version go now, with their
-- snapshots; the stream goes on from its version
SELECT count(eventstore.append('account', ev(n), 'trunc')) FROM generate_series(40, 45) n;
SELECT eventstore.save_snapshot('account', 'trunc', 2, '{"at": 2}');
SELECT eventstore.save_snapshot('account', 'trunc', 5, '{"at": 5}');
SELECT eventstore.truncate_stream('account', 'trunc', 4) AS removed;
SELECT array_agg(stream_version ORDER BY stream_version) AS left FROM eventstore.read_stream('account', 'trunc');
SELECT version FROM eventstore.snapshots WHERE stream = 'trunc';
SELECT eventstore.append('account', ev(46), 'trunc', 6) > 0 AS goes_on;
SELECT stream, version, first_position = (SELECT position FROM eventstore.events WHERE stream = 'trunc' AND stream_version = 4) AS first_is_4
  FROM eventstore.streams WHERE stream = 'trunc';
SELECT eventstore.truncate_stream('account', 'trunc', 4) AS nothing_more;
SELECT eventstore.truncate_stream('account', 'trunc', 8) AS all_of_it;
SELECT eventstore.stream_version('account', 'trunc') AS version_kept;
SELECT eventstore.truncate_stream('account', 'trunc', 9);
SELECT eventstore.truncate_stream('account', 'trunc', 0);
SELECT eventstore.truncate_stream('account', 'trunc', NULL);
SELECT eventstore.truncate_stream('account', NULL, 1);
SELECT eventstore.truncate_stream('no_such_topic', 'trunc', 1);
SELECT eventstore.truncate_stream('account', 'never-appended', 1) AS nothing;

-- set_stream_max_count: the newest n events stay; older ones go now, and
-- those later appends push out are not read and go at the next purge
SELECT count(eventstore.append('account', ev(n), 'capped')) FROM generate_series(70, 75) n;
SELECT eventstore.save_snapshot('account', 'capped', 2, '{"at": 2}');
SELECT eventstore.set_stream_max_count('account', 'capped', 3) AS removed_now;
SELECT array_agg(stream_version ORDER BY stream_version) AS kept FROM eventstore.events WHERE stream = 'capped';
SELECT count(*) AS capped_snapshots FROM eventstore.snapshots WHERE stream = 'capped';
SELECT count(eventstore.append('account', ev(n), 'capped')) FROM generate_series(76, 77) n;
SELECT array_agg(stream_version ORDER BY stream_version) AS stored FROM eventstore.events WHERE stream = 'capped';
SELECT array_agg(stream_version) AS read FROM eventstore.read_stream('account', 'capped');
SELECT array_agg(stream_version) AS read_backward FROM eventstore.read_stream('account', 'capped', backward => true);
SELECT version, max_count, first_position = (SELECT position FROM eventstore.events WHERE stream = 'capped' AND stream_version = 6) AS first_is_6
  FROM eventstore.streams WHERE stream = 'capped';
SELECT eventstore.purge_expired() >= 2 AS purged;
SELECT array_agg(stream_version ORDER BY stream_version) AS after_purge FROM eventstore.events WHERE stream = 'capped';
-- no limit any more: nothing more goes
SELECT eventstore.set_stream_max_count('account', 'capped', NULL) AS removed_now;
SELECT count(eventstore.append('account', ev(n), 'capped')) FROM generate_series(78, 79) n;
SELECT eventstore.purge_expired() AS purged;
SELECT array_agg(stream_version ORDER BY stream_version) AS all_kept FROM eventstore.read_stream('account', 'capped');
SELECT eventstore.set_stream_max_count('account', 'capped', 0);
SELECT eventstore.set_stream_max_count(NULL, 'capped', 1);
SELECT eventstore.set_stream_max_count('no_such_topic', 'capped', 1);

-- privileges: readers read stream state, writers save snapshots and close
-- streams; neither may do the other's part, and a role that is neither
-- reads nothing
SET client_min_messages = warning;
DROP ROLE IF EXISTS stream_state_reader;
DROP ROLE IF EXISTS stream_state_writer;
DROP ROLE IF EXISTS stream_state_topic_reader;
RESET client_min_messages;
CREATE ROLE stream_state_reader IN ROLE eventstore_reader;
CREATE ROLE stream_state_writer IN ROLE eventstore_writer;
CREATE ROLE stream_state_topic_reader;
SELECT eventstore.grant_topic('other', 'read', 'stream_state_topic_reader');
SET ROLE stream_state_reader;
SELECT eventstore.stream_version('account', 'acct-1') AS version;
SELECT count(*) AS streams FROM eventstore.streams;
SELECT version FROM eventstore.load_snapshot('account', 'acct-1');
SELECT eventstore.save_snapshot('account', 'acct-1', 5, '{}');
SELECT eventstore.close_stream('account', 'acct-1');
SELECT eventstore.truncate_stream('account', 'acct-1', 1);
SELECT eventstore.set_stream_max_count('account', 'acct-1', 1);
RESET ROLE;
SET ROLE stream_state_writer;
SELECT eventstore.save_snapshot('account', 'acct-1', 5, '{"balance": 15}');
SELECT eventstore.stream_version('account', 'acct-1');
SELECT count(*) FROM eventstore.streams;
RESET ROLE;
SET ROLE stream_state_topic_reader;
SELECT eventstore.last_event('other', 'x');
SELECT count(*) AS streams FROM eventstore.streams;
RESET ROLE;
-- a role granted read on a topic sees that topic's streams in the view, and
-- only those, until the grant is taken back
SELECT eventstore.append('other', ev(30), 'o-1') > 0 AS appended;
SET ROLE stream_state_topic_reader;
SELECT topic, stream, version FROM eventstore.streams ORDER BY topic, stream;
RESET ROLE;
SELECT eventstore.revoke_topic('other', 'read', 'stream_state_topic_reader');
SET ROLE stream_state_topic_reader;
SELECT count(*) FROM eventstore.streams;
RESET ROLE;
DROP ROLE stream_state_reader;
DROP ROLE stream_state_writer;
DROP ROLE stream_state_topic_reader;

-- A stream's version is the greater of its newest event's and the floor
-- its row keeps: appends to a stream write their events and not its row,
-- and a stream whose newest events go keeps their version.
SELECT eventstore.create_topic('floors');
SELECT eventstore.append('floors', ev(n), 'f-1') > 0 AS appended FROM generate_series(9070, 9071) n;
SELECT xmin AS head_xmin, ctid AS head_ctid FROM eventstore.stream_heads WHERE topic = 'floors' \gset
SELECT eventstore.append('floors', ev(n), 'f-1') > 0 AS appended FROM generate_series(9072, 9074) n;
SELECT xmin = :'head_xmin' AND ctid = :'head_ctid' AS head_row_unchanged
  FROM eventstore.stream_heads WHERE topic = 'floors';
SELECT stream, version, version_floor FROM eventstore.streams JOIN eventstore.stream_heads USING (topic, stream)
 WHERE topic = 'floors';
-- retention removes all of the stream's events: the version stays, and the
-- next event goes on from it
UPDATE eventstore.events SET recorded_at = now() - interval '2 days' WHERE topic = 'floors';
SELECT eventstore.set_retention('floors', interval '1 day');
SELECT eventstore.purge_expired() AS purged;
SELECT version, first_position, last_position FROM eventstore.streams WHERE topic = 'floors';
SELECT eventstore.stream_version('floors', 'f-1') AS version_kept;
SELECT eventstore.append('floors', ev(9075), 'f-1', 5) > 0 AS appended_at_5;
SELECT stream_version FROM eventstore.events WHERE topic = 'floors';
-- truncation of everything keeps it too
SELECT eventstore.truncate_stream('floors', 'f-1', 7) AS removed;
SELECT eventstore.append('floors', ev(9076), 'f-1') > 0 AS appended;
SELECT stream_version FROM eventstore.events WHERE topic = 'floors';
-- a transaction may append to any number of streams: it holds none of
-- their locks once each append is done, so the lock table does not fill
BEGIN;
SELECT count(eventstore.append('floors', ev(n), 'many-' || n)) AS appended
  FROM generate_series(11000, 13999) n;
SELECT count(*) AS stream_locks_held FROM pg_locks
 WHERE locktype = 'object' AND classid = 'eventstore.stream_heads'::regclass
   AND pid = pg_backend_pid();
COMMIT;
SELECT count(*) AS streams, min(version), max(version) FROM eventstore.streams
 WHERE topic = 'floors' AND stream LIKE 'many-%';
-- the functions that close, limit, shorten or erase a stream keep its lock
-- until they commit
BEGIN;
SELECT eventstore.close_stream('floors', 'f-1');
SELECT count(*) AS stream_locks_held FROM pg_locks
 WHERE locktype = 'object' AND classid = 'eventstore.stream_heads'::regclass
   AND pid = pg_backend_pid() AND mode = 'ExclusiveLock';
COMMIT;
-- under REPEATABLE READ a transaction appends to a stream again after its
-- own appends, in later statements and in one
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT eventstore.append('floors', ev(9077), 'rr') > 0 AS first;
SELECT eventstore.append('floors', ev(9078), 'rr') > 0 AS second;
SELECT count(eventstore.append('floors', ev(n), 'rr')) AS in_one_statement FROM generate_series(9079, 9081) n;
COMMIT;
SELECT array_agg(stream_version ORDER BY stream_version) AS rr_versions FROM eventstore.events WHERE stream = 'rr';
