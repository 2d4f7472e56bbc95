#!/bin/bash
# workers/eventstore-worker against a live cluster: configuration errors,
# --once for outside consumers (each event handed to a command exactly once,
# a failing command nacks the batch and the batch comes back), in-database
# consumers driven through run_consumer in a database where the dispatcher
# does not run them, and the long-running daemon: woken by LISTEN, reloaded
# by SIGHUP, surviving an immediate server restart without losing or
# repeating an event, stopped by SIGTERM; under valgrind where installed.
#
# The daemon must be built already (make -C workers); this script builds
# nothing.  Restarting the server needs pg_ctl as the data directory's
# owner: run as that user or as root.  python3 checks the JSON handed to
# the command; the valgrind checks are skipped when valgrind is missing.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
main_db=${PGDATABASE:-eventstore_test}
side_db=worker_nopreload
db=$main_db	# q's; q_in "$side_db" for the other
echo "1..37"
. test/daemon.sh	# $worker, $tmp, $vg, start, exited, stop

# append DB COUNT: COUNT events on topic t, in one transaction
append() {
	q_in "$1" "SELECT count(eventstore.append('t', jsonb_build_object(
	               'id', gen_random_uuid(), 'type', 'new', 'version', '1.0',
	               'data', jsonb_build_object('n', g),
	               'metadata', jsonb_build_object('source', 'test/worker_daemon',
	                                              'time', '2026-11-27T00:00:00Z'))))
	             FROM generate_series(1, $2) g" >/dev/null
}

appended_ids() {	# appended_ids DB: every event id on topic t, sorted
	q_in "$1" "SELECT envelope->>'id' FROM eventstore.read('t', 0, 1000000)" | sort
}

# exactly_once IDS-FILE DB: the file holds each appended id once, nothing else
exactly_once() {
	[ -f "$1" ] && diff <(sort "$1") <(appended_ids "$2") >/dev/null
}

lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
count_in() { grep -c -- "$2" "$1" 2>/dev/null || true; }
effects() { q_in "$side_db" "SELECT count(*) || ' ' || count(DISTINCT id) FROM effects"; }

# A handler that records what it was given: the delivery (stdin) in FILE,
# and the event id and attempt from the environment in FILE.ids and
# FILE.attempts.
cat >"$tmp/record.sh" <<'SH'
#!/bin/sh
line=$(cat)
printf '%s\n' "$line" >>"$1"
printf '%s\n' "$EVENTSTORE_EVENT_ID" >>"$1.ids"
printf '%s\n' "$EVENTSTORE_ATTEMPT" >>"$1.attempts"
SH
cat >"$tmp/fail.sh" <<'SH'
#!/bin/sh
cat >/dev/null
exit 3
SH
chmod 755 "$tmp/record.sh" "$tmp/fail.sh"

# outside_config FILE CONSUMER HANDLER-SCRIPT RECORD-FILE [EXTRA-KEYS]
outside_config() {
	cat >"$1" <<JSON
{"conninfo": "", "batch_size": 10, "poll_interval_ms": 60000,
 "reconnect_min_ms": 100, "reconnect_max_ms": 1000 ${5:-},
 "consumers": [{"name": "$2", "kind": "outside",
                "handler": {"type": "command", "command": ["$3", "$4"]}}]}
JSON
}

restart_server() {
	local dir owner log cmd
	dir=$(q "SHOW data_directory")
	owner=$(stat -c %U "$dir")
	log=$(pg_lsclusters -h 2>/dev/null | awk -v p="$PGPORT" '$3 == p { print $7 }')
	[ -n "$log" ] && [ "$log" != "<unknown>" ] || log=$dir/restart.log
	cmd="'$("${PG_CONFIG:-pg_config}" --bindir)/pg_ctl' -D '$dir' -l '$log' restart -m immediate -w"
	if [ "$(id -un)" = "$owner" ]; then
		sh -c "$cmd"
	else
		su "$owner" -s /bin/sh -c "$cmd"
	fi
}

#
# Configuration errors: exit status 2 and a message naming the key.
#
"$worker" >/dev/null 2>&1
[ $? -eq 2 ]
ok $? "no --config: exit status 2"

