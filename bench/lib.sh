# shellcheck shell=bash
# bench/lib.sh: helpers shared by bench/run and bench/run-consumers
# (sourced, inside the benchmark cluster).

psql_q() {
	psql -X -q -v ON_ERROR_STOP=1 "$@"
}

# ratio A B: A / B with two decimals, or "-" when either is missing.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a == "error" || b == "error" || a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}

# at_least R GOAL: "met" or "not met".
at_least() {
	awk -v r="$1" -v g="$2" 'BEGIN { print (r != "-" && r != "error" && r != "" && r + 0 >= g) ? "met" : "not met" }'
}

# at_most R GOAL: "met" or "not met".
at_most() {
	awk -v r="$1" -v g="$2" 'BEGIN { print (r != "-" && r != "error" && r != "" && r + 0 <= g) ? "met" : "not met" }'
}

# show_settings NAME...: "    name = value" lines of the server settings named.
show_settings() {
	local names
	names=$(printf "'%s'," "$@")
	psql -X -At -F ' = ' -c "SELECT name, setting || coalesce(unit, '') FROM pg_settings
		WHERE name IN (${names%,}) ORDER BY name" | sed 's/^/    /'
}

pg_version() {
	psql -X -At -c "SELECT version()"
}

cpu_model() {
	sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1
}

mem_total() {
	awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo
}
