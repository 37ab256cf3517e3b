#!/usr/bin/env python3
"""Dictionaries for ATTACK_AUTH=1: svcrack's wrong passwords for VICTIM
(common ones, the victim's name, near misses, the other users' passwords,
PINs): N in TMP/words.txt, 2N in TMP/words-fast.txt; the control's ten of
them, then crackme000001's password, in TMP/control.txt; and svwar
--force's names, real users' and made-up ones alternating, in
TMP/names.txt.

    words.py VICTIM N TMP USERS
"""

import sys

victim, n, tmp, users = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
right = f"pw-{victim}"
words = ["1234", "12345", "123456", "password", "secret", "admin", "letmein", "qwerty", "changeme",
         victim, victim[::-1], right.upper(), right + "1", right[:-1], "pw-" + victim[:-1] + "2"]
words += [f"pw-user{k:06d}" for k in range(2, n)] + [f"{k:04d}" for k in range(10000)]
words = [w for w in dict.fromkeys(words) if w != right][:2 * n]
assert len(words) == 2 * n and right not in words
open(f"{tmp}/words.txt", "w").write("\n".join(words[:n]) + "\n")
open(f"{tmp}/words-fast.txt", "w").write("\n".join(words) + "\n")
open(f"{tmp}/control.txt", "w").write("\n".join(words[:10] + ["pw-crackme000001"]) + "\n")
names = []
for k in range(1, min(users, 50) + 1):
    names += [f"user{k:06d}", f"ghost{k:06d}"]
open(f"{tmp}/names.txt", "w").write("\n".join(names) + "\n")
