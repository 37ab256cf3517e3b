#!/usr/bin/env bash
# Highest forwarding rate with < 0.1% loss, one shard against the relay.
#
#   scripts/load-max.sh [SECONDS] [RATES...]
#
# For the bare relay and for sipshard with one shard on each backend (target
# pinned to CPU 0, `sipshard-load run --flows 8` pinned to CPU 1), offers
# each rate (requests/s; default 25k to 200k) for SECONDS (default 3) and
# climbs until loss reaches 0.1%. On 2 cores the generator has one core, so
# the relay's ceiling is also the generator's: read sipshard's figure
# against the relay's from the same run. Output: a Markdown section on
# stdout and in perf/results/load-max-<date>-<commit>.md.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3}
shift || true
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(25000 50000 75000 100000 125000 150000 200000)
cargo build --release --quiet --bins
bin=target/release
stamp=$(date -u +%Y-%m-%dT%H%MZ)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && commit="$commit+dirty"
mkdir -p perf/results
out="perf/results/load-max-${stamp}-${commit}.md"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# free_ports.
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

{
echo "### Highest rate with < 0.1% loss, $stamp, commit $commit"
echo
echo "Machine: \`nproc\`=$(nproc), kernel $(uname -r). Command: \`scripts/load-max.sh $secs ${rates[*]}\`;"
echo "target on CPU 0, generator (\`sipshard-load run --flows 8\`) on CPU 1, $secs s per step, one run per step."
echo
echo "| target | highest offered rate with loss < 0.1% (requests/s) | answered/s there | p99 µs there | first failing step |"
echo "|---|---|---|---|---|"
} > "$out.tmp"

for c in "relay" "mmsg" "uring"; do
  best="-"; best_ans="-"; best_p99="-"; fail="none"
  for rate in "${rates[@]}"; do
    read -r port sink < <(free_ports 2)
    if [ "$c" = relay ]; then
      taskset -c 0 "$bin/sipshard-load" relay --listen "127.0.0.1:$port" --to "127.0.0.1:$sink" \
        --duration $((secs + 30)) 2>/dev/null &
    else
      taskset -c 0 "$bin/sipshard" --listen "127.0.0.1:$port" --shards 1 --io "$c" --stats-interval 0 2>/dev/null &
    fi
    pid=$!
    sleep 0.4
    res=$(taskset -c 1 "$bin/sipshard-load" run --target "127.0.0.1:$port" --sink "127.0.0.1:$sink" \
      --rate "$rate" --duration "$secs" --flows 8 --kv)
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    loss=$(sed -n 's/.*loss_pct=\([0-9.]*\).*/\1/p' <<<"$res")
    echo "$c $rate: $res" >&2
    if python3 -c "import sys; sys.exit(0 if float('$loss') < 0.1 else 1)"; then
      best=$rate
      best_ans=$(sed -n 's/.*achieved_per_s=\([0-9]*\).*/\1/p' <<<"$res")
      best_p99=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$res")
    else
      fail="$rate ($loss% lost)"
      break
    fi
  done
  name=$([ "$c" = relay ] && echo "bare UDP relay" || echo "sipshard --io $c --shards 1")
  echo "| $name | $best | $best_ans | $best_p99 | $fail |" >> "$out.tmp"
done
mv "$out.tmp" "$out"
cat "$out"
echo "written: $out" >&2
# RECORD=1 appends the section to perf/RESULTS.md as well.
if [ "${RECORD:-0}" = 1 ]; then
  { echo; cat "$out"; } >> perf/RESULTS.md
  echo "appended to perf/RESULTS.md" >&2
fi
