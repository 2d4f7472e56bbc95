#!/bin/bash
# Retention on a schedule: dispatcher worker 0 removes the events older
# than their topic's retention every eventstore.retention_interval, only
# those, while appends go on; 0 turns the schedule off.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
db=${PGDATABASE:-eventstore_test}
echo "1..5"

set_interval() {
	q "ALTER SYSTEM SET eventstore.retention_interval = '$1'" && q "SELECT pg_reload_conf()" >/dev/null
}
trap 'q "ALTER SYSTEM RESET eventstore.retention_interval" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null' EXIT

q "SET client_min_messages = warning;
   DROP EXTENSION IF EXISTS eventstore CASCADE;
   CREATE EXTENSION eventstore;
   SELECT eventstore.create_topic('session', retention => interval '1 hour');
   SELECT eventstore.create_topic('tick');
   CREATE FUNCTION ev(n int) RETURNS jsonb LANGUAGE sql AS \$\$
       SELECT jsonb_build_object('id', gen_random_uuid(), 'type', 'new', 'version', '1.0',
                                 'data', jsonb_build_object('n', n),
                                 'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z'))
   \$\$;
   SELECT count(eventstore.append('session', ev(n))) FROM generate_series(1, 3000) n;
   SELECT count(eventstore.append('tick', ev(n))) FROM generate_series(1, 100) n;
   UPDATE eventstore.events SET recorded_at = recorded_at - interval '2 hours'
    WHERE (topic = 'session' AND (data->>'n')::int <= 2500) OR topic = 'tick';" >/dev/null

set_interval 0
sleep 1.5
[ "$(q "SELECT count(*) FROM eventstore.events WHERE topic = 'session'")" = 3000 ]
ok $? "with eventstore.retention_interval = 0 nothing is removed"

set_interval 200ms
wait_for 20 "SELECT count(*) = 500 FROM eventstore.events WHERE topic = 'session'"
ok $? "with 200ms the dispatcher removes the 2500 expired session events ($(q "SELECT count(*) FROM eventstore.events WHERE topic = 'session'") left)"
[ "$(q "SELECT min((data->>'n')::int) FROM eventstore.events WHERE topic = 'session'")" = 2501 ]
ok $? "the session events left are the 500 newest"
[ "$(q "SELECT count(*) FROM eventstore.events WHERE topic = 'tick'")" = 100 ]
ok $? "tick has no retention: its old events stay"
q "SELECT count(eventstore.append('session', ev(n))) FROM generate_series(1, 10) n;
   UPDATE eventstore.events SET recorded_at = recorded_at - interval '2 hours'
    WHERE topic = 'session' AND (data->>'n')::int <= 10 AND recorded_at > now() - interval '1 hour'" >/dev/null
wait_for 20 "SELECT count(*) = 500 FROM eventstore.events WHERE topic = 'session'"
ok $? "events expiring later are removed at a later pass"

exit $((fails > 0))
