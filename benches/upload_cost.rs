//! What the upload core costs the event loop: feeds one file (1 GiB by
//! default, or the byte count given) through an `UploadSession` saving with
//! the real `DirStore` into a scratch directory under the system temporary
//! directory, in 64 KiB reads of 100-byte lines, and prints the throughput,
//! the time each `on_input` call (one `write`) held the thread, and the
//! process RSS before and during the upload.
//!
//! Run: `cargo bench --bench upload_cost -- [BYTES]`
use onepoll::config::{Config, UploadLayout};
use onepoll::proto::upload::{Shared as US, UploadSession};
use onepoll::proto::{Cx, Output, Session, Shared};
use onepoll::stores::upload::DirStore;
use std::time::{Instant, SystemTime};
fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}
fn main() {
    let dir = std::env::temp_dir().join("onepoll-upload-cost");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // `cargo bench` passes `--bench` (and filters run with `-- ARGS`):
    // the byte count is the first argument that is a number.
    let total: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(|a| a.parse().expect("BYTES: a whole number"))
        .unwrap_or(1 << 30);
    let chunk_len = 64 * 1024;
    let mut chunk = vec![b'x'; chunk_len];
    for i in (99..chunk_len).step_by(100) {
        chunk[i] = b'\n';
    }
    let lines_per_chunk = chunk.iter().filter(|&&b| b == b'\n').count() as u64;
    let chunks = total / chunk_len as u64;
    let lines = (lines_per_chunk * chunks) as u32;
    let mut shared = Shared::new(&Config::default());
    shared.upload = US::new(
        Box::new(DirStore::open(&dir, UploadLayout::Flat, false).unwrap()),
        u64::MAX,
    );
    let mut out = Output::new();
    let mut s = UploadSession::new();
    let peer = "127.0.0.1:1".parse().unwrap();
    let rss0 = rss_kib();
    let mut times = Vec::with_capacity(chunks as usize);
    let t0 = Instant::now();
    let mut effects = Vec::new();
    {
        let mut cx = Cx::new(
            &mut out,
            &mut shared,
            &mut effects,
            peer,
            1,
            SystemTime::now(),
        );
        s.on_input(&lines.to_be_bytes(), &mut cx);
    }
    let mut rss_max = rss0;
    for i in 0..chunks {
        let t = Instant::now();
        let mut effects = Vec::new();
        let mut cx = Cx::new(
            &mut out,
            &mut shared,
            &mut effects,
            peer,
            1,
            SystemTime::now(),
        );
        s.on_input(&chunk, &mut cx);
        times.push(t.elapsed().as_nanos() as u64);
        if i % 1024 == 0 {
            rss_max = rss_max.max(rss_kib());
        }
    }
    let el = t0.elapsed();
    assert_eq!(out.take_all(), b"A");
    times.sort_unstable();
    let p = |q: f64| times[((times.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    println!("{} MiB in {:.2?}: {:.0} MiB/s; per 64 KiB on_input: p50 {:.1} us p99 {:.1} us p99.9 {:.1} us max {:.1} us; RSS {} KiB -> max {} KiB",
        total >> 20, el, (total >> 20) as f64 / el.as_secs_f64(), p(0.5), p(0.99), p(0.999), p(1.0), rss0, rss_max);
    std::fs::remove_dir_all(&dir).unwrap();
}
