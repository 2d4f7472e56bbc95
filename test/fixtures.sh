# shellcheck shell=bash
# test/fixtures.sh: data the shell tests of whole installations share
# (upgrade.sh, dump_restore.sh); sourced after test/tap.sh, uses its q.
#
#   $order_event_sql       SQL creating public.ev(n): an order event with
#                          data {n, customer 'c' || n % 3}
#   register_watchers N    registers N birdwatch users; their tokens, one line
#   run_birdwatch          each birdwatch consumer once, in order, each in a
#                          transaction after the events' own (a consumer's
#                          window holds only transactions committed before it)

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
