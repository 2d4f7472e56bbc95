#!/bin/bash
# Failover under load with Patroni, short form: test/ha/run --short (one
# etcd member, three PostgreSQL nodes under Patroni, pgbench clients and
# eventstore-worker through a multi-host connection string, kill -9 of the
# leader's postmaster, no switchover), its checks turned into TAP lines.
# `make test-ha` runs the long form, with a patronictl switchover back to
# the first node.  See test/ha/run for what it does and checks.
#
# test/ha/run prints "# ..." progress lines (passed on as diagnostics), one
# line "ok - ..." or "not ok - ..." per check, and the summary line
# "ha: appends acknowledged N, lost N, effects doubled N, ...".  Checks it
# did not get to print (it stopped early) count as failures.
set -u
cd "$(dirname "$0")/../.." || exit 1
. test/tap.sh
checks=14
echo "1..$((checks + 2))"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
test/ha/run --short >"$out" 2>&1
status=$?

relay "$out" "ha: " "$checks" "test/ha/run --short"

[[ "$summary" == *", lost 0, effects doubled 0, "* ]]
ok $? "the summary line says lost 0, effects doubled 0 (${summary:-no summary line})"
[ "$status" -eq 0 ]
ok $? "test/ha/run --short exits with status 0 (status $status)"
exit $((fails > 0))
