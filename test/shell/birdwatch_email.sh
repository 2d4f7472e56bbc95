#!/bin/bash
# birdwatch end to end: the dispatcher runs the consumers, eventstore-worker
# sends the Notifier's email to a real SMTP server (Debian's python3-aiosmtpd
# with test/smtp_sink.py, which stores each message as a file).  Checks
# that every rating of someone else's image mails its owner once, with the
# notification id as Message-ID and a notification/email event, the
# ratings spread over the Notifier's 4 members; that an
# old rate 1.0 event mails the owner found by the upcaster; that replaying
# the notifier and statistics from position 0 sends and counts nothing
# again; and that with the SMTP server down the email waits, retried, and
# every message arrives once the server is back.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
worker=$PWD/workers/eventstore-worker
py=/usr/bin/python3
db=${PGDATABASE:-eventstore_test}
role=bw_mailer
domain=birdwatch.test
pids=()
echo "1..19"

if [ ! -x "$worker" ]; then
	echo "Bail out! $worker is not built (make -C workers)"
	exit 1
fi
tmp=$(mktemp -d)
maildir=$tmp/mail
mkdir "$maildir"

cleanup() {
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	psql -XAtq -d "$db" -c "ALTER DATABASE $db RESET birdwatch.email_retry_delay" >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT




# wait_mail SECONDS COUNT: until the sink holds COUNT messages
wait_mail() {
	local deadline=$((SECONDS + $1))
	while [ $SECONDS -lt $deadline ]; do
		[ "$(ls "$maildir"/*.eml 2>/dev/null | wc -l)" -ge "$2" ] && return 0
		sleep 0.2
	done
	return 1
}
mails() { ls "$maildir"/*.eml 2>/dev/null | wc -l; }

smtp_port=$((20000 + RANDOM % 12000))
start_smtp() {
	PYTHONPATH=test "$py" -m aiosmtpd -n -l "127.0.0.1:$smtp_port" -c smtp_sink.Sink "$maildir" \
		>>"$tmp/smtp.log" 2>&1 &
	smtp_pid=$!
	pids+=("$smtp_pid")
	for _ in $(seq 50); do
		(exec 3<>"/dev/tcp/127.0.0.1/$smtp_port") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# A fresh birdwatch; the daemon's retries come quickly in this test.
q "SET client_min_messages = warning;
   DROP EXTENSION IF EXISTS eventstore CASCADE;
   CREATE EXTENSION birdwatch CASCADE;
   ALTER DATABASE $db SET birdwatch.email_retry_delay = '200ms';
   DO \$\$ BEGIN
       IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
           CREATE ROLE $role LOGIN PASSWORD 'mailer-secret';
       END IF;
   END \$\$;
   GRANT birdwatch_notifier TO $role;" >/dev/null
start_smtp
ok $? "the SMTP server listens on port $smtp_port"

cat >"$tmp/worker.json" <<EOF
{
  "conninfo": "host=${PGHOST:-localhost} port=${PGPORT:-5432} dbname=$db user=$role password=mailer-secret",
  "poll_interval_ms": 200,
  "reconnect_min_ms": 100,
  "reconnect_max_ms": 500,
  "log_level": "info",
  "outboxes": [{
    "name": "notifier",
    "claim": "birdwatch.claim_emails",
    "sent": "birdwatch.email_sent",
    "failed": "birdwatch.email_failed",
    "listen": "birdwatch_outbox",
    "batch_size": 10,
    "handler": {"type": "smtp", "host": "127.0.0.1", "port": $smtp_port,
                "from": "birdwatch@example.org", "tls": "off", "timeout_ms": 2000,
                "message_id_domain": "$domain"}
  }]
}
EOF
"$worker" --config "$tmp/worker.json" >"$tmp/worker.log" 2>&1 &
worker_pid=$!
pids+=("$worker_pid")

# Three watchers; each ticks two images; each rates every other watcher's
# images (8 ratings that mail someone: 12 minus the 4 of Carol's images,
# who has no address) and one of their own (no email).
q "CREATE TABLE bw_test_tokens (name text PRIMARY KEY, user_id uuid, token text);
   INSERT INTO bw_test_tokens SELECT 'alice', * FROM birdwatch.register_user('alice@example.org', 'Alice');
   INSERT INTO bw_test_tokens SELECT 'bob', * FROM birdwatch.register_user('bob@example.org', 'Bob');
   INSERT INTO bw_test_tokens VALUES ('carol', birdwatch.login('carol-has-no-address'), 'carol-has-no-address');" >/dev/null
for w in alice bob carol; do
	for i in 1 2; do
		q "SELECT birdwatch.tick(token, 'https://birds.example.org/$w-$i.jpg') FROM bw_test_tokens WHERE name = '$w'" >/dev/null
	done
done
for rater in alice bob carol; do
	for owner in alice bob carol; do
		for i in 1 2; do
			if [ "$rater" != "$owner" ] || [ "$i" = 1 ]; then
				q "SELECT birdwatch.rate(token, 'https://birds.example.org/$owner-$i.jpg', 4) FROM bw_test_tokens WHERE name = '$rater'" >/dev/null
			fi
		done
	done
done

wait_mail 30 8
ok $? "8 ratings of someone else's image with an address: 8 emails arrive ($(mails))"
wait_for 10 "SELECT count(*) = 8 FROM birdwatch.outbox WHERE sent_at IS NOT NULL"
ok $? "the 8 outbox rows are marked sent"
wait_for 10 "SELECT count(*) = 8 FROM eventstore.events WHERE topic = 'notification'"
ok $? "8 notification/email events"
q "SELECT reason || ' ' || count(*) FROM birdwatch.notification_skips GROUP BY reason ORDER BY reason" >"$tmp/skips"
[ "$(tr '\n' ';' <"$tmp/skips")" = "no address 4;own image 3;" ]
ok $? "skipped, with reasons: 4 to Carol (no address), 3 own images ($(tr '\n' ';' <"$tmp/skips"))"

# Each message: to the owner, Message-ID <notification id@domain>.
q "SELECT '<' || o.id || '@$domain> ' || u.email
     FROM birdwatch.outbox o JOIN birdwatch.users u ON u.id = o.user_id ORDER BY 1" >"$tmp/want"
for f in "$maildir"/*.eml; do
	mid=$(grep -i -m1 '^Message-ID:' "$f" | sed 's/^[^:]*: *//' | tr -d '\r')
	to=$(grep -i -m1 '^To:' "$f" | sed 's/^[^:]*: *//; s/.*<//; s/>.*//' | tr -d '\r')
	echo "$mid $to"
done | sort >"$tmp/got"
diff "$tmp/want" "$tmp/got" >"$tmp/diff"
ok $? "each email goes to the image's owner with Message-ID <notification id@$domain>, once ($(wc -l <"$tmp/got") messages)"
q "SELECT e.envelope FROM eventstore.read('notification') e LIMIT 1" >"$tmp/event"
q "SELECT count(*) = 8 FROM eventstore.read('notification', 0, 100) e JOIN birdwatch.outbox o
     ON o.id = (e.envelope->>'id')::uuid
    AND e.envelope #>> '{data,user,id}' = o.user_id::text
    AND e.envelope #>> '{data,source_event,id}' = o.source_event::text
    AND e.envelope @> '{\"type\": \"email\", \"version\": \"1.0\",
                        \"data\": {\"message_type\": \"rate.update\",
                                   \"source_event\": {\"name\": \"rate\", \"type\": \"update\"}},
                        \"metadata\": {\"source\": \"services/Notifier\"}}'" >"$tmp/ev"
[ "$(cat "$tmp/ev")" = t ]
ok $? "every notification event names its outbox row's user and source event, as docs/events.md shapes it"
# 15 ratings, each on the member of its id: all on one of 4 would be 4^-14.
members=$(q "SELECT count(*) || ' members, ' || count(*) FILTER (WHERE handled > 0) || ' with ratings handled'
               FROM eventstore.consumer_members WHERE consumer = 'birdwatch_notifier'")
[[ $members =~ ^4\ members,\ ([2-4])\ with ]]
ok $? "the Notifier's ratings are spread over its members: $members"

# An old rate 1.0 event: the owner comes from the ticks store.
q "SELECT eventstore.append('rate', jsonb_build_object(
       'id', gen_random_uuid(), 'type', 'update', 'version', '1.0',
       'data', jsonb_build_object('user', jsonb_build_object('id', (SELECT user_id FROM bw_test_tokens WHERE name = 'carol')),
                                  'image_url', 'https://birds.example.org/bob-2.jpg', 'rating', 5),
       'metadata', jsonb_build_object('source', 'services/TickAPI', 'time', '2019-05-01T08:00:00Z')))" >/dev/null
wait_mail 30 9
ok $? "a stored rate 1.0 event mails the image's owner, found by the upcaster"
grep -l 'bob@example.org' "$maildir"/*.eml | xargs grep -l 'bob-2.jpg: 5 of 5' >/dev/null 2>&1
ok $? "that email tells Bob his bob-2.jpg got 5 of 5"

# Replay: the notifier and statistics from position 0.
stats_before=$(q "SELECT birdwatch.overview() - 'distinct_logins_today'")
q "SELECT eventstore.reset_consumer('birdwatch_notifier', 0);
   SELECT eventstore.reset_consumer('birdwatch_statistics', 0);" >/dev/null
wait_for 30 "SELECT bool_and(lag_events = 0 AND attempts = 0 AND parked = 0) FROM eventstore.consumer_status
              WHERE name IN ('birdwatch_notifier', 'birdwatch_statistics')"
ok $? "the replayed consumers catch up without errors"
sleep 1.5
[ "$(mails)" -eq 9 ] && [ "$(q "SELECT count(*) FROM birdwatch.outbox")" -eq 9 ]
ok $? "replay: no new outbox row, no email sent again ($(mails) emails)"
[ "$(q "SELECT birdwatch.overview() - 'distinct_logins_today'")" = "$stats_before" ]
ok $? "replay: the statistics are unchanged"

# The SMTP server goes away; ratings go on; the email waits.
kill -TERM "$smtp_pid"
wait "$smtp_pid" 2>/dev/null
for i in 1 2 3; do
	q "SELECT birdwatch.rate(token, 'https://birds.example.org/alice-1.jpg', $i) FROM bw_test_tokens WHERE name = 'bob'" >/dev/null
done
wait_for 30 "SELECT count(*) = 3 FROM birdwatch.outbox WHERE sent_at IS NULL AND attempts >= 2 AND last_error IS NOT NULL"
ok $? "SMTP down: 3 emails wait, retried, with the error recorded ($(q "SELECT min(attempts) || '..' || max(attempts) || ' attempts: ' || min(last_error) FROM birdwatch.outbox WHERE sent_at IS NULL"))"
[ "$(mails)" -eq 9 ]
ok $? "SMTP down: nothing arrives"
start_smtp
ok $? "the SMTP server is back"
wait_mail 30 12
wait_for 10 "SELECT count(*) = 0 FROM birdwatch.outbox WHERE sent_at IS NULL"
ok $? "SMTP back: the 3 emails arrive and every row is sent ($(mails) emails)"
sleep 1
dups=$(for f in "$maildir"/*.eml; do grep -i -m1 '^Message-ID:' "$f"; done | sort | uniq -d | wc -l)
[ "$(mails)" -eq 12 ] && [ "$dups" -eq 0 ]
ok $? "12 emails in all, no Message-ID twice"

kill -TERM "$worker_pid"
wait "$worker_pid"
ok $? "the daemon stops on SIGTERM with status 0"

q "DROP TABLE bw_test_tokens" >/dev/null
if [ "$fails" -gt 0 ]; then
	echo "# worker log:"; sed 's/^/#   /' "$tmp/worker.log" | tail -40
fi
exit $((fails > 0))
