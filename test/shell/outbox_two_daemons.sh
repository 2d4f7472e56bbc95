#!/bin/bash
# Two eventstore-worker daemons sending birdwatch's email from one outbox
# (birdwatch.claim_emails: FOR UPDATE SKIP LOCKED, a lease of
# birdwatch.email_lease) to one SMTP sink (test/smtp_sink.py):
#
#   1. both running at once: N ratings of someone else's image make N
#      emails at the sink, each Message-ID once, every row marked sent,
#      every row sent by exactly one daemon (their logs), and both sent
#      some;
#   2. a daemon killed (-9) in the middle of a batch: the rows it claimed
#      and did not report stay leased, so the other daemon, running, leaves
#      them alone until the lease runs out, then sends them; no email lost,
#      at most the one in flight at the kill arrives twice (same
#      Message-ID).
#
# A scratch database, where no dispatcher runs: the Notifier runs through
# run_consumer, so that its rows appear in one transaction (one NOTIFY
# wakes both daemons).  The daemons run bare (no valgrind: this test is
# about timing; smtp_outbox.sh runs the daemon under valgrind).
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
py=/usr/bin/python3
main_db=${PGDATABASE:-eventstore_test}
db=outbox_two_daemons	# q's
role=outbox_two_mailer
domain=two.birdwatch.test
lease=6		# seconds: longer than any batch here takes (10 x 0.3 s)
n_ratings=120
n_killed=10
echo "1..17"
. test/daemon.sh	# $worker, $tmp, start, exited, stop, free_port, start_sink

if ! "$py" -c 'import aiosmtpd' 2>/dev/null; then
	echo "Bail out! $py has no aiosmtpd (scripts/install-deps installs python3-aiosmtpd)"
	exit 1
fi
maildir=$tmp/mail
mkdir "$maildir"
port=$(free_port)

drop_all() {
	psql -XAtq -d "$main_db" -c "SET client_min_messages = warning" \
		-c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "DROP ROLE IF EXISTS $role" >/dev/null 2>&1
}
trap 'cleanup; drop_all' EXIT

# ids_at_sink: the Message-ID of every message the sink stored, one a line
ids_at_sink() {
	for f in "$maildir"/*.eml; do
		[ -e "$f" ] || continue
		grep -i -m1 '^Message-ID:' "$f" | sed 's/^[^:]*: *//' | tr -d '\r'
	done
}
mail_count() { find "$maildir" -name '*.eml' | wc -l; }
# outbox_ids WHERE: the Message-IDs the outbox rows matching WHERE must get
outbox_ids() { q "SELECT '<' || id || '@$domain>' FROM birdwatch.outbox WHERE $1" | sort; }
# sent_by LOG: the row ids a daemon reported sent, one a line
sent_by() { sed -n 's/.* info outbox=notifier id=\([0-9a-f-]*\) attempt=[0-9]* sent$/\1/p' "$1" | sort; }
all_sent() { [ "$(q "SELECT count(*) FILTER (WHERE sent_at IS NULL) FROM birdwatch.outbox")" -eq 0 ]; }

drop_all
psql -XAtq -d "$main_db" -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" \
	-c "CREATE ROLE $role LOGIN PASSWORD 'two-daemons'" -c "CREATE DATABASE $db" >/dev/null &&
	q "SET client_min_messages = warning;
	   CREATE EXTENSION birdwatch CASCADE;
	   GRANT birdwatch_notifier TO $role;
	   ALTER DATABASE $db SET birdwatch.email_lease = '${lease}s';" >/dev/null
status=$?
ok $status "a scratch database with birdwatch, the lease at ${lease} s, and a login role in birdwatch_notifier"
[ $status -eq 0 ] || bail "no scratch database"
[ "$(q "SELECT members FROM eventstore.consumer_status WHERE name = 'birdwatch_notifier'")" = 4 ]
ok $? "the Notifier has 4 members (birdwatch 1.3)"

