#!/bin/bash
# The store, birdwatch and the daemon through a connection pooler: Debian's
# pgbouncer on a free port, in transaction pooling mode (every transaction
# of a client on whichever of two server connections is free, handed out in
# turn), against the database pooler of this cluster, where the dispatcher
# does not run (run_consumer is called).  The alias pooler_session reaches
# the same database in session mode.
#
#   - a SET does not follow the client, the startup parameter options is
#     refused;
#   - pgbench appends (bench/append.sql, bench/append_batch.sql) with
#     -M simple and -M extended: every transaction commits; with -M
#     prepared a statement prepared in one transaction is executed on the
#     other server connection, where it does not exist, and the run fails,
#     as README.md says, while in session mode it works;
#   - append_batch, poll / nack / poll / ack whose calls run on different
#     backends, run_consumer, and the birdwatch API of the client, AdminAPI
#     and the consumers, each call a transaction of its own;
#   - the daemon (under valgrind where installed) with an outside consumer,
#     one with two pollers and an in-database one, through the pooler:
#     "notify": "auto" finds the pooler, says so once and polls, and every
#     event is handled exactly once; "notify": "poll" and "listen" (woken by
#     LISTEN through session mode) and a bad value.
#
# pgbouncer refuses to run as root: then it runs as the data directory's
# owner.  It and the daemons are stopped and the database dropped at exit.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
main_db=${PGDATABASE:-eventstore_test}
db=pooler
secret="pooler-$RANDOM$RANDOM"
echo "1..34"
command -v pgbouncer >/dev/null || bail "pgbouncer is not installed (scripts/install-deps installs it)"
command -v pgbench >/dev/null || bail "pgbench is not installed"
. test/daemon.sh	# $worker, $tmp, $vg, start, stop, stop_checked, free_port
. test/fixtures.sh	# run_birdwatch

finish() {
	psql -XAtq -d "$main_db" -c "SET client_min_messages = warning" \
		-c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
		-c "DROP ROLE IF EXISTS pooler_app, pooler_admin" >/dev/null 2>&1
	cleanup			# test/daemon.sh: the daemons, pgbouncer, $tmp
}
trap finish EXIT

psql -XAtq -d "$main_db" -v ON_ERROR_STOP=1 >/dev/null <<SQL || bail "cannot create the database $db"
SET client_min_messages = warning;
DROP DATABASE IF EXISTS $db WITH (FORCE);
CREATE DATABASE $db;
DROP ROLE IF EXISTS pooler_app, pooler_admin;
CREATE ROLE pooler_app LOGIN PASSWORD '$secret';
CREATE ROLE pooler_admin LOGIN PASSWORD '$secret';
-- a nacked batch comes back at once
ALTER DATABASE $db SET eventstore.retry_delay = 0;
SQL
psql -XAtq -d "$db" -v ON_ERROR_STOP=1 -f bench/setup.sql >/dev/null &&
	psql -XAtq -d "$db" -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || bail "cannot set up the database"
SET client_min_messages = warning;
CREATE EXTENSION birdwatch CASCADE;
GRANT birdwatch_app TO pooler_app;
GRANT birdwatch_admin_api TO pooler_admin;
SELECT eventstore.create_topic('t');
CREATE TABLE seen (id uuid PRIMARY KEY, consumer text NOT NULL);
CREATE FUNCTION remember(e eventstore.event) RETURNS void LANGUAGE sql AS
    $$ INSERT INTO seen VALUES (e.id, 'indb') $$;
SELECT eventstore.create_consumer('indb', ARRAY['t'], 'remember(eventstore.event)'::regprocedure);
SELECT eventstore.create_consumer('out', ARRAY['t']);
SELECT eventstore.create_consumer('two', ARRAY['t'], members => 2);
SELECT eventstore.create_consumer('cycle', ARRAY['t']);
SQL

#
# pgbouncer: transaction pooling, two server connections, handed out in turn.
#
bport=$(free_port)
bdir=$tmp/pgbouncer
mkdir "$bdir"
run_as=()
if [ "$(id -u)" -eq 0 ]; then
	owner=$(stat -c %U "$(q "SHOW data_directory")")
	run_as=(-u "$owner")
	chmod 711 "$tmp"
	chown "$owner" "$bdir"
