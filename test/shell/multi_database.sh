#!/bin/bash
# The dispatcher serves every database of the cluster where the extension
# is installed, and each one on its own.
#
# With eventstore.databases = '*' (the default; the test cluster names
# only its test database) and eventstore.max_topic_slots = 4, set with
# ALTER SYSTEM and a restart: three databases created after the server
# started.  mdb_a and mdb_b get the extension and an in-database consumer;
# mdb_c does not.  Appends in both are handled by their consumers with
# nobody calling run_consumer; a LISTEN eventstore in each hears its own
# topics only, also the topics beyond the four notification slots (their
# appends notify themselves); mdb_c gets no worker and the server log no
# failure.  Then DROP EXTENSION in mdb_a makes its workers leave while
# mdb_b's go on, and DROP DATABASE mdb_b without FORCE succeeds at once
# although its workers were connected, while the test database's dispatch
# goes on.  Last, the old name eventstore.database.  Settings are put
# back (with a restart) at the end, also when the script dies.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
db=${PGDATABASE:-eventstore_test}
main=$db
echo "1..11"

data_dir=$(q "SHOW data_directory")
owner=$(stat -c %U "$data_dir")
pg_ctl="$("${PG_CONFIG:-pg_config}" --bindir)/pg_ctl"
pg_log=$(readlink "/proc/$(head -1 "$data_dir/postmaster.pid")/fd/2")
[ -f "$pg_log" ] && [ -x "$pg_ctl" ] || bail "cannot find the server log ($pg_log) or pg_ctl ($pg_ctl)"

restart_cluster() {
	local out
	out=$(cd / && runuser -u "$owner" -- "$pg_ctl" restart -D "$data_dir" -w -t 60 \
		-m fast -l "$pg_log" 2>&1) || { diag "pg_ctl restart failed: $out"; return 1; }
}
workers_in() {	# SQL: the dispatcher workers connected to database $1
	echo "SELECT count(*) FROM pg_stat_activity
	       WHERE backend_type = 'eventstore dispatcher' AND datname = '$1'"
}
gucs="'eventstore.databases', 'eventstore.database', 'eventstore.max_topic_slots'"
saved_gucs=$(q "SELECT format('ALTER SYSTEM SET %s = %L', name, setting)
                  FROM pg_file_settings
                 WHERE sourcefile LIKE '%/postgresql.auto.conf' AND name IN ($gucs)
                 ORDER BY seqno")

finish() {
	set +e
	for d in mdb_a mdb_b mdb_c; do
		q "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1
	done
	q "SELECT eventstore.drop_consumer('mdb_main')" >/dev/null 2>&1
	q "DROP SCHEMA IF EXISTS mdb_test CASCADE" >/dev/null 2>&1
	q "ALTER SYSTEM RESET eventstore.databases" >/dev/null
	q "ALTER SYSTEM RESET eventstore.database" >/dev/null
	q "ALTER SYSTEM RESET eventstore.max_topic_slots" >/dev/null
	while read -r stmt; do
		[ -n "$stmt" ] && q "$stmt" >/dev/null
	done <<<"$saved_gucs"
	restart_cluster
	wait_for 60 "SELECT ($(workers_in "$main")) >= 1"
}
trap finish EXIT

q "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS eventstore" >/dev/null
q "ALTER SYSTEM SET eventstore.databases = '*'" >/dev/null
q "ALTER SYSTEM SET eventstore.max_topic_slots = 4" >/dev/null
restart_cluster || bail "restart failed"
wait_for 60 "SELECT ($(workers_in "$main")) >= 1" || bail "no dispatcher in $main after the restart"
log_start=$(stat -c %s "$pg_log")

# The test database's own consumer, to show its dispatch goes on.
psql -XAtq -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || bail "setup of $main failed"
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS mdb_test CASCADE;
CREATE SCHEMA mdb_test;
CREATE TABLE mdb_test.effects (event_id uuid PRIMARY KEY);
CREATE FUNCTION mdb_test.handle(e eventstore.event) RETURNS void
LANGUAGE sql AS $$ INSERT INTO mdb_test.effects VALUES (e.id) $$;
SELECT eventstore.create_topic('mdb_main');
SELECT eventstore.create_consumer('mdb_main', '{mdb_main}', 'mdb_test.handle(eventstore.event)');
SQL

envelope="jsonb_build_object('id', gen_random_uuid(), 'type', 'tested', 'version', '1.0',
          'data', '{}'::jsonb, 'metadata', jsonb_build_object('source', 'multi_database.sh',
          'time', '2026-01-01T00:00:00Z'))"
