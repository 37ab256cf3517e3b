#!/usr/bin/env python3
"""sipshard against Kamailio: the same loads, in the same run, alternating.

Run through scripts/compare.sh, which installs Kamailio, builds the binaries
and the plotting tool, then runs this folder (`python3 scripts/compare`):
__main__.py reads the options and runs the parts, drive.py drives the
targets (one method per part), procs.py starts, stops and measures
processes, stats.py groups the rows and takes medians and ratios,
report.py writes the section. Parts (issue #6):

  forwarding    `sipshard-load run` (8 UAC flows and a sink answering 200)
                through each target at rising offered rates: achieved rate,
                loss, latency percentiles, CPU per forwarded message.
                sipshard runs twice, `--io mmsg` (target `sipshard`) and
                `--io uring` (`sipshard-uring`, skipped where io_uring is
                refused). The bare UDP relay (`sipshard-load relay`: no SIP
                work) runs too, as the floor no proxy can go under.
  steering      one peer (`sipshard-load run --flows 1`: one source port)
                through `sipshard --shards 2` with each --steer mode (flow,
                shared, call-id): achieved rate, loss, p99, CPU per
                forwarded message, and the datagrams each shard received
                (sipshard's exit line). A call-id refused here (no eBPF)
                runs as flow, and is recorded so.
  calls         SIPp calls (perf/uac.xml, perf/uas.xml: INVITE, 100, 180,
                200, ACK, BYE, 200, record-routed) through each target from
                several SIPp UAC/UAS pairs on distinct ports, at rising calls
                per second until calls fail or a target falls behind. The
                stateless proxies run beside their transaction-stateful
                twins: `sipshard --mode stateful` (target sipshard-stateful)
                and Kamailio with tm's t_relay() (kamailio-stateful,
                perf/kamailio/proxy-stateful.cfg); --call-targets picks.
  registration  a REGISTER storm of distinct users (`sipshard-load
                register`): CPU per registration, latency, and memory per
                binding (growth of the proportional set size of every
                process of the target, over the users bound).
  transactions  memory per INVITE transaction at --tx-invites concurrent
                calls (10,000; issue #15) through sipshard-stateful and
                kamailio-stateful: txgen.py sends that many INVITEs (an
                SDP offer, 625 bytes, distinct Call-IDs, 200 every 20 ms)
                to a callee that never answers (open transactions) or
                answers 200 at once (finished ones, lingering: 32 s in
                sipshard, tm's wait_timer 5 s in Kamailio; measured about
                1 s after the first 200); bytes per transaction is the
                growth of the PSS of every process of the target over the
                INVITEs, once every one reached the callee (distinct
                Call-IDs; both proxies retransmit) or every 200 the caller.

Targets run pinned to CPU 0 (every process of Kamailio too); generators to
CPU 1 (or the last CPU). CPU time is utime+stime from /proc of the target's
processes. Output goes to --out: forwarding.csv, steering.csv, calls.csv,
transactions.csv, registration.csv, raw.log (every generator's own line), RESULTS.md (the
report: tables, ratios, verdicts) and the SVG plots (`sipshard-plot`). Unless --no-record,
the section also replaces the one between the compare markers in
perf/RESULTS.md. Every process started here is stopped by PID; all traffic
goes to 127.0.0.1.
"""

import argparse
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts

from drive import CALL_TARGETS, Run  # noqa: E402  (after the line above)
from procs import BIN, ROOT, children, progress, stop  # noqa: E402
from report import record, report  # noqa: E402

