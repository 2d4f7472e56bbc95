#!/bin/bash
# The analysis archive with two real clusters: publish_archive() on the
# cluster under test (the primary), and a second cluster made here (the
# archive) subscribing to it.  Checks that the publication carries inserts
# only, with a row filter leaving out the topics with a retention, kept up
# to date by create_topic and set_retention; that the archive receives the
# events of the other topics identical (position, id, topic, envelope,
# stream, recorded_at, xid), also those appended before it subscribed, and
# never one of a topic with a retention; and that it keeps every event
# after the primary's retention removed it, also of a topic given a
# retention after its events were archived, whose new events are then no
# longer archived.
#
# The primary needs wal_level = logical: unless it has it already, it is
# set with ALTER SYSTEM and the primary restarted (pg_ctl as the data
# directory's owner, as in dispatcher.sh), and both are undone at the end,
# also when the script dies.  The archive is initdb'd into a temporary
# directory, listens on a Unix socket there only, and is removed at the end.
# It does not preload eventstore: an archive needs no dispatcher, and
# CREATE EXTENSION works without shared_preload_libraries.
# The subscription connects as a role with REPLICATION, USAGE on the schema
# eventstore and SELECT on eventstore.events (README.md), through the
# primary's password login.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
. test/scratch_cluster.sh
db=${PGDATABASE:-eventstore_test}
role=es_archive_replicator
secret=archive-secret
planned=18
echo "1..$planned"

skip_rest() {	# skip_rest REASON: the assertions left fail, at once
	while [ $n -lt $planned ]; do
		n=$((n + 1))
		echo "not ok $n - skipped: $1"
		fails=$((fails + 1))
	done
	exit 1
}

# q SQL and wait_for SECONDS SQL (test/tap.sh): on the primary
a() {	# a SQL...: on the archive, each argument a statement of its own
	PGOPTIONS="-c client_min_messages=warning" PGHOST=$tmp PGPORT=$aport PGUSER=$owner \
		q_in archive "$@"
}
# a_true SQL: SQL returns t on the archive (an error: not yet); for wait_until
a_true() { [ "$(a "$1" 2>/dev/null)" = t ]; }

# The primary: data directory, owner, server log, pg_ctl (see dispatcher.sh).
data_dir=$(q "SHOW data_directory") || bail "cannot connect to the primary"
owner=$(stat -c %U "$data_dir")
bindir=$("${PG_CONFIG:-pg_config}" --bindir)
pg_log=$(readlink "/proc/$(head -1 "$data_dir/postmaster.pid")/fd/2")
[ -f "$pg_log" ] && [ -x "$bindir/pg_ctl" ] ||
	bail "cannot find the server log ($pg_log) or pg_ctl ($bindir/pg_ctl)"
restart_primary() {
	local out
	out=$(as_owner "$bindir/pg_ctl" restart -D "$data_dir" -w -t 60 -m fast -l "$pg_log" 2>&1) ||
		{ diag "pg_ctl restart failed: $out"; return 1; }
}
dispatcher_up="SELECT count(*) > 0 FROM pg_stat_activity
                WHERE backend_type = 'eventstore dispatcher' AND datname = current_database()"

wal_level_before=$(q "SHOW wal_level")
saved_wal_level=$(q "SELECT format('ALTER SYSTEM SET wal_level = %L', setting) FROM pg_file_settings
                      WHERE sourcefile LIKE '%/postgresql.auto.conf' AND name = 'wal_level'
                      ORDER BY seqno DESC LIMIT 1")
tmp=$(mktemp -d)
aport=
wal_changed=

finish() {
	set +e
	if [ -n "$aport" ]; then
		# DROP SUBSCRIPTION drops its slot on the primary too.
		a "DROP SUBSCRIPTION IF EXISTS eventstore_archive" >/dev/null 2>&1
		as_owner "$bindir/pg_ctl" stop -D "$tmp/data" -m immediate -w >/dev/null 2>&1
	fi
	rm -rf "$tmp"
	# A logical slot left behind would keep the primary from starting with
	# wal_level = replica: drop it once no walsender holds it.
	wait_for 10 "SELECT NOT EXISTS (SELECT FROM pg_replication_slots
	                                 WHERE slot_name = 'eventstore_archive' AND active)"
	q "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
	    WHERE slot_name = 'eventstore_archive' OR slot_name LIKE 'pg\_%\_sync\_%'" >/dev/null
	q "DROP PUBLICATION IF EXISTS eventstore_archive" >/dev/null 2>&1
	q "SET client_min_messages = warning; DROP SCHEMA IF EXISTS archive_test CASCADE" >/dev/null 2>&1
	q "DROP OWNED BY $role; DROP ROLE $role" >/dev/null 2>&1
	if [ -n "$wal_changed" ]; then
		q "ALTER SYSTEM RESET wal_level" >/dev/null
		[ -n "$saved_wal_level" ] && q "$saved_wal_level" >/dev/null
		restart_primary && wait_for 30 "$dispatcher_up"
	fi
}
trap finish EXIT