# Alice owns the images and has an address; the raters are watchers of
# their own (tokens nobody registered).
q "CREATE TABLE public.alice AS SELECT * FROM birdwatch.register_user('alice@example.org', 'Alice');
   SELECT count(birdwatch.tick(token, 'https://birds.example.org/a-' || g || '.jpg'))
     FROM public.alice, generate_series(0, 9) g" >/dev/null

# rate COUNT TAG: COUNT ratings of Alice's images, then the Notifier run
# (one transaction: its NOTIFY wakes both daemons at once)
rate() {
	q "SELECT count(birdwatch.rate('$2-rater-' || (g % 7), 'https://birds.example.org/a-' || (g % 10) || '.jpg',
	                               1 + g % 5))
	     FROM generate_series(1, $1) g" >/dev/null &&
		q "SELECT eventstore.run_consumer('birdwatch_notifier')" >/dev/null
}

# config FILE BATCH: a daemon of the outbox of birdwatch, as BIRDWATCH.md has it
config() {
	cat >"$1" <<JSON
{"conninfo": "host=${PGHOST:-localhost} port=${PGPORT:-5432} dbname=$db user=$role password=two-daemons",
 "poll_interval_ms": 300, "reconnect_min_ms": 100, "reconnect_max_ms": 500, "log_level": "info",
 "outboxes": [{"name": "notifier", "claim": "birdwatch.claim_emails", "sent": "birdwatch.email_sent",
               "failed": "birdwatch.email_failed", "listen": "birdwatch_outbox", "batch_size": $2,
               "handler": {"type": "smtp", "host": "127.0.0.1", "port": $port,
                           "from": "birdwatch@example.org", "tls": "off", "timeout_ms": 5000,
                           "message_id_domain": "$domain"}}]}
JSON
}

#
# 1. Both at once.  Batches of 5, the sink taking 20 ms a message: each
# daemon's batch lasts about 0.1 s, so their claims interleave.
#
start_sink 0.02
ok $? "the SMTP sink listens on 127.0.0.1:$port"
config "$tmp/a.json" 5
config "$tmp/b.json" 5
start "$tmp/a.log" "$worker" --config "$tmp/a.json"
pid_a=$started
start "$tmp/b.log" "$worker" --config "$tmp/b.json"
pid_b=$started
wait_until 30 grep -q "info connected to database $db" "$tmp/a.log" &&
	wait_until 30 grep -q "info connected to database $db" "$tmp/b.log"
ok $? "both daemons connect, as a member of birdwatch_notifier"
sleep 1	# past their first claim: both wait for a NOTIFY now

start_time=$SECONDS
rate $n_ratings one
[ "$(q "SELECT count(*) FROM birdwatch.outbox")" -eq $n_ratings ]
ok $? "$n_ratings ratings of Alice's images: $n_ratings outbox rows"
wait_until 60 all_sent
ok $? "every row is marked sent, in $((SECONDS - start_time)) s"
sleep 1	# anything sent twice would arrive now
[ "$(ids_at_sink | sort)" = "$(outbox_ids true)" ]
ok $? "exactly $n_ratings emails at the sink ($(mail_count)), each row's Message-ID once ($(ids_at_sink | sort | uniq -d | wc -l) twice)"
[ "$(grep -L 'alice@example.org' "$maildir"/*.json | wc -l)" -eq 0 ]
ok $? "every email went to Alice"
sent_by "$tmp/a.log" >"$tmp/a.ids"
sent_by "$tmp/b.log" >"$tmp/b.ids"
[ "$(sort -m "$tmp/a.ids" "$tmp/b.ids" | uniq -d | wc -l)" -eq 0 ] &&
	[ "$(sort -m "$tmp/a.ids" "$tmp/b.ids")" = "$(q "SELECT id FROM birdwatch.outbox" | sort)" ]
