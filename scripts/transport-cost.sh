#!/usr/bin/env bash
# CPU per call through sipshard with the caller on UDP and on TCP: what a
# TCP connection costs the proxy next to a datagram.
#
#   scripts/transport-cost.sh [ROUNDS] [CALLS] [RATE] [IO]
#
# Defaults: 3 rounds of 3,000 strict SIPp calls at 300 calls/s, --io mmsg.
# One shard pinned to CPU 0 (--record-route, a udp and a tcp listen); the
# SIPp UAC and UAS on CPU 1. Each round runs the UDP caller (`-t u1`) and
# the TCP caller (`-t t1`, one connection) in turn, the UAS on UDP both
# times, so the TCP run carries the same 7 messages per call and differs
# only in the caller's leg. CPU = utime+stime of sipshard (/proc/PID/stat)
# over the run, per call. Prints min/median/max per transport and the
# ratio of the medians (TCP/UDP). Only loopback; every run is bounded by
# SIPp's call count and a time limit.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-3}
calls=${2:-3000}
rate=${3:-300}
io=${4:-mmsg}

command -v sipp >/dev/null || { echo "sipp not found: apt-get install -y sip-tester" >&2; exit 2; }
cargo build --release --quiet

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
sipshard_wrap=(taskset -c 0)
limit=$(( 60 + 2 * calls / rate ))
hz=$(getconf CLK_TCK)
out=$(mktemp -d)

# one MODE: one run with the UAC on `-t MODE`; prints microseconds of
# sipshard CPU per call.
one() {
  local mode=$1 uas_port uac_port target rc=0 before after ok
  start_sipshard "$out/sipshard.log" --shards 1 --io "$io" --listen 127.0.0.1:0 \
    --listen tcp:127.0.0.1:0 --record-route
  target=$sipshard_addr
  if [ "$mode" = t1 ]; then
    target=$(sed -n 's/.*, \([^ ]*\) (tcp).*/\1/p' "$out/sipshard.log" | head -n 1)
  fi
  read -r uas_port uac_port <<< "$(free_ports 2)"
  taskset -c 1 timeout "$limit" sipp -sf perf/uas.xml -i 127.0.0.1 -p "$uas_port" -m "$calls" \
    -nostdin > "$out/uas.log" 2>&1 &
  local uas_pid=$!
  pids+=("$uas_pid")
  sleep 0.5
  before=$(cpu_ticks "$sipshard_pid")
  taskset -c 1 timeout "$limit" sipp -t "$mode" -sf perf/uac.xml -s bob -key uas "127.0.0.1:$uas_port" \
    -i 127.0.0.1 -p "$uac_port" -m "$calls" -r "$rate" -nostdin -trace_stat -stf "$out/uac_stat.csv" \
    "$target" > "$out/uac.log" 2>&1 || rc=$?
  after=$(cpu_ticks "$sipshard_pid")
  wait "$uas_pid" 2>/dev/null || true
  stop_sipshard "$out/sipshard.log"
  ok=$(sipp_stats "$out/uac_stat.csv")
  # A call lost on the loaded generator CPU is reported, not fatal: the
  # CPU figure still holds for the messages that went through.
  if [ "$rc" != 0 ] || [ "$ok" != "successful=$calls failed=0" ]; then
    echo "transport-cost: $mode run: UAC exit $rc; $ok" >&2
  fi
  # ticks -> microseconds per call
  echo $(( (after - before) * 1000000 / hz / calls ))
}

udp=()
tcp=()
for r in $(seq "$rounds"); do
  udp+=("$(one u1)")
  tcp+=("$(one t1)")
  echo "transport-cost: round $r: udp ${udp[-1]} us/call, tcp ${tcp[-1]} us/call"
done
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%d / %d / %d", a[1], a[int((NR+1)/2)], a[NR]}'; }
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "$rounds rounds of $calls calls at $rate/s, --io $io, 1 shard on CPU 0, SIPp on CPU 1 (nproc $(nproc), $(uname -r)):"
echo "| caller | sipshard CPU per call, us (min / median / max) |"
echo "|---|---|"
echo "| UDP (-t u1) | $(stats "${udp[@]}") |"
echo "| TCP (-t t1) | $(stats "${tcp[@]}") |"
python3 -c "import sys; print(f'TCP/UDP, medians: {int(sys.argv[2]) / max(1, int(sys.argv[1])):.2f}')" "$(med "${udp[@]}")" "$(med "${tcp[@]}")"
rm -rf "$out"