fi
# trust at pgbouncer; the passwords of the file log in to the server
printf '"%s" "%s"\n' "${PGUSER:-postgres}" "${PGPASSWORD:-}" pooler_app "$secret" \
	pooler_admin "$secret" >"$bdir/users.txt"
cat >"$bdir/pgbouncer.ini" <<INI
[databases]
$db = host=${PGHOST:-localhost} port=$PGPORT dbname=$db
pooler_session = host=${PGHOST:-localhost} port=$PGPORT dbname=$db pool_mode=session pool_size=5

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = trust
auth_file = $bdir/users.txt
admin_users = ${PGUSER:-postgres}
pool_mode = transaction
default_pool_size = 2
server_round_robin = 1
max_client_conn = 100
INI
start "$tmp/pgbouncer.log" pgbouncer "${run_as[@]}" "$bdir/pgbouncer.ini"
bouncer=$started
wait_until 20 port_open "$bport" || bail "pgbouncer does not listen on $bport: $(cat "$tmp/pgbouncer.log")"

# qb [-U USER] [-d DB] SQL...: each SQL a transaction of its own through pgbouncer
qb() {
	local args=(-h 127.0.0.1 -p "$bport" -d "$db")
	while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do args+=("$1" "$2"); shift 2; done
	local s
	for s in "$@"; do args+=(-c "$s"); done
	psql -XAtq -v ON_ERROR_STOP=1 "${args[@]}"
}
events() { q "SELECT count(*) FROM eventstore.events WHERE topic = '$1'"; }
# ok_diag STATUS DESCRIPTION TEXT: ok, and TEXT as a comment when it failed
ok_diag() {
	ok "$1" "$2"
	[ "$1" -eq 0 ] || diag "$3"
}

[ "$(qb -d pgbouncer "SHOW CONFIG" | awk -F'|' '$1 == "pool_mode" { print $2 }')" = transaction ]
ok $? "pgbouncer runs in transaction pooling mode"

# Both server connections open (two clients at once), then one client's
# statements, each a transaction, run on both in turn.
qb "SELECT pg_sleep(0.5)" >/dev/null &
qb "SELECT pg_sleep(0.5)" >/dev/null
wait $!
backends=$(qb "SELECT pg_backend_pid()" "SELECT pg_backend_pid()" "SELECT pg_backend_pid()")
[ "$(sort -u <<<"$backends" | wc -l)" -eq 2 ] && [ "$(uniq <<<"$backends" | wc -l)" -eq 3 ]
ok $? "one client's transactions run on two server sessions in turn"

# Session state does not follow the client: a SET is left on one server
# connection, the next transaction runs on the other; pgbouncer 1.18
# refuses the startup parameter options.
[ "$(qb "SET statement_timeout = '123s'" "SHOW statement_timeout")" = 0 ]
ok $? "a SET outside a transaction is not there for the client's next one"
out=$(PGOPTIONS="-c statement_timeout=5s" qb "SELECT 1" 2>&1)
[ $? -ne 0 ] && grep -q 'unsupported startup parameter: options' <<<"$out"
ok_diag $? "the startup parameter options is refused" "$out"

#
# pgbench: 4 clients on 2 server connections.
#
bench() {	# bench LOG MODE DB SCRIPT [ARGS]: pgbench through pgbouncer
	local log=$1 mode=$2 dbname=$3 script=$4
	shift 4
	pgbench -n -h 127.0.0.1 -p "$bport" -M "$mode" -c 4 -j 2 -f "$script" "$@" "$dbname" \
		>"$tmp/$log" 2>&1
}
for mode in simple extended; do
	before=$(events bench)
	bench "bench-$mode.log" "$mode" "$db" bench/append.sql -t 50
	status=$?
	[ $status -eq 0 ] && [ $(($(events bench) - before)) -eq 200 ]
	ok_diag $? "pgbench -M $mode: 4 clients x 50 appends, all committed" \
		"$(tail -5 "$tmp/bench-$mode.log")"
done

before=$(events bench)
bench bench-batch.log extended "$db" bench/append_batch.sql -t 10 -D n=10
[ $? -eq 0 ] && [ $(($(events bench) - before)) -eq 400 ]
ok $? "pgbench -M extended: 4 clients x 10 append_batch of 10, all committed"

