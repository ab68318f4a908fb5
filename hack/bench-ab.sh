#!/usr/bin/env bash
# bench-ab.sh: one bench scenario run alternately against the portals of two
# revisions, on one broker, so that a difference between them can be told
# from the machine's noise (a busy 2-core machine moves tail latencies by
# hundreds of milliseconds between two runs of the same binary).
#
#   hack/bench-ab.sh [-n RUNS] [-s SCENARIO] [-k KEYS] REV_A [REV_B] [-- BENCH_FLAGS...]
#
# REV_B defaults to the working tree. Each revision is built with its own
# bench (the portal's configuration format changes between revisions), into
# bin/ab/REV. Prints one line per run and the median of each key per side.
# KEYS: comma-separated JSON keys of the scenario's --json line (default:
# overhead_p50_ms,overhead_p99_ms,overhead_max_ms). Needs python3 for the
# summary. The broker is hack/kafka.sh's (started if needed, left running).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3 scenario=overhead keys=overhead_p50_ms,overhead_p99_ms,overhead_max_ms
while getopts "n:s:k:" o; do
  case $o in
    n) runs=$OPTARG ;;
    s) scenario=$OPTARG ;;
    k) keys=$OPTARG ;;
    *) sed -n '2,16p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -ge 1 ]] || { sed -n '2,16p' "$0" >&2; exit 2; }
rev_a=$1; shift
rev_b=worktree
if [[ $# -gt 0 && $1 != -- ]]; then rev_b=$1; shift; fi
[[ ${1:-} == -- ]] && shift

# build REV DIR: the portal and the bench of REV ("worktree": this tree).
build() {
  local rev=$1 out=$2 src
  mkdir -p "$out"
  if [[ $rev == worktree ]]; then
    src=$PWD
  else
    src=$(mktemp -d)
    git worktree add -q --detach "$src" "$rev"
  fi
  (cd "$src" && go build -o "$out/portal" ./cmd/portal && go build -o "$out/kafkasend" ./cmd/kafkasend)
  if [[ $rev != worktree ]]; then
    git worktree remove --force "$src"
  fi
}

root=$PWD/bin/ab
for rev in "$rev_a" "$rev_b"; do
  echo "bench-ab: building $rev" >&2
  build "$rev" "$root/$rev"
done
brokers=$(hack/kafka.sh start)
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for i in $(seq 1 "$runs"); do
  for side in A B; do
    rev=$rev_a
    [[ $side == B ]] && rev=$rev_b
    line=$("$root/$rev/kafkasend" bench --scenario "$scenario" --brokers "$brokers" \
      --portal-bin "$root/$rev/portal" --json "$@" 2>/dev/null | tail -1)
    printf '%s\t%s\t%s\n' "$side" "$rev" "$line" >>"$results"
    echo "bench-ab: run $i $side ($rev) done" >&2
  done
done
python3 - "$results" "$keys" <<'PY'
import json, statistics, sys
path, keys = sys.argv[1], sys.argv[2].split(",")
rows = {}
for line in open(path):
    side, rev, js = line.rstrip("\n").split("\t", 2)
    d = json.loads(js)
    rows.setdefault((side, rev), []).append(d)
    print(side, rev, " ".join(f"{k}={d.get(k)}" for k in keys + ["lost", "duplicates"]))
for (side, rev), ds in rows.items():
    med = {k: statistics.median(d[k] for d in ds if isinstance(d.get(k), (int, float))) for k in keys}
    print(f"median {side} {rev} ({len(ds)} runs):", " ".join(f"{k}={v:g}" for k, v in med.items()))
PY
