//! Attacks on the upload directory (issue 15), over real sockets against
//! the real `onepoll` binary: whoever else can write to the upload
//! directory plants links, fifos and directories on the names the server
//! will use. Each test asserts that a file outside the upload directory is
//! byte for byte unchanged and that nothing was created outside it; and
//! the fair-turns test (issue 16) that a client streaming thousands of
//! tiny files keeps a bystander's round trips bounded.
//!
//! Connection ids are predictable (a fresh server numbers its connections
//! 1, 2, …), which is what an attacker relies on; the tests plant names
//! for the first ids.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::{read_to_end, send, Server, TempDir, PATIENCE};

/// A file on the wire: the line count, then `body`, whose LFs it counts.
fn file(body: &[u8]) -> Vec<u8> {
    let lines = body.iter().filter(|&&b| b == b'\n').count() as u32;
    [&lines.to_be_bytes()[..], body].concat()
}

const END: [u8; 4] = [0; 4];

/// What an attacker wants to overwrite.
const PRECIOUS: &[u8] = b"precious: must never change\n";

/// A scratch tree: `uploads/` (the upload directory) and, beside it,
/// `outside/` holding `target`, the file the attacks point at.
struct Scene {
    root: TempDir,
}

impl Scene {
    fn new(label: &str) -> Scene {
        let root = TempDir::new(label);
        fs::create_dir(root.join("uploads")).unwrap();
        fs::create_dir(root.join("outside")).unwrap();
        fs::write(root.join("outside/target"), PRECIOUS).unwrap();
        Scene { root }
    }

    fn uploads(&self) -> PathBuf {
        self.root.join("uploads")
    }

    fn outside(&self) -> PathBuf {
        self.root.join("outside")
    }

    fn target(&self) -> PathBuf {
        self.root.join("outside/target")
    }

