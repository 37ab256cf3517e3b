//! The dependency rule of `src/lib.rs`, checked: a module imports only the
//! modules its layer may see. It reads the sources (non-test code, up to
//! the first `#[cfg(test)]` of a file, comment lines skipped) and fails on
//! any `crate::X` path that the table below does not allow, naming the file
//! and line. The table is the one in the crate doc; change both together.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Each module and what it may import (besides itself), bottom first: a
/// module may only import modules listed before it (checked below).
fn allowed() -> Vec<(&'static str, Vec<&'static str>)> {
    let core = ["hash", "sip", "transport"];
    let below_shard = [
        "hash",
        "sip",
        "transport",
        "io",
        "auth",
        "admit",
        "location",
        "registrar",
        "proxy",
        "transaction",
        "cluster",
    ];
    let with = |base: &[&'static str], more: &[&'static str]| {
        base.iter().chain(more).copied().collect::<Vec<_>>()
    };
    vec![
        ("hash", vec![]),
        ("sip", vec!["hash"]),
        ("transport", vec!["hash", "sip"]),
        ("io", vec!["hash", "transport"]),
        ("auth", vec!["hash", "sip"]),
        ("admit", with(&core, &[])),
        ("location", with(&core, &[])),
        ("registrar", with(&core, &["location"])),
        ("proxy", with(&core, &["location", "registrar"])),
        (
            "transaction",
            with(&core, &["location", "registrar", "proxy"]),
        ),
        ("cluster", with(&core, &["location", "registrar", "proxy"])),
        ("cli", with(&core, &["auth", "admit", "io"])),
        ("shard", with(&below_shard, &[])),
        ("telemetry", with(&below_shard, &["cli", "shard"])),
        ("config", with(&below_shard, &["cli"])),
        ("probe", with(&core, &["location", "registrar", "proxy"])),
        (
            "server",
            with(
                &below_shard,
                &["cli", "shard", "telemetry", "config", "probe"],
            ),
        ),
    ]
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file under `src/` belongs to, None for the
/// crate root and the binaries.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" | "bin" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// A `tests.rs` that its folder's `mod.rs` declares only under
/// `#[cfg(test)]`: test code, which may reach any layer (as the inline
/// test modules after `#[cfg(test)]` may).
fn is_test_module(file: &Path) -> bool {
    file.file_name().is_some_and(|n| n == "tests.rs")
        && fs::read_to_string(file.with_file_name("mod.rs"))
            .is_ok_and(|m| m.contains("#[cfg(test)]\nmod tests;"))
}

/// The `crate::X` modules named on a line.
fn crate_paths(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.push(name);
        }
        rest = after;
    }
    found
}

/// Every import against the rule, as "file:line: a -> b".
fn violations(src: &Path) -> Vec<String> {
    let table = allowed();
    let allowed: BTreeMap<&str, &[&str]> = table.iter().map(|(m, may)| (*m, &may[..])).collect();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for file in files {
        let Some(module) = module_of(src, &file) else {
            continue;
        };
        let Some(may) = allowed.get(module.as_str()) else {
            bad.push(format!(
                "{}: module {module} is not in the layer table",
                file.display()
            ));
            continue;
        };
        if is_test_module(&file) {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break;
            }
            if line.trim_start().starts_with("//") {
                continue;
            }
            for used in crate_paths(line) {
                if used != module && !may.contains(&used.as_str()) {
                    bad.push(format!("{}:{}: {module} -> {used}", file.display(), n + 1));
                }
            }
        }
    }
    bad
}

#[test]
fn imports_run_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = violations(&src);
    assert!(
        bad.is_empty(),
        "imports against the layering in src/lib.rs:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_table_is_a_layering() {
    // A module may only import modules listed before it: no cycles.
    let table = allowed();
    for (i, (module, may)) in table.iter().enumerate() {
        for m in may {
            let j = table.iter().position(|(n, _)| n == m);
            assert!(j.is_some_and(|j| j < i), "{module} may import {m}");
        }
    }
}

#[test]
fn the_checker_finds_an_import_against_the_rule() {
    // The check must be able to fail: a sip file that reaches up to the
    // proxy is reported.
    let dir = std::env::temp_dir().join(format!("sipshard-layers-{}", std::process::id()));
    let sip = dir.join("sip");
    fs::create_dir_all(&sip).unwrap();
    fs::write(
        sip.join("bad.rs"),
        "use crate::hash::Hash64;\nuse crate::proxy::route;\n// crate::shard in a comment\n\
         #[cfg(test)]\nmod tests { use crate::shard::Shard; }\n",
    )
    .unwrap();
    let bad = violations(&dir);
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].ends_with("bad.rs:2: sip -> proxy"), "{bad:?}");
}
