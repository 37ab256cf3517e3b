#!/usr/bin/env python3
"""What TCP, TLS and WebSocket cost, sipshard against Kamailio (issue #14).

Run through scripts/transport-bench.sh, which installs Kamailio and its
TLS and WebSocket modules, builds the binaries, raises the open-file
limit and makes the certificates; this file drives the targets and
writes the section. It shares procs.py (processes, /proc) and stats.py
(min / median / max, paired ratios) with the comparison of
scripts/compare.sh. Parts, each alternating its targets within every
round:

  forwarding   `sipshard-load run --transport T --flows 8` at a few
               offered rates, T = udp, tcp, tls, ws: the caller's leg on T,
               the sink (UAS) on UDP, through sipshard (--io mmsg),
               sipshard-uring (--io uring; skipped where refused) and
               Kamailio: loss, latency, CPU per forwarded message (request
               and 200), and the TCP/UDP, TLS/UDP, WS/UDP and
               sipshard/Kamailio ratios, each taken within one round. A
               (target, transport) that loses over 5% at a rate is not
               offered the next one.
  handshakes   `sipshard-load handshakes`: full TLS 1.3 handshakes (no
               resumption) with an ECDSA P-256 and an RSA-2048
               certificate: achieved handshakes/s, the target's CPU per
               handshake, and the handshakes per second one core would do
               at that cost, against rustls's published figures.
  memory       `sipshard-load hold`: N TCP or TLS connections opened, one
               OPTIONS answered on each, then idle; the growth of the
               target's proportional set size (PSS, summed over its
               processes; RSS beside it) per connection.

After the parts, sipshard-plot (built by the script) draws two bar
charts into OUT/plots: forwarding CPU per message by the caller's
transport at one rate (the highest every target and transport forwarded
with under 1% loss in every round), and PSS per idle connection by
transport at one connection count; the section links them. Without the
tool, or if it fails, the section says so and the run goes on.

Targets run pinned to CPU 0 (every process of Kamailio too), generators
to the last CPU. A fresh target for every step. Every process started
here is stopped by PID; all traffic goes to 127.0.0.1.
"""

import argparse
import csv
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts

from procs import BIN, ROOT, START, TCK, children, cpu_ticks, pss_kb, rss_kb, sh, spawn, stop  # noqa: E402
from stats import fmt3, num, paired_ratio  # noqa: E402
import results  # noqa: E402
from results import csv_row  # noqa: E402

BEGIN = "<!-- scripts/transport-bench.sh: generated section, begin -->"
END = "<!-- scripts/transport-bench.sh: generated section, end -->"
HEADING = "## TCP, TLS and WebSocket against Kamailio: `scripts/transport-bench.sh` (issue #14)"
SIPSHARD_IO = {"sipshard": "mmsg", "sipshard-uring": "uring"}
KEYS = ("ecdsa", "rsa")
KEY_NAMES = {"ecdsa": "ECDSA P-256", "rsa": "RSA-2048"}
# Full TLS 1.3 handshakes per second on one core, server side, rustls
# with aws-lc-rs (website/content/perf/2026-03-07-report.md, as quoted in
# ../shared/design/transports.md §6.10): another machine, so read the
# ratio, not the gap.
RUSTLS = {"ecdsa": 6786, "rsa": 2357}
# Issue #14's goals (design note §6.10) and Kamailio's published figures.
GOAL_BYTES = {"tcp": 4096, "tls": 16384}
KAMAILIO_PUBLISHED = {"tcp": "about 4.5 kB", "tls": "52 kB or more (about 130 kB in Kamailio issue #3980)"}
GOAL_RATIO = {"tcp": 1.3, "tls": 1.6}

FWD_COLS = ["target", "transport", "round", "offered_rps", "achieved_rps", "loss_pct", "p50_us", "p99_us",
            "cpu_us_per_msg", "faults"]
HS_COLS = ["target", "key", "round", "count", "ok", "failed", "achieved_per_s", "cpu_us_per_hs", "p50_us", "p99_us"]
MEM_COLS = ["target", "transport", "round", "connections", "held", "pss_bytes_per_conn", "rss_bytes_per_conn",
            "open_secs", "failed"]
# sipshard-plot's inputs: the transport as a number code (its tables have
# one text column, `target`), which also orders the groups of bars.
PLOT_DIR = "plots"
TRANSPORT_CODE = {"udp": 0, "tcp": 1, "tls": 2, "ws": 3}
PLOT_FWD_COLS = ["target", "round", "transport", "offered_rps", "cpu_us_per_msg"]
PLOT_MEM_COLS = ["target", "round", "transport", "conns", "bytes_per_conn"]


def progress(line):
    """One line per step on stderr, so a long run is never silent."""
    print(f"transports [{time.monotonic() - START:5.0f} s] {line}", file=sys.stderr, flush=True)


def kv(line):
    return dict(x.split("=", 1) for x in line.split() if "=" in x)


class Refused(Exception):
    """A target this machine will not run (io_uring refused)."""


def free_ports(n):
    """N ports of 127.0.0.1 free for both TCP and UDP (the targets listen
    on both), chosen by the kernel."""
    held, ports = [], []
    try:
        while len(ports) < n:
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held += [t, u]
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(port)
        return ports
    finally:
        for s in held:
            s.close()


