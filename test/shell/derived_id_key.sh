#!/bin/bash
# eventstore.derived_id under a key of the installation: two databases
# derive other ids from the same source, one database always the same; the
# key goes into pg_dump's output and comes back with a restore; no role
# but the owner reads it.  An installation updated from 1.3 with events
# keeps the legacy derivation (the ids 1.3 gave) until
# set_derived_id_key(), which switches once; one updated without events
# takes a key at once.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
a=derived_id_a b=derived_id_b restored=derived_id_restored legacy=derived_id_legacy empty=derived_id_empty
db=$a
tmp=$(mktemp -d)
drop_databases() {
	for d in $a $b $restored $legacy $empty; do psql -XAtq -c "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1; done
	psql -XAtq -c "DROP ROLE IF EXISTS derived_id_admin" >/dev/null 2>&1
}
trap 'rm -rf "$tmp"; drop_databases' EXIT
echo "1..13"

# sqlstate DB SQL: the SQLSTATE SQL fails with in DB (nothing if it succeeds)
sqlstate() {
	psql -XAtq -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$1" -c "$2" 2>&1 >/dev/null |
		sed -n 's/^ERROR: *\([0-9A-Z]\{5\}\):.*/\1/p' | head -1
}
derive="SELECT eventstore.derived_id('c0000000-0000-4000-8000-000000000001', 'score_model')"
# The id 1.3 derived for that source and consumer: UUID v5 (SHA-1).
legacy_id=$(/usr/bin/python3 -c "import uuid; print(uuid.uuid5(uuid.UUID('c0000000-0000-4000-8000-000000000001'), 'score_model'))")

drop_databases
for d in $a $b; do
	createdb "$d" && q_in "$d" "SET client_min_messages = warning; CREATE EXTENSION eventstore" >/dev/null ||
		bail "eventstore does not install in $d"
done

id_a=$(q_in $a "$derive") id_b=$(q_in $b "$derive")
[ -n "$id_a" ] && [ -n "$id_b" ] && [ "$id_a" != "$id_b" ] && [ "$id_a" != "$legacy_id" ]
ok $? "two installations derive different ids from the same source and consumer ($id_a, $id_b)"
[ "$(q_in $a "$derive")" = "$id_a" ] &&
	[ "$(q_in $a "SELECT count(DISTINCT eventstore.derived_id('c0000000-0000-4000-8000-000000000001', 'score_model'))
	               FROM generate_series(1, 1000)")" = 1 ]
ok $? "one installation derives the same id every time, in every session"
[ "$(q_in $a "SELECT substr(($derive)::text, 15, 1) || substr(($derive)::text, 20, 1) IN ('88', '89', '8a', '8b')")" = t ]
ok $? "the id is a UUID of version 8, RFC 4122 variant"
[ "$(q_in $a "SELECT count(DISTINCT eventstore.derived_id(gen_random_uuid(), c)) FROM generate_series(1, 500), unnest(ARRAY['x', 'y']) c")" = 1000 ]
ok $? "other sources or consumers give other ids"

# Nobody but the owner reads the key.
psql -XAtq -c "CREATE ROLE derived_id_admin IN ROLE eventstore_admin, eventstore_writer, eventstore_reader" >/dev/null
got=""
for r in derived_id_admin eventstore_admin eventstore_writer eventstore_reader pg_monitor; do
	got="$got$(sqlstate $a "SET ROLE $r; SELECT key FROM eventstore.derived_id_key") "
done
[ "$got" = "42501 42501 42501 42501 42501 " ]
ok $? "no role but the owner may read eventstore.derived_id_key, not even through eventstore_admin (42501 each: $got)"
[ "$(q_in $a "SET ROLE derived_id_admin; $derive")" = "$id_a" ]
ok $? "a role with derived_id derives the same id without reading the key"

# pg_dump carries the key; a restore brings it back in place of the one the
# restore's CREATE EXTENSION made.
pg_dump -d $a >"$tmp/dump.sql" && grep -q "derived_id_key" "$tmp/dump.sql"
ok $? "pg_dump writes the key out"
createdb $restored && psql -XAq -v ON_ERROR_STOP=1 -d $restored -f "$tmp/dump.sql" 2>"$tmp/restore.log" >/dev/null
ok $? "the dump restores$( [ -s "$tmp/restore.log" ] && echo ": $(head -3 "$tmp/restore.log")")"
[ "$(q_in $restored "$derive")" = "$id_a" ] && [ "$(q_in $restored "SELECT count(*) FROM eventstore.derived_id_key")" = 1 ]
ok $? "the restored installation derives the ids of the dumped one"

# Updated from 1.3: the legacy ids while there are events.
createdb $legacy && createdb $empty
for d in $legacy $empty; do
	q_in "$d" "SET client_min_messages = warning; CREATE EXTENSION eventstore VERSION '1.3'" >/dev/null
done
q_in $legacy "SELECT eventstore.create_topic('orders');
              SELECT eventstore.append('orders', jsonb_build_object('id', gen_random_uuid(), 'type', 'new', 'version', '1.0',
                  'data', '{}'::jsonb, 'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z')))" >/dev/null
before=$(q_in $legacy "$derive")
for d in $legacy $empty; do q_in "$d" "ALTER EXTENSION eventstore UPDATE" >/dev/null; done
[ "$before" = "$legacy_id" ] && [ "$(q_in $legacy "$derive")" = "$legacy_id" ] &&
	[ "$(q_in $legacy "SELECT key IS NULL FROM eventstore.derived_id_key")" = t ]
ok $? "updated from 1.3 with events: the ids 1.3 derived ($legacy_id), so that a source seen again derives nothing new"
id_empty=$(q_in $empty "$derive")
[ "$id_empty" != "$legacy_id" ] && [ "$(q_in $empty "SELECT key IS NOT NULL FROM eventstore.derived_id_key")" = t ]
ok $? "updated from 1.3 without events: a key at once ($id_empty)"
# A session open across the switch: it derived (and cached) the legacy id
# before, and derives under the key after.
q_in $legacy "$derive" "SELECT pg_sleep(2)" "$derive" >"$tmp/session" &
session=$!
sleep 1
q_in $legacy "SET ROLE derived_id_admin; SELECT eventstore.set_derived_id_key()" >/dev/null
wait $session
id_legacy=$(q_in $legacy "$derive")
[ "$id_legacy" != "$legacy_id" ] && [ "$(q_in $legacy "$derive")" = "$id_legacy" ] &&
	[ "$(sed -n 1p "$tmp/session") $(sed -n 3p "$tmp/session")" = "$legacy_id $id_legacy" ]
ok $? "set_derived_id_key() (eventstore_admin) switches to a key, also in a session open across the switch ($(paste -sd ' ' "$tmp/session"))"
[ "$(sqlstate $legacy "SELECT eventstore.set_derived_id_key()")" = 55000 ] && [ "$(q_in $legacy "$derive")" = "$id_legacy" ]
ok $? "a key once set is never replaced (55000), the ids stay"

exit $((fails > 0))
