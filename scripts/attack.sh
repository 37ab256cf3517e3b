#!/usr/bin/env bash
# Attack test: real attack tools against a running sipshard on loopback,
# then proof that legitimate users were still served and lost nothing.
#
#   scripts/attack.sh [SECONDS_PER_FLOOD] [USERS] [-- extra sipshard flags]
#
#   scripts/attack.sh                     # full run: 20 s floods, 1000 users
#   scripts/attack.sh 3 100 -- --io mmsg  # short run (what .ci/run does)
#   ATTACK_AUTH=1 scripts/attack.sh 3 100 -- --io mmsg  # short, with digest auth (.ci/run too)
#
# Environment: ATTACK_RATE, the floods' requests/s (default 5000);
# ATTACK_AUTH=1, the authenticated mode (below; default 0, without).
#
# sipshard runs on 127.0.0.1:5060 (sipvicious writes its Request-URIs without
# a port, so the server must be on 5060 for them to name it; the script exits
# 77, skipped, when that port is taken) with --domain example.test,
# --rate-limit 1000 --rate-burst 2000 --ban-time 60, a --state-dir in a
# temporary folder, --metrics-listen, and --shards 2 unless the extra flags
# set it. Each kind of traffic comes from a loopback address of its own,
# because the rate limit is per source address:
#
#   127.0.0.1   legitimate user agents (SIPp UAC: REGISTERs and calls)
#   127.0.0.5   the legitimate users' phones (a SIPp UAS; their Contacts)
#   127.0.0.2   sipvicious svmap and svwar (svmap binds it with -b; svwar
#               runs through scripts/svbind.py, as sipvicious 0.3.3's svwar
#               and svcrack ignore -b and would send from 127.0.0.1)
#   127.0.0.3   INVITE flood: SIPp, one UDP socket (source port) per call
#   127.0.0.4   REGISTER flood: the same, REGISTERs of new users
#   127.0.1.1-100  a "botnet": `sipshard-load flood`, 4 ports per address,
#               INVITEs and REGISTERs, each address under the rate limit
#   127.0.0.6-8 (ATTACK_AUTH=1) svcrack, password guessing (below)
#
# Steps:
#  1. USERS legitimate users register (perf/uac_register.xml, 200/s), each
#     with its Contact at the SIPp UAS.
#  2. Attacks, each bracketed by two scrapes of /metrics: svmap (OPTIONS,
#     then INVITE), svwar over USERS extensions (10000...) with OPTIONS,
#     INVITE and REGISTER, then three floods of SECONDS_PER_FLOOD seconds at
#     ATTACK_RATE requests/s (default 5000): INVITE flood, REGISTER flood,
#     botnet flood. During each flood every legitimate user registers again
#     from 127.0.0.1, spread over the flood; each must get its 200.
#  3. Checks: the server is still running; USERS/10 (at least 10) new users
#     register; every user, old and new, is called through the location
#     service (perf/uac_call_registered.xml -> sipshard -> SIPp UAS running
#     perf/uas_registered.xml, which checks the Request-URI is the user's
#     Contact); no binding was removed or expired, and the replica holds
#     every AOR the server acknowledged (metrics: sipshard_aors equals
#     bindings created - removed - expired, as every REGISTER here has one
#     Contact for an AOR of its own); sipshard exits 0 on SIGTERM.
#  4. sipshard is started again on the same --state-dir with
#     --drop-scanners: it must load every acknowledged AOR, svmap and svwar
#     must get no answer at all (counted as `scanner` drops), every user is
#     called again, and the replica again holds every acknowledged AOR.
#
# ATTACK_AUTH=1, the authenticated mode: sipshard also gets --auth-file
# (every user's credentials, written by scripts/make_users_csv.py
# --auth-file, plus one more user, crackme000001) and --auth-algorithm
# md5,sha-256 (SIPp 3.6 and svcrack answer the first challenge only, and
# only with MD5), in both runs. Every legitimate REGISTER goes through
# perf/uac_register_auth.xml (401, then 200 for SIPp's digest), and:
#  - after step 1, no auth failure and a 200 for each user;
#  - svwar -m REGISTER gets 401 for a random extension as for any other,
#    and gives up; once more with --force over real and made-up user
#    names (it stops at the first 401, alike for both): nothing found,
#    no 2xx, no binding;
#  - svcrack, sipvicious' password guesser: first a control from
#    127.0.0.8 against crackme000001 with 11 guesses, the last its
#    password, which svcrack must find (so its guesses are really checked
#    and a miss means something); the same guesses as crackme000001 for
#    user000001's AOR (-e): the right one is another user's, 403, no
#    binding; then user000001 (a real user) with a dictionary of 2000
#    wrong passwords at svcrack's own pace (about 200 guesses/s, under the
#    rate limit) from 127.0.0.6, and with 4000 as fast as it goes (-t 0)
#    from 127.0.0.7. Each must find nothing, with auth failures counted
#    and no binding made; a source the server banned must get no answer
#    afterwards from its address and port (on the shard it was banned on),
#    one not banned must still be answered; and user000001 registers
#    again right after (and is called in step 3);
#  - the REGISTER flood and the botnet's REGISTERs get 401 (or are
#    rate-limited) and create nothing: bindings created must equal the
#    legitimate registrations (USERS + new users + crackme000001), so the
#    query of svwar's bindings is skipped; every auth failure the server
#    counted must be one of svcrack's;
#  - the table gets three more columns: challenges (401s sent), auth
#    failures, auth accepted.
#
# Prints a table of what the server did per attack (from /metrics), the exit
# lines, then PASS or FAIL; exits 0, 1 (FAIL), 2 (a tool is missing) or 77
# (skipped: io_uring refused, or 127.0.0.1:5060 taken). Installs sipvicious
# (Debian package, else PyPI; svcrack is needed with ATTACK_AUTH=1 only)
# and SIPp (Debian: sip-tester) when missing.
# Logs go to perf/results/attack-<time>/. Every tool runs under `timeout`
# (svcrack under a limit of the script's, then SIGINT),
# every flood is bounded in count and time, and every target is 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 [SECONDS_PER_FLOOD] [USERS] [-- sipshard flags]" >&2; exit 2; }
seconds=20
users=1000
if [ $# -gt 0 ] && [ "$1" != "--" ]; then seconds=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" != "--" ]; then users=$1; shift; fi
if [ $# -gt 0 ]; then
  [ "$1" = "--" ] || usage
  shift
fi
extra=("$@")
case "$seconds$users" in *[!0-9]*) usage ;; esac
[ "$seconds" -ge 1 ] && [ "$users" -ge 1 ] || usage

domain=example.test
server_ip=127.0.0.1
server_port=5060
legit_ip=127.0.0.1
phone_ip=127.0.0.5
scan_ip=127.0.0.2
invite_ip=127.0.0.3
register_ip=127.0.0.4
bot_first=127.0.1.1
bot_count=100
flood_rate=${ATTACK_RATE:-5000}
auth=${ATTACK_AUTH:-0}
case "$auth" in 0 | 1) ;; *) echo "attack: ATTACK_AUTH must be 0 or 1" >&2; exit 2 ;; esac
crack_ip=127.0.0.6        # svcrack at its own pace (ATTACK_AUTH=1)
crack_fast_ip=127.0.0.7   # svcrack as fast as it goes
crack_control_ip=127.0.0.8  # svcrack against a password in its dictionary
victim=user000001         # the real user whose password svcrack guesses
crack_words=2000          # wrong passwords in svcrack's dictionary
rate_limit=1000
rate_burst=2000
ban_time=60
reg_rate=200    # legitimate REGISTERs/s in step 1
call_rate=100   # legitimate calls/s
new_users=$(( users / 10 > 10 ? users / 10 : 10 ))
total=$(( users + new_users ))

