# shellcheck shell=bash
# test/daemon.sh: what the TAP shell tests of workers/eventstore-worker
# (worker_daemon.sh, smtp_outbox.sh) share besides test/tap.sh.  Sourced
# after test/tap.sh, from the top of the repository, once the plan is
# printed; it bails out unless the daemon is built (this script builds
# nothing), and provides:
#
#   $worker               the daemon, workers/eventstore-worker
#   $tmp                  a scratch directory, removed at exit
#   $vg                   the prefix running the daemon under valgrind, when
#                         installed (empty when not); under make test
#                         SANITIZE=1 (EVENTSTORE_SANITIZE) env: the daemon bare
#   start LOG COMMAND...  COMMAND (e.g. "${vg[@]}" "$worker" ...) in the
#                         background, its output appended to LOG; its pid in
#                         $started, and killed (SIGKILL) at exit
#   exited PID            the child is gone (a zombie until waited for counts as gone)
#   stop PID [SECONDS]    SIGTERM, then its exit status (124, after SIGKILL, if
#                         it has not stopped within SECONDS, default 30)
#   stop_checked PID LOG WHAT
#                         stop PID; one TAP line: exit status 0 and, under
#                         valgrind, no valgrind report in LOG
#   port_open PORT        something listens on 127.0.0.1:PORT
#   free_port             prints a port of 127.0.0.1 nothing listens on
#   start_sink [DELAY]    the SMTP sink (test/smtp_sink.py under /usr/bin/python3,
#                         which needs python3-aiosmtpd) on 127.0.0.1:$port,
#                         storing each message in $maildir (the caller sets
#                         both), DELAY seconds per message; its pid in $sink;
#                         fails unless it listens within 20 s
#   fresh_db DB [SQL]     DB made anew: eventstore, topic t, the outbox app.outbox
#                         (see below), then SQL
#   append COUNT          COUNT events on topic t of $db
worker=$PWD/workers/eventstore-worker
pids=()

if [ ! -x "$worker" ]; then
	echo "Bail out! $worker is not built (make -C workers)"
	exit 1
fi
tmp=$(mktemp -d)

cleanup() {
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck disable=SC2034  # vg: for the sourcing test
if [ -n "${EVENTSTORE_SANITIZE:-}" ]; then
	# make test SANITIZE=1: valgrind cannot run an ASan binary; the checks
	# run the daemon bare, ASan and LSan watching it (exit status 86)
	vg=(env)
elif command -v valgrind >/dev/null; then
	vg=(valgrind -q --leak-check=full --error-exitcode=1)
else
	vg=()
fi

start() {
	local log=$1
	shift
	"$@" >>"$log" 2>&1 &
	started=$!
	pids+=("$started")
}

exited() {
	local state
	state=$(ps -o stat= -p "$1" 2>/dev/null)
	[ -z "$state" ] || [ "${state#Z}" != "$state" ]
}

stop() {
	kill -TERM "$1"
	if ! wait_until "${2:-30}" exited "$1"; then
		kill -KILL "$1"
		wait "$1" 2>/dev/null
		return 124
	fi
	wait "$1"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Below the kernel's range of ephemeral ports: a port in it can be the
# local end of some connection (a client of the test cluster), which no
# connect() finds but which makes a listener's bind() fail.
free_port() {
	local p low=32768
	read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
	[ "$low" -gt 20100 ] || low=32768
	while :; do
		p=$((20000 + RANDOM % (low - 20000)))
		port_open "$p" || break
	done
	echo "$p"
}

# shellcheck disable=SC2154,SC2034  # port and maildir set by the caller, sink for it
start_sink() {
	start "$tmp/sink.log" env PYTHONPATH="$PWD/test" /usr/bin/python3 -m aiosmtpd -n \
		-l "127.0.0.1:$port" -c smtp_sink.Sink "$maildir" "${1:-0}"
	sink=$started
	wait_until 20 port_open "$port"
}

# fresh_db DB [SQL]: the database DB made again, with eventstore, the topic t and
# a minimal outbox, app.outbox, with its three functions app.claim (rows
# neither sent nor failed), app.sent and app.failed (a failed row is not
# claimed again); then SQL, if given
fresh_db() {
	psql -XAtq -d "${PGDATABASE:-eventstore_test}" -v ON_ERROR_STOP=1 \
		-c "SET client_min_messages = warning" \
		-c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null &&
		psql -X -q -d "$1" -v ON_ERROR_STOP=1 >/dev/null <<'SQL' &&
SET client_min_messages = warning;
CREATE EXTENSION eventstore;
SELECT eventstore.create_topic('t');
CREATE SCHEMA app;
CREATE TABLE app.outbox (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), recipient text,
                         subject text, body text, sent_at timestamptz, last_error text,
                         attempts integer NOT NULL DEFAULT 0);
CREATE FUNCTION app.claim(max integer)
RETURNS TABLE(id uuid, recipient text, subject text, body text, attempt integer)
LANGUAGE sql AS $$
    UPDATE app.outbox o SET attempts = o.attempts + 1
     WHERE o.id IN (SELECT d.id FROM app.outbox d WHERE d.sent_at IS NULL
                       AND d.last_error IS NULL LIMIT max)
    RETURNING o.id, o.recipient, o.subject, o.body, o.attempts $$;
CREATE FUNCTION app.sent(id uuid) RETURNS void LANGUAGE sql AS $$
    UPDATE app.outbox SET sent_at = now() WHERE id = $1 $$;
CREATE FUNCTION app.failed(id uuid, error text) RETURNS void LANGUAGE sql AS $$
    UPDATE app.outbox SET last_error = $2 WHERE id = $1 $$;
SQL
		psql -X -q -d "$1" -v ON_ERROR_STOP=1 -c "${2:-SELECT}" >/dev/null
}

# append COUNT: COUNT events on topic t of $db, data {"n": 1..COUNT}
append() {
	q "SELECT count(eventstore.append('t', jsonb_build_object(
	       'id', gen_random_uuid(), 'type', 'new', 'version', '1.0',
	       'data', jsonb_build_object('n', g),
	       'metadata', jsonb_build_object('source', 'test/daemon.sh',
	                                      'time', '2026-11-27T00:00:00Z'))))
	     FROM generate_series(1, $1) g" >/dev/null
}

stop_checked() {
	local status
	stop "$1"
	status=$?
	if [ ${#vg[@]} -gt 1 ]; then
		[ $status -eq 0 ] && ! grep -q '^==[0-9]*==' "$2"
		ok $? "SIGTERM: exit status 0, valgrind clean (leaks, errors) $3"
	else
		[ $status -eq 0 ]
		ok $? "SIGTERM: exit status 0 $3"
	fi
}
