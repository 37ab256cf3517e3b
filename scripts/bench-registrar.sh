#!/usr/bin/env bash
# Registrar benchmarks: registrations/s, lookup-heavy forwarding against
# plain proxying, and memory per binding.
#
#   scripts/bench-registrar.sh [ROUNDS_A] [ROUNDS_B] [RUNS_C]
#   scripts/bench.sh registrar [ROUNDS_A] [ROUNDS_B] [RUNS_C]
#
# Defaults 3 3 1; a part with 0 rounds is skipped. sipshard runs pinned to
# CPU 0 (CPUs 0-1 when it has more than one shard, as scripts/load.sh
# does: the second shard then shares CPU 1 with the generator), the
# generator (`sipshard-load`) on CPU 1. Every server is started fresh on a
# port the kernel picks, and stopped by its PID with SIGTERM. Every run is
# bounded: rates and user counts are fixed, `sipshard-load` waits at most
# 30 s for answers per round.
#
# a. Registrations/s at --shards 1 and 2: per round, `sipshard-load
#    register --rate 0 --refreshes 1` (A_USERS new users as fast as the
#    generator sends, then one refresh of each: the achieved 200s/s of
#    each phase), then offered rates A_RATES in turn, A_SECS seconds of new
#    users each (a fresh server per step), up to the first with >= 0.1% not
#    answered 200 (a failing step is tried once more, as the machine is
#    shared): the highest rate below that. Each run also records the
#    server's CPU use (utime+stime / active time, % of one CPU) and the
#    REGISTERs it received, to tell a saturated server from a starved one.
# b. Lookup-heavy forwarding: `sipshard-load run` at B_RATE OPTIONS/s for
#    B_SECS s through one shard, (1) a plain proxy (sipshard without
#    --domain, R-URI = the sink), (2) sipshard --domain with the same plain
#    R-URIs, (3) sipshard --domain with B_USERS users registered first (by
#    `sipshard-load register`, Contact = its sink, whose address the run's
#    sink then takes) and R-URIs cycling over them (a location lookup per
#    request). CPU per forwarded message = utime+stime of sipshard over the
#    run (/proc/PID/stat) / (forwarded requests + responses, exit line).
# c. Bytes per binding: VmRSS of sipshard (/proc/PID/status) 1 s after
#    start, then after registering C_USERS distinct users (one binding each)
#    at C_RATE/s and C_SETTLE s of rest: (after - before) / C_USERS, at
#    --shards C_SHARDS. A run whose users are not all bound (200, and
#    `aors` in the exit line) after 3 retry rounds is repeated at half the
#    rate (at most 3 attempts).
#
# Environment: IO (backend, default mmsg), A_USERS (200000), A_RATES
# ("25000 50000 75000 100000 125000 150000 175000 200000"), A_SECS (2),
# B_RATE (20000), B_SECS (5), B_USERS (100000), C_USERS (1000000), C_RATE
# (40000), C_SETTLE (5), C_SHARDS ("1 2 16"), RECORD=1 to append the
# section to perf/RESULTS.md. Output: a Markdown section on stdout and in
# perf/results/registrar-<date>-<commit>.md; progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds_a=${1:-3}
rounds_b=${2:-3}
runs_c=${3:-1}
io=${IO:-mmsg}
a_users=${A_USERS:-200000}
a_rates=${A_RATES:-25000 50000 75000 100000 125000 150000 175000 200000}
a_secs=${A_SECS:-2}
b_rate=${B_RATE:-20000}
b_secs=${B_SECS:-5}
b_users=${B_USERS:-100000}
c_users=${C_USERS:-1000000}
c_rate=${C_RATE:-40000}
c_settle=${C_SETTLE:-5}
c_shards=${C_SHARDS:-1 2 16}

cargo build --release --quiet --bins
stamp=$(date -u +%Y-%m-%dT%H%MZ)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && commit="$commit+dirty"
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# Run copies, so that a rebuild while this runs cannot mix two versions.
mkdir -p "$work/bin"
cp target/release/sipshard target/release/sipshard-load "$work/bin/"
bin=$work/bin
mkdir -p perf/results
out="perf/results/registrar-${stamp}-${commit}.md"
tck=$(getconf CLK_TCK)
t0=$(date +%s)

# pids, forget, cpu_ticks, start_sipshard, stop_sipshard.
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
sipshard_bin=$bin/sipshard
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# kv KEY LINE: the value of KEY= in a key=value line.
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -1; }

