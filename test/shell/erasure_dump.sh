#!/bin/bash
# Erasure the strong way: before a person is forgotten, pg_dump of the
# database contains their email and display name; after forget_me and one
# pass of the consumers, pg_dump contains neither, nor their token's hash,
# nor their login events; replaying every consumer from position 0 brings
# none of it back.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
. test/fixtures.sh
db=${PGDATABASE:-eventstore_test}
email='alice.q7431@birds.example.org'
name='Alice Quux-Zyxwv'
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "1..10"

# dump FILE: the whole database, data included, as plain SQL.
dump() { pg_dump -d "$db" -f "$1"; }

q "SET client_min_messages = warning;
   DROP EXTENSION IF EXISTS eventstore CASCADE;
   CREATE EXTENSION birdwatch CASCADE;" >/dev/null
alice=$(q "SELECT user_id || ' ' || token FROM birdwatch.register_user('$email', '$name')")
alice_id=${alice%% *}
alice_token=${alice#* }
bob_token=$(q "SELECT token FROM birdwatch.register_user('bob.k@birds.example.org', 'Bob')")
q "SELECT birdwatch.tick('$alice_token', 'https://birds.example.org/alice/owl.jpg');
   SELECT birdwatch.tick('$alice_token', 'https://birds.example.org/alice/wren.jpg');
   SELECT birdwatch.rate('$bob_token', 'https://birds.example.org/alice/owl.jpg', 5);
   SELECT birdwatch.tick('$bob_token', 'https://birds.example.org/bob/heron.jpg');
   SELECT birdwatch.rate('$alice_token', 'https://birds.example.org/bob/heron.jpg', 4);" >/dev/null
birdwatch_caught_up
ok $? "the consumers have handled the story"

token_hash=$(q "SELECT encode(sha256(convert_to('$alice_token', 'UTF8')), 'hex')")
dump "$tmp/before.sql"
grep -qF "$email" "$tmp/before.sql" && grep -qF "$name" "$tmp/before.sql" && grep -qF "$token_hash" "$tmp/before.sql"
ok $? "before: pg_dump holds Alice's email, display name and token hash"
[ "$(q "SELECT count(*) > 0 FROM eventstore.events WHERE topic = 'user' AND stream = '$alice_id'")" = t ]
ok $? "before: her login events are stored"

q "SELECT birdwatch.forget_me('$alice_token')" >/dev/null
birdwatch_caught_up
wait_for 30 "SELECT count(*) = 0 FROM birdwatch.users WHERE id = '$alice_id'"
ok $? "forget_me, then one pass of the consumers: her user row is gone"
dump "$tmp/after.sql"
! grep -qiF "$email" "$tmp/after.sql" && ! grep -qF "$name" "$tmp/after.sql"
ok $? "after: pg_dump holds neither her email nor her display name"
! grep -qF "$token_hash" "$tmp/after.sql"
ok $? "after: nor her token's hash"
[ "$(q "SELECT count(*) FROM eventstore.events WHERE topic = 'user' AND data #>> '{user,id}' = '$alice_id'")" = 0 ]
ok $? "after: her login events are removed at once, not after 30 days"
[ "$(q "SELECT (SELECT count(*) FROM birdwatch.stats_user_ticks WHERE user_id = '$alice_id')
             + (SELECT count(*) FROM birdwatch.stats_login_seen WHERE user_id = '$alice_id')
             + (SELECT count(*) FROM birdwatch.outbox WHERE user_id = '$alice_id' AND sent_at IS NULL)")" = 0 ]
ok $? "after: no per-user statistic and no pending email of hers"

# Replay every consumer from the start.
q "SELECT eventstore.reset_consumer(name, 0) FROM eventstore.consumers WHERE name LIKE 'birdwatch\_%'" >/dev/null
birdwatch_caught_up
ok $? "every consumer replayed from position 0 without a failure"
dump "$tmp/replayed.sql"
! grep -qiF "$email" "$tmp/replayed.sql" && ! grep -qF "$name" "$tmp/replayed.sql" &&
	[ "$(q "SELECT (SELECT count(*) FROM birdwatch.users WHERE id = '$alice_id')
	             + (SELECT count(*) FROM birdwatch.stats_user_ticks WHERE user_id = '$alice_id')
	             + (SELECT count(*) FROM birdwatch.stats_login_seen WHERE user_id = '$alice_id')")" = 0 ]
ok $? "after the replay: still nothing of her in pg_dump or the per-user tables"

exit $((fails > 0))
