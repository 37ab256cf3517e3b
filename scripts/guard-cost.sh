#!/usr/bin/env bash
# What the access checks cost per forwarded message: sipshard as a plain
# proxy against the same with every check on (--allow, --deny,
# --drop-scanners, --rate-limit high enough never to trigger), alternated
# within each round.
#
#   scripts/guard-cost.sh [ROUNDS] [RATE] [SECONDS] [IO]
#
# sipshard --shards 1 pinned to CPU 0; `sipshard-load run --flows 8` pinned
# to CPU 1 offering RATE requests/s (default 20000) for SECONDS (default 5).
# CPU per forwarded message = utime+stime of sipshard (/proc/PID/stat) /
# (requests + responses forwarded, from its exit line). Prints a Markdown
# table, min / median / max over ROUNDS (default 3); RECORD=1 appends it to
# perf/RESULTS.md. Loopback only; processes stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
rate=${2:-20000}
secs=${3:-5}
io=${4:-mmsg}
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp target/release/sipshard target/release/sipshard-load "$work/"
tick=$(getconf CLK_TCK)
guarded=(--allow 0.0.0.0/0 --allow ::/0 --deny 198.51.100.0/24 --drop-scanners --rate-limit 1000000)

# pids, forget, cpu_ticks, start_sipshard, stop_sipshard.
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
sipshard_bin=$work/sipshard
sipshard_wrap=(taskset -c 0)

# measure FLAGS...: CPU µs per forwarded message of a fresh sipshard with
# FLAGS (run in $(...): its server is started and stopped inside).
measure() {
  local t0 t1 fr fs
  start_sipshard "$work/srv.log" --listen 127.0.0.1:0 --shards 1 --io "$io" --stats-interval 0 "$@"
  t0=$(cpu_ticks "$sipshard_pid")
  taskset -c 1 "$work/sipshard-load" run --target "$sipshard_addr" --rate "$rate" --duration "$secs" --flows 8 --kv > "$work/load.out"
  t1=$(cpu_ticks "$sipshard_pid")
  stop_sipshard "$work/srv.log"
  fr=$(grep -o 'forwarded_requests=[0-9]*' <<<"$exit_line" | cut -d= -f2)
  fs=$(grep -o 'forwarded_responses=[0-9]*' <<<"$exit_line" | cut -d= -f2)
  python3 -c "print(round(($t1-$t0)/$tick*1e6/($fr+$fs), 3))"
}

plain=(); guard=(); ratio=()
for r in $(seq 1 "$rounds"); do
  a=$(measure); b=$(measure "${guarded[@]}")
  echo "round $r: plain $a us, guarded $b us" >&2
  plain+=("$a"); guard+=("$b"); ratio+=("$(python3 -c "print(round($b/$a, 3))")")
done
stat() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {printf "%s / %s / %s", a[1], a[int((NR+1)/2)], a[NR]}'; }
section=$(cat <<MD

### Cost of the access checks, $(date -u +%Y-%m-%dT%H%MZ), commit $(git rev-parse --short HEAD)

Machine: \`nproc\`=$(nproc), kernel $(uname -r). Command: \`scripts/guard-cost.sh $rounds $rate $secs $io\`
(sipshard --shards 1 --io $io on CPU 0, generator on CPU 1, $rate requests/s for $secs s, alternated per round;
guarded = \`${guarded[*]}\`).

| target | CPU per forwarded message, µs (min / median / max) |
|---|---|
| plain proxy | $(stat "${plain[@]}") |
| every access check on | $(stat "${guard[@]}") |
| ratio guarded / plain (per round) | $(stat "${ratio[@]}") |
MD
)
echo "$section"
if [ "${RECORD:-0}" = 1 ]; then echo "$section" >> perf/RESULTS.md; fi
