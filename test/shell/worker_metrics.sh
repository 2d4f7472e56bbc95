#!/bin/bash
# workers/eventstore-worker's HTTP endpoint, /metrics: the daemon (under
# valgrind where installed) with "http" on a loopback port drives two
# outside consumers over 100 appended events, one whose handler never fails
# and one whose handler fails once on four of them (the batch nacked, then
# redelivered and acked), and an
# outbox whose nine rows are sent to a real SMTP server (six), refused by
# it (two, 550) or refused by the daemon (one, a line break in the
# recipient).  The figures scraped with curl must equal what was done, as
# the handler, the SMTP sink and the database saw it; the text must pass a
# strict reader of the Prometheus text format 0.0.4 written here (HELP and
# TYPE for every metric, sample syntax, label escaping, histogram buckets
# cumulative up to +Inf = _count).  A lost connection counts as a
# reconnect; unknown paths get 404, other methods 405; a non-loopback
# address is refused unless allow_remote.
#
# The daemon must be built already (make -C workers).
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
py=/usr/bin/python3
main_db=${PGDATABASE:-eventstore_test}
db=worker_metrics	# q's
echo "1..34"
. test/daemon.sh	# $worker, $tmp, $vg, start, exited, stop, start_sink

if ! "$py" -c 'import aiosmtpd' 2>/dev/null; then
	echo "Bail out! $py has no aiosmtpd (scripts/install-deps installs python3-aiosmtpd)"
	exit 1
fi
command -v curl >/dev/null || bail "curl is not installed"
maildir=$tmp/mail
mkdir "$maildir"
port=$(free_port)
start_sink || bail "the SMTP sink does not listen on $port"
http_port=$(free_port)
base=http://127.0.0.1:$http_port

# The strict reader: "check FILE" validates the whole text (exit 1 and a
# diagnostic at the first fault); "value FILE NAME [LABEL=VALUE ...]" prints
# the value of the one sample with exactly these labels.
cat >"$tmp/prom.py" <<'PY'
import math, re, sys

NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*'
VALUE = r'(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)'

def labels(text):
    """{a="x",b="y"} (without the braces) into a dict, escapes decoded."""
    out, i = {}, 0
    while i < len(text):
        m = re.compile(LABEL + '="').match(text, i)
        if not m:
            raise ValueError("bad label at %r" % text[i:])
        key, i, val = m.group()[:-2], m.end(), []
        while True:
            if i >= len(text):
                raise ValueError("unterminated label value")
            c = text[i]
            if c == '"':
                i += 1
                break
            if c == '\\':
                e = text[i + 1:i + 2]
                if e not in ('\\', '"', 'n'):
                    raise ValueError("bad escape \\%s" % e)
                val.append('\n' if e == 'n' else e)
                i += 2
            elif c == '\n':
                raise ValueError("raw newline in a label value")
            else:
                val.append(c)
                i += 1
        if key in out:
            raise ValueError("label %s twice" % key)
        out[key] = ''.join(val)
        if i < len(text):
            if text[i] != ',':
                raise ValueError("labels not separated by a comma")
            i += 1
    return out

def parse(path):
    data = open(path, 'rb').read().decode('utf-8')
    if not data.endswith('\n'):
        raise ValueError("the text does not end with a newline")
    helps, types, samples, order = {}, {}, [], []
    for n, line in enumerate(data.split('\n')[:-1], 1):
        try:
            if line.startswith('# HELP '):
                m = re.fullmatch('# HELP (%s) (.*)' % NAME, line)
                if not m or m.group(1) in helps:
                    raise ValueError("bad or repeated HELP")
                helps[m.group(1)] = m.group(2)
                continue
            if line.startswith('# TYPE '):
                m = re.fullmatch('# TYPE (%s) (counter|gauge|histogram|summary|untyped)' % NAME, line)
                if not m or m.group(1) in types:
                    raise ValueError("bad or repeated TYPE")
                if any(s[0] == m.group(1) for s in samples):
                    raise ValueError("TYPE after the metric's samples")
                types[m.group(1)] = m.group(2)
                order.append(m.group(1))
                continue
            if line.startswith('#') or line == '':
                raise ValueError("a comment or blank line the daemon should not write")
            m = re.fullmatch(r'(%s)(?:\{(.*)\})? (%s)' % (NAME, VALUE), line)
            if not m:
                raise ValueError("not 'name{labels} value'")
            samples.append((m.group(1), labels(m.group(2) or ''), float(m.group(3))))
        except ValueError as e:
            raise ValueError("line %d: %s: %r" % (n, e, line))
    return helps, types, samples