# start_server SHARDS [FLAGS...]: sipshard on a port the kernel picks (read
# back from its banner); sets pid and port.
start_server() {
  local shards=$1; shift
  local cpus=0
  [ "$shards" -gt 1 ] && cpus=0,1
  sipshard_wrap=(taskset -c "$cpus")
  start_sipshard "$work/server.log" --listen 127.0.0.1:0 --shards "$shards" --io "$io" \
    --stats-interval 0 "$@"
  pid=$sipshard_pid
  port=${sipshard_addr##*:}
  sleep 0.5
}
stop_server() {
  stop_sipshard "$work/server.log"
  pid=""
}
# exit_field NAME: a count from the stopped server's exit line.
exit_field() { { grep "stopped;" "$work/server.log" || true; } | sed -n "s/.* $1=\([0-9]*\).*/\1/p" | head -1; }
gen() { taskset -c 1 "$bin/sipshard-load" "$@"; }

# a. Registrations/s. reg_run SHARDS ARGS...: a fresh server, one
# `register` run; prints its key=value line plus the server's CPU use over
# the time the run was active, from its first REGISTER to its last answer
# (srv_cpu_pct, of one CPU; 10 ms ticks) and the REGISTERs it received
# (srv_received).
reg_run() {
  local shards=$1; shift
  start_server "$shards" --domain example.com
  local c0 c1 res
  c0=$(cpu_ticks "$pid")
  res=$(gen register --target "127.0.0.1:$port" "$@" --kv)
  c1=$(cpu_ticks "$pid")
  stop_server
  # CPU over the time the run was active (first send to last answer).
  echo "$res srv_cpu_pct=$(awk -v t=$((c1 - c0)) -v hz="$tck" -v a="$(kv active_s "$res")" \
    'BEGIN { printf "%.0f", (a > 0 ? t / hz / a * 100 : 0) }') srv_received=$(exit_field received)"
}
passes() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 0.1 else 1)' "$(kv fail_pct "$1")"; }
if [ "$rounds_a" -gt 0 ]; then
  for shards in 1 2; do
    for r in $(seq 1 "$rounds_a"); do
      res=$(reg_run "$shards" --users "$a_users" --rate 0 --refreshes 1)
      echo "a shards=$shards round $r rate 0: $res" >&2
      echo "fast|$shards|$r|$res" >> "$work/a"
      best=0; fail="none"; retried=0
      for rate in $a_rates; do
        res=$(reg_run "$shards" --users $((rate * a_secs)) --rate "$rate")
        echo "a shards=$shards round $r rate $rate: $res" >&2
        if ! passes "$res"; then
          retried=$((retried + 1))
          res=$(reg_run "$shards" --users $((rate * a_secs)) --rate "$rate")
          echo "a shards=$shards round $r rate $rate (again): $res" >&2
        fi
        if passes "$res"; then
          best=$rate
        else
          fail="$rate:$(kv fail_pct "$res"):$(kv s503 "$res"):$(kv lost "$res"):$(kv sent "$res"):$(kv srv_cpu_pct "$res"):$(kv srv_received "$res")"
          break
        fi
      done
      echo "step|$shards|$r|best=$best fail=$fail retried=$retried" >> "$work/a"
    done
  done
fi

# b. Lookup-heavy forwarding against plain proxying, one shard.
for r in $(seq 1 "$rounds_b"); do
  for cfg in proxy domain lookup; do
    sink=127.0.0.1:0
    users_flags=()
    case $cfg in
      proxy) start_server 1 ;;
      domain) start_server 1 --domain example.com ;;
      lookup)
        start_server 1 --domain example.com
        reg=$(gen register --target "127.0.0.1:$port" --users "$b_users" --rate 50000 \
          --retry-missing 3 --kv)
        echo "b round $r: registered: $reg" >&2
        if [ "$(kv bound "$reg")" != "$b_users" ]; then
          echo "b round $r: not every user registered; stopping" >&2
          exit 1
        fi
        # The run's sink takes the address the users registered as Contact.
        sink=$(kv sink "$reg")
        users_flags=(--users "$b_users" --no-register)
        sleep 1
        ;;
    esac
    before=$(cpu_ticks "$pid")
    res=$(gen run --target "127.0.0.1:$port" --sink "$sink" --rate "$b_rate" \
      --duration "$b_secs" --flows 8 "${users_flags[@]}" --kv)
    after=$(cpu_ticks "$pid")
    stop_server
    fwd=$(( $(exit_field forwarded_requests) + $(exit_field forwarded_responses) ))
    echo "b round $r $cfg: $res cpu_ticks=$((after - before)) forwarded_msgs=$fwd" >&2
    echo "$r|$cfg|$res|$((after - before))|$fwd" >> "$work/b"
  done
