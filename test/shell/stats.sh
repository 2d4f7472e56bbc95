#!/bin/bash
# eventstore.stats and eventstore.stats_refused: the counters say what was
# done.  In the test database (its dispatcher running), after
# eventstore.stats_reset(): 100 single appends, 10 repeated ones and a batch
# of 20 with 5 repeats in it; refusals by SQLSTATE class (bad envelopes,
# an unknown topic, a stale expected_version); the dispatcher's
# notifications and rounds; an in-database consumer whose handler fails on
# 3 events, parked after one attempt; 4 events removed by retention.  Then
# eventstore.track_stats = off counts nothing, stats_reset() zeroes, and
# who may read and reset.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
db=$PGDATABASE
echo "1..17"

finish() {
	psql -XAtq >/dev/null 2>&1 <<'SQL'
SET client_min_messages = warning;
SELECT eventstore.drop_consumer('st_consumer')
  FROM eventstore.consumers WHERE name = 'st_consumer';
DROP SCHEMA IF EXISTS stats_test CASCADE;
DROP ROLE IF EXISTS st_reader;
DROP ROLE IF EXISTS st_nobody;
SQL
}
trap finish EXIT

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || bail "setup failed"
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS eventstore CASCADE;
CREATE SCHEMA stats_test;
CREATE FUNCTION stats_test.ev(n int, id uuid DEFAULT gen_random_uuid()) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object('id', id, 'type', 'counted', 'version', '1.0',
                              'data', jsonb_build_object('n', n),
                              'metadata', jsonb_build_object('source', 'test', 'time', '2026-12-01T10:00:00Z'))
$$;
CREATE FUNCTION stats_test.handler(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF (e.envelope->'data'->>'n')::int IN (7, 42, 99) THEN
        RAISE EXCEPTION 'event % refused by the test', e.envelope->'data'->>'n';
    END IF;
END
$$;
SELECT eventstore.create_topic('st_a');
SELECT eventstore.create_topic('st_b');
CREATE ROLE st_reader IN ROLE eventstore_reader;
CREATE ROLE st_nobody;
SQL

stat() {	# stat COLUMN TOPIC (TOPIC '' for the row without a topic)
	local where="topic = '$2'"
	[ -z "$2" ] && where="topic IS NULL"
	q "SELECT coalesce((SELECT $1 FROM eventstore.stats
	                     WHERE database = current_database() AND $where), 0)"
}
refused() {	# refused TOPIC CLASS
	local where="topic = '$1'"
	[ -z "$1" ] && where="topic IS NULL"
	q "SELECT coalesce((SELECT refused FROM eventstore.stats_refused
	                     WHERE database = current_database() AND $where AND sqlstate_class = '$2'), 0)"
}

q "SELECT eventstore.stats_reset()" >/dev/null
[ "$(q "SELECT coalesce(sum(appended + duplicates + refused + parked + purged), 0)
         FROM eventstore.stats WHERE database = current_database()")" = 0 ]
ok $? "stats_reset() sets this database's counters to zero"

# 100 single appends, each its own transaction; then 10 of them again
for i in $(seq 1 100); do
	echo "SELECT eventstore.append('st_a', stats_test.ev($i, ('00000000-0000-4000-8000-' || lpad('$i', 12, '0'))::uuid));"
done | psql -XAtq -v ON_ERROR_STOP=1 >/dev/null
for i in $(seq 1 10); do
	echo "SELECT eventstore.append('st_a', stats_test.ev($i, ('00000000-0000-4000-8000-' || lpad('$i', 12, '0'))::uuid));"
done | psql -XAtq -v ON_ERROR_STOP=1 >/dev/null
[ "$(stat appended st_a) $(stat duplicates st_a)" = "100 10" ]
ok $? "100 appends and 10 repeats: appended 100, duplicates 10 ($(stat appended st_a) $(stat duplicates st_a))"

q "SELECT count(*) FROM eventstore.append_batch('st_a',
       (SELECT array_agg(stats_test.ev(1000 + n % 15, ('00000000-0000-4000-8001-' || lpad((n % 15)::text, 12, '0'))::uuid) ORDER BY n)
          FROM generate_series(1, 20) n))" >/dev/null
[ "$(stat appended st_a) $(stat duplicates st_a) $(stat batches st_a)" = "115 15 1" ]
ok $? "a batch of 20 with 5 repeats in it: appended +15, duplicates +5, batches 1 ($(stat appended st_a) $(stat duplicates st_a) $(stat batches st_a))"

