#!/usr/bin/env bash
# Memory per open INVITE transaction under --mode stateful.
#
#   scripts/tx-memory.sh [N] [ROUNDS]
#
# Each round starts sipshard (--mode stateful, one shard, --io mmsg) on
# loopback and a callee that never answers (so every transaction stays
# open, in Calling, retransmitting), sends it N INVITEs (default 10,000)
# of a usual size (an SDP offer, about 900 bytes) with distinct Call-IDs,
# paced, waits until sipshard_transactions_open says N, and reads the
# process's VmRSS before and after. Bytes per transaction = the growth / N.
# With TX_ANSWERED=1 the callee answers every INVITE 200 at once instead:
# the transactions have finished and linger (Timers L and M, 32 s), which
# is what most of a busy shard's table holds. SIPSHARD_BIN runs another
# build (an A/B of two commits).
# Prints one line per round and the min/median/max; everything is done
# within Timer B (32 s), before the first transaction ends. Run it in a
# network namespace of its own (unshare -rn, then ip link set lo up).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
rounds=${2:-3}
answered=${TX_ANSWERED:-0}
state=open
[ "$answered" = 1 ] && state="finished (answered 200)"
cargo build --release --quiet
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

out="perf/results/tx-memory-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

per=()
for r in $(seq 1 "$rounds"); do
  read -r mport <<< "$(free_ports 1)"
  start_sipshard "$out/sipshard-$r.log" --listen 127.0.0.1:0 --mode stateful --shards 1 --io mmsg \
    --max-transactions $(( 2 * n )) --metrics-listen "127.0.0.1:$mport"
  sleep 0.5
  rss0=$(rss_kb "$sipshard_pid")
  timeout 60 python3 - "$sipshard_addr" "$n" "$answered" <<'EOF'
import socket, sys, threading, time
host, port = sys.argv[1].rsplit(":", 1)
proxy, n, answered = (host, int(port)), int(sys.argv[2]), sys.argv[3] == "1"
callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
callee.bind(("127.0.0.1", 0))  # unless answered: never read, never answers

def answer():
    """200 to every INVITE: its Vias, From, To (tagged), Call-ID, CSeq."""
    callee.settimeout(5)
    for _ in range(n):
        try:
            data, peer = callee.recvfrom(65536)
        except socket.timeout:
            return
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        keep = [h for h in head[1:] if h.split(b":", 1)[0].lower()
                in (b"via", b"from", b"call-id", b"cseq")]
        to = [h + b";tag=b" for h in head[1:] if h.lower().startswith(b"to:")]
        callee.sendto(b"\r\n".join([b"SIP/2.0 200 OK"] + keep + to
                                     + [b"Content-Length: 0", b"", b""]), peer)

if answered:
    threading.Thread(target=answer, daemon=True).start()
caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
caller.bind(("127.0.0.1", 0))
cport, uport = caller.getsockname()[1], callee.getsockname()[1]
sdp = ("v=0\r\no=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\ns=-\r\n"
       "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\n"
       "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
       "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n")
for k in range(n):
    msg = (f"INVITE sip:bob@127.0.0.1:{uport} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bKmem{k};rport\r\n"
           f"Max-Forwards: 70\r\nTo: <sip:bob@example.com>\r\n"
           f"From: \"Alice\" <sip:alice@example.com>;tag=a{k}\r\n"
           f"Call-ID: {k}-memory@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
           f"Contact: <sip:alice@127.0.0.1:{cport}>\r\n"
           f"User-Agent: tx-memory\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
           f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}")
    caller.sendto(msg.encode(), proxy)
    if k % 200 == 199:
        time.sleep(0.02)
print(f"sent {n} INVITEs of {len(msg)} bytes", file=sys.stderr)
if answered:
    time.sleep(1)
EOF
  open=0
  for _ in $(seq 1 40); do
    open=$(metric_sum "http://127.0.0.1:$mport/metrics" sipshard_transactions_open)
    [ "$open" = "$n" ] && break
    sleep 0.25
  done
  rss1=$(rss_kb "$sipshard_pid")
  stop_sipshard "$out/sipshard-$r.log"
  if [ "$open" != "$n" ]; then
    echo "tx-memory: round $r: $open transactions open, not $n" >&2
    exit 1
  fi
  b=$(( (rss1 - rss0) * 1024 / n ))
  per+=("$b")
  echo "tx-memory: round $r: n=$n rss ${rss0} -> ${rss1} kB: $b bytes per $state INVITE transaction"
done
sorted=$(printf '%s\n' "${per[@]}" | sort -n)
min=$(head -n 1 <<< "$sorted")
max=$(tail -n 1 <<< "$sorted")
med=$(sed -n "$(( (rounds + 1) / 2 ))p" <<< "$sorted")
echo "tx-memory: n=$n rounds=$rounds nproc=$(nproc) kernel=$(uname -r): bytes per $state INVITE transaction min $min median $med max $max"
