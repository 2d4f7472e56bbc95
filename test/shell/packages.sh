#!/bin/bash
# The Debian packages and the PGXN metadata, installed the way operators
# install them.  Builds the packages (make deb), runs lintian on them, checks
# META.json and make dist, then installs the packages into this machine
# with apt-get (over the files make install put there) and checks that:
# the server's files are the packaged ones; CREATE EXTENSION eventstore and
# birdwatch work in a fresh database, with an append, a read and a
# run_consumer; the packaged daemon, started as its unit starts it
# (systemctl where systemd runs, else the unit's ExecStart as its User,
# under valgrind where installed), reports READY=1 and sends birdwatch's
# notification email to a real SMTP server (Debian's python3-aiosmtpd with
# test/smtp_sink.py).  At the end, whatever happened: the packages are
# purged and the tree's own build installed again (make install), for the
# rest of the suite.  Needs root and apt-get; skipped otherwise.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
echo "1..21"
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null || ! command -v dpkg-buildpackage >/dev/null; then
	for i in $(seq 21); do skip "package check $i" "needs root, apt-get and dpkg-buildpackage"; done
	exit 0
fi
. test/daemon.sh	# $tmp, $vg, start, exited, stop (and the tree's daemon built)

py=/usr/bin/python3
pkgs=(postgresql-15-eventstore eventstore-worker)
debs=build/deb
db=es_packages
role=es_packages_mailer
name=packages-test
unit=eventstore-worker@.service
conf=/etc/eventstore-worker/$name.json
maildir=$tmp/mail
installed=0
ext=$(pg_config --sharedir)/extension
so=$(pg_config --pkglibdir)/eventstore.so

# Whatever happens: the daemon stopped, the packages purged, the tree's
# build back in the system directories.
restore() {
	if [ "$installed" = 1 ]; then
		if [ -d /run/systemd/system ]; then systemctl stop "eventstore-worker@$name" 2>/dev/null; fi
		rm -f "$conf"
		dropdb --if-exists "$db" 2>/dev/null
		psql -XAtq -c "DROP ROLE IF EXISTS $role" >/dev/null 2>&1
		apt-get purge -y -qq "${pkgs[@]}" >"$tmp/purge.log" 2>&1
		make install >"$tmp/reinstall.log" 2>&1 || echo "# make install failed: $(tail -3 "$tmp/reinstall.log")"
	fi
	# the SMTP server and the notify socket's listener, quietly
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	cleanup
}
trap restore EXIT

# --- building -------------------------------------------------------------
git status --porcelain >"$tmp/status.before" 2>&1
make deb >"$tmp/deb.log" 2>&1
ok $? "make deb builds the packages ($(cd $debs 2>/dev/null && ls *.deb | tr '\n' ' '))"
for p in "${pkgs[@]}"; do ls "$debs/${p}"_*.deb >/dev/null 2>&1 || bail "no $p package in $debs"; done
deb_files=()
for p in "${pkgs[@]}"; do deb_files+=("./$(ls "$debs/${p}"_*.deb)"); done
git status --porcelain >"$tmp/status.after" 2>&1
diff "$tmp/status.before" "$tmp/status.after" >"$tmp/status.diff"
ok $? "make deb leaves the tree as it was (git status unchanged, build/ ignored)"
[ -s "$tmp/status.diff" ] && diag "$(cat "$tmp/status.diff")"

lintian "${deb_files[@]}" >"$tmp/lintian.log" 2>&1
grep '^E:' "$tmp/lintian.log" >"$tmp/lintian.errors"
[ ! -s "$tmp/lintian.errors" ]
ok $? "lintian: no errors ($(grep -c '^E:' "$tmp/lintian.log") errors, $(grep -c '^W:' "$tmp/lintian.log") warnings)"
[ -s "$tmp/lintian.errors" ] && diag "$(cat "$tmp/lintian.log")"

# --- PGXN -----------------------------------------------------------------
"$py" - "$(dpkg-parsechangelog -S Version)" >"$tmp/meta.log" 2>&1 <<'EOF'
import json, re, sys
meta = json.load(open("META.json"))
semver = re.compile(r"^\d+\.\d+\.\d+$")
problems = []
for key in ("name", "abstract", "version", "maintainer", "license", "provides", "meta-spec"):
    if key not in meta:
        problems.append("missing " + key)