done

# c. Bytes per binding.
if [ "$runs_c" -gt 0 ]; then
  for shards in $c_shards; do
    for r in $(seq 1 "$runs_c"); do
      rate=$c_rate
      for attempt in 1 2 3; do
        start_server "$shards" --domain example.com
        rss0=$(rss_kb "$pid")
        res=$(gen register --target "127.0.0.1:$port" --users "$c_users" --rate "$rate" --retry-missing 3 --kv)
        sleep "$c_settle"
        rss1=$(rss_kb "$pid")
        stop_server
        aors=$(exit_field aors)
        echo "c shards=$shards run $r rate $rate: rss $rss0 -> $rss1 kB aors=$aors $res" >&2
        if [ "$(kv bound "$res")" = "$c_users" ] && [ "$aors" = "$c_users" ]; then
          echo "$shards|$r|$rate|$rss0|$rss1|$aors|$res" >> "$work/c"
          break
        fi
        if [ "$attempt" = 3 ]; then
          echo "$shards|$r|$rate|$rss0|$rss1|${aors:-0}|$res failed=1" >> "$work/c"
        fi
        rate=$((rate / 2))
      done
    done
  done
fi
elapsed=$(( $(date +%s) - t0 ))

python3 - "$work" "$tck" "$commit" "$stamp" "$io" "$rounds_a" "$rounds_b" "$runs_c" "$a_users" "$a_rates" "$a_secs" \
  "$b_rate" "$b_secs" "$b_users" "$c_users" "$c_rate" "$c_settle" "$elapsed" <<'PY' | tee "$out"
import os, statistics, subprocess, sys
(work, tck, commit, stamp, io, ra, rb, rc, a_users, a_rates, a_secs,
 b_rate, b_secs, b_users, c_users, c_rate, c_settle, elapsed) = sys.argv[1:]
tck = int(tck)
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
kvs = lambda s: dict(x.split("=", 1) for x in s.split() if "=" in x)
def fmt(xs, f="{:.0f}"):
    return " / ".join(f.format(v) for v in (min(xs), statistics.median(xs), max(xs))) if xs else "-"
def rows(name):
    p = os.path.join(work, name)
    return [l.rstrip("\n").split("|") for l in open(p)] if os.path.exists(p) else []

print(f"### Registrar, {stamp}, commit {commit}\n")
cpu_model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
print(f"Machine: `nproc`={sh('nproc')}, kernel {sh('uname -r')}, CPU {cpu_model}. "
      f"Command: `scripts/bench.sh registrar {ra} {rb} {rc}` (IO={io}; took {elapsed} s). "
      "sipshard pinned to CPU 0 (CPUs 0-1 with more than one shard, sharing CPU 1 with the generator); "
      "`sipshard-load` pinned to CPU 1; a fresh server for every measurement; min / median / max over the rounds.\n")

