# Shell helpers shared by the scripts: free ports, the processes a script
# started, waiting for one with a time limit, and SIPp's statistics.
# Source it; it defines functions and the `pids` array only.

# Processes the script started and has not reaped yet; its EXIT trap kills
# them.
pids=()

# free_ports N: N free UDP ports on loopback, chosen by the kernel.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
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
