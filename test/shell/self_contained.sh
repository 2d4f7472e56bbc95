#!/bin/bash
# The repository explains itself: no tracked file refers to documents kept
# outside it (a sibling "shared" directory, the product's contract, design
# or style documents under their own names, a private note in /tmp) or to
# tracker numbers; LICENSE is there; docs/events.md describes every topic
# that has a schema in docs/schemas/; and the relative links of the
# Markdown documents lead to files that exist.
#
# Released SQL scripts (sql/<ext>--<version>.sql, sql/<ext>--<from>--<to>.sql)
# are never edited, so they are left out of the first check.  The pattern
# is put together from pieces, so that this file does not match it.
set -u
cd "$(dirname "$0")/../.."
. test/tap.sh
echo "1..4"

dot='\.'
md="${dot}md"
pattern="${dot}${dot}/shared|/tmp/consumer""-api|[Ii]ss""ue [0-9]|(EVENTS|DESIGN|STYLE)$md"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	hits=$(git grep -nE "$pattern" -- . ':(exclude)sql/*--*.sql')
	[ -z "$hits" ]
	ok $? "no tracked file refers to documents outside the repository or to tracker numbers"
	[ -n "$hits" ] && diag "$hits"
else
	skip "no tracked file refers to documents outside the repository or to tracker numbers" \
		"not a git work tree"
fi

[ -s LICENSE ] && grep -q '^PostgreSQL License' LICENSE &&
	grep -q 'Permission to use, copy, modify, and distribute this software' LICENSE
ok $? "LICENSE holds the PostgreSQL License"

# Every <topic>.v<major>.schema.json: a heading of docs/events.md names the
# topic, and the page links the file.
undescribed=""
for f in docs/schemas/*.v*.schema.json; do
	[ -e "$f" ] || continue
	file=${f##*/}
	topic=${file%%.v*}
	if ! grep -qE "^#+ .*\`$topic\`" docs/events.md || ! grep -qF "schemas/$file" docs/events.md; then
		undescribed="$undescribed $file"
	fi
done
[ -f docs/events.md ] && [ -z "$undescribed" ]
ok $? "docs/events.md has a section for the topic of every schema file, and links the file"
[ -n "$undescribed" ] && diag "not described in docs/events.md:$undescribed"

# Relative links: [text](target) and reference definitions "[x]: target".
broken=""
for doc in README.md BIRDWATCH.md workers/README.md docs/*.md; do
	[ -f "$doc" ] || continue
	dir=$(dirname "$doc")
	while IFS= read -r target; do
		target=${target%%#*}
		case "$target" in
			'' | http://* | https://* | mailto:*) continue ;;
		esac
		[ -e "$dir/$target" ] || broken="$broken $doc:$target"
	done < <(grep -oE '\]\([^)[:space:]]+\)' "$doc" | sed 's/^](//; s/)$//'
	         grep -oE '^\[[^]]+\]: +[^[:space:]]+' "$doc" | sed 's/^[^:]*: *//')
done
[ -z "$broken" ]
ok $? "every relative link of README.md, BIRDWATCH.md, workers/README.md and docs/ leads to a file"
[ -n "$broken" ] && diag "broken links:$broken"

exit $((fails > 0))
