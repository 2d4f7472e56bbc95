# shellcheck shell=bash
# test/tap.sh: what the TAP shell tests in test/shell/ share (sourced).
#
#   ok STATUS DESCRIPTION   one TAP line, "ok N" when STATUS is 0; counts failures in $fails
#   q SQL                   runs SQL in $db; one value per line
#   wait_for SECONDS SQL    until SQL returns t (0), or SECONDS have passed (1)
#
# The test sets $db before using q or wait_for, prints its plan, and ends
# with: exit $((fails > 0))
n=0
fails=0

ok() {
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi
}

q() {
	psql -XAtq -v ON_ERROR_STOP=1 -d "$db" -c "$1"
}

wait_for() {
	local deadline=$((SECONDS + $1))
	while [ $SECONDS -lt $deadline ]; do
		[ "$(q "$2" 2>/dev/null)" = t ] && return 0
		sleep 0.2
	done
	return 1
}
