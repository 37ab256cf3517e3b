#!/usr/bin/env python3
"""Writes a SIPp injection file of N distinct user names, one a line.

    scripts/make_users_csv.py [N] [FILE] [--prefix user] [--first 1]

N defaults to 100000; FILE to standard output. The names are PREFIX
followed by a zero-padded number (user000001, user000002, ... with at least
six digits), so they sort as they are used. The first line is SEQUENTIAL:
SIPp gives line i to call i (and starts over after the last line), so
`sipp -inf FILE -m N` uses each user exactly once. Field 0 (`[field0]` in
perf/uac_register.xml and perf/uac_call_registered.xml) is the user name.

With --auth-file FILE (and --realm, the --domain the users register in),
each line also gets, in field 1, SIPp's authentication keyword with the
user's password (pw-USER; `[field1]` in perf/uac_register_auth.xml), and
FILE gets every user's entry in
sipshard's --auth-file format, user:realm:md5-ha1:sha256-ha1, computed
here with hashlib (independently of sipshard's own `passwd`).
"""

import hashlib

import argparse
import sys


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("n", nargs="?", type=int, default=100000, help="how many users (default 100000)")
    p.add_argument("file", nargs="?", help="where to write (default: standard output)")
    p.add_argument("--prefix", default="user", help="user name prefix (default: user)")
    p.add_argument("--first", type=int, default=1, help="number of the first user (default: 1)")
    p.add_argument("--auth-file", help="also write a credentials file for sipshard --auth-file")
    p.add_argument("--realm", default="example.com", help="realm of --auth-file (default: example.com)")
    a = p.parse_args()
    if a.n < 1 or a.first < 0:
        p.error("N must be at least 1 and --first at least 0")
    width = max(6, len(str(a.first + a.n - 1)))
    lines = ["SEQUENTIAL"]
    names = [f"{a.prefix}{i:0{width}d}" for i in range(a.first, a.first + a.n)]
    if a.auth_file:
        entries = []
        for name in names:
            secret = f"{name}:{a.realm}:pw-{name}".encode()
            md5 = hashlib.md5(secret).hexdigest()
            sha = hashlib.sha256(secret).hexdigest()
            entries.append(f"{name}:{a.realm}:{md5}:{sha}\n")
        with open(a.auth_file, "w", encoding="ascii") as f:
            f.writelines(entries)
        # SIPp reads a keyword from a field as it is: field 1 is the
        # whole [authentication ...] keyword for the user.
        lines += [f"{n};[authentication username={n} password=pw-{n}];" for n in names]
    else:
        lines += [f"{n};" for n in names]
    text = "\n".join(lines) + "\n"
    if a.file:
        with open(a.file, "w", encoding="ascii") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
