#!/usr/bin/env bash
# sipshard against Kamailio, the same loads in the same run (issue #6).
#
#   scripts/compare.sh [ROUNDS] [RATE] [SECONDS] [USERS]
#
# So far two parts of what issue #6 asks, each at one offered rate.
#
# Forwarding (steps 1 and 4): stateless forwarding with Record-Route. Each
# round runs, one after the other on the same port pair:
#   - sipshard --shards 1 --io mmsg --record-route;
#   - Kamailio 5.6 (Debian) with perf/kamailio/proxy.cfg: one UDP worker
#     (-n 1), the same job (Max-Forwards, Record-Route, stateless forward,
#     replies back by Via), with the TLSF allocator for shared and private
#     memory (-x tlsf -X tlsf). Debian's build defaults to q_malloc with
#     memory debugging, which cost 4x the CPU per message here (108 against
#     25 clock ticks for the same 12,000 messages; fm was 25 too): a fair
#     comparison uses what a tuned deployment runs.
# Both are pinned to CPU 0 (Kamailio's helper processes too); the generator
# (`sipshard-load run`, 8 UAC flows and a sink answering 200) to CPU 1,
# offering RATE requests/s (default 20000) for SECONDS (default 5). CPU time
# of the target is utime+stime from /proc of every process of it (Kamailio
# forks workers and timers), divided by the messages forwarded (each
# answered request is 2: the request and its 200). Prints min/median/max
# over ROUNDS (default 3) and the per-round ratio Kamailio/sipshard.
#
# Registration (steps 3, 4 and 5): USERS distinct users (default 100,000)
# REGISTER once each at 10,000/s (`sipshard-load register`, 8 flows, CPU 1)
# to sipshard --shards 1 --domain example.com, and to Kamailio with
# perf/kamailio/registrar.cfg (usrloc in memory, one worker, TLSF). CPU per
# registration as above, and memory per binding: the growth of the
# proportional set size (PSS, from /proc/PID/smaps_rollup, summed over the
# target's processes, so Kamailio's shared memory is counted once) divided
# by the users bound.
# Installs kamailio from Debian when missing. Every process it starts is
# stopped by PID; everything goes to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
rate=${2:-20000}
secs=${3:-5}
users=${4:-100000}

if ! command -v kamailio >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y kamailio || { $sudo apt-get update && $sudo apt-get install -y kamailio; }
fi
modules=$(dirname "$(dpkg -L kamailio 2>/dev/null | grep '/modules/sl.so$' | head -n 1)")
[ -d "$modules" ] || modules=/usr/lib/x86_64-linux-gnu/kamailio/modules
cargo build --release --quiet --bins
bin=target/release
work=$(mktemp -d)
# pids, free_ports.
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
stamp=$(date -u +%Y-%m-%dT%H%MZ)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
tck=$(getconf CLK_TCK)

# proc_sum PID FILE AWK: AWK's number from /proc/P/FILE, summed over PID
# and every process below it (Kamailio forks its workers and timers).
proc_sum() {
  local all=("$1") p total=0
  for p in $(pgrep -P "$1" || true); do all+=("$p"); done
  for p in "${all[@]}"; do
    [ -r "/proc/$p/$2" ] && total=$(( total + $(awk "$3" "/proc/$p/$2") ))
  done
  echo "$total"
}
ticks() { proc_sum "$1" stat '{print $14 + $15}'; }    # utime+stime, clock ticks
pss() { proc_sum "$1" smaps_rollup '/^Pss:/ {print $2}'; }    # proportional set size, kB

# start_target TARGET JOB: starts sipshard or Kamailio for JOB (proxy or
# registrar) on CPU 0 at a free port; sets pid, port and sink (a second
# free port, for the generator's UAS).
start_target() {
  read -r port sink < <(free_ports 2)
  if [ "$1" = sipshard ]; then
    local job=(--record-route)
    [ "$2" = registrar ] && job=(--domain example.com)
    taskset -c 0 "$bin/sipshard" --listen "127.0.0.1:$port" --shards 1 --io mmsg \
      "${job[@]}" --stats-interval 0 2> "$work/target.log" &
  else
    local mem=(-m 64 -M 8)
    [ "$2" = registrar ] && mem=(-m 1024 -M 16)
    mkdir -p "$work/kam"
    taskset -c 0 kamailio -f "perf/kamailio/$2.cfg" -L "$modules" -l "udp:127.0.0.1:$port" \
      -n 1 "${mem[@]}" -x tlsf -X tlsf -DD -E -Y "$work/kam" > "$work/target.out" 2> "$work/target.log" &
  fi
  pid=$!
  pids+=("$pid")
  sleep 1
  kill -0 "$pid" 2>/dev/null || { echo "compare: $1 did not start:" >&2; cat "$work/target.log" >&2; exit 1; }
}

stop_target() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget "$pid"
}

for r in $(seq 1 "$rounds"); do
  for target in sipshard kamailio; do
    start_target "$target" proxy
    before=$(ticks "$pid")
    res=$(taskset -c 1 "$bin/sipshard-load" run --target "127.0.0.1:$port" --sink "127.0.0.1:$sink" \
      --rate "$rate" --duration "$secs" --flows 8 --kv)
    after=$(ticks "$pid")
    stop_target
    echo "compare: round $r: $target: $res cpu_ticks=$((after - before))" >&2
    echo "$r|$target|$res|$((after - before))" >> "$work/rows"
  done
