#!/bin/bash
# Every event birdwatch produces matches its schema in docs/schemas/.
#
# Installs birdwatch in the test database and plays a story that makes
# every kind of event: register, login (user 1.0, and 1.1 with a user agent,
# stored encrypted), tick, rate (2.0 through TickAPI, and a stored 1.0
# appended directly, as old streams hold them), score (the ScoreModel's
# consumer: run_consumer, and the dispatcher), notification (the
# Notifier's outbox claimed and reported sent, as eventstore-worker does),
# gdpr (forget_me and AdminAPI's delete_user) and audit (delete_user and
# set_score_secret).  Then every stored event, as eventstore.read returns
# it, is validated by test/validate_events.py (/usr/bin/python3 with
# Debian's python3-jsonschema) against docs/schemas/<topic>.v<major>.schema.json:
# an event without a schema file fails, and each event schema file must
# have been used.  Stored rate 1.0 events, upcast, must match rate 2.
# Events broken on purpose must be refused, so the check can fail.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
. test/fixtures.sh
db=${PGDATABASE:-eventstore_test}
py=/usr/bin/python3
validate="$py test/validate_events.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "1..12"

# events SQL FILE: the rows of SQL (topic, position, envelope) as JSON lines.
events() {
	q "SELECT json_build_object('topic', topic, 'position', position, 'envelope', envelope)
	     FROM ($1) AS e ORDER BY position" >"$2"
}

$py -c 'import jsonschema' 2>/dev/null ||
	bail "$py has no jsonschema module (scripts/install-deps installs python3-jsonschema)"

