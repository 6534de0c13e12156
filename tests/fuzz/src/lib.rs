//! Invariant checkers for fuzzing onepoll's sans-IO cores.
//!
//! One module per fuzz target; each has `check(data)`, which decodes the
//! fuzzer's bytes into a configuration, split points and a stream (see
//! [`input`]), drives the core the way the event loop does, and panics when
//! an invariant breaks. The invariants are the protocol's, not merely "no
//! panic": replies compared with a reference model written from the spec,
//! the same replies whatever the split of the input, and buffered state
//! within the configured limits.
//!
//! The same source serves two builds: this crate (`tests/fuzz`, the
//! libFuzzer targets) and the main package's `tests/fuzz_corpus.rs`, which
//! includes it with `#[path]` and replays the committed corpus on stable
//! without a fuzzer. So paths here are relative (`super::`), never
//! `crate::`, and only onepoll's public API is used.

pub mod chat;
pub mod cmd;
pub mod framing;
pub mod harness;
pub mod input;
pub mod seeds;
pub mod tne;
pub mod transform;
pub mod upload;

/// A target's checker: panics when an invariant breaks.
pub type Check = fn(&[u8]);

/// Every target: its name (the corpus directory) and its checker.
pub const TARGETS: [(&str, Check); 6] = [
    ("framing", framing::check),
    ("tne", tne::check),
    ("cmd", cmd::check),
    ("chat", chat::check),
    ("upload", upload::check),
    ("transform", transform::check),
];