if meta.get("meta-spec", {}).get("version") != "1.0.0":
    problems.append("meta-spec.version is not 1.0.0")
if not semver.match(meta.get("version", "")):
    problems.append("version is not a semantic version")
if meta.get("version") != sys.argv[1]:
    problems.append("version %s, debian/changelog %s" % (meta.get("version"), sys.argv[1]))
if meta.get("license") != "postgresql":
    problems.append("license is not postgresql")
if meta.get("prereqs", {}).get("runtime", {}).get("requires", {}).get("PostgreSQL") is None:
    problems.append("no PostgreSQL runtime prereq")
for key in ("resources", "generated_by"):
    if key not in meta:
        problems.append("missing " + key)
provides = meta.get("provides", {})
if sorted(provides) != ["birdwatch", "eventstore"]:
    problems.append("provides %s" % sorted(provides))
for ext, p in provides.items():
    control = open("control/%s.control" % ext).read()
    default = re.search(r"^default_version\s*=\s*'([^']*)'", control, re.M).group(1)
    if p.get("version") != default + ".0" * (2 - default.count(".")):
        problems.append("%s: version %s, control %s" % (ext, p.get("version"), default))
    for key in ("file", "docfile"):
        try:
            open(p[key]).close()
        except (KeyError, OSError) as e:
            problems.append("%s.%s: %s" % (ext, key, e))
print("\n".join(problems) or "META.json ok")
sys.exit(1 if problems else 0)
EOF
ok $? "META.json: the keys PGXN requires, both extensions at their control files' versions, the release's version ($(tail -1 "$tmp/meta.log"))"

version=$(dpkg-parsechangelog -S Version)
if git rev-parse HEAD >/dev/null 2>&1; then
	make dist >"$tmp/dist.log" 2>&1 &&
		unzip -l "build/eventstore-$version.zip" >"$tmp/dist.list" 2>&1 &&
		grep -q " eventstore-$version/META.json$" "$tmp/dist.list" &&
		grep -q " eventstore-$version/control/eventstore.control$" "$tmp/dist.list"
	ok $? "make dist: build/eventstore-$version.zip, the tree under eventstore-$version/"
else
	skip "make dist" "not a git checkout"
fi

# --- installing -----------------------------------------------------------
apt-get install -y -qq --no-install-recommends "${deb_files[@]}" >"$tmp/install.log" 2>&1
status=$?
installed=1
ok $status "apt-get install ${deb_files[*]}"
[ $status -eq 0 ] || { diag "$(tail -20 "$tmp/install.log")"; bail "the packages could not be installed"; }

# The scripts of this tree (a source install of an older tree may have left
# others, such as an install script of an earlier default_version, which
# the package rightly does not own): the released ones and the built ones.
scripts=()
for f in sql/eventstore--*.sql sql/birdwatch--*.sql; do scripts+=("$ext/${f#sql/}"); done
for e in eventstore birdwatch; do
	scripts+=("$ext/$e--$(sed -n "s/^default_version = '\(.*\)'/\1/p" "control/$e.control").sql")
done
owned=1
for f in "$so" "$ext"/eventstore.control "$ext"/birdwatch.control "${scripts[@]}"; do
	dpkg -S "$f" >/dev/null 2>&1 || { owned=0; diag "not packaged: $f"; }
done
[ $owned = 1 ] && [ -z "$(dpkg --verify postgresql-15-eventstore 2>&1)" ]
ok $? "eventstore.so, both control files and every script of the tree belong to postgresql-15-eventstore, as packaged"
dpkg -S /usr/bin/eventstore-worker "/lib/systemd/system/$unit" >/dev/null 2>&1 &&
	getent passwd eventstore-worker >/dev/null &&
	[ "$(stat -c '%U:%G %a' /etc/eventstore-worker)" = "root:eventstore-worker 750" ]
