#!/bin/bash
# pg_dump of a busy store, restored into a new cluster whose transaction
# counter is lower than the source's: consumers go on where they were.
#
# The source (the cluster under test, its counter pushed well ahead) has
# birdwatch in use, and a topic of its own with grants to a role, an
# upcaster and a protection; an in-database consumer on 3 members whose
# handler writes an effect row per event and refuses every event with n
# divisible by 17 (parked at once), and an outside consumer on 2 members
# that polls, records the events it got and acks in one transaction.  Both
# are part way through when a plain and a custom-format dump are taken
# while appends and both consumers go on.  Each dump is restored (psql -1,
# pg_restore -1) into its database of a fresh cluster made here, with
# eventstore preloaded and its dispatcher running the in-database
# consumers.  Then the same new events are appended to the source, which
# never stopped, and to both restored databases, and every consumer is
# run until it has nothing left.  In each restored database: every event
# handled exactly once (no effect row twice, none missing), the refused
# ones parked, the outside consumer given every event once, and the
# effects equal to the source's for the same events; the topic's grants,
# upcaster and protection are there; birdwatch's consumers had nothing to
# replay and go on with new ticks.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
. test/fixtures.sh
src=xdump_source
db=$src
role=xdump_svc
planned=22
echo "1..$planned"

tmp=$(mktemp -d)
rport=
cleanup() {
	[ -n "$rport" ] && as_owner "$bindir/pg_ctl" stop -D "$tmp/data" -m immediate >/dev/null 2>&1
	[ -n "${loop_pid:-}" ] && kill "$loop_pid" 2>/dev/null
	rm -rf "$tmp"
	psql -XAtq -c "DROP DATABASE IF EXISTS $src" >/dev/null 2>&1
}
trap cleanup EXIT

data_dir=$(q "SHOW data_directory" 2>/dev/null || psql -XAtq -d postgres -c "SHOW data_directory") ||
	bail "cannot connect to the source cluster"
owner=$(stat -c %U "$data_dir")
bindir=$("${PG_CONFIG:-pg_config}" --bindir)
as_owner() { if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u "$owner" -- "$@"); else "$@"; fi; }

psql -XAtq -d postgres -c "DROP DATABASE IF EXISTS $src" -c "CREATE DATABASE $src" >/dev/null ||
	bail "cannot create $src"
psql -XAtq -d postgres -c "DO \$\$ BEGIN CREATE ROLE $role NOLOGIN; EXCEPTION WHEN duplicate_object THEN END \$\$" ||
	bail "cannot create $role"

# Events with ids of their own making, so that both sides append the same.
setup_sql="
SET client_min_messages = warning;
CREATE EXTENSION birdwatch CASCADE;
CREATE FUNCTION public.xev(n int) RETURNS jsonb LANGUAGE sql IMMUTABLE AS \$\$
    SELECT jsonb_build_object('id', md5('xdump event ' || n)::uuid, 'type', 'placed', 'version', '2.0',
                              'data', jsonb_build_object('n', n, 'customer', 'c' || n % 3),
                              'metadata', jsonb_build_object('source', 'test', 'time', '2026-12-04T07:00:00Z'))
