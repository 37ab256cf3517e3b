#!/usr/bin/env bash
# What sharing the location service through Redis costs (--cluster,
# docs/cluster.md): REGISTERs with the cluster on and off, the delay from
# a 200 at one node to the binding's use at another, and a starting node's
# load of a big table.
#
#   scripts/cluster-bench.sh [USERS] [RATE] [ROUNDS] [BIG...]
#
# 1. cost: sipshard (1 shard, pinned to CPU 0) as registrar, with and
#    without --cluster, alternately, ROUNDS times; `sipshard-load register`
#    USERS at RATE per second on CPU 1, with redis-server. CPU µs per
#    REGISTER of sipshard (and of redis-server when on), and the p99 of the
#    REGISTER round trip. Then one run of each at RATE 0 (as fast as the
#    generator sends) for the REGISTERs per second a node answers.
# 2. propagation: two nodes; 1,000 times, a REGISTER through node a, then
#    OPTIONS through node b until b forwards it to the new binding: the
#    time from a's 200 to b's forwarded request, p50 / p99 / max.
# 3. load: for each BIG (default 100000), BIG users registered through
#    node a; then node c starts: the seconds until it has loaded them all
#    (sipshard_cluster_synced, sipshard_aors), its peak RSS (VmHWM) and its
#    RSS once loaded, beside node a's RSS (the same table, built by
#    REGISTERs) and redis-server's.
# BIG users register at BIG_RATE per second (default 20000: about what one
# Redis writes through the script, 25 µs of its CPU each; faster, the
# writer's queue fills and --cluster-queue drops, as it says).
# PARTS (default 123) picks the parts to run.
# Defaults: 100000 users at 20000/s, 3 rounds, BIG 100000. Processes are
# pinned apart; REGISTERs go to loopback only, and nothing is forwarded
# anywhere but to the script's own sockets.
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-100000}
rate=${2:-20000}
rounds=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
bigs=("$@")
[ "${#bigs[@]}" -gt 0 ] || bigs=(100000)
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
command -v redis-server >/dev/null || { echo "cluster-bench: needs redis-server"; exit 77; }
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
cargo build --release --quiet
tck=$(getconf CLK_TCK)
work=$(mktemp -d)

# start_redis: a fresh redis-server on a free port, pinned to CPU 1; sets
# redis_pid and redis_url.
start_redis() {
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  rm -rf "$work/redis" && mkdir -p "$work/redis"
  taskset -c 1 redis-server --port "$port" --bind 127.0.0.1 --dir "$work/redis" --save '' \
    --appendonly no > "$work/redis.log" 2>&1 &
  redis_pid=$!
  pids+=("$redis_pid")
  redis_url="redis://127.0.0.1:$port"
  for _ in $(seq 50); do
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  echo "cluster-bench: redis-server did not start" >&2
  exit 1
}

stop_redis() {
  kill "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  forget "$redis_pid"
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

summary() { # LABEL VALUES...: sorted, and min / median / max
  local label=$1
  shift
  printf '%s\n' "$@" | sort -g | awk -v l="$label" '{ v[NR] = $1 } END {
    printf "%s: min %s / median %s / max %s (n=%d)\n", l, v[1], v[int((NR + 1) / 2)], v[NR], NR }'
}

parts=${PARTS:-123}
if [[ $parts == *1* ]]; then
echo "== 1. REGISTER cost, cluster off and on ($users users at $rate/s, $rounds rounds)"
declare -A cpu p99 rcpu
for r in $(seq "$rounds"); do
  for mode in off on; do
    extra=()
    if [ "$mode" = on ]; then
      start_redis
      extra=(--cluster "$redis_url" --node-id a)
    fi
    sipshard_wrap=(taskset -c 0)
    start_sipshard "$work/a.log" --listen 127.0.0.1:0 --shards 1 --io mmsg --domain example.com \
      --expected-aors "$users" --stats-interval 0 "${extra[@]}"
    before=$(cpu_ticks "$sipshard_pid")
    [ "$mode" = on ] && rbefore=$(cpu_ticks "$redis_pid")
    res=$(taskset -c 1 target/release/sipshard-load register --target "$sipshard_addr" \
      --users "$users" --rate "$rate" --flows 8 --retry-missing 3 --kv)
    # The link writes behind the 200s: count its CPU until it is done.
    if [ "$mode" = on ]; then
      for _ in $(seq 100); do
        [ "$(redis-cli -u "$redis_url" xlen sipshard:changes)" -ge "$users" ] && break
        sleep 0.1
      done
    fi
    after=$(cpu_ticks "$sipshard_pid")
    bound=$(sed -n 's/.*bound=\([0-9]*\).*/\1/p' <<< "$res")
    lat=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<< "$res")
    us=$(awk -v t=$((after - before)) -v b="$bound" -v h="$tck" 'BEGIN { printf "%.2f", t / h * 1e6 / b }')
    cpu[$mode]="${cpu[$mode]:-} $us"
    p99[$mode]="${p99[$mode]:-} $lat"
    line="round $r cluster $mode: bound=$bound cpu_us_per_register=$us p99_us=$lat"
    if [ "$mode" = on ]; then
      rafter=$(cpu_ticks "$redis_pid")
      rus=$(awk -v t=$((rafter - rbefore)) -v b="$bound" -v h="$tck" 'BEGIN { printf "%.2f", t / h * 1e6 / b }')
      rcpu[on]="${rcpu[on]:-} $rus"
      line+=" redis_cpu_us_per_register=$rus"
    fi
    stop_sipshard "$work/a.log"
    [ "$mode" = on ] && stop_redis
    echo "$line"
  done
