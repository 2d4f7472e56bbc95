#!/bin/bash
# Disk full during append leaves the store consistent and the error clear.
#
# eventstore.events (with its TOAST table and indexes) is moved into a
# tablespace on a 16 MB tmpfs; WAL stays where it was.  Events of about
# 100 kB each are appended one per transaction until an append fails.
# Checked: the error is PostgreSQL's 53100 (disk_full, "No space left on
# device"); every acknowledged append is readable at its position and the
# failed one is absent; the backend and the server are up; a batch that
# meets the full disk stores nothing (all or nothing); once the tmpfs is
# enlarged, the failed event and the batch append normally; and an outside
# consumer then polls every event exactly once (nothing skipped).
#
# Runs in a database of its own (eventstore_disk_full), so that no other
# test's events or the dispatcher's consumers share the full table.  Needs
# root for mount; skipped otherwise.  The mount, the tablespace and the
# database are removed on exit, also when the script dies.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
db=eventstore_disk_full

if [ "$(id -u)" -ne 0 ]; then
	echo "1..0 # SKIP mounting a tmpfs needs root"
	exit 0
fi
data_dir=$(psql -XAtq -c "SHOW data_directory")
owner=$(stat -c %U "$data_dir")
dir=$(mktemp -d /tmp/eventstore_disk_full.XXXXXX)
chmod 755 "$dir"
mnt=$dir/tablespace
mkdir "$mnt"
if ! mount -t tmpfs -o size=16m,mode=0700 tmpfs "$mnt" 2>/dev/null; then
	rmdir "$mnt" "$dir"
	echo "1..0 # SKIP cannot mount a tmpfs here"
	exit 0
fi
chown "$owner" "$mnt"

cleanup() {
	psql -XAtq -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
	psql -XAtq -d postgres -c "DROP TABLESPACE IF EXISTS eventstore_disk_full" >/dev/null 2>&1
	umount "$mnt" 2>/dev/null
	# the scratch files, never what might still be mounted
	mountpoint -q "$mnt" || rm -rf "$dir"
}
trap cleanup EXIT

echo "1..12"
psql -XAtq -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null 2>&1
psql -XAtq -d postgres -c "CREATE TABLESPACE eventstore_disk_full LOCATION '$mnt'" >/dev/null
q "SET client_min_messages = warning;
   CREATE EXTENSION eventstore;
   SELECT eventstore.create_topic('fill');
   SELECT eventstore.create_consumer('audit', ARRAY['fill']);
   ALTER TABLE eventstore.events SET TABLESPACE eventstore_disk_full;
   DO \$\$
   DECLARE i regclass;
   BEGIN
       FOR i IN SELECT indexrelid::regclass FROM pg_index
                 WHERE indrelid = 'eventstore.events'::regclass LOOP
           EXECUTE format('ALTER INDEX %s SET TABLESPACE eventstore_disk_full', i);
       END LOOP;
   END
   \$\$;
   -- an event of about 100 kB that compresses badly: hex of md5s
   CREATE FUNCTION public.big_event(n int) RETURNS jsonb LANGUAGE sql AS \$f\$
       SELECT jsonb_build_object(
           'id', ('d15cf000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid,
           'type', 'fill', 'version', '1.0',
           'data', jsonb_build_object('n', n, 'blob',
                   (SELECT string_agg(md5(n::text || ':' || i), '') FROM generate_series(1, 3000) i)),
           'metadata', jsonb_build_object('source', 'test', 'time', '2026-11-27T10:00:00Z'))
   \$f\$;" >/dev/null
[ "$(q "SELECT count(*) FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace
        WHERE t.spcname = 'eventstore_disk_full'
          AND (c.oid = 'eventstore.events'::regclass OR c.oid IN (
               SELECT indexrelid FROM pg_index WHERE indrelid = 'eventstore.events'::regclass)
               OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = 'eventstore.events'::regclass))")" -ge 7 ]
ok $? "eventstore.events, its TOAST table and its indexes are on the 16 MB tmpfs"