done

for r in $(seq 1 "$rounds"); do
  for target in sipshard kamailio; do
    start_target "$target" registrar
    mem_before=$(pss "$pid")
    before=$(ticks "$pid")
    res=$(taskset -c 1 "$bin/sipshard-load" register --target "127.0.0.1:$port" --users "$users" \
      --rate 10000 --flows 8 --domain example.com --kv)
    after=$(ticks "$pid")
    mem_after=$(pss "$pid")
    stop_target
    echo "compare: registration round $r: $target: $res cpu_ticks=$((after - before)) pss_kb=$mem_before..$mem_after" >&2
    echo "$r|$target|$res|$((after - before))|$((mem_after - mem_before))" >> "$work/reg_rows"
  done
done

# A comparison in which either side answered nothing measures nothing.
if awk -F'|' '{ split($3, kv, " "); for (i in kv) if (kv[i] == "answered=0" || kv[i] == "ok=0") bad = 1 } END { exit !bad }' "$work/rows" "$work/reg_rows"; then
  echo "compare: a target answered nothing; see the lines above" >&2
  exit 1
fi

python3 - "$work/rows" "$tck" "$rate" "$secs" "$rounds" "$commit" "$stamp" "$work/reg_rows" "$users" <<'PY'
import statistics, subprocess, sys
rows, tck, rate, secs, rounds, commit, stamp, reg_rows, users = sys.argv[1:10]
tck = int(tck)
data = {}
for line in open(rows):
    r, target, res, ticks = line.strip().split("|")
    kv = dict(x.split("=") for x in res.split())
    msgs = 2 * int(kv["answered"])
    d = data.setdefault(target, {"cpu_us": [], "loss": [], "p50": [], "p99": []})
    d["cpu_us"].append(int(ticks) / tck * 1e6 / max(msgs, 1))
    d["loss"].append(float(kv["loss_pct"]))
    d["p50"].append(int(kv["p50_us"]))
    d["p99"].append(int(kv["p99_us"]))
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
fmt = lambda xs, f="{:.2f}": " / ".join(f.format(v) for v in (min(xs), statistics.median(xs), max(xs)))
print(f"### sipshard and Kamailio forwarding, {stamp}, commit {commit}\n")
print(f"Machine: `nproc`={sh('nproc')}, kernel {sh('uname -r')}, {sh('kamailio -v | head -n 1')}. "
      f"Command: `scripts/compare.sh {rounds} {rate} {secs}` ({rate} requests/s offered for {secs} s by "
      "`sipshard-load run --flows 8` on CPU 1; each target alone on CPU 0, one worker: "
      "`sipshard --shards 1 --io mmsg --record-route`, Kamailio `-n 1 -x tlsf -X tlsf` with perf/kamailio/proxy.cfg).\n")
print("| target | CPU per forwarded message, µs (min / median / max) | loss % | p50 µs | p99 µs |")
print("|---|---|---|---|---|")
for t, d in data.items():
    print(f"| {t} | {fmt(d['cpu_us'])} | {fmt(d['loss'], '{:.3f}')} | {fmt(d['p50'], '{:.0f}')} | {fmt(d['p99'], '{:.0f}')} |")
if "sipshard" in data and "kamailio" in data:
    ratios = [k / s for k, s in zip(data["kamailio"]["cpu_us"], data["sipshard"]["cpu_us"])]
    print(f"\nKamailio/sipshard CPU per message, per round: {fmt(ratios)} (min / median / max).")

reg = {}
for line in open(reg_rows):
    r, target, res, ticks, pss_kb = line.strip().split("|")
    kv = dict(x.split("=") for x in res.split())
    bound = max(int(kv["bound"]), 1)
    d = reg.setdefault(target, {"cpu_us": [], "bytes": [], "ok": [], "p99": []})
    d["cpu_us"].append(int(ticks) / tck * 1e6 / bound)
    d["bytes"].append(int(pss_kb) * 1024 / bound)
    d["ok"].append(int(kv["ok"]))
    d["p99"].append(int(kv["p99_us"]))
print(f"\nRegistration: {users} distinct users, one REGISTER each at 10,000/s "
      "(`sipshard-load register --flows 8` on CPU 1); `sipshard --shards 1 --domain example.com`, "
      "Kamailio `-n 1 -m 1024 -M 16 -x tlsf -X tlsf` with perf/kamailio/registrar.cfg.\n")
print("| target | CPU per registration, µs (min / median / max) | memory per binding, bytes of PSS | 200s | p99 µs |")
print("|---|---|---|---|---|")
for t, d in reg.items():
    print(f"| {t} | {fmt(d['cpu_us'])} | {fmt(d['bytes'], '{:.0f}')} | {fmt(d['ok'], '{:.0f}')} | {fmt(d['p99'], '{:.0f}')} |")
if "sipshard" in reg and "kamailio" in reg:
    cpu = [k / s for k, s in zip(reg["kamailio"]["cpu_us"], reg["sipshard"]["cpu_us"])]
    mem = [k / s for k, s in zip(reg["kamailio"]["bytes"], reg["sipshard"]["bytes"])]
    print(f"\nKamailio/sipshard per round: CPU per registration {fmt(cpu)}, memory per binding {fmt(mem)}.")
PY