# 1: the primary with wal_level = logical
if [ "$wal_level_before" != logical ]; then
	wal_changed=1
	q "ALTER SYSTEM SET wal_level = logical" >/dev/null && restart_primary &&
		wait_for 30 "$dispatcher_up"
fi
[ "$(q "SHOW wal_level")" = logical ]
ok $? "the primary runs with wal_level = logical (was $wal_level_before)"

# A fresh eventstore with topics as birdwatch has them; ev(topic, n)
# builds an envelope (version 2.0 for rate, non-ASCII data).
q "SET client_min_messages = warning;
   DROP PUBLICATION IF EXISTS eventstore_archive;
   DROP SCHEMA IF EXISTS archive_test CASCADE;
   DROP EXTENSION IF EXISTS eventstore CASCADE;
   CREATE EXTENSION eventstore;
   SELECT eventstore.create_topic('tick');
   SELECT eventstore.create_topic('rate', '2.0');
   SELECT eventstore.create_topic('user', retention => interval '30 days');
   CREATE SCHEMA archive_test;
   CREATE FUNCTION archive_test.ev(topic text, n int) RETURNS jsonb LANGUAGE sql AS \$\$
       SELECT jsonb_build_object('id', gen_random_uuid(), 'type', 'new',
                                 'version', CASE topic WHEN 'rate' THEN '2.0' ELSE '1.0' END,
                                 'data', jsonb_build_object('n', n, 'bird', 'Zaunkönig 🐦', 'rating', n % 5 + 1),
                                 'metadata', jsonb_build_object('source', 'archive.sh',
                                                                'time', '2026-11-27T10:00:00Z'))
   \$\$;
   DO \$\$ BEGIN
       IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
           CREATE ROLE $role LOGIN REPLICATION PASSWORD '$secret';
       END IF;
   END \$\$;
   -- events before the publication and the subscription: the initial copy
   SELECT count(eventstore.append('tick', archive_test.ev('tick', n))) FROM generate_series(1, 5) n;
   SELECT count(eventstore.append('user', archive_test.ev('user', n))) FROM generate_series(1, 2) n;" >/dev/null ||
	bail "setup on the primary failed"

# The publication's filter, as pg_publication_tables shows it.
filter_sql="SELECT rowfilter FROM pg_publication_tables
             WHERE pubname = 'eventstore_archive' AND schemaname = 'eventstore' AND tablename = 'events'"

# 2-3: publish_archive
q "SELECT eventstore.publish_archive()" >/dev/null
[ "$(q "SELECT concat_ws(' ', pubinsert, pubupdate, pubdelete, pubtruncate, puballtables,
                         (SELECT string_agg(schemaname || '.' || tablename, ',') FROM pg_publication_tables t
                           WHERE t.pubname = p.pubname))
          FROM pg_publication p WHERE pubname = 'eventstore_archive'")" = "t f f f f eventstore.events" ]
ok $? "publish_archive() creates eventstore_archive on eventstore.events, inserts only"
filter=$(q "$filter_sql")
[ "$filter" = "(NOT (topic = ANY ('{user}'::text[])))" ]
ok $? "its row filter leaves out user, the topic with a retention: $filter"

# 4-5: the filter follows create_topic; publish_archive again only refreshes
q "SELECT eventstore.create_topic('audit', retention => interval '1 day');
   SELECT eventstore.create_topic('score')" >/dev/null