done
for mode in off on; do
  read -ra v <<< "${cpu[$mode]}"
  summary "cluster $mode: sipshard CPU µs per REGISTER" "${v[@]}"
  read -ra v <<< "${p99[$mode]}"
  summary "cluster $mode: REGISTER p99 µs" "${v[@]}"
done
read -ra v <<< "${rcpu[on]}"
summary "cluster on: redis-server CPU µs per REGISTER" "${v[@]}"
read -ra off <<< "${cpu[off]}"
read -ra on <<< "${cpu[on]}"
ratios=()
for i in "${!off[@]}"; do
  ratios+=("$(awk -v a="${on[$i]}" -v b="${off[$i]}" 'BEGIN { printf "%.3f", a / b }')")
done
summary "on/off CPU per REGISTER, per round" "${ratios[@]}"

echo "== 1b. REGISTERs per second a node answers, generator unpaced"
for mode in off on; do
  extra=()
  if [ "$mode" = on ]; then
    start_redis
    extra=(--cluster "$redis_url" --node-id a)
  fi
  sipshard_wrap=(taskset -c 0)
  start_sipshard "$work/a.log" --listen 127.0.0.1:0 --shards 1 --io mmsg --domain example.com \
    --expected-aors "$users" --stats-interval 0 "${extra[@]}"
  res=$(taskset -c 1 target/release/sipshard-load register --target "$sipshard_addr" \
    --users "$users" --rate 0 --flows 8 --kv)
  echo "cluster $mode: $(grep -o 'ok=[0-9]*\|lost=[0-9]*\|achieved_per_s=[0-9]*\|p99_us=[0-9]*' <<< "$res" | tr '\n' ' ')"
  stop_sipshard "$work/a.log"
  [ "$mode" = on ] && stop_redis
done

fi

if [[ $parts == *2* ]]; then
echo "== 2. propagation: a 200 through node a, the request forwarded by node b"
start_redis
sipshard_wrap=(taskset -c 0)
start_sipshard "$work/a.log" --listen 127.0.0.1:0 --shards 1 --io mmsg --domain example.com \
  --cluster "$redis_url" --node-id a --stats-interval 0
a_pid=$sipshard_pid
a_addr=$sipshard_addr
start_sipshard "$work/b.log" --listen 127.0.0.1:0 --shards 1 --io mmsg --domain example.com \
  --cluster "$redis_url" --node-id b --stats-interval 0
b_pid=$sipshard_pid
b_addr=$sipshard_addr
taskset -c 1 python3 - "$a_addr" "$b_addr" 1000 <<'PY'
import socket, sys, time
a, b, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def addr(s):
    h, p = s.rsplit(":", 1)
    return (h, int(p))
