#!/usr/bin/env bash
# SIPp interop: calls through sipshard between a SIPp UAC and a SIPp UAS.
#
#   scripts/interop.sh [CALLS] [RATE] [-- extra sipshard flags]
#
# Starts sipshard on loopback with --record-route, a SIPp UAS
# (perf/uas.xml) and a SIPp UAC (perf/uac.xml) placing CALLS calls (default
# 300) at RATE calls/s (default 100); each call is INVITE, 100, 180, 200,
# ACK, BYE, 200, with ACK and BYE loose-routed back through the proxy. Fails
# unless every call completes on both sides and sipshard exits 0 on
# SIGTERM. Exits 77 (skipped) when sipshard was asked for --io uring and
# io_uring is refused here. Logs go to perf/results/interop-<time>/. Needs
# `sipp` (Debian package sip-tester).
set -euo pipefail
cd "$(dirname "$0")/.."

calls=${1:-300}
rate=${2:-100}
shift $(( $# > 2 ? 2 : $# )) || true
[ "${1:-}" = "--" ] && shift
extra=("$@")

command -v sipp >/dev/null || { echo "sipp not found: apt-get install -y sip-tester" >&2; exit 2; }
cargo build --release --quiet
bin=target/release/sipshard

out="perf/results/interop-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"

# Free ports on loopback, chosen by the kernel.
read -r proxy_port uas_port uac_port < <(python3 - <<'PY'
import socket
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$bin" --listen "127.0.0.1:$proxy_port" --record-route "${extra[@]}" 2> "$out/sipshard.log" &
proxy_pid=$!
pids+=("$proxy_pid")
sleep 0.5
if ! kill -0 "$proxy_pid" 2>/dev/null; then
  if grep -q "io_uring is not available" "$out/sipshard.log"; then
    echo "interop: skipped: $(tail -n 1 "$out/sipshard.log")"
    exit 77
  fi
  echo "interop: sipshard did not start:" >&2
  cat "$out/sipshard.log" >&2
  exit 1
fi

timeout 300 sipp -sf perf/uas.xml -i 127.0.0.1 -p "$uas_port" -m "$calls" -nostdin \
  -trace_err -error_file "$out/uas_errors.log" -trace_stat -stf "$out/uas_stat.csv" \
  > "$out/uas.log" 2>&1 &
uas_pid=$!
pids+=("$uas_pid")
sleep 0.5

echo "interop: $calls calls at $rate/s: SIPp UAC :$uac_port -> sipshard :$proxy_port -> SIPp UAS :$uas_port"
set +e
timeout 300 sipp -sf perf/uac.xml -i 127.0.0.1 -p "$uac_port" -s bob -key uas "127.0.0.1:$uas_port" \
  -m "$calls" -r "$rate" -nostdin -timeout 240s -timeout_error \
  -trace_err -error_file "$out/uac_errors.log" -trace_stat -stf "$out/uac_stat.csv" \
  "127.0.0.1:$proxy_port" > "$out/uac.log" 2>&1
uac_rc=$?
wait "$uas_pid"
uas_rc=$?
kill -TERM "$proxy_pid"
wait "$proxy_pid"
proxy_rc=$?
set -e

# The last line of the UAC's statistics: successful and failed calls.
summary=$(python3 - "$out/uac_stat.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=";"))
head, last = rows[0], rows[-1]
get = lambda name: last[head.index(name)]
print(f"successful={get('SuccessfulCall(C)')} failed={get('FailedCall(C)')}")
PY
)
echo "interop: UAC exit $uac_rc, UAS exit $uas_rc, sipshard exit $proxy_rc; $summary"
tail -n 1 "$out/sipshard.log"
if [ "$uac_rc" -ne 0 ] || [ "$uas_rc" -ne 0 ] || [ "$proxy_rc" -ne 0 ] || [ "$summary" != "successful=$calls failed=0" ]; then
  echo "interop: FAILED (logs in $out)" >&2
  exit 1
fi
echo "interop: OK (logs in $out)"
