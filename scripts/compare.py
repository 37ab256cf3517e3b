#!/usr/bin/env python3
"""sipshard against Kamailio: the same loads, in the same run, alternating.

Run through scripts/compare.sh, which installs Kamailio, builds the binaries
and the plotting tool, then runs this. Parts (issue #6):

  forwarding    `sipshard-load run` (8 UAC flows and a sink answering 200)
                through each target at rising offered rates: achieved rate,
                loss, latency percentiles, CPU per forwarded message. The
                bare UDP relay (`sipshard-load relay`: no SIP work) runs too,
                as the floor no proxy can go under.
  calls         SIPp calls (perf/uac.xml, perf/uas.xml: INVITE, 100, 180,
                200, ACK, BYE, 200, record-routed) through each target from
                several SIPp UAC/UAS pairs on distinct ports, at rising calls
                per second until calls fail or a target falls behind.
  registration  a REGISTER storm of distinct users (`sipshard-load
                register`): CPU per registration, latency, and memory per
                binding (growth of the proportional set size of every
                process of the target, over the users bound).

Targets run pinned to CPU 0 (every process of Kamailio too); generators to
CPU 1 (or the last CPU). CPU time is utime+stime from /proc of the target's
processes. Output goes to --out: forwarding.csv, calls.csv,
registration.csv, raw.log (every generator's own line), RESULTS.md (the
report: tables, ratios, verdicts) and the SVG plots (`sipshard-plot`). Unless --no-record,
the section also replaces the one between the compare markers in
perf/RESULTS.md. Every process started here is stopped by PID; all traffic
goes to 127.0.0.1.
"""

import argparse
import csv
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
TCK = os.sysconf("SC_CLK_TCK")
BEGIN = "<!-- scripts/compare.sh: generated section, begin -->"
END = "<!-- scripts/compare.sh: generated section, end -->"

FWD_COLS = ["target", "round", "offered_rps", "achieved_rps", "loss_pct", "p50_us", "p90_us",
            "p99_us", "p999_us", "cpu_us_per_msg"]
CALL_COLS = ["target", "round", "pairs", "offered_cps", "achieved_cps", "successful", "failed",
             "p50_ms", "p90_ms", "p99_ms", "cpu_us_per_call"]
REG_COLS = ["target", "round", "users", "offered_rps", "achieved_rps", "p50_us", "p99_us",
            "cpu_us_per_reg", "bytes_per_binding"]

START = time.monotonic()
children = []  # every Popen started here and not yet reaped


def progress(line):
    """One line per step on stderr, so a long run is never silent."""
    print(f"compare [{time.monotonic() - START:5.0f} s] {line}", file=sys.stderr, flush=True)


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


def free_ports(n):
    """N free UDP ports on loopback, chosen by the kernel."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def spawn(argv, cpu, **kw):
    p = subprocess.Popen(["taskset", "-c", str(cpu)] + argv, **kw)
    children.append(p)
    return p


def stop(p, grace=10.0):
    """SIGTERM, then SIGKILL after `grace` seconds; reaps it."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in children:
        children.remove(p)


