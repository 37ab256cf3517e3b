#!/usr/bin/env bash
# Latency of the stateful proxy in its steady state, against the
# stateless one: a transaction lives 64*T1 (32 s) after its final (Timer
# J), so for the first 32 s of load every transaction is new memory; after
# that, slots and pages are reused. Each round starts sipshard (one shard,
# --io mmsg, pinned to CPU 0), warms it with RATE OPTIONS/s for WARM
# seconds (default 40), then measures RATE/s for SECONDS (default 10) with
# a second generator run (pinned to CPU 1); both modes alternate within
# each round.
#
#   scripts/stateful-steady.sh [ROUNDS] [RATE] [WARM] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
rate=${2:-10000}
warm=${3:-40}
secs=${4:-10}
cargo build --release --quiet --bins
bin=target/release
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true; }
trap cleanup EXIT
echo "stateful-steady: nproc=$(nproc) kernel=$(uname -r) rate=$rate warm=${warm}s measured=${secs}s rounds=$rounds"
for r in $(seq 1 "$rounds"); do
  for mode in proxy stateful; do
    read -r port sink < <(free_ports 2)
    taskset -c 0 "$bin/sipshard" --listen "127.0.0.1:$port" --shards 1 --io mmsg --stats-interval 0 \
      --mode "$mode" --max-transactions 1000000 2>/dev/null &
    pid=$!
    sleep 0.5
    taskset -c 1 "$bin/sipshard-load" run --target "127.0.0.1:$port" --sink "127.0.0.1:$sink" \
      --rate "$rate" --duration "$warm" --flows 8 --kv > /dev/null
    res=$(taskset -c 1 "$bin/sipshard-load" run --target "127.0.0.1:$port" --sink "127.0.0.1:$sink" \
      --rate "$rate" --duration "$secs" --flows 8 --kv)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    pid=
    echo "round $r $mode: $res"
  done
done
