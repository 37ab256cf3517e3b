//! The binary itself: version, help, and `--parse` on good and bad input,
//! run as a user would run it.

use std::io::Write;
use std::process::{Command, Stdio};

fn sipshard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sipshard"))
}

/// Runs sipshard with `args`, which must fail saying `says`; its stderr.
fn refused(args: &[&str], says: &str) -> String {
    let out = sipshard().args(args).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(says), "{err}");
    err.into_owned()
}

#[test]
fn version_and_help() {
    let out = sipshard().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sipshard "));
    let out = sipshard().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--listen") && help.contains("--parse"));
}

#[test]
fn bad_flag_is_refused() {
    let out = sipshard()
        .args(["--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_unknown_transport_is_a_usage_error_and_wss_without_a_certificate_and_a_lone_tcp_are_refused()
{
    let out = sipshard()
        .args(["--listen", "sctp:127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown transport"));
    refused(
        &["--listen", "127.0.0.1:0", "--listen", "wss:127.0.0.1:0"],
        "--listen wss:127.0.0.1:0: needs --tls-cert and --tls-key",
    );
    refused(
        &["--listen", "tcp:127.0.0.1:0"],
        "a tcp, tls, ws or wss listen needs a udp one beside it",
    );
}

#[test]
fn parse_a_valid_file() {
    let path = format!(
        "{}/tests/data/register_contacts.sip",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = sipshard().args(["--parse", &path]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("request REGISTER sip:registrar.biloxi.example.com"));
    assert!(text.contains("Contact"));
    assert!(text.trim_end().ends_with("valid"));
}

/// Runs `sipshard --parse -` with `input` on standard input.
fn parse_stdin(input: &[u8]) -> std::process::Output {
    let mut child = sipshard()
        .args(["--parse", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn parse_from_stdin_reports_the_reason() {
    let out = parse_stdin(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("invalid: Missing From (400)"));

    let out = parse_stdin(b"INVITE sip:x SIP/3.0\r\n\r\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Version Not Supported (505)"));
}

#[test]
fn cluster_flags_are_checked_before_anything_starts() {
    let url = "redis://:secret@127.0.0.1:1";
    refused(
        &["--listen", "127.0.0.1:0", "--cluster", url],
        "--cluster needs --domain",
    );
    let err = refused(
        &[
            "--listen",
            "127.0.0.1:0",
            "--domain",
            "example.com",
            "--cluster",
            "http://:secret@h:1",
        ],
        "--cluster http://***@h:1: a redis:// or rediss:// URL",
    );
    assert!(
        !err.contains("secret"),
        "the password is never printed: {err}"
    );
    refused(
        &[
            "--listen",
            "127.0.0.1:0",
            "--domain",
            "example.com",
            "--cluster",
            url,
            "--node-id",
            "a b",
        ],
        "--node-id \"a b\": 1 to 64 letters",
    );
    refused(
        &[
            "--listen",
            "0.0.0.0:0",
            "--domain",
            "example.com",
            "--cluster",
            url,
            "--node-id",
            "a",
        ],
        "give --node-addr",
    );
    refused(
        &[
            "--listen",
            "127.0.0.1:0",
            "--domain",
            "example.com",
            "--cluster",
            url,
            "--node-addr",
            "0.0.0.0:5060",
        ],
        "--node-addr 0.0.0.0:5060: an address other nodes can send to",
    );
}
