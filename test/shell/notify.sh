#!/bin/bash
# LISTEN eventstore: a listener hears the topic after the appending
# transaction commits, never before and never for a rollback; bursts of
# commits are coalesced by the dispatcher; and a database without the
# dispatcher falls back to a NOTIFY per transaction with the same guarantees.
#
# One psql session listens and drives a second connection through dblink,
# so the order "append, wait, commit, wait" is exact.  psql prints a
# notification after the round trip that follows its arrival, hence the
# "SELECT 'flush'" before each marker.
set -u
cd "$(dirname "$0")/../.."
main_db=${PGDATABASE:-eventstore_test}
fallback_db=eventstore_fallback
n=0
fails=0
echo "1..10"

ok() {	# ok CONDITION-EXIT-STATUS DESCRIPTION
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi
}

setup_db() {
	psql -X -q -d "$1" -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT eventstore.create_topic('tick');
SELECT eventstore.create_topic('rate');
SQL
}

# listen_script DB: runs the scenario in DB, prints psql's output
listen_script() {
	local db=$1
	local conn="host=$PGHOST port=$PGPORT user=$PGUSER password=$PGPASSWORD dbname=$db"
	psql -X -d "$db" -v conn="$conn" 2>&1 <<'SQL'
\set QUIET on
\pset tuples_only on
CREATE TEMP TABLE ev AS
  SELECT g AS n, jsonb_build_object('id', gen_random_uuid(), 'type', 'new', 'version', '1.0',
         'data', jsonb_build_object('n', g),
         'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z'))::text AS event
    FROM generate_series(1, 200) g;
LISTEN eventstore;
SELECT dblink_connect('w', :'conn') IS NOT NULL;
SELECT pid FROM dblink('w', 'SELECT pg_backend_pid()') AS t(pid int) \gset writer_
\echo WRITER :writer_pid
-- 1. an append, not yet committed
SELECT dblink_exec('w', 'BEGIN');
SELECT * FROM dblink('w', format('SELECT eventstore.append(%L, %L)', 'tick', (SELECT event FROM ev WHERE n = 1))) AS t(p bigint);
SELECT pg_sleep(0.3);
SELECT 'flush';
\echo MARK open
SELECT dblink_exec('w', 'COMMIT');
SELECT pg_sleep(0.3);
SELECT 'flush';
\echo MARK committed
-- 2. an append that is rolled back
SELECT dblink_exec('w', 'BEGIN');
SELECT * FROM dblink('w', format('SELECT eventstore.append(%L, %L)', 'rate', (SELECT event FROM ev WHERE n = 2))) AS t(p bigint);
SELECT dblink_exec('w', 'ROLLBACK');
SELECT pg_sleep(0.3);
SELECT 'flush';
\echo MARK rolled-back
-- 3. a burst of 100 committed appends, one transaction each
SELECT count(*)
  FROM ev, LATERAL dblink('w', format('SELECT eventstore.append(%L, %L)', 'tick', event)) AS t(p bigint)
 WHERE n BETWEEN 101 AND 200;
SELECT pg_sleep(0.5);
SELECT 'flush';
\echo MARK burst
SQL
}

# section OUTPUT FROM TO: the lines between two markers
section() { sed -n "/^$2\$/,/^$3\$/p" <<<"$1"; }
count_notes() { grep -c "Asynchronous notification \"eventstore\" with payload \"$1\"" || true; }

setup_db "$main_db"
# A long coalescing window, so that the burst's count does not depend on
# how fast this machine commits: at most one NOTIFY per 200 ms.
psql -XAtq -c "ALTER SYSTEM SET eventstore.notify_interval = '200ms'" \
	-c "SELECT pg_reload_conf()" >/dev/null
sleep 0.3
dispatcher=$(psql -XAtd "$main_db" -c "SELECT pid FROM pg_stat_activity
                                         WHERE backend_type = 'eventstore dispatcher'
                                           AND datname = current_database()")
out=$(listen_script "$main_db")
body=$(printf 'START\n%s\n' "$out")

# the checks both set-ups share: check_delivery LABEL SENDER_PID
check_delivery() {
	[ "$(section "$body" START 'MARK open' | count_notes tick)" -eq 0 ]
	ok $? "$1: nothing is heard while the appending transaction is open"
	[ "$(section "$body" 'MARK open' 'MARK committed' | count_notes tick)" -eq 1 ]
	ok $? "$1: the topic is heard once after commit"
	section "$body" 'MARK open' 'MARK committed' | grep -q "from server process with PID $2\."
	ok $? "$1: the notification comes from PID $2 ($3)"
	[ "$(section "$body" 'MARK committed' 'MARK rolled-back' | count_notes rate)" -eq 0 ]
	ok $? "$1: nothing is heard for a rolled-back append"
}

check_delivery dispatcher "$dispatcher" "the dispatcher, not the appender"
burst=$(section "$body" 'MARK rolled-back' 'MARK burst' | count_notes tick)
[ "$burst" -ge 1 ] && [ "$burst" -le 10 ]
ok $? "dispatcher: 100 committed appends are coalesced into $burst notification(s) (1 to 10)"
psql -XAtq -c "ALTER SYSTEM RESET eventstore.notify_interval" -c "SELECT pg_reload_conf()" >/dev/null

# The same scenario in a database without the dispatcher.
psql -XAtq -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $fallback_db" \
	-c "CREATE DATABASE $fallback_db" >/dev/null
setup_db "$fallback_db"
out=$(listen_script "$fallback_db")
body=$(printf 'START\n%s\n' "$out")
writer=$(sed -n 's/^WRITER //p' <<<"$out")

check_delivery fallback "$writer" "the appending session"
[ "$(section "$body" 'MARK rolled-back' 'MARK burst' | count_notes tick)" -eq 100 ]
ok $? "fallback: one notification per appending transaction"

psql -XAtq -d "$main_db" -c "DROP DATABASE $fallback_db" >/dev/null
[ "$fails" -eq 0 ]
