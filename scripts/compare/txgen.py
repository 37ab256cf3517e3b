#!/usr/bin/env python3
"""The caller and callee of the comparison's `transactions` part (drive.py
runs it on the generator CPU): N INVITEs of a usual size (an SDP offer;
625 bytes, the INVITE of scripts/tx-memory.sh, at N = 10,000), each with
its own Call-ID and branch, paced (BURST every
GAP seconds), through the proxy at --proxy to a callee socket of its own.

The callee never answers (--answer 0: every transaction stays open, the
proxy retransmitting the INVITE to it) or answers each INVITE 200 at once
(--answer 1: the transactions have finished and linger). Both count
distinct Call-IDs (the proxies retransmit, so a count of datagrams would
not do): the callee the INVITEs that reached it, the caller the 200s.
Like a UAC, the caller sends an INVITE again (up to 6 times, 0.5 s apart)
while the proxy has answered it nothing, not even 100 Trying: one lost in
a full socket buffer is then counted once it gets through.

Once every INVITE has reached the callee (--answer 0) or every 200 the
caller (--answer 1), or after --timeout seconds, it prints one key=value
line and keeps its sockets open (so the proxy's retransmissions are
received, not refused) until its standard input closes. first_200_mono is
CLOCK_MONOTONIC (Python's time.monotonic(), shared by every process) when
the first 200 reached the caller, so that the driver can tell how long
the oldest finished transaction had lingered when it measured."""

import argparse
import re
import socket
import sys
import threading
import time

CALL_ID = re.compile(rb"\r\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]+)", re.I)


def udp(bufsize):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if opt is None:
            continue
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, bufsize)
            break
        except OSError:
            pass
    s.bind(("127.0.0.1", 0))
    return s


def ok_200(data):
    """200 to an INVITE: its Vias, From, To (tagged), Call-ID, CSeq."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    keep = [h for h in head[1:] if h.split(b":", 1)[0].strip().lower()
            in (b"via", b"v", b"from", b"f", b"call-id", b"i", b"cseq")]
    to = [h + b";tag=b" for h in head[1:] if h.split(b":", 1)[0].strip().lower() in (b"to", b"t")]
    return b"\r\n".join([b"SIP/2.0 200 OK"] + keep + to + [b"Content-Length: 0", b"", b""])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--proxy", required=True, help="HOST:PORT of the proxy")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--answer", type=int, choices=(0, 1), default=0)
    ap.add_argument("--burst", type=int, default=200)
    ap.add_argument("--gap", type=float, default=0.02)
    ap.add_argument("--timeout", type=float, default=25.0)
    a = ap.parse_args()
    host, port = a.proxy.rsplit(":", 1)
    proxy = (host, int(port))
    n = a.count
    callee, caller = udp(8 << 20), udp(8 << 20)
    cport, uport = caller.getsockname()[1], callee.getsockname()[1]
    lock = threading.Lock()
    reached, answered, finals = set(), set(), {}  # finals: Call-ID -> status of the first response
    stats = {"callee_datagrams": 0, "caller_datagrams": 0, "first_200": None, "other_finals": 0}
    done = threading.Event()

    def at_callee():
        callee.settimeout(0.2)
        while not done.is_set():
            try:
                data, peer = callee.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            m = CALL_ID.search(data)
            with lock:
                stats["callee_datagrams"] += 1
                if m:
                    reached.add(m.group(1).strip())
            if a.answer and data.startswith(b"INVITE "):
                callee.sendto(ok_200(data), peer)

    def at_caller():
        caller.settimeout(0.2)
        while not done.is_set():
            try:
                data, _ = caller.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            m = CALL_ID.search(data)
            if not m or not data.startswith(b"SIP/2.0 "):
                continue
            cid, code = m.group(1).strip(), data[8:11]
            with lock:
                stats["caller_datagrams"] += 1
                if cid not in finals:
                    finals[cid] = code
                if code == b"200":
                    if stats["first_200"] is None:
                        stats["first_200"] = time.monotonic()
                    answered.add(cid)
                elif code >= b"300" and finals.get(cid) != b"other":
                    finals[cid] = b"other"
                    stats["other_finals"] += 1

    threads = [threading.Thread(target=f, daemon=True) for f in (at_callee, at_caller)]
    for t in threads:
        t.start()
    sdp = ("v=0\r\no=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\ns=-\r\n"
           "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\n"
           "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
           "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n")
    msgs = []
    for k in range(n):
        msgs.append((f"{k}-memory@127.0.0.1".encode(), (
            f"INVITE sip:bob@127.0.0.1:{uport} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bKmem{k};rport\r\n"
            f"Max-Forwards: 70\r\nTo: <sip:bob@example.com>\r\n"
            f"From: \"Alice\" <sip:alice@example.com>;tag=a{k}\r\n"
            f"Call-ID: {k}-memory@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:alice@127.0.0.1:{cport}>\r\n"
            f"User-Agent: tx-memory\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}").encode()))
    began = time.monotonic()
    for k, (_, msg) in enumerate(msgs):
        caller.sendto(msg, proxy)
        if k % a.burst == a.burst - 1:
            time.sleep(a.gap)
    sent_s = time.monotonic() - began
    target = answered if a.answer else reached
    resent, tries = 0, 0
    deadline = began + a.timeout
    next_resend = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        with lock:
            if len(target) >= n:
                break
        if tries < 6 and time.monotonic() >= next_resend:
            tries += 1
            with lock:
                silent = [msg for cid, msg in msgs if cid not in finals]
            for msg in silent:
                caller.sendto(msg, proxy)
            resent += len(silent)
            next_resend = time.monotonic() + 0.5
        time.sleep(0.01)
    with lock:
        line = (f"invites={n} invite_bytes={len(msgs[-1][1])} reached_callee={len(reached)} "
                f"answered_200={len(answered)} other_finals={stats['other_finals']} "
                f"callee_datagrams={stats['callee_datagrams']} caller_datagrams={stats['caller_datagrams']} "
                f"caller_resent={resent} send_s={sent_s:.3f} wait_s={time.monotonic() - began:.3f} "
                f"first_200_mono={stats['first_200'] or 0:.6f} complete={int(len(target) >= n)}")
    print(line, flush=True)
    sys.stdin.read()  # until the driver has measured
    done.set()


if __name__ == "__main__":
    main()
