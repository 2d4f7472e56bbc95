#!/bin/bash
# The soak, short form: test/soak for SOAK_DURATION seconds of load (70 by
# default, a fault every 12 s: each of the five kinds once), its checks
# turned into TAP lines.  test/soak recreates eventstore and birdwatch
# itself; see its header for what it does and checks.
#
# test/soak prints "# ..." progress lines (passed on as diagnostics), one
# line "ok - ..." or "not ok - ..." per check, and the summary line
# "soak: ..., lost N, doubled N".  Checks it did not get to print (it
# stopped early) count as failures.
set -u
cd "$(dirname "$0")/../.." || exit 1
. test/tap.sh
checks=12
echo "1..$((checks + 2))"

if [ ! -x workers/eventstore-worker ]; then
	echo "Bail out! workers/eventstore-worker is not built (make -C workers)"
	exit 1
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
SOAK_DURATION=${SOAK_DURATION:-70} test/soak >"$out" 2>&1
status=$?

relay "$out" "soak: " "$checks" test/soak

[[ "$summary" == *", lost 0, doubled 0" ]]
ok $? "the summary line says lost 0, doubled 0 (${summary:-no summary line})"
[ "$status" -eq 0 ]
ok $? "test/soak exits with status 0 (status $status)"
exit $((fails > 0))
