#!/bin/bash
# The Notifier's sent emails and skips expire: the eventstore retention
# task of the dispatcher (the worker that removes expired events) runs the
# cleanup birdwatch registered (eventstore.register_cleanup), and removes
# the sent outbox rows and the skips older than their retention (30 days),
# never an unsent row.  A rating recorded before rows were removed is not
# decided again when delivered once more.  The setting is validated; a
# cleanup that fails is recorded and keeps no event from expiring.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
db=${PGDATABASE:-eventstore_test}
echo "1..16"

set_interval() {
	q "ALTER SYSTEM SET eventstore.retention_interval = '$1'" && q "SELECT pg_reload_conf()" >/dev/null
}
trap 'q "ALTER SYSTEM RESET eventstore.retention_interval" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null' EXIT

# sqlstate SQL: the SQLSTATE SQL fails with (nothing if it succeeds)
sqlstate() {
	psql -XAtq -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$db" -c "$1" 2>&1 >/dev/null |
		sed -n 's/^ERROR: *\([0-9A-Z]\{5\}\):.*/\1/p' | head -1
}

set_interval 0
q "SET client_min_messages = warning;
   DROP EXTENSION IF EXISTS birdwatch;
   DROP EXTENSION IF EXISTS eventstore CASCADE;
   CREATE EXTENSION birdwatch CASCADE;" >/dev/null || bail "birdwatch does not install"

[ "$(q "SELECT name || ' ' || fn || ' ' || retention FROM eventstore.retention_cleanups")" = \
  "birdwatch_notifier birdwatch.purge_notifier(timestamp with time zone,integer) 30 days" ]
ok $? "birdwatch registers its cleanup with eventstore, retention 30 days"

# Rows of every kind: sent long ago, sent lately, unsent for long (a
# recipient whose mail server refuses), skipped long ago and lately.
q "INSERT INTO birdwatch.outbox (id, user_id, source_event, image_url, rating, created_at, sent_at)
   SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'https://img.example.org/' || kind || n || '.jpg', 3,
          now() - age, CASE WHEN kind <> 'unsent' THEN now() - age + interval '1 minute' END
     FROM (VALUES ('old', interval '40 days'), ('recent', interval '2 days'), ('unsent', interval '90 days')) k(kind, age),
          generate_series(1, 30) n;
   INSERT INTO birdwatch.notification_skips (source_event, reason, recorded_at)
   SELECT gen_random_uuid(), 'own image', now() - age
     FROM (VALUES (interval '31 days'), (interval '29 days')) k(age), generate_series(1, 20) n" >/dev/null
kept="SELECT count(*) FILTER (WHERE image_url LIKE '%/old%') || ' ' || count(*) FILTER (WHERE image_url LIKE '%/recent%')
              || ' ' || count(*) FILTER (WHERE image_url LIKE '%/unsent%')
              || ' ' || (SELECT count(*) FILTER (WHERE recorded_at < now() - interval '30 days') || ' '
                                || count(*) FILTER (WHERE recorded_at > now() - interval '30 days')
                           FROM birdwatch.notification_skips)
         FROM birdwatch.outbox"
sleep 1
[ "$(q "$kept")" = "30 30 30 20 20" ]
ok $? "with eventstore.retention_interval = 0 nothing is removed"

set_interval 200ms
wait_for 20 "SELECT count(*) = 0 FROM birdwatch.outbox WHERE image_url LIKE '%/old%'
              AND NOT EXISTS (SELECT FROM birdwatch.notification_skips WHERE recorded_at < now() - interval '30 days')"
ok $? "the dispatcher's retention task removes the sent emails and skips older than 30 days"
got=$(q "$kept")
[ "$got" = "0 30 30 0 20" ]
ok $? "emails sent lately, skips of lately and unsent emails however old stay (old, recent, unsent sent; old, recent skips: $got)"
[ "$(q "SELECT forgotten_before BETWEEN now() - interval '30 days 1 minute' AND now() - interval '30 days'
          FROM birdwatch.notifier_forgotten")" = t ]
ok $? "the Notifier notes that ratings before 30 days ago may have lost their rows"