def family(name, types):
    if name in types:
        return name
    for suffix in ('_bucket', '_sum', '_count'):
        base = name[:-len(suffix)]
        if name.endswith(suffix) and types.get(base) == 'histogram':
            return base
    return None

def check(path):
    helps, types, samples = parse(path)
    seen = set()
    for name, lab, value in samples:
        fam = family(name, types)
        if fam is None:
            raise ValueError("sample %s without a TYPE" % name)
        if fam not in helps:
            raise ValueError("metric %s without a HELP" % fam)
        key = (name, tuple(sorted(lab.items())))
        if key in seen:
            raise ValueError("series %r twice" % (key,))
        seen.add(key)
        if types[fam] == 'counter' and (not name.endswith('_total') or value < 0 or value != int(value)):
            raise ValueError("counter %s: not _total, or not a count" % name)
    for fam, t in types.items():
        if fam not in helps:
            raise ValueError("metric %s without a HELP" % fam)
        if t != 'histogram':
            continue
        groups = {}
        for name, lab, value in samples:
            if family(name, types) == fam:
                rest = tuple(sorted((k, v) for k, v in lab.items() if k != 'le'))
                groups.setdefault(rest, {'buckets': [], 'sum': None, 'count': None})
                g = groups[rest]
                if name == fam + '_bucket':
                    g['buckets'].append((float(lab['le']), value))
                elif name == fam + '_sum':
                    g['sum'] = value
                elif name == fam + '_count':
                    g['count'] = value
                else:
                    raise ValueError("%s: a sample that is no bucket, sum or count" % name)
        for rest, g in groups.items():
            b = g['buckets']
            if not b or b[-1][0] != math.inf:
                raise ValueError("%s%r: buckets do not end in +Inf" % (fam, rest))
            if [x for x, _ in b] != sorted(x for x, _ in b):
                raise ValueError("%s%r: buckets out of order" % (fam, rest))
            if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
                raise ValueError("%s%r: buckets not cumulative" % (fam, rest))
            if g['count'] is None or g['sum'] is None or b[-1][1] != g['count']:
                raise ValueError("%s%r: +Inf bucket differs from _count, or no _sum" % (fam, rest))
    return len(types), len(samples)

if sys.argv[1] == 'check':
    try:
        print("%d metrics, %d samples" % check(sys.argv[2]))
    except ValueError as e:
        sys.exit("# " + str(e))
else:
    want = dict(a.split('=', 1) for a in sys.argv[4:])
    want = {k: v.encode().decode('unicode_escape') for k, v in want.items()}
    found = [v for n, l, v in parse(sys.argv[2])[2] if n == sys.argv[3] and l == want]
    if len(found) != 1:
        sys.exit("# %d samples %s%r" % (len(found), sys.argv[3], want))
    v = found[0]
    print(int(v) if v == int(v) else v)
PY
scrape() { curl -sS -m 10 -o "$tmp/metrics.txt" "$base/metrics"; }
metric() { "$py" "$tmp/prom.py" value "$tmp/metrics.txt" "$@"; }

#
# The database: an outside consumer, and an outbox.
#
fresh_db "$db" "SELECT eventstore.create_consumer('mx', ARRAY['t'], batch_size => 10);
                SELECT eventstore.create_consumer('clean', ARRAY['t']);
                ALTER DATABASE $db SET eventstore.retry_delay = '100ms'" ||
	bail "cannot make the database $db"

# The handler: fails the first delivery of every event whose n is a
# multiple of 25; records each success (event id, batch id) and failure.
cat >"$tmp/handler.sh" <<'SH'
#!/bin/sh
line=$(cat)
n=$(printf '%s' "$line" | sed -n 's/.*"data": {"n": \([0-9]*\)}.*/\1/p')
if [ "$EVENTSTORE_ATTEMPT" = 1 ] && [ $((n % 25)) -eq 0 ]; then
	printf '%s %s\n' "$EVENTSTORE_EVENT_ID" "$EVENTSTORE_BATCH_ID" >>"$1.failed"
	exit 1