# ---- tools ------------------------------------------------------------------

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  as_root apt-get install -y "$@" || { as_root apt-get update && as_root apt-get install -y "$@"; }
}
# Debian's sipvicious 0.3.3 installs svmap/svwar/svcrack; PyPI's 0.3.8
# installs sipvicious_svmap/... Both take the options used here (-b bind
# address, -x address for Via, -P local port, -p port, -m method, -e
# extensions, --domain, svcrack's -u, -d and -t). 0.3.3's svwar and svcrack
# ignore -b (they bind 0.0.0.0): scripts/svbind.py runs them bound to
# their own loopback address.
find_sipvicious() {
  svmap=$(command -v sipvicious_svmap || command -v svmap || true)
  svwar=$(command -v sipvicious_svwar || command -v svwar || true)
  svcrack=$(command -v sipvicious_svcrack || command -v svcrack || true)
  [ -n "$svmap" ] && [ -n "$svwar" ] && { [ "$auth" = 0 ] || [ -n "$svcrack" ]; }
}
if ! find_sipvicious; then
  echo "attack: installing sipvicious"
  apt_install sipvicious || pip install sipvicious || pip3 install sipvicious || true
  find_sipvicious || { echo "attack: sipvicious (svmap, svwar, svcrack) not found and could not be installed" >&2; exit 2; }
fi
if ! command -v sipp >/dev/null; then
  echo "attack: installing SIPp (sip-tester)"
  apt_install sip-tester || true
  command -v sipp >/dev/null || { echo "attack: sipp not found: apt-get install -y sip-tester" >&2; exit 2; }
fi
command -v python3 >/dev/null || { echo "attack: python3 is needed" >&2; exit 2; }

cargo build --release --quiet
bin=target/release/sipshard
load=target/release/sipshard-load

out="perf/results/attack-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
tmp=$(mktemp -d)
state="$tmp/state"
mkdir -p "$state"