# One append per transaction, numbered 1, 2, ...; psql stops at the first
# error.  stdout lists the acknowledged appends as "n position".
script=$dir/appends.sql
{
	for i in $(seq 1 1000); do
		echo "SELECT $i, eventstore.append('fill', public.big_event($i));"
	done
} >"$script"
psql -XAtq -F ' ' -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$db" -f "$script" >"$dir/acked" 2>"$dir/error"
acked=$(wc -l <"$dir/acked")
failed=$((acked + 1))
grep -q "ERROR:  53100: could not extend file" "$dir/error" && grep -q "No space left on device" "$dir/error"
ok $? "append $failed fails with 53100 disk_full: $(grep -m1 ERROR "$dir/error")"
[ "$acked" -gt 20 ] && [ "$acked" -lt 1000 ]
ok $? "$acked appends were acknowledged before the disk was full"

psql -XAtq -d postgres -c "SELECT 1" >/dev/null && pg_isready -q
ok $? "the server is up and accepts connections"

# Every acknowledged append is there, at the position it was given.
cut -d' ' -f1,2 "$dir/acked" | awk '{ print "(" $1 "," $2 ")" }' | paste -sd, >"$dir/acked_values"
[ "$(q "SELECT count(*) = $acked
          AND bool_and(e.position = a.position AND (e.envelope->'data'->>'n')::int = a.n)
          AND (SELECT count(*) FROM eventstore.events) = $acked
          FROM (VALUES $(cat "$dir/acked_values")) AS a(n, position)
          JOIN eventstore.read('fill', 0, 100000) e ON e.position = a.position")" = t ]
ok $? "every acknowledged append is readable at its position, and nothing else is stored"
[ "$(q "SELECT (eventstore.get(('d15cf000-0000-4000-8000-' || lpad('$failed', 12, '0'))::uuid)).id IS NULL")" = t ]
ok $? "the failed append $failed is absent"

# A batch meets the full disk: all or nothing.
before=$(q "SELECT count(*) FROM eventstore.events")
out=$(psql -XAtq -v VERBOSITY=verbose -d "$db" -c "
         SELECT count(*) FROM eventstore.append_batch('fill',
             ARRAY(SELECT public.big_event(i) FROM generate_series(2001, 2040) i))" 2>&1)
grep -q "53100" <<<"$out" &&
	[ "$(q "SELECT count(*) = $before
	          AND NOT EXISTS (SELECT FROM eventstore.events
	                           WHERE (data->>'n')::int BETWEEN 2001 AND 2040)
	          FROM eventstore.events")" = t ]
ok $? "a batch of 40 that meets the full disk fails with 53100 and stores none of its events"

# Space again: the failed event and the batch now append.
mount -o remount,size=64m "$mnt"
ok $? "the tmpfs is enlarged to 64 MB"
pos=$(q "SELECT eventstore.append('fill', public.big_event($failed))" 2>&1)
[[ "$pos" =~ ^[0-9]+$ ]] && [ "$pos" -gt "$(cut -d' ' -f2 "$dir/acked" | sort -n | tail -1)" ]
ok $? "the failed append $failed succeeds now, at position $pos after the last acknowledged one"
[ "$(q "SELECT count(*) FROM eventstore.append_batch('fill',
            ARRAY(SELECT public.big_event(i) FROM generate_series(2001, 2040) i))")" = 40 ]
ok $? "the batch of 40 succeeds now"
total=$((acked + 41))
[ "$(q "SELECT count(*) FROM eventstore.events")" = "$total" ]
ok $? "$total events stored: the acknowledged ones, the retried one and the batch"

# An outside consumer polls everything, each event once.
polled=$dir/polled
: >"$polled"
for _ in $(seq 1 100); do
	rows=$(q "SELECT batch_id, (envelope->'data'->>'n') FROM eventstore.poll('audit', 50)")
	[ -z "$rows" ] && break
	echo "$rows" | cut -d'|' -f2 >>"$polled"
	q "SELECT eventstore.ack('audit', $(echo "$rows" | head -1 | cut -d'|' -f1))" >/dev/null
done
[ "$(wc -l <"$polled")" -eq "$total" ] && [ "$(sort -u "$polled" | wc -l)" -eq "$total" ] &&
	[ "$(q "SELECT lag_events FROM eventstore.consumer_status WHERE name = 'audit'")" = 0 ]
ok $? "the consumer polled all $total events, each once, and has no lag"

exit $((fails > 0))
