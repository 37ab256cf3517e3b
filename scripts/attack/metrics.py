#!/usr/bin/env python3
"""The attack test's view of sipshard's /metrics.

    metrics.py snap URL FILE        the counters, summed over shards (gauges:
                                    the largest), one "KEY VALUE" a line
    metrics.py table AUTH ROW...    the summary table: one line per attack,
                                    ROW = NAME|TOOL-SAID|BEFORE|AFTER (two
                                    snapshots); AUTH=1 adds the auth columns
"""

import re
import sys
import urllib.request


def snap(argv):
    text = urllib.request.urlopen(argv[0], timeout=5).read().decode()
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
    with open(argv[1], "w") as f:
        for k, v in sorted(out.items()):
            f.write(f"{k} {v}\n")


def table(argv):
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
    if argv[0] == "1":
        cols += [("challenges", "chal"), ("auth_failed", "authfail"), ("auth_ok", "auth_ok")]
        width = 40
    print(f"  {'attack':<{width}}" + "".join(f"{h:>10}" for _, h in cols) + "  tool said")
    for row in argv[1:]:
        name, said, before, after = row.split("|")
        b, a = load(before), load(after)
        cells = "".join(f"{a.get(k, 0) - b.get(k, 0):>10}" for k, _ in cols)
        print(f"  {name:<{width}}{cells}  {said}")


if __name__ == "__main__":
    {"snap": snap, "table": table}[sys.argv[1]](sys.argv[2:])
