#!/bin/bash
# Point-in-time recovery with pgBackRest, on a cluster of its own: a
# restore to a time or to a named restore point gives a store whose
# consumers and their effects are those of that point.
#
# The cluster is initdb'd into a temporary directory (test/scratch_cluster.sh,
# as the owner of the test cluster's data directory), listens on a Unix
# socket there only, preloads eventstore with the dispatcher
# serving its database pitr, and archives its WAL with pgbackrest
# archive-push into a repository in the same directory (a pgbackrest.conf
# there, passed with --config).  Steps:
#
#   1. stanza-create, check (WAL reaches the repository), a full backup.
#   2. After the backup, so that only the WAL carries them: topic pitr, the
#      in-database consumer pitr_db (batches of 10; its handler inserts the
#      event's id and n into pitr_test.effects, so effects and checkpoint
#      commit together, and at event 121 waits for a row in pitr_test.go)
#      and the outside consumer pitr_out.
#   3. Before the point: 200 events in 20 transactions; pitr_out polls and
#      acks two batches of 25 and polls a third without acking (in flight);
#      another transaction appends one event and waits for go too.  Once
#      pitr_db's handler waits (its batches up to event 121 committed, the
#      one of event 121 open), the restore point pitr_point is created and
#      the time noted (nothing commits until go has a row).  The events and
#      the effects then committed are noted.
#   4. After the point: a row in go lets both waiting transactions commit;
#      100 more events; pitr_out acks its batch in flight and two more;
#      pitr_db catches up.
#   5. pgbackrest check (the WAL past the point is archived), the cluster
#      stops, pgbackrest restore --delta --type=time --target=<the time>
#      --target-action=promote, and the cluster starts with no dispatcher
#      (eventstore.databases = ''), so that the restored state can be
#      looked at before anything moves it.  Then the same again with
#      --type=name --target=pitr_point.
#
# After each restore: the events are exactly those committed at the point;
# pitr_db's checkpoint is its last batch committed before the point and its
# effects are exactly the handler's effects of the events that checkpoint
# counts as handled; pitr_out's checkpoint has its two acked batches and
# the batch in flight leased.  Then, restarted with the dispatcher, pitr_db
# catches up with one effect per event; pitr_out is first given its batch
# in flight at the point again (its lease has lapsed, eventstore.lease_timeout
# = 2s) and then the rest, never an event acked before the point and none
# skipped; new appends get positions after the restored ones and reach both
# consumers.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
. test/fixtures.sh
. test/scratch_cluster.sh
planned=17
echo "1..$planned"

command -v pgbackrest >/dev/null || bail "pgbackrest is not installed (scripts/install-deps)"
main_data=$(psql -XAtq -c "SHOW data_directory") || bail "cannot connect to the test cluster"
owner=$(stat -c %U "$main_data")
bindir=$("${PG_CONFIG:-pg_config}" --bindir)

tmp=$(mktemp -d)
port=
late=
finish() {
	set +e
	[ -n "$late" ] && kill "$late" 2>/dev/null
	[ -n "$port" ] && as_owner "$bindir/pg_ctl" stop -D "$tmp/data" -m immediate -w >/dev/null 2>&1
	rm -rf "$tmp"
}
trap finish EXIT

# The cluster's own database, as in test/tap.sh's q and wait_for.
db=pitr
export PGHOST=$tmp PGUSER=$owner PGOPTIONS="-c client_min_messages=warning"
unset PGPASSWORD
backrest() { as_owner pgbackrest --config="$tmp/pgbackrest.conf" --stanza=pitr "$@"; }
pg_ctl() { as_owner "$bindir/pg_ctl" -D "$tmp/data" -w -t 60 -l "$tmp/server.log" "$@"; }
dispatcher_up="SELECT count(*) > 0 FROM pg_stat_activity
                WHERE backend_type = 'eventstore dispatcher' AND datname = current_database()"
# pitr_db's events by its checkpoint: handled (visible in its progress) or not
handled_sql="SELECT e.id FROM eventstore.events e, eventstore.consumers c
              WHERE c.name = 'pitr_db' AND e.topic = 'pitr'
                AND NOT eventstore.is_undelivered(c, e.stream, e.id, e.position, e.xid)"