# bad_config JSON KEY: exit 2 with a message that names KEY
bad_config() {
	printf '%s\n' "$1" >"$tmp/bad.json"
	"$worker" --config "$tmp/bad.json" --once >"$tmp/bad.log" 2>&1
	[ $? -eq 2 ] && grep -q "error config .*bad.json: $2:" "$tmp/bad.log"
}
bad_config '{"consumers": [{"name": "c", "kind": "in_database"}], "pol_interval_ms": 5}' pol_interval_ms
ok $? "an unknown key is refused with exit status 2, naming the key"
bad_config '{"poll_interval_ms": "1s", "consumers": [{"name": "c", "kind": "in_database"}]}' poll_interval_ms
ok $? "a value of the wrong type is refused, naming the key"
bad_config '{"consumers": [{"name": "c", "kind": "outside", "handler": {"type": "command", "command": []}}]}' \
	'consumers\[0\]\.handler\.command'
ok $? "an empty command is refused, naming consumers[0].handler.command"
bad_config '{"consumers": [{"name": "c", "kind": "outside", "handler": {"type": "command", "command": ["true"], "per": "each"}}]}' \
	'consumers\[0\]\.handler\.per'
ok $? "\"per\" other than \"event\" or \"batch\" is refused, naming consumers[0].handler.per"

printf '%s\n' '{"conninfo": "host=127.0.0.1 port=1 connect_timeout=5",
                "consumers": [{"name": "c", "kind": "in_database"}]}' >"$tmp/nowhere.json"
"$worker" --config "$tmp/nowhere.json" --once >"$tmp/nowhere.log" 2>&1
[ $? -eq 1 ] && grep -q 'error cannot connect' "$tmp/nowhere.log"
ok $? "--once exits 1 when it cannot connect"

#
# Outside consumers in --once mode.
#
q "SET client_min_messages = warning;
  DROP EXTENSION IF EXISTS eventstore CASCADE;
  CREATE EXTENSION eventstore;
  SELECT eventstore.create_topic('t');
  SELECT eventstore.create_consumer('c', ARRAY['t']);
  SELECT eventstore.create_consumer('cfail', ARRAY['t']);
  SELECT eventstore.create_consumer('cbatch', ARRAY['t']);
  SELECT eventstore.create_consumer('cbatchfail', ARRAY['t']);" >/dev/null
append "$main_db" 25

outside_config "$tmp/c.json" c "$tmp/record.sh" "$tmp/c.jsonl"
"$worker" --config "$tmp/c.json" --once >"$tmp/once.log" 2>&1
ok $? "--once with an outside consumer exits 0"
exactly_once "$tmp/c.jsonl.ids" "$main_db" && [ "$(lines "$tmp/c.jsonl.ids")" -eq 25 ]
ok $? "--once hands each of the 25 appended events to the command exactly once"
python3 - "$tmp/c.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
ids = [line.strip() for line in open(sys.argv[1] + ".ids")]
positions = [r["position"] for r in rows]
assert len(rows) == 25 and [r["id"] for r in rows] == ids
assert positions == sorted(positions)
assert all(r["envelope"]["id"] == r["id"] and r["topic"] == "t" and r["batch_id"] for r in rows)
PY
ok $? "stdin carries the delivery as one JSON line: id, envelope, topic, batch_id, in position order"
[ "$(count_in "$tmp/once.log" ' info consumer=c batch=[0-9]* position=[0-9]* id=[0-9a-f-]* ok$')" -eq 25 ]
ok $? "one log line per event handled"
"$worker" --config "$tmp/c.json" --once >>"$tmp/once.log" 2>&1 &&
	[ "$(lines "$tmp/c.jsonl.ids")" -eq 25 ]
ok $? "a second --once run finds nothing pending (no event delivered twice)"

# A command that fails: the batch is nacked, the run still exits 0.
outside_config "$tmp/cfail.json" cfail "$tmp/fail.sh" "$tmp/cfail.jsonl"
"$worker" --config "$tmp/cfail.json" --once >"$tmp/cfail.log" 2>&1
status=$?
[ $status -eq 0 ] && grep -q 'consumer=cfail batch=[0-9]* position=[0-9]* id=.* failed: command exited with status 3' "$tmp/cfail.log" &&
	grep -q 'warning consumer=cfail batch=[0-9]* nacked after 0 of 10 events: command exited with status 3' "$tmp/cfail.log"
ok $? "a failing command: the event fails, the batch is nacked, --once still exits 0"
[ "$(q "SELECT attempts >= 1 AND last_error LIKE '%command exited with status 3%'
         FROM eventstore.consumer_status WHERE name = 'cfail'")" = t ]
ok $? "consumer_status shows the attempt and the handler's error"