# The server on the first half of the CPUs this script may use, every client
# (attackers and legitimate user agents) on the other half.
read -r server_cpus client_cpus < <(python3 -c '
import os
c = sorted(os.sched_getaffinity(0))
h = len(c) // 2
print(",".join(map(str, c[:h])) or "-", ",".join(map(str, c[h:])) or "-")')
srv=()
cli=()
if [ "$server_cpus" != "-" ]; then
  srv=(taskset -c "$server_cpus")
  cli=(taskset -c "$client_cpus")
fi

# pids, forget, wait_for, free_port, port_free, start_sipshard,
# stop_sipshard, sipp_stats.
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
sipshard_bin=$bin
sipshard_wrap=("${srv[@]}")
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

has_flag() {
  local a
  for a in "${extra[@]}"; do [ "$a" = "$1" ] && return 0; done
  return 1
}
common=(--listen "$server_ip:$server_port" --domain "$domain"
  --rate-limit "$rate_limit" --rate-burst "$rate_burst" --ban-time "$ban_time"
  --state-dir "$state" --metrics-listen 127.0.0.1:0 --stats-interval 0)
has_flag --shards || common+=(--shards 2)
# ATTACK_AUTH=1: the users' credentials (written in step 0); MD5 first,
# as SIPp 3.6 and svcrack answer only the first challenge, with MD5.
[ "$auth" = 0 ] || common+=(--auth-file "$tmp/users.auth" --auth-algorithm md5,sha-256)
register_sf=perf/uac_register.xml
[ "$auth" = 0 ] || register_sf=perf/uac_register_auth.xml
scanners_dropped_anyway=""
has_flag --drop-scanners && scanners_dropped_anyway=yes

# sipp_uac NAME LIMIT SIPP-ARGS...: a SIPp UAC from legit_ip, at most LIMIT
# seconds, logs in $out/NAME*; sets uac_rc. Tries another port when the one
# chosen was taken meanwhile.
sipp_uac() {
  local name=$1 limit=$2 try port
  shift 2
  for try in 1 2 3; do
    port=$(free_port "$legit_ip")
    uac_rc=0
    timeout "$limit" "${cli[@]}" sipp "$@" -i "$legit_ip" -p "$port" -nostdin \
      -trace_err -error_file "$out/${name}_errors.log" -trace_stat -stf "$out/${name}_stat.csv" \
      > "$out/$name.log" 2>&1 || uac_rc=$?
    grep -q "Unable to bind" "$out/$name.log" || return 0
  done
}

# legit_register NAME CSV COUNT RATE: COUNT users of CSV register at RATE/s
# from legit_ip, Contact at the phones (with ATTACK_AUTH=1: 401, then the
# user's digest); true when each got its 200. SIPp's counts in legit_result.
legit_register() {
  local name=$1 csv=$2 count=$3 rate=$4
  local place=$(( (count + rate - 1) / rate ))
  sipp_uac "$name" $(( 2 * place + 60 )) -sf "$register_sf" -inf "$csv" \
    -key domain "$domain" -key contact "$phone_ip:$phone_port" \
    -m "$count" -r "$rate" -timeout "$(( 2 * place + 30 ))s" -timeout_error "$server_ip:$server_port"
  legit_result=$(sipp_stats "$out/${name}_stat.csv" created)
  [ "$uac_rc" = 0 ] && [[ "$legit_result" == "successful=$count failed=0 "* ]]
}

# legit_calls NAME: every user (old and new) is called at call_rate/s; true
# when every call completed. SIPp's counts in legit_result.
legit_calls() {
  local name=$1 place=$(( (total + call_rate - 1) / call_rate ))
  sipp_uac "$name" $(( 2 * place + 60 )) -sf perf/uac_call_registered.xml -inf "$tmp/all.csv" \
    -key domain "$domain" -m "$total" -r "$call_rate" \
    -timeout "$(( 2 * place + 30 ))s" -timeout_error "$server_ip:$server_port"
  legit_result=$(sipp_stats "$out/${name}_stat.csv" created)
  [ "$uac_rc" = 0 ] && [[ "$legit_result" == "successful=$total failed=0 "* ]]
}

# snap FILE: the server's counters, summed over shards (gauges: the
# largest); an empty file when /metrics cannot be read (server gone).
snap() {
  python3 - "$metrics_url" "$1" <<'PY' || { echo "attack: could not read $metrics_url" >&2; : > "$1"; }
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
want = {
    "sipshard_received_total": "received",
    "sipshard_sources_banned_total": "banned",
    "sipshard_bindings_created_total": "created",
    "sipshard_bindings_removed_total": "removed",
    "sipshard_bindings_expired_total": "expired",
    "sipshard_registers_refused_total": "refused",
    "sipshard_store_errors_total": "store_errors",
    "sipshard_send_failed_total": "send_failed",
    "sipshard_forwarded_requests_total": "forwarded",
    "sipshard_auth_accepted_total": "auth_ok",
    "sipshard_auth_challenges_total": "challenges",
    "sipshard_auth_failures_total": "auth_failed",
}
out = {}
for line in text.splitlines():
    m = re.match(r'^(\w+)\{([^}]*)\} (\S+)$', line)
    if not m:
        continue
    name, labels, value = m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2))), float(m.group(3))
    if name in want:
        key = want[name]
    elif name == "sipshard_replies_total":
        key = labels["class"]
    elif name == "sipshard_drops_total":
        key = labels["reason"]
    elif name == "sipshard_aors":
        out["aors"] = max(out.get("aors", 0), int(value))
        continue
    else:
        continue
    out[key] = out.get(key, 0) + int(value)
with open(sys.argv[2], "w") as f:
    for k, v in sorted(out.items()):
        f.write(f"{k} {v}\n")
PY
}

