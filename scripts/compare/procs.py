"""Processes and /proc: starting and stopping what a comparison runs,
their CPU time and memory, free ports, and the kernel's socket-buffer
losses."""

import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target", "release")
TCK = os.sysconf("SC_CLK_TCK")
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


def rss_kb(pid):
    """VmRSS of PID and its children, summed (shared pages counted in
    every process that maps them: read beside pss_kb)."""
    total = 0
    for p in family(pid):
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
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