def accepts(port):
    """True when something accepts TCP connections on 127.0.0.1:PORT."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class Target:
    """sipshard (either backend) or Kamailio alone on the target CPU,
    listening on UDP, TCP, TLS (with the certificate KEY) and WebSocket."""

    def __init__(self, name, args, key="ecdsa", maxconn=None):
        self.name, self.args = name, args
        names = ("udp", "tcp", "tls", "ws", "sink")
        self.ports = dict(zip(names, free_ports(len(names))))
        self.log_path = os.path.join(args.work, f"{name}.log")
        self.log = open(self.log_path, "ab")
        self.log.seek(0, os.SEEK_END)
        self.log_at = self.log.tell()
        p = self.ports
        if name in SIPSHARD_IO:
            argv = [f"{BIN}/sipshard", "--listen", f"127.0.0.1:{p['udp']}", "--listen", f"tcp:127.0.0.1:{p['tcp']}",
                    "--listen", f"tls:127.0.0.1:{p['tls']}", "--listen", f"ws:127.0.0.1:{p['ws']}",
                    "--tls-cert", os.path.join(args.certs, f"cert-{key}.pem"),
                    "--tls-key", os.path.join(args.certs, f"key-{key}.pem"),
                    "--shards", "1", "--io", SIPSHARD_IO[name], "--stats-interval", "0", "--record-route",
                    "--max-connections-per-ip", "0"]
        else:
            rundir = os.path.join(args.work, "kamailio")
            os.makedirs(rundir, exist_ok=True)
            conns = maxconn or 2048
            # Shared memory holds every connection and its TLS state
            # (OpenSSL allocates there, about 64 KiB a connection during
            # its handshake): room for 128 KiB each, or the tls module
            # refuses handshakes once it runs low. Pages never touched cost
            # nothing (PSS counts what is used).
            shm = max(256, conns * 128 // 1024)
            argv = ["kamailio", "-f", os.path.join(ROOT, "perf", "kamailio", "proxy-transports.cfg"),
                    "-L", args.modules, "-l", f"udp:127.0.0.1:{p['udp']}", "-l", f"tcp:127.0.0.1:{p['tcp']}",
                    "-l", f"tls:127.0.0.1:{p['tls']}", "-l", f"tcp:127.0.0.1:{p['ws']}",
                    "-n", "1", "-m", str(shm), "-M", "8", "-x", "tlsf", "-X", "tlsf", "-DD", "-E", "-Y", rundir,
                    "-A", f'TLSCFG="{os.path.join(args.certs, f"tls-{key}.cfg")}"', "-A", f"MAXCONN={conns}"]
        self.proc = spawn(argv, args.target_cpu, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.proc.poll() is None:
            if name in SIPSHARD_IO and " listening on " in self.said():
                break
            if name == "kamailio" and accepts(p["tls"]) and accepts(p["ws"]):
                break
            time.sleep(0.05)
        if self.proc.poll() is not None or time.monotonic() >= deadline:
            self.close()
            if "io_uring is not available" in self.said():
                raise Refused("io_uring is not available here")
            raise SystemExit(f"transports: {name} did not start; see {self.log_path}")
        self.pid = self.proc.pid

    def addr(self, transport):
        return f"127.0.0.1:{self.ports[transport]}"

    def drive(self, argv, timeout):
        """`sipshard-load ARGV --kv` on the generator CPU: its line and
        the target's CPU ticks over it."""
        before = cpu_ticks(self.pid)
        try:
            done = subprocess.run(["taskset", "-c", str(self.args.gen_cpu), f"{BIN}/sipshard-load"] + argv + ["--kv"],
                                  capture_output=True, text=True, timeout=timeout)
            out, err = done.stdout.strip(), done.stderr.strip()
        except subprocess.TimeoutExpired:
            out, err = "", f"timed out after {timeout} s"
        return out, err, cpu_ticks(self.pid) - before

    def close(self):
        stop(self.proc)
        self.log.close()

    def said(self):
        with open(self.log_path, "rb") as f:
            f.seek(self.log_at)
            return f.read().decode(errors="replace")


