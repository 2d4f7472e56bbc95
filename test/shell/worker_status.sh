#!/bin/bash
# workers/eventstore-worker's status page at /, seen by a real browser:
# the daemon (under valgrind where installed) with "http", in the database
# where the dispatcher runs birdwatch's consumers, with three watchers
# registered, an outside consumer it does not drive (a known lag), one
# whose only event is parked (its handler always fails, max_attempts 1),
# one whose last error is HTML, and an outbox with a backlog_query over
# birdwatch.outbox.  Debian's chromium loads the page headless: a
# screenshot (a PNG of the window's size, not blank) and the DOM, whose
# numbers (marked with data- attributes) must equal what SQL says at that
# moment: every consumer's lag_events, parked, attempts and last_error,
# lag_seconds within a few seconds, the dispatcher workers' pids, the
# outbox backlog, birdwatch's user count.  HTML from the database comes
# out as text, never as markup.  A daemon whose role may read nothing
# still renders the page, with a note in each section it cannot fill.
#
# Skips what needs chromium (TAP skip) only when chromium cannot start.
# The daemon must be built already (make -C workers).
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
py=/usr/bin/python3
db=${PGDATABASE:-eventstore_test}
role=status_nobody
echo "1..26"
. test/daemon.sh	# $worker, $tmp, $vg, start, exited, stop, free_port, append

http_port=$(free_port)
base=http://127.0.0.1:$http_port

# chromium: its own profile and cache in $tmp, quiet, bounded in time
browser() {
	timeout 120 chromium --headless --no-sandbox --disable-gpu --no-first-run \
		--user-data-dir="$tmp/chromium" --disable-dev-shm-usage "$@" 2>>"$tmp/chromium.log"
}
chromium_why=""
if ! command -v chromium >/dev/null; then
	chromium_why="chromium is not installed (scripts/install-deps installs it)"
elif ! browser --dump-dom 'data:text/html,<p id="x">started</p>' | grep -q 'started'; then
	chromium_why="chromium cannot start here: $(tail -1 "$tmp/chromium.log")"
fi

#
# The database: birdwatch (its consumers run by the dispatcher), three
# watchers, and consumers with a known state.
#
q "SET client_min_messages = warning;
   DROP EXTENSION IF EXISTS eventstore CASCADE;
   CREATE EXTENSION birdwatch CASCADE;
   SELECT birdwatch.register_user('w' || g || '@example.org', 'Watcher ' || g)
     FROM generate_series(1, 3) g;
   SELECT eventstore.create_topic('t');
   SELECT eventstore.create_topic('tp');
   SELECT eventstore.create_consumer('st_idle', ARRAY['t']);
   SELECT eventstore.create_consumer('st_evil', ARRAY['t']);
   SELECT eventstore.create_consumer('st_park', ARRAY['tp'], max_attempts => 1);
   CREATE SCHEMA app;
   CREATE FUNCTION app.claim(max integer)
   RETURNS TABLE(id uuid, recipient text, subject text, body text, attempt integer)
   LANGUAGE sql AS 'SELECT NULL::uuid, NULL, NULL, NULL, NULL::integer WHERE false';
   CREATE FUNCTION app.sent(id uuid) RETURNS void LANGUAGE sql AS 'SELECT';
   CREATE FUNCTION app.failed(id uuid, error text) RETURNS void LANGUAGE sql AS 'SELECT';
   INSERT INTO birdwatch.outbox (id, user_id, source_event, image_url, rating, created_at)
   SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(),
          'https://birds.example.org/' || g || '.jpg', 4, now() - interval '10 minutes'
     FROM generate_series(1, 3) g;
   DO \$\$ BEGIN
       IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
           CREATE ROLE $role LOGIN PASSWORD 'nobody-secret';
       END IF;
   END \$\$;" >/dev/null || bail "cannot set up the database"
append 7
q "SELECT count(eventstore.append('tp', jsonb_build_object('id', gen_random_uuid(), 'type', 'new',
       'version', '1.0', 'data', '{}'::jsonb,
       'metadata', jsonb_build_object('source', 'test/worker_status', 'time', '2026-11-27T00:00:00Z'))))" >/dev/null
# st_evil: a batch nacked by hand with an error that is HTML
evil='<script>document.title="pwned"</script><b>bold</b> & "quoted" '"'single'"
q "SELECT eventstore.nack('st_evil', (SELECT max(batch_id) FROM eventstore.poll('st_evil', 1)),
                         \$e\$$evil\$e\$)" >/dev/null

