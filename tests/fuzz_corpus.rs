//! Replays the committed fuzz corpus (`tests/fuzz/corpus/<target>/`) and
//! the seeds through the invariant checkers the fuzz targets use, so that
//! CI exercises them on the stable toolchain without a fuzzer. The
//! checkers live in the fuzz crate (`tests/fuzz/src/`) and are included
//! here by path; see `tests/fuzz/README.md`.

#[path = "fuzz/src/lib.rs"]
mod checks;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target)
}

/// Inputs that once broke an invariant, kept whatever `cmin` keeps.
fn regressions_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/regressions")
        .join(target)
}

/// Runs `check` on `data`; on a panic, fails naming `what`.
fn replay(check: fn(&[u8]), data: &[u8], what: &str) {
    if catch_unwind(AssertUnwindSafe(|| check(data))).is_err() {
        panic!("{what} breaks an invariant (message above)");
    }
}

#[test]
fn every_committed_corpus_input_keeps_its_targets_invariants() {
    for (target, check) in checks::TARGETS {
        let dir = corpus_dir(target);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for {target} at {}: {e}", dir.display()));
        let mut count = 0;
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            replay(check, &data, &path.display().to_string());
            count += 1;
        }
        assert!(count > 0, "the corpus of {target} is empty");
    }
}

#[test]
fn every_regression_input_keeps_its_targets_invariants() {
    for (target, check) in checks::TARGETS {
        let Ok(entries) = std::fs::read_dir(regressions_dir(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("regression entry").path();
            let data = std::fs::read(&path).expect("regression file");
            replay(check, &data, &path.display().to_string());
        }
    }
}

#[test]
fn every_seed_keeps_its_targets_invariants() {
    for (target, name, data) in checks::seeds::seeds() {
        let (_, check) = checks::TARGETS
            .iter()
            .find(|(t, _)| *t == target)
            .expect("a seed for a known target");
        replay(*check, &data, &format!("seed {target}/{name}"));
    }
}

#[test]
fn any_short_input_is_valid_for_every_target() {
    // Inputs shorter than the configuration read as zeros.
    for (target, check) in checks::TARGETS {
        for len in 0..12 {
            replay(
                check,
                &vec![0xff; len],
                &format!("{target}: {len} bytes of 0xff"),
            );
            replay(check, &vec![0; len], &format!("{target}: {len} zero bytes"));
        }
    }
}

#[test]
fn the_chat_grammar_refuses_what_section_5_does_not_allow() {
    assert!(checks::chat::is_nick("guest1"));
    assert!(checks::chat::is_text("a\tb é"));
    for bad in ["", "a b", &"x".repeat(33), "é"] {
        assert!(!checks::chat::is_nick(bad), "{bad:?}");
    }
    // SPEC.md 1.3: for chat, C1 (NEL among them), U+2028/2029 and the
    // bidi controls are control characters too.
    for bad in [
        "", "a\rb", "\u{7f}", "a\u{85}b", "\u{9f}", "\u{2028}", "\u{202e}", "\u{2069}",
    ] {
        assert!(!checks::chat::is_text(bad), "{bad:?}");
    }
    for good in ["\u{a0}", "\u{2027}", "\u{202f}", "\u{206a}", "\u{61d}"] {
        assert!(checks::chat::is_text(good), "{good:?}");
    }
}

#[test]
#[ignore = "writes the seeds into tests/fuzz/corpus/; run by hand"]
fn write_seeds_into_the_corpus() {
    for (target, name, data) in checks::seeds::seeds() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        std::fs::write(dir.join(format!("seed-{name}")), data).expect("seed file");
    }
}