# a batch of pitr_out: one line per event, batch_id id attempt
poll() { q "SELECT batch_id || ' ' || id || ' ' || attempt FROM eventstore.poll('pitr_out', 25)"; }
ack() { q "SELECT eventstore.ack('pitr_out', $1)" >/dev/null; }
# poll_ack FILE: one batch polled and acked, its lines appended to FILE;
# fails when there was none
poll_ack() {
	local b
	b=$(poll) && [ -n "$b" ] || return 1
	echo "$b" >>"$1"
	ack "${b%% *}"
}
ids() { cut -d' ' -f2 "$@" | sort; }

# 1: the cluster, archiving through pgbackrest, its stanza and a full backup
scratch_initdb "$tmp" || bail "initdb failed: $scratch_out"
port=$scratch_port
export PGPORT=$port
mkdir -p "$tmp/repo"
[ "$(id -u)" -eq 0 ] && chown "$owner" "$tmp/repo"
cat >"$tmp/pgbackrest.conf" <<EOF
[global]
repo1-path=$tmp/repo
repo1-retention-full=1
log-path=$tmp
lock-path=$tmp
spool-path=$tmp
log-level-console=warn
log-level-file=off
compress-type=none
start-fast=y

[pitr]
pg1-path=$tmp/data
pg1-port=$port
pg1-socket-path=$tmp
pg1-user=$owner
EOF
cat >>"$tmp/data/postgresql.conf" <<EOF
shared_preload_libraries = 'eventstore'
eventstore.databases = 'pitr'
eventstore.lease_timeout = '2s'
archive_mode = on
archive_command = 'pgbackrest --config=$tmp/pgbackrest.conf --stanza=pitr archive-push %p'
EOF
out=$(pg_ctl start 2>&1) || bail "the cluster did not start: $out $(cat "$tmp/server.log")"
psql -XAtq -d postgres -c "CREATE DATABASE pitr" >/dev/null || bail "cannot create the database pitr"
q "CREATE EXTENSION eventstore" >/dev/null || bail "CREATE EXTENSION eventstore failed"
out=$(backrest stanza-create 2>&1 && backrest check 2>&1 && backrest backup --type=full 2>&1)
st=$?
ok $st "stanza-create, check and a full backup of a cluster archiving its WAL through pgbackrest"
[ $st -eq 0 ] || diag "$out"
wait_for 30 "$dispatcher_up" || bail "no dispatcher in pitr"

# After the backup: the topic, the consumers and the effects' table
q "$order_event_sql
   SELECT eventstore.create_topic('pitr');
   CREATE SCHEMA pitr_test;
   CREATE TABLE pitr_test.effects (event_id uuid NOT NULL, n integer NOT NULL);
   CREATE TABLE pitr_test.go ();
   CREATE FUNCTION pitr_test.handle(e eventstore.event) RETURNS void LANGUAGE plpgsql AS \$\$
   BEGIN
       INSERT INTO pitr_test.effects VALUES (e.id, (e.envelope->'data'->>'n')::integer);
       -- event 121 waits for a row in go: its batch is open at the point
       WHILE e.envelope->'data'->>'n' = '121' AND NOT EXISTS (SELECT FROM pitr_test.go) LOOP
           PERFORM pg_sleep(0.05);
       END LOOP;
   END
   \$\$;
   SELECT eventstore.create_consumer('pitr_db', '{pitr}', 'pitr_test.handle(eventstore.event)',
                                     batch_size => 10);
   SELECT eventstore.create_consumer('pitr_out', '{pitr}');" >/dev/null || bail "setup failed"

# Before the point
for i in $(seq 0 19); do
	q "SELECT count(eventstore.append('pitr', ev(n), stream => 's' || n % 5))
	     FROM generate_series($((i * 10 + 1)), $((i * 10 + 10))) n" >/dev/null ||
		bail "append $i failed"
done
poll_ack "$tmp/acked_before" && poll_ack "$tmp/acked_before" || bail "pitr_out got no batch"
poll >"$tmp/in_flight" && [ -s "$tmp/in_flight" ] || bail "pitr_out got no third batch"
in_flight_batch=$(head -1 "$tmp/in_flight" | cut -d' ' -f1)
wait_for 30 "SELECT count(*) > 0 FROM pg_stat_activity
               WHERE backend_type = 'eventstore dispatcher' AND wait_event = 'PgSleep'" ||
	bail "pitr_db's handler does not wait at event 121"