append_in() {	# append_in DB TOPIC: one event
	q_in "$1" "SELECT eventstore.append('$2', $envelope)" >/dev/null
}
effects_in() { q_in "$1" "SELECT count(*) FROM mdb_test.effects"; }

# ---------------------------------------------------------------------------
# 1. Databases created after the start, two with the extension: served.
for d in mdb_a mdb_b mdb_c; do
	q "CREATE DATABASE $d" >/dev/null || bail "CREATE DATABASE $d failed"
done
for d in mdb_a mdb_b; do
	psql -XAtq -v ON_ERROR_STOP=1 -d "$d" >/dev/null <<SQL || bail "setup of $d failed"
SET client_min_messages = warning;
CREATE EXTENSION eventstore;
CREATE SCHEMA mdb_test;
CREATE TABLE mdb_test.effects (event_id uuid PRIMARY KEY);
CREATE FUNCTION mdb_test.handle(e eventstore.event) RETURNS void
LANGUAGE sql AS \$\$ INSERT INTO mdb_test.effects VALUES (e.id) \$\$;
SELECT eventstore.create_topic(t) FROM unnest(ARRAY['${d}_t1', '${d}_t2', '${d}_t3', '${d}_t4',
                                                    '${d}_t5', '${d}_t6']) t;
SELECT eventstore.create_consumer('${d}_c', '{${d}_t1}', 'mdb_test.handle(eventstore.event)');
SQL
done
wait_for 15 "SELECT ($(workers_in mdb_a)) = 1 AND ($(workers_in mdb_b)) = 1"
ok $? "databases created later with the extension get a dispatcher each: mdb_a $(q "$(workers_in mdb_a)"), mdb_b $(q "$(workers_in mdb_b)")"

# ---------------------------------------------------------------------------
# 2. Consumers run by themselves in both.
for i in 1 2 3; do append_in mdb_a mdb_a_t1; append_in mdb_b mdb_b_t1; done
db=mdb_a wait_for 15 "SELECT count(*) = 3 FROM mdb_test.effects"
a=$?
db=mdb_b wait_for 15 "SELECT count(*) = 3 FROM mdb_test.effects"
b=$?
[ $a -eq 0 ] && [ $b -eq 0 ]
ok $? "3 appends in each handled by its own consumer, no run_consumer call (effects: mdb_a $(effects_in mdb_a), mdb_b $(effects_in mdb_b))"

# ---------------------------------------------------------------------------
# 3, 4. LISTEN eventstore in each: its own topics, every one of them,
# although 4 notification slots cannot hold the 12 (database, topic) pairs.
listen_out=$(mktemp -d)
for d in mdb_a mdb_b; do
	psql -XAtq -d "$d" -c "LISTEN eventstore" -c "SELECT pg_sleep(4)" -c "SELECT 1" \
		>"$listen_out/$d" 2>&1 &
done
sleep 1
for k in 1 2 3 4 5 6; do append_in mdb_a "mdb_a_t$k"; append_in mdb_b "mdb_b_t$k"; done
wait
heard() {	# heard DB: the topics the listener in DB was told about
	sed -n 's/.*Asynchronous notification "eventstore" with payload "\([^"]*\)".*/\1/p' \
		"$listen_out/$1" | sort -u | paste -sd,
}
ha=$(heard mdb_a)
hb=$(heard mdb_b)
rm -rf "$listen_out"
[ "$ha" = "mdb_a_t1,mdb_a_t2,mdb_a_t3,mdb_a_t4,mdb_a_t5,mdb_a_t6" ]
ok $? "LISTEN in mdb_a hears its 6 topics and no other: $ha"
[ "$hb" = "mdb_b_t1,mdb_b_t2,mdb_b_t3,mdb_b_t4,mdb_b_t5,mdb_b_t6" ]
ok $? "LISTEN in mdb_b hears its 6 topics and no other: $hb"

