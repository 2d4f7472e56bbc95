#!/bin/bash
# The dispatcher background workers run in-database consumers by
# themselves, soon after the appending commit, and through real faults:
# every appended event's effect is written exactly once, whatever happens.
#
# Each consumer's handler inserts a row into dispatcher_test.effects per
# event it handles.  That table has no unique constraint, so an event
# handled twice shows as two rows: the checks count rows and distinct
# event ids and compare them with the events appended to the topic.
#
# Faults: a worker killed with SIGKILL in the middle of a batch (the
# postmaster then restarts every backend), an immediate restart of the
# cluster in the middle of a run, handlers that fail for a while or for
# good, a handler function that is dropped, and two workers competing for
# the same consumers.  Settings changed with ALTER SYSTEM are reset at the
# end (eventstore.workers with a restart), also when the script dies.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
db=$PGDATABASE	# q's, and where the plain psql calls go
echo "1..16"
# q_in "$db" SQL...: statements of their own (ALTER SYSTEM); wait_for's
# errors count as "not yet" (the server may be restarting).

# elapsed START: seconds since START (an $EPOCHREALTIME), 2 decimals
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

dispatchers_sql="SELECT count(*) FROM pg_stat_activity
                  WHERE backend_type = 'eventstore dispatcher' AND datname = current_database()"

# The cluster under test: its data directory, owner and server log (where
# the postmaster's stderr goes).  Restarts use pg_ctl as the owner, which
# starts the server again with the options it was started with (in
# postmaster.opts).  Not pg_ctlcluster: it decides whether the cluster runs
# from /var/run/postgresql/15-regress.pid, which every concurrent
# pg_virtualenv cluster shares.
data_dir=$(q "SHOW data_directory")
owner=$(stat -c %U "$data_dir")
pg_ctl="$("${PG_CONFIG:-pg_config}" --bindir)/pg_ctl"
pg_log=$(readlink "/proc/$(head -1 "$data_dir/postmaster.pid")/fd/2")
if [ ! -f "$pg_log" ] || [ ! -x "$pg_ctl" ]; then
	echo "Bail out! cannot find the server log ($pg_log) or pg_ctl ($pg_ctl)"
	exit 1
fi

restart_cluster() {	# restart_cluster MODE: stop in MODE, start, wait for it
	local out
	out=$(cd / && runuser -u "$owner" -- "$pg_ctl" restart -D "$data_dir" -w -t 60 \
		-m "$1" -l "$pg_log" 2>&1) || { diag "pg_ctl restart -m $1 failed: $out"; return 1; }
}

