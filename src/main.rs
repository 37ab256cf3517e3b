//! The `sipshard` binary: flags in, then work out. For now it parses flags
//! and offers `--parse FILE` to show how a message is read; the server loop
//! arrives with issue #3.

use std::io::Read;
use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;

use sipshard::cli::Args;
use sipshard::sip::{Message, StartLine};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.parse {
        return parse_file(path);
    }
    eprintln!(
        "sipshard {}: the SIP parser and writer are built; the server (shards, I/O, proxy) \
         is not yet (issue #3). Would listen on: {:?}. See --help.",
        env!("CARGO_PKG_VERSION"),
        args.listen
    );
    ExitCode::from(2)
}

fn parse_file(path: &str) -> ExitCode {
    let mut data = Vec::new();
    let read = if path == "-" {
        std::io::stdin().read_to_end(&mut data).map(|_| ())
    } else {
        std::fs::read(path).map(|d| data = d)
    };
    if let Err(e) = read {
        eprintln!("sipshard: cannot read {path}: {e}");
        return ExitCode::from(1);
    }
    let msg = match Message::parse(&data) {
        Ok(m) => m,
        Err(e) => {
            println!("parse error: {} ({})", e, e.status());
            return ExitCode::from(1);
        }
    };
    match msg.start_line() {
        StartLine::Request { method, uri } => {
            println!("request {} {}", method, String::from_utf8_lossy(uri))
        }
        StartLine::Response { code, reason } => {
            println!("response {} {}", code, String::from_utf8_lossy(reason))
        }
    }
    for h in msg.headers() {
        println!(
            "  {:?} {:?}: {:?}",
            h.name,
            String::from_utf8_lossy(h.raw_name),
            String::from_utf8_lossy(h.value)
        );
    }
    println!("body: {} bytes", msg.body().len());
    match msg.validate() {
        Ok(()) => {
            println!("valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("invalid: {} ({})", e, e.status());
            ExitCode::from(1)
        }
    }
}
