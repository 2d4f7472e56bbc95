#!/bin/bash
# Upgrades, the way pg_stat_statements tests them: create the oldest
# version of each extension, put data in it, then ALTER EXTENSION ... UPDATE
# one step at a time along the upgrade scripts in sql/, up to the control
# file's default_version.  After every step the data is unchanged; at the
# end the installation is the same as a fresh CREATE EXTENSION, which runs
# the install script make builds from the current source (sql/<ext>/*.sql):
# every object, with its definition, owner, privileges, comment and
# membership, compared by test/upgrade_check.sql.  And it goes on working
# where the old one stopped: a consumer continues from its checkpoint and
# handles each event once, birdwatch takes new ticks and ratings and its
# consumers count them once.
#
# The steps are found from the file names (ext--A--B.sql), so a new release
# only adds its script: this test then walks one step more.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
. test/fixtures.sh
fresh=upgrade_fresh
chain=upgrade_chain
db=$chain
sharedir=$(pg_config --sharedir)/extension
tmp=$(mktemp -d)
drop_databases() {
	psql -XAtq -c "DROP DATABASE IF EXISTS $fresh" -c "DROP DATABASE IF EXISTS $chain" >/dev/null 2>&1
}
trap 'rm -rf "$tmp"; drop_databases' EXIT

# oldest_version EXT: the version of the one full install script
oldest_version() {
	local scripts=(sql/"$1"--[0-9]*.sql) base=()
	for f in "${scripts[@]}"; do
		[[ $f =~ ^sql/$1--([^-]+)\.sql$ ]] && base+=("${BASH_REMATCH[1]}")
	done
	printf '%s\n' "${base[@]}" | sort -V | head -1
}

