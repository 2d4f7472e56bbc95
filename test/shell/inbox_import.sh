#!/bin/bash
# An import of a million events by COPY into eventstore.inbox, as a user
# would run one: psql reading envelopes on its standard input.  While it
# runs, another session follows it in pg_stat_progress_copy and the
# importing backend's private memory is read from /proc: it must stay
# flat (the rows are appended in groups, nothing of them kept).  Then the
# events are there, in input order; the same import run again with 1000
# more events stores only those; and one bad line at the end of a large
# import leaves nothing of it.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
db=eventstore_inbox_import
total=${INBOX_IMPORT_EVENTS:-1000000}
tmp=$(mktemp -d)
echo "1..6"

finish() {
	dropdb --if-exists "$db" >/dev/null 2>&1
	rm -rf "$tmp"
}
trap finish EXIT

dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db" && q "SET client_min_messages = warning; CREATE EXTENSION eventstore;
                    SELECT eventstore.create_topic('imported')" >/dev/null ||
	bail "cannot create database $db"

# envelopes FROM TO [BAD]: the import lines of events FROM..TO (ids made of
# the number); BAD: the last one's version is "1", which is invalid
envelopes() {
	awk -v from="$1" -v to="$2" -v bad="${3:-}" 'BEGIN {
		for (i = from; i <= to; i++)
			printf "imported\t{\"id\": \"a1b2c3d4-0000-4000-8000-%012x\", \"type\": \"observed\", \"version\": \"%s\", \"data\": {\"n\": %d, \"bird\": {\"species\": \"Turdus merula\", \"count\": 3}}, \"metadata\": {\"source\": \"import/test\", \"time\": \"2026-01-01T00:00:00Z\"}}\n",
				i, (bad != "" && i == to) ? "1" : "1.0", i
	}'
}

import() {	# import FROM TO [BAD]: COPY's output in $tmp/copy.out
	envelopes "$@" | psql -X -d "$db" -c "COPY eventstore.inbox (topic, envelope) FROM STDIN" \
		>"$tmp/copy.out" 2>&1
}

# The import, followed from another session every 0.2 s.
import 1 "$total" &
importer=$!
: >"$tmp/progress"
while kill -0 "$importer" 2>/dev/null; do
	line=$(q "SELECT p.pid || ' ' || p.tuples_processed FROM pg_stat_progress_copy p
	           WHERE p.relid = 'eventstore.inbox'::regclass" 2>/dev/null)
	if [ -n "$line" ]; then
		set -- $line
		echo "$2 $(awk '/^RssAnon/ { print $2 }' "/proc/$1/status" 2>/dev/null)" >>"$tmp/progress"
	fi
	sleep 0.2
done
wait "$importer"
status=$?
grep -qx "COPY $total" "$tmp/copy.out" && [ "$status" -eq 0 ] &&
	[ "$(q "SELECT count(*) FROM eventstore.events")" = "$total" ]
ok $? "one COPY of $total events into the inbox: $(tail -1 "$tmp/copy.out"), $(q "SELECT count(*) FROM eventstore.events") stored"

# progress: several readings, growing, below the total
readings=$(awk '$1 > 0 && $1 < total' total="$total" "$tmp/progress" | wc -l)
growing=$(awk 'NR > 1 && $1 < prev { bad = 1 } { prev = $1 } END { print bad ? "no" : "yes" }' "$tmp/progress")
[ "$readings" -ge 3 ] && [ "$growing" = yes ]
ok $? "pg_stat_progress_copy followed it: $readings readings between 0 and $total rows, growing: $growing"

# memory: what the backend holds privately after the first readings and at
# the end differ by less than 64 MB (a row kept per event is 600 MB here)
first_kb=$(awk '$1 > 0 && $2 != "" { print $2; exit }' "$tmp/progress")
max_kb=$(awk '$2 != "" && $2 > m { m = $2 } END { print m + 0 }' "$tmp/progress")
[ -n "$first_kb" ] && [ $((max_kb - first_kb)) -lt 65536 ]
ok $? "the importing backend's private memory stays flat: ${first_kb:-?} kB at first, at most $max_kb kB"

[ "$(q "SELECT bool_and(n = rn) FROM (SELECT (data->>'n')::bigint AS n, row_number() OVER (ORDER BY position) AS rn
                                          FROM eventstore.events) e")" = t ]
ok $? "the events are stored in input order"

# run again with 1000 more: only those are stored
import 1 $((total + 1000))
grep -qx "COPY $((total + 1000))" "$tmp/copy.out" &&
	[ "$(q "SELECT count(*) FROM eventstore.events")" = $((total + 1000)) ]
ok $? "the same import again with 1000 more events: $(tail -1 "$tmp/copy.out"), $(q "SELECT count(*) FROM eventstore.events") stored (the rest discarded as duplicates)"

# a bad last line: nothing of a 100,000-event import is stored
import $((total + 1001)) $((total + 100000)) bad
grep -q 'DETAIL:  Event 99000 of the batch: field "version"' "$tmp/copy.out" &&
	grep -q "COPY inbox, line 99000" "$tmp/copy.out" &&
	[ "$(q "SELECT count(*) FROM eventstore.events")" = $((total + 1000)) ]
ok $? "an import whose last line is bad stores nothing: $(grep -m1 DETAIL "$tmp/copy.out")"

exit $((fails > 0))
