#!/usr/bin/env bash
# What a REGISTER's hand-off to its AOR's owner shard costs, and so what
# steering REGISTERs by AOR in the kernel would save (docs/decisions.md).
#
#   scripts/handoff-cost.sh [USERS] [RATE] [ROUNDS]
#
# sipshard --shards 2 --steer call-id as registrar, both shards pinned to
# CPU 0, `sipshard-load register` on CPU 1. Alternates, ROUNDS times:
#   plain  - Call-IDs as they come: about half the REGISTERs land on the
#            other shard and are handed off through the mailbox;
#   owner  - `--call-id-to-owner 2`: each Call-ID chosen so that the kernel
#            steers it to its AOR's owner: none handed off.
# Prints CPU µs per REGISTER (utime+stime of sipshard over the storm /
# users bound) and the exit line's handed_off, per round, then min /
# median / max. Defaults: 100000 users at 20000/s, 3 rounds. Needs eBPF
# (exits 77 when --steer call-id falls back here).
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-100000}
rate=${2:-20000}
rounds=${3:-3}
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
cargo build --release --quiet
sipshard_bin=target/release/sipshard
sipshard_wrap=(taskset -c 0)
tck=$(getconf CLK_TCK)
declare -A cpu
for r in $(seq "$rounds"); do
  for mode in plain owner; do
    log=$(mktemp)
    start_sipshard "$log" --listen 127.0.0.1:0 --shards 2 --steer call-id --io mmsg \
      --domain example.com --expected-aors "$users" --stats-interval 0
    if ! grep -q "steer=call-id" "$log"; then
      echo "handoff-cost: --steer call-id unavailable here: $(grep -m1 unavailable "$log")"
      exit 77
    fi
    extra=()
    [ "$mode" = owner ] && extra=(--call-id-to-owner 2)
    before=$(cpu_ticks "$sipshard_pid")
    res=$(taskset -c 1 target/release/sipshard-load register --target "$sipshard_addr" \
      --users "$users" --rate "$rate" --flows 8 --retry-missing 3 --kv "${extra[@]}")
    after=$(cpu_ticks "$sipshard_pid")
    stop_sipshard "$log"
    bound=$(sed -n 's/.*bound=\([0-9]*\).*/\1/p' <<< "$res")
    handed=$(sed -n 's/.*handed_off=\([0-9]*\).*/\1/p' <<< "$exit_line")
    us=$(awk -v t=$((after - before)) -v b="$bound" -v h="$tck" 'BEGIN { printf "%.2f", t / h * 1e6 / b }')
    cpu[$mode]="${cpu[$mode]:-} $us"
    echo "round $r $mode: bound=$bound handed_off=$handed cpu_us_per_register=$us"
    rm -f "$log"
  done
done
for mode in plain owner; do
  read -ra v <<< "${cpu[$mode]}"
  sorted=$(printf '%s\n' "${v[@]}" | sort -g | tr '\n' ' ')
  echo "$mode: CPU µs per REGISTER (sorted): $sorted"
done
echo "machine: nproc $(nproc), $(uname -r), commit $(git rev-parse --short HEAD)"