cat >"$tmp/fail.sh" <<'SH'
#!/bin/sh
cat >/dev/null
exit 3
SH
chmod 755 "$tmp/fail.sh"
outbox_name='<i>notifier</i> & co'
cat >"$tmp/s.json" <<JSON
{"conninfo": "dbname=$db", "poll_interval_ms": 500,
 "http": {"listen": "127.0.0.1:$http_port"},
 "consumers": [{"name": "st_park", "kind": "outside",
                "handler": {"type": "command", "command": ["$tmp/fail.sh"]}}],
 "outboxes": [{"name": "$outbox_name", "claim": "app.claim", "sent": "app.sent",
               "failed": "app.failed",
               "backlog_query": "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM birdwatch.outbox WHERE sent_at IS NULL",
               "sender": {"type": "smtp", "host": "127.0.0.1", "port": 9,
                          "from": "birds@example.org", "tls": "off"}}]}
JSON
start "$tmp/s.log" "${vg[@]}" "$worker" --config "$tmp/s.json"
pid=$started
wait_until 60 grep -q ' info connected to database' "$tmp/s.log"
ok $? "the daemon connects and serves http on 127.0.0.1:$http_port"
wait_for 60 "SELECT parked = 1 AND lag_events = 0 FROM eventstore.consumer_status WHERE name = 'st_park'"
ok $? "st_park: its one event is parked after one failure"
wait_for 60 "SELECT bool_and(lag_events = 0) FROM eventstore.consumer_status WHERE name LIKE 'birdwatch%'"
ok $? "the dispatcher has run birdwatch's consumers: no lag"
[ "$(curl -sS -m 20 -o "$tmp/page.html" -w '%{http_code} %{content_type}' "$base/")" = "200 text/html; charset=utf-8" ]
ok $? "GET /: 200, text/html; charset=utf-8 ($(wc -c <"$tmp/page.html") bytes)"
! grep -qi '<script' "$tmp/page.html" && grep -q '&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot; &#39;single&#39;' "$tmp/page.html" &&
	grep -q '&lt;i&gt;notifier&lt;/i&gt; &amp; co' "$tmp/page.html"
ok $? "values from the database and the configuration are HTML-escaped (no <script> in the page)"

# what the DOM says, as JSON: consumers, outboxes, overview, dispatchers, charts
cat >"$tmp/dom.py" <<'PY'
import json, sys
from html.parser import HTMLParser

class Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out = {"consumers": {}, "outboxes": {}, "overview": {}, "dispatchers": [],
                    "charts": {}, "scripts": 0, "notes": [], "bold": 0}
        self.stack = []      # (tag, attrs, text parts)
        self.row = None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.out["scripts"] += 1
        if tag == "b" and a.get("id") is None:
            self.out["bold"] += 1
        if tag == "tr":
            if "data-consumer" in a:
                self.row = ("consumers", a["data-consumer"])
            elif "data-outbox" in a:
                self.row = ("outboxes", a["data-outbox"])
            elif "data-pid" in a:
                self.out["dispatchers"].append(a["data-pid"])
                self.row = None
            else:
                self.row = None
        if tag == "figcaption" and self.row and self.row[0] == "consumers":
            self.out["charts"][self.row[1]] = {"samples": int(a["data-samples"]),
                                               "last": int(a["data-last"])}
        if tag in ("svg", "polyline") and self.row and self.row[0] == "consumers":
            self.out["charts"].setdefault("_" + tag, 0)
            self.out["charts"]["_" + tag] += 1
        self.stack.append((tag, a, []))
    def handle_endtag(self, tag):
        while self.stack:
            t, a, text = self.stack.pop()
            s = "".join(text)
            if self.stack:
                self.stack[-1][2].append(s)
            if t == "td" and "data-field" in a and self.row:
                v = None if "data-null" in a else s
                self.out[self.row[0]].setdefault(self.row[1], {})[a["data-field"]] = v
            if t == "td" and "data-overview" in a and not "<" in s:
                self.out["overview"][a["data-overview"]] = s
            if t == "p" and "note" in a.get("class", ""):
                self.out["notes"].append(s)
            if t == tag:
                break
    def handle_data(self, data):
        if self.stack:
            self.stack[-1][2].append(data)

p = Page()
p.feed(open(sys.argv[1], encoding="utf-8").read())
json.dump(p.out, sys.stdout)
PY
dom() { "$py" -c "import json,sys; d=json.load(open('$tmp/dom.json')); print($1)"; }

# sql_vs_dom: every consumer's fields in the DOM equal consumer_status now
cat >"$tmp/compare.py" <<'PY'
import json, sys
dom = json.load(open(sys.argv[1]))["consumers"]
sql = [l.split("\t") for l in open(sys.argv[2]).read().splitlines()]
problems = []
names = [r[0] for r in sql]
if sorted(dom) != sorted(names):
    problems.append("consumers: DOM %s, SQL %s" % (sorted(dom), sorted(names)))
