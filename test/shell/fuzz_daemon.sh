#!/bin/bash
# The daemon's libFuzzer harnesses (workers/fuzz/fuzz_*.c: the configuration
# file, the email built from an outbox row, log records of outside text),
# each run for FUZZ_SECONDS (default 10) by workers/fuzz/run: one TAP line
# per target, "not ok" on a crash, leak, sanitizer report or hang, with the
# crashing input's path in the diagnostics.  Builds the fuzzers first
# (make -C workers fuzz-build: clang, libFuzzer, ASan, UBSan); skips when
# clang cannot build them.  Needs no database.  make fuzz runs them longer.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh

targets=()
for f in workers/fuzz/fuzz_*.c; do
	t=${f##*/fuzz_}
	targets+=("${t%.c}")
done
echo "1..${#targets[@]}"

build_log=$(mktemp)
trap 'rm -f "$build_log"' EXIT
if ! command -v clang >/dev/null; then
	for t in "${targets[@]}"; do
		n=$((n + 1))
		echo "ok $n - fuzz $t # skip clang is not installed"
	done
	exit 0
fi
if ! make -s -C workers fuzz-build >"$build_log" 2>&1; then
	sed 's/^/# /' "$build_log"
	for t in "${targets[@]}"; do
		ok 1 "fuzz $t: the fuzzers do not build (make -C workers fuzz-build)"
	done
	exit 1
fi

for t in "${targets[@]}"; do
	result=$(FUZZ_SECONDS=${FUZZ_SECONDS:-10} workers/fuzz/run "$t")
	status=$?
	[ $status -ne 0 ] && echo "$result" | sed 's/^/# /'
	ok $status "fuzz $t: $(echo "$result" | head -1 | sed 's/^\(ok\|FAIL\) [a-z]*: //')"
done
exit $((fails > 0))