class Run:
    def __init__(self, args):
        self.args = args
        os.makedirs(args.out, exist_ok=True)
        self.raw = open(os.path.join(args.out, "raw.log"), "w")
        self.files = {}
        self.silent = []  # (part, target, step) where a target answered nothing
        self.skipped = {}  # target -> why this machine refused it
        self.capped = None  # (asked, run) when the open-file limit capped a memory level

    def row(self, name, cols, values):
        csv_row(self.files, self.args.out, name, cols, values)

    def read(self, name):
        path = os.path.join(self.args.out, name)
        if name in self.files and not self.files[name].closed:
            self.files[name].flush()
        return list(csv.DictReader(open(path))) if os.path.exists(path) else []

    def target(self, name, **kw):
        """A fresh target, or None (said once) if this machine refuses it."""
        if name in self.skipped:
            return None
        try:
            return Target(name, self.args, **kw)
        except Refused as e:
            self.skipped[name] = str(e)
            progress(f"{name} skipped: {e}")
            return None

    # ---- forwarding ---------------------------------------------------------
    def forwarding(self):
        a = self.args
        live = {(t, tr) for t in a.targets for tr in a.transports}
        for i, rate in enumerate(a.rates):
            for r in range(1, a.rounds + 1):
                for tr in a.transports:
                    for t in a.targets:
                        if (t, tr) not in live:
                            continue
                        tg = self.target(t)
                        if tg is None:
                            continue
                        try:
                            res, err, ticks = tg.drive(
                                ["run", "--target", tg.addr(tr), "--transport", tr,
                                 "--tls-ca", os.path.join(a.certs, "ca-ecdsa.pem"),
                                 "--sink", tg.addr("sink"), "--rate", str(rate), "--duration", str(a.secs),
                                 "--flows", str(a.flows)], a.secs + 60)
                            died = tg.proc.poll()
                        finally:
                            tg.close()
                        d = kv(res)
                        answered = int(d.get("answered", 0))
                        if answered == 0:
                            self.silent.append(("forwarding", f"{t} over {tr}", rate))
                        # The request and its 200 both pass through.
                        cpu = ticks / TCK * 1e6 / (2 * answered) if answered else None
                        self.raw.write(f"forwarding {t} {tr} rate={rate} round={r}: {res} cpu_ticks={ticks} "
                                       f"exited={died}" + (f" stderr: {err}" if err else "") + "\n")
                        self.row("forwarding.csv", FWD_COLS, [
                            t, tr, r, rate, float(d.get("achieved_per_s", 0)), float(d.get("loss_pct", 100)),
                            int(d.get("p50_us", 0)), int(d.get("p99_us", 0)), cpu if cpu is not None else "",
                            d.get("faults", "none" if tr == "udp" else "?")])
                        progress(f"forwarding {i + 1}/{len(a.rates)} {rate}/s, round {r}/{a.rounds}, {t} over {tr}: "
                                 f"loss {d.get('loss_pct', '?')}%, p99 {d.get('p99_us', '?')} µs, "
                                 + (f"{cpu:.2f} µs CPU/msg" if cpu else "no CPU figure")
                                 + (f", faults {d['faults']}" if d.get("faults", "none") != "none" else "")
                                 + (f"; {err}" if err and not res else ""))
            for t, tr in sorted(live):
                losses = [float(x["loss_pct"]) for x in self.read("forwarding.csv")
                          if x["target"] == t and x["transport"] == tr and int(float(x["offered_rps"])) == rate]
                if losses and statistics.median(losses) > 5:
                    live.discard((t, tr))
                    progress(f"forwarding: {t} over {tr} lost {statistics.median(losses):.1f}% at {rate}/s; "
                             "no higher rate")

    # ---- handshakes ---------------------------------------------------------
    def handshakes(self):
        a = self.args
        targets = [t for t in a.targets if t != "sipshard-uring"]
        for r in range(1, a.rounds + 1):
            for key in KEYS:
                for t in targets:
                    tg = self.target(t, key=key)
                    if tg is None:
                        continue
                    try:
                        res, err, ticks = tg.drive(
                            ["handshakes", "--target", tg.addr("tls"),
                             "--tls-ca", os.path.join(a.certs, f"ca-{key}.pem"),
                             "--count", str(a.handshakes), "--concurrency", str(a.hs_concurrency)],
                            a.handshakes / 100 + 60)
                    finally:
                        tg.close()
                    d = kv(res)
                    ok = int(d.get("ok", 0))
                    if ok == 0:
                        self.silent.append(("handshakes", t, KEY_NAMES[key]))
                    cpu = ticks / TCK * 1e6 / ok if ok else None
                    self.raw.write(f"handshakes {t} {key} round={r}: {res} cpu_ticks={ticks}"
                                   + (f" stderr: {err}" if err else "") + "\n")
                    self.row("handshakes.csv", HS_COLS, [
                        t, key, r, a.handshakes, ok, int(d.get("failed", 0)), float(d.get("achieved_per_s", 0)),
                        cpu if cpu is not None else "", int(d.get("p50_us", 0)), int(d.get("p99_us", 0))])
                    progress(f"handshakes round {r}/{a.rounds}, {KEY_NAMES[key]}, {t}: {ok}/{a.handshakes} "
                             f"at {d.get('achieved_per_s', '?')}/s, "
                             + (f"{cpu:.0f} µs CPU each" if cpu else "no CPU figure")
                             + (f", faults {d.get('faults')}" if d.get("faults", "none") != "none" else "")
                             + (f"; {err}" if err and not res else ""))

    # ---- memory per idle connection -------------------------------------------
    def memory(self):
        a = self.args
        targets = [t for t in a.targets if t != "sipshard-uring"]
        # The hold and the target each need a descriptor per connection,
        # under the hard limit the script could set.
        room = a.fd_limit - 256
        levels = []
        for n in a.hold:
            if n > room:
                self.capped = (n, room)
                progress(f"memory: {n} connections need more than the open-file limit ({a.fd_limit}) allows; "
                         f"{room} instead")
                n = room
            if n > 0 and n not in levels:
                levels.append(n)
        for n in levels:
            for r in range(1, a.rounds + 1):
                for tr in ("tcp", "tls"):
                    for t in targets:
                        self.memory_step(t, tr, n, r)

    def memory_step(self, t, tr, n, r):
        a = self.args
        tg = self.target(t, maxconn=n + 64)
        if tg is None:
            return
        hold = None
        try:
            time.sleep(0.3)
            pss0, rss0 = pss_kb(tg.pid), rss_kb(tg.pid)
            hold = spawn([f"{BIN}/sipshard-load", "hold", "--target", tg.addr(tr), "--transport", tr,
                          "--tls-ca", os.path.join(a.certs, "ca-ecdsa.pem"), "--connections", str(n),
                          "--concurrency", "64", "--hold", "600", "--kv"],
                         a.gen_cpu, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            line = ""
            deadline = time.monotonic() + 30 + n / 200
            while not line and time.monotonic() < deadline and hold.poll() is None:
                ready, _, _ = select.select([hold.stdout], [], [], 0.5)
                if ready:
                    line = hold.stdout.readline().strip()
            if line:
                # Idle: Kamailio hands a connection back from its reader to
                # tcp_main after 5 s without data.
                time.sleep(a.settle)
            pss1, rss1 = pss_kb(tg.pid), rss_kb(tg.pid)
        finally:
            if hold is not None:
                stop(hold)
            tg.close()
        d = kv(line)
        held = int(d.get("holding", 0))
        if held == 0:
            err = hold.stderr.read().strip() if hold is not None and hold.stderr else ""
            self.silent.append(("memory", f"{t} over {tr}", n))
            progress(f"memory: {t} over {tr}: no connection held" + (f" ({err})" if err else ""))
        per = lambda a0, a1: (a1 - a0) * 1024 / held if held else ""
        self.raw.write(f"memory {t} {tr} n={n} round={r}: {line} pss_kb={pss0}..{pss1} rss_kb={rss0}..{rss1}\n")
        self.row("memory.csv", MEM_COLS, [t, tr, r, n, held, per(pss0, pss1), per(rss0, rss1),
                                          float(d.get("secs", 0)), int(d.get("failed", 0))])
        progress(f"memory {n} {tr} connections, round {r}/{a.rounds}, {t}: {held} held, "
                 + (f"{per(pss0, pss1):.0f} bytes each (PSS), {per(rss0, rss1):.0f} (RSS)" if held else "no figure"))

    def close(self):
        for f in self.files.values():
            f.close()
        self.raw.close()


# ---- the report --------------------------------------------------------------

def by(rows, *keys):
    out = {}
    for row in rows:
        out.setdefault(tuple(row[k] for k in keys), []).append(row)
    return out


# ---- the plots ---------------------------------------------------------------
# sipshard-plot reads its inputs from one folder and would refuse this
# script's forwarding.csv (a text `transport` column), so they go to a
# folder of their own, OUT/plots, the SVGs beside them.

def offered(row):
    """A forwarding row's offered rate as an int: the CSV writes it as
    written, and the plot file must hold one exact rate."""
    return int(float(row["offered_rps"]))


def plot_rate(rows):
    """The offered rate transports.csv is drawn at, and whether it is a
    clean one: the highest at which every (target, transport) present has
    rows, each with loss under 1% (every round), so the bars compare CPU
    per message at a load every target kept up with; if there is none, the
    lowest rate. None for no rows."""
    cells = {(r["target"], r["transport"]) for r in rows}
    g = by(rows, "target", "transport")
    clean = []
    for x in sorted({offered(r) for r in rows}):
        at = {c: [r for r in g[c] if offered(r) == x] for c in cells}
        if all(rs and all(num(r["loss_pct"]) is not None and num(r["loss_pct"]) < 1 for r in rs)
               for rs in at.values()):
            clean.append(x)
    if clean:
        return clean[-1], True
    rates = sorted({offered(r) for r in rows})
    return (rates[0], False) if rates else (None, False)


def plot_level(rows):
    """The connection count connections.csv is drawn at: the largest at
    which every (target, transport) present held all the connections asked
    for, in every round; if there is none, the smallest. None for no
    rows."""
    cells = {(r["target"], r["transport"]) for r in rows}
    g = by(rows, "target", "transport")
    reached = []
    for n in sorted({int(r["connections"]) for r in rows}):
        at = {c: [r for r in g[c] if int(r["connections"]) == n] for c in cells}
        if all(rs and all(int(float(r["held"] or 0)) >= n for r in rs) for rs in at.values()):
            reached.append(n)
    if reached:
        return reached[-1], True
    levels = sorted({int(r["connections"]) for r in rows})
    return (levels[0], False) if levels else (None, False)


def write_plot_csv(folder, name, cols, rows):
    """Writes `name` in `folder`, or removes it (and its plot would be
    stale) when there are no rows: a part not run this time must not be
    drawn from the last run's figures."""
    path = os.path.join(folder, name)
    if not rows:
        if os.path.exists(path):
            os.remove(path)
        return
    with open(path, "w") as f:
        f.write(",".join(cols) + "\n")
        for r in rows:
            f.write(",".join(str(v) for v in r) + "\n")


def plot_inputs(fwd, mem, out):
    """Writes sipshard-plot's transports.csv and connections.csv from the
    forwarding and memory rows into OUT/plots; returns what they were drawn
    at, for the section: (rate, clean, connections, all held)."""
    folder = os.path.join(out, PLOT_DIR)
    os.makedirs(folder, exist_ok=True)
    for svg in ("transports-cpu.svg", "connections-memory.svg"):
        if os.path.exists(os.path.join(folder, svg)):
            os.remove(os.path.join(folder, svg))
    x, clean = plot_rate(fwd)
    write_plot_csv(folder, "transports.csv", PLOT_FWD_COLS, [
        [r["target"], r["round"], TRANSPORT_CODE[r["transport"]], offered(r), r["cpu_us_per_msg"]]
        for r in fwd if offered(r) == x])
    n, held = plot_level(mem)
    write_plot_csv(folder, "connections.csv", PLOT_MEM_COLS, [
        [r["target"], r["round"], TRANSPORT_CODE[r["transport"]], n, r["pss_bytes_per_conn"]]
        for r in mem if int(r["connections"]) == n])
    return x, clean, n, held


def draw_plots(out):
    """Runs sipshard-plot on OUT/plots: the SVG paths it printed, and a
    line for the section when it is missing or failed (the run goes on:
    the tables are the result, the plots a view of them)."""
    tool = os.path.join(BIN, "sipshard-plot")
    folder = os.path.join(out, PLOT_DIR)
    if not os.access(tool, os.X_OK):
        return [], f"No plots: {os.path.relpath(tool, ROOT)} was not found (`cargo build --release -p sipshard-plot`)."
    try:
        res = subprocess.run([tool, folder], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return [], f"No plots: sipshard-plot did not run ({e})."
    sys.stderr.write(res.stderr)
    if res.returncode != 0:
        why = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit status {res.returncode}"
        return [], f"No plots: sipshard-plot failed: {why}."
    return [line for line in res.stdout.split() if line.endswith(".svg")], None


def plot_lines(plots, drawn, note):
    """The section's plot links (relative to perf/, where RESULTS.md is, as
    the comparison's are), with what each was drawn at."""
    if note:
        return ["#### Plots\n", note, ""]
    if not plots:
        return []
    x, clean, n, held = drawn
    L = ["#### Plots\n"]
    for p in plots:
        name = os.path.basename(p)
        base = os.path.relpath(os.path.dirname(os.path.abspath(p)), os.path.join(ROOT, "perf"))
        what = ""
        if name == "transports-cpu.svg" and x is not None:
            what = (f": at {x:,} req/s, " + ("the highest rate every target and transport forwarded with under 1% "
                                            "loss in every round" if clean else
                                            "the lowest rate (none was under 1% loss for every target and transport)"))
        elif name == "connections-memory.svg" and n is not None:
            what = (f": PSS at {n:,} connections, " + ("the most every target held in full on every transport" if held else
                                                     "the fewest asked for (no level was held in full by every target)"))
        L.append(f"- [{name}]({base}/{name}){what}")
    L.append("")
    return L


def report(run, args, plots=(), drawn=(None, False, None, False), plot_note=None):
    """The whole section; `plots` (sipshard-plot's SVG paths), `drawn`
    (plot_inputs's rate and count) and `plot_note` (why there are none)
    make its plot links."""
    a = args
    cpu_model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    commit = sh("git rev-parse --short HEAD") or "unknown"
    if sh("git status --porcelain --untracked-files=no"):
        commit += "+dirty"
    L = [f"### TCP, TLS and WebSocket, {time.strftime('%Y-%m-%dT%H%MZ', time.gmtime())}, commit {commit}\n",
         f"Generated by `{a.command}` ({time.monotonic() - START:.0f} s). Machine: `nproc`={sh('nproc')}, "
         f"kernel {sh('uname -r')}, {cpu_model}; {sh('kamailio -v 2>/dev/null | head -n 1')}; "
         f"open-file limit {a.fd_limit}.\n"]
    if a.note:
        L.append(f"**{a.note}**\n")
    L.append(f"Targets alone on CPU {a.target_cpu} (every Kamailio process), generators (`sipshard-load`) on CPU "
             f"{a.gen_cpu}, a fresh target per step. sipshard: `--shards 1 --io mmsg` (and `--io uring` as "
             "sipshard-uring in forwarding, where io_uring drives the connections itself: multishot accept and "
             "receive; the handshake and memory parts run mmsg only, on epoll), listening on UDP, TCP, TLS and WS, `--record-route`. "
             "Kamailio: perf/kamailio/proxy-transports.cfg, `-n 1` (one UDP worker), `tcp_children=1` (one "
             "TCP/TLS/WS reader), `-x tlsf -X tlsf`, the tls module (OpenSSL 3) and xhttp + websocket for WS. "
             "Certificates made at run time by openssl (a CA and a leaf for 127.0.0.1, ECDSA P-256 or "
             "RSA-2048). CPU = utime+stime of every process of the target from /proc over the step. Figures "
             f"are min / median / max over {a.rounds} round(s); ratios are taken within a round, then "
             "min / median / max.\n")
    verdicts = []
    fwd = run.read("forwarding.csv")
    if fwd:
        L += forwarding_lines(fwd, a, verdicts)
    hs = run.read("handshakes.csv")
    if hs:
        L += handshake_lines(hs, a, verdicts)
    mem = run.read("memory.csv")
    if mem:
        L += memory_lines(mem, run, verdicts)
    for t, why in run.skipped.items():
        L.append(f"{t} was not run: {why}.\n")
    if verdicts:
        L.append("#### Against the goals of issue #14 (../shared/design/transports.md §6.10)\n")
        L += verdicts
        L.append("")
    L += plot_lines(plots, drawn, plot_note)
    return "\n".join(L)


def forwarding_lines(rows, a, verdicts):
    L = [f"#### Forwarding with the caller on each transport: `sipshard-load run --transport T --flows {a.flows}`, "
         f"{a.secs} s per step\n",
         "OPTIONS from the caller's connections (or UDP sockets) to the sink on UDP and their 200s back: "
         "CPU per forwarded message counts the request and its 200. TCP and TLS messages are framed by "
         "Content-Length, WS ones a frame each (masked by the client); TLS is TLS 1.3 with ECDSA P-256. "
         "A (target, transport) that loses over 5% at a rate is not offered the next one.\n",
         "| offered req/s | transport | target | achieved req/s | loss % | p50 µs | p99 µs | CPU µs per forwarded message |",
         "|---|---|---|---|---|---|---|---|"]
    g = by(rows, "offered_rps", "transport", "target")
    rates = sorted({int(float(r["offered_rps"])) for r in rows})
    transports = [t for t in a.transports if any(r["transport"] == t for r in rows)]
    targets = [t for t in a.targets if any(r["target"] == t for r in rows)]
    for rate in rates:
        for tr in transports:
            for t in targets:
                rs = g.get((str(rate), tr, t))
                if rs:
                    L.append(f"| {rate} | {tr} | {t} | " + " | ".join(
                        fmt3([num(x[c]) for x in rs], f) for c, f in
                        (("achieved_rps", "{:.0f}"), ("loss_pct", "{:.3f}"), ("p50_us", "{:.0f}"),
                         ("p99_us", "{:.0f}"), ("cpu_us_per_msg", "{:.2f}"))) + " |")
    L.append("")
    faulty = [f"{r['target']} over {r['transport']} at {r['offered_rps']}/s round {r['round']}: {r['faults']}"
              for r in rows if r["faults"] not in ("none", "")]
    if faulty:
        L.append("Connections lost during a step: " + "; ".join(faulty) + ".\n")
    # CPU per message on T over UDP, per target and rate, per round.
    L += ["CPU per forwarded message with the caller on each transport over the caller on UDP, same target, "
          "same rate, same round (min / median / max):\n",
          "| offered req/s | target | " + " | ".join(f"{tr.upper()}/UDP" for tr in transports if tr != "udp") + " |",
          "|---|---|" + "---|" * (len(transports) - 1)]
    over = {}
    for rate in rates:
        for t in targets:
            u = g.get((str(rate), "udp", t))
            if not u:
                continue
            cells = []
            for tr in transports:
                if tr == "udp":
                    continue
                x = paired_ratio(u, g.get((str(rate), tr, t), []), "cpu_us_per_msg")
                over.setdefault((t, tr), []).extend(x)
                cells.append(fmt3(x))
            L.append(f"| {rate} | {t} | " + " | ".join(cells) + " |")
    L.append("")
    if "sipshard" in targets and "kamailio" in targets:
        L += ["sipshard/Kamailio messages forwarded per CPU-second, same transport, rate and round (above 1: "
              "sipshard does more with the same CPU; min / median / max):\n",
              "| offered req/s | " + " | ".join(tr.upper() for tr in transports) + " |",
              "|---|" + "---|" * len(transports)]
        vs = {}
        for rate in rates:
            cells = []
            for tr in transports:
                x = paired_ratio(g.get((str(rate), tr, "sipshard"), []), g.get((str(rate), tr, "kamailio"), []),
                                 "cpu_us_per_msg")
                vs.setdefault(tr, []).extend(x)
                cells.append(fmt3(x))
            L.append(f"| {rate} | " + " | ".join(cells) + " |")
        L.append("")
        L.append("Over all rates: " + "; ".join(f"{tr.upper()} {fmt3(vs[tr])}" for tr in transports if vs.get(tr))
                 + ".\n")
    for t in targets:
        parts = [f"{tr.upper()}/UDP {statistics.median(over[(t, tr)]):.2f}" for tr in transports
                 if tr != "udp" and over.get((t, tr))]
        if parts:
            L.append(f"{t}, over all rates (median of per-round ratios): " + ", ".join(parts) + ".\n")
    for tr, goal in GOAL_RATIO.items():
        x = over.get(("sipshard", tr))
        if x:
            m = statistics.median(x)
            verdicts.append(f"- CPU per forwarded message, {tr.upper()} in -> UDP out over UDP -> UDP, sipshard "
                            f"`--io mmsg`: {m:.2f} (goal at most {goal}): {'met' if m <= goal else 'not met'}.")
    return L


def handshake_lines(rows, a, verdicts):
    L = [f"#### Full TLS 1.3 handshakes: `sipshard-load handshakes --count {a.handshakes} --concurrency "
         f"{a.hs_concurrency}`\n",
         "Every connection a full handshake (the client keeps no session), ended by the client's "
         "close_notify and the server's close; CPU per handshake is the target's whole CPU over the step "
         "(accept, handshake, close) over the handshakes done. One core at that cost would do 1,000,000 / "
         "(CPU µs per handshake) a second; the achieved rate is what the one generator core could drive "
         "(the client's side of ECDSA costs more than the server's: it verifies two signatures).\n",
         "| certificate | target | achieved handshakes/s | CPU µs per handshake | handshakes/s per core at that cost | p50 ms | p99 ms |",
         "|---|---|---|---|---|---|---|"]
    g = by(rows, "key", "target")
    targets = [t for t in ("sipshard", "kamailio") if any(r["target"] == t for r in rows)]
    for key in KEYS:
        for t in targets:
            rs = g.get((key, t))
            if not rs:
                continue
            per_core = [1e6 / num(r["cpu_us_per_hs"]) for r in rs if num(r["cpu_us_per_hs"])]
            L.append(f"| {KEY_NAMES[key]} | {t} | {fmt3([num(r['achieved_per_s']) for r in rs], '{:.0f}')} | "
                     f"{fmt3([num(r['cpu_us_per_hs']) for r in rs], '{:.0f}')} | {fmt3(per_core, '{:.0f}')} | "
                     f"{fmt3([num(r['p50_us']) / 1000 for r in rs], '{:.1f}')} | "
                     f"{fmt3([num(r['p99_us']) / 1000 for r in rs], '{:.1f}')} |")
    L.append("")
    for key in KEYS:
        s = g.get((key, "sipshard"))
        if not s:
            continue
        cpu = statistics.median(num(r["cpu_us_per_hs"]) for r in s if num(r["cpu_us_per_hs"]))
        share = 1e6 / cpu / RUSTLS[key]
        line = (f"{KEY_NAMES[key]}: sipshard's cost per handshake comes to {1e6 / cpu:.0f} handshakes/s per core, "
                f"{share:.2f} of rustls's published {RUSTLS[key]:,}/s per core (another, faster machine, and "
                "the aws-lc-rs provider; sipshard uses ring)")
        k = g.get((key, "kamailio"))
        if k:
            r_ = paired_ratio(s, k, "cpu_us_per_hs")
            line += f"; sipshard/Kamailio handshakes per CPU-second, per round: {fmt3(r_)}"
        L.append(line + ".\n")
        verdicts.append(f"- Full TLS 1.3 handshakes per core, {KEY_NAMES[key]}: {1e6 / cpu:.0f}/s, {share:.2f} of "
                        f"rustls's published {RUSTLS[key]:,} (goal at least 0.80): "
                        f"{'met' if share >= 0.8 else 'not met'} (different machines: a ratio of ratios).")
    return L


def memory_lines(rows, run, verdicts):
    L = ["#### Memory per idle connection: `sipshard-load hold --transport tcp|tls --connections N`\n",
         "N connections opened (TLS: a full TLS 1.3 handshake, ECDSA P-256), one OPTIONS to the server "
         "itself answered 200 on each, then idle; the target's memory is read before and "
         f"{run.args.settle:.0f} s after the last one was answered. PSS is the proportional set size summed "
         "over the target's processes (Kamailio's shared memory counted once), RSS beside it (counts "
         "shared pages in every Kamailio process). Kernel socket buffers are not in either.\n",
         "| connections | transport | target | held | bytes per connection, PSS | bytes per connection, RSS | seconds to open |",
         "|---|---|---|---|---|---|---|"]
    g = by(rows, "connections", "transport", "target")
    levels = sorted({int(r["connections"]) for r in rows})
    targets = [t for t in ("sipshard", "kamailio") if any(r["target"] == t for r in rows)]
    for n in levels:
        for tr in ("tcp", "tls"):
            for t in targets:
                rs = g.get((str(n), tr, t))
                if rs:
                    L.append(f"| {n:,} | {tr} | {t} | {fmt3([num(r['held']) for r in rs], '{:.0f}')} | "
                             f"{fmt3([num(r['pss_bytes_per_conn']) for r in rs], '{:.0f}')} | "
                             f"{fmt3([num(r['rss_bytes_per_conn']) for r in rs], '{:.0f}')} | "
                             f"{fmt3([num(r['open_secs']) for r in rs], '{:.1f}')} |")
    L.append("")
    if run.capped:
        asked, ran = run.capped
        L.append(f"{asked:,} connections were asked for, but the open-file hard limit here is "
                 f"{run.args.fd_limit:,} (the script could not raise it: no CAP_SYS_RESOURCE in this "
                 f"container), and the target and the generator each need a descriptor per connection, so "
                 f"{ran:,} were held instead.\n")
    for tr in ("tcp", "tls"):
        s = [num(r["pss_bytes_per_conn"]) for r in rows if r["target"] == "sipshard" and r["transport"] == tr
             and num(r["pss_bytes_per_conn"]) is not None]
        if not s:
            continue
        worst = max(statistics.median(num(r["pss_bytes_per_conn"]) for r in g[(str(n), tr, "sipshard")])
                    for n in levels if g.get((str(n), tr, "sipshard")))
        k = [num(r["pss_bytes_per_conn"]) for r in rows if r["target"] == "kamailio" and r["transport"] == tr
             and num(r["pss_bytes_per_conn"]) is not None]
        line = (f"- Memory per idle {tr.upper()} connection, sipshard: {worst:,.0f} bytes (PSS, the higher median of "
                f"the levels; goal at most {GOAL_BYTES[tr]:,}): {'met' if worst <= GOAL_BYTES[tr] else 'not met'}")
        if k:
            line += (f"; Kamailio here {statistics.median(k):,.0f} (published: {KAMAILIO_PUBLISHED[tr]}), "
                     f"sipshard/Kamailio {worst / statistics.median(k):.2f}")
        verdicts.append(line + ".")
    return L


def record(section):
    """Replaces this script's generated section of perf/RESULTS.md (or appends it)."""
    results.record(section, BEGIN, END, HEADING)


PARTS = ("forwarding", "handshakes", "memory")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="under two minutes: one round, one rate, small counts, no record (what .ci/run runs)")
    ap.add_argument("--rounds", type=int, help="rounds of every step (default 3; 1 with --quick)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma separated, of {','.join(PARTS)}")
    ap.add_argument("--rates", help="offered requests/s in forwarding (default 10000,25000,50000,75000,100000, the forwarding sweep of "
                                   "scripts/compare.sh; 5000 with --quick)")
    ap.add_argument("--secs", type=float, help="seconds of each forwarding step (default 3; 1.5 with --quick)")
    ap.add_argument("--flows", type=int, default=8, help="caller connections (or UDP sockets) in forwarding")
    ap.add_argument("--transports", default="udp,tcp,tls,ws", help="the caller's transports in forwarding")
    ap.add_argument("--targets", default="sipshard,sipshard-uring,kamailio", help="targets, comma separated")
    ap.add_argument("--handshakes", type=int, help="handshakes per step (default 3000; 300 with --quick)")
    ap.add_argument("--hs-concurrency", type=int, default=16, help="handshakes under way at once")
    ap.add_argument("--hold", help="idle connections per memory step, comma separated "
                                   "(default 10000,50000; 1000 with --quick)")
    ap.add_argument("--settle", type=float, help="seconds idle before memory is read (default 6; 1 with --quick)")
    ap.add_argument("--note", default="", help="a line for the section (where and how it ran)")
    ap.add_argument("--out", help="folder for the CSVs and the section (default perf/transports)")
    ap.add_argument("--no-record", action="store_true", help="leave perf/RESULTS.md alone")
    ap.add_argument("--modules", required=True, help="Kamailio's module folder (set by the script)")
    ap.add_argument("--work", required=True, help="scratch folder (set by the script)")
    ap.add_argument("--certs", required=True, help="folder of ca-, cert-, key-{ecdsa,rsa}.pem and tls-*.cfg")
    ap.add_argument("--fd-limit", type=int, required=True, help="the open-file limit in force (set by the script)")
    ap.add_argument("--command", default="scripts/transport-bench.sh", help="the command line the report quotes")
    a = ap.parse_args()
    q = a.quick
    for k, v in dict(rounds=1 if q else 3, rates="5000" if q else "10000,25000,50000,75000,100000", secs=1.5 if q else 3.0,
                     handshakes=300 if q else 3000, hold="1000" if q else "10000,50000",
                     settle=1.0 if q else 6.0).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.rates = [int(x) for x in str(a.rates).split(",")]
    a.hold = [int(x) for x in str(a.hold).split(",")]
    a.transports = a.transports.split(",")
    a.targets = a.targets.split(",")
    parts = a.parts.split(",")
    for p in parts:
        if p not in PARTS:
            raise SystemExit(f"transports: unknown part {p!r}")
    for t in a.targets:
        if t not in ("sipshard", "sipshard-uring", "kamailio"):
            raise SystemExit(f"transports: unknown target {t!r}")
    for t in a.transports:
        if t not in ("udp", "tcp", "tls", "ws"):
            raise SystemExit(f"transports: unknown transport {t!r}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if a.out is None:
        a.out = os.path.join(ROOT, "perf", "results", f"transports-quick-{stamp}") if q \
            else os.path.join(ROOT, "perf", "transports")
    if q:
        a.no_record = True
    a.out = os.path.abspath(a.out)
    a.target_cpu, a.gen_cpu = 0, (os.cpu_count() or 1) - 1
    # SIGTERM (a CI timeout, a kill) stops what was started, as ^C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run = Run(a)
    for p in PARTS:
        path = os.path.join(a.out, f"{p}.csv")
        if os.path.exists(path):
            os.remove(path)
    progress(f"writing to {a.out}; parts {', '.join(parts)}; {a.rounds} round(s)")
    try:
        for p in PARTS:
            if p in parts:
                getattr(run, p)()
    finally:
        for p in list(children):
            stop(p, 2.0)
        run.close()
    drawn = plot_inputs(run.read("forwarding.csv"), run.read("memory.csv"), a.out)
    plots, plot_note = draw_plots(a.out)
    section = report(run, a, plots, drawn, plot_note)
    open(os.path.join(a.out, "RESULTS.md"), "w").write(section + "\n")
    print(section)
    if not a.no_record:
        record(section)
        progress("perf/RESULTS.md: generated section replaced")
    progress(f"done: {a.out}")
    if run.silent:
        for part, t, step in run.silent:
            print(f"transports: {part}: {t} answered nothing at {step}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