for name, lag, lag_s, parked, attempts, last_error in sql:
    d = dom.get(name, {})
    want = {"lag_events": lag, "parked": parked, "attempts": attempts,
            "last_error": None if last_error == "\\N" else last_error.replace("\\n", "\n")}
    for k, v in want.items():
        if d.get(k) != v:
            problems.append("%s.%s: DOM %r, SQL %r" % (name, k, d.get(k), v))
    if abs(float(d.get("lag_seconds") or "nan") - float(lag_s)) > 5:
        problems.append("%s.lag_seconds: DOM %r, SQL %r" % (name, d.get("lag_seconds"), lag_s))
for p in problems:
    print("# " + p)
sys.exit(1 if problems else 0)
PY

if [ -n "$chromium_why" ]; then
	for what in "screenshot: a PNG of 1280x2000" "the screenshot is not blank" \
		"--dump-dom: the page as the browser built it" \
		"every consumer's lag_events, parked, attempts, last_error (and lag_seconds within 5 s) equal consumer_status" \
		"st_idle: lag_events 7, parked 0" "st_park: parked 1, its last_error the handler's" \
		"st_evil: last_error, HTML in the database, is text in the DOM; no script ran" \
		"the dispatcher workers: the pids of pg_stat_activity" \
		"the outbox (its name escaped): backlog 3 from backlog_query" \
		"the outbox's oldest unsent age, about 600 s" "birdwatch: users 3, as user_count()" \
		"birdwatch's overview: its consumers' lag as a table" \
		"each consumer has its lag chart (an SVG line), st_idle's last sample 7"; do
		skip "$what" "$chromium_why"
	done
else
	browser --screenshot="$tmp/page.png" --window-size=1280,2000 "$base/" >/dev/null
	"$py" - "$tmp/page.png" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