a, b = addr(a), addr(b)
ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ua.bind(("127.0.0.1", 0))
ua.settimeout(2)
port = ua.getsockname()[1]
caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
caller.bind(("127.0.0.1", 0))
caller.setblocking(False)
cport = caller.getsockname()[1]
delays = []
for i in range(n):
    user = f"prop{i}"
    reg = (f"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKr{i}\r\n"
           f"Max-Forwards: 70\r\nTo: <sip:{user}@example.com>\r\nFrom: <sip:{user}@example.com>;tag=r\r\n"
           f"Call-ID: prop-reg-{i}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@127.0.0.1:{port}>\r\n"
           f"Expires: 600\r\nContent-Length: 0\r\n\r\n").encode()
    ua.sendto(reg, a)
    while not ua.recv(65535).startswith(b"SIP/2.0 200"):
        pass
    t0 = time.perf_counter()
    k = 0
    ua.settimeout(0.0005)
    while True:
        k += 1
        opt = (f"OPTIONS sip:{user}@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bKo{i}x{k}\r\n"
               f"Max-Forwards: 70\r\nTo: <sip:{user}@example.com>\r\nFrom: <sip:c@example.net>;tag=c\r\n"
               f"Call-ID: prop-{i}-{k}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()
        caller.sendto(opt, b)
        try:
            got = ua.recv(65535)
            if got.startswith(b"OPTIONS"):
                delays.append((time.perf_counter() - t0) * 1e6)
                break
        except socket.timeout:
            pass
        if time.perf_counter() - t0 > 5:
            print(f"prop{i}: not at node b within 5 s")
            break
    ua.settimeout(2)
    try:
        while True:
            caller.recv(65535)
    except BlockingIOError:
        pass
delays.sort()
pct = lambda p: delays[min(len(delays) - 1, int(p * len(delays)))]
print(f"propagation µs (a's 200 to b's forwarded OPTIONS, polled every ~0.5 ms, n={len(delays)}): "
      f"p50 {pct(0.5):.0f} / p99 {pct(0.99):.0f} / max {delays[-1]:.0f}")
PY
kill "$a_pid" "$b_pid"
wait "$a_pid" "$b_pid" 2>/dev/null || true
forget "$a_pid"
forget "$b_pid"
stop_redis

fi

[[ $parts == *3* ]] || bigs=()
for big in "${bigs[@]}"; do
  echo "== 3. load: a node starting beside $big registered users"
  start_redis
  sipshard_wrap=(taskset -c 0)
  start_sipshard "$work/a.log" --listen 127.0.0.1:0 --shards 1 --io mmsg --domain example.com \
    --cluster "$redis_url" --node-id a --expected-aors "$big" --stats-interval 0 \
    --metrics-listen 127.0.0.1:0
  a_pid=$sipshard_pid
  a_metrics=$metrics_url
  res=$(taskset -c 1 target/release/sipshard-load register --target "$sipshard_addr" \
    --users "$big" --rate "${BIG_RATE:-20000}" --flows 8 --retry-missing 3 --kv --expires 7200)
  for _ in $(seq 3000); do
    [ "$(redis-cli -u "$redis_url" dbsize)" -gt "$big" ] && break
    [ "$(metric_sum "$a_metrics" sipshard_cluster_queued)" = 0 ] &&
      [ "$(metric_sum "$a_metrics" sipshard_cluster_dropped)" -gt 0 ] && break
    sleep 0.1
  done
  echo "registered: $(grep -o 'bound=[0-9]*' <<< "$res"), in Redis: $(( $(redis-cli -u "$redis_url" dbsize) - 1 )) AORs," \
    "node a dropped $(metric_sum "$a_metrics" sipshard_cluster_dropped) changes over --cluster-queue"
  big=$(( $(redis-cli -u "$redis_url" dbsize) - 1 ))
  sipshard_wrap=(taskset -c 0)
  started=$(date +%s.%N)
  start_sipshard "$work/c.log" --listen 127.0.0.1:0 --shards 1 --io mmsg --domain example.com \
    --cluster "$redis_url" --node-id c --expected-aors "$big" --stats-interval 0 \
    --metrics-listen 127.0.0.1:0
  c_pid=$sipshard_pid
  for _ in $(seq 6000); do
    [ "$(metric_sum "$metrics_url" sipshard_cluster_synced)" = 1 ] &&
      [ "$(metric_sum "$metrics_url" sipshard_aors)" -ge "$big" ] && break
    sleep 0.05
  done
  done_at=$(date +%s.%N)
  aors=$(metric_sum "$metrics_url" sipshard_aors)
  echo "node c: $aors AORs loaded in $(awk -v a="$started" -v b="$done_at" 'BEGIN { printf "%.2f", b - a }') s" \
    "(from its start, verification of the steering program included);" \
    "peak RSS $(( $(hwm_kb "$c_pid") / 1024 )) MiB, RSS $(( $(rss_kb "$c_pid") / 1024 )) MiB;" \
    "node a RSS $(( $(rss_kb "$a_pid") / 1024 )) MiB; redis-server RSS $(( $(rss_kb "$redis_pid") / 1024 )) MiB"
  grep "cluster: loaded" "$work/c.log" | sed 's/^.*cluster: /node c log: /'
  kill "$a_pid" "$c_pid"
  wait "$a_pid" "$c_pid" 2>/dev/null || true
  forget "$a_pid"
  forget "$c_pid"
  stop_redis
done
echo "machine: nproc $(nproc), $(uname -r), commit $(git rev-parse --short HEAD)"
rm -rf "$work"
