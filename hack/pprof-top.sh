#!/usr/bin/env bash
# Prints the top functions of a Go profile as a Markdown table, for
# docs/benchmarks.md (profiles from `kafkasend bench --profile DIR`).
#
#   hack/pprof-top.sh [-n N] [--cum] [--sample-index NAME] PROFILE [BASE]
#
#   -n N               rows (default 10)
#   --cum              order by cumulative instead of flat
#   --sample-index I   e.g. alloc_space, alloc_objects, inuse_space for an
#                      allocs profile (default: the profile's own: cpu for a
#                      CPU profile, inuse_space for allocs)
#   BASE               a profile to subtract (`go tool pprof -diff_base`),
#                      e.g. the same phase before a change
#
# Needs the Go toolchain (`go tool pprof`); profiles carry their symbols, so
# the portal binary is not needed.
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

n=10
order=()
index=()
while [ $# -gt 0 ]; do
	case "$1" in
	-n) [ $# -ge 2 ] || usage; n=$2; shift 2 ;;
	--cum) order=(-cum); shift ;;
	--sample-index) [ $# -ge 2 ] || usage; index=(-sample_index="$2"); shift 2 ;;
	-h|--help) usage ;;
	-*) echo "pprof-top.sh: unknown option $1" >&2; usage ;;
	*) break ;;
	esac
done
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
case "$n" in ''|*[!0-9]*) echo "pprof-top.sh: -n wants a number, got '$n'" >&2; exit 2 ;; esac
profile=$1
[ -r "$profile" ] || { echo "pprof-top.sh: cannot read $profile" >&2; exit 1; }
base=()
if [ $# -eq 2 ]; then
	[ -r "$2" ] || { echo "pprof-top.sh: cannot read $2" >&2; exit 1; }
	base=(-diff_base="$2")
fi

out=$(go tool pprof -top -nodecount="$n" "${order[@]}" "${index[@]}" "${base[@]}" "$profile" 2>&1) || {
	echo "pprof-top.sh: go tool pprof failed on $profile:" >&2
	echo "$out" >&2
	exit 1
}
printf '%s\n' "$out" | awk -v file="$(basename "$profile")" '
	/^Type: /     { type = substr($0, 7) }
	/^Duration: / { duration = $0 }
	/^Showing nodes accounting for/ { total = $0; sub(/^Showing nodes accounting for /, "", total) }
	/^ *flat +flat%/ { table = 1
		printf "`%s` (%s%s): %s\n\n", file, type, (duration != "" ? "; " duration : ""), total
		print "| flat | flat% | sum% | cum | cum% | function |"
		print "|---:|---:|---:|---:|---:|---|"
		next }
	table && NF >= 6 {
		fn = $6; for (i = 7; i <= NF; i++) fn = fn " " $i
		gsub(/\|/, "\\|", fn)
		printf "| %s | %s | %s | %s | %s | `%s` |\n", $1, $2, $3, $4, $5, fn }
	END { if (!table) { print "pprof-top.sh: no table in the output of go tool pprof" > "/dev/stderr"; exit 1 } }
'
