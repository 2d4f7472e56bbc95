# shellcheck shell=bash
# test/scratch_cluster.sh: a cluster of a shell test's own beside the test
# cluster (archive.sh, pitr.sh); sourced after test/tap.sh.  The caller sets
# $owner (the test cluster's data directory's owner) and $bindir
# (pg_config --bindir).
#
#   as_owner COMMAND...   COMMAND as $owner when run as root (initdb and
#                         pg_ctl refuse root), as it is otherwise
#   scratch_initdb DIR    DIR given to $owner, and DIR/data initdb'd as
#                         $owner: listening on a Unix socket in DIR only, on
#                         a free port below the ephemeral ones, put in
#                         $scratch_port; initdb's output in $scratch_out
#                         when it fails.  The caller appends its own settings to
#                         DIR/data/postgresql.conf and starts it.
as_owner() { if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u "$owner" -- "$@"); else "$@"; fi; }

scratch_initdb() {
	local dir=$1
	while :; do
		scratch_port=$((20000 + RANDOM % 12000))
		(exec 3<>"/dev/tcp/127.0.0.1/$scratch_port") 2>/dev/null || break
	done
	[ "$(id -u)" -eq 0 ] && chown "$owner" "$dir"
	scratch_out=$(as_owner "$bindir/initdb" -D "$dir/data" -A trust -U "$owner" --encoding=UTF8 \
		--locale=C.UTF-8 --no-sync 2>&1) || return 1
	cat >>"$dir/data/postgresql.conf" <<EOF
port = $scratch_port
listen_addresses = ''
unix_socket_directories = '$dir'
fsync = off
log_min_messages = warning
EOF
}
