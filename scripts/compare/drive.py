"""The parts of a comparison, driving the targets with the generators:
every step's figures go to a CSV row and raw.log."""

import csv
import os
import re
import statistics
import subprocess
import sys
import time

from procs import BIN, ROOT, TCK, cpu_ticks, free_ports, progress, pss_kb, rcvbuf_errors, spawn, stop
from stats import call_step_held
from results import csv_row

FWD_COLS = ["target", "round", "offered_rps", "achieved_rps", "loss_pct", "p50_us", "p90_us",
            "p99_us", "p999_us", "cpu_us_per_msg"]
CALL_COLS = ["target", "round", "pairs", "offered_cps", "achieved_cps", "successful", "failed",
             "p50_ms", "p90_ms", "p99_ms", "cpu_us_per_call"]
REG_COLS = ["target", "round", "users", "offered_rps", "achieved_rps", "p50_us", "p99_us",
            "cpu_us_per_reg", "bytes_per_binding"]
TX_COLS = ["target", "round", "state", "invites", "invite_bytes", "pss_before_kb", "pss_after_kb",
           "bytes_per_tx", "reached", "caller_resent", "send_s", "wait_s", "linger_s"]
STEER_COLS = ["target", "round", "steer", "in_force", "offered_rps", "achieved_rps", "loss_pct", "p50_us",
              "p99_us", "cpu_us_per_msg", "per_shard_received", "busier_share"]
# The sipshard targets and their I/O backend: `sipshard` stays mmsg, so the
# sipshard/Kamailio ratios of earlier runs keep their meaning.
SIPSHARD_IO = {"sipshard": "mmsg", "sipshard-uring": "uring", "sipshard-stateful": "mmsg"}
# The transaction-stateful targets of the calls part: `sipshard --mode
# stateful` and Kamailio with tm's t_relay() (perf/kamailio/proxy-stateful.cfg),
# each run beside its stateless twin.
STATEFUL = ("sipshard-stateful", "kamailio-stateful")
KAMAILIO = ("kamailio", "kamailio-stateful")
# The calls part's targets, in the order each round runs them.
CALL_TARGETS = ("sipshard", "sipshard-stateful", "kamailio", "kamailio-stateful")


def kv(line):
    return dict(x.split("=", 1) for x in line.split() if "=" in x)


class Refused(Exception):
    """A target the machine will not run (io_uring refused in a container):
    the part goes on without it."""


def sipshard_argv(port, job, args, io, shards, steer, stateful=False, max_tx=None):
    """sipshard as proxy (with Record-Route; STATEFUL: keeping
    transactions) or as registrar, on PORT."""
    # As registrar, sized for the users to come, as Kamailio's usrloc
    # hash is (without it the table pauses to grow: 50 ms at 1M AORs).
    extra = ["--record-route"] if job == "proxy" else \
        ["--domain", "example.com", "--expected-aors", str(args.users)]
    if steer:
        extra += ["--steer", steer]
    if stateful:
        extra += ["--mode", "stateful", "--max-transactions", str(max_tx or transactions_held(args))]
    return [f"{BIN}/sipshard", "--listen", f"127.0.0.1:{port}", "--shards", str(shards),
            "--io", io, "--stats-interval", "0"] + extra


