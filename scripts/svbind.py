#!/usr/bin/env python3
"""Runs a Python tool with its wildcard-bound sockets bound to one loopback address.

    scripts/svbind.py ADDRESS TOOL [ARGS...]

    scripts/svbind.py 127.0.0.6 /usr/bin/svcrack -u alice -d words.txt -p 5060 127.0.0.1

For scripts/attack.sh. sipvicious 0.3.3 (Debian's package) accepts -b
BINDINGIP in svwar and svcrack but never hands it to the scanner, which
binds 0.0.0.0: its requests to 127.0.0.1 then leave from 127.0.0.1, the
legitimate user agents' address, and share their per-source rate limit.
This runs TOOL (a Python script: /usr/bin/svwar, /usr/bin/svcrack, or
PyPI's sipvicious_* entry points) in this interpreter with socket.bind
changed so that an IPv4 bind to the wildcard ('' or 0.0.0.0) binds ADDRESS
instead, port unchanged. Nothing else in the tool changes; a tool that
already binds an address of its own is left alone, and SIGINT raises
KeyboardInterrupt even in a background job. TOOL runs under the
interpreter its #! line names (this script re-executes itself there), so
that it finds its own modules. Only loopback addresses are accepted.
"""

import ipaddress
import os
import runpy
import shlex
import shutil
import signal
import socket
import sys


def interpreter(path: str) -> list:
    """The command of PATH's #! line, when it names a Python; else []."""
    try:
        with open(path, "rb") as f:
            first = f.readline(256).decode("utf-8", "replace")
    except OSError:
        return []
    if not first.startswith("#!") or "python" not in first:
        return []
    return shlex.split(first[2:].strip())


def main() -> int:
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    address, tool, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    try:
        if not ipaddress.IPv4Address(address).is_loopback:
            raise ValueError
    except ValueError:
        sys.stderr.write(f"svbind: {address} is not an IPv4 loopback address\n")
        return 2
    path = shutil.which(tool) or tool
    command = interpreter(path)
    if command and not os.environ.get("SVBIND_REEXEC"):
        program = shutil.which(command[0]) or command[0]
        if command[1:] or os.path.realpath(program) != os.path.realpath(sys.executable):
            os.environ["SVBIND_REEXEC"] = "1"
            os.execv(program, command + [os.path.abspath(__file__), address, path] + args)
    original = socket.socket.bind

    def bind(self, where):
        if self.family == socket.AF_INET and isinstance(where, tuple) and where[0] in ("", "0.0.0.0"):
            where = (address,) + tuple(where[1:])
        return original(self, where)

    socket.socket.bind = bind
    # A shell starts background jobs with SIGINT ignored, and Python keeps
    # it so: restore ^C, on which svwar and svcrack print what they found.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = [path] + args
    # As when run as a script: its own folder (symbolic links resolved, as
    # Debian's /usr/bin/svwar -> /usr/share/sipvicious/) comes first.
    sys.path.insert(0, os.path.dirname(os.path.realpath(path)))
    runpy.run_path(path, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
