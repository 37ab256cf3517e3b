#!/usr/bin/env python3
"""SIP questions the attack test asks sipshard directly, from loopback.

    queries.py lost-bindings HOST PORT SRC DOMAIN FIRST LAST SECONDS
        REGISTER queries (no Contact) for sip:N@DOMAIN, N from FIRST to
        LAST, from SRC at up to 200/s; prints how many answers list no
        binding, how many never came (within SECONDS in all), and which
        (the first 20)
    queries.py probe HOST PORT SRC SPORT DOMAIN
        the status code of the answer to a REGISTER query sent from
        SRC:SPORT, or "none" after two tries of 2 s
"""

import socket
import sys
import time


def lost_bindings(argv):
    host, port, src, domain = argv[0], int(argv[1]), argv[2], argv[3]
    first, last, deadline = int(argv[4]), int(argv[5]), time.monotonic() + float(argv[6])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.settimeout(2)
    lport = s.getsockname()[1]
    lost, unanswered = [], []
    silent = 0
    for n in range(first, last + 1):
        if silent >= 3 or time.monotonic() > deadline:  # not answering: stop waiting
            unanswered.append(n)
            continue
        msg = (f"REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:{lport};branch=z9hG4bKq{n}\r\n"
               f"From: <sip:{n}@{domain}>;tag=q{n}\r\nTo: <sip:{n}@{domain}>\r\nCall-ID: query-{n}\r\n"
               f"CSeq: 1 REGISTER\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        s.sendto(msg.encode(), (host, port))
        try:
            while True:
                data = s.recv(65535).decode("utf-8", "replace")
                if f"query-{n}" in data:
                    break
        except socket.timeout:
            unanswered.append(n)
            silent += 1
            continue
        silent = 0
        head = data.split("\r\n\r\n")[0].lower()
        if not data.startswith("SIP/2.0 200") or ("\r\ncontact:" not in head and "\r\nm:" not in head):
            lost.append(n)
        time.sleep(0.005)
    print(f"lost={len(lost)} unanswered={len(unanswered)} of={last - first + 1} e.g. {' '.join(map(str, (lost + unanswered)[:20])) or '-'}")


def probe(argv):
    host, port, src, sport, domain = argv[0], int(argv[1]), argv[2], int(argv[3]), argv[4]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, sport))
    s.settimeout(2)
    for attempt in (1, 2):
        msg = (f"REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:{sport};branch=z9hG4bKprobe{attempt}\r\n"
               f"From: <sip:probe@{domain}>;tag=probe\r\nTo: <sip:probe@{domain}>\r\n"
               f"Call-ID: probe-{src}-{sport}-{attempt}\r\nCSeq: {attempt} REGISTER\r\nMax-Forwards: 70\r\n"
               f"Content-Length: 0\r\n\r\n")
        s.sendto(msg.encode(), (host, port))
        try:
            print(s.recv(65535).decode("utf-8", "replace").split(" ", 2)[1])
            return
        except (socket.timeout, IndexError):
            pass
    print("none")


if __name__ == "__main__":
    {"lost-bindings": lost_bindings, "probe": probe}[sys.argv[1]](sys.argv[2:])