ok $? "eventstore-worker: the daemon, the unit, the user and /etc/eventstore-worker (root:eventstore-worker 750)"
page=/usr/share/man/man8/eventstore-worker.8.gz
dpkg -S "$page" >/dev/null 2>&1 && zcat "$page" | grep -q '^\.SH EXIT STATUS' &&
	{ ! command -v man >/dev/null || [ -z "$(man --warnings -l "$page" 2>&1 >/dev/null)" ]; }
ok $? "eventstore-worker(8) is packaged and formats without warnings"

if command -v systemd-analyze >/dev/null; then
	cp "/lib/systemd/system/$unit" "$tmp/eventstore-worker@$name.service"
	systemd-analyze verify "$tmp/eventstore-worker@$name.service" >"$tmp/verify.log" 2>&1
	ok $? "systemd-analyze verify $unit$( [ -s "$tmp/verify.log" ] && echo ": $(head -3 "$tmp/verify.log" | tr '\n' ' ')")"
else
	skip "systemd-analyze verify $unit" "no systemd-analyze"
fi

# --- the extensions from the package --------------------------------------
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
q "CREATE EXTENSION eventstore; CREATE EXTENSION pgcrypto; CREATE EXTENSION birdwatch" >"$tmp/create.log" 2>&1
ok $? "CREATE EXTENSION eventstore, birdwatch in a fresh database ($(q "SELECT string_agg(extname || ' ' || extversion, ', ' ORDER BY extname) FROM pg_extension WHERE extname IN ('eventstore', 'birdwatch')" 2>/dev/null))"
. test/fixtures.sh
# each a transaction of its own: a consumer sees committed events only
got=$(q_in "$db" "$order_event_sql" \
	"CREATE TABLE public.handled (n int)" \
	"CREATE FUNCTION public.handle(e eventstore.event) RETURNS void LANGUAGE sql
	     AS 'INSERT INTO public.handled VALUES ((e.envelope->''data''->>''n'')::int)'" \
	"SELECT eventstore.create_topic('orders')" \
	"SELECT eventstore.create_consumer('orders_projection', ARRAY['orders'], 'public.handle(eventstore.event)')" \
	"SELECT count(eventstore.append('orders', ev(n), stream => 'o1')) FROM generate_series(1, 3) n" \
	"SELECT string_agg(envelope->'data'->>'n', ',' ORDER BY position) FROM eventstore.read('orders')" \
	"SELECT eventstore.run_consumer('orders_projection')" \
	"SELECT string_agg(n::text, ',' ORDER BY n) FROM public.handled" 2>&1 | grep . | tr '\n' ' ')
[ "$got" = "3 1,2,3 3 1,2,3 " ]
ok $? "append, read and run_consumer against the packaged extension (appended, read, handled: $got)"

# --- the daemon from the package ------------------------------------------
mkdir "$maildir"
smtp_port=$((20000 + RANDOM % 12000))
start "$tmp/smtp.log" env PYTHONPATH="$PWD/test" "$py" -m aiosmtpd -n -l "127.0.0.1:$smtp_port" \
	-c smtp_sink.Sink "$maildir"
wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$smtp_port" 2>/dev/null
ok $? "the SMTP server listens on port $smtp_port"

q "DO \$\$ BEGIN
       IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
           CREATE ROLE $role LOGIN PASSWORD 'packages-secret';
       END IF;
   END \$\$;
   GRANT birdwatch_notifier TO $role;" >/dev/null
install -m 640 -g eventstore-worker /dev/stdin "$conf" <<EOF
{
  "conninfo": "host=${PGHOST:-localhost} port=${PGPORT:-5432} dbname=$db user=$role password=packages-secret",
  "poll_interval_ms": 200,
  "outboxes": [{
    "name": "notifier",
    "claim": "birdwatch.claim_emails", "sent": "birdwatch.email_sent", "failed": "birdwatch.email_failed",
    "listen": "birdwatch_outbox",
    "sender": {"type": "smtp", "host": "127.0.0.1", "port": $smtp_port,
               "from": "birdwatch@example.org", "tls": "off", "timeout_ms": 5000}
  }]
}
EOF

# The unit's ExecStart and User, %i its instance name.
execstart=$(sed -n 's/^ExecStart=//p' "/lib/systemd/system/$unit" | sed "s/%i/$name/g")
user=$(sed -n 's/^User=//p' "/lib/systemd/system/$unit")
if [ -d /run/systemd/system ]; then
	how="systemctl start eventstore-worker@$name"
	systemctl start "eventstore-worker@$name"
	ok $? "$how: started, READY=1 received by systemd ($(systemctl is-active "eventstore-worker@$name"))"
	worker_log() { journalctl -q -u "eventstore-worker@$name" --no-pager; }
else
	how="$execstart as $user"
	# systemd's NOTIFY_SOCKET, a datagram socket the daemon's user may write to
	chmod 755 "$tmp"
	start "$tmp/notify.log" "$py" -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666)