# refusals: 3 bad envelopes, 2 unknown topics, 1 stale expected_version
for _ in 1 2 3; do q "SELECT eventstore.append('st_a', '{\"type\": \"x\"}')" 2>/dev/null; done
for _ in 1 2; do q "SELECT eventstore.append('st_nowhere', stats_test.ev(1))" 2>/dev/null; done
q "SELECT eventstore.append('st_a', stats_test.ev(1), 'stream-1', 0)" >/dev/null
q "SELECT eventstore.append('st_a', stats_test.ev(2), 'stream-1', 0)" 2>/dev/null
[ "$(refused st_a 22) $(refused st_a 40) $(stat refused st_a)" = "3 1 4" ]
ok $? "bad envelopes count as class 22 and a stale expected_version as 40 under their topic ($(refused st_a 22) $(refused st_a 40) $(stat refused st_a))"
[ "$(refused '' 42)" = 2 ] && [ "$(q "SELECT count(*) FROM eventstore.stats WHERE topic = 'st_nowhere'")" = 0 ]
ok $? "appends to a topic that does not exist count as class 42 in the row without a topic, taking no row"

wait_for 10 "SELECT coalesce((SELECT notifications > 0 FROM eventstore.stats
                               WHERE database = current_database() AND topic = 'st_a'), false)"
ok $? "the dispatcher's notifications of st_a are counted ($(stat notifications st_a))"
rounds=$(stat dispatcher_rounds '')
wait_for 10 "SELECT coalesce((SELECT dispatcher_rounds > $rounds FROM eventstore.stats
                               WHERE database = current_database() AND topic IS NULL), false)"
ok $? "dispatcher rounds are counted in the row without a topic"

# an in-database consumer from position 0: 116 events, 3 of them failing
q "SELECT eventstore.create_consumer('st_consumer', ARRAY['st_a'], 'stats_test.handler(eventstore.event)',
                                     max_attempts => 1)" >/dev/null
wait_for 30 "SELECT lag_events = 0 FROM eventstore.consumer_status WHERE name = 'st_consumer'"
ok $? "the consumer caught up"
[ "$(stat parked st_a) $(q "SELECT parked FROM eventstore.consumer_status WHERE name = 'st_consumer'")" = "3 3" ]
ok $? "3 events parked, as consumer_status says"
# A failing event raises once in its batch and, the events before it
# handled again without it, once more when met alone: then it is parked.
failures=$(stat handler_failures st_a)
[ "$failures" -ge 3 ] && [ "$failures" -le 6 ] && [ "$(stat handler_calls st_a)" -ge $((116 + failures)) ]
ok $? "handler calls $(stat handler_calls st_a) (each of 116 events, the failing ones again), failures $failures (3 events, once or twice each)"

# retention: 4 events of st_b older than its retention
q "SELECT eventstore.append('st_b', stats_test.ev(n)) FROM generate_series(1, 4) n" >/dev/null
q "SELECT eventstore.set_retention('st_b', '1 second')" >/dev/null
sleep 1.5
q "SELECT eventstore.purge_expired()" >/dev/null
[ "$(stat purged st_b) $(q "SELECT count(*) FROM eventstore.events WHERE topic = 'st_b'")" = "4 0" ]
ok $? "4 events removed by retention: purged 4"

before=$(stat appended st_a)
psql -XAtq -v ON_ERROR_STOP=1 -c "SET eventstore.track_stats = off" \
	-c "SELECT eventstore.append('st_a', stats_test.ev(n)) FROM generate_series(1, 5) n" >/dev/null
[ "$(stat appended st_a)" = "$before" ]
ok $? "with eventstore.track_stats off nothing is counted"

reset_before=$(q "SELECT stats_reset FROM eventstore.stats WHERE database = current_database() AND topic = 'st_a'")
q "SELECT eventstore.stats_reset()" >/dev/null
[ "$(q "SELECT coalesce(sum(appended + duplicates + refused + parked + purged + handler_calls), 0)
         FROM eventstore.stats WHERE database = current_database()")" = 0 ] &&
	[ "$(q "SELECT stats_reset > '$reset_before' FROM eventstore.stats
	         WHERE database = current_database() AND topic = 'st_a'")" = t ]
ok $? "stats_reset() zeroes every counter and moves stats_reset"
[ "$(q "SELECT count(*) FROM eventstore.stats_refused WHERE database = current_database()")" = 0 ]
ok $? "and stats_refused shows no row once zero"

[ "$(psql -XAtq -c "SET ROLE st_reader" -c "SELECT count(*) > 0 FROM eventstore.stats" 2>&1)" = t ]
ok $? "eventstore_reader may read eventstore.stats"
out=$(psql -XAtq -c "SET ROLE st_nobody" -c "SELECT count(*) FROM eventstore.stats" 2>&1)
grep -q "permission denied" <<<"$out"
ok $? "a role without eventstore's roles may not ($out)"
out=$(psql -XAtq -v VERBOSITY=verbose -c "SET ROLE st_reader" -c "SELECT eventstore.stats_reset()" 2>&1)
grep -q "42501" <<<"$out"
ok $? "only eventstore_admin may reset: 42501 for a reader"

exit $((fails > 0))
