#!/usr/bin/env bash
# SIPp interop: calls through sipshard between a SIPp UAC and a SIPp UAS,
# then registrations and calls to the registered users.
#
#   scripts/interop.sh [CALLS] [RATE] [-- extra sipshard flags]
#
# 1. Proxy: starts sipshard on loopback with --record-route, a SIPp UAS
#    (perf/uas.xml) and a SIPp UAC (perf/uac.xml) placing CALLS calls
#    (default 300) at RATE calls/s (default 100); each call is INVITE, 100,
#    180, 200, ACK, BYE, 200, with ACK and BYE loose-routed back through
#    the proxy.
# 2. Registrar: starts a fresh sipshard with --domain example.com
#    --record-route, a SIPp UAS (perf/uas_registered.xml), then a SIPp UAC
#    (perf/uac_register.xml) that REGISTERs CALLS distinct users
#    (user000001...; scripts/make_users_csv.py) at RATE/s, each with its
#    Contact at the UAS, and then a SIPp UAC (perf/uac_call_registered.xml)
#    that calls each of them at sip:USER@example.com, at RATE calls/s; the
#    location service sends every INVITE to the UAS, which checks that its
#    Request-URI is the Contact registered for the To user.
#
# 3. Digest auth: a fresh sipshard with --auth-file (users and HA1s written
#    by scripts/make_users_csv.py --auth-file) and a SIPp UAC
#    (perf/uac_register_auth.xml) that REGISTERs CALLS users, is
#    challenged with 401 and answers with SIPp's own digest code; the exit
#    line must say registered, auth_accepted and auth_challenges = CALLS
#    and auth_failures=0.
#
# 1b. The same calls with the SIPp UAC over TCP to a `--listen tcp:`
#    address, first on one connection (`-t t1`), then on one connection
#    per call (`-t tn`); the UAS stays on UDP, so every response crosses
#    from UDP back to the connection (through the shard that owns it);
#    the exit line must say conns_accepted=1, then CALLS.
# 2b. The registrar over TCP: CALLS users REGISTER over SIPp's TCP
#    connection (`-t t1`, then `-t tn`: one connection per user) with
#    their own address in the Contact, and stay connected; a UDP caller
#    then calls each at sip:USER@example.com and the proxy must send every
#    INVITE over the connection that user registered on (RFC 5626 flows),
#    whichever shard owns it; the same SIPp answers them
#    (perf/uac_register_flow.xml, perf/uas_registered.xml as its
#    out-of-call scenario).
#
# 1c. Stateful: the calls of part 1 through --mode stateful; the exit line
#    must count a transaction per INVITE and per BYE, and no timeout.
# 1d. Forking: CALLS users registered at two SIPp UASs, one that answers
#    and one that must see the proxy's CANCEL (perf/uas_fork_cancelled.xml),
#    called through --mode stateful; every call must pass on all three.
#
# With INTEROP_ONLY=proxy in the environment, only part 1 runs; with
# INTEROP_ONLY=stateful, parts 1, 1c and 1d.
#
# Fails unless, in each part, every registration gets its 200, every call
# completes on both sides, sipshard exits 0 on SIGTERM, and (part 2) its
# exit line says registered=CALLS and aors=CALLS. Exits 77 (skipped) when
# sipshard was asked for --io uring and io_uring is refused here. Logs go to
# perf/results/interop-<time>/ (part 2 in its registrar/ folder). Every
# step has a time limit. Needs `sipp` (Debian package sip-tester) and
# python3.
set -euo pipefail
cd "$(dirname "$0")/.."

