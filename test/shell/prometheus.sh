#!/bin/bash
# The Prometheus monitoring of contrib/prometheus: Debian's
# prometheus-postgres-exporter with queries.yaml reports the store's state
# as it is, logged in as a monitoring role (pg_monitor and
# eventstore_reader), and the alert rules pass promtool's checks and unit
# tests.
#
# A topic prom_t with three consumers: prom_in (in-database, its handler
# fails for the events n = 7, 42 and 93, parked at once with max_attempts
# 1), prom_stuck (in-database, fails on every event: it retries the first
# one) and prom_out (outside, never polled).  100 events are appended, the
# dispatcher runs prom_in until it is caught up, and one append with a bad
# envelope is refused.  Then the exporter runs on a free port against this
# cluster, and its /metrics must show: prom_out 100 events behind, prom_in
# caught up with 3 parked and 97 handled, prom_stuck failing, a dispatcher
# worker and the launcher, and from eventstore.stats 100 appended, 3
# parked, the handler calls and failures and the refusal.  Then one
# exporter with the connection strings of two databases reports each
# one's consumers.  The exporter is stopped and the test's objects
# dropped at the end, also when the script dies.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
db=${PGDATABASE:-eventstore_test}
echo "1..17"

dir=contrib/prometheus
for cmd in prometheus-postgres-exporter promtool curl; do
	command -v "$cmd" >/dev/null || bail "$cmd is not installed (scripts/install-deps installs it)"
done

tmp=$(mktemp -d)
exporter_pid=""
role=prom_monitor
secret="prom-$RANDOM$RANDOM"

stop_exporter() {
	[ -n "$exporter_pid" ] || return 0
	kill "$exporter_pid" 2>/dev/null
	wait "$exporter_pid" 2>/dev/null
	exporter_pid=""
}

finish() {
	set +e
	stop_exporter
	psql -XAtq >/dev/null 2>&1 <<SQL
SET client_min_messages = warning;
SELECT eventstore.drop_consumer(name) FROM eventstore.consumers WHERE name LIKE 'prom\_%';
DROP SCHEMA IF EXISTS prom_test CASCADE;
DROP ROLE IF EXISTS $role;
SQL
	q "DROP DATABASE IF EXISTS prom_second WITH (FORCE)" >/dev/null 2>&1
	rm -rf "$tmp"
}
trap finish EXIT

# ---------------------------------------------------------------------------
# 1, 2. The rule file and its unit tests, without a database.
out=$(promtool check rules "$dir/alerts.yml" 2>&1)
ok $? "promtool check rules $dir/alerts.yml: $(grep -o 'SUCCESS.*' <<<"$out" || echo failed)"
[ "${out/SUCCESS/}" = "$out" ] && diag "$out"

out=$(promtool test rules "$dir/alerts_test.yml" 2>&1)
ok $? "promtool test rules $dir/alerts_test.yml: the lag, parked and no-dispatcher alerts fire and stay silent when they should"
grep -q SUCCESS <<<"$out" || diag "$out"

# ---------------------------------------------------------------------------
# The store's state.
psql -XAtq -v ON_ERROR_STOP=1 >/dev/null <<SQL || bail "setup failed"
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS eventstore;
DROP SCHEMA IF EXISTS prom_test CASCADE;
DROP ROLE IF EXISTS $role;
CREATE ROLE $role LOGIN PASSWORD '$secret' IN ROLE pg_monitor, eventstore_reader;
CREATE SCHEMA prom_test;
CREATE FUNCTION prom_test.envelope(n integer) RETURNS jsonb
LANGUAGE sql AS \$\$
    SELECT jsonb_build_object('id', gen_random_uuid(), 'type', 'counted', 'version', '1.0',
                              'data', jsonb_build_object('n', n),
                              'metadata', jsonb_build_object('source', 'prometheus.sh',
                                                             'time', '2026-01-01T00:00:00Z'))
