# shellcheck shell=bash
# test/fixtures.sh: data the shell tests of whole installations share
# (upgrade.sh, dump_restore.sh, erasure_dump.sh, event_schemas.sh); sourced
# after test/tap.sh, uses its q and wait_for.
#
#   $order_event_sql       SQL creating public.ev(n): an order event with
#                          data {n, customer 'c' || n % 3}
#   register_watchers N    registers N birdwatch users; their tokens, one line
#   run_birdwatch          each birdwatch consumer once, in order, each in a
#                          transaction after the events' own (a consumer's
#                          window holds only transactions committed before it)
#   birdwatch_caught_up    until every birdwatch consumer has nothing left to
#                          do, no failed attempt and nothing parked (0), or
#                          30 seconds have passed (1); the dispatcher may run them

order_event_sql="CREATE FUNCTION public.ev(n int) RETURNS jsonb LANGUAGE sql AS \$\$
    SELECT jsonb_build_object('id', gen_random_uuid(), 'type', 'placed', 'version', '1.0',
                              'data', jsonb_build_object('n', n, 'customer', 'c' || n % 3),
                              'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z'))
\$\$;"

register_watchers() {
	q "SELECT string_agg(token, ' ') FROM (
	       SELECT (birdwatch.register_user('u' || i || '@example.org', 'User ' || i)).token
	         FROM generate_series(1, $1) i) t"
}

run_birdwatch() {
	local c
	# statistics last as well: it counts the score events scored just before
	for c in birdwatch_score_model birdwatch_notifier birdwatch_statistics birdwatch_user_gdpr \
		birdwatch_statistics; do
		q "SELECT eventstore.run_consumer('$c')" >/dev/null || return 1
	done
}

birdwatch_caught_up() {
	wait_for 30 "SELECT bool_and(lag_events = 0 AND attempts = 0 AND parked = 0)
	               FROM eventstore.consumer_status WHERE name LIKE 'birdwatch\_%'"
}
