#!/bin/bash
# Changing the number of members of an in-database consumer under load:
# 1 -> 4 -> 3 while pgbench appends to 200 streams and the dispatcher's
# four workers run the members' batches, each handler call writing an
# effect in the batch's transaction.
#
# At the end every appended event has exactly one effect (nothing lost,
# nothing doubled: the change waits for the batches in flight and fences
# the old members, see set_consumer_members), each stream's effects are in
# stream-version order, no retiring member is left, and with 4 members
# batches of different members ran on different workers at the same time.
#
# The cluster is restarted with eventstore.workers = 4 (a postmaster
# setting) and put back as it was at the end.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
db=${PGDATABASE:-eventstore_test}
echo "1..7"

data_dir=$(q "SHOW data_directory")
owner=$(stat -c %U "$data_dir")
pg_ctl="$("${PG_CONFIG:-pg_config}" --bindir)/pg_ctl"
pg_log=$(readlink "/proc/$(head -1 "$data_dir/postmaster.pid")/fd/2")
workers_before=$(q "SHOW eventstore.workers")
workers_sql="SELECT count(*) FROM pg_stat_activity
              WHERE backend_type = 'eventstore dispatcher' AND datname = current_database()"
tmp=$(mktemp -d)
load=

restart_with_workers() {	# restart_with_workers N: the cluster with N dispatcher workers
	q "ALTER SYSTEM SET eventstore.workers = $1" >/dev/null
	(cd / && runuser -u "$owner" -- "$pg_ctl" restart -D "$data_dir" -w -t 60 -m fast \
		-l "$pg_log" >/dev/null 2>&1) &&
		wait_for 30 "SELECT ($workers_sql) = $1"
}

finish() {
	set +e
	[ -n "$load" ] && kill "$load" 2>/dev/null && wait "$load" 2>/dev/null
	q "SELECT eventstore.drop_consumer('mc_notes')" >/dev/null 2>&1
	q "DROP SCHEMA IF EXISTS members_change CASCADE" >/dev/null 2>&1
	q "ALTER SYSTEM RESET eventstore.workers" >/dev/null
	if [ "$(q "SHOW eventstore.workers")" != "$workers_before" ]; then
		(cd / && runuser -u "$owner" -- "$pg_ctl" restart -D "$data_dir" -w -t 60 -m fast \
			-l "$pg_log" >/dev/null 2>&1)
		wait_for 30 "SELECT ($workers_sql) = $workers_before"
	fi
	rm -rf "$tmp"
}
trap finish EXIT

restart_with_workers 4
ok $? "the cluster runs 4 dispatcher workers"

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || { echo "Bail out! setup failed"; exit 1; }
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
SELECT eventstore.create_topic('mc');
CREATE SCHEMA members_change;
CREATE TABLE members_change.effects (n bigserial PRIMARY KEY, id uuid, stream text,
                                     stream_version bigint, backend int);
CREATE FUNCTION members_change.handle(e eventstore.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.001);
    INSERT INTO members_change.effects (id, stream, stream_version, backend)
    VALUES (e.id, e.stream, e.stream_version, pg_backend_pid());
END $$;
CREATE FUNCTION members_change.ev() RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('id', gen_random_uuid(), 'type', 'counted', 'version', '1.0',
                              'data', jsonb_build_object('at', clock_timestamp()),
                              'metadata', jsonb_build_object('source', 'test', 'time', '2026-12-04T10:00:00Z'))
$$;
SELECT eventstore.create_consumer('mc_notes', ARRAY['mc'], 'members_change.handle(eventstore.event)',
                                  batch_size => 20);
SQL

cat >"$tmp/append.sql" <<'SQL'
\set s random(1, 200)
SELECT eventstore.append('mc', members_change.ev(), 'stream-' || :s);
SQL
pgbench -n -c 4 -T 24 -R 400 -f "$tmp/append.sql" "$db" >"$tmp/pgbench.log" 2>&1 &
load=$!

# The members of mc_notes running a batch right now, on distinct workers.
running_sql="SELECT count(*) FROM pg_stat_activity
              WHERE backend_type = 'eventstore dispatcher'
                AND query LIKE 'eventstore: running consumer mc_notes member %'"
max_running=0
sample() {	# sample SECONDS: watch how many members run at once
	local end=$((SECONDS + $1)) r
	while [ $SECONDS -lt $end ]; do
		r=$(q "$running_sql" 2>/dev/null || echo 0)
		[ "$r" -gt "$max_running" ] && max_running=$r
		sleep 0.05
	done
}

sample 6
q "SELECT eventstore.set_consumer_members('mc_notes', 4)" >/dev/null
changed1=$?
max_running=0
sample 8
running_with_4=$max_running
q "SELECT eventstore.set_consumer_members('mc_notes', 3)" >/dev/null
changed2=$?
[ $changed1 -eq 0 ] && [ $changed2 -eq 0 ]
ok $? "set_consumer_members 1 -> 4 -> 3 while events are appended and handled"
wait "$load"
load_status=$?
load=
appended=$(q "SELECT count(*) FROM eventstore.events WHERE topic = 'mc'")
[ $load_status -eq 0 ] && [ "$appended" -gt 1000 ]
ok $? "pgbench appended $appended events to 200 streams"
[ $load_status -eq 0 ] || sed 's/^/# /' "$tmp/pgbench.log" | tail -5

wait_for 90 "SELECT lag_events = 0 FROM eventstore.consumer_status WHERE name = 'mc_notes'
             AND NOT EXISTS (SELECT FROM eventstore.consumer_members
                              WHERE consumer = 'mc_notes' AND retiring)"
ok $? "the consumer catches up and every retiring member is gone"

tally=$(q "SELECT count(*) || ' ' || count(DISTINCT id) || ' '
                  || (SELECT count(*) FROM eventstore.events e WHERE e.topic = 'mc'
                       AND NOT EXISTS (SELECT FROM members_change.effects f WHERE f.id = e.id))
             FROM members_change.effects")
[ "$tally" = "$appended $appended 0" ]
ok $? "every event has exactly one effect (effects, distinct, missing: $tally of $appended)"

out_of_order=$(q "SELECT count(*) FROM (
                    SELECT stream_version,
                           row_number() OVER (PARTITION BY stream ORDER BY n) AS k
                      FROM members_change.effects) f
                   WHERE stream_version <> k")
[ "$out_of_order" = 0 ]
ok $? "each stream's events were handled in version order ($out_of_order out of place)"

members=$(q "SELECT string_agg(member::text, ',' ORDER BY member) FROM eventstore.consumer_members
              WHERE consumer = 'mc_notes'")
[ "$members" = "0,1,2" ] && [ "$running_with_4" -ge 2 ]
ok $? "3 members at the end ($members); with 4 members, up to $running_with_4 ran batches at once"