# In the order they run; each is a method of drive.Run and writes <part>.csv.
PARTS = ("forwarding", "steering", "calls", "transactions", "registration")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="about a minute and a half: small steps, one round, no record")
    ap.add_argument("--rounds", type=int, help="rounds of every step (default 3; 1 with --quick)")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help=f"which parts to run, comma separated (default all: {','.join(PARTS)})")
    ap.add_argument("--out", help="folder for CSVs, plots and the section (default perf/compare)")
    ap.add_argument("--no-record", action="store_true", help="leave perf/RESULTS.md alone")
    ap.add_argument("--fwd-rates", help="offered requests/s, comma separated")
    ap.add_argument("--fwd-secs", type=float, help="seconds of each forwarding (and steering) step")
    ap.add_argument("--steer-rates", help="offered requests/s of the one peer in the steering part, comma separated")
    ap.add_argument("--steer-modes", default="flow,shared,call-id",
                    help="sipshard --steer modes the steering part alternates (default flow,shared,call-id)")
    ap.add_argument("--cps", help="offered calls/s, comma separated")
    ap.add_argument("--call-targets", default=",".join(CALL_TARGETS),
                    help=f"targets the calls part alternates, comma separated (default {','.join(CALL_TARGETS)})")
    ap.add_argument("--pairs", type=int, help="SIPp UAC/UAS pairs, each on its own ports")
    ap.add_argument("--call-secs", type=int, help="seconds of calls per SIPp step")
    ap.add_argument("--users", type=int, help="distinct users in the REGISTER storm")
    ap.add_argument("--reg-rate", type=int, help="REGISTERs per second offered in the storm")
    ap.add_argument("--tx-invites", type=int,
                    help="concurrent INVITE transactions in the transactions part (default 10000; 2000 with --quick)")
    ap.add_argument("--modules", required=True, help="Kamailio's module folder (set by compare.sh)")
    ap.add_argument("--work", required=True, help="scratch folder for logs and SIPp files (set by compare.sh)")
    ap.add_argument("--command", default="scripts/compare.sh", help="the command line the report quotes (set by compare.sh)")
    args = ap.parse_args()
    quick = args.quick
    defaults = dict(rounds=1 if quick else 3,
                    fwd_rates="5000,10000" if quick else "10000,25000,50000,75000,100000",
                    fwd_secs=2.0 if quick else 3.0,
                    steer_rates="5000,10000" if quick else "10000,25000,50000",
                    cps="100,200" if quick else "1000,2000,4000,6000,8000,10000",
                    pairs=2 if quick else 4,
                    call_secs=3 if quick else 4,
                    users=10000 if quick else 1000000,
                    reg_rate=10000 if quick else 25000,
                    tx_invites=2000 if quick else 10000)
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.fwd_rates = [int(x) for x in str(args.fwd_rates).split(",")]
    args.steer_rates = [int(x) for x in str(args.steer_rates).split(",")]
    args.steer_modes = args.steer_modes.split(",")
    args.cps = [int(x) for x in str(args.cps).split(",")]
    args.call_targets = args.call_targets.split(",")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if args.out is None:
        args.out = os.path.join(ROOT, "perf", "results", f"compare-quick-{stamp}") if quick \
            else os.path.join(ROOT, "perf", "compare")
    if quick:
        args.no_record = True
    args.out = os.path.abspath(args.out)
    ncpu = os.cpu_count() or 1
    args.target_cpu, args.gen_cpu = 0, ncpu - 1
    # Kamailio's shared memory holds usrloc: about 1 KB a binding, and room.
    args.kamailio_shm = max(256, args.users * 2 // 1000)
    parts = args.parts.split(",")
    for p in parts:
        if p not in PARTS:
            raise SystemExit(f"compare: unknown part {p!r}")
    for t in args.call_targets:
        if t not in CALL_TARGETS:
            raise SystemExit(f"compare: unknown calls target {t!r}")
    for m in args.steer_modes:
        if m not in ("flow", "shared", "call-id"):
            raise SystemExit(f"compare: unknown --steer mode {m!r}")
    run = Run(args)
    for name in [f"{p}.csv" for p in PARTS]:
        path = os.path.join(args.out, name)
        if os.path.exists(path):
            os.remove(path)
    progress(f"writing to {args.out}; parts {', '.join(parts)}; {args.rounds} round(s)")
    try:
        for p in PARTS:
            if p in parts:
                getattr(run, p)()
    finally:
        for p in list(children):
            stop(p, 2.0)
        run.close()
    plots = []
    plot = os.path.join(BIN, "sipshard-plot")
    res = subprocess.run([plot, args.out], capture_output=True, text=True)
    sys.stderr.write(res.stderr)
    if res.returncode != 0:
        raise SystemExit("compare: sipshard-plot failed")
    plots = [line for line in res.stdout.split() if line.endswith(".svg")]
    section = report(run, args, args.command, plots)
    open(os.path.join(args.out, "RESULTS.md"), "w").write(section + "\n")
    print(section)
    if not args.no_record:
        record(section)
        progress("perf/RESULTS.md: generated section replaced")
    progress(f"done: {args.out}")
    if run.silent:
        for part, t, step in run.silent:
            print(f"compare: {part}: {t} answered nothing at {step}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
