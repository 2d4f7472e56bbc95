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
#   port_open PORT        something listens on 127.0.0.1:PORT
#   free_port             prints a port of 127.0.0.1 nothing listens on
#   start_sink [DELAY]    the SMTP sink (test/smtp_sink.py under /usr/bin/python3,
#                         which needs python3-aiosmtpd) on 127.0.0.1:$port,
#                         storing each message in $maildir (the caller sets
#                         both), DELAY seconds per message; its pid in $sink;
#                         fails unless it listens within 20 s
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

free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		port_open "$p" || break
	done
	echo "$p"
}

start_sink() {
	start "$tmp/sink.log" env PYTHONPATH="$PWD/test" /usr/bin/python3 -m aiosmtpd -n \
		-l "127.0.0.1:$port" -c smtp_sink.Sink "$maildir" "${1:-0}"
	sink=$started
	wait_until 20 port_open "$port"
}
