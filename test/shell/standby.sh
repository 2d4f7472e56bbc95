#!/bin/bash
# Reads on a hot standby, writes refused there, and the dispatcher across a
# promotion, with a real streaming standby of the test cluster.
#
# The standby is a pg_basebackup -R of the cluster under test, in a
# directory of its own on a free port, with eventstore preloaded as on the
# primary.  On it: every read function and view returns what the primary
# returns once the standby has replayed up to the primary's WAL position;
# every writing entry point fails with 25006 (read_only_sql_transaction);
# those of C say so at once, with a hint to connect to the primary; no
# launcher or dispatcher runs.  After pg_ctl promote the dispatcher starts
# there and runs an in-database consumer's handler on a new append.  The
# standby is stopped and removed on exit, also when the script dies.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
db=$PGDATABASE
echo "1..49"

data_dir=$(q "SHOW data_directory")
owner=$(stat -c %U "$data_dir")
bindir=$("${PG_CONFIG:-pg_config}" --bindir)
as_owner() { (cd / && runuser -u "$owner" -- "$@"); }

# A free port below the kernel's ephemeral ports, as scripts/with-cluster
# chooses the primary's.
while :; do
	sport=$((20000 + RANDOM % 12000))
	[ "$sport" != "$PGPORT" ] || continue
	(exec 3<>"/dev/tcp/127.0.0.1/$sport") 2>/dev/null || break
done
tmp=$(mktemp -d /tmp/eventstore-standby.XXXXXX)
chown "$owner" "$tmp"
sdata=$tmp/data

finish() {
	set +e
	[ -f "$sdata/postmaster.pid" ] && as_owner "$bindir/pg_ctl" stop -D "$sdata" -m immediate -w >/dev/null 2>&1
	rm -rf "$tmp"
}
trap finish EXIT

# s SQL: SQL on the standby (or, once promoted, the new primary).
s() { PGPORT=$sport psql -XAtq -v ON_ERROR_STOP=1 -d "$db" -c "$1"; }
# s_wait SECONDS SQL: until SQL returns t on the standby.
s_wait() { local db_port=$PGPORT; PGPORT=$sport wait_for "$@"; local rc=$?; PGPORT=$db_port; return $rc; }

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || bail "setup on the primary failed"
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS standby_test CASCADE;
DROP EXTENSION IF EXISTS eventstore CASCADE;
CREATE EXTENSION eventstore;
CREATE SCHEMA standby_test;
CREATE FUNCTION standby_test.ev(i integer, correlation uuid DEFAULT NULL) RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
    SELECT jsonb_build_object('id', gen_random_uuid(), 'type', 'placed', 'version', '1.0',
                              'data', jsonb_build_object('i', i),
                              'metadata', jsonb_strip_nulls(jsonb_build_object(
                                  'source', 'standby.sh', 'time', '2026-01-01T00:00:00Z',
                                  'correlation_id', correlation)))
$$;
-- One row per event the in-database consumer's handler saw.
CREATE TABLE standby_test.handled (event_id uuid NOT NULL, on_standby_once boolean NOT NULL);
CREATE FUNCTION standby_test.handle(e eventstore.event) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO standby_test.handled VALUES (e.id, pg_catalog.pg_is_in_recovery())
$$;
SELECT eventstore.create_topic('orders');
SELECT eventstore.append('orders', standby_test.ev(i), 'order-' || i % 3)
  FROM generate_series(1, 20) i;
SELECT eventstore.append('orders', standby_test.ev(100, (SELECT id FROM eventstore.events WHERE position = 1)));
SELECT eventstore.save_snapshot('orders', 'order-1', 3, '{"total": 3}');
SELECT eventstore.close_stream('orders', 'order-2');
SELECT eventstore.create_consumer('handled', ARRAY['orders'], 'standby_test.handle(eventstore.event)');
SELECT eventstore.create_consumer('outside', ARRAY['orders']);
SQL
# The dispatcher handles the 21 events on the primary; the outside consumer
# has one batch out, so that its lease shows on both nodes alike.
wait_for 30 "SELECT count(*) = 21 FROM standby_test.handled" || bail "the dispatcher did not handle the events"
q "SELECT count(*) FROM eventstore.poll('outside', 5)" >/dev/null || bail "poll on the primary failed"

# The standby: a base backup of the primary, with its configuration (the
# test cluster keeps postgresql.conf and pg_hba.conf out of its data
# directory).
if ! out=$(as_owner env PGPASSWORD="$PGPASSWORD" "$bindir/pg_basebackup" -h localhost -p "$PGPORT" \
	-U "$PGUSER" -D "$sdata" -R -X stream -c fast 2>&1); then
	bail "pg_basebackup failed: $out"
