#!/usr/bin/env bash
# sipshard against Kamailio, the same loads in the same run (issue #6).
#
#   scripts/compare.sh            the full comparison, about 22 minutes:
#                                 3 rounds; writes perf/compare/ (CSV, SVG
#                                 plots, the section) and replaces the
#                                 generated section of perf/RESULTS.md
#   scripts/compare.sh --quick    about a minute and a half, one round of
#                                 small steps (2 s each),
#                                 to perf/results/compare-quick-<time>/ only
#                                 (what `scripts/bench.sh --quick` and .ci/run
#                                 run)
#   scripts/compare.sh --help     every option (parts, rates, rounds, users)
#
# Parts, each alternating its targets within every round:
#   forwarding    `sipshard-load run` at rising offered rates through
#                 sipshard (--io mmsg), sipshard-uring (--io uring; skipped
#                 where io_uring is refused), Kamailio and the bare UDP relay
#                 (the floor): achieved rate, loss, p50/p90/p99, CPU per
#                 forwarded message, and the uring/mmsg CPU ratio;
#   steering      one peer (`sipshard-load run --flows 1`) through sipshard
#                 --shards 2 with --steer flow, shared and call-id: achieved
#                 rate, loss, latency, CPU per message, datagrams per shard;
#   calls         SIPp calls from several UAC/UAS pairs at rising calls/s
#                 until calls fail through sipshard, sipshard-stateful
#                 (--mode stateful), Kamailio and kamailio-stateful (tm's
#                 t_relay(), perf/kamailio/proxy-stateful.cfg): achieved
#                 calls/s, INVITE->200 latency, CPU per call, and the
#                 stateful/stateless and sipshard/Kamailio t_relay CPU ratios;
#   transactions  memory per INVITE transaction at 10,000 concurrent calls
#                 (2,000 with --quick; issue #15), sipshard-stateful against
#                 kamailio-stateful: INVITEs (625 bytes with SDP, distinct
#                 Call-IDs, 200 every 20 ms) to a callee that never answers
#                 (open) or answers 200 at once (finished, lingering; read
#                 within about 1 s, before tm's 5 s wait_timer): growth of
#                 the PSS of every process of the target per INVITE, and
#                 the sipshard/Kamailio ratio (about 30 s of the full run);
#   registration  a REGISTER storm of distinct users (1,000,000 in the full
#                 run): CPU per REGISTER, latency, memory per binding.
# Targets are pinned to CPU 0, generators to the last CPU. The work is done
# by scripts/compare/ (python3 scripts/compare: drive.py runs the parts,
# report.py writes the section); plots by sipshard-plot (perf/plot). Installs
# kamailio and sip-tester from Debian when missing. Every process it starts
# is stopped by PID; everything goes to 127.0.0.1. Exits 1 when a target
# answered nothing at some step.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v kamailio >/dev/null || need+=(kamailio)
command -v sipp >/dev/null || need+=(sip-tester)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y "${need[@]}" || { $sudo apt-get update && $sudo apt-get install -y "${need[@]}"; }
fi
modules=$(dirname "$(dpkg -L kamailio 2>/dev/null | grep '/modules/sl.so$' | head -n 1)")
[ -d "$modules" ] || modules=/usr/lib/x86_64-linux-gnu/kamailio/modules

echo "compare: building sipshard, sipshard-load and sipshard-plot (release)" >&2
cargo build --release --quiet --bins
cargo build --release --quiet -p sipshard-plot

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 scripts/compare --modules "$modules" --work "$work" \
  --command "scripts/compare.sh${*:+ $*}" "$@"
