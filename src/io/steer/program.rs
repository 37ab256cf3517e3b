//! The steering program: reads a datagram's `Call-ID` and returns the
//! index of the shard socket that gets it. This Rust is its source; the
//! kernel runs it on every datagram for the listen address, before any
//! shard sees it, as a socket filter attached to the `SO_REUSEPORT` group
//! (`SO_ATTACH_REUSEPORT_EBPF`). The packet starts at the UDP payload.
//!
//! It is a table-driven scanner: each byte has a class ([`class_of`]),
//! and (state, class) gives the next state and whether the byte is part
//! of the Call-ID value ([`step`]). Both tables are written to the stack
//! at entry. In C:
//!
//! ```c
//! u32 steer(struct __sk_buff *skb) {
//!     u8 class[256] = CLASSES, next[VALUE + 1][16] = STEPS;
//!     u64 h = FNV_OFFSET;
//!     int state = SKIP;                   /* the start line is skipped */
//!     for (u64 i = 0; ; i++) {
//!         if (i >= SCAN_LIMIT) return NONE;
//!         if (i >= skb->len) break;
//!         if (state == SKIP && i + 4 <= skb->len
//!                 && !has_zero_byte(load_word(skb, i) ^ 0x0a0a0a0a)) {
//!             i += 3;                     /* no LF in these four bytes */
//!             continue;
//!         }
//!         u8 c = load_byte(skb, i);
//!         if (state == SKIP && c != '\n') continue;   /* the fast path */
//!         u8 t = next[state][class[c]];
//!         if (t & HASH) h = (h ^ c) * FNV_PRIME;
//!         state = t & 15;
//!         if (state == FOUND) goto found;
//!         if (state == NONE) return NONE;
//!     }
//!     if (state != VALUE) return NONE;
//! found:
//!     h = mix64(h);                        /* hash::mix64 */
//!     return ((h >> 32) * SHARDS) >> 32;     /* hash::call_id_shard */
//! }
//! ```
//!
//! The hash update is done without a branch (a mask from the HASH bit),
//! and the state is only ever a value loaded from the table: so the
//! verifier, which walks every iteration of the bounded loop, sees one
//! state per iteration instead of one per (iteration, scanner state),
//! and a 1,500-byte scan verifies in well under its budget on any kernel
//! from 5.3 (bounded loops) on. A branchy scanner with the state as
//! constants did not verify past 128 bytes.
//!
//! `NONE` (0xffffffff) is no socket index, so the kernel falls back to its
//! own 4-tuple hash: keep-alives, garbage, a message where the byte that
//! ends the Call-ID value lies past the first [`SCAN_LIMIT`] bytes, and one whose value is empty or
//! folded onto the next line. The header is found as RFC 3261 §7.3.1 and
//! §20.8 allow it: any case, the compact form `i`, white space before and
//! after the colon, nothing in the body. The first `Call-ID` header wins;
//! a message with two is refused by the parser anyway.

use super::asm::{Alu, Asm, Cond, Insn, R0, R1, R10, R2, R3, R4, R6, R7, R8, R9};
use crate::hash::{FNV64_OFFSET, FNV64_PRIME, MIX64_M1, MIX64_M2};

/// Bytes of a datagram read looking for the Call-ID. SIPp's INVITE has it
/// at byte 250 and a carrier INVITE with a few Vias and Record-Routes
/// under 1,000; one further in goes by the kernel's 4-tuple hash.
pub const SCAN_LIMIT: i32 = 1500;

/// What the program returns when it found no Call-ID.
pub const NONE: u32 = u32::MAX;

// Scanner states. NAME + k: the first k bytes of "call-id" matched.
const SKIP: u8 = 0;
const LINE: u8 = 1;
const NAME: u8 = 1;
const COLON: u8 = 8;
const LEAD: u8 = 9;
const VALUE: u8 = 10;
/// Terminal: the value ended; hash it.
const FOUND: u8 = 11;
/// Terminal: the headers ended, or the value was empty.
const STOP: u8 = 12;
/// In a step: the byte belongs to the value.
const HASH: u8 = 0x10;

// Byte classes.
const OTHER: u8 = 0;
const LF: u8 = 1;
const CR: u8 = 2;
const WS: u8 = 3;
const COLON_CHAR: u8 = 4;
/// The letters of "call-id" in order, any case: c a l - i d (l twice).
const NAME_CLASSES: [u8; 7] = [5, 6, 7, 7, 8, 9, 10];
const CALL_ID: &[u8; 7] = b"call-id";

/// The class of a byte.
pub fn class_of(c: u8) -> u8 {
    match c {
        b'\n' => LF,
        b'\r' => CR,
        b' ' | b'\t' => WS,
        b':' => COLON_CHAR,
        _ => CALL_ID
            .iter()
            .position(|&n| n == c.to_ascii_lowercase())
            .map_or(OTHER, |k| NAME_CLASSES[k]),
    }
}

