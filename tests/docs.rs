//! The documentation stays true to the tree: every file `docs/*.md` links
//! or names (`src/…`, `examples/…`, `tests/…`, `scripts/…`) exists, every
//! test it cites as `path::name` is a function in that file, and no text a
//! user reads depends on a folder outside the repository.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `docs/*.md`, as (name, text).
fn docs() -> Vec<(String, String)> {
    let mut docs: Vec<(String, String)> = fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("docs entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read_to_string(&path).expect("read doc"))
        })
        .collect();
    docs.sort();
    assert!(docs.len() >= 2, "docs/PROTOCOLS.md and docs/EXAMPLES.md");
    docs
}

/// The targets of the Markdown links `[text](target)` in `text`.
fn link_targets(text: &str) -> Vec<&str> {
    let mut targets = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let end = rest.find(')').unwrap_or(rest.len());
        targets.push(&rest[..end]);
        rest = &rest[end..];
    }
    targets
}

/// The inline code spans of `text` that name a repository path.
fn named_paths(text: &str) -> Vec<&str> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| {
            ["src/", "examples/", "tests/", "scripts/"]
                .iter()
                .any(|prefix| span.starts_with(prefix))
                && !span.contains(char::is_whitespace)
        })
        .collect()
}

#[test]
fn every_file_the_docs_link_exists() {
    let mut checked = 0;
    for (name, text) in docs() {
        for target in link_targets(&text) {
            let target = target.split('#').next().unwrap_or_default();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let path = root().join("docs").join(target);
            assert!(
                path.exists(),
                "docs/{name} links {target}, which is not there"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 10,
        "only {checked} links found: is the parser right?"
    );
}

#[test]
fn every_file_and_test_the_docs_name_exists() {
    let mut tests = 0;
    for (name, text) in docs() {
        for span in named_paths(&text) {
            let (file, function) = match span.split_once("::") {
                Some((file, function)) => (file, Some(function)),
                None => (span, None),
            };
            let path = root().join(file);
            assert!(
                path.exists(),
                "docs/{name} names {file}, which is not there"
            );
            if let Some(function) = function {
                let source = fs::read_to_string(&path).expect("read source");
                assert!(
                    source.contains(&format!("fn {function}(")),
                    "docs/{name} cites {span}, but {file} has no fn {function}"
                );
                tests += 1;
            }
        }
    }
    assert!(
        tests >= 10,
        "only {tests} tests cited: is the parser right?"
    );
}

/// Every file under `dir` (recursively) whose name ends in `suffix`.
fn files(dir: &Path, suffix: &str, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files(&path, suffix, found);
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
}

#[test]
fn no_user_facing_text_depends_on_a_folder_outside_the_repository() {
    // What a user reads: the README, the docs, the scripts, and the crate's
    // documentation (doc comments, rendered by `cargo doc`).
    let mut texts = vec![root().join("README.md")];
    files(&root().join("docs"), ".md", &mut texts);
    files(&root().join("scripts"), "", &mut texts);
    let mut sources = Vec::new();
    files(&root().join("src"), ".rs", &mut sources);
    let outside = [
        "SPEC.md",
        "SPEC ",
        "../shared",
        "shared/peers",
        "DESIGN-NOTES",
    ];
    for path in texts.iter().chain(&sources) {
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        let is_source = path.extension().is_some_and(|ext| ext == "rs");
        for (n, line) in text.lines().enumerate() {
            if is_source
                && !line.trim_start().starts_with("//!")
                && !line.trim_start().starts_with("///")
            {
                continue;
            }
            for word in outside {
                assert!(
                    !line.contains(word),
                    "{}:{}: {word:?} is not in a clone of this repository: {line}",
                    path.strip_prefix(root()).unwrap_or(path).display(),
                    n + 1
                );
            }
        }
    }
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains("(docs/PROTOCOLS.md)"),
        "the README links the protocol reference"
    );
}
