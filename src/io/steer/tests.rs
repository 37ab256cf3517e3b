//! The steering program run by the kernel (`BPF_PROG_TEST_RUN`) on real
//! messages, its answer checked against the parser's Call-ID and
//! [`crate::hash::call_id_shard`]. Where the environment refuses bpf(2)
//! (EPERM, ENOSYS: a container) the tests say so and pass; a program the
//! verifier refuses fails them.

use std::os::fd::OwnedFd;

use super::program::{call_id_program, NONE, SCAN_LIMIT};
use super::sys;
use crate::hash::call_id_shard;
use crate::sip::Message;

fn loaded(shards: u32) -> Option<OwnedFd> {
    match sys::load(&call_id_program(shards), "sipshard_test") {
        Ok(fd) => Some(fd),
        Err(e) if matches!(e.error.raw_os_error(), Some(libc::EPERM | libc::ENOSYS)) => {
            eprintln!("skipped: bpf(2) refused here: {e}");
            None
        }
        Err(e) => panic!("the verifier refused the steering program: {e}"),
    }
}

fn run(prog: &OwnedFd, payload: &[u8]) -> u32 {
    sys::test_run(prog, payload, 1)
        .expect("BPF_PROG_TEST_RUN")
        .0
}

const INVITE: &str = "INVITE sip:bob@127.0.0.1:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-0\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=1\r\n\
To: bob <sip:bob@127.0.0.1:5070>\r\n\
{CALLID}\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipp@127.0.0.1:5061\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";

fn with(call_id_line: &str) -> String {
    INVITE.replace("{CALLID}", call_id_line)
}

/// What the kernel must answer for `msg`: the parser's Call-ID hashed.
fn expected(msg: &str, shards: u32) -> u32 {
    let m = Message::parse(msg.as_bytes()).expect("test message parses");
    call_id_shard(m.call_id().expect("has a Call-ID"), shards)
}

#[test]
fn kernel_agrees_with_the_parser_on_every_header_form() {
    let Some(prog) = loaded(4) else { return };
    let forms = [
        "Call-ID: 1-4242@127.0.0.1",
        "i: 1-4242@127.0.0.1",
        "I:1-4242@127.0.0.1",
        "call-id:a84b4c76e66710@pc33.atlanta.com",
        "CALL-ID \t:  \tf81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        "Call-Info: <http://x>\r\nCall-ID: after-call-info",
        "Identity: abc\r\nCall-ID: after-identity",
        "Subject: i: not this\r\nCall-ID: the-real-one",
        "Call-ID: trailing-space   ",
    ];
    for form in forms {
        let msg = with(form);
        assert_eq!(run(&prog, msg.as_bytes()), expected(&msg, 4), "{form:?}");
    }
}

#[test]
fn responses_are_steered_by_the_same_call_id_as_their_request() {
    let Some(prog) = loaded(2) else { return };
    let request = with("Call-ID: dialog-7@host");
    let response = "SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-0\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=1\r\n\
To: bob <sip:bob@127.0.0.1:5070>;tag=2\r\n\
Call-ID: dialog-7@host\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n";
    assert_eq!(
        run(&prog, request.as_bytes()),
        run(&prog, response.as_bytes())
    );
    assert_eq!(run(&prog, response.as_bytes()), expected(response, 2));
}

#[test]
fn no_call_id_leaves_the_choice_to_the_kernel() {
    let Some(prog) = loaded(2) else { return };
    let no_header = with("Subject: none");
    let in_body = format!(
        "{}Call-ID: in-the-body\r\n",
        with("Subject: none").replace("Content-Length: 0", "Content-Length: 24")
    );
    let cases: [&[u8]; 7] = [
        b"\r\n\r\n",
        b"\r\n",
        b"",
        b"garbage without lines",
        no_header.as_bytes(),
        in_body.as_bytes(),
        // An empty value, and one folded onto the next line.
        b"OPTIONS sip:a SIP/2.0\r\nCall-ID:\r\n \tfolded\r\n\r\n",
    ];
    for c in cases {
        assert_eq!(run(&prog, c), NONE, "{:?}", String::from_utf8_lossy(c));
    }
}

#[test]
fn a_value_that_ends_the_datagram_is_hashed_whole() {
    let Some(prog) = loaded(8) else { return };
    let m = b"OPTIONS sip:a SIP/2.0\r\nCall-ID: last-bytes";
    assert_eq!(run(&prog, m), call_id_shard(b"last-bytes", 8));
}

#[test]
fn call_ids_past_the_scan_limit_go_to_the_kernels_hash() {
    let Some(prog) = loaded(2) else { return };
    let limit = SCAN_LIMIT as usize;
    // Padding puts the CR that ends the value on the last byte scanned
    // (hashed whole), then one byte further (cut, so not hashed at all).
    for (pad_by, want_found) in [(0usize, true), (1, false)] {
        let head = "OPTIONS sip:a SIP/2.0\r\nSubject: ";
        let tail = "\r\nCall-ID: abcdef\r\n\r\n";
        let value_end = tail.find("\r\n\r\n").unwrap();
        let pad = limit - 1 - head.len() - value_end + pad_by;
        let msg = format!("{head}{}{tail}", "x".repeat(pad));
        let got = run(&prog, msg.as_bytes());
        if want_found {
            assert_eq!(
                got,
                call_id_shard(b"abcdef", 2),
                "value ending at the limit"
            );
        } else {
            assert_eq!(got, NONE, "value cut by the limit");
        }
    }
}

#[test]
fn thousands_of_call_ids_agree_and_spread() {
    for shards in [2u32, 3, 4, 16] {
        let Some(prog) = loaded(shards) else { return };
        let mut seen = vec![0u32; shards as usize];
        // A fixed LCG, so a failure names a Call-ID that reproduces.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..2_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let id = format!(
                "{i}-{x:x}@10.{}.{}.{}",
                x >> 56,
                (x >> 48) as u8,
                (x >> 40) as u8
            );
            let msg = with(&format!("Call-ID: {id}"));
            let got = run(&prog, msg.as_bytes());
            assert_eq!(got, call_id_shard(id.as_bytes(), shards), "{id}");
            seen[got as usize] += 1;
        }
        let fair = 2_000 / shards;
        assert!(
            seen.iter().all(|&n| n > fair * 3 / 4),
            "{shards} shards: {seen:?}"
        );
    }
}

#[test]
fn every_alignment_of_lines_and_ends_agrees() {
    // The program skips header lines four bytes at a time: move every line
    // end through every position of a word, and end the datagram at every
    // position too.
    let Some(prog) = loaded(4) else { return };
    for pad in 0..9 {
        for short in ["", "X: y\r\n", "Xy: z\r\n", "Xyz: w\r\n"] {
            let msg = with(&format!(
                "Subject: {}\r\n{short}Call-ID: a{pad}b",
                "s".repeat(pad)
            ));
            assert_eq!(run(&prog, msg.as_bytes()), expected(&msg, 4), "{msg:?}");
            let cut = format!(
                "OPTIONS sip:x SIP/2.0\r\nSubject: {}\r\n{short}Call-ID: v{pad}",
                "s".repeat(pad)
            );
            assert_eq!(
                run(&prog, cut.as_bytes()),
                call_id_shard(format!("v{pad}").as_bytes(), 4),
                "{cut:?}"
            );
        }
    }
}
