#!/bin/bash
# workers/eventstore-worker's log formats: "log_format" json and logfmt.
# The daemon drives an outside consumer whose handler succeeds, one whose
# handler fails, one with a name full of quotes, backslashes and a newline
# (its poll fails with a server error quoting the name),
# and an outbox that sends one message through a real SMTP server and
# refuses another.  Every line the daemon writes on stderr must parse: as a
# JSON object (/usr/bin/python3's json module) or with a strict logfmt
# reader written here; and the records carry the consumer, outbox, batch id
# (the one the handler saw in EVENTSTORE_BATCH_ID), the batch's member and
# error text as fields of their own, exactly.  A SIGHUP switches a running daemon from text to
# json; an unknown format is refused.
#
# The daemon must be built already (make -C workers).
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
py=/usr/bin/python3
main_db=${PGDATABASE:-eventstore_test}
db=log_format	# q's
echo "1..26"
. test/daemon.sh	# $worker, $tmp, $vg, start, exited, stop

if ! "$py" -c 'import aiosmtpd' 2>/dev/null; then
	echo "Bail out! $py has no aiosmtpd (scripts/install-deps installs python3-aiosmtpd)"
	exit 1
fi
maildir=$tmp/mail
mkdir "$maildir"
port=$(free_port)
start_sink || bail "the SMTP sink does not listen on $port"

# The reader of the daemon's output.
#   records FORMAT LOG         every line parses; prints the count
#   has FORMAT LOG KEY=VALUE.. some record has every KEY equal to VALUE
#                              (VALUE ~REGEX: matches REGEX; *TEXT: contains
#                              TEXT; KEY=-: absent; \n, \t, \\ decoded)
cat >"$tmp/records.py" <<'PY'
import json, re, sys

LOGFMT_BARE = re.compile(r'[^\x00-\x20"=\\\x7f]+')
ESCAPES = {'"': '"', '\\': '\\', 'n': '\n', 'r': '\r', 't': '\t'}

def logfmt(line):
    """A strict reader of the daemon's logfmt: key=value, one space apart."""
    rec, i = {}, 0
    while True:
        m = re.compile(r'[a-z]+=').match(line, i)
        if not m:
            raise ValueError("no key= at column %d" % i)
        key, i = m.group()[:-1], m.end()
        if key in rec:
            raise ValueError("key %s twice" % key)
        if line.startswith('"', i):
            i += 1
            out = []
            while True:
                if i >= len(line):
                    raise ValueError("unterminated quoted value")
                c = line[i]
                if c == '"':
                    i += 1
                    break
                if ord(c) < 0x20 or c == '\x7f':
                    raise ValueError("raw control character")
                if c == '\\':
                    e = line[i + 1:i + 2]
                    if e in ESCAPES:
                        out.append(ESCAPES[e])
                        i += 2
                    elif e == 'u' and re.fullmatch(r'00[0-9a-f]{2}', line[i + 2:i + 6]):
                        ch = chr(int(line[i + 2:i + 6], 16))
                        if not (ord(ch) < 0x20 or ch == '\x7f'):
                            raise ValueError("needless \\u escape")
                        out.append(ch)
                        i += 6
                    else:
                        raise ValueError("bad escape at column %d" % i)
                else:
                    out.append(c)
                    i += 1
            rec[key] = ''.join(out)
        else:
            m = LOGFMT_BARE.match(line, i)
            if not m:
                raise ValueError("empty or bad bare value at column %d" % i)
            rec[key], i = m.group(), m.end()
        if i == len(line):
            return rec
        if line[i] != ' ' or i + 1 == len(line):
            raise ValueError("pairs not separated by one space at column %d" % i)
        i += 1

