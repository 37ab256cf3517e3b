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
#
# This file holds the settings and runs the steps; the parts, one job each,
# are in scripts/attack/: tools.sh (installs sipvicious and SIPp, reads
# their output), legit.sh (the legitimate SIPp UACs), metrics.sh and
# metrics.py (/metrics snapshots, the checks, the summary table),
# steps.sh (steps 0-4 and the summary, a function each), queries.py (SIP
# queries of bindings and bans) and words.py (svcrack's dictionaries).
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

# sipvicious' and SIPp's install and output; the steps' parts.
# shellcheck source=scripts/attack/tools.sh
source scripts/attack/tools.sh
install_tools
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

# shellcheck source=scripts/attack/legit.sh
source scripts/attack/legit.sh
# shellcheck source=scripts/attack/metrics.sh
source scripts/attack/metrics.sh
# shellcheck source=scripts/attack/steps.sh
source scripts/attack/steps.sh

setup
register_users
scan
if [ "$auth" = 1 ]; then guess_passwords; fi
floods
after_attacks
restart
summary