\$\$;
CREATE FUNCTION public.orders_1_to_2(e jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS \$\$
    SELECT jsonb_set(e, '{version}', '\"2.0\"')
\$\$;
CREATE TABLE public.effects (id uuid NOT NULL, n integer NOT NULL, at timestamptz DEFAULT now());
CREATE FUNCTION public.handle(e eventstore.event) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
    IF (e.envelope->'data'->>'n')::int % 17 = 0 THEN
        RAISE EXCEPTION 'refused %', e.envelope->'data'->>'n';
    END IF;
    INSERT INTO public.effects (id, n) VALUES (e.id, (e.envelope->'data'->>'n')::int);
END
\$\$;
CREATE TABLE public.received (id uuid NOT NULL, member integer NOT NULL);
"

q "$setup_sql
   SELECT birdwatch.set_score_secret('a secret of the cross-cluster dump test');
   SELECT eventstore.create_topic('orders', '2.0');
   SELECT eventstore.grant_topic('orders', 'read', '$role');
   SELECT eventstore.grant_topic('orders', 'append', '$role');
   SELECT eventstore.create_upcaster('orders', 1, 2, 'public.orders_1_to_2(jsonb)');
   SELECT eventstore.protect_fields('orders', 'customer', ARRAY['card']);
   SELECT eventstore.create_consumer('xdump_effects', ARRAY['orders'], 'public.handle(eventstore.event)',
                                     batch_size => 7, max_attempts => 1, members => 3);
   SELECT eventstore.create_consumer('xdump_outside', ARRAY['orders'], batch_size => 5, members => 2);" >/dev/null &&
	q "DO \$\$ BEGIN FOR i IN 1..4000 LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END \$\$" >/dev/null
ok $? "the source: a topic with grants, an upcaster and a protection, two consumers, birdwatch; its counter pushed on" ||
	bail "no source"

# append_range DB FROM TO: events FROM..TO, ten to a transaction
append_range() {
	local d=$1 i
	for ((i = $2; i <= $3; i += 10)); do
		psql_in "$d" "SELECT count(eventstore.append('orders', public.xev(n), stream => 's' || n % 11))
		                FROM generate_series($i, least($i + 9, $3)) n" >/dev/null || return 1
	done
}
# outside_round DB: one batch polled, recorded and acked in a transaction;
# prints how many events it had
outside_round() {
	psql_in "$1" "BEGIN;
	    CREATE TEMP TABLE b ON COMMIT DROP AS SELECT * FROM eventstore.poll('xdump_outside', 5);
	    INSERT INTO public.received SELECT id, member FROM b;
	    SELECT eventstore.ack('xdump_outside', x.batch_id) FROM (SELECT DISTINCT batch_id FROM b) x;
	    SELECT count(*) FROM b;
	    COMMIT;" | tail -1
}
psql_in() { psql -XAtq -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }

append_range $src 1 200 &&
	read -r t1 t2 t3 <<<"$(register_watchers 3)" &&
	q "SELECT birdwatch.tick('$t1', 'https://img.example.org/' || i || '.jpg') FROM generate_series(1, 5) i;
	   SELECT birdwatch.rate('$t2', 'https://img.example.org/' || i || '.jpg', 1 + i % 5) FROM generate_series(1, 5) i;
	   SELECT birdwatch.rate('$t3', 'https://img.example.org/1.jpg', 5);" >/dev/null &&
	run_birdwatch &&
	q "SELECT eventstore.run_consumer('xdump_effects', 60)" >/dev/null &&
	for _ in 1 2 3 4 5 6; do outside_round $src >/dev/null || exit 1; done
ok $? "200 events; birdwatch's consumers run; the two consumers part way through" || bail "no events"

# While both dumps are taken: appends and both consumers go on.
(
	for ((i = 201; i <= 400; i += 5)); do
		append_range $src $i $((i + 4)) || exit 1
		psql_in $src "SELECT eventstore.run_consumer('xdump_effects', 4)" >/dev/null || exit 1
		outside_round $src >/dev/null || exit 1
	done
) &
loop_pid=$!
sleep 0.5
pg_dump -O -d $src >"$tmp/plain.sql" && sleep 0.5 && pg_dump -O -Fc -d $src >"$tmp/custom.dump"
dumped=$?
wait "$loop_pid"
looped=$?
loop_pid=
[ $dumped -eq 0 ] && [ $looped -eq 0 ] && grep -q "^COPY eventstore.members " "$tmp/plain.sql" &&
	grep -q "^COPY eventstore.consumers " "$tmp/plain.sql" && grep -q "^COPY eventstore.topics " "$tmp/plain.sql"
ok $? "a plain and a custom-format dump taken while appends and consumers went on; they hold topics, consumers and members"
grep -q "GRANT ALL ON FUNCTION eventstore.poll(text, integer, integer) TO $role\|GRANT EXECUTE ON FUNCTION eventstore.poll(text, integer, integer) TO $role" "$tmp/plain.sql" ||
	grep -q "ON FUNCTION eventstore.poll(.*TO $role" "$tmp/plain.sql"
ok $? "the dump grants $role the functions of its topic privileges (pg_dump's ACLs of extension objects)"

# The fresh cluster, owned like the source, eventstore preloaded.
while :; do
	port=$((20000 + RANDOM % 12000))
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
done
[ "$(id -u)" -eq 0 ] && chown "$owner" "$tmp" && chmod 755 "$tmp" && chmod 644 "$tmp/plain.sql" "$tmp/custom.dump"
out=$(as_owner "$bindir/initdb" -D "$tmp/data" -A trust -U "$owner" --encoding=UTF8 --locale=C.UTF-8 \
	--no-sync 2>&1) || bail "initdb of the fresh cluster failed: $out"
cat >>"$tmp/data/postgresql.conf" <<EOF
port = $port
listen_addresses = ''
unix_socket_directories = '$tmp'
fsync = off
shared_preload_libraries = 'eventstore'
log_min_messages = warning
EOF
out=$(as_owner "$bindir/pg_ctl" start -D "$tmp/data" -w -t 60 -l "$tmp/fresh.log" 2>&1) ||
	bail "the fresh cluster did not start: $out $(cat "$tmp/fresh.log")"
rport=$port
r() { PGHOST=$tmp PGPORT=$rport PGUSER=$owner "$@"; }
r psql -XAtq -d postgres -c "CREATE ROLE $role NOLOGIN" -c "CREATE DATABASE r_plain" \
	-c "CREATE DATABASE r_custom" >/dev/null || bail "cannot set up the fresh cluster"

handled_sql="SELECT string_agg(consumer || ' ' || handled, ', ' ORDER BY consumer)
               FROM (SELECT consumer, sum(handled) AS handled FROM eventstore.members
                      WHERE consumer LIKE 'birdwatch%' GROUP BY consumer) h"
fresh_xid=$(r psql -XAtq -d postgres -c "SELECT pg_current_xact_id()")
min_restored=$(q "SELECT min(xid) FROM eventstore.events WHERE topic = 'orders'")
[ "$fresh_xid" -lt "$min_restored" ]
ok $? "the fresh cluster's counter ($fresh_xid) is below every restored event's xid (from $min_restored)"

r psql -X -q -1 -v ON_ERROR_STOP=1 -d r_plain -f "$tmp/plain.sql" >"$tmp/plain.log" 2>&1
ok $? "the plain dump restores with psql -1$(grep -m3 ERROR "$tmp/plain.log" | sed 's/^/; /' | tr -d '\n')"
r pg_restore -1 -e -d r_custom "$tmp/custom.dump" >"$tmp/custom.log" 2>&1
ok $? "the custom dump restores with pg_restore -1$(grep -m3 ERROR "$tmp/custom.log" | sed 's/^/; /' | tr -d '\n')"

# What the restored databases held before anything ran there.
declare -A restored_ids
for d in r_plain r_custom; do
	restored_ids[${d#r_}]=$(r psql -XAtq -d $d -c "SELECT string_agg(id::text, ',' ORDER BY id) FROM eventstore.events WHERE topic = 'orders'")
done
[ "$(r psql -XAtq -d r_plain -c "SELECT count(*) FROM eventstore.consumer_status WHERE name LIKE 'birdwatch%' AND lag_events > 0")" = 0 ] &&
	[ "$(r psql -XAtq -d r_plain -c "SELECT bool_and(m.done_snapshot IS NOT NULL) FROM eventstore.members m
	                                  WHERE m.consumer LIKE 'birdwatch%'")" = t ] &&
	[ "$(r psql -XAtq -d r_plain -c "$handled_sql")" = "$(q "$handled_sql")" ]
ok $? "birdwatch's consumers are restored with their progress (handled: $(q "$handled_sql")): nothing to replay"

# The same new events everywhere; then every consumer until done.
append_range $src 1001 1040 || bail "cannot append to the source"
for d in r_plain r_custom; do
	PGHOST=$tmp PGPORT=$rport PGUSER=$owner append_range $d 1001 1040 || bail "cannot append to $d"
done
ok 0 "40 new events appended to the source and both restored databases"

finish() {	# finish DB: both consumers until nothing is left (the dispatcher may run the in-database one)
	local i
	for ((i = 0; i < 600; i++)); do
		psql_in "$1" "SELECT eventstore.run_consumer('xdump_effects')" >/dev/null 2>&1
		[ "$(outside_round "$1")" = 0 ] &&
			[ "$(psql_in "$1" "SELECT bool_and(lag_events = 0) FROM eventstore.consumer_status
			                   WHERE name IN ('xdump_effects', 'xdump_outside')")" = t ] && return 0
	done
	return 1
}
finish $src
ok $? "the source's consumers finish"
for d in r_plain r_custom; do
	PGHOST=$tmp PGPORT=$rport PGUSER=$owner finish $d
	ok $? "$d: its consumers finish"
done

# check DB: one line per failed property, nothing when all hold
check() {
	psql_in "$1" "
	SELECT 'effects twice: ' || count(*) - count(DISTINCT id) FROM public.effects
	HAVING count(*) <> count(DISTINCT id)
	UNION ALL
	SELECT 'effects missing or extra: ' || count(*) FROM
	  ((SELECT id FROM eventstore.events WHERE topic = 'orders' AND (data->>'n')::int % 17 <> 0
	    EXCEPT SELECT id FROM public.effects)
	   UNION ALL
	   (SELECT id FROM public.effects EXCEPT
	    SELECT id FROM eventstore.events WHERE topic = 'orders' AND (data->>'n')::int % 17 <> 0)) d
	HAVING count(*) > 0
	UNION ALL
	SELECT 'parked not the refused ones: ' || count(*) FROM
	  ((SELECT id FROM eventstore.events WHERE topic = 'orders' AND (data->>'n')::int % 17 = 0
	    EXCEPT SELECT event_id FROM eventstore.parked WHERE consumer = 'xdump_effects')
	   UNION ALL
	   (SELECT event_id FROM eventstore.parked WHERE consumer = 'xdump_effects' EXCEPT
	    SELECT id FROM eventstore.events WHERE topic = 'orders' AND (data->>'n')::int % 17 = 0)) d
	HAVING count(*) > 0
	UNION ALL
	SELECT 'outside received twice: ' || count(*) - count(DISTINCT id) FROM public.received
	HAVING count(*) <> count(DISTINCT id)
	UNION ALL
	SELECT 'outside missing or extra: ' || count(*) FROM
	  ((SELECT id FROM eventstore.events WHERE topic = 'orders' EXCEPT SELECT id FROM public.received)
	   UNION ALL
	   (SELECT id FROM public.received EXCEPT SELECT id FROM eventstore.events WHERE topic = 'orders')) d
	HAVING count(*) > 0"
}
out=$(check $src)
[ -z "$out" ]
ok $? "the source: every event handled once, the refused ones parked, the outside consumer given each once${out:+: $out}"

# effects DB IDS: the ids of the effects of the events IDS (and the new ones), sorted
effects_of() {
	psql_in "$1" "SELECT md5(string_agg(f.id::text || ':' || f.n, ',' ORDER BY f.id)) || ' ' || count(*)
	                FROM public.effects f
	               WHERE f.id = ANY ('{$2}'::uuid[]) OR f.n > 1000"
}
for d in plain custom; do
	out=$(PGHOST=$tmp PGPORT=$rport PGUSER=$owner check r_$d)
	[ -z "$out" ]
	ok $? "r_$d: every event handled once (restored ones and new), the refused ones parked, the outside consumer given each once${out:+: $out}"
	mine=$(PGHOST=$tmp PGPORT=$rport PGUSER=$owner effects_of r_$d "${restored_ids[$d]}")
	theirs=$(effects_of $src "${restored_ids[$d]}")
	[ "$mine" = "$theirs" ]
	ok $? "r_$d: its effects equal the source's for the same events ($mine, $theirs)"
done

d=r_custom
rq() { PGHOST=$tmp PGPORT=$rport PGUSER=$owner psql_in $d "$1"; }
[ "$(rq "SELECT has_function_privilege('$role', 'eventstore.poll(text, integer, integer)', 'EXECUTE')
            AND has_function_privilege('$role', 'eventstore.append(text, jsonb, text, bigint)', 'EXECUTE')
            AND '$role'::regrole = ANY (readers) AND '$role'::regrole = ANY (appenders)
          FROM eventstore.topics WHERE name = 'orders'")" = t ]
ok $? "$d: $role keeps its read and append grants on the topic, with their functions"
[ "$(rq "SELECT count(*) FROM eventstore.upcasters WHERE topic = 'orders' AND fn::regprocedure = 'public.orders_1_to_2(jsonb)'::regprocedure") $(rq "SELECT paths FROM eventstore.protections WHERE topic = 'orders'")" = "1 {card}" ]
ok $? "$d: the upcaster and the protection are restored"
[ "$(rq "SELECT count(*) FROM eventstore.dumped_installation d JOIN eventstore.installation i USING (token)")" = 1 ]
ok $? "$d: rebased once: the dump's token is replaced by this installation's"

q_bw() { PGHOST=$tmp PGPORT=$rport PGUSER=$owner psql_in $d "$1"; }
before=$(q_bw "SELECT count(*) FROM eventstore.events WHERE topic IN ('score', 'notification')")
q_bw "SELECT birdwatch.tick('$t2', 'https://img.example.org/new.jpg')" >/dev/null &&
	PGHOST=$tmp PGPORT=$rport PGUSER=$owner db=$d birdwatch_caught_up &&
	[ "$(q_bw "SELECT count(*) FROM eventstore.events WHERE topic = 'score'")" -gt 0 ] &&
	[ "$(q_bw "SELECT count(*) FROM eventstore.events WHERE topic IN ('score', 'notification')")" -gt "$before" ]
ok $? "$d: birdwatch's consumers (run by the dispatcher) score a new tick"
[ "$(q_bw "SELECT count(*) FROM eventstore.events WHERE topic = 'score'")" = "$(q_bw "SELECT count(*) FROM birdwatch.scored_ticks")" ] &&
	[ "$(q_bw "SELECT count(*) FROM eventstore.events WHERE topic = 'score'")" = $(($(q "SELECT count(*) FROM eventstore.events WHERE topic = 'score'") + 1)) ]
ok $? "$d: one score more than the source's, one per tick"

exit $((fails > 0))