# Named prepared statements are state of a server session that pgbouncer
# 1.18 does not follow: pgbench prepares P_0 (Parse, Sync: a transaction
# for pgbouncer) on one server connection and executes it on the other.
pgbench -n -h 127.0.0.1 -p "$bport" -M prepared -c 1 -t 5 -f bench/append.sql "$db" \
	>"$tmp/bench-prepared.log" 2>&1
status=$?
[ $status -ne 0 ] && grep -q 'prepared statement "P_0" does not exist' "$tmp/bench-prepared.log"
ok_diag $? "pgbench -M prepared in transaction mode: P_0 does not exist on the next server connection" \
	"status $status: $(tail -5 "$tmp/bench-prepared.log")"

before=$(events bench)
bench bench-session.log prepared pooler_session bench/append.sql -t 50
[ $? -eq 0 ] && [ $(($(events bench) - before)) -eq 200 ]
ok_diag $? "pgbench -M prepared in session mode: all 200 appends committed" \
	"$(tail -5 "$tmp/bench-session.log")"

#
# The API, a transaction per call, through the pooler.
#
envelope="jsonb_build_object('id', gen_random_uuid(), 'type', 'new', 'version', '1.0',
             'data', jsonb_build_object('n', g),
             'metadata', jsonb_build_object('source', 'test/pgbouncer', 'time', '2026-12-04T00:00:00Z'))"
positions=$(qb "SELECT count(*) FROM eventstore.append_batch('t',
                    ARRAY(SELECT $envelope FROM generate_series(1, 20) g))")
[ "$positions" = 20 ] && [ "$(events t)" -eq 20 ]
ok $? "append_batch of 20 events"