def transactions_held(args):
    """Room for every transaction of the calls part's largest step: a call
    opens two (INVITE and BYE), and each is held 64*T1 = 32 s after its
    final (Timers J and L), longer than a step, so none has ended when the
    last call starts. sipshard's default, 50,000, would answer 503 above
    6,250 calls/s in 4 s steps: a limit of the flag, not of the proxy
    (Kamailio's tm has none but its shared memory, sized likewise)."""
    return max(50000, 2 * max(args.cps) * args.call_secs * 5 // 4)


def kamailio_memory(name, job, args):
    """Kamailio's -m (shared) and -M (per process) in MB. tm keeps each
    transaction in shared memory, with a copy of its request and its
    buffers, until wait_timer (5 s) after its final: about 14 KB each for
    these calls (shared memory touched at 1,000 calls/s, 29 MB a second
    until the first ones end), so 16 KB for each of the largest step's."""
    if job == "registrar":
        return args.kamailio_shm, 16
    if name in STATEFUL:
        return max(64, transactions_held(args) * 16 // 1000), 8
    return 64, 8


def tx_sizes(args):
    """The transactions part's limits: sipshard's --max-transactions (its
    default, 50,000, or the INVITEs sent if more: none may be refused) and
    Kamailio's -m in MB, 32 KB for each INVITE sent over 64 MB (twice the
    14 KB measured per tm transaction, with room). Shared memory is mapped,
    not touched, at start, so the size does not weigh in the PSS."""
    return max(50000, args.tx_invites), 64 + args.tx_invites * 32 // 1000


class Target:
    """sipshard (either backend), Kamailio or the bare relay, alone on the
    target CPU. SHARDS and STEER are for sipshard only (the steering part)."""

    def __init__(self, name, job, args, log, shards=1, steer=None, cpus=None, max_tx=None, shm=None):
        self.name, self.job, self.args = name, job, args
        self.port, self.sink = free_ports(2)
        self.log_path = log
        self.log = open(log, "ab")
        self.log.seek(0, os.SEEK_END)
        self.log_at = self.log.tell()  # where this run's lines begin
        if name in SIPSHARD_IO:
            argv = sipshard_argv(self.port, job, args, SIPSHARD_IO[name], shards, steer, name in STATEFUL, max_tx)
        elif name in KAMAILIO:
            shm, pkg = (shm or kamailio_memory(name, job, args)[0]), kamailio_memory(name, job, args)[1]
            rundir = os.path.join(args.work, name)
            os.makedirs(rundir, exist_ok=True)
            cfg = f"{job}-stateful.cfg" if name in STATEFUL else f"{job}.cfg"
            argv = ["kamailio", "-f", os.path.join(ROOT, "perf", "kamailio", cfg),
                    "-L", args.modules, "-l", f"udp:127.0.0.1:{self.port}", "-n", "1",
                    "-m", str(shm), "-M", str(pkg), "-x", "tlsf", "-X", "tlsf", "-DD", "-E", "-Y", rundir]
        else:
            argv = [f"{BIN}/sipshard-load", "relay", "--listen", f"127.0.0.1:{self.port}",
                    "--to", f"127.0.0.1:{self.sink}", "--duration", "600"]
        self.proc = spawn(argv, args.target_cpu if cpus is None else cpus, stdout=self.log, stderr=self.log)
        if name in SIPSHARD_IO:
            # Its banner comes once every socket is bound (and, with
            # --steer call-id, steered: loading the program takes about a
            # second); traffic sent before would be refused.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None \
                    and " listening on " not in self.said():
                time.sleep(0.05)
        else:
            time.sleep(1.0 if name in KAMAILIO else 0.5)
        if self.proc.poll() is not None:
            self.close()
            if "io_uring is not available" in self.said():
                raise Refused("io_uring is not available here")
            raise SystemExit(f"compare: {name} did not start; see {log}")
        self.pid = self.proc.pid

    def drive(self, gen_cpu, argv, timeout):
        """Runs `sipshard-load ARGV` at this target on the generator CPU:
        its key=value line, the target's CPU ticks over the run, and the
        datagrams lost to full socket buffers meanwhile."""
        before, dropped = cpu_ticks(self.pid), rcvbuf_errors()
        done = subprocess.run(
            ["taskset", "-c", str(gen_cpu), f"{BIN}/sipshard-load"] + argv +
            ["--target", f"127.0.0.1:{self.port}", "--kv"],
            capture_output=True, text=True, timeout=timeout)
        self.gen_err = done.stderr.strip()
        return done.stdout.strip(), cpu_ticks(self.pid) - before, rcvbuf_errors() - dropped

    def died(self):
        """The target's exit status if it is no longer running, else None."""
        return self.proc.poll()

    def close(self):
        stop(self.proc)
        self.log.close()

    def said(self):
        """What this run of the target wrote to its log (the log is shared
        by every run of a target): sipshard's banner and, once stopped, its
        exit line with the counters."""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_at)
            return f.read().decode(errors="replace")


def steer_outcome(said):
    """From what a sipshard run wrote: the steering in force (its banner),
    the datagrams each shard received (its exit line, [] if it never got
    there), and why call-id was refused, if it was."""
    banner = re.search(r" steer=([a-z-]+),", said)
    shards = re.search(r"per_shard_received=\[([0-9,]*)\]", said)
    why = re.search(r"--steer call-id unavailable \((.*)\): using flow", said)
    return (banner.group(1) if banner else None,
            [int(x) for x in shards.group(1).split(",") if x] if shards else [],
            f"call-id unavailable: {why.group(1)}" if why else None)


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
        self.skipped = []  # (part, target, why) for a target this machine refused
        self.fallbacks = set()  # --steer modes asked for but not in force

    def row(self, name, cols, values):
        csv_row(self.files, self.out, name, cols, values)

    def target_log(self, name):
        return os.path.join(self.args.work, f"{name}.log")

    def steer_log(self, mode):
        return self.target_log(f"sipshard-steer-{mode}")

    # ---- 1. forwarding ------------------------------------------------------
    def forwarding(self):
        a = self.args
        # Both sipshard backends, alternated with the others in every round,
        # so their ratio is taken between neighbouring steps.
        targets = ["sipshard", "sipshard-uring", "kamailio", "relay"]
        live = list(targets)
        for i, rate in enumerate(a.fwd_rates):
            for r in range(1, a.rounds + 1):
                for t in [x for x in targets if x in live]:
                    try:
                        res, ticks, dropped, died = self.retried(
                            "forwarding", t, rate, r, lambda: self.forward_step(t, rate), self.target_log(t))
                    except Refused as e:
                        self.refused("forwarding", t, e, live)
                        continue
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
            self.drop_lossy("forwarding", live, rate, "target")

    def retried(self, part, t, rate, r, step, log):
        """STEP() (a fresh target driven once: the generator's line, CPU
        ticks, socket-buffer losses, exit status, and whatever else) and
        its attempts in raw.log. A step where a target still running
        answered nothing is run once more on fresh ports (CI once saw the
        relay answer nothing at a rate it carries every other time); a
        target that died is not: that is a finding."""
        for attempt in (1, 2):
            got = step()
            res, ticks, dropped, died = got[:4]
            self.raw.write(f"{part} {t} rate={rate} round={r} attempt={attempt}: {res} "
                           f"cpu_ticks={ticks} udp_rcvbuf_errors={dropped} exited={died}\n")
            if int(kv(res).get("answered", 0)) or died is not None:
                break
            progress(f"{part} {rate}/s, {t} answered nothing while running; once more")
        if died is not None:
            progress(f"{part} {rate}/s: {t} exited with status {died}; see {log}")
        return got

    def refused(self, part, t, why, live):
        """A target this machine will not run leaves the part, said once,
        and the report says so; the run goes on."""
        live.remove(t)
        self.skipped.append((part, t, str(why)))
        self.raw.write(f"{part} {t}: skipped: {why}\n")
        progress(f"{part}: {t} skipped: {why}")

    def drop_lossy(self, part, live, rate, key):
        """A target (or mode: KEY is its column) that loses more than 5% at
        RATE is not offered more: its next step would only measure overload."""
        for t in list(live):
            losses = [float(x["loss_pct"]) for x in self.read(f"{part}.csv")
                      if x[key] == t and int(float(x["offered_rps"])) == rate]
            if losses and statistics.median(losses) > 5:
                live.remove(t)
                progress(f"{part}: {t} lost {statistics.median(losses):.1f}% at {rate}/s; no higher rate")

    def forward_step(self, t, rate):
        """One forwarding step against a fresh target T: the generator's
        key=value line, CPU ticks, socket-buffer losses, and the target's
        exit status if it died (None while it runs)."""
        tg = Target(t, "proxy", self.args, self.target_log(t))
        return self.drive_run(tg, f"forwarding {t}", rate, flows=8)

    def drive_run(self, tg, label, rate, flows):
        """`sipshard-load run` from FLOWS source ports at RATE through the
        fresh target TG, which it then stops: the generator's key=value
        line, CPU ticks, socket-buffer losses, the target's exit status if
        it died (None while it ran)."""
        a = self.args
        try:
            res, ticks, dropped = tg.drive(
                a.gen_cpu, ["run", "--sink", f"127.0.0.1:{tg.sink}", "--rate", str(rate),
                            "--duration", str(a.fwd_secs), "--flows", str(flows)], a.fwd_secs + 60)
            if tg.gen_err:
                self.raw.write(f"{label} rate={rate}: generator stderr: {tg.gen_err}\n")
            died = tg.died()
        finally:
            tg.close()
        return res, ticks, dropped, died

    # ---- 2. steering one peer -------------------------------------------------
    def steering(self):
        """One peer (`sipshard-load run --flows 1`: one source address and
        port, every request its own Call-ID) through `sipshard --shards 2`
        with each --steer mode, alternated within every round: how much of
        that peer's load each shard gets, and at what cost in CPU, loss and
        latency."""
        a = self.args
        modes = list(a.steer_modes)
        live = list(modes)
        for i, rate in enumerate(a.steer_rates):
            for r in range(1, a.rounds + 1):
                for mode in [m for m in modes if m in live]:
                    res, ticks, dropped, died, said = self.retried(
                        "steering", f"--steer {mode}", rate, r, lambda: self.steer_step(mode, rate),
                        self.steer_log(mode))
                    in_force, shards, why = steer_outcome(said)
                    stopped = [line for line in said.splitlines() if "stopped;" in line]
                    self.raw.write(f"steering --steer {mode} rate={rate} round={r}: in force {in_force}"
                                   + (f", {why}" if why else "") + f"; sipshard: {' '.join(stopped) or 'no exit line'}\n")
                    if in_force != mode and mode not in self.fallbacks:
                        self.fallbacks.add(mode)
                        progress(f"steering: --steer {mode} asked, {in_force or '?'} in force"
                                 + (f" ({why})" if why else "") + "; recorded as such")
                    d = kv(res)
                    answered = int(d.get("answered", 0))
                    if answered == 0:
                        self.silent.append(("steering", f"--steer {mode}", rate))
                    cpu = ticks / TCK * 1e6 / (2 * answered) if answered else None
                    busier = max(shards) / sum(shards) if shards and sum(shards) else None
                    self.row("steering.csv", STEER_COLS, [
                        "sipshard", r, mode, in_force or "?", rate, float(d.get("achieved_per_s", 0)),
                        float(d.get("loss_pct", 100)), int(d.get("p50_us", 0)), int(d.get("p99_us", 0)),
                        cpu if cpu is not None else "", ";".join(map(str, shards)),
                        busier if busier is not None else ""])
                    progress(f"steering {i + 1}/{len(a.steer_rates)} {rate}/s offered by one peer, round {r}/{a.rounds}, "
                             f"--steer {mode}: achieved {d.get('achieved_per_s', '?')}/s, loss {d.get('loss_pct', '?')}%, "
                             f"p99 {d.get('p99_us', '?')} µs, "
                             + (f"{cpu:.2f} µs CPU/msg" if cpu else "no CPU figure")
                             + f", datagrams per shard {shards or '?'}"
                             + (f", {dropped} datagrams lost to full socket buffers" if dropped else ""))
            self.drop_lossy("steering", live, rate, "steer")

    def steer_step(self, mode, rate):
        """One steering step against a fresh `sipshard --shards 2 --steer
        MODE` (on every CPU: call-id needs a CPU per shard, and runs flow
        otherwise; one shard shares the generator's CPU): as forward_step, and what
        sipshard wrote (its banner says the steering in force, its exit line
        the datagrams each shard received)."""
        a = self.args
        ncpu = os.cpu_count() or 1
        tg = Target("sipshard", "proxy", a, self.steer_log(mode), shards=2, steer=mode,
                    cpus=f"0-{ncpu - 1}")
        res, ticks, dropped, died = self.drive_run(tg, f"steering --steer {mode}", rate, flows=1)
        return res, ticks, dropped, died, tg.said()

    # ---- 3. SIPp calls --------------------------------------------------------
    def calls(self):
        """SIPp calls through each of --call-targets, alternated within
        every round: the stateless proxies and their transaction-stateful
        twins (`sipshard --mode stateful`, Kamailio's t_relay()), so each
        stateful/stateless ratio is of neighbouring steps."""
        a = self.args
        targets = list(a.call_targets)
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

    # ---- 4. memory per transaction ---------------------------------------------
    def transactions(self):
        """Memory per INVITE transaction at --tx-invites concurrent calls
        (issue #15): for each round, open transactions (the callee never
        answers) then finished ones (it answers 200 at once), each through
        sipshard-stateful and kamailio-stateful in turn, a fresh target per
        step. Bytes per transaction = growth of the PSS of every process of
        the target over the INVITEs, once every one has reached the callee
        (open) or every 200 the caller (answered)."""
        a = self.args
        for r in range(1, a.rounds + 1):
            for state in ("open", "answered"):
                for t in STATEFUL:
                    self.tx_step(t, state, r)

    def tx_step(self, t, state, r):
        a = self.args
        n = a.tx_invites
        max_tx, shm = tx_sizes(a)
        tg = Target(t, "proxy", a, self.target_log(t), max_tx=max_tx, shm=shm)
        gen = None
        try:
            time.sleep(0.5)  # Kamailio's timer and worker processes settle
            before = pss_kb(tg.pid)
            gen = spawn([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "txgen.py"),
                         "--proxy", f"127.0.0.1:{tg.port}", "--count", str(n),
                         "--answer", "1" if state == "answered" else "0", "--burst", "200", "--gap", "0.02",
                         "--timeout", "25"],
                        a.gen_cpu, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            line = gen.stdout.readline().strip()
            after = pss_kb(tg.pid)
            measured = time.monotonic()
            gen.stdin.close()
            try:
                gen.wait(5)
            except subprocess.TimeoutExpired:
                pass
            stop(gen)
            err = gen.stderr.read().strip()
            died = tg.died()
        finally:
            if gen is not None:
                stop(gen)
            tg.close()
        d = kv(line)
        reached = int(d.get("answered_200" if state == "answered" else "reached_callee", 0))
        first = float(d.get("first_200_mono", 0))
        linger = measured - first if state == "answered" and first else None
        self.raw.write(f"transactions {t} state={state} round={r}: {line or 'no line'} "
                       f"pss_kb={before}..{after} linger_s={linger} exited={died}"
                       + (f" generator stderr: {err}" if err else "") + "\n")
        complete = d.get("complete") == "1"
        per_tx = (after - before) * 1024 / n if complete else None
        if reached == 0:
            self.silent.append(("transactions", t, state))
        if not complete:
            progress(f"transactions: {t} {state}: only {reached}/{n} "
                     + ("200s reached the caller" if state == "answered" else "INVITEs reached the callee")
                     + f"; no figure (see raw.log and {self.target_log(t)})")
        self.row("transactions.csv", TX_COLS, [
            t, r, state, n, int(d.get("invite_bytes", 0)), before, after,
            per_tx if per_tx is not None else "", reached, int(d.get("caller_resent", 0)),
            float(d.get("send_s", 0)), float(d.get("wait_s", 0)), linger if linger is not None else ""])
        progress(f"transactions round {r}/{a.rounds}, {state}, {t}: {reached}/{n} "
                 + ("200s at the caller" if state == "answered" else "INVITEs at the callee")
                 + f", PSS {before} -> {after} kB, "
                 + (f"{per_tx:.0f} B per transaction" if per_tx is not None else "no figure")
                 + (f", measured {linger:.2f} s after the first 200" if linger is not None else ""))

    # ---- 5. registration -------------------------------------------------------
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