fi
printf '%s %s\n' "$EVENTSTORE_EVENT_ID" "$EVENTSTORE_BATCH_ID" >>"$1.ok"
SH
# The other consumer's handler never fails.
cat >"$tmp/clean.sh" <<'SH'
#!/bin/sh
cat >/dev/null
printf '%s\n' "$EVENTSTORE_EVENT_ID" >>"$1.ok"
SH
chmod 755 "$tmp/handler.sh" "$tmp/clean.sh"

# the outbox's name, with a quote, a backslash and a newline for the labels
outbox_json='mail \"box\" \\ x\ny'
outbox_label='mail "box" \\ x\ny'
# config FILE [HTTP-OBJECT]
config() {
	local http_obj=${2:-"{\"listen\": \"127.0.0.1:$http_port\"}"}
	cat >"$1" <<JSON
{"conninfo": "dbname=$db", "batch_size": 10, "poll_interval_ms": 200,
 "reconnect_min_ms": 100, "reconnect_max_ms": 500,
 "http": $http_obj,
 "consumers": [{"name": "mx", "kind": "outside",
                "handler": {"type": "command", "command": ["$tmp/handler.sh", "$tmp/mx"]}},
               {"name": "clean", "kind": "outside",
                "handler": {"type": "command", "command": ["$tmp/clean.sh", "$tmp/clean"]}}],
 "outboxes": [{"name": "$outbox_json", "claim": "app.claim", "sent": "app.sent",
               "failed": "app.failed", "batch_size": 20,
               "sender": {"type": "smtp", "host": "127.0.0.1", "port": $port,
                          "from": "birds@example.org", "tls": "off", "timeout_ms": 5000}}]}
JSON
}
config "$tmp/m.json"

start "$tmp/m.log" "${vg[@]}" "$worker" --config "$tmp/m.json"
pid=$started
wait_until 60 grep -q " info http: listening on 127.0.0.1:$http_port" "$tmp/m.log"
ok $? "the daemon listens on 127.0.0.1:$http_port"
wait_until 30 grep -q ' info connected to database' "$tmp/m.log" && scrape
ok $? "GET /metrics answers"
"$py" "$tmp/prom.py" check "$tmp/metrics.txt" >"$tmp/check.out"
ok $? "before any work: the text passes the strict reader ($(cat "$tmp/check.out"))"
[ "$(metric eventstore_worker_events_handled_total consumer=mx)" = 0 ] &&
	[ "$(metric eventstore_worker_messages_sent_total "outbox=$outbox_label")" = 0 ]
ok $? "configured consumers and outboxes have their series at 0 from the start"

append 100
q "INSERT INTO app.outbox (recipient, subject, body)
   SELECT 'watcher' || g || '@example.net', 'Sighting ' || g, 'A wren.' FROM generate_series(1, 6) g;
   INSERT INTO app.outbox (recipient, subject, body) VALUES
   ('reject1@example.net', 'No', 'x'), ('reject2@example.net', 'No', 'x'),
   (E'victim@example.org\r\nBcc: spam@example.org', 'Hi', 'x')" >/dev/null

caught_up() {
	[ "$(q "SELECT bool_and(lag_events = 0 AND attempts = 0) FROM eventstore.consumer_status")" = t ] &&
		[ "$(q "SELECT count(*) FROM app.outbox WHERE sent_at IS NOT NULL OR last_error IS NOT NULL")" -eq 9 ]
}
wait_until 120 caught_up
ok $? "the daemon handles the 100 events (four failing once) and the nine rows"
sleep 0.5
scrape
"$py" "$tmp/prom.py" check "$tmp/metrics.txt" >"$tmp/check.out"
ok $? "after the work: the text passes the strict reader ($(cat "$tmp/check.out"))"