/// The next state, with [`HASH`] when the byte is part of the value.
pub fn step(state: u8, class: u8) -> u8 {
    // A header line that is not ours: wait for its end.
    let mismatch = if class == LF { LINE } else { SKIP };
    match state {
        SKIP => mismatch,
        LINE => match class {
            LF | CR => STOP, // the empty line: no Call-ID in the headers
            c if c == NAME_CLASSES[0] => NAME + 1,
            c if c == NAME_CLASSES[5] => COLON, // the compact form "i"
            _ => SKIP,
        },
        s if (NAME + 1..NAME + 7).contains(&s) => {
            let k = usize::from(s - NAME);
            if class == NAME_CLASSES[k] {
                if k == 6 {
                    COLON
                } else {
                    s + 1
                }
            } else {
                mismatch
            }
        }
        COLON => match class {
            WS => COLON,
            COLON_CHAR => LEAD,
            _ => mismatch,
        },
        LEAD => match class {
            WS => LEAD,
            LF | CR => STOP,
            _ => VALUE | HASH,
        },
        VALUE => match class {
            WS | LF | CR => FOUND,
            _ => VALUE | HASH,
        },
        _ => STOP,
    }
}

// Stack layout: the class table, then the step table up to the frame
// pointer. 432 of the 512 bytes.
const CLASSES_AT: i16 = -432;
const STEPS_AT: i16 = -176;
const ROWS: usize = VALUE as usize + 1;
// The two tables fill the stack from CLASSES_AT to the frame pointer,
// within the 512 bytes a program has.
const _: () = assert!(STEPS_AT - CLASSES_AT == 256);
const _: () = assert!(-(STEPS_AT as i32) == (ROWS * 16) as i32);
const _: () = assert!(CLASSES_AT >= -512);

/// The program for a reuseport group of `shards` sockets, in the order
/// they joined it (the order they were bound).
pub fn call_id_program(shards: u32) -> Vec<Insn> {
    scanning(shards, SCAN_LIMIT)
}