# The same consumer with a working command: the nacked batch comes back
# (after the server's retry delay) as a second attempt.
outside_config "$tmp/cfail.json" cfail "$tmp/record.sh" "$tmp/cfail.jsonl"
redelivered() {
	"$worker" --config "$tmp/cfail.json" --once >>"$tmp/cfail.log" 2>&1 &&
		[ "$(lines "$tmp/cfail.jsonl.ids")" -ge 25 ]
}
wait_until 30 redelivered && exactly_once "$tmp/cfail.jsonl.ids" "$main_db" &&
	[ "$(head -1 "$tmp/cfail.jsonl.attempts")" = 2 ]
ok $? "the nacked batch is redelivered (attempt 2), and then every event once"

# "per": "batch": the command starts once per batch and reads every
# delivery of it, a line each; EVENTSTORE_EVENTS says how many, the
# position and event id variables are empty (the lines carry them).
cat >"$tmp/record_batch.sh" <<'SH'
#!/bin/sh
cat >>"$1"
printf '%s %s [%s%s]\n' "$EVENTSTORE_EVENTS" "$(wc -l <"$1")" "$EVENTSTORE_POSITION" \
	"$EVENTSTORE_EVENT_ID" >>"$1.calls"
SH
chmod 755 "$tmp/record_batch.sh"
# batch_config FILE CONSUMER HANDLER-SCRIPT RECORD-FILE
batch_config() {
	cat >"$1" <<JSON
{"conninfo": "", "batch_size": 10, "poll_interval_ms": 60000,
 "consumers": [{"name": "$2", "kind": "outside",
                "handler": {"type": "command", "command": ["$3", "$4"], "per": "batch"}}]}
JSON
}
batch_config "$tmp/cbatch.json" cbatch "$tmp/record_batch.sh" "$tmp/cbatch.jsonl"
"$worker" --config "$tmp/cbatch.json" --once >"$tmp/cbatch.log" 2>&1 &&
	[ "$(cat "$tmp/cbatch.jsonl.calls" 2>/dev/null | tr '\n' ,)" = "10 10 [],10 20 [],5 25 []," ]
ok $? "per batch: 25 events in batches of 10 start the command 3 times with 10, 10 and 5 lines ($(tr '\n' , <"$tmp/cbatch.jsonl.calls" 2>/dev/null))"
python3 - "$tmp/cbatch.jsonl" <"$tmp/cbatch.jsonl" >"$tmp/cbatch.ids" <<'PY' &&
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
assert [r["position"] for r in rows] == sorted(r["position"] for r in rows)
print("\n".join(r["id"] for r in rows))
PY
	exactly_once "$tmp/cbatch.ids" "$main_db" &&
	[ "$(count_in "$tmp/cbatch.log" ' info consumer=cbatch batch=[0-9]* position=[0-9]* id=[0-9a-f-]* ok$')" -eq 25 ]
ok $? "per batch: each event once, in position order, and one log line per event"
batch_config "$tmp/cbatchfail.json" cbatchfail "$tmp/fail.sh" "$tmp/cbatchfail.jsonl"
"$worker" --config "$tmp/cbatchfail.json" --once >"$tmp/cbatchfail.log" 2>&1 &&
	grep -q 'warning consumer=cbatchfail batch=[0-9]* nacked after 0 of 10 events: command exited with status 3' "$tmp/cbatchfail.log" &&
	[ "$(q "SELECT handled = 0 AND attempts >= 1 FROM eventstore.consumer_status WHERE name = 'cbatchfail'")" = t ]
ok $? "per batch: a failing command nacks the whole batch, nothing counts as handled"

#
# In-database consumers through run_consumer, in a database where the
# dispatcher does not run them.
#
psql -XAtq -d "$main_db" -c "SET client_min_messages = warning" \
	-c "DROP DATABASE IF EXISTS $side_db WITH (FORCE)" -c "CREATE DATABASE $side_db" >/dev/null
q_in "$side_db" "SET client_min_messages = warning;
                 CREATE EXTENSION eventstore;
                 SELECT eventstore.create_topic('t');
                 CREATE TABLE effects (id uuid, position bigint);
                 CREATE FUNCTION remember(e eventstore.event) RETURNS void LANGUAGE plpgsql AS \$\$
                 BEGIN
                     INSERT INTO effects VALUES ((e.envelope->>'id')::uuid, e.position);
                 END \$\$;
                 SELECT eventstore.create_consumer('indb', ARRAY['t'], 'remember(eventstore.event)'::regprocedure);" >/dev/null