filter=$(q "$filter_sql")
[ "$filter" = "(NOT (topic = ANY ('{audit,user}'::text[])))" ]
ok $? "create_topic with a retention adds the topic to the filter, one without does not: $filter"
q "SELECT eventstore.publish_archive()" >/dev/null &&
	[ "$(q "SELECT count(*) FROM pg_publication WHERE pubname = 'eventstore_archive'")" = 1 ] &&
	[ "$(q "$filter_sql")" = "$filter" ]
ok $? "publish_archive() again keeps the one publication and its filter"

# The archive: a second cluster, owned like the primary.
scratch_initdb "$tmp" || bail "initdb of the archive failed: $scratch_out"
aport=$scratch_port
out=$(as_owner "$bindir/pg_ctl" start -D "$tmp/data" -w -t 60 -l "$tmp/archive.log" 2>&1) ||
	bail "the archive did not start: $out $(cat "$tmp/archive.log")"
psql -XAtq -h "$tmp" -p "$aport" -U "$owner" -d postgres -c "CREATE DATABASE archive" >/dev/null ||
	bail "cannot create the database archive"

# 6: the replicating role, with the grants README.md names: the initial
# copy runs COPY (SELECT ... FROM eventstore.events WHERE ...) as it.
q "GRANT USAGE ON SCHEMA eventstore TO $role" >/dev/null
q "GRANT SELECT ON eventstore.events TO $role" >/dev/null
out=$(PGPASSWORD=$secret psql -XAtq -h "${PGHOST:-localhost}" -U "$role" -d "$db" \
	-c "SELECT count(*) FROM eventstore.events WHERE topic = 'tick'" 2>&1)
[ "$out" = 5 ]
ok $? "$role with REPLICATION, USAGE on the schema and SELECT on eventstore.events (README.md) reads the table: ${out%%$'\n'*}"

# 7-8: the subscription and its initial copy
a "CREATE EXTENSION eventstore" \
  "CREATE SUBSCRIPTION eventstore_archive
       CONNECTION 'host=${PGHOST:-localhost} port=${PGPORT:-5432} dbname=$db user=$role password=$secret'
       PUBLICATION eventstore_archive" >/dev/null &&
	wait_until 30 a_true "SELECT count(*) = 1 AND bool_and(srsubstate = 'r') FROM pg_subscription_rel"
status=$?
ok $status "the archive, where eventstore is not preloaded, creates the extension and subscribes as $role: the table is synchronised"
if [ $status -ne 0 ]; then
	diag "pg_subscription_rel: $(a "SELECT srsubstate FROM pg_subscription_rel" 2>&1)"
	diag "$(grep ERROR "$tmp/archive.log" | tail -3)"
	skip_rest "no subscription"
fi
[ "$(a "SELECT string_agg(topic || '=' || n, ' ' ORDER BY topic)
          FROM (SELECT topic, count(*) n FROM eventstore.events GROUP BY topic) c")" = "tick=5" ]
ok $? "the initial copy brings the 5 tick events appended before, not the 2 user events"

# The events' rows, both sides: count and md5 over every column.
rows() {	# rows WHERE
	echo "SELECT count(*) || ' ' || md5(coalesce(string_agg(concat_ws('|', position, id, topic, type,
	        version_major, version_minor, data, metadata, stream, stream_version,
	        extract(epoch FROM recorded_at), xid), E'\n' ORDER BY position), ''))
	        FROM eventstore.events WHERE $1"
}
# marker: appends one rate event on the primary, waits until it is on the archive
marker() {
	local pos
	pos=$(q "SELECT eventstore.append('rate', archive_test.ev('rate', 0))") &&
		wait_until 30 a_true "SELECT EXISTS (SELECT FROM eventstore.events WHERE position = $pos)"
}

# 9-11: appends of every kind; what arrives is what the primary holds
q "SELECT count(eventstore.append('tick', archive_test.ev('tick', n))) FROM generate_series(6, 25) n;
   SELECT count(eventstore.append('user', archive_test.ev('user', n))) FROM generate_series(3, 12) n;
   SELECT count(eventstore.append('rate', archive_test.ev('rate', n), 'image-robin', n - 1)) FROM generate_series(1, 10) n;
   SELECT count(eventstore.append('audit', archive_test.ev('audit', n))) FROM generate_series(1, 5) n;
   SELECT count(p) FROM eventstore.append_batch('score', ARRAY[archive_test.ev('score', 1), archive_test.ev('score', 2)]) p;
   SELECT count(eventstore.append('user', archive_test.ev('user', n))) FROM generate_series(13, 14) n;" >/dev/null