# ALTER SYSTEM values of the settings this script changes, to put back.
gucs="'eventstore.poll_interval', 'eventstore.retry_delay', 'eventstore.workers', 'eventstore.batch_delay'"
saved_gucs=$(q "SELECT format('ALTER SYSTEM SET %s = %L', name, setting)
                  FROM pg_file_settings
                 WHERE sourcefile LIKE '%/postgresql.auto.conf' AND name IN ($gucs)
                 ORDER BY seqno")
workers_before=$(q "SHOW eventstore.workers")

finish() {
	set +e
	psql -XAtq >/dev/null 2>&1 <<'SQL'
SET client_min_messages = warning;
SELECT eventstore.drop_consumer(name) FROM eventstore.consumers WHERE name LIKE 'dt\_%';
DROP SCHEMA IF EXISTS dispatcher_test CASCADE;
SQL
	q_in "$db" "ALTER SYSTEM RESET eventstore.poll_interval" "ALTER SYSTEM RESET eventstore.retry_delay" \
		"ALTER SYSTEM RESET eventstore.workers" "ALTER SYSTEM RESET eventstore.batch_delay" >/dev/null
	while read -r stmt; do
		[ -n "$stmt" ] && q "$stmt" >/dev/null
	done <<<"$saved_gucs"
	q "SELECT pg_reload_conf()" >/dev/null
	if [ "$(q "SHOW eventstore.workers")" != "$workers_before" ]; then
		restart_cluster fast
		wait_for 30 "SELECT ($dispatchers_sql) = $workers_before"
	fi
}
trap finish EXIT

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || { echo "Bail out! setup failed"; exit 1; }
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS dispatcher_test CASCADE;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION IF NOT EXISTS eventstore;
CREATE SCHEMA dispatcher_test;

CREATE FUNCTION dispatcher_test.envelope(i integer, kind text DEFAULT 'plain') RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
    SELECT jsonb_build_object('id', gen_random_uuid(), 'type', 'tested', 'version', '1.0',
                              'data', jsonb_build_object('i', i, 'kind', kind),
                              'metadata', jsonb_build_object('source', 'dispatcher.sh',
                                                             'time', '2026-01-01T00:00:00Z'))
$$;

-- One row per handler call that committed; deliberately no unique key.
CREATE TABLE dispatcher_test.effects (
    consumer text NOT NULL,
    event_id uuid NOT NULL,
    pid      integer NOT NULL DEFAULT pg_backend_pid(),
    started  timestamptz,
    finished timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE FUNCTION dispatcher_test.record(consumer text, e eventstore.event,
                                       started timestamptz DEFAULT NULL) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO dispatcher_test.effects (consumer, event_id, started) VALUES (consumer, e.id, started)
$$;

-- The consumer's effects against the events of its topic.
CREATE FUNCTION dispatcher_test.tally(c text, t text) RETURNS text
LANGUAGE sql AS $$
    SELECT format('events=%s effects=%s distinct=%s missing=%s foreign=%s',
        (SELECT count(*) FROM eventstore.events e WHERE e.topic = t),
        (SELECT count(*) FROM dispatcher_test.effects f WHERE f.consumer = c),
        (SELECT count(DISTINCT f.event_id) FROM dispatcher_test.effects f WHERE f.consumer = c),
        (SELECT count(*) FROM eventstore.events e
          WHERE e.topic = t
            AND NOT EXISTS (SELECT FROM dispatcher_test.effects f
                             WHERE f.consumer = c AND f.event_id = e.id)),
        (SELECT count(*) FROM dispatcher_test.effects f
          WHERE f.consumer = c
            AND NOT EXISTS (SELECT FROM eventstore.events e
                             WHERE e.topic = t AND e.id = f.event_id)))
$$;

SELECT eventstore.create_topic(t)
  FROM unnest(ARRAY['dt_basic', 'dt_latency', 'dt_crash', 'dt_restart', 'dt_derived',
                    'dt_retry', 'dt_park', 'dt_fault', 'dt_par', 'dt_gather']) AS t;

-- Handlers, one per consumer.
CREATE FUNCTION dispatcher_test.basic(e eventstore.event) RETURNS void
LANGUAGE sql AS $$ SELECT dispatcher_test.record('dt_basic', e) $$;

CREATE FUNCTION dispatcher_test.latency(e eventstore.event) RETURNS void
LANGUAGE sql AS $$ SELECT dispatcher_test.record('dt_latency', e) $$;

CREATE FUNCTION dispatcher_test.gather(e eventstore.event) RETURNS void
LANGUAGE sql AS $$ SELECT dispatcher_test.record('dt_gather', e) $$;

-- Slow; the sequence shows progress inside the (uncommitted) batch.
CREATE SEQUENCE dispatcher_test.crash_progress;
CREATE FUNCTION dispatcher_test.crash(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('dispatcher_test.crash_progress');
    PERFORM pg_sleep(0.05);
    PERFORM dispatcher_test.record('dt_crash', e);
END
$$;

-- Appends a derived event with a deterministic id and content.
CREATE FUNCTION dispatcher_test.restart(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.02);
    PERFORM eventstore.append('dt_derived',
        jsonb_build_object('id', eventstore.derived_id(e.id, 'dt_restart'),
                           'type', 'derived', 'version', '1.0',
                           'data', jsonb_build_object('source', e.id),
                           'metadata', jsonb_build_object('source', 'dt_restart',
                                                          'time', '2026-01-01T00:00:00Z')));
    PERFORM dispatcher_test.record('dt_restart', e);
END
$$;

-- Fails the first three calls: nextval outlives the rolled-back call.
CREATE SEQUENCE dispatcher_test.fails;
CREATE FUNCTION dispatcher_test.retry(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    call bigint := nextval('dispatcher_test.fails');
BEGIN
    IF call <= 3 THEN
        RAISE EXCEPTION 'transient failure %', call;
    END IF;
    PERFORM dispatcher_test.record('dt_retry', e);
END
$$;

-- Refuses poison events until the flag says the handler is fixed.
CREATE TABLE dispatcher_test.park_fixed (fixed boolean NOT NULL);
INSERT INTO dispatcher_test.park_fixed VALUES (false);
CREATE FUNCTION dispatcher_test.park(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF e.envelope -> 'data' ->> 'kind' = 'poison'
       AND NOT (SELECT fixed FROM dispatcher_test.park_fixed) THEN
        RAISE EXCEPTION 'poison event % refused', e.id;
    END IF;
    PERFORM dispatcher_test.record('dt_park', e);
END
$$;

-- dt_a_broken runs before dt_b_alive in a worker's round (name order).
CREATE FUNCTION dispatcher_test.a_broken(e eventstore.event) RETURNS void
LANGUAGE sql AS $$ SELECT dispatcher_test.record('dt_a_broken', e) $$;
CREATE FUNCTION dispatcher_test.b_alive(e eventstore.event) RETURNS void
LANGUAGE sql AS $$ SELECT dispatcher_test.record('dt_b_alive', e) $$;

-- Slow handlers recording when they started and ended.  A worker whose
-- pid is in dispatcher_test.hold waits inside the handler (for at most
-- 30 s), keeping the consumer it runs locked.
CREATE TABLE dispatcher_test.hold (pid integer);
CREATE FUNCTION dispatcher_test.par(consumer text, e eventstore.event) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
BEGIN
    WHILE EXISTS (SELECT FROM dispatcher_test.hold WHERE pid = pg_backend_pid())
          AND clock_timestamp() < started + interval '30 s' LOOP
        PERFORM pg_sleep(0.01);
    END LOOP;
    PERFORM pg_sleep(0.01);
    PERFORM dispatcher_test.record(consumer, e, started);
END
$$;
DO $$
BEGIN
    FOR k IN 1..4 LOOP
        EXECUTE format('CREATE FUNCTION dispatcher_test.par_%s(e eventstore.event) RETURNS void
                        LANGUAGE sql AS $f$ SELECT dispatcher_test.par(%L, e) $f$',
                       k, 'dt_par_' || k);
    END LOOP;
END
$$;

-- Appends one event to topic, commits, and waits (up to 5 s) for its
-- effect by the consumer of the same name: the seconds from the commit to
-- the effect being visible, or NULL.
CREATE PROCEDURE dispatcher_test.append_and_wait(INOUT seconds float8 DEFAULT NULL,
                                                 topic text DEFAULT 'dt_latency')
LANGUAGE plpgsql AS $$
DECLARE
    ev jsonb := dispatcher_test.envelope(0);
    t0 timestamptz;
BEGIN
    PERFORM eventstore.append(topic, ev);
    COMMIT;
    t0 := clock_timestamp();
    LOOP
        IF EXISTS (SELECT FROM dispatcher_test.effects
                    WHERE consumer = topic AND event_id = (ev ->> 'id')::uuid) THEN
            seconds := extract(epoch FROM clock_timestamp() - t0);
            RETURN;
        END IF;
        EXIT WHEN clock_timestamp() > t0 + interval '5 s';
        PERFORM pg_sleep(0.005);
    END LOOP;
END
$$;
SQL

# consumer NAME TOPIC HANDLER [ARGS]: an in-database consumer
consumer() {
	q "SELECT eventstore.create_consumer('$1', '{$2}', 'dispatcher_test.$3(eventstore.event)'${4:+, $4})" >/dev/null
}
# status NAME EXPR: an expression over the consumer's consumer_status row
status() { q "SELECT $2 FROM eventstore.consumer_status WHERE name = '$1'"; }
drained() { echo "SELECT lag_events = 0 AND handled >= $2 FROM eventstore.consumer_status WHERE name = '$1'"; }

# ---------------------------------------------------------------------------
# 1. The dispatcher is there.
count=$(q "$dispatchers_sql")
[ "$count" -ge 1 ]
ok $? "$count eventstore dispatcher backend(s) connected to $PGDATABASE"

# ---------------------------------------------------------------------------
# 2. Every event once, nobody calling run_consumer: a batch of 150 in one
# transaction, then 100 single appends.
consumer dt_basic dt_basic basic
start=$EPOCHREALTIME
q "SELECT count(*) FROM eventstore.append_batch('dt_basic',
       ARRAY(SELECT dispatcher_test.envelope(g) FROM generate_series(1, 150) g))" >/dev/null
psql -XAtq -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SELECT format('SELECT eventstore.append(%L, dispatcher_test.envelope(%s))', 'dt_basic', g)
  FROM generate_series(151, 250) g \gexec
SQL
wait_for 30 "$(drained dt_basic 250)"
took=$(elapsed "$start")
tally=$(q "SELECT dispatcher_test.tally('dt_basic', 'dt_basic')")
[ "$tally" = "events=250 effects=250 distinct=250 missing=0 foreign=0" ] &&
	awk -v t="$took" 'BEGIN { exit !(t < 15) }'
ok $? "250 appended events handled exactly once by the dispatcher in ${took}s ($tally)"

# ---------------------------------------------------------------------------
# 3. Woken by the commit: with a 60 s poll interval, effects appear at once.
# The first wait after the reload still uses the old interval (1 s), hence
# the pause before measuring.
consumer dt_latency dt_latency latency
q_in "$db" "ALTER SYSTEM SET eventstore.poll_interval = '60s'" "SELECT pg_reload_conf()" >/dev/null
sleep 1.5
latencies=()
for _ in 1 2 3 4 5; do
	latencies+=("$(q "CALL dispatcher_test.append_and_wait()")")
	[ -z "${latencies[-1]}" ] && break
	sleep 0.2
done
q_in "$db" "ALTER SYSTEM RESET eventstore.poll_interval" "SELECT pg_reload_conf()" >/dev/null
worst=$(printf '%s\n' "${latencies[@]}" | awk 'BEGIN { m = 0 } $0 == "" { m = "timeout"; exit }
	{ if ($1 > m) m = $1 } END { if (m == "timeout") print m; else printf "%.3f", m }')
[ "${#latencies[@]}" -eq 5 ] && [ "$worst" != timeout ] && awk -v w="$worst" 'BEGIN { exit !(w < 2) }'
ok $? "with poll_interval 60s, 5 appends each took effect within 2 s of commit (slowest: ${worst}s)"

# ---------------------------------------------------------------------------
# 3b. Waiting for a fuller batch (eventstore.batch_delay): out of range is
# refused; with a delay of 300 ms, an event after a quiet spell still takes
# effect at once, and under a steady stream of appends (pgbench, 4 clients,
# 2 s) the worker takes them in few, large batches.  The batches are the
# distinct transactions of the effect rows.
refused=$(q_in "$db" "ALTER SYSTEM SET eventstore.batch_delay = 1001" 2>&1)
[[ "$refused" == *"1001 ms is outside the valid range for parameter \"eventstore.batch_delay\" (0 .. 1000)"* ]]
ok $? "eventstore.batch_delay above 1000 ms is refused"
consumer dt_gather dt_gather gather "batch_size => 10000"
q_in "$db" "ALTER SYSTEM SET eventstore.batch_delay = 300" "SELECT pg_reload_conf()" >/dev/null
sleep 1.5
first=$(q "CALL dispatcher_test.append_and_wait(NULL, 'dt_gather')")
[ -n "$first" ] && awk -v t="$first" 'BEGIN { exit !(t < 0.25) }'
ok $? "batch_delay 300 ms: an event after a quiet spell takes effect at once (${first:-timeout} s)"
gather_dir=$(mktemp -d)
echo "SELECT eventstore.append('dt_gather', dispatcher_test.envelope(1));" >"$gather_dir/append.sql"
pgbench -n -c 4 -j 4 -T 2 -f "$gather_dir/append.sql" "$db" >"$gather_dir/pgbench.log" 2>&1
rm -rf "$gather_dir"
wait_for 30 "$(drained dt_gather 2)"
tally=$(q "SELECT dispatcher_test.tally('dt_gather', 'dt_gather')")
gathered=$(q "SELECT count(*) || ' ' || count(DISTINCT xmin::text) FROM dispatcher_test.effects
               WHERE consumer = 'dt_gather'")
q_in "$db" "ALTER SYSTEM RESET eventstore.batch_delay" "SELECT pg_reload_conf()" >/dev/null
read -r n_events n_batches <<<"$gathered"
[[ "$tally" == *" missing=0 foreign=0" ]] &&
	[ "$(q "SELECT count(*) = count(DISTINCT event_id) FROM dispatcher_test.effects WHERE consumer = 'dt_gather'")" = t ] &&
	[ "$n_events" -ge 200 ] && [ "$n_batches" -le $((n_events / 10)) ]
ok $? "batch_delay 300 ms under pgbench appends: $n_events events once each in $n_batches batches ($tally)"

# ---------------------------------------------------------------------------
# 4. kill -9 of the worker while it is in the middle of a 100-event batch.
consumer dt_crash dt_crash crash "batch_size => 200"
q "SELECT count(*) FROM eventstore.append_batch('dt_crash',
       ARRAY(SELECT dispatcher_test.envelope(g) FROM generate_series(1, 100) g))" >/dev/null
running="SELECT pid FROM pg_stat_activity
          WHERE backend_type = 'eventstore dispatcher' AND state = 'active'
            AND query = 'eventstore: running consumer dt_crash member 0'"
wait_for 30 "SELECT EXISTS ($running)
                AND (SELECT last_value >= 20 FROM dispatcher_test.crash_progress)"
victim=$(q "$running" | head -1)
progress=$(q "SELECT last_value FROM dispatcher_test.crash_progress")
before=$(q "SELECT count(*) FROM dispatcher_test.effects WHERE consumer = 'dt_crash'")
if [ -n "$victim" ]; then
	kill -9 "$victim"
	# the postmaster restarts every backend; then a new dispatcher connects
	wait_for 60 "SELECT ($dispatchers_sql AND pid <> $victim) >= 1"
	wait_for 60 "$(drained dt_crash 100)"
fi
tally=$(q "SELECT dispatcher_test.tally('dt_crash', 'dt_crash')")
grep -q "(PID ${victim:-none}) was terminated by signal 9" "$pg_log"
logged=$?
diag "$(grep -E "terminated by signal 9|all server processes terminated|database system is ready" "$pg_log" | tail -3)"
[ -n "$victim" ] && [ "$progress" -ge 20 ] && [ "$before" -lt 100 ] && [ "$logged" -eq 0 ] &&
	[ "$tally" = "events=100 effects=100 distinct=100 missing=0 foreign=0" ]
ok $? "kill -9 of worker ${victim:-?} after $progress handler calls ($before effects committed): every event once after the restart ($tally)"

# ---------------------------------------------------------------------------
# 5. pg_ctl restart -m immediate in the middle of a run of batches of
# 20; the handler also appends a derived event.
consumer dt_restart dt_restart restart "batch_size => 20"
q "SELECT count(*) FROM eventstore.append_batch('dt_restart',
       ARRAY(SELECT dispatcher_test.envelope(g) FROM generate_series(1, 200) g))" >/dev/null
wait_for 30 "SELECT (SELECT count(*) >= 40 FROM dispatcher_test.effects WHERE consumer = 'dt_restart')
                AND EXISTS (SELECT FROM pg_stat_activity
                             WHERE query = 'eventstore: running consumer dt_restart member 0')"
before=$(q "SELECT count(*) FROM dispatcher_test.effects WHERE consumer = 'dt_restart'")
shutdowns=$(grep -c "received immediate shutdown request" "$pg_log")
restart_cluster immediate &&
	[ "$(grep -c "received immediate shutdown request" "$pg_log")" -gt "$shutdowns" ]
restarted=$?
wait_for 60 "SELECT ($dispatchers_sql) >= 1"
wait_for 60 "$(drained dt_restart 200)"
tally=$(q "SELECT dispatcher_test.tally('dt_restart', 'dt_restart')")
derived=$(q "SELECT format('derived=%s distinct=%s matching=%s', count(*), count(DISTINCT d.id),
                           count(*) FILTER (WHERE d.id IN (SELECT eventstore.derived_id(s.id, 'dt_restart')
                                                             FROM eventstore.events s
                                                            WHERE s.topic = 'dt_restart')))
               FROM eventstore.events d WHERE d.topic = 'dt_derived'")
[ "$restarted" -eq 0 ] && [ "$before" -lt 200 ] &&
	[ "$tally" = "events=200 effects=200 distinct=200 missing=0 foreign=0" ] &&
	[ "$derived" = "derived=200 distinct=200 matching=200" ]
ok $? "immediate restart after $before of 200 effects: every event once ($tally), $derived"

# ---------------------------------------------------------------------------
# 6. A handler failing three times, then succeeding.
q_in "$db" "ALTER SYSTEM SET eventstore.retry_delay = '100ms'" "SELECT pg_reload_conf()" >/dev/null
consumer dt_retry dt_retry retry
q "SELECT eventstore.append('dt_retry', dispatcher_test.envelope(1))" >/dev/null
wait_for 30 "$(drained dt_retry 1)"
tally=$(q "SELECT dispatcher_test.tally('dt_retry', 'dt_retry')")
state=$(status dt_retry "format('attempts=%s parked=%s error=%s', attempts, parked, last_error)")
calls=$(q "SELECT last_value FROM dispatcher_test.fails")
[ "$tally" = "events=1 effects=1 distinct=1 missing=0 foreign=0" ] &&
	[ "$state" = "attempts=0 parked=0 error=transient failure 3" ] && [ "$calls" -eq 4 ]
ok $? "failing 3 times then succeeding: handled once in $calls calls ($tally; $state)"

# ---------------------------------------------------------------------------
# 7, 8. A handler that always fails on one event: parked after max_attempts,
# later events still handled; replay_parked after the fix handles it once.
consumer dt_park dt_park park "max_attempts => 3"
poison=$(q_in "$db" "SELECT eventstore.append('dt_park', dispatcher_test.envelope(0, 'poison'))" \
	"SELECT id FROM eventstore.events WHERE topic = 'dt_park'" | tail -1)
for i in 1 2 3; do
	q "SELECT eventstore.append('dt_park', dispatcher_test.envelope($i))" >/dev/null
done
wait_for 30 "SELECT lag_events = 0 AND parked = 1 FROM eventstore.consumer_status WHERE name = 'dt_park'"
parked=$(q "SELECT format('%s attempts=%s error=%s', event_id = '$poison', attempts, error)
              FROM eventstore.parked WHERE consumer = 'dt_park'")
others=$(q "SELECT format('effects=%s distinct=%s poison=%s', count(*), count(DISTINCT event_id),
                          count(*) FILTER (WHERE event_id = '$poison'))
              FROM dispatcher_test.effects WHERE consumer = 'dt_park'")
[ "$parked" = "t attempts=3 error=poison event $poison refused" ] &&
	[ "$others" = "effects=3 distinct=3 poison=0" ]
ok $? "an always-failing event is parked after 3 attempts ($parked), the 3 later events handled ($others)"

q_in "$db" "UPDATE dispatcher_test.park_fixed SET fixed = true" \
	"SELECT eventstore.replay_parked('dt_park', '$poison')" >/dev/null
wait_for 30 "SELECT parked = 0 FROM eventstore.consumer_status WHERE name = 'dt_park'
                AND EXISTS (SELECT FROM dispatcher_test.effects WHERE event_id = '$poison')"
tally=$(q "SELECT dispatcher_test.tally('dt_park', 'dt_park')")
left=$(q "SELECT count(*) FROM eventstore.parked WHERE consumer = 'dt_park'")
[ "$tally" = "events=4 effects=4 distinct=4 missing=0 foreign=0" ] && [ "$left" -eq 0 ]
ok $? "replay_parked after the fix: the parked event handled once, its parked row gone ($tally)"
q_in "$db" "ALTER SYSTEM RESET eventstore.retry_delay" "SELECT pg_reload_conf()" >/dev/null

# ---------------------------------------------------------------------------
# 9. A handler that is dropped: the error escapes the handler machinery;
# the other consumer, after it in the round, goes on.
consumer dt_a_broken dt_fault a_broken
consumer dt_b_alive dt_fault b_alive
q "SELECT eventstore.append('dt_fault', dispatcher_test.envelope(0))" >/dev/null
wait_for 30 "SELECT bool_and(lag_events = 0 AND handled = 1) FROM eventstore.consumer_status
              WHERE name IN ('dt_a_broken', 'dt_b_alive')"
dispatcher_pids="SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
                  WHERE backend_type = 'eventstore dispatcher' AND datname = current_database()"
pid_before=$(q "$dispatcher_pids")
q "DROP FUNCTION dispatcher_test.a_broken(eventstore.event)" >/dev/null
for i in 1 2 3 4 5; do
	q "SELECT eventstore.append('dt_fault', dispatcher_test.envelope($i))" >/dev/null
done
wait_for 30 "SELECT (SELECT last_error IS NOT NULL FROM eventstore.consumer_status WHERE name = 'dt_a_broken')
                AND ($(drained dt_b_alive 6))"
# more events once the broken one has failed: still handled
for i in 6 7 8 9 10; do
	q "SELECT eventstore.append('dt_fault', dispatcher_test.envelope($i))" >/dev/null
done
wait_for 30 "$(drained dt_b_alive 11)"
error=$(status dt_a_broken "last_error")
broken=$(status dt_a_broken "format('lag=%s handled=%s', lag_events, handled)")
tally=$(q "SELECT dispatcher_test.tally('dt_b_alive', 'dt_fault')")
pid_after=$(q "$dispatcher_pids")
diag "last_error of dt_a_broken: $error"
[[ "$error" == *dispatcher_test.a_broken*"does not exist"* ]] && [ "$broken" = "lag=10 handled=1" ] &&
	[ "$tally" = "events=11 effects=11 distinct=11 missing=0 foreign=0" ] && [ "$pid_before" = "$pid_after" ]
ok $? "a dropped handler is recorded in last_error, its events wait ($broken); the other consumer goes on ($tally), same worker $pid_after"
q "SELECT eventstore.drop_consumer('dt_a_broken')" >/dev/null

# ---------------------------------------------------------------------------
# 10, 11, 12. Two workers: never the same consumer at once.
q "ALTER SYSTEM SET eventstore.workers = 2" >/dev/null
restart_cluster fast
wait_for 60 "SELECT ($dispatchers_sql) = 2"
workers=$(q "$dispatchers_sql")
[ "$workers" -eq 2 ]
ok $? "eventstore.workers = 2 after a restart: $workers dispatcher backends"

# Both workers are made to run the same consumers, at different times: the
# workers are held inside a handler in turn (dispatcher_test.hold), so that
# first worker 1 handles the consumers worker 0 is not stuck on, then
# worker 0 handles them for a second wave of events.
read -r p0 p1 < <(q "SELECT string_agg(pid::text, ' ' ORDER BY application_name) FROM pg_stat_activity
                     WHERE backend_type = 'eventstore dispatcher' AND datname = current_database()")
for k in 1 2 3 4; do
	consumer "dt_par_$k" dt_par "par_$k" "batch_size => 4"
done
par_append() {
	q "SELECT count(*) FROM eventstore.append_batch('dt_par',
           ARRAY(SELECT dispatcher_test.envelope(g) FROM generate_series(1, 20) g))" >/dev/null
}
par_drained="SELECT count(*) FILTER (WHERE lag_events = 0)
               FROM eventstore.consumer_status WHERE name LIKE 'dt\_par\__'"
par_busy() {	# par_busy PID: SQL, whether the worker runs a dt_par consumer
	echo "EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1
	                AND query LIKE 'eventstore: running consumer dt\_par\__ member %')"
}
# a) both held, each stuck in a consumer of its own
q "INSERT INTO dispatcher_test.hold VALUES (${p0:-0}), (${p1:-0})" >/dev/null
par_append
wait_for 30 "SELECT $(par_busy "${p0:-0}") AND $(par_busy "${p1:-0}")"
steps=$?
# b) worker 1 goes on: it drains the three consumers worker 0 does not hold
q "DELETE FROM dispatcher_test.hold WHERE pid = ${p1:-0}" >/dev/null
wait_for 30 "SELECT ($par_drained) = 3"
steps=$((steps + $?))
# c) worker 1 held, worker 0 free; a second wave
q "DELETE FROM dispatcher_test.hold; INSERT INTO dispatcher_test.hold VALUES (${p1:-0})" >/dev/null
par_append
wait_for 30 "SELECT ($par_drained) = 4 OR (($par_drained) = 3 AND $(par_busy "${p1:-0}"))"
steps=$((steps + $?))
# d) nobody held
q "DELETE FROM dispatcher_test.hold" >/dev/null
wait_for 60 "SELECT ($par_drained) = 4"
steps=$((steps + $?))
tallies=$(q "SELECT string_agg(DISTINCT dispatcher_test.tally(name, 'dt_par'), '; ')
               FROM eventstore.consumers WHERE name LIKE 'dt\_par\__'")
overlaps=$(q "SELECT count(*) FROM dispatcher_test.effects a JOIN dispatcher_test.effects b
                ON a.consumer = b.consumer AND a.pid < b.pid
               AND a.started < b.finished AND b.started < a.finished
             WHERE a.consumer LIKE 'dt\_par\__'")
pids=$(q "SELECT format('pids=%s shared=%s',
                        string_agg(DISTINCT pid::text, ',' ORDER BY pid::text),
                        (SELECT count(*) FROM (SELECT FROM dispatcher_test.effects
                                                WHERE consumer LIKE 'dt\_par\__'
                                                GROUP BY consumer HAVING count(DISTINCT pid) = 2) s))
            FROM dispatcher_test.effects WHERE consumer LIKE 'dt\_par\__'")
diag "handler calls per consumer and pid: $(q "SELECT string_agg(format('%s/%s:%s', consumer, pid, n), ' ' ORDER BY consumer, pid)
                  FROM (SELECT consumer, pid, count(*) AS n FROM dispatcher_test.effects
                         WHERE consumer LIKE 'dt\_par\__' GROUP BY 1, 2) s")"
expected_pids=$(printf '%s\n' "$p0" "$p1" | sort | paste -sd,)
[ "$steps" -eq 0 ] && [ "$tallies" = "events=40 effects=40 distinct=40 missing=0 foreign=0" ] &&
	[ "$overlaps" -eq 0 ] && [[ "$pids" == "pids=$expected_pids shared="* ]] && [ "${pids##*shared=}" -ge 2 ]
ok $? "4 consumers, 2 workers: every event once per consumer ($tallies), $overlaps overlapping runs of one consumer by both workers ($pids)"
for k in 1 2 3 4; do
	q "SELECT eventstore.drop_consumer('dt_par_$k')" >/dev/null
done
q "ALTER SYSTEM RESET eventstore.workers" >/dev/null
restart_cluster fast
wait_for 60 "SELECT ($dispatchers_sql) = 1"
workers=$(q "SHOW eventstore.workers")","$(q "$dispatchers_sql")
[ "$workers" = "$workers_before,$workers_before" ]
ok $? "eventstore.workers reset and restarted: back to $workers_before dispatcher(s)"

finish
trap - EXIT
settings=$(q "SELECT count(*) FROM pg_file_settings WHERE sourcefile LIKE '%/postgresql.auto.conf'
                AND name IN ($gucs)")
[ "$settings" -eq "$(grep -c . <<<"$saved_gucs")" ] &&
	[ "$(q "SELECT count(*) FROM eventstore.consumers WHERE name LIKE 'dt\_%'")" -eq 0 ]
ok $? "cleanup: consumers dropped, ALTER SYSTEM settings as found"
[ "$fails" -eq 0 ]
