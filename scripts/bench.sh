#!/usr/bin/env bash
# Benchmarks, summarised for perf/RESULTS.md.
#
#   scripts/bench.sh [ROUNDS] [CPU]       parser and writer against rsip (below)
#
# Each round runs the whole criterion bench `benches/parse.rs` once (so
# sipshard and rsip alternate within a round on the same messages), pinned
# to CPU (default: the last one) with taskset. The summary gives, for every
# benchmark, min/median/max over the rounds of criterion's median estimate,
# and the rsip/sipshard ratio computed within each round. It then counts
# instructions with callgrind on examples/parse_loop, which is repeatable on
# a noisy machine. Output: a Markdown section on stdout and in
# perf/results/parse-<date>-<commit>.md.
#
#   scripts/bench.sh load [ROUNDS] [RATE] [SECONDS]   forwarding load against
#                                                     the bare relay (scripts/load.sh)
#   scripts/bench.sh max [SECONDS] [RATES...]         highest rate with < 0.1% loss
#                                                     (scripts/load-max.sh)
#   scripts/bench.sh --quick                          the Kamailio comparison in about a
#                                                     minute and a half (scripts/compare.sh
#                                                     --quick; what .ci/run runs)
#   scripts/bench.sh registrar [ROUNDS_A] [ROUNDS_B] [RUNS_C]   registrations/s,
#                                                     lookup-heavy forwarding, bytes per
#                                                     binding (scripts/bench-registrar.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  load) shift; exec scripts/load.sh "$@" ;;
  max) shift; exec scripts/load-max.sh "$@" ;;
  registrar) shift; exec scripts/bench-registrar.sh "$@" ;;
  --quick) exec scripts/compare.sh --quick ;;
esac

rounds=${1:-5}
cpu=${2:-$(( $(nproc) - 1 ))}
stamp=$(date -u +%Y-%m-%dT%H%MZ)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo "+dirty" || true)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p perf/results
out="perf/results/parse-${stamp}-${commit}${dirty}.md"

pin=()
command -v taskset >/dev/null && pin=(taskset -c "$cpu")

# Build once and run that binary every round, so an edit made while the
# rounds run cannot mix two versions of the code into one result.
exe=$(cargo bench --bench parse --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "parse":
        print(m["executable"])')
[ -x "$exe" ] || { echo "bench binary not built" >&2; exit 1; }
for r in $(seq 1 "$rounds"); do
  echo "round $r/$rounds ..." >&2
  "${pin[@]}" "$exe" --bench --noplot --warm-up-time 1 --measurement-time 3 >/dev/null 2>&1
  python3 - "$work/round$r.json" <<'PY'
import json, os, sys, glob
res = {}
for est in glob.glob("target/criterion/*/*/new/estimates.json"):
    bench = json.load(open(os.path.join(os.path.dirname(est), "benchmark.json")))
    res[bench["group_id"] + "/" + bench["function_id"]] = json.load(open(est))["median"]["point_estimate"]
json.dump(res, open(sys.argv[1], "w"))
PY
done

cargo build --release --example parse_loop >/dev/null 2>&1
callgrind=""
if command -v valgrind >/dev/null; then
  for mode in tokenize read forward; do
    n=$(valgrind --tool=callgrind --callgrind-out-file="$work/cg" \
          target/release/examples/parse_loop tests/data/invite_softphone.sip 10000 "$mode" 2>&1 \
        | sed -n 's/.*refs: *//p' | tr -d ,)
    callgrind+="| ${mode} | $(( n / 10000 )) |"$'\n'
  done
fi

python3 - "$rounds" "$work" "$cpu" "$commit$dirty" "$stamp" "$callgrind" <<'PY' | tee "$out"
import json, statistics, subprocess, sys
rounds, work, cpu, commit, stamp, callgrind = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
runs = [json.load(open(f"{work}/round{r}.json")) for r in range(1, rounds + 1)]
def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
cpu_model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
print(f"### Parser and writer, {stamp}, commit {commit}\n")
print(f"Machine: `nproc`={sh('nproc')}, kernel {sh('uname -r')}, CPU {cpu_model}; bench pinned to CPU {cpu}.")
print(f"Command: `scripts/bench.sh {rounds} {cpu}` ({rounds} rounds of `cargo bench --bench parse`, "
      "criterion median per round; ns per message).\n")
print("| benchmark | sipshard min / median / max (ns) | rsip min / median / max (ns) | rsip / sipshard (median of per-round ratios) |")
print("|---|---|---|---|")
groups = sorted({k.rsplit("/", 1)[0] for k in runs[0]})
def fmt(xs):
    return f"{min(xs):.0f} / {statistics.median(xs):.0f} / {max(xs):.0f}"
for g in groups:
    ours = [r.get(f"{g}/sipshard") for r in runs]
    peer = [r.get(f"{g}/rsip") for r in runs]
    if None in ours:
        continue
    line = f"| {g} | {fmt(ours)} |"
    if None not in peer:
        ratios = [p / o for p, o in zip(peer, ours)]
        line += f" {fmt(peer)} | {statistics.median(ratios):.1f}x |"
    else:
        line += " - | - |"
    print(line)
if callgrind:
    print("\nInstructions per message (callgrind, `examples/parse_loop`, typical INVITE, 10,000 iterations; repeatable):\n")
    print("| mode | instructions |\n|---|---|")
    print(callgrind.strip())
PY
echo "written: $out" >&2
# RECORD=1 appends the section to perf/RESULTS.md as well.
if [ "${RECORD:-0}" = 1 ]; then
  { echo; cat "$out"; } >> perf/RESULTS.md
  echo "appended to perf/RESULTS.md" >&2
fi