/// The program, reading at most `limit` bytes.
pub(super) fn scanning(shards: u32, limit: i32) -> Vec<Insn> {
    let mut tables = [0u8; 432];
    for c in 0..=255u8 {
        tables[usize::from(c)] = class_of(c);
    }
    for state in 0..ROWS {
        for class in 0..16 {
            tables[256 + state * 16 + class] = step(state as u8, class as u8);
        }
    }

    // Registers: R6 the context (the packet loads need it there), R7 the
    // offset of the next byte, R8 the state, R9 the hash, R0 the byte just
    // loaded, R1 to R4 scratch (the packet load clobbers R1 to R5).
    let mut a = Asm::default();
    let (head, table, end, done, found, none) = (
        a.label(),
        a.label(),
        a.label(),
        a.label(),
        a.label(),
        a.label(),
    );

    a.alu64_reg(Alu::Mov, R6, R1);
    for (i, chunk) in tables.chunks(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        let off = CLASSES_AT + 8 * i as i16;
        match i32::try_from(v as i64) {
            Ok(small) => a.st_dw(R10, off, small),
            Err(_) => {
                a.ld_imm64(R1, v);
                a.stx_dw(R10, off, R1);
            }
        }
    }
    a.mov32_imm(R7, 0);
    a.mov32_imm(R8, i32::from(SKIP));
    a.ld_imm64(R9, FNV64_OFFSET);

    a.bind(head);
    // At the limit even a value being read is cut: unknown, not hashed.
    a.jmp_imm(Cond::Ge, R7, limit, none);
    a.ldx_w(R1, R6, 0); // skb->len: the bytes after the UDP header
    a.jmp_reg(Cond::Ge, R7, R1, end);
    // Most bytes are inside header lines that are not the Call-ID: skip
    // them four at a time while no LF is among them (the "has a zero
    // byte" test on the word XOR "\n\n\n\n", exact about whether there
    // is one). With fewer than four bytes left, or an LF, byte by byte.
    let byte = a.label();
    a.jmp_imm(Cond::Ne, R8, i32::from(SKIP), byte);
    a.alu64_reg(Alu::Mov, R2, R7);
    a.alu64_imm(Alu::Add, R2, 4);
    a.jmp_reg(Cond::Gt, R2, R1, byte);
    a.ld_ind_w(R7, 0);
    a.alu32_imm(Alu::Xor, R0, 0x0a0a_0a0a);
    a.alu32_reg(Alu::Mov, R1, R0);
    a.alu32_imm(Alu::Sub, R1, 0x0101_0101);
    a.alu32_imm(Alu::Xor, R0, -1);
    a.alu32_reg(Alu::And, R1, R0);
    a.alu32_imm(Alu::And, R1, 0x8080_8080_u32 as i32);
    a.jmp_imm(Cond::Ne, R1, 0, byte);
    a.alu64_imm(Alu::Add, R7, 4);
    a.ja(head);
    a.bind(byte);
    a.ld_ind_b(R7, 0);
    a.alu64_imm(Alu::Add, R7, 1);
    a.jmp_imm(Cond::Ne, R8, i32::from(SKIP), table);
    a.jmp_imm(Cond::Ne, R0, i32::from(b'\n'), head);

    a.bind(table);
    // The verifier does not know a loaded byte is under 256: say so.
    a.alu64_imm(Alu::And, R0, 0xff);
    a.alu64_reg(Alu::Mov, R1, R10);
    a.alu64_reg(Alu::Add, R1, R0);
    a.ldx_b(R2, R1, CLASSES_AT); // class[c]
    a.alu64_imm(Alu::And, R2, 15);
    a.alu64_reg(Alu::Mov, R1, R8);
    a.alu64_imm(Alu::Lsh, R1, 4);
    a.alu64_reg(Alu::Add, R1, R2);
    a.alu64_reg(Alu::Add, R1, R10);
    a.ldx_b(R8, R1, STEPS_AT); // next[state][class]
                               // mask = HASH set ? all ones : 0; h ^= ((h ^ c) * P ^ h) & mask.
    a.alu64_reg(Alu::Mov, R2, R8);
    a.alu64_imm(Alu::Rsh, R2, 4);
    a.alu64_imm(Alu::And, R2, 1);
    a.alu64_imm(Alu::Neg, R2, 0);
    a.alu64_reg(Alu::Mov, R3, R9);
    a.alu64_reg(Alu::Xor, R3, R0);
    a.ld_imm64(R4, FNV64_PRIME);
    a.alu64_reg(Alu::Mul, R3, R4);
    a.alu64_reg(Alu::Xor, R3, R9);
    a.alu64_reg(Alu::And, R3, R2);
    a.alu64_reg(Alu::Xor, R9, R3);
    a.alu64_imm(Alu::And, R8, 15);
    a.jmp_imm(Cond::Ge, R8, i32::from(FOUND), done);
    a.ja(head);

    a.bind(done);
    a.jmp_imm(Cond::Eq, R8, i32::from(FOUND), found);
    a.ja(none);

    a.bind(end);
    a.jmp_imm(Cond::Ne, R8, i32::from(VALUE), none);
    a.bind(found);
    // hash::mix64: every byte into the high bits.
    for (shift, mul) in [(30, MIX64_M1), (27, MIX64_M2)] {
        a.alu64_reg(Alu::Mov, R3, R9);
        a.alu64_imm(Alu::Rsh, R3, shift);
        a.alu64_reg(Alu::Xor, R9, R3);
        a.ld_imm64(R4, mul);
        a.alu64_reg(Alu::Mul, R9, R4);
    }
    a.alu64_reg(Alu::Mov, R3, R9);
    a.alu64_imm(Alu::Rsh, R3, 31);
    a.alu64_reg(Alu::Xor, R9, R3);
    a.alu64_reg(Alu::Mov, R0, R9);
    a.alu64_imm(Alu::Rsh, R0, 32);
    a.alu64_imm(Alu::Mul, R0, shards as i32);
    a.alu64_imm(Alu::Rsh, R0, 32);
    a.exit();
    a.bind(none);
    a.mov32_imm(R0, NONE as i32);
    a.exit();

    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scanner's tables run in Rust, as the program runs them.
    fn scan(msg: &[u8]) -> Option<Vec<u8>> {
        let mut state = SKIP;
        let mut value = Vec::new();
        for &c in msg.iter().take(SCAN_LIMIT as usize) {
            if state == SKIP && c != b'\n' {
                continue;
            }
            let t = step(state, class_of(c));
            if t & HASH != 0 {
                value.push(c);
            }
            state = t & 15;
            match state {
                FOUND => return Some(value),
                STOP => return None,
                _ => {}
            }
        }
        (state == VALUE && msg.len() <= SCAN_LIMIT as usize).then_some(value)
    }

    #[test]
    fn the_tables_find_the_call_id_value() {
        let cases: [(&[u8], Option<&[u8]>); 9] = [
            (
                b"OPTIONS sip:a SIP/2.0\r\nCall-ID: abc\r\n\r\n",
                Some(b"abc"),
            ),
            (b"OPTIONS sip:a SIP/2.0\r\ni:abc@h\r\n\r\n", Some(b"abc@h")),
            (
                b"OPTIONS sip:a SIP/2.0\r\nCALL-id \t: \tx y\r\n",
                Some(b"x"),
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nCall-Info: q\r\nCall-ID: r\r\n",
                Some(b"r"),
            ),
            (b"OPTIONS sip:a SIP/2.0\r\nId: q\r\ni : r\r\n", Some(b"r")),
            (b"OPTIONS sip:a SIP/2.0\r\nCall-ID: end", Some(b"end")),
            (b"OPTIONS sip:a SIP/2.0\r\nCall-ID:\r\n folded\r\n", None),
            (b"OPTIONS sip:a SIP/2.0\r\nTo: b\r\n\r\nCall-ID: body", None),
            (b"Call-ID: on-the-start-line\r\n", None),
        ];
        for (msg, want) in cases {
            assert_eq!(
                scan(msg).as_deref(),
                want,
                "{:?}",
                String::from_utf8_lossy(msg)
            );
        }
    }

    #[test]
    fn every_step_is_a_state() {
        for s in 0..ROWS as u8 {
            for c in 0..16 {
                assert!(step(s, c) & 15 <= STOP);
            }
        }
    }
}
