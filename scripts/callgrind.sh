#!/usr/bin/env bash
# scripts/callgrind.sh [REV...]: instructions per message of
# examples/shard_loop under callgrind (perf/RESULTS.md, "Profiling the hot
# path with callgrind"), for each revision given (default HEAD), and the
# ratio last/first.
#
# Each revision is checked out into a temporary worktree under
# ${TMPDIR:-/tmp}, removed at the end; builds share CARGO_TARGET_DIR
# (default ${TMPDIR:-/tmp}/sipshard-cg-target), so dependencies are built
# once. Environment: N (messages per scenario, 20000), SCENARIOS (default
# "forward options register refresh"), CG_OUT (a directory to keep the
# callgrind.out files in, named SCENARIO.COMMIT.out, for callgrind_annotate).
set -euo pipefail

n=${N:-20000}
read -ra scenarios <<<"${SCENARIOS:-forward options register refresh}"
[ $# -gt 0 ] || set -- HEAD
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sipshard-cg.XXXXXX")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/sipshard-cg-target}
out=${CG_OUT:-$tmp/out}
mkdir -p "$out"

made=()
cleanup() {
  local wt
  for wt in "${made[@]}"; do git worktree remove --force "$wt" || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# Resolve every revision first, so a branch that moves meanwhile is read once.
commits=()
for rev in "$@"; do commits+=("$(git rev-parse --short=7 "$rev^{commit}")"); done

for c in "${commits[@]}"; do
  wt=$tmp/wt-$c
  git worktree add --quiet --detach "$wt" "$c"
  made+=("$wt")
  echo "== $c: building" >&2
  (cd "$wt" && cargo build --quiet --release --example shard_loop)
  # Every revision's build writes the same path; keep this one's.
  cp "$CARGO_TARGET_DIR/release/examples/shard_loop" "$tmp/shard_loop-$c"
  for s in "${scenarios[@]}"; do
    echo "== $c: $s $n" >&2
    f=$out/$s.$c.out
    valgrind --tool=callgrind --toggle-collect='*shard_loop::measure*' \
      --callgrind-out-file="$f" --log-file="$tmp/valgrind.log" \
      "$tmp/shard_loop-$c" "$s" "$n" >/dev/null
    printf '%s %s %s\n' "$s" "$c" "$(awk '/^totals:/ {print $2}' "$f")" >>"$tmp/ir"
  done
done

# One row per scenario: instructions per message for each revision, in the
# order given, and last/first.
awk -v n="$n" -v revs="${commits[*]}" '
  { ir[$1, $2] = $3; if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
  END {
    m = split(revs, r, " ")
    printf "| scenario |"; for (i = 1; i <= m; i++) printf " %s |", r[i]
    print " last/first |"
    printf "|---|"; for (i = 1; i <= m; i++) printf "---:|"; print "---:|"
    for (j = 1; j <= k; j++) {
      s = order[j]; printf "| %s |", s
      for (i = 1; i <= m; i++) printf " %.0f |", ir[s, r[i]] / n
      printf " %.4f |\n", ir[s, r[m]] / ir[s, r[1]]
    }
  }' "$tmp/ir"