while True:
    print(s.recv(4096).decode().replace("\n", " "), flush=True)' "$tmp/notify"
	wait_until 5 test -S "$tmp/notify"
	# shellcheck disable=SC2086  # ExecStart is split into words, as systemd does
	start "$tmp/worker.log" setpriv --reuid="$user" --regid="$user" --init-groups \
		env -i -C / PATH=/usr/bin:/bin NOTIFY_SOCKET="$tmp/notify" "${vg[@]}" $execstart
	daemon_pid=$started
	wait_until 20 grep -q 'READY=1' "$tmp/notify.log"
	ok $? "$how: READY=1 once connected ($(grep -m1 -o 'READY=1 STATUS=[^ ]* [^ ]* [^ ]* [^ ]*' "$tmp/notify.log"))"
	worker_log() { cat "$tmp/worker.log"; }
fi

# A rating of someone else's image: the notifier writes an email to the outbox.
read -r token1 token2 <<<"$(register_watchers 2)"
q "SELECT birdwatch.tick('$token1', 'https://img.example.org/packaged.jpg');
   SELECT birdwatch.rate('$token2', 'https://img.example.org/packaged.jpg', 5);" >/dev/null
run_birdwatch
wait_until 30 bash -c "ls '$maildir'/*.eml >/dev/null 2>&1"
ok $? "the packaged daemon sends the notification email ($(ls "$maildir"/*.eml 2>/dev/null | wc -l) received)"
grep -il '^To:.*u1@example.org' "$maildir"/*.eml 2>/dev/null | xargs grep -l 'packaged.jpg' >/dev/null 2>&1
ok $? "to the image's owner, about the image"
wait_for 10 "SELECT count(*) = 1 FROM birdwatch.outbox WHERE sent_at IS NOT NULL"
ok $? "the outbox row is marked sent"

if [ -d /run/systemd/system ]; then
	systemctl stop "eventstore-worker@$name"
	[ "$(systemctl show -p ExecMainStatus --value "eventstore-worker@$name")" = 0 ]
	ok $? "systemctl stop: the daemon exits 0"
	worker_log | grep -q 'info stopping: '
	ok $? "it logged its final counts"
else
	stop "$daemon_pid"
	ok $? "SIGTERM: the daemon exits 0$([ ${#vg[@]} -gt 1 ] && echo ", valgrind clean")"
	grep -q 'STOPPING=1' "$tmp/notify.log"
	ok $? "STOPPING=1 on the way out"
fi
[ "$fails" -gt 0 ] && diag "daemon log:
$(worker_log | tail -30)"

# --- back to the tree's build ---------------------------------------------
dropdb "$db"
psql -XAtq -c "DROP ROLE $role" >/dev/null
rm -f "$conf"
apt-get purge -y -qq "${pkgs[@]}" >"$tmp/purge.log" 2>&1 &&
	! dpkg -S "$so" >/dev/null 2>&1 && [ ! -e /etc/eventstore-worker ] && [ ! -e /usr/bin/eventstore-worker ]
ok $? "apt-get purge removes the packages, their files and /etc/eventstore-worker"
make install >"$tmp/reinstall.log" 2>&1 && installed=0 &&
	cmp -s eventstore.so "$so" && [ -f "$ext/eventstore.control" ] && [ -f "$ext/birdwatch.control" ]
ok $? "make install puts the tree's own build back"
if [ $installed = 1 ]; then diag "$(tail -5 "$tmp/reinstall.log")"; fi

exit $((fails > 0))