calls=${1:-300}
rate=${2:-100}
shift $(( $# > 2 ? 2 : $# )) || true
[ "${1:-}" = "--" ] && shift
extra=("$@")
domain=example.com

command -v sipp >/dev/null || { echo "sipp not found: apt-get install -y sip-tester" >&2; exit 2; }
cargo build --release --quiet

out="perf/results/interop-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"

# Time limits, in seconds: a SIPp run of CALLS at RATE/s gets the time to
# place them twice over plus a minute; `timeout` stops it 30 s after that.
place=$(( (calls + rate - 1) / rate ))
phase=$(( 60 + 2 * place ))


# pids, forget, wait_for, free_ports, start_sipshard, stop_sipshard,
# sipp_stats.
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# logs_for DIR NAME: sets `logs` to sipp's flags for its error log and
# statistics file, DIR/NAME_errors.log and DIR/NAME_stat.csv.
logs_for() {
  logs=(-trace_err -error_file "$1/$2_errors.log" -trace_stat -stf "$1/$2_stat.csv")
}

# start_uas DIR SCENARIO LIMIT [SIPP-ARGS...]: starts a SIPp UAS for CALLS
# calls on a free port, stopped after LIMIT seconds; sets uas_pid and
# uas_port. Tries another port when the one chosen was taken meanwhile.
start_uas() {
  local dir=$1 scenario=$2 limit=$3 try
  shift 3
  logs_for "$dir" uas
  for try in 1 2 3; do
    uas_port=$(free_ports 1)
    timeout "$limit" sipp -sf "$scenario" -i 127.0.0.1 -p "$uas_port" -m "$calls" -nostdin \
      "${logs[@]}" "$@" > "$dir/uas.log" 2>&1 &
    uas_pid=$!
    pids+=("$uas_pid")
    sleep 0.5
    kill -0 "$uas_pid" 2>/dev/null && return 0
    wait_for "$uas_pid"
    grep -q "Unable to bind" "$dir/uas.log" || break
  done
  echo "interop: SIPp UAS did not start ($dir/uas.log):" >&2
  tail -n 3 "$dir/uas.log" >&2
  exit 1
}

# run_uac DIR NAME LIMIT SIPP-ARGS...: runs a SIPp UAC from a free port for
# at most LIMIT seconds, logging to DIR/NAME.log; sets uac_rc and uac_port.
# Tries another port when the one chosen was taken meanwhile.
run_uac() {
  local dir=$1 name=$2 limit=$3 try
  shift 3
  logs_for "$dir" "$name"
  for try in 1 2 3; do
    uac_port=$(free_ports 1)
    uac_rc=0
    timeout "$limit" sipp "$@" -i 127.0.0.1 -p "$uac_port" -nostdin "${logs[@]}" \
      > "$dir/$name.log" 2>&1 || uac_rc=$?
    grep -q "Unable to bind" "$dir/$name.log" || return 0
  done
}

failed=0

# ---- 1. Proxy: SIPp UAC -> sipshard -> SIPp UAS ---------------------------

start_sipshard "$out/sipshard.log" --listen 127.0.0.1:0 --record-route "${extra[@]}"
start_uas "$out" perf/uas.xml 300
echo "interop: $(grep -m1 ' listening on ' "$out/sipshard.log")"
grep -m1 'unavailable' "$out/sipshard.log" || true

echo "interop: $calls calls at $rate/s: SIPp UAC -> sipshard $sipshard_addr -> SIPp UAS :$uas_port"
run_uac "$out" uac 300 -sf perf/uac.xml -s bob -key uas "127.0.0.1:$uas_port" \
  -m "$calls" -r "$rate" -timeout 240s -timeout_error "$sipshard_addr"
# The UAS ends with the UAC's last call; a UAS still waiting 10 s later
# waits for calls that failed.
wait_for "$uas_pid" 10
uas_rc=$waited_rc
stop_sipshard "$out/sipshard.log"
proxy_rc=$sipshard_rc

result=$(sipp_stats "$out/uac_stat.csv")
echo "interop: UAC (:$uac_port) exit $uac_rc, UAS exit $uas_rc, sipshard exit $proxy_rc; $result"
tail -n 1 "$out/sipshard.log"
if [ "$uac_rc" != 0 ] || [ "$uas_rc" != 0 ] || [ "$proxy_rc" != 0 ] || [ "$result" != "successful=$calls failed=0" ]; then
  echo "interop: proxy: FAILED" >&2
  failed=1
else
  echo "interop: proxy: OK"
fi

# INTEROP_ONLY=proxy: part 1 alone (scripts/steer.sh).
if [ "${INTEROP_ONLY:-}" = proxy ]; then
  echo "interop: logs in $out"
  exit "$failed"
fi

# ---- 1c/1d. Stateful proxy: SIPp UAC -> sipshard --mode stateful -> SIPp UAS(s) ----

# stateful_part: the calls of part 1 through --mode stateful. Every call
# must complete, and the exit line must count one transaction per INVITE
# and per BYE (tx_created=2*CALLS) and no timeout. (SIPp's -lost cannot
# stand in for a lossy network here: a UAS that "lost" an INVITE takes
# every copy of it for a retransmission of something it never answered,
# so nobody's retransmission could recover it; tests/stateful_e2e.rs
# covers the recovery.)
stateful_part() {
  local dir="$out/stateful"
  mkdir -p "$dir"
  start_sipshard "$dir/sipshard.log" --listen 127.0.0.1:0 --record-route --mode stateful "${extra[@]}"
  start_uas "$dir" perf/uas.xml 300
  echo "interop: stateful: $calls calls at $rate/s: SIPp UAC -> sipshard $sipshard_addr -> SIPp UAS :$uas_port"
  run_uac "$dir" uac 300 -sf perf/uac.xml -s bob -key uas "127.0.0.1:$uas_port" \
    -m "$calls" -r "$rate" -timeout 240s -timeout_error "$sipshard_addr"
  wait_for "$uas_pid" 10
  uas_rc=$waited_rc
  stop_sipshard "$dir/sipshard.log"
  proxy_rc=$sipshard_rc
  result=$(sipp_stats "$dir/uac_stat.csv")
  echo "interop: stateful: UAC (:$uac_port) exit $uac_rc, UAS exit $uas_rc, sipshard exit $proxy_rc; $result"
  echo "$exit_line"
  if [ "$uac_rc" != 0 ] || [ "$uas_rc" != 0 ] || [ "$proxy_rc" != 0 ] || [ "$result" != "successful=$calls failed=0" ] \
    || [[ " $exit_line " != *" tx_created=$(( 2 * calls )) "* ]] || [[ " $exit_line " != *" tx_timeouts=0 "* ]]; then
    echo "interop: stateful: FAILED" >&2
    failed=1
  else
    echo "interop: stateful: OK"
  fi
}

stateful_part

# fork_part: forking under --mode stateful. CALLS users REGISTER twice,
# once with their Contact at a SIPp UAS that answers (perf/uas_registered.xml)
# and once at one that answers 100 only and expects the proxy's CANCEL
# (perf/uas_fork_cancelled.xml); a SIPp UAC then calls each user. Every
# call must pass on all three SIPps (the caller's with one 200, the lost
# device's with the CANCEL and the ACK of its 487), and the exit line must
# say aors=CALLS, tx_created=2*CALLS (the INVITE, the BYE) and
# tx_timeouts=0.
fork_part() {
  local dir="$out/fork" answer_pid answer_port lost_pid lost_port answer_rc lost_rc reg_ok=1 who
  mkdir -p "$dir/answer" "$dir/lost"
  python3 scripts/make_users_csv.py "$calls" "$dir/users.csv"
  start_sipshard "$dir/sipshard.log" --listen 127.0.0.1:0 --domain "$domain" --record-route --mode stateful "${extra[@]}"
  start_uas "$dir/answer" perf/uas_registered.xml $(( 2 * phase + 60 ))
  answer_pid=$uas_pid answer_port=$uas_port
  start_uas "$dir/lost" perf/uas_fork_cancelled.xml $(( 2 * phase + 60 ))
  lost_pid=$uas_pid lost_port=$uas_port
  echo "interop: fork: $calls users @$domain, each registered at SIPp UAS :$answer_port (answers) and :$lost_port (cancelled); called at $rate/s through sipshard $sipshard_addr --mode stateful"
  for who in answer lost; do
    local port_var="${who}_port"
    run_uac "$dir" "register-$who" $(( phase + 30 )) -sf perf/uac_register.xml -inf "$dir/users.csv" \
      -key domain "$domain" -key contact "127.0.0.1:${!port_var}" \
      -m "$calls" -r "$rate" -timeout "${phase}s" -timeout_error "$sipshard_addr"
    result=$(sipp_stats "$dir/register-${who}_stat.csv")
    echo "interop: fork: REGISTER to :${!port_var} exit $uac_rc; $result"
    [ "$uac_rc" = 0 ] && [ "$result" = "successful=$calls failed=0" ] || reg_ok=0
  done
  call_rc=skipped
  result="(not run)"
  if [ "$reg_ok" = 1 ]; then
    run_uac "$dir" call $(( phase + 30 )) -sf perf/uac_call_registered.xml -inf "$dir/users.csv" \
      -key domain "$domain" -m "$calls" -r "$rate" -timeout "${phase}s" -timeout_error "$sipshard_addr"
    call_rc=$uac_rc
    result=$(sipp_stats "$dir/call_stat.csv")
    wait_for "$answer_pid" 10
    answer_rc=$waited_rc
    wait_for "$lost_pid" 10
    lost_rc=$waited_rc
  else
    wait_for "$answer_pid" 0
    wait_for "$lost_pid" 0
    answer_rc=skipped lost_rc=skipped
  fi
  stop_sipshard "$dir/sipshard.log"
  proxy_rc=$sipshard_rc
  echo "interop: fork: call UAC exit $call_rc, answering UAS exit $answer_rc, cancelled UAS exit $lost_rc, sipshard exit $proxy_rc; $result"
  echo "$exit_line"
  if [ "$reg_ok" != 1 ] || [ "$call_rc" != 0 ] || [ "$answer_rc" != 0 ] || [ "$lost_rc" != 0 ] || [ "$proxy_rc" != 0 ] \
    || [ "$result" != "successful=$calls failed=0" ] || [[ " $exit_line " != *" aors=$calls "* ]] \
    || [[ " $exit_line " != *" tx_created=$(( 2 * calls )) "* ]] || [[ " $exit_line " != *" tx_timeouts=0 "* ]]; then
    echo "interop: fork: FAILED" >&2
    failed=1
  else
    echo "interop: fork: OK"
  fi
}

fork_part

# INTEROP_ONLY=stateful: parts 1, 1c and 1d alone.
if [ "${INTEROP_ONLY:-}" = stateful ]; then
  echo "interop: logs in $out"
  exit "$failed"
fi

# ---- 1b. Proxy with a caller over TCP: SIPp UAC -t t1 / -t tn -> sipshard -> SIPp UAS (UDP)

# tcp_part MODE CONNS: the calls with the UAC on `-t MODE`; the exit line
# must say conns_accepted=CONNS.
tcp_part() {
  local mode=$1 conns=$2 dir="$out/tcp-$1"
  mkdir -p "$dir"
  start_sipshard "$dir/sipshard.log" --listen 127.0.0.1:0 --listen tcp:127.0.0.1:0 --record-route "${extra[@]}"
  tcp_addr=$(sed -n 's/.*, \([^ ]*\) (tcp).*/\1/p' "$dir/sipshard.log" | head -n 1)
  start_uas "$dir" perf/uas.xml 300
  echo "interop: tcp $mode: $calls calls at $rate/s: SIPp UAC over TCP -> sipshard $tcp_addr -> SIPp UAS :$uas_port (UDP)"
  # SIPp's default socket limit (50,000) is over the usual open-file limit.
  run_uac "$dir" uac 300 -t "$mode" -max_socket 1000 -sf perf/uac.xml -s bob -key uas "127.0.0.1:$uas_port" \
    -m "$calls" -r "$rate" -timeout 240s -timeout_error "$tcp_addr"
  wait_for "$uas_pid" 10
  uas_rc=$waited_rc
  stop_sipshard "$dir/sipshard.log"
  proxy_rc=$sipshard_rc
  result=$(sipp_stats "$dir/uac_stat.csv")
  echo "interop: tcp $mode: UAC (:$uac_port) exit $uac_rc, UAS exit $uas_rc, sipshard exit $proxy_rc; $result"
  tail -n 1 "$dir/sipshard.log"
  if [ "$uac_rc" != 0 ] || [ "$uas_rc" != 0 ] || [ "$proxy_rc" != 0 ] || [ "$result" != "successful=$calls failed=0" ] \
    || ! grep -q " conns_accepted=$conns " "$dir/sipshard.log"; then
    echo "interop: tcp $mode: FAILED" >&2
    failed=1
  else
    echo "interop: tcp $mode: OK"
  fi
}

# One connection for every call, then one connection per call.
tcp_part t1 1
tcp_part tn "$calls"

# ---- 2. Registrar: REGISTER CALLS users, then call each of them -----------

reg="$out/registrar"
mkdir -p "$reg"
python3 scripts/make_users_csv.py "$calls" "$reg/users.csv"
start_sipshard "$reg/sipshard.log" --listen 127.0.0.1:0 --domain "$domain" --record-route "${extra[@]}"
start_uas "$reg" perf/uas_registered.xml $(( 2 * phase + 60 ))

echo "interop: registrar: $calls users @$domain at $rate/s: SIPp UAC -> sipshard $sipshard_addr, Contact at SIPp UAS :$uas_port"
run_uac "$reg" register $(( phase + 30 )) -sf perf/uac_register.xml -inf "$reg/users.csv" \
  -key domain "$domain" -key contact "127.0.0.1:$uas_port" \
  -m "$calls" -r "$rate" -timeout "${phase}s" -timeout_error "$sipshard_addr"
reg_rc=$uac_rc
reg_result=$(sipp_stats "$reg/register_stat.csv")
echo "interop: registrar: REGISTER UAC (:$uac_port) exit $reg_rc; $reg_result"

call_rc=skipped
uac_port=-
call_result="(not run)"
if [ "$reg_rc" -eq 0 ] && [ "$reg_result" = "successful=$calls failed=0" ]; then
  echo "interop: registrar: $calls calls at $rate/s to sip:USER@$domain: SIPp UAC -> sipshard $sipshard_addr -> SIPp UAS :$uas_port"
  run_uac "$reg" call $(( phase + 30 )) -sf perf/uac_call_registered.xml -inf "$reg/users.csv" \
    -key domain "$domain" -m "$calls" -r "$rate" -timeout "${phase}s" -timeout_error "$sipshard_addr"
  call_rc=$uac_rc
  call_result=$(sipp_stats "$reg/call_stat.csv")
  wait_for "$uas_pid" 10
  uas_rc=$waited_rc
else
  # No calls will come: the UAS would only wait for its time limit.
  wait_for "$uas_pid" 0
  uas_rc=skipped
fi
stop_sipshard "$reg/sipshard.log"
proxy_rc=$sipshard_rc

echo "interop: registrar: call UAC (:$uac_port) exit $call_rc, UAS exit $uas_rc, sipshard exit $proxy_rc; $call_result"
echo "$exit_line"
if [ "$reg_rc" != 0 ] || [ "$reg_result" != "successful=$calls failed=0" ] \
  || [ "$call_rc" != 0 ] || [ "$uas_rc" != 0 ] || [ "$proxy_rc" != 0 ] \
  || [ "$call_result" != "successful=$calls failed=0" ] \
  || [[ " $exit_line " != *" registered=$calls "* ]] || [[ " $exit_line " != *" aors=$calls "* ]]; then
  echo "interop: registrar: FAILED" >&2
  failed=1
else
  echo "interop: registrar: OK"
fi

# ---- 2b. Registrar over TCP: UAs registered over their connections, called over them

# flow_part MODE CONNS: CALLS users REGISTER over TCP from one SIPp
# (perf/uac_register_flow.xml, `-t MODE`), each with its own address in
# the Contact, and hold their registrations open; a UDP caller
# (perf/uac_call_registered.xml) then calls each of them. The proxy must
# send every INVITE over the connection its user registered on (RFC 5626
# §5.3), through whichever shard owns it; the registering SIPp answers
# them with perf/uas_registered.xml as its out-of-call scenario. Fails
# unless every registration and call succeeds, that SIPp logged no failed
# Request-URI check, and the exit line says registered=CALLS,
# conns_accepted=CONNS and flows_failed=0.
flow_part() {
  local mode=$1 conns=$2 dir="$out/registrar-tcp-$1" hold reg_pid waited registered
  mkdir -p "$dir"
  python3 scripts/make_users_csv.py "$calls" "$dir/users.csv"
  start_sipshard "$dir/sipshard.log" --listen 127.0.0.1:0 --listen tcp:127.0.0.1:0 --domain "$domain" \
    --record-route --metrics-listen 127.0.0.1:0 "${extra[@]}"
  tcp_addr=$(sed -n 's/.*, \([^ ]*\) (tcp).*/\1/p' "$dir/sipshard.log" | head -n 1)
  # Each registration holds its connection long enough for the caller to
  # start once all are in and to place every call.
  hold=$(( 2 * place + 20 ))
  echo "interop: registrar tcp $mode: $calls users @$domain at $rate/s over TCP -> sipshard $tcp_addr, held ${hold} s; then called over UDP"
  logs_for "$dir" register
  uac_port=$(free_ports 1)
  timeout $(( phase + hold )) sipp -t "$mode" -max_socket 1000 -sf perf/uac_register_flow.xml \
    -oocsf perf/uas_registered.xml -inf "$dir/users.csv" -key domain "$domain" -d $(( hold * 1000 )) \
    -m "$calls" -r "$rate" -timeout "$(( phase + hold ))s" -timeout_error -i 127.0.0.1 -p "$uac_port" \
    -nostdin "${logs[@]}" "$tcp_addr" > "$dir/register.log" 2>&1 &
  reg_pid=$!
  pids+=("$reg_pid")
  registered=0
  for waited in $(seq $(( phase * 10 ))); do
    registered=$(metric_sum "$metrics_url" sipshard_bindings_created)
    [ "$registered" -ge "$calls" ] && break
    kill -0 "$reg_pid" 2>/dev/null || break
    sleep 0.1
  done
  call_rc=skipped
  call_result="(not run: $registered of $calls registered)"
  if [ "$registered" -ge "$calls" ]; then
    run_uac "$dir" call $(( phase + 30 )) -sf perf/uac_call_registered.xml -inf "$dir/users.csv" \
      -key domain "$domain" -m "$calls" -r "$rate" -timeout "${phase}s" -timeout_error "$sipshard_addr"
    call_rc=$uac_rc
    call_result=$(sipp_stats "$dir/call_stat.csv")
  fi
  wait_for "$reg_pid" $(( phase + hold ))
  reg_rc=$waited_rc
  reg_result=$(sipp_stats "$dir/register_stat.csv")
  stop_sipshard "$dir/sipshard.log"
  proxy_rc=$sipshard_rc
  bad_uri=$(grep -c "Failed regexp match" "$dir/register_errors.log" 2>/dev/null || true)
  echo "interop: registrar tcp $mode: REGISTER UAC exit $reg_rc ($reg_result, ${bad_uri:-0} wrong Request-URIs), call UAC exit $call_rc ($call_result), sipshard exit $proxy_rc"
  echo "$exit_line"
  if [ "$reg_rc" != 0 ] || [ "$reg_result" != "successful=$calls failed=0" ] || [ "${bad_uri:-0}" != 0 ] \
    || [ "$call_rc" != 0 ] || [ "$call_result" != "successful=$calls failed=0" ] || [ "$proxy_rc" != 0 ] \
    || [[ " $exit_line " != *" registered=$calls "* ]] || [[ " $exit_line " != *" conns_accepted=$conns "* ]] \
    || [[ " $exit_line " != *" flows_failed=0 "* ]]; then
    echo "interop: registrar tcp $mode: FAILED" >&2
    failed=1
  else
    echo "interop: registrar tcp $mode: OK"
  fi
}

# Every user on one connection, then each on its own.
flow_part t1 1
flow_part tn "$calls"

# ---- 3. Digest auth: REGISTER CALLS users, each challenged once ------------

auth="$out/auth"
mkdir -p "$auth"
python3 scripts/make_users_csv.py "$calls" "$auth/users.csv" --auth-file "$auth/users.auth" --realm "$domain"
# SIPp 3.6 answers only the first challenge and only with MD5.
start_sipshard "$auth/sipshard.log" --listen 127.0.0.1:0 --domain "$domain" \
  --auth-file "$auth/users.auth" --auth-algorithm md5,sha-256 "${extra[@]}"
echo "interop: auth: $calls users @$domain at $rate/s, 401 then digest MD5: SIPp UAC -> sipshard $sipshard_addr"
run_uac "$auth" register $(( phase + 30 )) -sf perf/uac_register_auth.xml -inf "$auth/users.csv" \
  -key domain "$domain" -key contact "127.0.0.1:9" \
  -m "$calls" -r "$rate" -timeout "${phase}s" -timeout_error "$sipshard_addr"
auth_rc=$uac_rc
auth_result=$(sipp_stats "$auth/register_stat.csv")
stop_sipshard "$auth/sipshard.log"
proxy_rc=$sipshard_rc
echo "interop: auth: REGISTER UAC (:$uac_port) exit $auth_rc, sipshard exit $proxy_rc; $auth_result"
echo "$exit_line"
if [ "$auth_rc" != 0 ] || [ "$proxy_rc" != 0 ] || [ "$auth_result" != "successful=$calls failed=0" ] \
  || [[ " $exit_line " != *" registered=$calls "* ]] || [[ " $exit_line " != *" auth_accepted=$calls "* ]] \
  || [[ " $exit_line " != *" auth_challenges=$calls "* ]] || [[ " $exit_line " != *" auth_failures=0 "* ]]; then
  echo "interop: auth: FAILED" >&2
  failed=1
else
  echo "interop: auth: OK"
fi

if [ "$failed" -ne 0 ]; then
  echo "interop: FAILED (logs in $out)" >&2
  exit 1
fi
echo "interop: OK (logs in $out)"