marker
ok $? "an event appended on the primary arrives on the archive"
archived="topic IN ('tick', 'rate', 'score')"
primary_rows=$(q "$(rows "$archived")")
archive_rows=$(a "$(rows "true")")
[ -n "$archive_rows" ] && [ "$archive_rows" = "$primary_rows" ]
ok $? "the archive holds exactly the primary's tick, rate and score events, every column identical ($archive_rows)"
[ "$(q "SELECT count(*) FROM eventstore.events WHERE topic IN ('user', 'audit')")" = 19 ] &&
	[ "$(a "SELECT count(*) FROM eventstore.events WHERE topic IN ('user', 'audit')")" = 0 ]
ok $? "none of the primary's 14 user and 5 audit events reaches the archive"

# 12: eventstore.read on the archive once its topics exist
a "SELECT eventstore.create_topic('tick')" >/dev/null
read_sql="SELECT count(*) || ' ' || md5(string_agg(r::text, E'\n' ORDER BY r.position))
            FROM eventstore.read('tick', 0, 1000) r"
archive_read=$(a "$read_sql")
[ -n "$archive_read" ] && [ "$archive_read" = "$(q "$read_sql")" ] && [ "$archive_read" != "0 " ]
ok $? "eventstore.read('tick') on the archive returns what it returns on the primary: $archive_read"

# 13: the primary's retention removes user events, the archive keeps its own
before=$(a "$(rows "true")")
purged=$(q "UPDATE eventstore.events SET recorded_at = recorded_at - interval '31 days' WHERE topic = 'user';
            SELECT eventstore.purge_expired()")
marker
[ "$purged" = 14 ] && [ "$(q "SELECT count(*) FROM eventstore.events WHERE topic = 'user'")" = 0 ] &&
	[ -n "$before" ] && [ "$(a "$(rows "position < (SELECT max(position) FROM eventstore.events)")")" = "$before" ]
ok $? "purge_expired() removes the 14 aged user events ($purged) and changes nothing on the archive"

# 14-16: tick gets a retention after its events were archived
tick_rows=$(q "$(rows "topic = 'tick'")")
q "SELECT eventstore.set_retention('tick', interval '1 hour')" >/dev/null
filter=$(q "$filter_sql")
[ "$filter" = "(NOT (topic = ANY ('{audit,tick,user}'::text[])))" ]
ok $? "set_retention('tick', 1 hour) adds tick to the filter: $filter"
purged=$(q "UPDATE eventstore.events SET recorded_at = recorded_at - interval '2 hours' WHERE topic = 'tick';
            SELECT eventstore.purge_expired()")
marker
[ "$purged" = 25 ] && [ "$(q "SELECT count(*) FROM eventstore.events WHERE topic = 'tick'")" = 0 ]
ok $? "on the primary purge_expired() removes the 25 aged tick events ($purged)"
[ -n "$tick_rows" ] && [ "$(a "$(rows "topic = 'tick'")")" = "$tick_rows" ]
ok $? "the archive keeps all 25, as they were archived (recorded_at before the ageing): $tick_rows"

# 17-18: new tick events are no longer archived; with the retention taken
# off again they are.
q "SELECT count(eventstore.append('tick', archive_test.ev('tick', n))) FROM generate_series(26, 30) n" >/dev/null
marker
[ "$(a "SELECT count(*) FROM eventstore.events WHERE topic = 'tick'")" = 25 ] &&
	[ "$(q "SELECT count(*) FROM eventstore.events WHERE topic = 'tick'")" = 5 ]
ok $? "tick events appended after set_retention stay on the primary, the archive still has 25"
q "SELECT eventstore.set_retention('tick', NULL);
   SELECT count(eventstore.append('tick', archive_test.ev('tick', n))) FROM generate_series(31, 33) n" >/dev/null
marker
[ "$(q "$filter_sql")" = "(NOT (topic = ANY ('{audit,user}'::text[])))" ] &&
	[ "$(a "SELECT count(*) FROM eventstore.events WHERE topic = 'tick'")" = 28 ]
ok $? "set_retention('tick', NULL) takes tick out of the filter: its new events arrive again"

exit $((fails > 0))