# poll, nack, poll again, ack, poll: each call a transaction, the pid of its backend kept
cycle=$(qb "SELECT string_agg(id::text, ',' ORDER BY position) || ' ' || max(batch_id) || ' '
                   || max(attempt) || ' ' || pg_backend_pid() FROM eventstore.poll('cycle', 100)")
read -r ids1 batch1 attempt1 pid_poll1 <<<"$cycle"
pid_nack=$(qb "SELECT pg_backend_pid() FROM eventstore.nack('cycle', $batch1, 'try again')")
cycle=$(qb "SELECT string_agg(id::text, ',' ORDER BY position) || ' ' || max(batch_id) || ' '
                   || max(attempt) || ' ' || pg_backend_pid() FROM eventstore.poll('cycle', 100)")
read -r ids2 batch2 attempt2 pid_poll2 <<<"$cycle"
pid_ack=$(qb "SELECT pg_backend_pid() FROM eventstore.ack('cycle', $batch2)")
[ "$(tr ',' '\n' <<<"$ids1" | sort)" = "$(q "SELECT id FROM eventstore.events WHERE topic = 't'" |
                                          sort)" ] &&
	[ "$attempt1" = 1 ] && [ "$ids2" = "$ids1" ] && [ "$batch2" = "$batch1" ] && [ "$attempt2" = 2 ]
ok $? "poll, then nack on another backend ($pid_poll1, $pid_nack): the batch comes back as attempt 2"
[ "$pid_ack" != "$pid_poll2" ] && [ -z "$(qb "SELECT batch_id FROM eventstore.poll('cycle', 100)")" ] &&
	[ "$(q "SELECT handled FROM eventstore.consumer_status WHERE name = 'cycle'")" = 20 ]
ok $? "the batch acked on another backend ($pid_poll2, $pid_ack): done, the next poll is empty"

handled=0
while r=$(qb "SELECT eventstore.run_consumer('indb', 7)") && [ "$r" -gt 0 ]; do
	handled=$((handled + r))
done
[ "$handled" -eq 20 ] && [ "$(q "SELECT count(*) FROM seen WHERE consumer = 'indb'")" -eq 20 ]
ok $? "run_consumer in steps of 7: 20 events handled, each once"

#
# birdwatch: the client's calls as pooler_app, AdminAPI as pooler_admin.
#
read -r alice_id alice <<<"$(qb -U pooler_app \
	"SELECT user_id || ' ' || token FROM birdwatch.register_user('alice@example.org', 'Alice')")"
read -r bob_id bob <<<"$(qb -U pooler_app \
	"SELECT user_id || ' ' || token FROM birdwatch.register_user('bob@example.org', 'Bob')")"
[ -n "$alice" ] && [ -n "$bob" ] &&
	[ "$(qb -U pooler_app "SELECT birdwatch.login('$alice') = '$alice_id'")" = t ]
ok $? "register_user and login"
url=https://birds.example.org/pooler/owl.jpg
qb -U pooler_app "SELECT birdwatch.tick('$alice', '$url')" \
	"SELECT birdwatch.tick('$bob', 'https://birds.example.org/pooler/wren.jpg')" \
	"SELECT birdwatch.rate('$bob', '$url', 4)" >/dev/null &&
	[ "$(q "SELECT count(*) FROM birdwatch.ticks")" -eq 2 ]
ok $? "tick and rate"
qb -U pooler_admin "SELECT birdwatch.set_score_secret('a secret of the pooler test')" >/dev/null
(export PGHOST=127.0.0.1 PGPORT=$bport; run_birdwatch)
ok $? "the birdwatch consumers run through run_consumer"
overview=$(qb -U pooler_admin "SELECT birdwatch.admin_overview()->>'users',
                                      birdwatch.user_count(),
                                      (SELECT count(*) FROM birdwatch.list_users())")
[ "$overview" = "2|2|2" ] &&
	[ "$(q "SELECT bool_and(lag_events = 0 AND attempts = 0 AND parked = 0)
	          FROM eventstore.consumer_status WHERE name LIKE 'birdwatch\_%'")" = t ]
ok $? "admin_overview, user_count, list_users; every birdwatch consumer caught up"
audit=$(qb -U pooler_admin "SELECT birdwatch.delete_user('$bob_id')" \
	"SELECT birdwatch.export_user_data('$alice_id') IS NOT NULL")
actor=$(q "SELECT data->'actor'->>'role' FROM eventstore.events WHERE topic = 'audit'
           ORDER BY position DESC LIMIT 1")
[ "$(tail -1 <<<"$audit")" = t ] && [ "$actor" = pooler_admin ]
ok $? "delete_user and export_user_data; the audit names the client's login role ($actor)"
qb -U pooler_app "SELECT birdwatch.forget_me('$alice')" >/dev/null &&
	(export PGHOST=127.0.0.1 PGPORT=$bport; run_birdwatch) &&
	[ "$(q "SELECT count(*) FROM birdwatch.users")" -eq 0 ]
ok $? "forget_me and delete_user: the consumers erase both watchers"
# A role for one transaction: SET LOCAL ends with it, whatever the server connection does next.
roles=$(qb "BEGIN; SET LOCAL ROLE birdwatch_app; SELECT current_user; COMMIT;" "SELECT current_user")
[ "$roles" = "birdwatch_app
${PGUSER:-postgres}" ]
ok $? "SET LOCAL ROLE lasts one transaction"

#
# The daemon through the pooler.
#
cat >"$tmp/record.sh" <<'SH'
#!/bin/sh
cat >/dev/null
printf '%s\n' "$EVENTSTORE_EVENT_ID" >>"$1"
SH
chmod 755 "$tmp/record.sh"
# daemon_config FILE CONNINFO NOTIFY POLL_MS: the consumers out (one poller),
# two (two pollers) and indb
daemon_config() {
	cat >"$1" <<JSON
{"conninfo": "$2", "notify": "$3", "poll_interval_ms": $4, "batch_size": 10,
 "reconnect_min_ms": 100, "reconnect_max_ms": 1000,
 "consumers": [
   {"name": "out", "kind": "outside",
    "handler": {"type": "command", "command": ["$tmp/record.sh", "$tmp/out.ids"]}},
   {"name": "two", "kind": "outside", "members": 2,
    "handler": {"type": "command", "command": ["$tmp/record.sh", "$tmp/two.ids"]}},
   {"name": "indb", "kind": "in_database"}]}
JSON
}
# exactly_once FILE: the file holds every event of t once, nothing else
exactly_once() {
	[ -f "$1" ] && diff <(sort "$1") <(q "SELECT id FROM eventstore.events WHERE topic = 't'" | sort) \
		>/dev/null
}
all_handled() {
	[ "$(lines "$tmp/out.ids")" -eq "$1" ] && [ "$(lines "$tmp/two.ids")" -eq "$1" ] &&
		[ "$(q "SELECT count(*) FROM seen")" -eq "$1" ]
}
lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
append() {	# append COUNT: COUNT events on t, directly
	q "SELECT count(eventstore.append('t', $envelope)) FROM generate_series(1, $1) g" >/dev/null
}
pooled="host=127.0.0.1 port=$bport dbname=$db"
pooler_line='notifications: not listening, the connection goes through a pooler'

printf '{"conninfo": "", "notify": "sometimes", "consumers": [{"name": "indb", "kind": "in_database"}]}\n' \
	>"$tmp/bad.json"
"$worker" --config "$tmp/bad.json" --once >"$tmp/bad.log" 2>&1
[ $? -eq 2 ] && grep -q 'bad.json: notify: must be one of "auto", "listen", "poll"' "$tmp/bad.log"
ok $? "\"notify\": \"sometimes\" is refused with exit status 2, naming the key"

daemon_config "$tmp/auto.json" "$pooled" auto 300
start "$tmp/auto.log" "${vg[@]}" "$worker" --config "$tmp/auto.json"
auto=$started
append 100
wait_until 120 all_handled 120
ok_diag $? "through the pooler: 100 more events handled by each consumer (out, two, indb)" \
	"$(tail -5 "$tmp/auto.log")"
exactly_once "$tmp/out.ids" && exactly_once "$tmp/two.ids" &&
	[ "$(q "SELECT count(*) FROM seen WHERE consumer = 'indb'")" -eq 120 ]
ok $? "every event handled exactly once by each consumer"
[ "$(grep -c "$pooler_line" "$tmp/auto.log")" -eq 1 ]
ok $? "\"notify\": \"auto\" finds the pooler and says so once for its three connections"
grep -q "warning $pooler_line (its server session is backend pid [0-9]*, the connection was \
announced as pid -\?[0-9]*)" "$tmp/auto.log"
ok_diag $? "the warning gives both pids" "$(grep notifications "$tmp/auto.log")"
append 10
wait_until 60 all_handled 130
ok_diag $? "10 more events handled by polling alone" "$(tail -5 "$tmp/auto.log")"
stop_checked "$auto" "$tmp/auto.log" "(through the pooler)"

# "poll" directly: no LISTEN, said once at info level
daemon_config "$tmp/poll.json" "dbname=$db" poll 300
start "$tmp/poll.log" "${vg[@]}" "$worker" --config "$tmp/poll.json"
poll=$started
append 10
wait_until 60 all_handled 140
ok_diag $? "\"notify\": \"poll\": 10 more events handled" "$(tail -5 "$tmp/poll.log")"
[ "$(grep -c 'info notifications: not listening ("notify": "poll")' "$tmp/poll.log")" -eq 1 ] &&
	! grep -q "$pooler_line" "$tmp/poll.log"
ok_diag $? "\"notify\": \"poll\" says so once, at info level" "$(grep notifications "$tmp/poll.log")"
stop_checked "$poll" "$tmp/poll.log" "(\"notify\": \"poll\")"

# "listen" through session mode: a poll interval of a minute, woken by LISTEN
daemon_config "$tmp/listen.json" "host=127.0.0.1 port=$bport dbname=pooler_session" listen 60000
start "$tmp/listen.log" "${vg[@]}" "$worker" --config "$tmp/listen.json"
listen=$started
wait_until 60 grep -q "connected to database" "$tmp/listen.log" &&
	wait_until 60 grep -q "poller 2 of 2 connected" "$tmp/listen.log"
sleep 1
append 10
wait_until 30 all_handled 150
ok_diag $? "\"notify\": \"listen\" through session mode: woken by LISTEN, 10 events handled" \
	"$(tail -5 "$tmp/listen.log")"
exactly_once "$tmp/out.ids" && exactly_once "$tmp/two.ids" && ! grep -q 'notifications:' "$tmp/listen.log"
ok $? "still exactly once; nothing said about notifications"
stop_checked "$listen" "$tmp/listen.log" "(\"notify\": \"listen\")"

kill -TERM "$bouncer" && wait_until 20 exited "$bouncer"
ok $? "pgbouncer stops"
exit $((fails > 0))