append "$side_db" 30
cat >"$tmp/indb.json" <<JSON
{"conninfo": "dbname=$side_db", "batch_size": 7, "poll_interval_ms": 60000,
 "reconnect_min_ms": 100, "reconnect_max_ms": 1000,
 "consumers": [{"name": "indb", "kind": "in_database"}]}
JSON
"$worker" --config "$tmp/indb.json" --once >"$tmp/indb-once.log" 2>&1
status=$?
[ $status -eq 0 ] && [ "$(effects)" = "30 30" ]
ok $? "--once runs an in-database consumer: each of 30 events handled once"
[ "$(sed -n 's/.* consumer=indb run_consumer handled=\([0-9]*\)$/\1/p' "$tmp/indb-once.log" |
	awk '{ s += $1; if ($1 > 7) big = 1 } END { print (big ? -1 : s) }')" -eq 30 ]
ok $? "run_consumer is called with max_events = batch_size until it returns 0"

#
# The long-running daemon.  A: outside consumer c in the main database.
# B: the in-database consumer, under valgrind when it is installed.
#
outside_config "$tmp/a.json" c "$tmp/record.sh" "$tmp/c.jsonl"
start "$tmp/a.log" "$worker" --config "$tmp/a.json"
pid_a=$started
start "$tmp/b.log" "${vg[@]}" "$worker" --config "$tmp/indb.json"
pid_b=$started
wait_until 30 grep -q 'info connected to database' "$tmp/a.log" &&
	wait_until 30 grep -q 'info connected to database' "$tmp/b.log"
ok $? "both daemons connect"
sleep 1	# past their first drain: now they wait, for up to 60 s

start=$SECONDS
append "$main_db" 5
wait_until 10 exactly_once "$tmp/c.jsonl.ids" "$main_db"
ok $? "a notification wakes the daemon: 5 appended events handled in $((SECONDS - start)) s (poll interval 60 s)"
append "$side_db" 5
wait_until 10 eval '[ "$(effects)" = "35 35" ]'
ok $? "the same for the in-database consumer in the database without dispatcher"

# SIGHUP: a valid file is applied, an invalid one refused and the old kept.
outside_config "$tmp/a.json" c "$tmp/record.sh" "$tmp/c.jsonl" ', "log_level": "debug"'
kill -HUP "$pid_a"
wait_until 10 grep -q 'info configuration reloaded from .*a.json: 1 consumer(s)' "$tmp/a.log"
ok $? "SIGHUP reloads the configuration"
append "$main_db" 2
wait_until 10 grep -q 'debug consumer=c batch=[0-9]* acked' "$tmp/a.log"
ok $? "the reloaded configuration is in force (log_level debug)"
cp "$tmp/a.json" "$tmp/a.good.json"
printf '%s\n' '{"consumers": [{"name": "c", "kind": "outside"}]}' >"$tmp/a.json"
kill -HUP "$pid_a"
wait_until 10 grep -q 'error reload refused, keeping the running configuration: config .*a.json: consumers\[0\].handler: missing' "$tmp/a.log"
ok $? "SIGHUP with an invalid file: refused, naming the key"
cp "$tmp/a.good.json" "$tmp/a.json"
append "$main_db" 3
kill -0 "$pid_a" && wait_until 10 exactly_once "$tmp/c.jsonl.ids" "$main_db"
ok $? "after a refused reload the daemon runs on with the old configuration"
cp "$tmp/indb.json" "$tmp/indb.good.json"
printf '%s\n' '[]' >"$tmp/indb.json"
kill -HUP "$pid_b"
wait_until 20 grep -q 'reload refused' "$tmp/b.log"
cp "$tmp/indb.good.json" "$tmp/indb.json"
kill -HUP "$pid_b"
wait_until 20 grep -q 'configuration reloaded' "$tmp/b.log"
ok $? "the in-database daemon reloads too (a refused and an accepted reload)"

# An immediate restart of the server; events appended as soon as it is
# back, before the daemons have reconnected.
restart_server >/dev/null 2>&1
ok $? "the server restarts (pg_ctl restart -m immediate)"
append "$main_db" 10
append "$side_db" 10
wait_until 30 eval '[ "$(count_in "$tmp/a.log" "info connected to database")" -ge 2 ]' &&
	wait_until 30 eval '[ "$(count_in "$tmp/b.log" "info connected to database")" -ge 2 ]' &&
	grep -q 'error connection lost' "$tmp/a.log" && grep -q 'error connection lost' "$tmp/b.log"
