#!/usr/bin/env python3
"""How tests/data/state-v2 was made: a --state-dir of format version 2,
written by sipshard at commit 48e8006 (the record layout of main up to
7600d61), which tests load to prove an upgrade brings it back whole.

The server ran twice on loopback, stopped with SIGTERM each time:

    sipshard --listen 127.0.0.1:25060 --listen '[::1]:25060' --shards 2 \
        --io mmsg --domain example.com --state-dir DIR \
        --max-expires 2147483647 --fsync always

with `make.py 1` during the first run and `make.py 2` during the second,
so the second start put round 1 into snapshots and round 2 is in the logs.
Every binding lapses 2^31-1 s after 2026-12-03 (in 2094), so the fixture
stays valid. The tests name the ports used here (25070, 25091)."""
import socket, sys

MAX = 2147483647
SERVER = {4: ("127.0.0.1", 25060), 6: ("::1", 25060)}
CLIENT = {4: ("127.0.0.1", 25070), 6: ("::1", 25071)}

def register(fam, user, call_id, cseq, contacts, paths=(), expires=MAX):
    s = socket.socket(socket.AF_INET if fam == 4 else socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(CLIENT[fam])
    s.settimeout(2)
    host = CLIENT[fam][0] if fam == 4 else "[::1]"
    lines = [
        "REGISTER sip:example.com SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{CLIENT[fam][1]};branch=z9hG4bK-{user}-{cseq};rport",
        "Max-Forwards: 70",
        f"To: <sip:{user}@example.com>",
        f"From: <sip:{user}@example.com>;tag=t{user}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
    ]
    lines += [f"Contact: {c}" for c in contacts]
    lines += [f"Path: {p}" for p in paths]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines += ["Content-Length: 0", "", ""]
    s.sendto("\r\n".join(lines).encode(), SERVER[fam])
    data = s.recv(65535).decode()
    s.close()
    status = data.split("\r\n", 1)[0]
    assert status == "SIP/2.0 200 OK", data
    print(user, cseq, [l for l in data.split("\r\n") if l.startswith("Contact")])

if sys.argv[1] == "1":
    register(4, "alice", "alice-reg@fixture", 1, [
        "<sip:alice@192.0.2.10:5060>;q=0.9",
        "<sip:alice@192.0.2.11:5062;transport=udp>;q=0.5",
        "<sip:alice@198.51.100.12>",
    ], paths=["<sip:192.0.2.250;lr>"])
    register(4, "bob", "bob-reg@fixture", 7, [
        f"<sip:bob@192.0.2.20:5070>;q=1;expires={MAX}",
        "<sip:bob@192.0.2.21>;q=0.1",
    ], paths=["<sip:127.0.0.1:25091;lr>", "<sip:p2.example.net;lr>"])
    register(6, "carol", "carol-reg@fixture", 1, ["<sip:carol@[2001:db8::30]:5060>"])
else:
    # The same Call-ID, a higher CSeq: one binding removed, one added with
    # this REGISTER's Path; the other two keep theirs.
    register(4, "alice", "alice-reg@fixture", 2, [
        "<sip:alice@198.51.100.12>;expires=0",
        "<sip:alice@192.0.2.13:5064>;q=0.7",
    ], paths=["<sip:192.0.2.251;lr>"])
    register(4, "dave", "dave-reg@fixture", 1, ["<sip:dave@192.0.2.40>"])