# next_version EXT VERSION: the target of the upgrade script from VERSION
next_version() {
	local f
	for f in sql/"$1"--"$2"--*.sql; do
		[ -e "$f" ] || return 1
		f=${f#sql/$1--$2--}
		echo "${f%.sql}"
		return 0
	done
}

default_version() {
	sed -n "s/^default_version = '\(.*\)'/\1/p" "control/$1.control"
}

steps_of() {
	local v
	v=$(oldest_version "$1")
	echo "$v"
	while v=$(next_version "$1" "$v"); do echo "$v"; done
}

extensions=(eventstore birdwatch)
total_steps=0
for e in "${extensions[@]}"; do
	total_steps=$((total_steps + $(steps_of "$e" | wc -l) - 1))
done
echo "1..$((4 + total_steps * 2 + 11))"

drop_databases
createdb "$fresh" && createdb "$chain"
for d in "$fresh" "$chain"; do
	psql -XAtq -v ON_ERROR_STOP=1 -d "$d" -f test/upgrade_check.sql >/dev/null ||
		{ echo "Bail out! test/upgrade_check.sql does not load"; exit 1; }
done

for e in "${extensions[@]}"; do
	last=$(steps_of "$e" | tail -1)
	[ "$last" = "$(default_version "$e")" ]
	ok $? "$e: the upgrade scripts lead from $(oldest_version "$e") to default_version $(default_version "$e") ($(steps_of "$e" | paste -sd ' '))"
done

# The oldest versions, with data of every kind the store keeps: events in
# a stream, a consumer part way through, a parked event, a topic with
# retention and protected fields, birdwatch users, ticks and ratings.
q "SET client_min_messages = warning;
   CREATE EXTENSION eventstore VERSION '$(oldest_version eventstore)';
   CREATE EXTENSION pgcrypto;
   CREATE EXTENSION birdwatch VERSION '$(oldest_version birdwatch)';
   SELECT birdwatch.set_score_secret('a secret of the upgrade test');
   $order_event_sql
   SELECT eventstore.create_topic('orders');
   SELECT eventstore.create_topic('visits', retention => interval '30 days');
   SELECT eventstore.protect_fields('visits', 'customer', ARRAY['n']);
   SELECT count(eventstore.append('orders', ev(n), stream => 'o' || n % 4)) FROM generate_series(1, 20) n;
   SELECT count(eventstore.append('visits', ev(n))) FROM generate_series(1, 5) n;
   CREATE TABLE public.handled (id uuid, n int);
   CREATE FUNCTION public.handle(e eventstore.event) RETURNS void LANGUAGE plpgsql AS \$\$
   BEGIN
       IF (e.envelope->'data'->>'n')::int = 7 THEN
           RAISE EXCEPTION 'seven is refused';
       END IF;
       INSERT INTO public.handled VALUES ((e.envelope->>'id')::uuid, (e.envelope->'data'->>'n')::int);
   END \$\$;
   SELECT eventstore.create_consumer('orders_projection', ARRAY['orders'], 'public.handle(eventstore.event)',
                                     batch_size => 5, max_attempts => 1);" >/dev/null &&
	q "SET client_min_messages = error; SELECT eventstore.run_consumer('orders_projection', 12)" >/dev/null
status=$?
ok $status "the oldest versions installed, with events, a consumer part way and a parked event"
[ $status -eq 0 ] || { echo "Bail out! the oldest versions could not be set up"; exit 1; }

read -r token1 token2 <<<"$(register_watchers 2)"
q "SELECT birdwatch.tick('$token1', 'https://img.example.org/a.jpg');
   SELECT birdwatch.rate('$token2', 'https://img.example.org/a.jpg', 4);" >/dev/null
run_birdwatch
got="$(q "SELECT count(*) FROM eventstore.parked") $(q "SELECT count(*) FROM public.handled")"
[ "$got" = "1 11" ]
ok $? "before upgrading: 11 orders handled and the refused one parked (parked, handled: $got)"

q "SET client_min_messages = warning; SELECT upgrade_check.snapshot()" >/dev/null
for e in "${extensions[@]}"; do
	mapfile -t versions < <(steps_of "$e")
	for ((i = 1; i < ${#versions[@]}; i++)); do
		from=${versions[i - 1]} to=${versions[i]}
		q "ALTER EXTENSION $e UPDATE TO '$to'" >/dev/null
		[ "$(q "SELECT extversion FROM pg_extension WHERE extname = '$e'")" = "$to" ]
		ok $? "$e: ALTER EXTENSION UPDATE from $from to $to"
		changed=$(q "SELECT upgrade_check.changed()") && [ -z "$changed" ]
		ok $? "$e $from -> $to keeps every row of the data tables of both extensions${changed:+: $changed}"
	done
done

# The current versions, created from the current source: with no VERSION,
# CREATE EXTENSION runs <ext>--<default_version>.sql, which make built from
# sql/<ext>/*.sql.
psql -XAtq -v ON_ERROR_STOP=1 -d "$fresh" -c "SET client_min_messages = warning;
    CREATE EXTENSION eventstore; CREATE EXTENSION pgcrypto; CREATE EXTENSION birdwatch" >/dev/null
built=""
for e in "${extensions[@]}"; do
	v=$(default_version "$e")
	(LC_ALL=C; cat sql/"$e"/*.sql) >"$tmp/source.sql"
	[ "$(psql -XAtq -d "$fresh" -c "SELECT extversion FROM pg_extension WHERE extname = '$e'")" = "$v" ] &&
		[ -s "$tmp/source.sql" ] && cmp -s "$e--$v.sql" "$sharedir/$e--$v.sql" &&
		tail -c "$(wc -c <"$tmp/source.sql")" "$sharedir/$e--$v.sql" | cmp -s - "$tmp/source.sql" ||
		built="$built $e"
done
[ -z "$built" ]
ok $? "a fresh CREATE EXTENSION installs default_version from the script built from sql/<ext>/*.sql, as installed${built:+ (not so for:$built; run make install)}"

# Each installation as text: every object of both extensions, then the
# configuration rows their scripts wrote.
catalog_of() {
	psql -XAtq -v ON_ERROR_STOP=1 -d "$1" -c "
	    SELECT upgrade_check.catalog(extname) FROM pg_extension
	     WHERE extname IN ('eventstore', 'birdwatch') ORDER BY extname;
	    -- the configuration the extension scripts wrote, not this test
	    SELECT format('topic %s', (t.name, t.current_major, t.current_minor, t.retention,
	                               t.appenders, t.readers, t.erasers))
	      FROM eventstore.topics t WHERE t.name NOT IN ('orders', 'visits') ORDER BY 1;
	    SELECT format('upcaster %s', (u.topic, u.from_major, u.to_major, u.fn, u.run_as))
	      FROM eventstore.upcasters u ORDER BY 1;
	    SELECT format('consumer %s', (c.name, c.topics, c.handler, c.run_as, c.batch_size, c.max_attempts))
	      FROM eventstore.consumers c WHERE c.name <> 'orders_projection' ORDER BY 1;
	    SELECT format('protection %s', (p.topic, p.subject_path, p.paths))
	      FROM eventstore.protections p WHERE p.topic <> 'visits' ORDER BY 1"
}
catalog_of "$fresh" >"$tmp/fresh" && catalog_of "$chain" >"$tmp/chain" &&
	[ -s "$tmp/fresh" ] && diff -u "$tmp/fresh" "$tmp/chain" >"$tmp/diff"
ok $? "the upgraded installation equals a fresh one: $(grep -c '^[^ ]' "$tmp/fresh") objects, extensions, roles and configuration rows compared"
[ -s "$tmp/diff" ] && sed 's/^/# /' "$tmp/diff" | head -40

# It goes on where the old version stopped.
q "SELECT count(eventstore.append('orders', ev(n), stream => 'o' || n % 4)) FROM generate_series(21, 30) n" >/dev/null
q "SELECT eventstore.run_consumer('orders_projection')" >/dev/null
got=$(q "SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || sum(n) FROM public.handled")
[ "$got" = "29 29 458" ]
ok $? "the consumer goes on from its checkpoint: the other 18 orders handled, none twice, 7 still parked (handled, distinct, sum: $got)"
[ "$(q "SELECT max(stream_version) FROM eventstore.events WHERE topic = 'orders' AND stream = 'o1'")" = 8 ]
ok $? "streams go on from their version"
q "SELECT eventstore.replay_parked('orders_projection', event_id) FROM eventstore.parked" >/dev/null
q "CREATE OR REPLACE FUNCTION public.handle(e eventstore.event) RETURNS void LANGUAGE sql AS
       \$\$ INSERT INTO public.handled VALUES ((e.envelope->>'id')::uuid, (e.envelope->'data'->>'n')::int) \$\$" >/dev/null
q "SELECT eventstore.run_consumer('orders_projection')" >/dev/null
[ "$(q "SELECT count(*) || ' ' || sum(n) FROM public.handled") $(q "SELECT count(*) FROM eventstore.parked")" = "30 465 0" ]
ok $? "the event parked by the old version is replayed by the new one"
[ "$(q "SELECT count(*) FROM eventstore.events
          WHERE topic = 'visits' AND jsonb_typeof(data->'n'->'protected') = 'string'")" = 5 ]
ok $? "fields protected by the old version are still encrypted"
[ "$(q "SELECT count(*) FROM eventstore.read('visits') r, eventstore.unprotect(r) u
          WHERE (u.envelope->'data'->>'n')::int BETWEEN 1 AND 5")" = 5 ]
ok $? "and the new version decrypts them"
q "SELECT birdwatch.tick('$token2', 'https://img.example.org/b.jpg');
   SELECT birdwatch.rate('$token1', 'https://img.example.org/b.jpg', 5);" >/dev/null &&
	run_birdwatch
ok $? "birdwatch takes ticks and ratings after the upgrade"
[ "$(q "SELECT count(*) FROM eventstore.events WHERE topic = 'score'") $(q "SELECT count(*) FROM birdwatch.outbox")" = "2 2" ]
ok $? "each tick scored once and each rating of another's image queued for email once, across the upgrade"
[ "$(q "SELECT birdwatch.overview()->>'ticks'") $(q "SELECT sum(value::int) FROM jsonb_each_text(birdwatch.overview()->'ratings')")" = "2 2" ]
ok $? "statistics count the ticks and ratings of both versions once ($(q "SELECT birdwatch.overview()"))"
[ "$(q "SELECT count(*) FROM eventstore.consumer_status WHERE lag_events > 0 OR parked > 0")" = 0 ]
ok $? "every consumer has caught up, nothing parked"


exit $((fails > 0))