ok $? "both daemons log the lost connection and reconnect"
grep -q 'info next connection attempt in 100 ms' "$tmp/a.log"
ok $? "reconnecting starts at reconnect_min_ms"
wait_until 20 exactly_once "$tmp/c.jsonl.ids" "$main_db"
ok $? "outside consumer across the restart: $(lines "$tmp/c.jsonl.ids") events, each handled once, none lost"
wait_until 20 eval '[ "$(effects)" = "45 45" ]'
ok $? "in-database consumer across the restart: 45 events, each handled once, none lost"
[ "$(count_in "$tmp/a.log" ' info consumer=c batch=[0-9]* position=[0-9]* id=[0-9a-f-]* ok$')" -eq \
	$(($(lines "$tmp/c.jsonl.ids") - 25)) ]
ok $? "daemon A logged one line per event it handled"

stop "$pid_a" 20
status=$?
[ $status -eq 0 ] && grep -q 'info stopping:' "$tmp/a.log"
ok $? "SIGTERM: the daemon stops with exit status 0"
stop "$pid_b" 20
status=$?
if [ ${#vg[@]} -gt 0 ]; then
	[ $status -eq 0 ]
	ok $? "valgrind: the long-running daemon (reloads, reconnect, SIGTERM) is clean"
else
	skip "valgrind: the long-running daemon is clean" "valgrind not installed"
fi

# --once under valgrind, with a successful and a failing handler.
if [ ${#vg[@]} -gt 0 ]; then
	append "$main_db" 4
	cat >"$tmp/vg.json" <<JSON
{"conninfo": "", "batch_size": 3,
 "consumers": [{"name": "c", "kind": "outside",
                "handler": {"type": "command", "command": ["$tmp/record.sh", "$tmp/c.jsonl"]}},
               {"name": "cfail", "kind": "outside",
                "handler": {"type": "command", "command": ["$tmp/fail.sh"]}},
               {"name": "cbatch", "kind": "outside",
                "handler": {"type": "command", "command": ["$tmp/record_batch.sh", "$tmp/cbatch.jsonl"],
                            "per": "batch"}},
               {"name": "cbatchfail", "kind": "outside",
                "handler": {"type": "command", "command": ["$tmp/fail.sh"], "per": "batch"}}]}
JSON
	"${vg[@]}" "$worker" --config "$tmp/vg.json" --once >"$tmp/vg.log" 2>&1
	[ $? -eq 0 ] && exactly_once "$tmp/c.jsonl.ids" "$main_db" &&
		grep -q 'consumer=cfail .*failed: command exited with status 3' "$tmp/vg.log" &&
		[ "$(q "SELECT lag_events FROM eventstore.consumer_status WHERE name = 'cbatch'")" = 0 ] &&
		grep -q 'consumer=cbatchfail .*failed: command exited with status 3' "$tmp/vg.log"
	ok $? "valgrind --leak-check=full: --once with acks and nacks, per event and per batch, is clean"
else
	skip "valgrind: --once is clean" "valgrind not installed"
fi

# kill -9 of a daemon in the middle of a run, then a new daemon: the
# in-database consumer's effects commit with its checkpoint, so each is
# written once and none is lost.
q_in "$side_db" "CREATE OR REPLACE FUNCTION remember(e eventstore.event) RETURNS void LANGUAGE plpgsql AS \$\$
                 BEGIN
                     PERFORM pg_sleep(0.005);
                     INSERT INTO effects VALUES ((e.envelope->>'id')::uuid, e.position);
                 END \$\$" >/dev/null
append "$side_db" 300
start "$tmp/k.log" "$worker" --config "$tmp/indb.json"
wait_until 20 eval '[ "$(q_in "$side_db" "SELECT count(*) FROM effects")" -gt 100 ]'
kill -KILL "$started"
wait "$started" 2>/dev/null
mid=$(q_in "$side_db" "SELECT count(*) FROM effects")
start "$tmp/k2.log" "$worker" --config "$tmp/indb.json"
wait_until 30 eval '[ "$(effects)" = "345 345" ]'
ok $? "kill -9 of the daemon mid-run ($mid of 345 handled), then a new one: every effect once, none lost"
stop "$started" 20 >/dev/null

psql -XAtq -d "$main_db" -c "DROP DATABASE $side_db WITH (FORCE)" >/dev/null
if [ "$fails" -ne 0 ]; then
	for f in once cfail indb-once a b vg; do
		[ -f "$tmp/$f.log" ] && sed "s/^/# $f: /" "$tmp/$f.log" | tail -40
	done
fi
[ "$fails" -eq 0 ]