psql -XAtq -v ON_ERROR_STOP=1 -d pitr -c "SET application_name = pitr_late" \
	-c "BEGIN" -c "SELECT eventstore.append('pitr', ev(1000), stream => 'late')" \
	-c "DO \$\$ BEGIN WHILE NOT EXISTS (SELECT FROM pitr_test.go) LOOP PERFORM pg_sleep(0.05); END LOOP; END \$\$" \
	-c "COMMIT" >/dev/null 2>&1 &
late=$!
wait_for 30 "SELECT count(*) > 0 FROM pg_stat_activity
               WHERE application_name = 'pitr_late' AND wait_event = 'PgSleep'" ||
	bail "the open append does not wait"
lsn=$(q "SELECT pg_create_restore_point('pitr_point')") || bail "no restore point"
q "SELECT id FROM eventstore.events ORDER BY id" >"$tmp/events_at_point"
[ "$(wc -l <"$tmp/events_at_point")" -eq 200 ] || bail "not 200 events at the point"
# a time after the point and before anything commits again: pitr_db's
# handler and the open append wait
point_time=$(q "SELECT clock_timestamp()")
handled_at_point=$(q "SELECT count(*) FROM pitr_test.effects")
diag "restore point pitr_point at $lsn, $handled_at_point events handled by pitr_db then"

# After the point
q "INSERT INTO pitr_test.go DEFAULT VALUES" >/dev/null
wait "$late" || bail "the open append failed"
late=
q "SELECT count(eventstore.append('pitr', ev(n), stream => 's' || n % 5))
     FROM generate_series(201, 300) n" >/dev/null || bail "appends after the point failed"
ack "$in_flight_batch" && poll_ack "$tmp/acked_after" && poll_ack "$tmp/acked_after" ||
	bail "pitr_out's batches after the point failed"
wait_for 60 "SELECT count(*) = 301 FROM pitr_test.effects" || bail "pitr_db does not catch up"

# restore_to TYPE TARGET: the cluster stopped, restored by pgbackrest to
# TARGET, started without the dispatcher and promoted; one TAP line
restore_to() {
	local out st
	pg_ctl stop -m fast >/dev/null || bail "the cluster did not stop"
	out=$(backrest restore --delta --type="$1" --target="$2" --target-action=promote 2>&1)
	st=$?
	[ $st -eq 0 ] && out=$(pg_ctl start -o "-c eventstore.databases=" 2>&1)
	st=$((st + $?))
	[ $st -eq 0 ] && wait_for 60 "SELECT NOT pg_is_in_recovery()"
	st=$((st + $?))
	ok $st "pgbackrest restore --delta --type=$1 --target='$2' --target-action=promote, promoted"
	[ $st -eq 0 ] || diag "$out $(tail -20 "$tmp/server.log")"
}

# at_point HOW: four TAP lines, the restored store as it was at the point
at_point() {
	local handled member_handled
	# the events committed at the point, and no other
	q "SELECT id FROM eventstore.events ORDER BY id" >"$tmp/events_restored"
	cmp -s "$tmp/events_at_point" "$tmp/events_restored" &&
		[ "$(q "SELECT count(*) FROM eventstore.events WHERE stream = 'late'")" = 0 ]
	ok $? "$1: the events are exactly the 200 committed at the point: not the open append, nor the 100 after"

	# pitr_db as it was at the point
	handled=$(q "SELECT count(*) FROM ($handled_sql) h")
	member_handled=$(q "SELECT handled FROM eventstore.consumer_status WHERE name = 'pitr_db'")
	[ "$handled" = "$handled_at_point" ] && [ "$handled" -gt 100 ] && [ "$handled" -lt 121 ] &&
		[ "$member_handled" = "$handled" ]
	ok $? "$1: pitr_db's checkpoint is its last batch committed before the point: $handled events handled (consumer_status.handled $member_handled)"
	[ "$(q "SELECT count(*) FROM (
	           (SELECT event_id, n FROM pitr_test.effects
	            EXCEPT ALL
	            SELECT e.id, (e.data->>'n')::integer FROM eventstore.events e WHERE e.id IN ($handled_sql))
	           UNION ALL
	           (SELECT e.id, (e.data->>'n')::integer FROM eventstore.events e WHERE e.id IN ($handled_sql)
	            EXCEPT ALL
	            SELECT event_id, n FROM pitr_test.effects)) d")" = 0 ]
	ok $? "$1: its effects are exactly the handler's effects of those events: none without the checkpoint, none missing"

	# pitr_out as it was at the point: the acked batches delivered, the
	# batch in flight leased and not
	[ "$(q "SELECT batch_id FROM eventstore.consumer_status WHERE name = 'pitr_out'")" = "$in_flight_batch" ] &&
		[ "$(q "SELECT count(*) FROM eventstore.events e, eventstore.consumers c
		         WHERE c.name = 'pitr_out' AND e.topic = 'pitr'
		           AND NOT eventstore.is_undelivered(c, e.stream, e.id, e.position, e.xid)")" = 50 ]
	ok $? "$1: pitr_out's checkpoint: two batches of 25 acked, batch $in_flight_batch leased"
}

