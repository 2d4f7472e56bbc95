# shellcheck shell=bash
# bench/stats-section.sh: the "stats" group of bench/run (sourced by it, in
# its cluster, with its measure, row and table): append with the counters
# of eventstore.stats on against the same appends with
# eventstore.track_stats off, and its section of bench/RESULTS.md.

section_file=$out/stats.md
# The difference sought is small against the noise of fsync on a shared
# machine: twice the time of an append case, in four alternating runs.
rounds=4
piece=$((seconds / 2))
seconds=$((rounds * piece))
for sync in on off; do
	for c in 1 8; do
		echo "== append, counters on and off, $c clients, synchronous_commit=$sync"
		measure "$c" "$sync" "" append_untracked append
		k="|$c|$sync|"
		row append "$c" "$sync" "append, track_stats off" "tx/s" \
			"${tps[append_untracked$k]}" "${tps[append$k]}"
	done
done

goal=met
ratios=()
for sync in on off; do
	for c in 1 8; do
		r=$(ratio "${tps[append|$c|$sync|]}" "${tps[append_untracked|$c|$sync|]}")
		ratios+=("$c clients, synchronous_commit $sync: $r")
		[ "$(at_least "$r" 0.98)" = met ] || goal="not met"
	done
done

{
	cat <<SECTION
<!-- begin stats -->
## The cost of the statistics counters

- date: $start
- machine: $cores cores ($(cpu_model)), $(mem_total) RAM
- PostgreSQL: $(pg_version)
- pgbench: \`-n -M $mode -T $piece\`, $rounds run(s) per variant and case
  ($seconds s in total), the variants in the order A B, B A, A B, B A, tables
  truncated and a CHECKPOINT before every run, as in "Append throughput".

**append** (\`bench/append.sql\`, eventstore.track_stats on, the default)
against the same script with \`PGOPTIONS='-c eventstore.track_stats=off'\`:
the counters of \`eventstore.stats\` bumped (appended, duplicates) or not.
Ratio = counters on / counters off.

$(table)

### Goal

- append with the counters >= 0.98 x append without: **$goal**
  ($(IFS=';'; echo "${ratios[*]}" | sed 's/;/; /g'))
<!-- end stats -->
SECTION
} >"$section_file"

echo
table