# lost_bindings FIRST LAST SECONDS: asks the registrar (REGISTER without
# Contact, a query, from legit_ip at up to 200/s) for sip:N@domain, N from
# FIRST to LAST, each of which svwar registered; prints how many answers
# list no binding, how many never came (within SECONDS in all), and which
# (the first 20).
lost_bindings() {
  python3 - "$server_ip" "$server_port" "$legit_ip" "$domain" "$1" "$2" "$3" <<'PY'
import socket, sys, time
host, port, src, domain = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
first, last, deadline = int(sys.argv[5]), int(sys.argv[6]), time.monotonic() + float(sys.argv[7])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
s.settimeout(2)
lport = s.getsockname()[1]
lost, unanswered = [], []
silent = 0
for n in range(first, last + 1):
    if silent >= 3 or time.monotonic() > deadline:  # not answering: stop waiting
        unanswered.append(n)
        continue
    msg = (f"REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:{lport};branch=z9hG4bKq{n}\r\n"
           f"From: <sip:{n}@{domain}>;tag=q{n}\r\nTo: <sip:{n}@{domain}>\r\nCall-ID: query-{n}\r\n"
           f"CSeq: 1 REGISTER\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    s.sendto(msg.encode(), (host, port))
    try:
        while True:
            data = s.recv(65535).decode("utf-8", "replace")
            if f"query-{n}" in data:
                break
    except socket.timeout:
        unanswered.append(n)
        silent += 1
        continue
    silent = 0
    head = data.split("\r\n\r\n")[0].lower()
    if not data.startswith("SIP/2.0 200") or ("\r\ncontact:" not in head and "\r\nm:" not in head):
        lost.append(n)
    time.sleep(0.005)
print(f"lost={len(lost)} unanswered={len(unanswered)} of={last - first + 1} e.g. {' '.join(map(str, (lost + unanswered)[:20])) or '-'}")
PY
}

# get FILE KEY: one counter of a snapshot; -1 when it has none.
get() { awk -v k="$2" '$1 == k { v = $2 } END { print (v == "" ? -1 : v) }' "$1"; }

# The attacks' rows for the summary: NAME|TOOL-SAID|BEFORE|AFTER.
rows=()
attack_begin() { snap "$tmp/before.snap"; }
attack_end() {
  local name=$1 said=$2 n
  n=${#rows[@]}
  snap "$tmp/after-$n.snap"
  cp "$tmp/before.snap" "$tmp/before-$n.snap"
  rows+=("$name|$said|$tmp/before-$n.snap|$tmp/after-$n.snap")
  last_row=$n
  echo "attack: $name: $said"
}
# row_delta KEY: how much a counter grew during the last attack.
row_delta() { echo $(( $(get "$tmp/after-$last_row.snap" "$1") - $(get "$tmp/before-$last_row.snap" "$1") )); }

failures=()
check() {  # check DESCRIPTION COMMAND...: records PASS/FAIL
  if "${@:2}"; then
    echo "attack: check: $1: ok"
  else
    echo "attack: check: $1: FAILED" >&2
    failures+=("$1")
  fi
}

# svmap_found LOG: how many SIP devices svmap listed.
svmap_found() { grep -c "^| $server_ip:$server_port" "$1" || true; }
# svwar_found LOG: how many extensions svwar listed.
svwar_found() { grep -cE "^\| [^ ]+ +\| (reqauth|noauth|weird)" "$1" || true; }
# svwar_said LOG: what svwar found, and why it stopped when it gave up on
# 401s (ATTACK_AUTH=1).
svwar_said() {
  local said
  said="found $(svwar_found "$1") extension(s)"
  if grep -q "authentication request for an unknown extension" "$1"; then
    said="$said; gave up: a random extension got 401 too"
  elif grep -q "svwar will probably not work" "$1" && grep -q "unknown response" "$1"; then
    said="$said; --force: 401 for a random name too, stopped at the next 401"
  fi
  echo "$said"
}
# svcrack_found LOG: the passwords svcrack printed, as USER=PASSWORD.
svcrack_found() { awk '/^\+=/ { t = 1; next } t && /^\| / { print $2 "=" $4 }' "$1"; }
svcrack_said() {
  local found said
  found=$(svcrack_found "$1" | tr '\n' ' ')
  found=${found% }
  said="found ${found:-no password}"
  grep -q "We got an unknown response" "$1" && said="$said; stopped at an answer it did not expect"
  grep -q "since we last received a response" "$1" && said="$said; stopped: no answer"
  echo "$said"
}
# probe IP PORT: the status code of sipshard's answer to a REGISTER (a
# query for sip:probe@domain) sent from IP:PORT, or "none" after two tries
# of 2 s: whether that source is banned on the shard its flow lands on.
probe() {
  python3 - "$server_ip" "$server_port" "$1" "$2" "$domain" <<'PY'
import socket, sys
host, port, src, sport, domain = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, sport))
s.settimeout(2)
for attempt in (1, 2):
    msg = (f"REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:{sport};branch=z9hG4bKprobe{attempt}\r\n"
           f"From: <sip:probe@{domain}>;tag=probe\r\nTo: <sip:probe@{domain}>\r\n"
           f"Call-ID: probe-{src}-{sport}-{attempt}\r\nCSeq: {attempt} REGISTER\r\nMax-Forwards: 70\r\n"
           f"Content-Length: 0\r\n\r\n")
    s.sendto(msg.encode(), (host, port))
    try:
        print(s.recv(65535).decode("utf-8", "replace").split(" ", 2)[1])
        sys.exit(0)
    except (socket.timeout, IndexError):
        pass
print("none")
PY
}

# ---- 0. set up ----------------------------------------------------------------

if ! port_free "$server_ip" "$server_port"; then
  echo "attack: skipped: $server_ip:$server_port is in use (sipvicious names port 5060, so sipshard must listen there)"
  exit 77
fi
if [ "$auth" = 0 ]; then
  python3 scripts/make_users_csv.py "$users" "$tmp/users.csv"
  python3 scripts/make_users_csv.py "$new_users" "$tmp/new.csv" --prefix newuser
