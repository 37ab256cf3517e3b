# Shell helpers shared by the scripts: free ports, starting and stopping
# sipshard, the processes a script started, waiting for one with a time
# limit, CPU ticks, and SIPp's statistics. Source it; it defines functions
# and the `pids` array only. Messages name the script that sourced it.

# Processes the script started and has not reaped yet; its EXIT trap kills
# them.
pids=()

# free_ports N [IP]: N free UDP ports on IP (default 127.0.0.1), chosen by
# the kernel, all bound at once so that they differ.
free_ports() {
  python3 - "$1" "${2:-127.0.0.1}" <<'PY'
import socket, sys
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind((sys.argv[2], 0))
print(*[s.getsockname()[1] for s in socks])
PY
}

# free_port IP: one free UDP port on IP.
free_port() { free_ports 1 "$1"; }

# port_free IP PORT: true when nothing is bound to it (no SO_REUSEPORT, so a
# socket of another process that has it set still makes the bind fail).
port_free() {
  python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)' "$1" "$2"
}

# cpu_ticks PID: utime + stime of PID so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The sipshard binary start_sipshard runs, and what runs it (e.g. taskset).
sipshard_bin=${SIPSHARD_BIN:-target/release/sipshard}
sipshard_wrap=()

# start_sipshard LOG ARGS...: starts sipshard with ARGS (stderr to LOG),
# waits up to 10 s for its banner (and, with --metrics-listen in ARGS, for
# its metrics address); sets sipshard_pid, sipshard_addr (the address it
# listens on: ARGS may --listen on port 0) and metrics_url. Exits 77 when
# io_uring is refused, 1 when it does not start.
start_sipshard() {
  local log=$1 i metrics=""
  shift
  [[ " $* " == *" --metrics-listen "* ]] && metrics=yes
  # Created here, not by the background job's redirection: the loop below
  # may read it before that job has run (a loaded machine), and a failed
  # read ends a script under set -e.
  : > "$log"
  "${sipshard_wrap[@]}" "$sipshard_bin" "$@" 2> "$log" &
  sipshard_pid=$!
  pids+=("$sipshard_pid")
  for i in $(seq 100); do
    sipshard_addr=$(sed -n 's/.* listening on \([^ ]*\) .*/\1/p' "$log" | head -n 1)
    metrics_url=$(sed -n 's/.*metrics at \(http:[^ ]*\).*/\1/p' "$log" | head -n 1)
    [ -n "$sipshard_addr" ] && { [ -z "$metrics" ] || [ -n "$metrics_url" ]; } && return 0
    kill -0 "$sipshard_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! kill -0 "$sipshard_pid" 2>/dev/null && grep -q "io_uring is not available" "$log"; then
    echo "$(basename "$0" .sh): skipped: $(tail -n 1 "$log")"
    exit 77
  fi
  echo "$(basename "$0" .sh): sipshard did not start:" >&2
  cat "$log" >&2
  exit 1
}

# stop_sipshard LOG: SIGTERM, up to 20 s to exit; sets sipshard_rc (137
# when it had to be killed) and exit_line (its last "stopped;" line in LOG).
stop_sipshard() {
  local log=$1 i
  kill -TERM "$sipshard_pid" 2>/dev/null || true
  for i in $(seq 200); do
    kill -0 "$sipshard_pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$sipshard_pid" 2>/dev/null; then
    echo "$(basename "$0" .sh): sipshard did not exit within 20 s of SIGTERM; killing it" >&2
    kill -KILL "$sipshard_pid" 2>/dev/null || true
  fi
  sipshard_rc=0
  wait "$sipshard_pid" || sipshard_rc=$?
  forget "$sipshard_pid"
  exit_line=$(grep "stopped;" "$log" | tail -n 1 || true)
}

# forget PID: PID has been reaped.
forget() {
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}

# wait_for PID [SECONDS]: its exit status, in `waited_rc`; with SECONDS,
# stops it (SIGTERM) if it has not exited by then, and `waited_rc` says
# "stopped".
wait_for() {
  local i stopped=""
  if [ -n "${2:-}" ]; then
    for i in $(seq $(( $2 * 10 ))); do
      kill -0 "$1" 2>/dev/null || break
      sleep 0.1
    done
    kill "$1" 2>/dev/null && stopped=stopped
  fi
  waited_rc=0
  wait "$1" || waited_rc=$?
  forget "$1"
  [ -z "$stopped" ] || waited_rc=$stopped
}

# metric_sum URL NAME: the sum of every sample of the counter or gauge
# NAME (with or without `_total`, any labels) at the metrics URL, or -1
# when the URL does not answer.
metric_sum() {
  python3 - "$1" "$2" <<'PY'
import sys, urllib.request
url, name = sys.argv[1], sys.argv[2]
try:
    text = urllib.request.urlopen(url, timeout=2).read().decode()
except OSError:
    print(-1)
    sys.exit(0)
total = 0
for line in text.splitlines():
    metric = line.split("{")[0].split(" ")[0]
    if metric in (name, name + "_total"):
        total += float(line.rsplit(" ", 1)[1])
print(int(total))
PY
}

# sipp_stats CSV [created]: from the last line of a SIPp statistics file
# (-trace_stat), "successful=N failed=M", and " created=K" (calls SIPp
# started) when a second argument is given.
sipp_stats() {
  python3 - "$1" "${2:-}" <<'PY'
import csv, sys
created = sys.argv[2] != ""
try:
    rows = list(csv.reader(open(sys.argv[1]), delimiter=";"))
    head, last = rows[0], rows[-1]
    get = lambda name: last[head.index(name)]
    line = f"successful={get('SuccessfulCall(C)')} failed={get('FailedCall(C)')}"
    if created:
        line += f" created={get('TotalCallCreated')}"
    print(line)
except (OSError, IndexError, ValueError):
    print("successful=? failed=?" + (" created=?" if created else "") + " (no statistics)")
PY
}