    /// Everything outside the upload directory: path to content (links
    /// as `-> target`, directories as `/`).
    fn outside_state(&self) -> BTreeMap<String, Vec<u8>> {
        fn walk(root: &Path, dir: &Path, skip: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            for entry in fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path == skip {
                    continue;
                }
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                let kind = entry.file_type().unwrap();
                if kind.is_symlink() {
                    let to = fs::read_link(&path).unwrap();
                    out.insert(rel, format!("-> {}", to.display()).into_bytes());
                } else if kind.is_dir() {
                    out.insert(format!("{rel}/"), Vec::new());
                    walk(root, &path, skip, out);
                } else if kind.is_file() {
                    out.insert(rel, fs::read(&path).unwrap());
                } else {
                    out.insert(rel, b"(special)".to_vec());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(
            self.root.path(),
            self.root.path(),
            &self.uploads(),
            &mut out,
        );
        out
    }

    /// Starts the server on this scene's upload directory.
    fn server(&self, extra: &[&str]) -> Server {
        let dir = self.uploads();
        let mut args = vec!["-d", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push("upload=0");
        Server::start(&args)
    }
}

/// Names (not following links) in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

fn is_regular(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

/// The temporary names the server may try for file `k` of connection
/// `id`, every attempt (see `proto::upload::store::temp_name`).
fn temp_names(k: u64, id: u64) -> Vec<String> {
    let mut v = vec![format!(".{k}.txt.{id}.tmp")];
    v.extend((1..8).map(|n| format!(".{k}.txt.{id}.{n}.tmp")));
    v
}

/// Uploads `files` then the end message on one connection; returns the
/// statuses.
fn upload(server: &Server, files: &[&[u8]]) -> Vec<u8> {
    let mut c = server.connect("upload");
    let mut wire: Vec<u8> = files.iter().flat_map(|f| file(f)).collect();
    wire.extend_from_slice(&END);
    send(&mut c, &wire);
    read_to_end(&mut c)
}

/// Waits (bounded) until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn symlinked_temporaries_are_never_followed_nor_removed() {
    let scene = Scene::new("atk-temp");
    let up = scene.uploads();
    // Every name the first connections' first files could use, linked to
    // the target (only the first attempt of each is needed to break the
    // old server; all are planted to force an `E` too).
    for id in 1..=2 {
        for k in 1..=2 {
            for name in temp_names(k, id) {
                symlink(scene.target(), up.join(name)).unwrap();
            }
        }
    }
    // Connection 3's first attempt only: it saves under another name.
    symlink(scene.target(), up.join(".1.txt.3.tmp")).unwrap();
    let planted = names(&up);
    let before = scene.outside_state();
    let server = scene.server(&[]);

    // Connections 1 and 2: every name taken, answered E.
    assert_eq!(upload(&server, &[b"evil\n"]), b"E");
    assert_eq!(upload(&server, &[b"evil\n"]), b"E");
    server.wait_for_log("File exists");
    // Connection 3: saved through a fresh name.
    assert_eq!(upload(&server, &[b"mine\n"]), b"AQ");
    assert!(is_regular(&up.join("1.txt")), "1.txt is a plain file");
    assert_eq!(fs::read(up.join("1.txt")).unwrap(), b"mine\n");

    assert_eq!(fs::read(scene.target()).unwrap(), PRECIOUS);
    assert_eq!(scene.outside_state(), before);
    let mut want = planted.clone();
    want.push("1.txt".into());
    want.sort();
    assert_eq!(names(&up), want, "every planted link is still there");
}

#[test]
fn a_symlinked_k_txt_is_replaced_never_written_through() {
    let scene = Scene::new("atk-ktxt");
    let up = scene.uploads();
    symlink(scene.target(), up.join("1.txt")).unwrap();
    symlink(scene.outside().join("new"), up.join("2.txt")).unwrap();
    let before = scene.outside_state();
    let server = scene.server(&[]);
    assert_eq!(upload(&server, &[b"one\n", b"two\n"]), b"AAQ");
    for (name, body) in [("1.txt", &b"one\n"[..]), ("2.txt", b"two\n")] {
        assert!(is_regular(&up.join(name)), "{name}: the link was replaced");
        assert_eq!(fs::read(up.join(name)).unwrap(), body);
    }
    assert_eq!(fs::read(scene.target()).unwrap(), PRECIOUS);
    assert_eq!(scene.outside_state(), before, "nothing created outside");
}

#[test]
fn a_symlinked_per_connection_directory_is_never_used() {
    let scene = Scene::new("atk-conndir");
    let up = scene.uploads();
    // The name connection 1 will want, for every second around now.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut planted = 0;
    for t in now.saturating_sub(2)..now + 30 {
        let stamp = utc_stamp(t);
        symlink(scene.outside(), up.join(format!("{stamp}-c1"))).unwrap();
        planted += 1;
    }
    let before = scene.outside_state();
    let server = scene.server(&["--upload-layout", "per-connection"]);
    assert_eq!(upload(&server, &[b"one\n", b"two\n"]), b"AAQ");
    let made: Vec<String> = names(&up)
        .into_iter()
        .filter(|n| !is_symlink(&up.join(n)))
        .collect();
    assert_eq!(made.len(), 1, "one new directory: {made:?}");
    assert!(made[0].ends_with("-c1.1"), "another name: {made:?}");
    assert_eq!(names(&up.join(&made[0])), ["1.txt", "2.txt"]);
    assert_eq!(
        names(&up).len(),
        planted + 1,
        "the links are all still there"
    );
    assert_eq!(fs::read(scene.target()).unwrap(), PRECIOUS);
    assert_eq!(scene.outside_state(), before, "nothing created outside");
}

/// `yyyymmddThhmmssZ` of `secs` since the epoch, in UTC (as the server
/// names per-connection directories).
fn utc_stamp(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn a_fifo_on_a_temporary_name_does_not_hang_the_loop() {
    let scene = Scene::new("atk-fifo");
    let up = scene.uploads();
    let fifo = up.join(".1.txt.1.tmp");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let before = scene.outside_state();
    let server = scene.server(&[]);
    // Opening the fifo for writing would block the one loop thread until
    // a reader came; the upload is answered at once instead.
    let mut c = server.connect("upload");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    send(&mut c, &[file(b"mine\n"), END.to_vec()].concat());
    assert_eq!(read_to_end(&mut c), b"AQ");
    // And the loop still serves a second client.
    assert_eq!(upload(&server, &[b"again\n"]), b"AQ");
    assert!(fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo_like());
    assert_eq!(fs::read(up.join("1.txt")).unwrap(), b"again\n");
    assert_eq!(scene.outside_state(), before);
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

#[test]
fn a_dropped_upload_leaves_the_outside_and_the_planted_links_alone() {
    let scene = Scene::new("atk-drop");
    let up = scene.uploads();
    fs::write(up.join("1.txt"), b"earlier\n").unwrap();
    symlink(scene.target(), up.join(".1.txt.1.tmp")).unwrap();
    let planted = names(&up);
    let before = scene.outside_state();
    let server = scene.server(&[]);
    let mut c = server.connect("upload");
    send(&mut c, &[&3u32.to_be_bytes()[..], b"evil\nev"].concat());
    eventually("the server's own temporary appears", || {
        up.join(".1.txt.1.1.tmp").exists()
    });
    drop(c);
    server.wait_for_log("input ended");
    eventually("its temporary goes", || !up.join(".1.txt.1.1.tmp").exists());
    assert_eq!(names(&up), planted, "the planted link stays; nothing else");
    assert_eq!(fs::read(up.join("1.txt")).unwrap(), b"earlier\n");
    assert_eq!(fs::read(scene.target()).unwrap(), PRECIOUS);
    assert_eq!(scene.outside_state(), before);
}

#[test]
fn the_file_after_max_files_is_answered_e_closed_and_logged() {
    let scene = Scene::new("atk-maxfiles");
    let server = scene.server(&["--max-files", "3"]);
    let files: Vec<&[u8]> = vec![b"a\n", b"b\n", b"c\n", b"d\n", b"e\n"];
    assert_eq!(upload(&server, &files), b"AAAE");
    server.wait_for_log("--max-files (3 files)");
    let line = server
        .log()
        .lines()
        .find(|l| l.contains("--max-files"))
        .unwrap()
        .to_string();
    assert!(line.contains("WARN") && line.contains("conn 1"), "{line}");
    assert_eq!(names(&scene.uploads()), ["1.txt", "2.txt", "3.txt"]);
    // The limit is per connection: the next one saves again.
    assert_eq!(upload(&server, &[b"x\n"]), b"AQ");
}

/// Issue 16: one connection streaming thousands of one-line files makes a
/// bystander's `ECHO` wait at most one bounded slice of file creates, not
/// the whole stream. The bounds asserted are generous (this box is
/// shared); the figures are printed for the record.
#[test]
fn a_stream_of_tiny_files_keeps_a_bystanders_echo_bounded() {
    const FILES: usize = 40_000;
    let scene = Scene::new("atk-fair");
    let dir = scene.uploads();
    let server = Server::start(&["-d", dir.to_str().unwrap(), "upload=0", "cmd=0"]);
    let mut bystander = server.connect("cmd");
    let mut lines = BufReader::new(bystander.try_clone().unwrap());
    bystander.write_all(b"HELO bystander\n").unwrap();
    let mut greeting = String::new();
    lines.read_line(&mut greeting).unwrap();
    let mut echo = |rtts: &mut Vec<Duration>| {
        let t = Instant::now();
        bystander.write_all(b"ECHO x\n").unwrap();
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        assert_eq!(line, "x\n");
        rtts.push(t.elapsed());
    };
    let mut warm = Vec::new();
    echo(&mut warm);

    let addr = server.addr("upload");
    let attacker = thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(PATIENCE * 6)).unwrap();
        let one = file(b"x\n");
        let mut wire = Vec::with_capacity(one.len() * FILES + 4);
        for _ in 0..FILES {
            wire.extend_from_slice(&one);
        }
        wire.extend_from_slice(&END);
        let mut reader = c.try_clone().unwrap();
        let sender = thread::spawn(move || c.write_all(&wire).unwrap());
        let got = read_to_end(&mut reader);
        sender.join().unwrap();
        got
    });
    let mut rtts = Vec::new();
    while !attacker.is_finished() {
        echo(&mut rtts);
        thread::sleep(Duration::from_millis(10));
    }
    let statuses = attacker.join().unwrap();
    assert_eq!(statuses.len(), FILES + 1);
    assert!(statuses[..FILES].iter().all(|&b| b == b'A'));
    rtts.sort();
    let pick = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize];
    let max = *rtts.last().unwrap();
    eprintln!(
        "bystander ECHO during {FILES} files: {} samples, p50 {:?} p99 {:?} max {:?}",
        rtts.len(),
        pick(0.5),
        pick(0.99),
        max
    );
    // Without the per-turn budget the bystander is answered about twice
    // during the whole stream (once before, once after: 5.4 s here). With
    // it, every 10 ms. The bounds are generous: a single file call can
    // stall for long on a disk other builds keep busy, so the tail is
    // reported above, not asserted tightly.
    assert!(rtts.len() >= 20, "answered only {} times", rtts.len());
    assert!(
        pick(0.5) < Duration::from_millis(100),
        "p50 {:?}",
        pick(0.5)
    );
    assert!(pick(0.99) < Duration::from_secs(1), "p99 {:?}", pick(0.99));
}

#[test]
fn a_linked_upload_directory_is_resolved_once_at_start_and_logged() {
    let scene = Scene::new("atk-dirlink");
    let real = scene.uploads();
    let link = scene.root.join("link");
    symlink(&real, &link).unwrap();
    let server = Server::start(&["-d", link.to_str().unwrap(), "upload=0"]);
    let real_path = fs::canonicalize(&real).unwrap();
    server.wait_for_log(&format!("upload directory {}", real_path.display()));
    assert_eq!(upload(&server, &[b"one\n"]), b"AQ");
    // Pointing the link elsewhere while the server runs moves nothing.
    fs::remove_file(&link).unwrap();
    symlink(scene.outside(), &link).unwrap();
    let before = scene.outside_state();
    assert_eq!(upload(&server, &[b"two\n"]), b"AQ");
    assert_eq!(fs::read(real.join("1.txt")).unwrap(), b"two\n");
    assert_eq!(scene.outside_state(), before);
    assert_eq!(fs::read(scene.target()).unwrap(), PRECIOUS);
}

mod planted {
    //! The directory populated with random names of every kind on the
    //! names the server will use, then uploads over sockets: whatever was
    //! planted, nothing outside changes, nothing planted changes but a
    //! `<k>.txt` a later file replaced, every `A` is a regular file with
    //! what was sent, and no temporary of the server's is left.
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Copy, Debug)]
    enum Kind {
        File,
        LinkOut,
        Dangling,
        Fifo,
        Dir,
    }

    fn arb_kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            Just(Kind::File),
            Just(Kind::LinkOut),
            Just(Kind::Dangling),
            Just(Kind::Fifo),
            Just(Kind::Dir),
        ]
    }

    /// Names connections 1–2 may use for files 1–2 (flat layout).
    fn arb_name() -> impl Strategy<Value = String> {
        prop_oneof![
            ((1u64..=2), (1u64..=2), 0usize..8)
                .prop_map(|(id, k, n)| temp_names(k, id).swap_remove(n)),
            (1u64..=2).prop_map(|k| format!("{k}.txt")),
        ]
    }

    fn state(path: &Path) -> Option<String> {
        let meta = fs::symlink_metadata(path).ok()?;
        let kind = meta.file_type();
        Some(if kind.is_symlink() {
            format!("link {}", fs::read_link(path).unwrap().display())
        } else if kind.is_dir() {
            "dir".into()
        } else if kind.is_file() {
            format!("file {:?}", fs::read(path).unwrap())
        } else {
            "special".into()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn whatever_is_planted_nothing_outside_or_planted_changes(
            plants in proptest::collection::btree_map(arb_name(), arb_kind(), 1..12),
        ) {
            let scene = Scene::new("atk-planted");
            let up = scene.uploads();
            // Planted once the server runs (before, the start-up sweep
            // would remove the regular files of its temporary pattern).
            let server = scene.server(&[]);
            for (name, kind) in &plants {
                let path = up.join(name);
                match kind {
                    Kind::File => fs::write(&path, b"theirs").unwrap(),
                    Kind::LinkOut => symlink(scene.target(), &path).unwrap(),
                    Kind::Dangling => symlink(scene.outside().join("new"), &path).unwrap(),
                    Kind::Fifo => {
                        let ok = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
                        assert!(ok.success());
                    }
                    Kind::Dir => fs::create_dir(&path).unwrap(),
                }
            }
            let before = scene.outside_state();
            let planted: Vec<(String, Option<String>)> =
                plants.keys().map(|n| (n.clone(), state(&up.join(n)))).collect();
            let mut saved: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            for id in 1..=2u64 {
                let bodies: Vec<Vec<u8>> =
                    (1..=2).map(|k| format!("conn {id} file {k}\n").into_bytes()).collect();
                let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
                let statuses = upload(&server, &refs);
                // Each file is saved (A) or refused (E, which ends the
                // connection); the end message is answered Q.
                let saved_here = statuses.iter().take_while(|&&b| b == b'A').count();
                let rest = &statuses[saved_here..];
                prop_assert!(rest == b"Q" || rest == b"E", "{:?}", statuses);
                for (k, body) in bodies.iter().enumerate().take(saved_here) {
                    saved.insert(format!("{}.txt", k + 1), body.clone());
                }
            }
            prop_assert_eq!(fs::read(scene.target()).unwrap(), PRECIOUS);
            prop_assert_eq!(scene.outside_state(), before);
            for (name, body) in &saved {
                prop_assert!(is_regular(&up.join(name)), "{}", name);
                prop_assert_eq!(&fs::read(up.join(name)).unwrap(), body);
            }
            for (name, was) in &planted {
                if !saved.contains_key(name) {
                    prop_assert_eq!(&state(&up.join(name)), was, "{}", name);
                }
            }
            for name in names(&up) {
                if name.ends_with(".tmp") {
                    prop_assert!(plants.contains_key(&name), "left {}", name);
                }
            }
        }
    }
}
