#!/usr/bin/env bash
# How long an owner's change takes to reach the other shards' replicas.
#
#   scripts/replica-delay.sh [ROUNDS] [USERS] [RATE] [SHARDS]
#
# For each backend (mmsg, uring) and round: a fresh `sipshard --shards
# SHARDS --domain example.com` pinned to CPUs 0-1, `sipshard-load register`
# of USERS new users at RATE/s over 8 flows pinned to CPU 1, then SIGTERM;
# the exit line's `replica_delay_max_us` is the longest any replica update
# took from the owner's publish to another shard's apply, over the run.
# Prints a Markdown table (min / median / max over the rounds); RECORD=1
# appends it to perf/RESULTS.md. Defaults: 3 rounds, 200000 users, 50000/s,
# 2 shards. Loopback only; every process started here is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
users=${2:-200000}
rate=${3:-50000}
shards=${4:-2}
cargo build --release --quiet
work=$(mktemp -d)
trap 'kill "${srv:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cp target/release/sipshard target/release/sipshard-load "$work/"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

rows=()
for io in mmsg uring; do
  delays=()
  for r in $(seq 1 "$rounds"); do
    taskset -c 0-1 "$work/sipshard" --listen 127.0.0.1:0 --shards "$shards" --io "$io" \
      --domain example.com --stats-interval 0 2> "$work/srv.log" &
    srv=$!
    for _ in $(seq 1 50); do grep -q "listening on" "$work/srv.log" && break; sleep 0.1; done
    if grep -q "io_uring is not available" "$work/srv.log"; then
      echo "skipping $io: $(head -n 1 "$work/srv.log")" >&2
      continue 2
    fi
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/srv.log" | head -n 1)
    timeout 120 taskset -c 1 "$work/sipshard-load" register --target "127.0.0.1:$port" \
      --users "$users" --rate "$rate" --flows 8 --kv > "$work/load.out"
    kill -TERM "$srv"
    timeout 10 tail --pid="$srv" -f /dev/null || true
    wait "$srv" || true
    d=$(grep -o 'replica_delay_max_us=[0-9]*' "$work/srv.log" | cut -d= -f2)
    ok=$(grep -o ' ok=[0-9]*' "$work/load.out" | cut -d= -f2)
    echo "$io round $r: replica_delay_max_us=$d ok=$ok of $users" >&2
    delays+=("$d")
  done
  [ ${#delays[@]} -gt 0 ] || continue
  stats=$(printf '%s\n' "${delays[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%d / %d / %d", a[1], a[int((NR+1)/2)], a[NR]}')
  rows+=("| $io | $stats |")
done

section=$(cat <<MD

### Replica propagation delay, $(date -u +%Y-%m-%dT%H%MZ), commit $commit

Machine: \`nproc\`=$(nproc), kernel $(uname -r). Command: \`scripts/replica-delay.sh $rounds $users $rate $shards\`:
$users REGISTERs of new users at $rate/s into \`--shards $shards\` (CPUs 0-1; generator on CPU 1);
the exit line's \`replica_delay_max_us\`, the longest publish-to-apply delay of any replica update in the run.

| backend | worst delay in a run, µs (min / median / max over $rounds runs) |
|---|---|
$(printf '%s\n' "${rows[@]}")
MD
)
echo "$section"
if [ "${RECORD:-0}" = 1 ]; then echo "$section" >> perf/RESULTS.md; fi