def records(fmt, path):
    out = []
    with open(path, 'rb') as f:
        data = f.read()
    if not data.endswith(b'\n'):
        raise ValueError("the output does not end with a newline")
    for n, raw in enumerate(data.split(b'\n')[:-1], 1):
        try:
            line = raw.decode('utf-8')
            rec = json.loads(line) if fmt == 'json' else logfmt(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
            if not all(isinstance(v, str) for v in rec.values()):
                raise ValueError("a value that is not a string")
            if not re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', rec.get('ts', '')):
                raise ValueError("no ts")
            if rec.get('level') not in ('debug', 'info', 'warning', 'error'):
                raise ValueError("no level")
            if 'msg' not in rec:
                raise ValueError("no msg")
            if set(rec) - {'ts', 'level', 'msg', 'consumer', 'outbox', 'batch',
                           'member', 'position', 'id', 'attempt', 'error'}:
                raise ValueError("an unknown key")
        except ValueError as e:
            sys.exit("# line %d: %s: %r" % (n, e, raw))
        out.append(rec)
    return out

def matches(rec, cond):
    key, value = cond.split('=', 1)
    value = value.encode().decode('unicode_escape')
    if value == '-':
        return key not in rec
    if value.startswith('*'):
        return key in rec and value[1:] in rec[key]
    if value.startswith('~'):
        return key in rec and re.search(value[1:], rec[key]) is not None
    return rec.get(key) == value

cmd, fmt, path, conds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
recs = records(fmt, path)
if cmd == 'records':
    print(len(recs))
else:
    sys.exit(0 if any(all(matches(r, c) for c in conds) for r in recs) else 1)
PY
records() { "$py" "$tmp/records.py" records "$@"; }
has() { "$py" "$tmp/records.py" has "$@"; }

#
# The database: eventstore and a small outbox (fresh_db, test/daemon.sh).
#
fresh_db "$db" || bail "cannot make the database $db"
add_mail() {	# add_mail TAG: one good row and one refused (CR/LF in the recipient)
	q "INSERT INTO app.outbox (recipient, subject, body) VALUES
	   ('$1@example.net', 'Sighting', 'A wren.'),
	   (E'victim@example.org\r\nBcc: spam@example.org', 'Hi', 'x')" >/dev/null
}

# handlers: ok.sh records the batch id; fail.sh records it, then exits 3
cat >"$tmp/ok.sh" <<'SH'
#!/bin/sh
cat >/dev/null
printf '%s\n' "$EVENTSTORE_BATCH_ID" >>"$1"
SH
cat >"$tmp/fail.sh" <<'SH'
#!/bin/sh
cat >/dev/null
printf '%s\n' "$EVENTSTORE_BATCH_ID" >>"$1"
exit 3
SH
chmod 755 "$tmp/ok.sh" "$tmp/fail.sh"

# the awkward name: a quote, a backslash, an equals sign, a newline, a tab
weird_json='we\"ird \\ name=x\nsecond\tline'
weird_py='we"ird \\ name=x\nsecond\tline'

# config FILE FORMAT [LEVEL]: the consumers good_FORMAT, bad_FORMAT and the weird one
config() {
	cat >"$1" <<JSON
{"conninfo": "dbname=$db", "batch_size": 10, "poll_interval_ms": 60000,
 "log_level": "${3:-debug}", "log_format": "$2",
 "consumers": [
   {"name": "good_$2", "kind": "outside",
    "handler": {"type": "command", "command": ["$tmp/ok.sh", "$tmp/good.batches"]}},
   {"name": "bad_$2", "kind": "outside",
    "handler": {"type": "command", "command": ["$tmp/fail.sh", "$tmp/bad.batches"]}},
   {"name": "$weird_json", "kind": "outside",
    "handler": {"type": "command", "command": ["$tmp/ok.sh", "$tmp/weird.batches"]}}],
 "outboxes": [{"name": "notifier", "claim": "app.claim", "sent": "app.sent",
               "failed": "app.failed", "batch_size": 10,
               "sender": {"type": "smtp", "host": "127.0.0.1", "port": $port,
                          "from": "birds@example.org", "tls": "off", "timeout_ms": 5000}}]}
JSON
}

# run_once FORMAT: a --once run of new consumers against 3 new events and 2 new mails
run_once() {
	rm -f "$tmp"/*.batches
	q "SELECT eventstore.create_consumer('good_$1', ARRAY['t']),
	          eventstore.create_consumer('bad_$1', ARRAY['t'])" >/dev/null
	append 3
	add_mail "$1"
	config "$tmp/$1.json" "$1"
	"$worker" --config "$tmp/$1.json" --once 2>"$tmp/$1.log" >/dev/null
}

for format in json logfmt; do
	run_once "$format"
	[ $? -eq 1 ]
	ok $? "$format: --once exits 1 (the weird consumer's poll failed)"
	count=$(records "$format" "$tmp/$format.log")
	ok $? "$format: every one of the ${count:-0} lines on stderr is a record with ts, level and msg"
	good_batch=$(head -1 "$tmp/good.batches")
	bad_batch=$(head -1 "$tmp/bad.batches")
	has "$format" "$tmp/$format.log" level=info "consumer=good_$format" "batch=$good_batch" msg=ok \
		'member=~^0$' 'position=~^[0-9]+$' 'id=~^[0-9a-f-]{36}$' error=-
	ok $? "$format: each event handled: consumer, batch id ($good_batch, as the handler saw it), member, position, id"
	has "$format" "$tmp/$format.log" level=error "consumer=bad_$format" "batch=$bad_batch" msg=failed \
		attempt=1 'error=command exited with status 3'
	ok $? "$format: the failed handler: consumer, batch id ($bad_batch), attempt and the error text as fields"
	has "$format" "$tmp/$format.log" level=warning "consumer=bad_$format" "batch=$bad_batch" \
		'msg=~^nacked after 0 of [0-9]+ events$' 'error=command exited with status 3'
	ok $? "$format: the nack: consumer, batch id, the error apart from the message"
	has "$format" "$tmp/$format.log" level=error "consumer=$weird_py" 'msg=poll failed' \
		'error=*invalid consumer name' 'error=*we"ird \\\\ name=x'

	ok $? "$format: a consumer name with a quote, a backslash, '=', a newline and a tab, and the server's error quoting it (quotes, backslashes), come back exactly"
	has "$format" "$tmp/$format.log" level=info outbox=notifier msg=sent attempt=1 \
		'id=~^[0-9a-f-]{36}$' consumer=- batch=-
	ok $? "$format: the outbox's message sent: outbox, id, attempt"
	has "$format" "$tmp/$format.log" level=error outbox=notifier msg=failed \
		'error=permanent: recipient contains CR or LF (header injection refused)'
	ok $? "$format: the refused message: outbox and the error text"
done
[ "$(q "SELECT count(*) FROM app.outbox WHERE sent_at IS NOT NULL")" -eq 2 ] &&
	[ "$(find "$maildir" -name '*.eml' | wc -l)" -eq 2 ]
ok $? "the two good messages were sent (the sink has them)"

#
# A reload: text, then json after SIGHUP.
#
q "SELECT eventstore.create_consumer('good_text', ARRAY['t']),
          eventstore.create_consumer('bad_text', ARRAY['t'])" >/dev/null
config "$tmp/live.json" text info
start "$tmp/live.log" "$worker" --config "$tmp/live.json"
pid=$started
wait_until 30 grep -q ' info connected to database' "$tmp/live.log"
ok $? "text: the usual lines ('<ts> info connected to database ...')"
wait_until 10 grep -q  ' error consumer=bad_text batch=[0-9]* position=[0-9]* id=[0-9a-f-]* attempt=[0-9]* failed: command exited with status 3$' "$tmp/live.log"
ok $? "text: the fields in the old order ('consumer=bad batch=N position=N id=... attempt=N failed: command exited with status 3')"
lines_before=$(wc -l <"$tmp/live.log")
sed -i 's/"log_format": "text"/"log_format": "json"/' "$tmp/live.json"
kill -HUP "$pid"
wait_until 20 grep -q '"msg":"configuration reloaded from' "$tmp/live.log"
ok $? "SIGHUP with log_format json: the reload is logged as JSON"
append 2
wait_until 20 eval "[ \$(grep -c '\"consumer\":\"good_text\"' '$tmp/live.log') -ge 2 ]"
ok $? "events after the reload are logged as JSON"
stop "$pid"
ok $? "SIGTERM: exit status 0"
tail -n +"$((lines_before + 1))" "$tmp/live.log" >"$tmp/after.log"
head -n "$lines_before" "$tmp/live.log" >"$tmp/before.log"
after=$(records json "$tmp/after.log")
[ $? -eq 0 ] && [ "$after" -ge 4 ] && ! grep -q '^{' "$tmp/before.log"
ok $? "every line after the reload is JSON ($after, the last being the stop), none before"

#
# Configuration.
#
sed 's/"log_format": "json"/"log_format": "yaml"/' "$tmp/json.json" >"$tmp/bad.json"
"$worker" --config "$tmp/bad.json" --once >"$tmp/bad.log" 2>&1
[ $? -eq 2 ] && grep -q 'error config .*bad.json: log_format: must be one of "text", "logfmt", "json"' "$tmp/bad.log"
ok $? "an unknown log_format is refused with exit status 2, naming the key"
sed 's/"log_format": "json"/"log_format": 1/' "$tmp/json.json" >"$tmp/bad.json"
"$worker" --config "$tmp/bad.json" --once >"$tmp/bad.log" 2>&1
[ $? -eq 2 ] && grep -q 'log_format: expected string, got integer' "$tmp/bad.log"
ok $? "a log_format that is not a string is refused"
# a configuration refused at start is logged in the text format (no format yet)
grep -q '^[0-9-]*T[0-9:.]*Z error config ' "$tmp/bad.log"
ok $? "a configuration refused at start is logged as text"

stop "$sink" >/dev/null 2>&1
psql -XAtq -d "$main_db" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
exit $((fails > 0))
