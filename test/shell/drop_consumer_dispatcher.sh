#!/bin/bash
# drop_consumer while a dispatcher worker runs the consumer.
#
# Consumer dc_a's handler blocks (on an advisory lock this script holds) in
# the middle of a batch the dispatcher is running.  drop_consumer('dc_a')
# then waits for that batch's transaction; dropping dc_b, which the same
# round was going to run next, does not wait.  Once the handler is released
# the batch commits (its effect stays), the drop completes, nothing of
# either consumer is left, the dispatcher logs no failure for them (it used
# to log 'consumer "dc_b" failed: consumer "dc_b" does not exist' for a
# consumer dropped during its round) and goes on running other consumers.
#
# Then the whole extension, dropped (three times) while the dispatcher
# works on its consumers: the workers carry on (the same processes), and
# log neither an error nor an exit (they used to exit with an error when
# the DROP committed while they listed consumers, and were started again).
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
db=${PGDATABASE:-eventstore_test}
echo "1..9"

data_dir=$(q "SHOW data_directory")
pg_log=$(readlink "/proc/$(head -1 "$data_dir/postmaster.pid")/fd/2")
log_start=$(stat -c %s "$pg_log" 2>/dev/null || echo 0)
holder=
dropper=
cleanup() {
	q "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
	    WHERE application_name IN ('dc_holder', 'dc_drop')" >/dev/null 2>&1
	[ -n "$holder" ] && wait "$holder" 2>/dev/null
	[ -n "$dropper" ] && wait "$dropper" 2>/dev/null
}
trap cleanup EXIT

q "SET client_min_messages = warning;
   DROP EXTENSION IF EXISTS eventstore CASCADE;
   CREATE EXTENSION eventstore;
   SELECT eventstore.create_topic('tick');
   DROP TABLE IF EXISTS public.dc_effects;
   CREATE TABLE public.dc_effects (consumer text, position bigint);
   CREATE OR REPLACE FUNCTION public.dc_handler(e eventstore.event) RETURNS void
   LANGUAGE plpgsql AS \$\$
   BEGIN
       PERFORM pg_advisory_xact_lock_shared(4711);
       INSERT INTO public.dc_effects VALUES ('dc', e.position);
   END
   \$\$;
   CREATE OR REPLACE FUNCTION public.dc_other(e eventstore.event) RETURNS void
   LANGUAGE sql AS \$\$ INSERT INTO public.dc_effects VALUES ('other', e.position) \$\$;" >/dev/null
append() {
	q "SELECT eventstore.append('tick', jsonb_build_object('id', gen_random_uuid(), 'type', 'new',
	       'version', '1.0', 'data', '{}'::jsonb,
	       'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z')))" >/dev/null
}

# The lock the handler waits for, held by a session of its own.
PGAPPNAME=dc_holder psql -XAtq -d "$db" -c "SELECT pg_advisory_lock(4711), pg_sleep(60)" >/dev/null 2>&1 &
holder=$!
wait_for 10 "SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                             WHERE a.application_name = 'dc_holder' AND l.locktype = 'advisory' AND l.granted)" ||
	echo "# the advisory lock was not taken"
q "SELECT eventstore.create_consumer('dc_a', ARRAY['tick'], 'public.dc_handler(eventstore.event)');
   SELECT eventstore.create_consumer('dc_b', ARRAY['tick'], 'public.dc_handler(eventstore.event)')" >/dev/null
append
wait_for 20 "SELECT EXISTS (SELECT FROM pg_stat_activity
                             WHERE backend_type = 'eventstore dispatcher'
                               AND query = 'eventstore: running consumer dc_a member 0'
                               AND wait_event = 'advisory')"
ok $? "a dispatcher worker is in the middle of dc_a's batch, its handler blocked"

PGAPPNAME=dc_drop psql -XAtq -d "$db" -c "SELECT eventstore.drop_consumer('dc_a')" >/dev/null 2>&1 &
dropper=$!
wait_for 10 "SELECT EXISTS (SELECT FROM pg_stat_activity
                             WHERE application_name = 'dc_drop' AND wait_event_type = 'Lock')"
ok $? "drop_consumer('dc_a') waits for the running batch"

timeout 10 psql -XAtq -d "$db" -c "SELECT eventstore.drop_consumer('dc_b')" >/dev/null
ok $? "drop_consumer('dc_b'), not running, returns at once"

q "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'dc_holder'" >/dev/null
wait "$holder" 2>/dev/null
holder=
wait "$dropper"
ok $? "once the handler is released, the batch commits and drop_consumer('dc_a') completes"
dropper=

[ "$(q "SELECT (SELECT count(*) FROM public.dc_effects WHERE consumer = 'dc') = 1
          AND NOT EXISTS (SELECT FROM eventstore.consumers WHERE name IN ('dc_a', 'dc_b'))
          AND NOT EXISTS (SELECT FROM eventstore.parked WHERE consumer IN ('dc_a', 'dc_b'))")" = t ]
ok $? "the batch's effect stays, and nothing of either consumer is left"

# The dispatcher goes on: a consumer created now gets the next event.
q "SELECT eventstore.create_consumer('dc_c', ARRAY['tick'], 'public.dc_other(eventstore.event)')" >/dev/null
append
wait_for 20 "SELECT count(*) = 2 FROM public.dc_effects WHERE consumer = 'other'"
ok $? "the dispatcher runs a new consumer afterwards"

! tail -c +"$((log_start + 1))" "$pg_log" | grep -E 'consumer "dc_(a|b)" failed'
ok $? "the dispatcher logged no failure for the dropped consumers"

q "SELECT eventstore.drop_consumer('dc_c')" >/dev/null
q "DROP TABLE public.dc_effects; DROP FUNCTION public.dc_handler(eventstore.event), public.dc_other(eventstore.event)" >/dev/null

# DROP EXTENSION under the dispatcher's feet.
workers() {
	q "SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM pg_stat_activity
	    WHERE backend_type = 'eventstore dispatcher'"
}
before=$(workers)
log_start=$(stat -c %s "$pg_log" 2>/dev/null || echo 0)
# The DROP stays uncommitted across a poll interval (1 s): the workers'
# next round finds the extension still there and waits for the DROP's lock
# on eventstore.consumers, which is gone once it commits.
for _ in $(seq 3); do
	# dc_noop takes an eventstore.event: DROP ... CASCADE takes it along
	q "SET client_min_messages = warning;
	   CREATE EXTENSION eventstore;
	   SELECT eventstore.create_topic('tick');
	   CREATE FUNCTION public.dc_noop(e eventstore.event) RETURNS void LANGUAGE sql AS 'SELECT';
	   SELECT eventstore.create_consumer('dc_d', ARRAY['tick'], 'public.dc_noop(eventstore.event)')" >/dev/null
	append
	q "SET client_min_messages = warning; DROP EXTENSION eventstore CASCADE; SELECT pg_sleep(1.5)" >/dev/null
done
sleep 1
after=$(workers)
[ -n "$before" ] && [ "$before" = "$after" ]
ok $? "3 times DROP EXTENSION while the dispatcher works: the same workers run on ($before, then $after)"
! tail -c +"$((log_start + 1))" "$pg_log" | grep -E 'eventstore dispatcher.*exited|dispatcher.*ERROR|ERROR:  relation "eventstore\.'
ok $? "and they logged no error and no exit"
exit $((fails > 0))