else
  # Each CSV line gets SIPp's [authentication] keyword; the server's
  # --auth-file every user's HA1s: old, new, and crackme000001 (svcrack's
  # control), whose password is pw-crackme000001 as user000001's is
  # pw-user000001.
  python3 scripts/make_users_csv.py "$users" "$tmp/users.csv" --auth-file "$tmp/users.auth" --realm "$domain"
  python3 scripts/make_users_csv.py "$new_users" "$tmp/new.csv" --prefix newuser \
    --auth-file "$tmp/new.auth" --realm "$domain"
  python3 scripts/make_users_csv.py 1 "$tmp/crackme.csv" --prefix crackme --auth-file "$tmp/crackme.auth" --realm "$domain"
  cat "$tmp/new.auth" "$tmp/crackme.auth" >> "$tmp/users.auth"
  { head -n 1 "$tmp/users.csv"; grep "^$victim;" "$tmp/users.csv"; } > "$tmp/victim.csv"
  # svcrack's dictionaries: crack_words wrong passwords for the victim
  # (common ones, the victim's name, near misses, the other users'
  # passwords, PINs), twice as many for the fast run; the control's: ten
  # of them, then crackme000001's.
  # svwar --force's names: real users' and made-up ones, alternating.
  python3 - "$victim" "$crack_words" "$tmp" "$users" <<'PY'
import sys
victim, n, tmp, users = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
right = f"pw-{victim}"
words = ["1234", "12345", "123456", "password", "secret", "admin", "letmein", "qwerty", "changeme",
         victim, victim[::-1], right.upper(), right + "1", right[:-1], "pw-" + victim[:-1] + "2"]
words += [f"pw-user{k:06d}" for k in range(2, n)] + [f"{k:04d}" for k in range(10000)]
words = [w for w in dict.fromkeys(words) if w != right][:2 * n]
assert len(words) == 2 * n and right not in words
open(f"{tmp}/words.txt", "w").write("\n".join(words[:n]) + "\n")
open(f"{tmp}/words-fast.txt", "w").write("\n".join(words) + "\n")
open(f"{tmp}/control.txt", "w").write("\n".join(words[:10] + ["pw-crackme000001"]) + "\n")
names = []
for k in range(1, min(users, 50) + 1):
    names += [f"user{k:06d}", f"ghost{k:06d}"]
open(f"{tmp}/names.txt", "w").write("\n".join(names) + "\n")
PY
fi
{ cat "$tmp/users.csv"; tail -n +2 "$tmp/new.csv"; } > "$tmp/all.csv"

mode=""
[ "$auth" = 0 ] || mode=" (ATTACK_AUTH=1: digest authentication)"
echo "attack: $seconds s per flood at $flood_rate/s, $users users$mode; sipshard ${common[*]} ${extra[*]}"
echo "attack: server on CPUs ${server_cpus}, clients on CPUs ${client_cpus}; logs in $out"
start_sipshard "$out/sipshard.log" "${common[@]}" "${extra[@]}"
head -n 1 "$out/sipshard.log"

# The legitimate users' phones: one SIPp UAS for both rounds of calls.
phone_port=$(free_port "$phone_ip")
timeout 1800 "${cli[@]}" sipp -sf perf/uas_registered.xml -i "$phone_ip" -p "$phone_port" \
  -m $(( 2 * total )) -nostdin -trace_err -error_file "$out/phones_errors.log" \
  -trace_stat -stf "$out/phones_stat.csv" > "$out/phones.log" 2>&1 &
phones_pid=$!
pids+=("$phones_pid")
sleep 0.5
kill -0 "$phones_pid" 2>/dev/null || { echo "attack: the SIPp UAS did not start:" >&2; tail -n 3 "$out/phones.log" >&2; exit 1; }

# ---- 1. legitimate registrations ------------------------------------------------

check "$users users register before the attacks ($reg_rate/s)" legit_register register "$tmp/users.csv" "$users" "$reg_rate"
echo "attack: register: $legit_result"
snap "$tmp/registered.snap"
check "the replica holds the $users AORs" [ "$(get "$tmp/registered.snap" aors)" -eq "$users" ]
if [ "$auth" = 1 ]; then
  echo "attack: register: auth_challenges=$(get "$tmp/registered.snap" challenges)" \
    "auth_accepted=$(get "$tmp/registered.snap" auth_ok) auth_failures=$(get "$tmp/registered.snap" auth_failed)"
  check "every user was accepted through a 401 and its digest, with no auth failure" \
    [ "$(get "$tmp/registered.snap" auth_ok)" -ge "$users" -a "$(get "$tmp/registered.snap" challenges)" -ge "$users" \
    -a "$(get "$tmp/registered.snap" auth_failed)" -eq 0 ]
fi

# ---- 2. attacks -----------------------------------------------------------------

scan_port=$(free_port "$scan_ip")
# svwar sweeps USERS five-digit extensions, as a PBX numbers its phones.
ext_first=10000
ext_last=$(( ext_first + users - 1 ))

for method in OPTIONS INVITE; do
  attack_begin
  timeout 60 "${cli[@]}" "$svmap" -b "$scan_ip" -P "$scan_port" -p "$server_port" -m "$method" "$server_ip" \
    > "$out/svmap-$method.log" 2>&1 || true
  attack_end "svmap -m $method" "found $(svmap_found "$out/svmap-$method.log") device(s)"
done
if [ -z "$scanners_dropped_anyway" ]; then
  check "svmap saw sipshard" [ "$(svmap_found "$out/svmap-OPTIONS.log")" -ge 1 ]
fi