# --- the story ------------------------------------------------------------
story() {
	q "SET client_min_messages = warning;
	   DROP EXTENSION IF EXISTS eventstore CASCADE;
	   CREATE EXTENSION birdwatch CASCADE;" >/dev/null || return 1
	alice=$(q "SELECT user_id || ' ' || token FROM birdwatch.register_user('alice@birds.example.org', 'Alice')") &&
	bob=$(q "SELECT user_id || ' ' || token FROM birdwatch.register_user('bob@birds.example.org', 'Bob')") &&
	carol=$(q "SELECT user_id || ' ' || token FROM birdwatch.register_user('carol@birds.example.org', 'Carol')") ||
		return 1
	alice_id=${alice%% *} alice_token=${alice#* }
	bob_id=${bob%% *} bob_token=${bob#* }
	carol_id=${carol%% *} carol_token=${carol#* }
	# audit update; user 1.1 (with a user agent) and user 1.0 (every call);
	# tick 1.0; rate 2.0
	q "SELECT birdwatch.set_score_secret('the secret of event_schemas.sh');
	   SELECT birdwatch.login('$alice_token', 'Mozilla/5.0 (X11; Linux) Birdwatcher/2.1');
	   SELECT birdwatch.tick('$alice_token', 'https://birds.example.org/alice/owl.jpg');
	   SELECT birdwatch.tick('$bob_token', 'https://birds.example.org/bob/heron.jpg');
	   SELECT birdwatch.rate('$bob_token', 'https://birds.example.org/alice/owl.jpg', 4);
	   SELECT birdwatch.rate('$alice_token', 'https://birds.example.org/bob/heron.jpg', 5);" >/dev/null || return 1
	# rate 1.0, as older streams hold it: no owner, the image by image_url
	q "SELECT eventstore.append('rate', jsonb_build_object(
	       'id', gen_random_uuid(), 'type', 'update', 'version', '1.0',
	       'data', jsonb_build_object('user', jsonb_build_object('id', '$carol_id'::uuid),
	                                  'image_url', 'https://birds.example.org/alice/owl.jpg',
	                                  'rating', 2),
	       'metadata', jsonb_build_object('source', 'services/TickAPI',
	                                      'time', '2019-05-01T08:00:00Z')))" >/dev/null || return 1
	# score (ScoreModel), outbox rows (Notifier): by run_consumer here, by
	# the dispatcher if it is quicker
	run_birdwatch && birdwatch_caught_up || return 1
	# notification: the outbox claimed and reported sent, as the daemon does
	wait_for 30 "SELECT count(*) = 3 FROM birdwatch.outbox" || return 1
	q "SELECT count(birdwatch.email_sent(id)) FROM birdwatch.claim_emails(10)" >/dev/null || return 1
	# gdpr twice, one of them with an audit delete
	q "SELECT birdwatch.delete_user('$bob_id');
	   SELECT birdwatch.forget_me('$carol_token');" >/dev/null || return 1
	run_birdwatch && birdwatch_caught_up
}
story
ok $? "birdwatch installed in $db, the story played, every consumer caught up without a failure"

missing=$(q "SELECT string_agg(name, ' ' ORDER BY name) FROM eventstore.topics t
              WHERE NOT EXISTS (SELECT FROM eventstore.events e WHERE e.topic = t.name)")
v11=$(q "SELECT count(*) FROM eventstore.events WHERE topic = 'user' AND version_major = 1 AND version_minor = 1")
[ -z "$missing" ] && [ "$v11" -ge 1 ]
ok $? "every topic has events (a user 1.1 among them)"
[ -n "$missing" ] && diag "topics without events: $missing"

out=$($validate --check-schemas 2>&1)
ok $? "every file of docs/schemas is a valid JSON Schema 2020-12 document, named by its \$id, whose \$refs resolve"
grep -q '^error' <<<"$out" && diag "$(grep -v '^ok ' <<<"$out")"

events "SELECT * FROM eventstore.read(NULL, 0, 100000)" "$tmp/events.jsonl"
out=$($validate --used "$tmp/used" <"$tmp/events.jsonl" 2>&1)
status=$?
stored=$(wc -l <"$tmp/events.jsonl")
[ "$status" -eq 0 ] && [ "$stored" -gt 0 ]
ok $? "all $stored stored events validate against docs/schemas/<topic>.v<major>.schema.json"
[ "$status" -ne 0 ] && diag "$(head -40 <<<"$out")"

# Each event schema file, and the eight of the contract by name.
schema_files=$(cd docs/schemas && ls *.v*.schema.json | sort)
contract="audit.v1 gdpr.v1 notification.v1 rate.v1 rate.v2 score.v1 tick.v1 user.v1"
unused=$(comm -23 <(echo "$schema_files") <(sort "$tmp/used" 2>/dev/null))
absent=$(for s in $contract; do [ -f "docs/schemas/$s.schema.json" ] || echo "$s"; done)
[ -z "$unused" ] && [ -z "$absent" ]
ok $? "each event schema file validated at least one stored event, the eight of the contract among them"
[ -n "$unused$absent" ] && diag "unused: $unused; absent: $absent"

events "SELECT e.topic, e.position, (eventstore.upcast(e)).envelope FROM eventstore.read('rate', 0, 100000) e
         WHERE e.envelope->>'version' LIKE '1.%'" "$tmp/upcast.jsonl"
out=$($validate --used "$tmp/used_upcast" <"$tmp/upcast.jsonl" 2>&1)
[ $? -eq 0 ] && [ -s "$tmp/upcast.jsonl" ] && [ "$(cat "$tmp/used_upcast")" = rate.v2.schema.json ]
ok $? "every stored rate 1.0, upcast (owner: the watcher who ticked the image), validates against rate.v2"
grep -q '^invalid\|^missing' <<<"$out" && diag "$out"

# --- the check can fail ---------------------------------------------------
# refused WHAT EXPECTED SQL: an event made by SQL (one row: topic, position,
# envelope) must be refused, with EXPECTED in the validator's output.
refused() {
	local out status
	events "$3" "$tmp/bad.jsonl"
	if [ ! -s "$tmp/bad.jsonl" ]; then
		ok 1 "$1 (no event to break)"
		return
	fi
	out=$($validate <"$tmp/bad.jsonl" 2>&1)
	status=$?
	[ "$status" -eq 1 ] && grep -qF -- "$2" <<<"$out"
	ok $? "$1"
	grep -qF -- "$2" <<<"$out" || diag "exit status $status: $out"
}
# one TOPIC EXPR: the first event of TOPIC, its envelope replaced by EXPR.
one() {
	echo "SELECT r.topic, 0 AS position, $2 AS envelope
	        FROM eventstore.read('$1', 0, 100000) AS r ORDER BY r.position LIMIT 1"
}
refused "refused: a rate 2.0 rated 6 and without its owner" "data.rating" \
	"$(one rate "jsonb_set(envelope #- '{data,image,owner}', '{data,rating}', '6')")"
refused "refused: a tick whose metadata.time is 'now' (an envelope rule, through \$ref)" "metadata.time" \
	"$(one tick "jsonb_set(envelope, '{metadata,time}', '\"now\"')")"
refused "refused: a tick naming the watcher's email (personal data in an event)" "data.user" \
	"$(one tick "jsonb_set(envelope, '{data,user,email}', '\"alice@birds.example.org\"')")"
refused "refused: a tick 2.0, for which there is no schema file" "missing tick" \
	"$(one tick "jsonb_set(envelope, '{version}', '\"2.0\"')")"
refused "refused: an audit whose action does not match its target" "audit.v1.schema.json" \
	"$(one audit "jsonb_set(envelope, '{data,action}', '\"user.delete\"')")"
refused "refused: a user 1.0 with the 1.1 member client" "user.v1.schema.json" \
	"$(one user "jsonb_set(jsonb_set(envelope, '{version}', '\"1.0\"'), '{data,client}', '{\"user_agent\": \"x\"}')")"

exit $((fails > 0))