def family(pid):
    """PID and its child processes (Kamailio forks its workers and timers),
    from the parent field of /proc/*/stat (no procps needed)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                # Fields after the command, which may hold spaces: state, ppid.
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                kids.append(int(entry))
    return [pid] + kids


def cpu_ticks(pid):
    total = 0
    for p in family(pid):
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            pass
    return total


def pss_kb(pid):
    total = 0
    for p in family(pid):
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def rcvbuf_errors():
    """UDP datagrams the kernel dropped for a full receive buffer, on any
    socket of this machine (RcvbufErrors in /proc/net/snmp): a step's delta
    tells whether losses happened in a socket buffer (the target's or a
    generator's) rather than inside a target."""
    try:
        lines = [l.split() for l in open("/proc/net/snmp") if l.startswith("Udp:")]
        return int(lines[1][lines[0].index("RcvbufErrors")])
    except (OSError, IndexError, ValueError):
        return 0


def kv(line):
    return dict(x.split("=", 1) for x in line.split() if "=" in x)


class Target:
    """sipshard, Kamailio or the bare relay, alone on the target CPU."""

    def __init__(self, name, job, args, log):
        self.name, self.job, self.args = name, job, args
        self.port, self.sink = free_ports(2)
        self.log = open(log, "ab")
        if name == "sipshard":
            # As registrar, sized for the users to come, as Kamailio's usrloc
            # hash is (without it the table pauses to grow: 50 ms at 1M AORs).
            extra = ["--record-route"] if job == "proxy" else \
                ["--domain", "example.com", "--expected-aors", str(args.users)]
            argv = [f"{BIN}/sipshard", "--listen", f"127.0.0.1:{self.port}", "--shards", "1",
                    "--io", "mmsg", "--stats-interval", "0"] + extra
        elif name == "kamailio":
            mem = ["-m", "64", "-M", "8"] if job == "proxy" else ["-m", str(args.kamailio_shm), "-M", "16"]
            rundir = os.path.join(args.work, "kamailio")
            os.makedirs(rundir, exist_ok=True)
            argv = ["kamailio", "-f", os.path.join(ROOT, "perf", "kamailio", f"{job}.cfg"),
                    "-L", args.modules, "-l", f"udp:127.0.0.1:{self.port}", "-n", "1"] + mem + \
                   ["-x", "tlsf", "-X", "tlsf", "-DD", "-E", "-Y", rundir]
        else:
            argv = [f"{BIN}/sipshard-load", "relay", "--listen", f"127.0.0.1:{self.port}",
                    "--to", f"127.0.0.1:{self.sink}", "--duration", "600"]
        self.proc = spawn(argv, args.target_cpu, stdout=self.log, stderr=self.log)
        time.sleep(1.0 if name == "kamailio" else 0.5)
        if self.proc.poll() is not None:
            raise SystemExit(f"compare: {name} did not start; see {log}")
        self.pid = self.proc.pid

    def drive(self, gen_cpu, argv, timeout):
        """Runs `sipshard-load ARGV` at this target on the generator CPU:
        its key=value line, the target's CPU ticks over the run, and the
        datagrams lost to full socket buffers meanwhile."""
        before, dropped = cpu_ticks(self.pid), rcvbuf_errors()
        out = subprocess.run(
            ["taskset", "-c", str(gen_cpu), f"{BIN}/sipshard-load"] + argv +
            ["--target", f"127.0.0.1:{self.port}", "--kv"],
            capture_output=True, text=True, timeout=timeout).stdout.strip()
        return out, cpu_ticks(self.pid) - before, rcvbuf_errors() - dropped

    def close(self):
        stop(self.proc)
        self.log.close()


def fmt3(xs, f="{:.2f}"):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return " / ".join(f.format(v) for v in (min(xs), statistics.median(xs), max(xs)))


def med(xs):
    return statistics.median(xs) if xs else None


def call_step_held(rows, offered_cps, planned):
    """A SIPp step held when, over its rounds (median), at most 0.1% of the
    planned calls failed and the achieved rate was within 20% of the offer."""
    failed = statistics.median(float(x["failed"]) for x in rows)
    achieved = statistics.median(float(x["achieved_cps"]) for x in rows)
    return failed <= planned / 1000 and achieved >= offered_cps / 1.2


def rtt_percentiles(folder):
    """p50, p90, p99 in ms of every INVITE->200 time SIPp traced in FOLDER,
    and the seconds from a SIPp's start to its last 200 (the longest)."""
    times, span = [], 0.0
    for name in os.listdir(folder):
        if name.endswith("_rtt.csv"):
            for line in open(os.path.join(folder, name)):
                parts = line.strip().split(";")
                if len(parts) >= 2:
                    try:
                        times.append(float(parts[1]))
                        span = max(span, float(parts[0]) / 1000)
                    except ValueError:
                        pass
    times.sort()
    if not times:
        return None, None, None, None
    pick = lambda p: times[round((len(times) - 1) * p)]
    return pick(0.5), pick(0.9), pick(0.99), span


def sipp_counts(stat_file):
    """(successful, failed, created) from the last line of a SIPp -trace_stat file."""
    try:
        rows = list(csv.reader(open(stat_file), delimiter=";"))
        head, last = rows[0], rows[-1]
        get = lambda name: int(last[head.index(name)])
        return get("SuccessfulCall(C)"), get("FailedCall(C)"), get("TotalCallCreated")
    except (OSError, IndexError, ValueError):
        return 0, 0, 0


class Run:
    def __init__(self, args):
        self.args = args
        self.out = args.out
        os.makedirs(self.out, exist_ok=True)
        self.raw = open(os.path.join(self.out, "raw.log"), "w")
        self.files = {}
        self.silent = []  # (part, target, step) where a target answered nothing

    def row(self, name, cols, values):
        if name not in self.files:
            f = open(os.path.join(self.out, name), "w")
            f.write(",".join(cols) + "\n")
            self.files[name] = f
        f = self.files[name]
        f.write(",".join(v if isinstance(v, str) else f"{v:.6g}" if isinstance(v, float) else str(v)
                         for v in values) + "\n")
        f.flush()

    def target_log(self, name):
        return os.path.join(self.args.work, f"{name}.log")

    # ---- 1. forwarding ------------------------------------------------------
    def forwarding(self):
        a = self.args
        targets = ["sipshard", "kamailio", "relay"]
        live = list(targets)
        for i, rate in enumerate(a.fwd_rates):
            for r in range(1, a.rounds + 1):
                for t in [x for x in targets if x in live]:
                    tg = Target(t, "proxy", a, self.target_log(t))
                    try:
                        res, ticks, dropped = tg.drive(
                            a.gen_cpu, ["run", "--sink", f"127.0.0.1:{tg.sink}", "--rate", str(rate),
                                        "--duration", str(a.fwd_secs), "--flows", "8"], a.fwd_secs + 60)
                    finally:
                        tg.close()
                    self.raw.write(f"forwarding {t} rate={rate} round={r}: {res} cpu_ticks={ticks} "
                                   f"udp_rcvbuf_errors={dropped}\n")
                    d = kv(res)
                    answered = int(d.get("answered", 0))
                    # The proxies forward the request and its 200; the relay
                    # only the request (the sink answers the UAC directly).
                    msgs = answered if t == "relay" else 2 * answered
                    if answered == 0:
                        self.silent.append(("forwarding", t, rate))
                    cpu = ticks / TCK * 1e6 / msgs if msgs else None
                    self.row("forwarding.csv", FWD_COLS, [
                        t, r, rate, float(d.get("achieved_per_s", 0)), float(d.get("loss_pct", 100)),
                        int(d.get("p50_us", 0)), int(d.get("p90_us", 0)), int(d.get("p99_us", 0)),
                        int(d.get("p999_us", 0)), cpu if cpu is not None else ""])
                    progress(f"forwarding {i + 1}/{len(a.fwd_rates)} {rate}/s offered, round {r}/{a.rounds}, "
                             f"{t}: achieved {d.get('achieved_per_s', '?')}/s, loss {d.get('loss_pct', '?')}%, "
                             f"p99 {d.get('p99_us', '?')} µs, "
                             + (f"{cpu:.2f} µs CPU/msg" if cpu else "no CPU figure")
                             + (f", {dropped} datagrams lost to full socket buffers" if dropped else ""))
            # A target that loses more than 5% at a rate is not offered more.
            for t in list(live):
                losses = [float(x["loss_pct"]) for x in self.read("forwarding.csv")
                          if x["target"] == t and int(float(x["offered_rps"])) == rate]
                if losses and statistics.median(losses) > 5:
                    live.remove(t)
                    progress(f"forwarding: {t} lost {statistics.median(losses):.1f}% at {rate}/s; no higher rate")

    # ---- 2. SIPp calls --------------------------------------------------------
    def calls(self):
        a = self.args
        targets = ["sipshard", "kamailio"]
        live = list(targets)
        uac = os.path.join(ROOT, "perf", "uac.xml")
        uas = os.path.join(ROOT, "perf", "uas.xml")
        for i, cps in enumerate(a.cps):
            per = max(1, cps // a.pairs)
            calls_each = per * a.call_secs
            for r in range(1, a.rounds + 1):
                for t in [x for x in targets if x in live]:
                    folder = os.path.join(a.work, f"calls-{t}-{cps}-{r}")
                    os.makedirs(folder)
                    tg = Target(t, "proxy", a, self.target_log(t))
                    servers, clients = [], []
                    try:
                        for k in range(a.pairs):
                            (port,) = free_ports(1)
                            servers.append((port, spawn(
                                ["sipp", "-sf", uas, "-i", "127.0.0.1", "-p", str(port), "-m", str(calls_each),
                                 "-nostdin", "-trace_stat", "-stf", os.path.join(folder, f"uas{k}_stat.csv"),
                                 "-trace_err", "-error_file", os.path.join(folder, f"uas{k}_errors.log")],
                                a.gen_cpu, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
                        time.sleep(0.5)
                        before = cpu_ticks(tg.pid)
                        dropped = rcvbuf_errors()
                        began = time.monotonic()
                        for k, (port, _) in enumerate(servers):
                            (src,) = free_ports(1)
                            clients.append(spawn(
                                ["sipp", f"127.0.0.1:{tg.port}", "-sf", uac, "-s", "bob",
                                 "-key", "uas", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(src),
                                 "-m", str(calls_each), "-r", str(per), "-nostdin",
                                 "-timeout", f"{2 * a.call_secs + 6}s",
                                 "-trace_rtt", "-rtt_freq", "1",
                                 "-trace_stat", "-stf", os.path.join(folder, f"uac{k}_stat.csv"),
                                 "-trace_err", "-error_file", os.path.join(folder, f"uac{k}_errors.log")],
                                a.gen_cpu, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                        for c in clients:
                            try:
                                c.wait(2 * a.call_secs + 10)
                            except subprocess.TimeoutExpired:
                                pass
                            stop(c)
                        wall = time.monotonic() - began
                        ticks = cpu_ticks(tg.pid) - before
                        dropped = rcvbuf_errors() - dropped
                        # A UAS ends with its UAC's last call; one still
                        # waiting 3 s later waits for calls that failed.
                        deadline = time.monotonic() + 3
                        for _, s in servers:
                            try:
                                s.wait(max(0.0, deadline - time.monotonic()))
                            except subprocess.TimeoutExpired:
                                pass
                            stop(s)
                    finally:
                        for c in clients:
                            stop(c)
                        for _, s in servers:
                            stop(s)
                        tg.close()
                    ok = failed = created = 0
                    for k in range(a.pairs):
                        s, f, c = sipp_counts(os.path.join(folder, f"uac{k}_stat.csv"))
                        ok, failed, created = ok + s, failed + f, created + c
                    p50, p90, p99, span = rtt_percentiles(folder)
                    offered = per * a.pairs
                    # Over the time the answered calls took (SIPp stamps each
                    # INVITE->200 time from its start), not the wall time, which
                    # includes waiting for a failed call's timers.
                    achieved = ok / max(span, a.call_secs) if span else 0.0
                    cpu = ticks / TCK * 1e6 / ok if ok else None
                    if ok == 0:
                        self.silent.append(("calls", t, cps))
                    self.raw.write(f"calls {t} cps={offered} round={r}: pairs={a.pairs} successful={ok} "
                                   f"failed={failed} created={created} wall_s={wall:.2f} span_s={span} "
                                   f"cpu_ticks={ticks} udp_rcvbuf_errors={dropped}\n")
                    self.row("calls.csv", CALL_COLS, [
                        t, r, a.pairs, offered, achieved, ok, failed + (calls_each * a.pairs - ok - failed),
                        p50 if p50 is not None else "", p90 if p90 is not None else "",
                        p99 if p99 is not None else "", cpu if cpu is not None else ""])
                    progress(f"calls {i + 1}/{len(a.cps)} {offered} calls/s offered over {a.pairs} SIPp pairs, "
                             f"round {r}/{a.rounds}, {t}: {ok}/{calls_each * a.pairs} calls ({achieved:.0f}/s), "
                             f"INVITE->200 p99 {p99} ms, {dropped} datagrams lost to full socket buffers, "
                             + (f"{cpu:.1f} µs CPU/call" if cpu else "no CPU figure"))
            # A step at which calls failed (over 0.1%: SIPp's UAS scenario
            # cannot recover a lost 200 to BYE, so a single datagram lost in
            # a generator's socket buffer fails a call) or the target fell
            # behind (over 20% under the offered rate) ends its sweep.
            for t in list(live):
                rows = [x for x in self.read("calls.csv")
                        if x["target"] == t and int(float(x["offered_cps"])) == per * a.pairs]
                if rows and not call_step_held(rows, per * a.pairs, calls_each * a.pairs):
                    live.remove(t)
                    progress(f"calls: {t} failed or fell behind at {per * a.pairs} calls/s; no higher rate")

    # ---- 3. registration -------------------------------------------------------
    def registration(self):
        a = self.args
        for r in range(1, a.rounds + 1):
            for t in ["sipshard", "kamailio"]:
                tg = Target(t, "registrar", a, self.target_log(t))
                try:
                    mem_before = pss_kb(tg.pid)
                    res, ticks, dropped = tg.drive(
                        a.gen_cpu, ["register", "--users", str(a.users), "--rate", str(a.reg_rate), "--flows", "8",
                                    "--domain", "example.com", "--retry-missing", "3"],
                        a.users / a.reg_rate * 3 + 120)
                    mem_after = pss_kb(tg.pid)
                finally:
                    tg.close()
                self.raw.write(f"registration {t} round={r}: {res} cpu_ticks={ticks} "
                               f"pss_kb={mem_before}..{mem_after} udp_rcvbuf_errors={dropped}\n")
                d = kv(res)
                bound = int(d.get("bound", 0))
                if bound == 0:
                    self.silent.append(("registration", t, a.users))
                # Per user bound: a REGISTER lost in the socket buffer of a
                # saturated target costs the sender's CPU, not the target's,
                # so dividing by REGISTERs sent would flatter the slower one.
                cpu = ticks / TCK * 1e6 / bound if bound else None
                per_binding = (mem_after - mem_before) * 1024 / bound if bound else None
                self.row("registration.csv", REG_COLS, [
                    t, r, a.users, float(d.get("offered_per_s", 0)), float(d.get("achieved_per_s", 0)),
                    int(d.get("p50_us", 0)), int(d.get("p99_us", 0)),
                    cpu if cpu is not None else "", per_binding if per_binding is not None else ""])
                progress(f"registration round {r}/{a.rounds}, {t}: {bound}/{a.users} users bound, "
                         f"{d.get('achieved_per_s', '?')} 200s/s, p99 {d.get('p99_us', '?')} µs, "
                         + (f"{cpu:.1f} µs CPU/REGISTER, " if cpu else "")
                         + (f"{per_binding:.0f} B/binding" if per_binding else "no memory figure"))

    def read(self, name):
        path = os.path.join(self.out, name)
        if name in self.files and not self.files[name].closed:
            self.files[name].flush()
        if not os.path.exists(path):
            return []
        return list(csv.DictReader(open(path)))

    def close(self):
        for f in self.files.values():
            f.close()
        self.raw.close()


# ---- the report ----------------------------------------------------------------

def num(x):
    return float(x) if x not in ("", None) else None


def by(rows, key, x):
    """{target: {x value: [rows]}}"""
    out = {}
    for row in rows:
        out.setdefault(row["target"], {}).setdefault(float(row[x]), []).append(row)
    return out


def stat_rows(g, xs, columns):
    """Markdown table rows, one per (x, target): x, the target, and
    min / median / max over the rounds of each (column, format)."""
    out = []
    for x in xs:
        for t in g:
            rows = g[t].get(x)
            if rows:
                cells = [fmt3([num(r[c]) for r in rows], f) for c, f in columns]
                out.append(f"| {x:.0f} | {t} | " + " | ".join(cells) + " |")
    return out


def paired_ratio(rows_a, rows_b, col):
    """Per-round ratios b/a of column COL (rounds matched by number)."""
    a = {r["round"]: num(r[col]) for r in rows_a}
    b = {r["round"]: num(r[col]) for r in rows_b}
    return [b[k] / a[k] for k in a if k in b and a[k] and b[k] is not None]


def report(run, args, command, plots):
    fwd, calls, reg = run.read("forwarding.csv"), run.read("calls.csv"), run.read("registration.csv")
    cpu_model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    commit = sh("git rev-parse --short HEAD") or "unknown"
    if sh("git status --porcelain --untracked-files=no"):
        commit += "+dirty"
    L = []
    L.append(f"### sipshard and Kamailio, {time.strftime('%Y-%m-%dT%H%MZ', time.gmtime())}, commit {commit}\n")
    L.append(f"Generated by `{command}` (the whole section, tables, verdicts and plots; "
             f"{time.monotonic() - START:.0f} s). Machine: `nproc`={sh('nproc')}, kernel {sh('uname -r')}, "
             f"{cpu_model}; {sh('kamailio -v 2>/dev/null | head -n 1')}; {sh('sipp -v 2>/dev/null | grep -m1 SIPp').rstrip('.')}.\n")
    L.append(f"Pinning: each target alone on CPU {args.target_cpu} (all of Kamailio's processes); "
             f"generators (`sipshard-load`, every SIPp) on CPU {args.gen_cpu}. "
             "Targets: `sipshard --shards 1 --io mmsg` (`--record-route` as proxy, `--domain example.com "
             f"--expected-aors {args.users}` as registrar); Kamailio `-n 1 -x tlsf -X tlsf` (one UDP worker, the TLSF allocator; Debian's "
             "default q_malloc with debugging costs 4x) with perf/kamailio/proxy.cfg or registrar.cfg; the "
             "bare UDP relay `sipshard-load relay` (no SIP work: the floor). CPU = utime+stime of every "
             "process of the target from /proc over the step. Figures are min / median / max over "
             f"{args.rounds} round(s); in each round the targets run one after the other.\n")
    verdicts = []
    if fwd:
        g = by(fwd, "offered_rps", "offered_rps")
        rates = sorted({float(r["offered_rps"]) for r in fwd})
        L.append(f"#### Forwarding: `sipshard-load run --flows 8` for {args.fwd_secs} s per step, OPTIONS and their 200\n")
        L.append("| offered req/s | target | achieved req/s | loss % | p50 µs | p90 µs | p99 µs | CPU µs per forwarded message |")
        L.append("|---|---|---|---|---|---|---|---|")
        L.extend(stat_rows(g, rates, [("achieved_rps", "{:.0f}"), ("loss_pct", "{:.3f}"), ("p50_us", "{:.0f}"),
                                      ("p90_us", "{:.0f}"), ("p99_us", "{:.0f}"), ("cpu_us_per_msg", "{:.2f}")]))
        L.append("")
        best = {}
        for t in g:
            ok = [rate for rate in rates if g[t].get(rate) and
                  statistics.median(num(r["loss_pct"]) for r in g[t][rate]) < 0.1]
            best[t] = max(ok) if ok else None
        L.append("Highest offered rate with < 0.1% loss (median over rounds): " + ", ".join(
            f"{t} {best[t]:.0f} requests/s" if best[t] else f"{t} none" for t in g) + ".\n")
        # The relay does no SIP work: a rate it cannot carry either is
        # beyond the generator's single CPU, not a proxy's limit.
        relay_fails = [rate for rate in rates if g.get("relay", {}).get(rate) and
                       statistics.median(num(r["loss_pct"]) for r in g["relay"][rate]) >= 0.1]
        if relay_fails:
            L.append(f"At {', '.join(f'{x:.0f}' for x in relay_fails)} requests/s the bare relay loses too: "
                     "that is the generator's ceiling on its one CPU, so figures there say little about the "
                     "proxies. A target that loses over 5% at a rate is not offered the next one.\n")
        if "sipshard" in g and "kamailio" in g:
            cpu_r, p99_better, p99_worse = [], [], []
            L.append("sipshard/Kamailio at each offered rate, per round (min / median / max): messages "
                     "forwarded per CPU-second (above 1: sipshard does more with the same CPU) and p99 "
                     "latency (below 1: sipshard answers faster).\n")
            L.append("| offered req/s | messages per CPU-second, sipshard/Kamailio | p99, sipshard/Kamailio |")
            L.append("|---|---|---|")
            for rate in rates:
                s, k = g["sipshard"].get(rate), g["kamailio"].get(rate)
                if not s or not k:
                    continue
                # CPU per message is the inverse of messages per CPU-second.
                per_rate = paired_ratio(s, k, "cpu_us_per_msg")
                cpu_r += per_rate
                L.append(f"| {rate:.0f} | {fmt3(per_rate)} | {fmt3(paired_ratio(k, s, 'p99_us'))} |")
                sp = statistics.median(num(r["p99_us"]) for r in s)
                kp = statistics.median(num(r["p99_us"]) for r in k)
                (p99_better if sp < kp else p99_worse).append(f"{rate:.0f}")
            L.append("")
            if cpu_r:
                L.append(f"Over all rates, sipshard/Kamailio messages per CPU-second: {fmt3(cpu_r)}.\n")
                verdicts.append(f"- Forwarding, messages per CPU-second: sipshard {statistics.median(cpu_r):.2f}x "
                                f"Kamailio (aim 5x): {'met' if statistics.median(cpu_r) >= 5 else 'not met'}.")
            if "relay" in g:
                floor = []
                for rate in rates:
                    if g["relay"].get(rate) and g["kamailio"].get(rate):
                        floor += paired_ratio(g["relay"][rate], g["kamailio"][rate], "cpu_us_per_msg")
                if floor:
                    verdicts.append(f"  The bare UDP relay, which does no SIP work at all, forwards "
                                    f"{statistics.median(floor):.2f}x Kamailio's messages per CPU-second: "
                                    "the most any proxy could reach here, with the same system calls.")
            verdicts.append("- Forwarding p99 below Kamailio's at every offered rate: "
                            + (f"met (at {', '.join(p99_better)} requests/s)." if not p99_worse else
                               f"not met (not lower at {', '.join(p99_worse)} requests/s"
                               + (f"; lower at {', '.join(p99_better)}" if p99_better else "") + ")."))
    if calls:
        g = by(calls, "offered_cps", "offered_cps")
        steps = sorted({float(r["offered_cps"]) for r in calls})
        pairs = calls[0]["pairs"]
        L.append(f"#### SIPp calls: {pairs} SIPp UAC/UAS pairs on distinct ports, {args.call_secs} s per step\n")
        L.append("Each call is INVITE, 100, 180, 200, ACK, BYE, 200 (7 messages through the proxy, ACK and BYE "
                 "loose-routed). Achieved = successful calls over the time from the UACs' start to their last 200. Latency is "
                 "SIPp's INVITE->200 time (`-trace_rtt`), which SIPp measures in whole milliseconds and "
                 "mostly reflects SIPp's own scheduling on the shared generator CPU.\n")
        L.append("| offered calls/s | target | achieved calls/s | failed or unfinished | p50 ms | p99 ms | CPU µs per call |")
        L.append("|---|---|---|---|---|---|---|")
        L.extend(stat_rows(g, steps, [("achieved_cps", "{:.0f}"), ("failed", "{:.0f}"), ("p50_ms", "{:.0f}"),
                                      ("p99_ms", "{:.0f}"), ("cpu_us_per_call", "{:.1f}")]))
        L.append("")
        held = {}
        for t in g:
            ok = [s for s in steps if g[t].get(s) and call_step_held(g[t][s], s, s * args.call_secs)]
            held[t] = max(ok) if ok else None
        last = {t: max(g[t]) for t in g}
        if len(set(last.values())) == 1 and len(g) > 1:
            L.append(f"Every target's sweep ended at the same step ({next(iter(last.values())):.0f} calls/s): "
                     "there the SIPp processes on the generator CPU fall behind and datagrams are lost to full "
                     "socket buffers (udp_rcvbuf_errors in raw.log) whichever proxy is in the middle, so this is "
                     "most likely the generator's limit, not the proxies'.\n")
        L.append("Highest offered rate at which at most 0.1% of calls failed and the achieved rate was within "
                 "20% of the offer (medians over rounds; the sweep of a target ends at the first step that "
                 "misses): " + ", ".join(
            f"{t} {held[t]:.0f} calls/s" if held[t] else f"{t} none" for t in g) + ".\n")
        if "sipshard" in g and "kamailio" in g:
            r_ = []
            for s in steps:
                if g["sipshard"].get(s) and g["kamailio"].get(s):
                    r_ += paired_ratio(g["sipshard"][s], g["kamailio"][s], "cpu_us_per_call")
            if r_:
                L.append(f"sipshard/Kamailio calls per CPU-second, per round and step: {fmt3(r_)}.\n")
                verdicts.append(f"- SIPp calls per CPU-second: sipshard {statistics.median(r_):.2f}x Kamailio.")
    if reg:
        g = by(reg, "users", "users")
        L.append(f"#### Registration storm: {args.users} distinct users, one REGISTER each, "
                 f"`sipshard-load register --rate {args.reg_rate} --flows 8 --retry-missing 3`\n")
        L.append("CPU per registration is the target's CPU time over the users bound (a REGISTER lost in a full "
                 "socket buffer costs the target nothing; retries fill the gaps); memory per binding is the "
                 "growth of the target's proportional set size (PSS, summed over its processes, so Kamailio's "
                 "shared memory counts once) over the users bound. Kamailio: usrloc in memory "
                 f"(`db_mode 0`, 2^16-slot hash), `-m {args.kamailio_shm} -M 16`.\n")
        L.append("| users | target | achieved 200s/s | p50 µs | p99 µs | CPU µs per REGISTER | bytes per binding |")
        L.append("|---|---|---|---|---|---|---|")
        L.extend(stat_rows(g, sorted({float(r["users"]) for r in reg}),
                           [("achieved_rps", "{:.0f}"), ("p50_us", "{:.0f}"), ("p99_us", "{:.0f}"),
                            ("cpu_us_per_reg", "{:.2f}"), ("bytes_per_binding", "{:.0f}")]))
        L.append("")
        if "sipshard" in g and "kamailio" in g:
            s_rows = [r for v in g["sipshard"].values() for r in v]
            k_rows = [r for v in g["kamailio"].values() for r in v]
            cpu_r = paired_ratio(s_rows, k_rows, "cpu_us_per_reg")
            mem_r = paired_ratio(s_rows, k_rows, "bytes_per_binding")
            p99_r = paired_ratio(s_rows, k_rows, "p99_us")
            L.append(f"sipshard/Kamailio per round: REGISTERs per CPU-second {fmt3(cpu_r)}; bytes per binding "
                     f"{fmt3([1 / x for x in mem_r])}; p99 {fmt3([1 / x for x in p99_r])}.\n")
            if mem_r:
                m = 1 / statistics.median(mem_r)
                verdicts.append(f"- Memory per binding: sipshard/Kamailio {m:.2f} (aim under 0.33): "
                                f"{'met' if m < 1 / 3 else 'not met'}.")
            if cpu_r:
                verdicts.append(f"- REGISTERs per CPU-second: sipshard {statistics.median(cpu_r):.2f}x Kamailio.")
    if verdicts:
        L.append("#### Against the aims of issue #6\n")
        L.extend(verdicts)
        L.append("")
    if plots:
        L.append("#### Plots\n")
        base = os.path.relpath(run.out, os.path.join(ROOT, "perf"))
        for p in plots:
            name = os.path.basename(p)
            L.append(f"- [{name}]({base}/{name})")
        L.append("")
    return "\n".join(L)


def record(section):
    """Replaces the generated section of perf/RESULTS.md (or appends it)."""
    path = os.path.join(ROOT, "perf", "RESULTS.md")
    text = open(path).read()
    block = f"{BEGIN}\n{section.rstrip()}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n## sipshard against Kamailio: `scripts/compare.sh` (issue #6)\n\n" + block
    open(path, "w").write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="about a minute: small steps, one round, no record")
    ap.add_argument("--rounds", type=int, help="rounds of every step (default 3; 1 with --quick)")
    ap.add_argument("--parts", default="forwarding,calls,registration",
                    help="which parts to run, comma separated (default all three)")
    ap.add_argument("--out", help="folder for CSVs, plots and the section (default perf/compare)")
    ap.add_argument("--no-record", action="store_true", help="leave perf/RESULTS.md alone")
    ap.add_argument("--fwd-rates", help="offered requests/s, comma separated")
    ap.add_argument("--fwd-secs", type=float, help="seconds of each forwarding step")
    ap.add_argument("--cps", help="offered calls/s, comma separated")
    ap.add_argument("--pairs", type=int, help="SIPp UAC/UAS pairs, each on its own ports")
    ap.add_argument("--call-secs", type=int, help="seconds of calls per SIPp step")
    ap.add_argument("--users", type=int, help="distinct users in the REGISTER storm")
    ap.add_argument("--reg-rate", type=int, help="REGISTERs per second offered in the storm")
    ap.add_argument("--modules", required=True, help="Kamailio's module folder (set by compare.sh)")
    ap.add_argument("--work", required=True, help="scratch folder for logs and SIPp files (set by compare.sh)")
    ap.add_argument("--command", default="scripts/compare.sh", help="the command line the report quotes (set by compare.sh)")
    args = ap.parse_args()
    quick = args.quick
    defaults = dict(rounds=1 if quick else 3,
                    fwd_rates="5000,10000" if quick else "10000,25000,50000,75000,100000",
                    fwd_secs=2.0 if quick else 3.0,
                    cps="100,200" if quick else "1000,2000,4000,6000,8000,10000",
                    pairs=2 if quick else 4,
                    call_secs=3 if quick else 4,
                    users=10000 if quick else 1000000,
                    reg_rate=10000 if quick else 25000)
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.fwd_rates = [int(x) for x in str(args.fwd_rates).split(",")]
    args.cps = [int(x) for x in str(args.cps).split(",")]
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
        if p not in ("forwarding", "calls", "registration"):
            raise SystemExit(f"compare: unknown part {p!r}")
    run = Run(args)
    for name in ("forwarding.csv", "calls.csv", "registration.csv"):
        path = os.path.join(args.out, name)
        if os.path.exists(path):
            os.remove(path)
    progress(f"writing to {args.out}; parts {', '.join(parts)}; {args.rounds} round(s)")
    try:
        if "forwarding" in parts:
            run.forwarding()
        if "calls" in parts:
            run.calls()
        if "registration" in parts:
            run.registration()
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