# svwar runs bound to scan_ip (scripts/svbind.py: 0.3.3 ignores -b).
svwar_bound=(python3 scripts/svbind.py "$scan_ip" "$svwar" -b "$scan_ip" -x "$scan_ip" -P "$scan_port")
for method in OPTIONS INVITE REGISTER; do
  attack_begin
  timeout $(( users / 20 + 60 )) "${cli[@]}" "${svwar_bound[@]}" -p "$server_port" \
    --domain "$domain" -m "$method" -e "$ext_first-$ext_last" "$server_ip" > "$out/svwar-$method.log" 2>&1 || true
  attack_end "svwar -m $method -e $ext_first-$ext_last" "$(svwar_said "$out/svwar-$method.log")"
done
if [ "$auth" = 1 ]; then
  check "svwar -m REGISTER found nothing and registered nothing (2xx: $(row_delta 2xx), bindings: $(row_delta created))" \
    [ "$(svwar_found "$out/svwar-REGISTER.log")" -eq 0 -a "$(row_delta 2xx)" -eq 0 -a "$(row_delta created)" -eq 0 ]
  attack_begin
  timeout $(( users / 20 + 60 )) "${cli[@]}" "${svwar_bound[@]}" -p "$server_port" \
    --domain "$domain" -m REGISTER --force -d "$tmp/names.txt" "$server_ip" > "$out/svwar-force.log" 2>&1 || true
  attack_end "svwar -m REGISTER --force, real+fake" "$(svwar_said "$out/svwar-force.log")"
  check "svwar -m REGISTER --force over real and made-up names found nothing and registered nothing (2xx: $(row_delta 2xx), bindings: $(row_delta created))" \
    [ "$(svwar_found "$out/svwar-force.log")" -eq 0 -a "$(row_delta 2xx)" -eq 0 -a "$(row_delta created)" -eq 0 ]

  # crack LOG LABEL IP LIMIT SVCRACK-ARGS...: svcrack from IP (a port of
  # its own, in crack_port), as the table's row LABEL. Once it has stopped
  # sending (out of passwords, or an answer it does not expect) it waits
  # 10 s for late answers; on loopback 1 s is plenty, so it then gets
  # SIGINT, on which it prints what it found and exits. So it does after
  # LIMIT seconds in any case.
  crack() {
    local log=$1 label=$2 ip=$3 limit=$4 pid i said
    shift 4
    crack_port=$(free_port "$ip")
    attack_begin
    "${cli[@]}" python3 scripts/svbind.py "$ip" "$svcrack" -v -b "$ip" -x "$ip" \
      -P "$crack_port" -p "$server_port" --domain "$domain" "$@" "$server_ip" > "$out/$log.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    said=""
    for i in $(seq $(( limit * 10 )) -1 0); do
      kill -0 "$pid" 2>/dev/null || break
      if grep -qE "no more passwords|We got an unknown response" "$out/$log.log"; then
        sleep 1
        break
      fi
      [ "$i" -gt 0 ] || said="; stopped at the time limit"
      sleep 0.1
    done
    kill -INT "$pid" 2>/dev/null || true
    wait_for "$pid" 10
    attack_end "$label" "$(svcrack_said "$out/$log.log")$said"
  }
  crack_failures=0
  # crack_checks LOG NAME IP: svcrack found no password, each guess was an
  # auth failure, no binding; a ban (if any) holds against its address and
  # port (so on the shard it was banned on).
  crack_checks() {
    local log=$1 name=$2 ip=$3 failed challenged banned answer
    failed=$(row_delta auth_failed)
    challenged=$(row_delta challenges)
    banned=$(row_delta banned)
    crack_failures=$(( crack_failures + failed ))
    echo "attack: $name: auth failures +$failed, challenges +$challenged, 2xx +$(row_delta 2xx)," \
      "503 +$(row_delta 5xx), rate-limited +$(row_delta rate_limited), sources banned +$banned"
    check "$name did not find $victim's password" \
      [ -z "$(svcrack_found "$out/$log.log")" -a -n "$(grep -l "found nothing" "$out/$log.log")" ]
    check "$name: its guesses were auth failures (+$failed, challenges +$challenged), no 2xx, no binding" \
      [ "$failed" -ge 1 -a "$challenged" -ge "$failed" -a "$(row_delta 2xx)" -eq 0 -a "$(row_delta created)" -eq 0 ]
    answer=$(probe "$ip" "$crack_port")
    if [ "$banned" -ge 1 ]; then
      check "$name went over the limit and was banned: $ip:$crack_port gets no answer now (got: $answer)" [ "$answer" = none ]
    else
      check "$name was not banned (rate-limited +$(row_delta rate_limited)): $ip:$crack_port still gets 401 (got: $answer)" \
        [ "$(row_delta rate_limited)" -eq 0 -a "$answer" = 401 ]
    fi
  }
  # The control: crackme000001's password is the last of 11 guesses.
  crack svcrack-control "svcrack -u crackme000001 (control)" "$crack_control_ip" 60 \
    -u crackme000001 -d "$tmp/control.txt"
  crack_failures=$(( crack_failures + $(row_delta auth_failed) ))
  check "svcrack finds a password that is in its dictionary (control: crackme000001, 1 binding)" \
    [ "$(svcrack_found "$out/svcrack-control.log")" = crackme000001=pw-crackme000001 -a "$(row_delta created)" -eq 1 ]
  # The same 11 guesses as crackme000001 for the victim's AOR (To): the
  # right one is another user's credentials, 403, and svcrack goes on.
  crack svcrack-other "svcrack -u crackme000001 -e $victim" "$crack_control_ip" 60 \
    -u crackme000001 -e "$victim" -d "$tmp/control.txt"
  crack_failures=$(( crack_failures + $(row_delta auth_failed) ))
  echo "attack: svcrack -e $victim: auth failures +$(row_delta auth_failed), challenges +$(row_delta challenges)"
  check "crackme000001's own credentials do not register $victim (11 failures, 403 for the right one: 2xx +$(row_delta 2xx), bindings +$(row_delta created))" \
    [ -z "$(svcrack_found "$out/svcrack-other.log")" -a "$(row_delta auth_failed)" -ge 11 \
    -a "$(row_delta 2xx)" -eq 0 -a "$(row_delta created)" -eq 0 ]
  crack svcrack "svcrack -u $victim, $crack_words words" "$crack_ip" 150 -u "$victim" -d "$tmp/words.txt"
  crack_checks svcrack "svcrack at its own pace" "$crack_ip"
  # As fast as it goes, with twice the words: over the burst, if fast enough.
  crack svcrack-fast "svcrack -t 0 -u $victim, $(( 2 * crack_words )) words" "$crack_fast_ip" 150 \
    -u "$victim" -d "$tmp/words-fast.txt" -t 0
  crack_checks svcrack-fast "svcrack -t 0" "$crack_fast_ip"
  check "$victim registers right after the password guessing" legit_register victim "$tmp/victim.csv" 1 1
