#!/usr/bin/env bash
# Forwarding load: sipshard against a bare UDP relay (the floor), same run.
#
#   scripts/load.sh [ROUNDS] [RATE] [SECONDS]
#
# Configurations, alternated within every round: the relay
# (`sipshard-load relay`: no SIP work, requests only, answers go straight
# back), and sipshard with 1 and 2 shards on each backend (mmsg, uring).
# The target runs pinned to CPU 0 (2-shard runs get CPUs 0-1 and so share
# CPU 1 with the generator: read those as "what 2 shards cost", not as
# throughput); the generator (`sipshard-load run`, UAC + sink) is pinned to
# CPU 1 and offers RATE requests/s (default 20000) for SECONDS (default 5).
# The proxy forwards each request and each 200 (2 messages per request);
# the relay forwards only the request. CPU time of the target comes from
# /proc/PID/stat (utime+stime, clock ticks), divided by the messages it
# forwarded. Output: a Markdown section on stdout and in
# perf/results/load-<date>-<commit>.md, min/median/max over the rounds.
# CONFIGS (e.g. "relay;mmsg 1;uring 1") chooses the configurations; after
# the backend and the shards, a word NAME=VALUE is set in sipshard's
# environment (for A/B runs of an experiment behind an environment
# variable) and a word --FLAG=VALUE is passed to it (e.g. "mmsg 1
# --mode=stateful").
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
rate=${2:-20000}
secs=${3:-5}
cargo build --release --quiet --bins
bin=target/release
stamp=$(date -u +%Y-%m-%dT%H%MZ)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && commit="$commit+dirty"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p perf/results
out="perf/results/load-${stamp}-${commit}.md"
tck=$(getconf CLK_TCK)

# free_ports, cpu_ticks.
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# CONFIGS="relay;mmsg 1;uring 1" in the environment runs only those.
IFS=';' read -ra configs <<< "${CONFIGS:-relay;mmsg 1;uring 1;mmsg 2;uring 2}"
for r in $(seq 1 "$rounds"); do
  for c in "${configs[@]}"; do
    read -r port sink < <(free_ports 2)
    set -- $c
    if [ "$1" = relay ]; then
      taskset -c 0 "$bin/sipshard-load" relay --listen "127.0.0.1:$port" --to "127.0.0.1:$sink" \
        --duration $((secs + 30)) 2> "$work/target.log" &
    else
      cpus=0; [ "$2" = 2 ] && cpus=0,1
      envs=(_=); flags=()
      for w in "${@:3}"; do
        case $w in --*) flags+=("$w") ;; *) envs+=("$w") ;; esac
      done
      taskset -c "$cpus" env "${envs[@]}" "$bin/sipshard" --listen "127.0.0.1:$port" --shards "$2" --io "$1" \
        --stats-interval 0 "${flags[@]}" 2> "$work/target.log" &
    fi
    pid=$!
    sleep 0.5
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "round $r: $c: the target did not start:" >&2
      cat "$work/target.log" >&2
      exit 1
    fi
    before=$(cpu_ticks "$pid")
    res=$(taskset -c 1 "$bin/sipshard-load" run --target "127.0.0.1:$port" --sink "127.0.0.1:$sink" \
      --rate "$rate" --duration "$secs" --flows 8 --kv)
    after=$(cpu_ticks "$pid")
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    if [ "$1" = relay ]; then
      fwd=$(sed -n 's/.*forwarded=\([0-9]*\).*/\1/p' <<<"$res")
    else
      fwd=$(sed -n 's/.*forwarded_requests=\([0-9]*\) forwarded_responses=\([0-9]*\).*/\1 \2/p' "$work/target.log" | awk '{print $1+$2}')
    fi
    echo "round $r: $c: $res cpu_ticks=$((after - before)) forwarded_msgs=$fwd" >&2
    echo "$r|$c|$res|$((after - before))|$fwd" >> "$work/rows"
  done
done

python3 - "$work/rows" "$tck" "$rate" "$secs" "$rounds" "$commit" "$stamp" <<'PY' | tee "$out"
import statistics, subprocess, sys
rows, tck, rate, secs, rounds, commit, stamp = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
data = {}
for line in open(rows):
    r, cfg, res, ticks, fwd = line.strip().split("|")
    kv = dict(x.split("=") for x in res.split())
    cpu_s = int(ticks) / tck
    d = data.setdefault(cfg, {"cpu_us": [], "loss": [], "p50": [], "p99": [], "round": []})
    d["cpu_us"].append(cpu_s * 1e6 / max(int(fwd or 0), 1))
    d["loss"].append(float(kv["loss_pct"]))
    d["p50"].append(int(kv["p50_us"]))
    d["p99"].append(int(kv["p99_us"]))
    d["round"].append(int(r))
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
fmt = lambda xs, f="{:.2f}": " / ".join(f.format(v) for v in (min(xs), statistics.median(xs), max(xs)))
print(f"### Forwarding load, {stamp}, commit {commit}\n")
print(f"Machine: `nproc`={sh('nproc')}, kernel {sh('uname -r')}. Command: `scripts/load.sh {rounds} {rate} {secs}` "
      f"({rounds} rounds, configurations alternated within each; {rate} requests/s offered for {secs} s by "
      "`sipshard-load run --flows 8` pinned to CPU 1; target pinned to CPU 0, or 0-1 for 2 shards).\n")
relay = data.get("relay", {}).get("cpu_us")
print("| target | CPU per forwarded message, µs (min / median / max) | vs relay (median of per-round ratios) | loss % | p50 µs | p99 µs |")
print("|---|---|---|---|---|---|")
for cfg, d in data.items():
    ratio = "-"
    if relay and cfg != "relay":
        ratio = "{:.2f}x".format(statistics.median(a / b for a, b in zip(d["cpu_us"], relay)))
    name = "bare UDP relay" if cfg == "relay" else "sipshard --io {} --shards {}".format(*cfg.split()[:2]) + "".join(" `" + w + "`" for w in cfg.split()[2:])
    print(f"| {name} | {fmt(d['cpu_us'])} | {ratio} | {fmt(d['loss'], '{:.3f}')} | {fmt(d['p50'], '{:.0f}')} | {fmt(d['p99'], '{:.0f}')} |")
for shards in ("1", "2"):
    u, m = data.get("uring " + shards), data.get("mmsg " + shards)
    if u and m:
        ratios = [a / b for a, b in zip(u["cpu_us"], m["cpu_us"])]
        print(f"\nuring/mmsg CPU per message, {shards} shard(s), per round (min / median / max): {fmt(ratios)}")
PY
echo "written: $out" >&2
# RECORD=1 appends the section to perf/RESULTS.md as well.
if [ "${RECORD:-0}" = 1 ]; then
  { echo; cat "$out"; } >> perf/RESULTS.md
  echo "appended to perf/RESULTS.md" >&2
fi