fi
cp "$(q "SHOW hba_file")" "$sdata/pg_hba.conf"
cp "$(q "SHOW ident_file")" "$sdata/pg_ident.conf"
cat >"$sdata/postgresql.conf" <<CONF
port = $sport
listen_addresses = 'localhost'
unix_socket_directories = '$tmp'
hot_standby = on
shared_preload_libraries = 'eventstore'
eventstore.databases = '$db'
log_min_messages = warning
CONF
# What a standby needs at least as high as its primary, and the primary's
# eventstore settings.
q "SELECT format('%s = %L', name, setting) FROM pg_settings
    WHERE name IN ('max_connections', 'max_prepared_transactions', 'max_worker_processes',
                   'max_wal_senders', 'max_locks_per_transaction')
       OR (name LIKE 'eventstore.%' AND name <> 'eventstore.databases' AND source <> 'default')" \
	>>"$sdata/postgresql.conf"
chown "$owner" "$sdata"/*.conf
if ! out=$(as_owner "$bindir/pg_ctl" start -D "$sdata" -w -t 60 -l "$tmp/standby.log" 2>&1); then
	diag "$(cat "$tmp/standby.log" 2>/dev/null)"
	bail "the standby did not start: $out"
fi
ok "$([ "$(s "SELECT pg_is_in_recovery()")" = t ]; echo $?)" "the standby is in recovery"

# Replay up to the primary's position now.
lsn=$(q "SELECT pg_current_wal_lsn()")
s_wait 30 "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn"
ok $? "the standby replays the primary's WAL"

# Each read, on both nodes: the same answer, and not an empty one.
first_id=$(q "SELECT id FROM eventstore.events WHERE position = 1")
reads=(
	"read:SELECT count(*), max(position), string_agg(id::text, ',' ORDER BY position) FROM eventstore.read('orders')"
	"read of every topic from a position:SELECT string_agg(position::text, ',') FROM eventstore.read(NULL, 5, 10, ARRAY['placed'])"
	"read_stream:SELECT string_agg(stream_version::text || '@' || position, ',') FROM eventstore.read_stream('orders', 'order-1')"
	"read_stream backward:SELECT string_agg(stream_version::text, ',') FROM eventstore.read_stream('orders', 'order-1', 0, 3, true)"
	"get:SELECT (eventstore.get('$first_id')).envelope"
	"stream_version:SELECT eventstore.stream_version('orders', 'order-0')"
	"last_event:SELECT (eventstore.last_event('orders', 'order-0')).id"
	"read_correlated:SELECT string_agg(position::text, ',') FROM eventstore.read_correlated('$first_id')"
	"load_snapshot:SELECT version || ' ' || state FROM eventstore.load_snapshot('orders', 'order-1')"
	"the streams view:SELECT string_agg(concat_ws(' ', stream, version, first_position, last_position, state), ',' ORDER BY stream) FROM eventstore.streams"
	"consumer_status:SELECT string_agg(concat_ws(' ', name, position, lag_events, attempts, parked), ',' ORDER BY name) FROM eventstore.consumer_status"
	"consumer_members:SELECT string_agg(concat_ws(' ', consumer, member, position), ',' ORDER BY consumer, member) FROM eventstore.consumer_members"
	"undelivered:SELECT events FROM eventstore.undelivered('outside')"
	"topics and consumers:SELECT (SELECT string_agg(name, ',') FROM eventstore.topics) || ';' || (SELECT string_agg(name, ',' ORDER BY name) FROM eventstore.consumers)"
	"unprotect and upcast:SELECT count(eventstore.upcast(eventstore.unprotect(e))) FROM eventstore.read('orders') e"
	"is_valid:SELECT eventstore.is_valid(standby_test.ev(1))"
)
for r in "${reads[@]}"; do
	name=${r%%:*}
	sql=${r#*:}
	p=$(q "$sql" 2>&1)
	sv=$(s "$sql" 2>&1)
	if [ -n "$p" ] && [ "$p" = "$sv" ]; then ok 0 "$name on the standby"; else
		ok 1 "$name on the standby"; diag "primary: $p" "standby: $sv"; fi
done

# The statistics are the standby's own (counted in its shared memory).
out=$(s "SELECT count(*) >= 0 FROM eventstore.stats" 2>&1)
ok "$([ "$out" = t ]; echo $?)" "the stats view on the standby ($out)"

# The horizon on the standby is that of what it has replayed: every
# replayed event is at or below it.
out=$(s "SELECT eventstore.safe_position() >= (SELECT max(position) FROM eventstore.events)" 2>&1)
ok "$([ "$out" = t ]; echo $?)" "safe_position on the standby covers the replayed events ($out)"

# refused SQL WHAT: SQL fails on the standby with 25006; WHAT, when given,
# is the name the message starts with, and the hint says where to go.
refused() {
	local out
	out=$(PGPORT=$sport psql -X -q -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$db" -c "$1" 2>&1)
	if [ -n "${2:-}" ]; then
		grep -q "ERROR:  25006: $2 cannot run on a standby" <<<"$out" &&
			grep -q "HINT:  Connect to the primary, for example with target_session_attrs=read-write" <<<"$out"
	else
		grep -q "ERROR:  25006: " <<<"$out"
	fi || { diag "$out"; return 1; }
}
batch=$(q "SELECT batch_id FROM eventstore.consumer_members WHERE consumer = 'outside'")
writes=(
	"SELECT eventstore.append('orders', standby_test.ev(1)):eventstore.append"
	"SELECT eventstore.append_batch('orders', ARRAY[standby_test.ev(1)]):eventstore.append_batch"
	"SELECT eventstore.poll('outside'):eventstore.poll"
	"SELECT eventstore.ack('outside', ${batch:-1}):eventstore.ack"
	"SELECT eventstore.nack('outside', ${batch:-1}, 'failed'):eventstore.nack"
	"SELECT eventstore.run_consumer('handled'):eventstore.run_consumer"
	"SELECT eventstore.create_consumer('another', ARRAY['orders']):eventstore.create_consumer"
	"SELECT eventstore.create_upcaster('orders', 1, 2, 'standby_test.ev(integer,uuid)'):eventstore.create_upcaster"
	"SELECT eventstore.erase_stream('orders', 'order-1'):eventstore.erase_stream"
	"SELECT eventstore.truncate_stream('orders', 'order-1', 2):eventstore.truncate_stream"
	"SELECT eventstore.set_stream_max_count('orders', 'order-1', 2):eventstore.set_stream_max_count"
	"SELECT eventstore.drop_consumer('outside'):a change of an eventstore consumer"
	"SELECT eventstore.reset_consumer('outside'):a change of an eventstore consumer"
	"SELECT eventstore.set_consumer_members('outside', 2):a change of an eventstore consumer"
	"SELECT eventstore.replay_parked('outside', gen_random_uuid()):a change of an eventstore consumer"
	"SELECT eventstore.create_topic('more'):"
	"SELECT eventstore.close_stream('orders', 'order-1'):a change of an eventstore stream"
	"SELECT eventstore.save_snapshot('orders', 'order-1', 4, '{}'):"
	"SELECT eventstore.set_retention('orders', '1 day'):"
	"SELECT eventstore.purge_expired():"
)
for w in "${writes[@]}"; do
	sql=${w%%:*}
	what=${w#*:}
	refused "$sql" "$what"
	ok $? "${sql#SELECT } is refused on the standby${what:+ at once, with the hint}"
done

# No launcher or dispatcher on the standby: they start when recovery ends.
sleep 2
workers_sql="SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'eventstore %'"
out=$(s "$workers_sql")
ok "$([ "$out" = 0 ]; echo $?)" "no eventstore worker in the standby's pg_stat_activity ($out)"
spid=$(head -1 "$sdata/postmaster.pid")
out=$(ps --ppid "$spid" -o args= | grep -c eventstore)
ok "$([ "$out" = 0 ]; echo $?)" "no eventstore process under the standby's postmaster ($out)"

# Promotion: the dispatcher starts, and the consumer's handler runs there.
out=$(as_owner "$bindir/pg_ctl" promote -D "$sdata" -w -t 60 2>&1)
ok $? "pg_ctl promote" || diag "$out"
s_wait 30 "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'eventstore dispatcher' AND datname = current_database()"
ok $? "the dispatcher starts on the promoted node"
out=$(ps --ppid "$spid" -o args= | grep -c 'eventstore dispatcher')
ok "$([ "$out" -gt 0 ]; echo $?)" "the promoted node's postmaster runs the dispatcher ($out)"
new_id=$(s "SELECT (standby_test.ev(500)) ->> 'id'" 2>&1)
out=$(s "SELECT eventstore.append('orders', jsonb_set(standby_test.ev(500), '{id}', to_jsonb('$new_id'::text)))" 2>&1)
ok $? "append on the promoted node ($out)"
s_wait 30 "SELECT count(*) = 1 FROM standby_test.handled WHERE event_id = '$new_id' AND NOT on_standby_once"
ok $? "the dispatcher runs the consumer's handler on the promoted node"
# The outside consumer's batch leased on the old primary is acked on the
# promoted node; its next poll there gets the events after it.
out=$(s "SELECT eventstore.ack('outside', ${batch:-1})" 2>&1 &&
      s "SELECT count(*) FROM eventstore.poll('outside', 100)" 2>&1)
ok "$([ "$out" -ge 1 ] 2>/dev/null; echo $?)" "ack and poll on the promoted node ($out)"
out=$(q "SELECT count(*) FROM standby_test.handled WHERE event_id = '$new_id'")
ok "$([ "$out" = 0 ]; echo $?)" "the old primary knows nothing of the promoted node's append ($out)"

exit $((fails > 0))