a = rows("a")
if a:
    print(f"**a. Registrations/s.** Rate 0: `sipshard-load register --users {a_users} --rate 0 --refreshes 1 --flows 8` "
          "(open loop as fast as the generator sends; achieved 200s/s of the new registrations, then of one refresh of each "
          "(same Call-ID, CSeq + 1), each over the time from its first send to its last answer; answers awaited until none "
          "came for 1 s). Stepped: offered rates "
          f"{a_rates.replace(' ', ', ')}/s of new users for {a_secs} s each (users = rate x {a_secs}), up to the first with "
          ">= 0.1% not answered 200 (a failing step tried twice): the highest rate below it. `srv CPU` is sipshard's "
          "utime+stime over the run / the time from its first REGISTER to its last answer, in % of one CPU (10 ms ticks).\n")
    print("| shards | rate 0: offered/s | rate 0: new, 200s/s | rate 0: refresh, 200s/s | rate 0: not 200 % | rate 0: p50 / p99 µs (median) | rate 0: srv CPU % | stepped: highest rate with < 0.1% not 200 | first failing step per round (not 200 %, 503s, unanswered of sent, srv CPU %) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shards in sorted({x[1] for x in a}, key=int):
        fast = [kvs(x[3]) for x in a if x[0] == "fast" and x[1] == shards]
        step = [kvs(x[3]) for x in a if x[0] == "step" and x[1] == shards]
        g = lambda k, f=float: [f(d[k]) for d in fast]
        fails = []
        for d in step:
            if d["fail"] == "none":
                fails.append("none")
            else:
                rate, pct, s503, lost, sent, cpu, _recv = d["fail"].split(":")
                fails.append(f"{int(rate):,}/s ({float(pct):.2f}%, {s503}, {int(lost):,} of {int(sent):,}, {cpu}%)")
        retried = sum(int(d["retried"]) for d in step)
        print(f"| {shards} | {fmt(g('offered_per_s'))} | {fmt(g('initial_per_s'))} | {fmt(g('refresh_per_s'))} | "
              f"{fmt(g('fail_pct'), '{:.1f}')} | {statistics.median(g('p50_us')):.0f} / {statistics.median(g('p99_us')):.0f} | "
              f"{fmt(g('srv_cpu_pct'))} | {fmt([int(d['best']) for d in step])} | {'; '.join(fails)} (steps tried twice: {retried}) |")
    print()

b = rows("b")
if b:
    print(f"**b. Lookup-heavy forwarding.** `sipshard-load run --rate {b_rate} --duration {b_secs} --flows 8` through "
          f"`sipshard --shards 1 --io {io}`: a plain proxy (no `--domain`, R-URI = the sink); the same with "
          f"`--domain example.com` and plain R-URIs; and `--domain example.com` with {int(b_users):,} users registered first "
          "(`sipshard-load register --rate 50000`, Contact = the sink) and R-URIs `sip:uNNNNNNN@example.com` cycling over them "
          "(a location lookup per request). CPU per forwarded message = sipshard's utime+stime over the run / "
          "(requests + responses forwarded).\n")
    names = {"proxy": "plain proxy", "domain": "--domain, plain R-URIs", "lookup": f"--domain, {int(b_users):,} users, lookup per request"}
    data = {}
    for r, cfg, res, ticks, fwd in b:
        d = kvs(res)
        e = data.setdefault(cfg, {"cpu": [], "loss": [], "p50": [], "p99": []})
        e["cpu"].append(int(ticks) / tck * 1e6 / max(int(fwd or 0), 1))
        e["loss"].append(float(d["loss_pct"]))
        e["p50"].append(int(d["p50_us"]))
        e["p99"].append(int(d["p99_us"]))
    base = data.get("proxy", {}).get("cpu")
    print("| target | CPU per forwarded message, µs | vs plain proxy (median of per-round ratios) | loss % | p50 µs | p99 µs |")
    print("|---|---|---|---|---|---|")
    for cfg in ("proxy", "domain", "lookup"):
        if cfg not in data:
            continue
        e = data[cfg]
        ratio = "-" if cfg == "proxy" or not base else "{:.2f}x".format(statistics.median(x / y for x, y in zip(e["cpu"], base)))
        print(f"| {names[cfg]} | {fmt(e['cpu'], '{:.2f}')} | {ratio} | {fmt(e['loss'], '{:.3f}')} | {fmt(e['p50'])} | {fmt(e['p99'])} |")
    print()

c = rows("c")
if c:
    print(f"**c. Bytes per binding.** VmRSS of sipshard 1 s after start, and after `sipshard-load register --users {int(c_users):,} "
          f"--rate RATE --retry-missing 3` (one binding per user; every user answered 200 and the exit line's `aors` = "
          f"{int(c_users):,}, else the run is repeated at half the rate) and {c_settle} s of rest: "
          f"(after - before) / {int(c_users):,}.\n")
    print("| shards | run | rate/s | RSS before, MiB | RSS after, MiB | bytes per binding | REGISTERs not 200 in the main pass (503 / unanswered) | retried |")
    print("|---|---|---|---|---|---|---|---|")
    for shards, r, rate, rss0, rss1, aors, res in c:
        d = kvs(res)
        per = (int(rss1) - int(rss0)) * 1024 / int(c_users)
        if "failed" in d:
            per = f"not measured: {d['bound']} users bound, aors={aors}"
        else:
            per = f"{per:.0f}"
        print(f"| {shards} | {r} | {int(rate):,} | {int(rss0)/1024:.1f} | {int(rss1)/1024:.1f} | {per} | "
              f"{int(d['sent']) - int(d['ok'])} ({d['s503']} / {d['lost']}) | {d['retry_sent']} |")
    print()
PY
echo "written: $out" >&2
# RECORD=1 appends the section to perf/RESULTS.md as well.
if [ "${RECORD:-0}" = 1 ]; then
  { echo; cat "$out"; } >> perf/RESULTS.md
  echo "appended to perf/RESULTS.md" >&2
fi