handled_ok=$(wc -l <"$tmp/mx.ok")
handled_distinct=$(cut -d' ' -f1 "$tmp/mx.ok" | sort -u | wc -l)
failed=$(wc -l <"$tmp/mx.failed")
batches=$(cut -d' ' -f2 "$tmp/mx.ok" | sort -u | wc -l)
diag "handler: $handled_ok successes ($handled_distinct distinct events), $failed failures, $batches batches"
[ "$handled_distinct" -eq 100 ] && [ "$failed" -eq 4 ]
ok $? "the handler saw each of the 100 events succeed, and 4 failures"
[ "$(metric eventstore_worker_events_handled_total consumer=clean)" = 100 ] &&
	[ "$(wc -l <"$tmp/clean.ok")" -eq 100 ] &&
	[ "$(metric eventstore_worker_handler_failures_total consumer=clean)" = 0 ] &&
	[ "$(metric eventstore_worker_consumer_batches_total consumer=clean result=acked)" = 10 ]
ok $? "the consumer whose handler never fails: events_handled_total 100, 10 batches acked, no failure"
[ "$(metric eventstore_worker_events_handled_total consumer=mx)" = "$handled_ok" ]
ok $? "events_handled_total{consumer=\"mx\"} = $handled_ok, the handler's successes (100 events, some handled again after a nack)"
[ "$(metric eventstore_worker_handler_failures_total consumer=mx)" = 4 ]
ok $? "handler_failures_total{consumer=\"mx\"} = 4"
[ "$(metric eventstore_worker_consumer_batches_total consumer=mx result=nacked)" = 4 ]
ok $? "consumer_batches_total{result=\"nacked\"} = 4"
[ "$(metric eventstore_worker_consumer_batches_total consumer=mx result=acked)" = "$batches" ]
ok $? "consumer_batches_total{result=\"acked\"} = $batches, the batch ids the handler saw"
[ "$(metric eventstore_worker_batch_duration_seconds_count kind=consumer name=mx)" = $((batches + 4)) ] &&
	[ "$(metric eventstore_worker_batch_duration_seconds_bucket kind=consumer name=mx le=+Inf)" = $((batches + 4)) ]
ok $? "batch_duration_seconds{kind=\"consumer\"}: one observation per batch acked or nacked ($((batches + 4)))"

mails=$(find "$maildir" -name '*.eml' | wc -l)
[ "$mails" -eq 6 ] && [ "$(metric eventstore_worker_messages_sent_total "outbox=$outbox_label")" = "$mails" ]
ok $? "messages_sent_total = $mails, the mails the SMTP sink received (the label escaped: quote, backslash, newline)"
[ "$(metric eventstore_worker_messages_claimed_total "outbox=$outbox_label")" = 9 ]
ok $? "messages_claimed_total = 9"
[ "$(metric eventstore_worker_messages_refused_total "outbox=$outbox_label")" = 3 ] &&
	[ "$(q "SELECT count(*) FROM app.outbox WHERE last_error LIKE '%(server replied 550)'")" -eq 2 ] &&
	[ "$(q "SELECT count(*) FROM app.outbox WHERE last_error LIKE 'permanent: %'")" -eq 1 ]
ok $? "messages_refused_total = 3: two refused by the server (550), one by the daemon (permanent:)"
[ "$(metric eventstore_worker_messages_failed_total "outbox=$outbox_label")" = 0 ]
ok $? "messages_failed_total = 0 (nothing failed that may succeed later)"
[ "$(metric eventstore_worker_batch_duration_seconds_count kind=outbox "name=$outbox_label")" = 1 ]
ok $? "batch_duration_seconds{kind=\"outbox\"}: one claim with rows"
[ "$(metric eventstore_worker_up)" = 1 ] && [ "$(metric eventstore_worker_connected)" = 1 ] &&
	[ "$(metric eventstore_worker_reconnects_total)" = 0 ]
ok $? "up 1, connected 1, reconnects_total 0"
start_time=$(metric eventstore_worker_start_time_seconds)
"$py" -c "import sys, time; sys.exit(0 if 0 <= time.time() - $start_time < 600 else 1)"
ok $? "start_time_seconds is the start, in Unix seconds ($start_time)"

curl -sS -m 10 -D "$tmp/h.txt" -o /dev/null "$base/metrics" &&
	grep -qi '^content-type: text/plain; version=0.0.4; charset=utf-8' "$tmp/h.txt"
