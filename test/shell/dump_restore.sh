#!/bin/bash
# pg_dump and restore: a logical dump holds every stored event with the
# topics, consumers and their progress, and a database restored from it
# goes on where the old one stopped.  The source has birdwatch with users,
# ticks, ratings and its consumers run, and a topic of its own with streams
# and a protected field.  The restore into another database (in one
# transaction, as README "Backups and restore" says) must: give back every
# event, stream, key, topic, consumer, member and protection exactly (all
# columns), the topics and consumers birdwatch's install script creates
# again replaced by the dump's; number the next append after the last
# restored position and the next stream version after the last one;
# decrypt the restored protected fields; and leave birdwatch's consumers
# where they were: nothing to replay, nothing scored, mailed or counted
# twice, new ticks and ratings handled.  The cross-cluster case is
# dump_restore_cluster.sh.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
. test/fixtures.sh
src=dump_source
dst=dump_restored
db=$src
echo "1..12"

drop_databases() {
	psql -XAtq -c "DROP DATABASE IF EXISTS $src" -c "DROP DATABASE IF EXISTS $dst" >/dev/null 2>&1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; drop_databases' EXIT
drop_databases
createdb "$src" && createdb "$dst"

q "SET client_min_messages = warning;
   CREATE EXTENSION birdwatch CASCADE;
   SELECT birdwatch.set_score_secret('a secret of the dump test');
   $order_event_sql
   SELECT eventstore.create_topic('orders');
   SELECT eventstore.protect_fields('orders', 'customer', ARRAY['n']);
   SELECT count(eventstore.append('orders', ev(n), stream => 'o' || n % 4)) FROM generate_series(1, 40) n;
   SELECT eventstore.save_snapshot('orders', 'o1', 5, '{\"orders\": 5}');
   SELECT eventstore.close_stream('orders', 'o3');" >/dev/null
read -r t1 t2 t3 <<<"$(register_watchers 3)"
q "SELECT birdwatch.tick('$t1', 'https://img.example.org/' || i || '.jpg') FROM generate_series(1, 5) i;
   SELECT birdwatch.rate('$t2', 'https://img.example.org/' || i || '.jpg', 1 + i % 5) FROM generate_series(1, 5) i;
   SELECT birdwatch.rate('$t3', 'https://img.example.org/1.jpg', 5);" >/dev/null
run_birdwatch
ok $? "the source: birdwatch in use, its consumers run, and a protected topic with streams"

events_digest() {
	psql -XAtq -d "$1" -c "SELECT count(*) || ' ' || md5(string_agg(e::text, '|' ORDER BY position))
	                          FROM eventstore.events e"
}
table_digest() {
	psql -XAtq -d "$1" -c "SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))
	                          FROM $2 t"
}

pg_dump -d "$src" >"$tmp/dump.sql"
grep -q "^COPY eventstore.events " "$tmp/dump.sql"
ok $? "pg_dump holds the events ($(grep -c . "$tmp/dump.sql") lines)"

psql -X -q -1 -d "$dst" -f "$tmp/dump.sql" >"$tmp/restore.log" 2>&1
! grep -q "ERROR" "$tmp/restore.log"
ok $? "the dump restores without an error$(grep -m3 ERROR "$tmp/restore.log" | sed 's/^/; /' | tr -d '\n')"

[ "$(events_digest "$src")" = "$(events_digest "$dst")" ] &&
	[ "$(table_digest "$src" eventstore.stream_heads)" = "$(table_digest "$dst" eventstore.stream_heads)" ] &&
	[ "$(table_digest "$src" eventstore.snapshots)" = "$(table_digest "$dst" eventstore.snapshots)" ] &&
	[ "$(table_digest "$src" eventstore.subject_keys)" = "$(table_digest "$dst" eventstore.subject_keys)" ]
ok $? "every event, stream (one closed), snapshot and key is restored exactly ($(events_digest "$dst" | cut -d' ' -f1) events)"

same=0
for t in topics consumers members parked upcasters protections; do
	[ "$(table_digest "$src" "eventstore.$t")" = "$(table_digest "$dst" "eventstore.$t")" ] ||
		{ same=1; diag "eventstore.$t differs"; }
done
ok $same "topics with their grants, consumers, members, parked events, upcasters and protections are restored exactly, birdwatch's own in place of those its install script made again"

db=$dst
last=$(q "SELECT max(position) FROM eventstore.events")
next=$(q "SELECT eventstore.append('orders', ev(41), stream => 'o1', expected_version => 10)")
[ "$next" = $((last + 1)) ]
ok $? "the next append is numbered after the last restored position ($last -> $next), its stream version after the restored ones"
! q "SELECT eventstore.append('orders', ev(42), stream => 'o3')" >/dev/null 2>&1 &&
	[ "$(q "SELECT version FROM eventstore.load_snapshot('orders', 'o1')")" = 5 ]
ok $? "the restored closed stream refuses appends, and the restored snapshot loads"
[ "$(q "SELECT count(*) FROM eventstore.read('orders') r, eventstore.unprotect(r) u
          WHERE (u.envelope->'data'->>'n')::int BETWEEN 1 AND 41")" = 41 ]
ok $? "the restored protected fields decrypt with the restored keys"

[ "$(q "SELECT count(*) FROM eventstore.consumer_status WHERE name LIKE 'birdwatch%' AND lag_events > 0")" = 0 ]
ok $? "birdwatch's consumers have nothing to replay"
before="$(q "SELECT count(*) FROM eventstore.events WHERE topic IN ('score', 'notification')") $(q "SELECT count(*) FROM birdwatch.outbox") $(q "SELECT birdwatch.overview() - 'distinct_logins_today'")"
run_birdwatch
after="$(q "SELECT count(*) FROM eventstore.events WHERE topic IN ('score', 'notification')") $(q "SELECT count(*) FROM birdwatch.outbox") $(q "SELECT birdwatch.overview() - 'distinct_logins_today'")"
[ "$before" = "$after" ]
ok $? "and running them scores, queues and counts nothing twice"
[ "$(q "SELECT count(*) FROM eventstore.consumer_status WHERE name LIKE 'birdwatch%' AND lag_events > 0")" = 0 ]
ok $? "and they have caught up"
q "SELECT birdwatch.tick('$t2', 'https://img.example.org/new.jpg');
   SELECT birdwatch.rate('$t1', 'https://img.example.org/new.jpg', 4)" >/dev/null && run_birdwatch
[ "$(q "SELECT count(*) FROM birdwatch.outbox") $(q "SELECT birdwatch.overview()->>'ticks'")" = "$(($(echo "$after" | cut -d' ' -f2) + 1)) 6" ]
ok $? "restored tokens log in, and new ticks and ratings are scored, mailed and counted"

exit $((fails > 0))