# A rating delivered again (a replay) after its rows went: passed over.
# The owner is unknown, so a rating decided anew leaves an "unknown user" skip.
rating() {
	echo "ROW(1, '$1', 'rate', NULL, NULL,
	          jsonb_build_object('id', '$1', 'type', 'update', 'version', '1.0',
	                             'data', jsonb_build_object('user', jsonb_build_object('id', gen_random_uuid()),
	                                                        'image', jsonb_build_object('url', 'https://img.example.org/r.jpg',
	                                                                                    'owner', gen_random_uuid()),
	                                                        'rating', 4),
	                             'metadata', jsonb_build_object('source', 'services/TickAPI', 'time', '2026-01-01T00:00:00Z')),
	          now() - interval '$2')::eventstore.event"
}
old_rating=a0000000-0000-4000-8000-000000000001 new_rating=a0000000-0000-4000-8000-000000000002
q "SELECT birdwatch.notify_rating($(rating $old_rating '31 days'));
   SELECT birdwatch.notify_rating($(rating $new_rating '29 days'))" >/dev/null
[ "$(q "SELECT string_agg(source_event || ' ' || reason, ',') FROM birdwatch.notification_skips
          WHERE source_event IN ('$old_rating', '$new_rating')")" = "$new_rating unknown user" ]
ok $? "a rating recorded before the removed rows is not decided again; a later one is"

# The setting.
[ "$(sqlstate "SELECT eventstore.set_cleanup_retention('birdwatch_notifier', interval '-1 day')")" = 22023 ]
ok $? "a negative retention is refused (22023)"
[ "$(sqlstate "SELECT eventstore.set_cleanup_retention('birdwatch_notifier', interval '0')")" = 22023 ]
ok $? "a zero retention is refused (22023)"
[ "$(sqlstate "SELECT eventstore.set_cleanup_retention('birdwatch_notifier', NULL)")" = 22004 ]
ok $? "no retention (for ever) is refused (22004)"
[ "$(sqlstate "SELECT eventstore.set_cleanup_retention('no_such_cleanup', interval '1 day')")" = 42704 ]
ok $? "a cleanup that does not exist is refused (42704)"
[ "$(sqlstate "SET ROLE birdwatch_notifier; SELECT eventstore.set_cleanup_retention('birdwatch_notifier', interval '1 day')")" = 42501 ]
ok $? "a role other than eventstore_admin may not set it (42501)"
[ "$(sqlstate "SELECT eventstore.register_cleanup('broken', 'pg_catalog.now()')")" = 22023 ]
ok $? "register_cleanup refuses a function of another signature (22023)"
q "CREATE ROLE notifier_retention_admin IN ROLE eventstore_admin" 2>/dev/null
q "SET ROLE notifier_retention_admin; SELECT eventstore.set_cleanup_retention('birdwatch_notifier', interval '1 day')" >/dev/null &&
	wait_for 20 "SELECT count(*) = 0 FROM birdwatch.outbox WHERE image_url LIKE '%/recent%'"
ok $? "eventstore_admin sets the retention to 1 day: the emails sent 2 days ago go at the next pass"
got=$(q "$kept")
[ "$got" = "0 0 30 0 1" ]
ok $? "the unsent emails stay, and the skip of the rating decided today ($got)"
q "DROP ROLE notifier_retention_admin" >/dev/null

# A cleanup that fails is recorded and keeps no event from expiring.
q "CREATE FUNCTION public.failing_cleanup(older_than timestamptz, max integer) RETURNS bigint
   LANGUAGE plpgsql AS \$\$ BEGIN RAISE EXCEPTION 'the cleanup fails'; END \$\$;
   SELECT eventstore.register_cleanup('aaa_failing', 'public.failing_cleanup(timestamptz, integer)');
   SELECT eventstore.create_topic('visits', retention => interval '1 hour');
   SELECT eventstore.append('visits', jsonb_build_object('id', gen_random_uuid(), 'type', 'new', 'version', '1.0',
                                'data', '{}'::jsonb, 'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z')))
     FROM generate_series(1, 10);
   UPDATE eventstore.events SET recorded_at = now() - interval '2 hours' WHERE topic = 'visits';
   INSERT INTO birdwatch.notification_skips (source_event, reason, recorded_at)
   VALUES (gen_random_uuid(), 'own image', now() - interval '3 days')" >/dev/null
wait_for 20 "SELECT count(*) = 0 FROM eventstore.events WHERE topic = 'visits'
              AND NOT EXISTS (SELECT FROM birdwatch.notification_skips WHERE recorded_at < now() - interval '1 day')"
ok $? "a failing cleanup neither keeps events from expiring nor the cleanups after it from running"
[ "$(q "SELECT last_error FROM eventstore.retention_cleanups WHERE name = 'aaa_failing'")" = "the cleanup fails" ]
ok $? "its error is noted in eventstore.retention_cleanups.last_error"

q "DELETE FROM eventstore.retention_cleanups WHERE name = 'aaa_failing'; DROP FUNCTION public.failing_cleanup(timestamptz, integer)" >/dev/null
exit $((fails > 0))