ok $? "Content-Type: text/plain; version=0.0.4; charset=utf-8"
[ "$(curl -sS -m 10 -o /dev/null -w '%{http_code}' "$base/nope")" = 404 ]
ok $? "GET /nope: 404"
[ "$(curl -sS -m 10 -o /dev/null -D "$tmp/h405.txt" -w '%{http_code}' -X POST -d x=1 "$base/metrics")" = 405 ] &&
	grep -qi '^allow: GET, HEAD' "$tmp/h405.txt"
ok $? "POST /metrics: 405 with Allow: GET, HEAD"
[ "$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X DELETE "$base/")" = 405 ]
ok $? "DELETE /: 405"

# the connection killed: counted as a reconnect, connected again
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
    WHERE datname = '$db' AND application_name = 'eventstore-worker'" >/dev/null
reconnected() { scrape && [ "$(metric eventstore_worker_reconnects_total)" = 1 ] &&
	[ "$(metric eventstore_worker_connected)" = 1 ]; }
wait_until 30 reconnected
ok $? "a terminated connection: reconnects_total 1, connected 1 again"
append 5
wait_until 30 eval '[ "$(cut -d" " -f1 "$tmp/mx.ok" | sort -u | wc -l)" -eq 105 ]' && sleep 0.5 && scrape &&
	[ "$(metric eventstore_worker_events_handled_total consumer=mx)" = $((handled_ok + 5)) ]
ok $? "5 more events after the reconnect: events_handled_total $((handled_ok + 5))"
kill -HUP "$pid"
wait_until 20 grep -q 'info configuration reloaded' "$tmp/m.log" && scrape &&
	[ "$(metric eventstore_worker_events_handled_total consumer=mx)" = $((handled_ok + 5)) ]
ok $? "SIGHUP with the same http settings: still served, counts kept"
old_base=$base
http_port=$(free_port)
base=http://127.0.0.1:$http_port
config "$tmp/m.json"
kill -HUP "$pid"
wait_until 20 grep -q " info http: listening on 127.0.0.1:$http_port" "$tmp/m.log" && scrape &&
	[ "$(metric eventstore_worker_events_handled_total consumer=mx)" = $((handled_ok + 5)) ] &&
	! curl -s -m 5 -o /dev/null "$old_base/metrics"
ok $? "SIGHUP with another listen address: served there (counts kept), no longer on the old one"

stop_checked "$pid" "$tmp/m.log" "after serving requests"
! port_open "$http_port"
ok $? "the port is closed after the stop"

#
# The address.
#
config "$tmp/remote.json" '{"listen": "0.0.0.0:9188"}'
"$worker" --config "$tmp/remote.json" --once >"$tmp/remote.log" 2>&1
[ $? -eq 2 ] && grep -q 'error config .*remote.json: http.listen: 0.0.0.0:9188 is not a loopback address' "$tmp/remote.log"
ok $? "listen 0.0.0.0: refused (exit 2, naming http.listen) without allow_remote"
config "$tmp/remote6.json" '{"listen": "[2001:db8::1]:9188"}'
"$worker" --config "$tmp/remote6.json" --once >"$tmp/remote.log" 2>&1
[ $? -eq 2 ] && grep -q 'http.listen: \[2001:db8::1\]:9188 is not a loopback address' "$tmp/remote.log"
ok $? "listen [2001:db8::1]: refused too"
config "$tmp/allowed.json" '{"listen": "0.0.0.0:9188", "allow_remote": true}'
"$worker" --config "$tmp/allowed.json" --once >"$tmp/allowed.log" 2>&1
ok $? "with allow_remote true the configuration is accepted (--once starts no server)"
config "$tmp/name.json" '{"listen": "localhost:9188"}'
"$worker" --config "$tmp/name.json" --once >"$tmp/name.log" 2>&1
[ $? -eq 2 ] && grep -q 'http.listen: must be "IPV4:PORT" or "\[IPV6\]:PORT"' "$tmp/name.log"
ok $? "a host name is refused: an address is needed"

stop "$sink" >/dev/null 2>&1
psql -XAtq -d "$main_db" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
exit $((fails > 0))