w, h = struct.unpack(">II", data[16:24])
assert (w, h) == (1280, 2000), (w, h)
PY
	ok $? "screenshot: a PNG of 1280x2000 ($(stat -c %s "$tmp/page.png" 2>/dev/null) bytes)"
	[ "$(stat -c %s "$tmp/page.png" 2>/dev/null || echo 0)" -gt 20000 ]
	ok $? "the screenshot is not blank (more than 20 kB of PNG)"

	# the DOM and SQL, as close together in time as can be
	browser --dump-dom "$base/" >"$tmp/dom.html"
	q "SELECT name, lag_events, lag_seconds, parked, attempts, coalesce(replace(last_error, E'\n', '\\n'), '\\N')
	     FROM eventstore.consumer_status ORDER BY name" | tr '|' '\t' >"$tmp/consumers.sql"
	sql_backlog=$(q "SELECT count(*) || ' ' || round(extract(epoch FROM now() - min(created_at))) FROM birdwatch.outbox WHERE sent_at IS NULL")
	sql_pids=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type IN ('eventstore dispatcher', 'eventstore launcher') ORDER BY pid" | tr '\n' ' ')
	sql_users=$(q "SELECT birdwatch.user_count()")
	"$py" "$tmp/dom.py" "$tmp/dom.html" >"$tmp/dom.json"
	ok $? "--dump-dom: the page as the browser built it ($(wc -c <"$tmp/dom.html") bytes)"

	"$py" "$tmp/compare.py" "$tmp/dom.json" "$tmp/consumers.sql"
	ok $? "every consumer's lag_events, parked, attempts, last_error (and lag_seconds within 5 s) equal consumer_status ($(wc -l <"$tmp/consumers.sql") consumers)"
	[ "$(dom "d['consumers']['st_idle']['lag_events'], d['consumers']['st_idle']['parked']")" = "7 0" ]
	ok $? "st_idle: lag_events 7, parked 0"
	[ "$(dom "d['consumers']['st_park']['parked']")" = 1 ] &&
		[ "$(dom "d['consumers']['st_park']['last_error']")" = "$(q "SELECT last_error FROM eventstore.consumer_status WHERE name = 'st_park'")" ] &&
		dom "d['consumers']['st_park']['last_error']" | grep -q 'command exited with status 3'
	ok $? "st_park: parked 1, its last_error the handler's ($(dom "d['consumers']['st_park']['last_error']"))"
	[ "$(dom "d['consumers']['st_evil']['last_error']")" = "$evil" ] &&
		[ "$(dom "d['scripts'], d['bold']")" = "0 0" ] &&
		grep -q '<title>eventstore-worker status</title>' "$tmp/dom.html"
	ok $? "st_evil: last_error, HTML in the database, is text in the DOM; no script ran"
	[ "$(dom "' '.join(sorted(d['dispatchers'], key=int))") " = "$sql_pids" ] && [ -n "$sql_pids" ]
	ok $? "the dispatcher workers: the pids of pg_stat_activity ($sql_pids)"
	[ "$(dom "d['outboxes']['$outbox_name']['backlog']")" = "${sql_backlog% *}" ] &&
		[ "$(dom "d['outboxes']['$outbox_name']['backlog']")" = 3 ]
	ok $? "the outbox (its name escaped): backlog 3 from backlog_query"
	"$py" -c "import sys; sys.exit(0 if abs(float('$(dom "d['outboxes']['$outbox_name']['oldest_seconds']")') - ${sql_backlog#* }) <= 5 else 1)"
	ok $? "the outbox's oldest unsent age, about 600 s ($(dom "d['outboxes']['$outbox_name']['oldest_seconds']"), SQL ${sql_backlog#* })"
	[ "$(dom "d['overview']['users']")" = "$sql_users" ] && [ "$sql_users" = 3 ]
	ok $? "birdwatch: users 3, as user_count()"
	[ "$(dom "sorted(k for k in d['overview'] if k.startswith('consumers[') and k.endswith('].name'))" | tr -d "[]',")" != "" ] &&
		[ "$(dom "[v for k, v in d['overview'].items() if k.startswith('consumers[') and k.endswith('].lag_events')]")" != "[]" ]
	ok $? "birdwatch's overview: its consumers' lag as a table"
	[ "$(dom "d['charts']['st_idle']['last']")" = 7 ] &&
		[ "$(dom "min(v['samples'] for k, v in d['charts'].items() if not k.startswith('_'))")" -ge 1 ] &&
		[ "$(dom "d['charts']['_svg'] == d['charts']['_polyline'] == len(d['consumers'])")" = True ]
	ok $? "each consumer has its lag chart (an SVG line), st_idle's last sample 7"
fi

# HEAD, and a second request while the first is not read: both served
[ "$(curl -sS -m 20 -I -o /dev/null -w '%{http_code}' "$base/")" = 200 ]
ok $? "HEAD /: 200"
grep -q '<h2>Dispatcher workers</h2>' "$tmp/page.html" && grep -q '<h2>Outboxes</h2>' "$tmp/page.html" &&
	grep -q '<h2>birdwatch</h2>' "$tmp/page.html" && grep -q 'id="consumers"' "$tmp/page.html"
ok $? "the page has its four sections"
stop_checked "$pid" "$tmp/s.log" "after rendering pages"

#
# A role that may read nothing: the page still renders, with notes.
#
cat >"$tmp/nobody.json" <<JSON
{"conninfo": "dbname=$db user=$role password=nobody-secret host=${PGHOST:-localhost} port=${PGPORT:-5432}",
 "http": {"listen": "127.0.0.1:$http_port"},
 "outboxes": [{"name": "nobody", "claim": "app.claim", "sent": "app.sent", "failed": "app.failed",
               "backlog_query": "SELECT count(*), 0 FROM birdwatch.outbox WHERE sent_at IS NULL",
               "sender": {"type": "smtp", "host": "127.0.0.1", "port": 9,
                          "from": "birds@example.org", "tls": "off"}}]}
JSON
start "$tmp/nobody.log" "$worker" --config "$tmp/nobody.json"
pid=$started
wait_until 60 grep -q ' info connected to database' "$tmp/nobody.log"
ok $? "a daemon whose role may read nothing connects"
[ "$(curl -sS -m 20 -o "$tmp/nobody.html" -w '%{http_code}' "$base/")" = 200 ]
ok $? "its page: 200 all the same"
grep -q 'class="note">eventstore.consumer_status cannot be read: <span class="err">ERROR:  permission denied' "$tmp/nobody.html"
ok $? "the consumers section: a note with the server's error (permission denied)"
grep -q 'class="note">birdwatch.admin_overview() failed: <span class="err">ERROR:  permission denied' "$tmp/nobody.html"
ok $? "the birdwatch section: a note (permission denied), not a broken page"
grep -q 'backlog_query failed: <span class="err">ERROR:  permission denied' "$tmp/nobody.html" &&
	grep -q '</body></html>' "$tmp/nobody.html"
ok $? "the outbox row: a note; the page is whole"
stop "$pid" >/dev/null

q "SET client_min_messages = warning; DROP EXTENSION IF EXISTS birdwatch CASCADE;
   DROP EXTENSION IF EXISTS eventstore CASCADE; DROP SCHEMA IF EXISTS app CASCADE;
   DROP ROLE IF EXISTS $role" >/dev/null 2>&1
exit $((fails > 0))