# ---------------------------------------------------------------------------
# 5. The database without the extension: no worker stays, nothing logged.
sleep 2
failures=$(tail -c +$((log_start + 1)) "$pg_log" | grep -E "ERROR|FATAL|terminated by signal" |
	grep -ciE "eventstore|mdb_c|background worker")
[ "$(q "$(workers_in mdb_c)")" -eq 0 ] && [ "$failures" -eq 0 ]
ok $? "mdb_c without the extension: no dispatcher connected, $failures failures in the server log"

# ---------------------------------------------------------------------------
# 6. DROP EXTENSION in mdb_a: its workers leave, mdb_b's dispatch goes on.
q_in mdb_a "SET client_min_messages = warning" "DROP EXTENSION eventstore CASCADE" >/dev/null
wait_for 15 "SELECT ($(workers_in mdb_a)) = 0"
gone=$?
append_in mdb_b mdb_b_t1
db=mdb_b wait_for 15 "SELECT count(*) = 5 FROM mdb_test.effects"
[ $gone -eq 0 ] && [ $? -eq 0 ] && [ "$(q "$(workers_in mdb_b)")" -eq 1 ]
ok $? "DROP EXTENSION in mdb_a: its dispatcher left; mdb_b still handles appends (effects $(effects_in mdb_b))"

# ---------------------------------------------------------------------------
# 7. DROP DATABASE without FORCE while mdb_b's worker is connected.
before=$(q "$(workers_in mdb_b)")
start=$EPOCHREALTIME
out=$(q "DROP DATABASE mdb_b" 2>&1)
status=$?
took=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
[ "$before" -eq 1 ] && [ $status -eq 0 ] && awk -v t="$took" 'BEGIN { exit !(t < 3) }'
ok $? "DROP DATABASE mdb_b (no FORCE) with $before worker connected: done in ${took}s ${out:+($out)}"

# ---------------------------------------------------------------------------
# 8. The test database's dispatch went on through all of it.
append_in "$main" mdb_main
db=$main
wait_for 15 "SELECT count(*) = 1 FROM mdb_test.effects"
ok $? "$main's consumer still runs by itself (effects $(q "SELECT count(*) FROM mdb_test.effects"))"

# ---------------------------------------------------------------------------
# 9. The extension created again in mdb_a: served again without a restart.
q_in mdb_a "SET client_min_messages = warning" "CREATE EXTENSION eventstore" >/dev/null
wait_for 15 "SELECT ($(workers_in mdb_a)) = 1"
ok $? "CREATE EXTENSION again in mdb_a: a dispatcher connects ($(q "$(workers_in mdb_a)"))"

# ---------------------------------------------------------------------------
# 10. Nothing failed in a loop meanwhile.
failures=$(tail -c +$((log_start + 1)) "$pg_log" | grep -E "ERROR|FATAL|terminated by signal" |
	grep -ciE "eventstore|background worker")
diag "$(tail -c +$((log_start + 1)) "$pg_log" | grep -E "ERROR|FATAL|terminated by signal" | tail -5)"
[ "$failures" -eq 0 ]
ok $? "no dispatcher or launcher failure in the server log ($failures)"

# ---------------------------------------------------------------------------
# 11. The old one-database setting still works, and wins, on a reload: a
# database it names keeps a worker even without the extension (mdb_c), the
# others lose theirs.
q "ALTER SYSTEM SET eventstore.database = 'mdb_c'" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
wait_for 15 "SELECT ($(workers_in mdb_c)) = 1 AND ($(workers_in mdb_a)) = 0 AND ($(workers_in "$main")) = 0"
ok $? "eventstore.database = 'mdb_c' on a reload: mdb_c $(q "$(workers_in mdb_c)"), mdb_a $(q "$(workers_in mdb_a)"), $main $(q "$(workers_in "$main")") worker(s)"

exit $((fails > 0))
