#!/usr/bin/env bash
# Kernel entries and sleeps per datagram of one shard, per I/O backend.
#
#   scripts/kernel-entries.sh [RATES] [SECONDS]
#
# For each rate (default "2000 10000 40000" requests/s) and backend (mmsg,
# uring), alternated: sipshard with one shard pinned to CPU 0, the load
# generator (`sipshard-load run --flows 8`, OPTIONS and their 200s) pinned
# to CPU 1 for SECONDS (default 5). Counted over the load only:
#
# - entries: the shard's `io_uring_enter`, `recvmmsg` and `sendmmsg`
#   calls, from `perf stat` syscall tracepoints (strace slows the loop
#   enough to change the batches it counts);
# - sleeps: the process's voluntary context switches (/proc/PID/task/*/
#   status), each a wait that found nothing to do;
# - CPU: utime+stime ticks of the server (one run: noisy, for the shape;
#   scripts/load.sh measures CPU properly).
#
# All divided by the datagrams the shard received. Needs `perf` with
# tracepoint access (root or perf_event_paranoid <= -1); exits 77 without.
# Output: a Markdown table on stdout and in perf/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
rates=${1:-2000 10000 40000}
secs=${2:-5}
command -v perf >/dev/null || { echo "kernel-entries: skipped: no perf" >&2; exit 77; }
events=syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg
perf stat -e "$events" -- true >/dev/null 2>&1 || {
  echo "kernel-entries: skipped: perf cannot read syscall tracepoints here" >&2
  exit 77
}
cargo build --release --quiet --bins
work=$(mktemp -d)
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
sipshard_wrap=(taskset -c 0)
sleeps() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s}'; }

stamp=$(date -u +%Y-%m-%dT%H%MZ)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && commit="$commit+dirty"
mkdir -p perf/results
out="perf/results/kernel-entries-${stamp}-${commit}.md"
{
  echo "### Kernel entries per datagram, $stamp, commit $commit"
  echo
  echo "Machine: \`nproc\`=$(nproc), kernel $(uname -r). Command: \`scripts/kernel-entries.sh \"$rates\" $secs\`."
  echo
  echo "| requests/s | backend | entries per datagram | sleeps per datagram | CPU µs per message (one run) | datagrams |"
  echo "|---|---|---|---|---|---|"
} > "$out"
tck=$(getconf CLK_TCK)
for rate in $rates; do
  for io in mmsg uring; do
    start_sipshard "$work/target.log" --listen 127.0.0.1:0 --shards 1 --io "$io" --stats-interval 0
    sink=$(free_port 127.0.0.1)
    s0=$(sleeps "$sipshard_pid"); c0=$(cpu_ticks "$sipshard_pid")
    perf stat -x, -e "$events" -p "$sipshard_pid" -o "$work/perf.csv" -- sleep "$((secs + 1))" &
    perf_pid=$!
    taskset -c 1 target/release/sipshard-load run --target "$sipshard_addr" --sink "127.0.0.1:$sink" \
      --rate "$rate" --duration "$secs" --flows 8 --kv > "$work/load.kv"
    wait "$perf_pid"
    s1=$(sleeps "$sipshard_pid"); c1=$(cpu_ticks "$sipshard_pid")
    stop_sipshard "$work/target.log"
    python3 - "$rate" "$io" "$work/perf.csv" "$exit_line" "$((s1 - s0))" "$((c1 - c0))" "$tck" >> "$out" <<'PY'
import re, sys
rate, io, csv, line, sleeps, ticks, tck = sys.argv[1:8]
entries = sum(int(f.split(",")[0]) for f in open(csv) if "syscalls:" in f and f.split(",")[0].isdigit())
kv = dict(re.findall(r"(\w+)=(\d+)", line))
rx = max(int(kv.get("received", 0)), 1)
fwd = max(int(kv.get("forwarded_requests", 0)) + int(kv.get("forwarded_responses", 0)), 1)
cpu = int(ticks) / int(tck) * 1e6 / fwd
print(f"| {int(rate):,} | {io} | {entries / rx:.3f} | {int(sleeps) / rx:.3f} | {cpu:.2f} | {rx:,} |")
PY
  done
done
cat "$out"
echo "written: $out" >&2