fi

# flood NAME COMMAND...: runs the flood (under `timeout`) while every
# legitimate user registers again, spread over the flood.
flood() {
  local name=$1 legit_pid
  shift
  attack_begin
  legit_register "refresh-$name" "$tmp/users.csv" "$users" $(( (users + seconds - 1) / seconds )) \
    > /dev/null 2>&1 &
  legit_pid=$!
  pids+=("$legit_pid")
  timeout $(( seconds + 30 )) "${cli[@]}" "$@" > "$out/$name.log" 2>&1 || true
  wait_for "$legit_pid"
  local said
  case "$name" in
    botnet) said=$(grep "^flood:" "$out/$name.log" | sed 's/^flood: //' || true) ;;
    *) said="sent $(sipp_stats "$out/${name}_stat.csv" created | sed 's/.*created=//')" ;;
  esac
  attack_end "$name flood" "${said:-no report}"
  check "every legitimate REGISTER during the $name flood got its 200" [ "$waited_rc" = 0 ]
  if [ "$auth" = 1 ]; then
    check "the $name flood created no binding (401 or rate-limited; bindings: $(row_delta created))" \
      [ "$(row_delta created)" -eq 0 ]
  fi
  echo "attack: legitimate REGISTERs during the $name flood: $(sipp_stats "$out/refresh-${name}_stat.csv" created)"
}

count=$(( flood_rate * seconds ))
flood invite sipp -sf perf/attack_invite_flood.xml -t un -max_socket 4096 \
  -i "$invite_ip" -p "$(free_port "$invite_ip")" -key domain "$domain" -r "$flood_rate" -m "$count" \
  -timeout "$(( seconds + 10 ))s" -nostdin -trace_stat -stf "$out/invite_stat.csv" "$server_ip:$server_port"
flood register sipp -sf perf/attack_register_flood.xml -t un -max_socket 4096 \
  -i "$register_ip" -p "$(free_port "$register_ip")" -key domain "$domain" -r "$flood_rate" -m "$count" \
  -timeout "$(( seconds + 10 ))s" -nostdin -trace_stat -stf "$out/register_stat.csv" "$server_ip:$server_port"
flood botnet "$load" flood --target "$server_ip:$server_port" --domain "$domain" \
  --sources "$bot_first" --source-count "$bot_count" --sockets 4 --rate "$flood_rate" --duration "$seconds"

# ---- 3. after the attacks ---------------------------------------------------------

check "sipshard is still running after the attacks" kill -0 "$sipshard_pid"
check "$new_users new users register after the attacks" legit_register register-new "$tmp/new.csv" "$new_users" "$reg_rate"
echo "attack: new registrations: $legit_result"
check "all $total users (old and new) are called through the location service" legit_calls calls
echo "attack: calls: $legit_result"
snap "$tmp/end.snap"
if [ "$auth" = 0 ]; then
  svwar_bindings=$(lost_bindings "$ext_first" "$ext_last" $(( users / 50 + 60 )) || true)
  echo "attack: the bindings svwar's REGISTERs created, queried: $svwar_bindings"
  check "every binding svwar registered is still there" [ "${svwar_bindings%% of=*}" = "lost=0 unanswered=0" ]
else
  # svwar registered nothing here: the only bindings are the users' and
  # the one svcrack's control made for crackme000001.
  legit_bindings=$(( total + 1 ))
  check "no attacker made a binding: bindings created = the legitimate ones (created=$(get "$tmp/end.snap" created) of $legit_bindings)" \
    [ "$(get "$tmp/end.snap" created)" -eq "$legit_bindings" ]
  check "every auth failure was one of svcrack's guesses (auth failures=$(get "$tmp/end.snap" auth_failed), svcrack's=$crack_failures)" \
    [ "$(get "$tmp/end.snap" auth_failed)" -eq "$crack_failures" ]
