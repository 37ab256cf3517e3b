#!/usr/bin/env python3
"""Writes seed inputs for the `registrar` and `digest` fuzz targets into
fuzz/corpus/registrar and fuzz/corpus/digest (created; existing files kept).

    python3 fuzz/seeds.py

Digest seeds carry credentials computed here (hashlib, hmac) for nonces
minted as sipshard mints them, with the key and clock the `digest` target
fixes (32 bytes of 42, Unix time 1700000000), so the fuzzer starts from
requests that are accepted, stale, replayed or wrong in one field.
"""

import hashlib
import hmac
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = bytes([42] * 32)
NOW = 1_700_000_000
REALM = "example.com"
USERS = {"alice": "wonderland", "bob": "builder"}


def nonce(ts, salt):
    head = struct.pack(">I", ts & 0xFFFFFFFF).hex() + struct.pack(">I", salt).hex()
    mac = hmac.new(KEY, (head + ":" + REALM).encode(), hashlib.sha256).digest()[:16]
    return head + mac.hex()


def creds(user, password, n, nc, alg, method, uri, cnonce="c0ffee"):
    h = (lambda s: hashlib.md5(s.encode()).hexdigest()) if alg == "MD5" else (
        lambda s: hashlib.sha256(s.encode()).hexdigest())
    ha1 = h(f"{user}:{REALM}:{password}")
    ha2 = h(f"{method}:{uri}")
    resp = h(f"{ha1}:{n}:{nc:08x}:{cnonce}:auth:{ha2}")
    return (f'Digest username="{user}", realm="{REALM}", nonce="{n}", uri="{uri}", '
            f'response="{resp}", algorithm={alg}, cnonce="{cnonce}", qop=auth, nc={nc:08x}')


def register(user, cseq, contact="", auth=None, extra=""):
    lines = [
        f"REGISTER sip:{REALM} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKr{user}{cseq};rport",
        "Max-Forwards: 70",
        f"To: <sip:{user}@{REALM}>",
        f"From: <sip:{user}@{REALM}>;tag=f{cseq}",
        f"Call-ID: reg-{user}",
        f"CSeq: {cseq} REGISTER",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    if auth:
        lines.append(f"Authorization: {auth}")
    if extra:
        lines.append(extra)
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines)


def invite(frm, to, cseq, auth=None):
    lines = [
        f"INVITE sip:{to}@{REALM} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKi{cseq}",
        "Max-Forwards: 70",
        f"To: <sip:{to}@{REALM}>",
        f"From: <sip:{frm}@{REALM}>;tag=i{cseq}",
        f"Call-ID: inv-{cseq}",
        f"CSeq: {cseq} INVITE",
    ]
    if auth:
        lines.append(f"Proxy-Authorization: {auth}")
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines)


def write(target, name, text):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(text if isinstance(text, bytes) else text.encode())


def main():
    n = nonce(NOW, 1)
    old = nonce(NOW - 400, 2)
    a = "alice"
    pw = USERS[a]
    seeds = {
        "register_bare": register(a, 1, "<sip:alice@192.0.2.7>"),
        "register_md5": register(a, 2, "<sip:alice@192.0.2.7>", creds(a, pw, n, 1, "MD5", "REGISTER", f"sip:{REALM}")),
        "register_sha256": register(a, 3, "<sip:alice@192.0.2.7>;expires=60", creds(a, pw, n, 2, "SHA-256", "REGISTER", f"sip:{REALM}")),
        "register_stale": register(a, 4, "<sip:alice@192.0.2.7>", creds(a, pw, old, 1, "SHA-256", "REGISTER", f"sip:{REALM}")),
        "register_wrong": register(a, 5, "<sip:alice@192.0.2.7>", creds(a, "guess", n, 3, "MD5", "REGISTER", f"sip:{REALM}")),
        "register_other_user": register(a, 6, "<sip:alice@192.0.2.7>", creds("bob", USERS["bob"], n, 4, "MD5", "REGISTER", f"sip:{REALM}")),
        "register_our_uri": register(a, 7, "<sip:alice@192.0.2.7>", creds(a, pw, n, 5, "MD5", "REGISTER", "sip:127.0.0.1:5060")),
        "invite_bare": invite(a, "bob", 1),
        "invite_auth": invite(a, "bob", 2, creds(a, pw, n, 6, "SHA-256", "INVITE", f"sip:bob@{REALM}")),
        "credentials_only": creds(a, pw, n, 1, "MD5", "REGISTER", f"sip:{REALM}"),
    }
    for name, text in seeds.items():
        write("digest", name, text)

    # Registrar: sequences of datagrams, "\n--\n" between them, the first
    # byte of each moving the clock on by that many seconds.
    sep = "\n--\n"
    seq = lambda *steps: sep.join(chr(dt) + msg for dt, msg in steps)
    c = lambda i, extra="": f"<sip:alice@192.0.2.{i}:5060>{extra}"
    write("registrar", "refresh_and_expire", seq(
        (0, register(a, 1, c(1))), (30, register(a, 2, c(1))), (100, register(a, 3, c(2), extra="Expires: 10")),
        (15, register(a, 4))))
    write("registrar", "max_contacts", seq(*[(1, register(a, i, c(i), extra=f"Expires: {20 * i}")) for i in range(1, 6)]))
    write("registrar", "star_and_order", seq(
        (0, register(a, 5, c(1))), (0, register(a, 4, c(2))), (0, register(a, 6, "*", extra="Expires: 0")),
        (0, register(a, 7, c(3) + ";q=0.5, " + c(4) + ";q=1;expires=30"))))
    write("registrar", "brief_and_remove", seq(
        (0, register(a, 1, c(1), extra="Expires: 5")), (0, register(a, 2, c(1) + ";expires=0")),
        (0, register("bob", 1, c(9), extra="Path: <sip:192.0.2.60;lr>"))))

    # Two AORs whose hashes collided under the old multiply hash: the
    # second REGISTER used to erase the first user's record.
    write("registrar", "hash_collision_10002_10089", seq(
        (0, register("10002", 1, "<sip:10002@192.0.2.7>")), (0, register("10089", 1, "<sip:10089@192.0.2.8>"))))

if __name__ == "__main__":
    main()