# 2-6: archived past the point, restored to the time noted after it
out=$(backrest check 2>&1) || bail "pgbackrest check failed: $out"
restore_to time "$point_time"
at_point "by time"

# 7-11: restored again, to the restore point (recovery follows the backup's
# timeline up to the point, before the one the restore by time began)
restore_to name pitr_point
at_point "by name"

# 12: with the dispatcher, pitr_db goes on: one effect per event (the row
# in go came after the point: event 121 needs it again)
q "INSERT INTO pitr_test.go DEFAULT VALUES" >/dev/null
# (stop and start: pg_ctl restart would keep eventstore.databases = '')
out=$(pg_ctl stop -m fast 2>&1 && pg_ctl start 2>&1) && wait_for 30 "$dispatcher_up" || bail "restart failed: $out"
wait_for 60 "SELECT count(*) = 200 FROM pitr_test.effects"
[ "$(q "SELECT count(*) FROM eventstore.events e FULL JOIN pitr_test.effects f ON f.event_id = e.id
         WHERE f.event_id IS NULL OR e.id IS NULL OR (e.data->>'n')::integer <> f.n")" = 0 ] &&
	[ "$(q "SELECT count(DISTINCT event_id) FROM pitr_test.effects")" = 200 ]
ok $? "pitr_db catches up: each of the 200 events has exactly one effect"

# 13-14: pitr_out, once the lease of its batch in flight has lapsed
polled_again() { poll >"$tmp/first_again" && [ -s "$tmp/first_again" ]; }
wait_until 30 polled_again
[ "$(cut -d' ' -f1 "$tmp/first_again" | sort -u)" = "$in_flight_batch" ] &&
	[ "$(ids "$tmp/first_again")" = "$(ids "$tmp/in_flight")" ] &&
	[ "$(cut -d' ' -f3 "$tmp/first_again" | sort -u)" = 2 ]
ok $? "pitr_out is given its batch in flight at the point again (batch $in_flight_batch, attempt 2)"
ack "$in_flight_batch"
cp "$tmp/first_again" "$tmp/after_restore"
while poll_ack "$tmp/after_restore"; do :; done
[ -z "$(ids "$tmp/acked_before" "$tmp/after_restore" | uniq -d)" ] &&
	[ "$(ids "$tmp/acked_before" "$tmp/after_restore")" = "$(sort "$tmp/events_at_point")" ] &&
	[ "$(comm -12 <(ids "$tmp/acked_before" "$tmp/in_flight") <(ids "$tmp/after_restore"))" = "$(ids "$tmp/in_flight")" ]
ok $? "then the rest: nothing acked before the point again, nothing skipped, only the batch in flight twice"

# 15-17: new appends after the restore
last=$(q "SELECT max(position) FROM eventstore.events")
first_new=$(q "SELECT min(p) FROM (SELECT eventstore.append('pitr', ev(n), stream => 's' || n % 5) p
                                     FROM generate_series(2001, 2020) n) a")
[ -n "$first_new" ] && [ "$first_new" -gt "$last" ]
ok $? "new appends work, numbered after the restored events ($last -> $first_new)"
wait_for 60 "SELECT count(*) = 220 AND count(DISTINCT event_id) = 220 FROM pitr_test.effects"
ok $? "pitr_db handles them, once each"
while poll_ack "$tmp/new"; do :; done
[ "$(ids "$tmp/new")" = "$(q "SELECT id FROM eventstore.events WHERE position >= $first_new" | sort)" ]
ok $? "pitr_out is given them"

exit $((fails > 0))