\$\$;
CREATE FUNCTION prom_test.handle(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS \$\$
BEGIN
    IF (e.envelope -> 'data' ->> 'n')::integer IN (7, 42, 93) THEN
        RAISE EXCEPTION 'event % refused', e.envelope -> 'data' ->> 'n';
    END IF;
END
\$\$;
CREATE FUNCTION prom_test.stuck(e eventstore.event) RETURNS void
LANGUAGE plpgsql AS \$\$
BEGIN
    RAISE EXCEPTION 'prom_stuck fails on every event';
END
\$\$;
SELECT eventstore.create_topic('prom_t');
SELECT eventstore.create_consumer('prom_in', '{prom_t}', 'prom_test.handle(eventstore.event)',
                                  max_attempts => 1);
SELECT eventstore.create_consumer('prom_stuck', '{prom_t}', 'prom_test.stuck(eventstore.event)',
                                  max_attempts => 1000);
SELECT eventstore.create_consumer('prom_out', '{prom_t}');
SQL

q "SELECT eventstore.append('prom_t', prom_test.envelope(n)) FROM generate_series(1, 100) n" >/dev/null ||
	bail "the 100 appends failed"
wait_for 60 "SELECT lag_events = 0 AND parked = 3 FROM eventstore.consumer_status WHERE name = 'prom_in'" ||
	bail "prom_in did not catch up: $(q "SELECT format('lag=%s parked=%s error=%s', lag_events, parked, last_error)
	                                        FROM eventstore.consumer_status WHERE name = 'prom_in'")"
wait_for 30 "SELECT attempts >= 1 FROM eventstore.consumer_status WHERE name = 'prom_stuck'" ||
	bail "prom_stuck never failed"
# A bad envelope (no type): refused with 22023.
q "SELECT eventstore.append('prom_t', prom_test.envelope(0) - 'type')" >/dev/null 2>&1 &&
	bail "an envelope without a type was appended"

queries=$dir/queries.yaml

# ---------------------------------------------------------------------------
# 3. The exporter, on a free port, as the monitoring role.
while :; do
	port=$((20000 + RANDOM % 12000))
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
done
dsn() { echo "host=${PGHOST:-localhost} port=${PGPORT:-5432} dbname=$1 user=$role password=$secret sslmode=disable"; }
# start_exporter DATA_SOURCE_NAME: only the metrics of queries.yaml (the
# default ones collide when two connections go to one server), then waits
# for a scrape into $tmp/metrics.  A clean environment: the exporter's
# driver (lib/pq) reads the PG* variables too, and panics on some
# (PGSYSCONFDIR, which pg_virtualenv sets).
start_exporter() {
	env -i PATH="$PATH" DATA_SOURCE_NAME="$1" \
		prometheus-postgres-exporter --extend.query-path="$queries" \
		--web.listen-address="127.0.0.1:$port" --disable-default-metrics --disable-settings-metrics \
		--no-collector.database --no-collector.bgwriter --log.level=info \
		>"$tmp/exporter.log" 2>&1 &
	exporter_pid=$!
	wait_until 30 curl -sf -o "$tmp/metrics" "http://127.0.0.1:$port/metrics"
}
start_exporter "$(dsn "$db")"
served=$?
ok $served "prometheus-postgres-exporter serves /metrics on 127.0.0.1:$port with $queries"
[ $served -ne 0 ] && diag "$(cat "$tmp/exporter.log"; curl -sS "http://127.0.0.1:$port/metrics" 2>&1 | head -20)"
# The queries ran at the first scrape: their errors would show in the log.
errors=$(grep -E 'level=(error|warn)|err=' "$tmp/exporter.log")
up=$(grep -E '^pg_up ' "$tmp/metrics" | cut -d' ' -f2)
scrape_error=$(grep -E '^pg_exporter_last_scrape_error ' "$tmp/metrics" | cut -d' ' -f2)
[ "$up" = 1 ] && [ "$scrape_error" = 0 ] && [ -z "$errors" ]
ok $? "the exporter reaches the database as $role and every query succeeds (pg_up $up, last_scrape_error $scrape_error)"
[ -n "$errors" ] && diag "$(cat "$tmp/exporter.log")"

# metric NAME LABEL=VALUE...: the value of the one series of NAME with
# these labels, else "none".
metric() {
	local name=$1 lines l
	shift
	lines=$(grep -E "^$name[{ ]" "$tmp/metrics")
	for l in "$@"; do
		lines=$(grep -F "${l%%=*}=\"${l#*=}\"" <<<"$lines")
	done
	if [ -n "$lines" ] && [ "$(wc -l <<<"$lines")" -eq 1 ]; then echo "${lines##* }"; else echo none; fi
}
# num VALUE AWK-CONDITION: VALUE is a number meeting the condition on v
num() { awk -v v="$1" "BEGIN { exit !(v ~ /^-?[0-9.e+]+\$/ && ($2)) }"; }
this="database=$db"

# ---------------------------------------------------------------------------
# 5-10. Consumers, dispatcher.
lag=$(metric eventstore_consumer_lag_events "$this" consumer=prom_out kind=outside)
lag_s=$(metric eventstore_consumer_lag_seconds "$this" consumer=prom_out)
[ "$lag" = 100 ] && num "$lag_s" "v > 0"
ok $? "the outside consumer never polled lags 100 events ($lag), the oldest $lag_s s old"

in_lag=$(metric eventstore_consumer_lag_events "$this" consumer=prom_in kind=in-database)
in_parked=$(metric eventstore_consumer_parked "$this" consumer=prom_in)
in_handled=$(metric eventstore_consumer_handled_total "$this" consumer=prom_in)
[ "$in_lag" = 0 ] && [ "$in_parked" = 3 ] && [ "$in_handled" = 97 ]
ok $? "the in-database consumer is caught up (lag $in_lag) with 3 parked events ($in_parked) and 97 handled ($in_handled)"

grep -qE '^# TYPE eventstore_consumer_handled_total counter$' "$tmp/metrics" &&
	grep -qE '^# TYPE eventstore_consumer_lag_events gauge$' "$tmp/metrics"
ok $? "handled_total is a counter, lag_events a gauge"

stuck_attempts=$(metric eventstore_consumer_attempts "$this" consumer=prom_stuck)
stuck_error=$(metric eventstore_consumer_last_error "$this" consumer=prom_stuck)
out_error=$(metric eventstore_consumer_last_error "$this" consumer=prom_out)
num "$stuck_attempts" "v >= 1" && [ "$stuck_error" = 1 ] && [ "$out_error" = 0 ]
ok $? "the failing consumer shows its attempts ($stuck_attempts) and last_error 1, the outside one last_error 0 ($out_error)"

in_age=$(metric eventstore_consumer_last_run_age_seconds "$this" consumer=prom_in)
out_age=$(metric eventstore_consumer_last_run_age_seconds "$this" consumer=prom_out)
num "$in_age" "v >= 0 && v < 120" && [ "$out_age" = NaN ]
ok $? "seconds since the last run: $in_age for the in-database consumer, NaN for the one never polled ($out_age)"

workers=$(metric eventstore_dispatcher_workers "$this")
launcher=$(metric eventstore_dispatcher_launcher_running "$this")
num "$workers" "v >= 1" && [ "$launcher" = 1 ]
ok $? "dispatcher workers in $db: $workers, launcher running: $launcher"

# ---------------------------------------------------------------------------
# 11-13. eventstore.stats.
appended=$(metric eventstore_appended_total "$this" topic=prom_t)
parked_total=$(metric eventstore_parked_total "$this" topic=prom_t)
calls=$(metric eventstore_handler_calls_total "$this" topic=prom_t)
failures=$(metric eventstore_handler_failures_total "$this" topic=prom_t)
rounds=$(metric eventstore_dispatcher_rounds_total "$this" topic=)
[ "$appended" = 100 ] && [ "$parked_total" = 3 ] && num "$calls" "v >= 101" &&
	num "$failures" "v >= 4" && num "$rounds" "v >= 1"
ok $? "stats: prom_t 100 appended ($appended), 3 parked ($parked_total), $calls handler calls, $failures failures; $rounds dispatcher rounds (topic '')"
refused=$(metric eventstore_append_refused_total "$this" topic=prom_t sqlstate_class=22)
[ "$refused" = 1 ]
ok $? "the refused append counts in class 22 of prom_t ($refused)"
grep -qE '^# TYPE eventstore_appended_total counter$' "$tmp/metrics" &&
	grep -qE '^# TYPE eventstore_append_refused_total counter$' "$tmp/metrics"
ok $? "the stats are exported as counters"

# ---------------------------------------------------------------------------
# 14. promtool's lint of the scraped text: no problem at all.
out=$(promtool check metrics <"$tmp/metrics" 2>&1)
ok $? "promtool check metrics finds no problem in the scraped metrics"
[ -n "$out" ] && diag "$out"

# 15. Every metric of queries.yaml is there (none silently dropped).
missing=""
for m in eventstore_consumer_{lag_events,lag_seconds,parked,attempts,handled_total,last_error,last_run_age_seconds} \
	eventstore_dispatcher_{workers,launcher_running} eventstore_append_refused_total \
	eventstore_{appended,duplicates,batches,notifications,dispatcher_rounds}_total \
	eventstore_{handler_calls,handler_failures,parked,purged}_total eventstore_stats_reset_timestamp_seconds; do
	grep -qE "^$m\{" "$tmp/metrics" || missing="$missing $m"
done
[ -z "$missing" ]
ok $? "every metric of queries.yaml is exported"
[ -n "$missing" ] && diag "missing:$missing"

# 16. One exporter, one connection string per database: a second
# database with the extension and a consumer, no collision.
stop_exporter
q_in "$db" "SET client_min_messages = warning" "DROP DATABASE IF EXISTS prom_second" >/dev/null
q "CREATE DATABASE prom_second" >/dev/null &&
	q_in prom_second "SET client_min_messages = warning" "CREATE EXTENSION eventstore" \
		"SELECT eventstore.create_topic('prom_t2')" "SELECT eventstore.create_consumer('prom_out2', '{prom_t2}')" \
		"SELECT eventstore.append('prom_t2', jsonb_build_object('id', gen_random_uuid(), 'type', 'counted',
		   'version', '1.0', 'data', '{}'::jsonb, 'metadata', jsonb_build_object('source', 'prometheus.sh',
		   'time', '2026-01-01T00:00:00Z')))" >/dev/null ||
	bail "setup of prom_second failed"
start_exporter "$(dsn "$db"),$(dsn prom_second)"
served=$?
lag=$(metric eventstore_consumer_lag_events "$this" consumer=prom_out)
lag2=$(metric eventstore_consumer_lag_events database=prom_second consumer=prom_out2)
workers2=$(metric eventstore_dispatcher_workers database=prom_second)
[ $served -eq 0 ] && [ "$lag" = 100 ] && [ "$lag2" = 1 ] && [ "$workers2" = 0 ]
ok $? "two connection strings: each database reports its own (lag $lag in $db, $lag2 in prom_second, whose $workers2 workers the test cluster does not serve)"
[ $served -ne 0 ] && diag "$(cat "$tmp/exporter.log")"

# 17. Stopped: the port is free again.
stop_exporter
! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
ok $? "the exporter is stopped and its port is free"

exit $((fails > 0))
