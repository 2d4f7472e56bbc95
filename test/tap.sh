# shellcheck shell=bash
# test/tap.sh: what the TAP shell tests in test/shell/ share (sourced).
#
#   ok STATUS DESCRIPTION     one TAP line, "ok N" when STATUS is 0; counts failures in $fails
#   skip DESCRIPTION REASON   one TAP line, "ok N - DESCRIPTION # SKIP REASON"
#   diag TEXT...              TEXT as TAP comment lines ("# " before each line)
#   bail REASON...            "Bail out! REASON", then exit 1
#   q SQL                     runs SQL in $db; one value per line
#   q_in DB SQL...            runs each SQL in DB, a statement (transaction) of
#                             its own, stopping at the first error; one value per line
#   wait_for SECONDS SQL      until SQL returns t (0), or SECONDS have passed (1);
#                             errors count as "not yet"
#   relay FILE PREFIX [CHECKS WHAT]
#                             the output of a runner of checks (test/soak,
#                             test/ha/run) as TAP: each "ok - ..." or "not ok
#                             - ..." line one TAP line, "# " lines passed on,
#                             others as diagnostics; the line starting with
#                             PREFIX in $summary (and on stderr, where prove
#                             shows it); then, up to CHECKS, a failing line per
#                             check WHAT did not get to print
#   wait_until SECONDS COMMAND...
#                             until COMMAND succeeds (0, tried every 0.1 s), or
#                             SECONDS have passed (1)
#
# The test sets $db before using q or wait_for, prints its plan, and ends
# with: exit $((fails > 0))
n=0
fails=0

ok() {
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi
}

skip() {
	n=$((n + 1))
	echo "ok $n - $1 # SKIP $2"
}

diag() { sed 's/^/# /' <<<"$*"; }

bail() { echo "Bail out! $*"; exit 1; }

q() {
	psql -XAtq -v ON_ERROR_STOP=1 -d "$db" -c "$1"
}

q_in() {
	local dbname=$1 args=() s
	shift
	for s in "$@"; do args+=(-c "$s"); done
	psql -XAtq -v ON_ERROR_STOP=1 -d "$dbname" "${args[@]}"
}

wait_for() {
	local deadline=$((SECONDS + $1))
	while [ $SECONDS -lt $deadline ]; do
		[ "$(q "$2" 2>/dev/null)" = t ] && return 0
		sleep 0.2
	done
	return 1
}

relay() {
	local line got=0
	summary=
	while IFS= read -r line; do
		case "$line" in
			"ok - "*) ok 0 "${line#ok - }"; got=$((got + 1)) ;;
			"not ok - "*) ok 1 "${line#not ok - }"; got=$((got + 1)) ;;
			"$2"*) summary=$line; echo "# $line"; echo "$line" >&2 ;;
			"# "*) echo "$line" ;;
			*) echo "# $line" ;;
		esac
	done <"$1"
	while [ "$got" -lt "${3:-0}" ]; do
		got=$((got + 1))
		ok 1 "check $got of $4: not reached"
	done
}

wait_until() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -ge "$deadline" ] && return 1
		sleep 0.1
	done
}