fi
check "no binding was removed or expired" [ "$(get "$tmp/end.snap" removed)" -eq 0 -a "$(get "$tmp/end.snap" expired)" -eq 0 ]
# Every REGISTER sent here, legitimate or not, has one Contact and its own
# AOR (refreshes count as refreshed, not created), so the AORs the server
# answered 200 for are bindings created - removed - expired, and every one
# of them must be in the replica: a binding acknowledged and then lost
# (overwritten, dropped) fails this even when no legitimate user was hit.
acked=$(( $(get "$tmp/end.snap" created) - $(get "$tmp/end.snap" removed) - $(get "$tmp/end.snap" expired) ))
aors_end=$(get "$tmp/end.snap" aors)
check "every AOR the server acknowledged is in its replica (aors=$aors_end of $acked)" [ "$aors_end" -eq "$acked" ]
check "no REGISTER refused and no log error" [ "$(get "$tmp/end.snap" refused)" -eq 0 -a "$(get "$tmp/end.snap" store_errors)" -eq 0 ]
stop_sipshard "$out/sipshard.log"
exit1=$exit_line
check "sipshard exits 0 on SIGTERM" [ "$sipshard_rc" = 0 ]

# ---- 4. restart from the state directory, with --drop-scanners -------------------

restart=("${common[@]}")
[ -n "$scanners_dropped_anyway" ] || restart+=(--drop-scanners)
start_sipshard "$out/sipshard-restart.log" "${restart[@]}" "${extra[@]}"
loaded=$(sed -n 's/.*loaded \([0-9]*\) AOR(s).*/\1/p' "$out/sipshard-restart.log" | head -n 1)
echo "attack: restart: $(grep "loaded" "$out/sipshard-restart.log" | head -n 1)"
check "the restarted server loads every acknowledged AOR from --state-dir (loaded=${loaded:-?} of $acked)" [ "${loaded:-x}" = "$acked" ]

snap "$tmp/drop-before.snap"
attack_begin
timeout 60 "${cli[@]}" "$svmap" -b "$scan_ip" -P "$scan_port" -p "$server_port" "$server_ip" \
  > "$out/svmap-drop.log" 2>&1 || true
attack_end "svmap, --drop-scanners" "found $(svmap_found "$out/svmap-drop.log") device(s)"
check "with --drop-scanners svmap finds nothing" [ "$(svmap_found "$out/svmap-drop.log")" -eq 0 ]
attack_begin
timeout $(( users / 20 + 60 )) "${cli[@]}" "${svwar_bound[@]}" -p "$server_port" \
  --domain "$domain" -m INVITE -e "$ext_first-$ext_last" "$server_ip" > "$out/svwar-drop.log" 2>&1 || true
attack_end "svwar -m INVITE, --drop-scanners" "$(svwar_said "$out/svwar-drop.log")"
snap "$tmp/drop-after.snap"
# delta KEY: how much a counter grew while the scanners ran against --drop-scanners.
delta() { echo $(( $(get "$tmp/drop-after.snap" "$1") - $(get "$tmp/drop-before.snap" "$1") )); }
check "with --drop-scanners every scanner request was dropped (scanner drops: $(delta scanner)) and none answered" \
  [ "$(delta scanner)" -ge 1 -a "$(( $(delta 2xx) + $(delta 4xx) + $(delta 5xx) ))" -eq 0 ]

check "after the restart all $total users are called again" legit_calls calls-restart
echo "attack: calls after restart: $legit_result"
snap "$tmp/restart-end.snap"
aors_restart=$(get "$tmp/restart-end.snap" aors)
check "after the restart the replica holds every acknowledged AOR (aors=$aors_restart of $acked)" [ "$aors_restart" -eq "$acked" ]
wait_for "$phones_pid" 10
check "the phones (SIPp UAS) took every call" [ "$waited_rc" = 0 ]
stop_sipshard "$out/sipshard-restart.log"
exit2=$exit_line
check "the restarted sipshard exits 0 on SIGTERM" [ "$sipshard_rc" = 0 ]

# ---- summary ----------------------------------------------------------------------

echo
echo "attack: what sipshard did, per attack (counter deltas from /metrics; a flood's row includes"
if [ "$auth" = 0 ]; then
  echo "attack: the legitimate REGISTERs sent during it, one 2xx each):"
else
  echo "attack: the legitimate REGISTERs sent during it, one 401 and one 2xx each; chal = 401s sent):"
fi
python3 - "$auth" "${rows[@]}" <<'PY'
import sys
def load(path):
    d = {}
    for line in open(path):
        k, v = line.split()
        d[k] = int(v)
    return d
cols = [("received", "recv"), ("2xx", "2xx"), ("4xx", "4xx"), ("5xx", "5xx"),
        ("rate_limited", "rate_ltd"), ("scanner", "scanner"), ("banned", "banned"),
        ("created", "bindings+"), ("unresolved", "unresolv"), ("forwarded", "fwd")]
width = 36
if sys.argv[1] == "1":
    cols += [("challenges", "chal"), ("auth_failed", "authfail"), ("auth_ok", "auth_ok")]
    width = 40
print(f"  {'attack':<{width}}" + "".join(f"{h:>10}" for _, h in cols) + "  tool said")
for row in sys.argv[2:]:
    name, said, before, after = row.split("|")
    b, a = load(before), load(after)
    cells = "".join(f"{a.get(k, 0) - b.get(k, 0):>10}" for k, _ in cols)
    print(f"  {name:<{width}}{cells}  {said}")
PY
echo "attack: exit line, attacked server: ${exit1#*stopped; }"
echo "attack: exit line, restarted server: ${exit2#*stopped; }"
if [ "${#failures[@]}" -ne 0 ]; then
  echo "attack: FAIL (${#failures[@]} check(s) failed; logs in $out):" >&2
  printf 'attack:   %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "attack: PASS (logs in $out)"
