//! The layering the crate doc promises, checked on the sources:
//! - `src/proto/**` (the sans-IO cores) uses no `crate::server`, `mio`,
//!   `std::fs` or `libc` outside its tests;
//! - `src/server/**` (the loop) names no protocol, as a whole word, in code
//!   or comments outside its tests: it knows protocols only by their
//!   declarations (`proto::declare`);
//! - the modules of `src/server` use one another without cycles.
//!
//! `ONEPOLL_LAYERING_ROOT=DIR` checks another tree's `src/` instead of this
//! one's (how this test was seen to fail on the tree before the registry).

use std::fs;
use std::path::{Path, PathBuf};

use onepoll::proto::Protocol;

fn root() -> PathBuf {
    std::env::var_os("ONEPOLL_LAYERING_ROOT")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// Every `.rs` file under `dir`, sorted.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The file's text up to its unit-test module (`#[cfg(test)]` then
/// `mod ...`), which may name what it likes to set a test up.
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].trim_start().starts_with("mod "))
        .unwrap_or(lines.len());
    lines[..end].join("\n")
}

/// Whether `word` occurs in `text` as a whole word, ignoring case (as
/// `grep -iw` finds it).
fn has_word(text: &str, word: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = lower.as_bytes();
    let mut from = 0;
    while let Some(at) = lower[from..].find(word) {
        let start = from + at;
        let end = start + word.len();
        let before = start == 0 || !is_word(bytes[start - 1]);
        let after = end == bytes.len() || !is_word(bytes[end]);
        if before && after {
            return Some(lower[..start].lines().count().max(1));
        }
        from = end;
    }
    None
}

#[test]
fn proto_does_no_io_and_does_not_use_the_loop() {
    let mut found = Vec::new();
    for path in sources(&root().join("src/proto")) {
        let code = code(&path);
        for banned in [
            "crate::server",
            "mio::",
            "use mio",
            "std::fs",
            "libc::",
            "use libc",
        ] {
            if code.contains(banned) {
                found.push(format!("{}: {banned}", path.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "proto reaches past sans-IO:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_loop_names_no_protocol() {
    // `stats` is left out: it is also the name of the loop's own reports
    // (`server::stats`, figures only the loop has), which the stats
    // listener's session asks for.
    let names: Vec<&str> = Protocol::EVERY
        .iter()
        .map(|p| p.name())
        .filter(|n| *n != "stats")
        .collect();
    assert!(
        names.contains(&"chat"),
        "the registry lost a protocol: {names:?}"
    );
    let mut found = Vec::new();
    for path in sources(&root().join("src/server")) {
        let code = code(&path);
        for name in &names {
            if let Some(line) = has_word(&code, name) {
                found.push(format!("{}:{line}: {name}", path.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the loop names protocols (declare a policy in proto::declare instead):\n{}",
        found.join("\n")
    );
}

#[test]
fn server_modules_use_one_another_without_cycles() {
    let dir = root().join("src/server");
    // Each top-level module of `server`, and the files that make it up
    // (`x.rs`, and `x/**` for a module with children).
    let mut modules: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for path in sources(&dir) {
        let rel = path.strip_prefix(&dir).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let name = first.trim_end_matches(".rs").to_string();
        if name == "mod" {
            continue;
        }
        match modules.iter_mut().find(|(n, _)| *n == name) {
            Some((_, files)) => files.push(path),
            None => modules.push((name, vec![path])),
        }
    }
    let names: Vec<String> = modules.iter().map(|(n, _)| n.clone()).collect();
    let mut edges: Vec<(String, String)> = Vec::new();
    for (name, files) in &modules {
        for file in files {
            let code = code(file);
            // A file directly in src/server names a sibling as `super::x`.
            let direct = file.parent() == Some(dir.as_path());
            for other in names.iter().filter(|o| *o != name) {
                let uses = code.contains(&format!("crate::server::{other}::"))
                    || code.contains(&format!("crate::server::{other};"))
                    || (direct
                        && (code.contains(&format!("super::{other}::"))
                            || code.contains(&format!("super::{other};"))));
                if uses && !edges.contains(&(name.clone(), other.clone())) {
                    edges.push((name.clone(), other.clone()));
                }
            }
        }
    }
    assert!(
        edges.iter().any(|(a, b)| a == "event_loop" && b == "conn"),
        "the use graph was not read: {edges:?}"
    );
    // Depth-first search for a cycle.
    fn visit(
        node: &str,
        edges: &[(String, String)],
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.iter().any(|n| n == node) {
            return None;
        }
        path.push(node.to_string());
        for (_, to) in edges.iter().filter(|(from, _)| from == node) {
            if let Some(cycle) = visit(to, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.push(node.to_string());
        None
    }
    let mut done = Vec::new();
    for name in &names {
        if let Some(cycle) = visit(name, &edges, &mut Vec::new(), &mut done) {
            panic!(
                "server modules use one another in a cycle: {}",
                cycle.join(" -> ")
            );
        }
    }
}