ok $? "each row sent by one daemon only, every row by one of them (logs: $(wc -l <"$tmp/a.ids") + $(wc -l <"$tmp/b.ids"))"
[ -s "$tmp/a.ids" ] && [ -s "$tmp/b.ids" ]
ok $? "both daemons sent some: $(wc -l <"$tmp/a.ids") and $(wc -l <"$tmp/b.ids")"
[ "$(q "SELECT count(*) FROM birdwatch.outbox WHERE attempts = 0 AND last_error IS NULL AND leased_until IS NULL")" -eq $n_ratings ] &&
	[ "$(q "SELECT count(DISTINCT id) FROM eventstore.events WHERE topic = 'notification'")" -eq $n_ratings ] &&
	[ "$(q "SELECT count(*) FROM eventstore.events WHERE topic = 'notification'")" -eq $n_ratings ]
ok $? "no failed attempt, no lease left, one notification/email event per row"

#
# 2. B goes on; A is killed in the middle of a batch of 10, the sink taking
# 0.3 s a message.
#
stop "$pid_a" >/dev/null
stop "$pid_b" >/dev/null
stop "$sink" >/dev/null
start_sink 0.3
before=$(mail_count)
rate $n_killed two
config "$tmp/a2.json" $n_killed
start "$tmp/a2.log" "$worker" --config "$tmp/a2.json"
pid_a=$started
wait_until 20 eval '[ $(($(mail_count) - before)) -ge 2 ]'
{ kill -KILL "$pid_a"; wait "$pid_a"; } 2>/dev/null
q "SELECT id FROM birdwatch.outbox WHERE sent_at IS NULL AND leased_until > now()" | sort >"$tmp/leased"
left=$(wc -l <"$tmp/leased")
[ "$left" -gt 0 ] && [ "$left" -eq "$(q "SELECT count(*) FROM birdwatch.outbox WHERE sent_at IS NULL")" ]
ok $? "kill -9 of daemon A after $(($(mail_count) - before)) of $n_killed messages: the $left rows it claimed and did not report stay leased"
start "$tmp/b2.log" "$worker" --config "$tmp/b.json"
pid_b=$started
wait_until 30 grep -q "info connected to database $db" "$tmp/b2.log"
sleep 1.5	# B has claimed (nothing) at its start and on its polls since
sent_by "$tmp/b2.log" >"$tmp/b2.ids"
[ "$(q "SELECT count(*) FROM birdwatch.outbox WHERE sent_at IS NULL AND leased_until > now()")" -eq "$left" ] &&
	[ ! -s "$tmp/b2.ids" ]
ok $? "daemon B, running, leaves them alone while the lease runs"
wait_until $((lease + 20)) all_sent
ok $? "after the lease B sends them: every row is marked sent"
sent_by "$tmp/b2.log" >"$tmp/b2.ids"
[ "$(cat "$tmp/b2.ids")" = "$(cat "$tmp/leased")" ]
ok $? "B sent exactly the $left rows A had left ($(wc -l <"$tmp/b2.ids") sent by B)"
sleep 1
missing=$(comm -23 <(outbox_ids true) <(ids_at_sink | sort -u) | wc -l)
dups=$(ids_at_sink | sort | uniq -d | wc -l)
[ "$missing" -eq 0 ] && [ "$dups" -le 1 ] && [ "$(mail_count)" -eq $((n_ratings + n_killed + dups)) ]
ok $? "no email lost ($missing missing); only the one in flight at the kill may come twice ($dups Message-ID(s) twice)"
stop "$pid_b"
ok $? "SIGTERM: daemon B stops with exit status 0"
stop "$sink" >/dev/null 2>&1

if [ "$fails" -ne 0 ]; then
	for f in a b a2 b2 sink; do
		[ -f "$tmp/$f.log" ] && sed "s/^/# $f: /" "$tmp/$f.log" | tail -30
	done
fi
exit $((fails > 0))
