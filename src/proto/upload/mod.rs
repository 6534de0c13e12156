//! # upload — line-counted files, saved atomically
//!
//! *The onepoll upload protocol, version 1. Default TCP port 8010.*
//!
//! ## 1. Overview
//!
//! A client sends files, one after the other on one connection; each is a
//! line count followed by that many lines. The server saves each complete
//! file and answers it with one status byte. A file with zero lines ends
//! the session.
//!
//! ## 2. A file
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     N, line count (32 bits)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  line 1 ... LF  |  line 2 ... LF  |  ...  |  line N ... LF    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! N is an unsigned 32-bit big-endian integer (0 to 4,294,967,295). A line
//! is any bytes up to and including the next LF (0x0A). Nothing in a line is
//! checked or changed: NUL, CR (a CR before LF is kept), bytes above 0x7F
//! and invalid UTF-8 are saved as they are. The file saved is exactly the
//! bytes after the header up to and including the N-th LF.
//!
//! ## 3. Status bytes
//!
//! | byte | hex  | when |
//! |------|------|------|
//! | `A`  | `41` | after the N-th LF, once file k is saved (N > 0) |
//! | `Q`  | `51` | the header says N = 0; the server then closes the connection |
//! | `E`  | `45` | the file is refused (section 5); the server then closes the connection |
//!
//! Exactly one status answers each file. Bytes a client sends after a
//! `Q` or an `E` are ignored.
//!
//! ## 4. Naming and atomicity
//!
//! The k-th file of a connection (k = 1, 2, …) is saved as
//! `<upload-dir>/<k>.txt` (`--upload-layout flat`, the default; a later
//! connection overwrites the files of earlier ones, as the original
//! assignment asks), or as `<upload-dir>/<conn-dir>/<k>.txt`
//! (`--upload-layout per-connection`), where `<conn-dir>` is the UTC time
//! the connection's first file began and the connection's id as the server
//! logs it, e.g. `20261121T210501Z-c42`: names sort by time and concurrent
//! clients never overwrite each other.
//!
//! Saving is atomic. Lines are written, as they arrive, to a temporary
//! `.<k>.txt.<conn-id>.tmp` in the upload directory; after the N-th LF the
//! temporary is renamed over `<k>.txt` (in the connection's directory, for
//! per-connection) in one step, and only then is `A` sent. A reader of
//! `<k>.txt` sees the previous file or the new one whole, never a torn or
//! mixed one. A connection that closes, resets, shuts its write side or
//! times out mid-file has its temporary removed (and, per-connection, its
//! directory if it saved nothing): no trace, and no `<k>.txt` changes.
//!
//! The server never writes outside the upload directory, nor through a
//! link: a temporary and a per-connection directory are always created
//! new (never an existing name, whatever it is: on a clash another name is
//! tried, then the file is answered `E`), relative to the upload directory
//! opened once at start; the rename replaces a link named `<k>.txt`, never
//! follows it. How the server does it is `stores::upload`'s doc.
//!
//! ## 5. Limits and faults
//!
//! - A file longer than `--max-upload` bytes (LFs included; default 1 GiB)
//!   is answered `E` as soon as the bytes received pass the limit, before
//!   the rest arrives. A file of exactly `--max-upload` bytes is saved.
//! - A failure to create, write or rename the file (disk full, permission
//!   denied, a missing directory, `<k>.txt` being a directory, every name
//!   tried taken) is answered `E`.
//! - A connection saves at most `--max-files` files (default 100,000): the
//!   next one is answered `E` as soon as its line count arrives.
//!
//! Either way the temporary is removed, the connection closed after the
//! `E` is sent, the reason logged as a warning, and every other
//! connection is served as before.
//!
//! ## 6. Memory, blocking and durability
//!
//! The server holds no file in memory: the bytes of each read that belong
//! to the current file are passed to one `write` call, whatever the number
//! of lines in them, and the session keeps only a line counter and a byte
//! counter. A 1 GiB upload through the release server leaves its RSS within
//! a few hundred KiB of where it started (`scripts/upload-memory.py`).
//!
//! These writes, like the create and the rename, are ordinary blocking
//! file calls made on the event loop's one thread: while the kernel copies
//! a read's worth of bytes into its page cache, no other connection is
//! served. So one call of `on_input` begins at most [`FILES_PER_TURN`]
//! files; it then stops and asks the loop for another turn
//! ([`Session::wants_turn`]), and a client streaming thousands of tiny
//! files makes the others wait for one such slice at a time. What a
//! `write` per read costs (`benches/upload_cost.rs`), and how long another
//! client waits meanwhile (`scripts/upload-memory.py`,
//! `scripts/upload-fairness.py`), is measured in docs/PERFORMANCE.md
//! ("Upload: file writes are synchronous in the loop"): the worst waits
//! are not the writes but the rename that commits a freshly written large
//! file, and creates and renames while the kernel writes that much back,
//! which wait for the filesystem journal. A slow or nearly full device
//! makes every figure worse.
//!
//! Saves are not flushed to stable storage by default (`--upload-fsync`,
//! `Config::upload_fsync`, is off): `A` means the file is complete and
//! visible, not that it survives a power loss. The spec asks for atomicity
//! against dropped connections, not durability, and an fsync would stall
//! every connection for the length of a disk flush. With `--upload-fsync`
//! the file is flushed before the rename and the directory after it,
//! before `A`.
//!
//! If the server process dies mid-file, the temporary stays behind (it is
//! hidden, and `<k>.txt` still holds its previous content); the next start
//! removes every such temporary (regular files of that name only). If the
//! machine loses power, files acknowledged shortly before may be lost, and
//! on some filesystems be found empty, unless `--upload-fsync` was on.
//!
//! ## 7. Example
//!
//! A client saves a two-line file, then a file of one empty line, then
//! ends:
//!
//! ```text
//! C: 00 00 00 02                  N = 2
//! C: 68 69 0a                     "hi" LF
//! C: 62 79 65 0d 0a               "bye" CR LF (the CR is kept)
//! S: 41                           "A": 1.txt = 68 69 0a 62 79 65 0d 0a
//! C: 00 00 00 01 0a               N = 1, one empty line
//! S: 41                           "A": 2.txt = 0a
//! C: 00 00 00 00                  N = 0
//! S: 51                           "Q", and the server closes
//! ```

pub mod store;

use std::fmt;
use std::time::SystemTime;

pub use store::{Fault, FileKey, MemStore, NoStore, PendingFile, Store, StoreError};

use super::prefix::{split_at_most, WordReader};
use super::{CloseReason, Cx, Limit, Session};
use crate::config::{Config, Protocol};

/// Status: file saved.
pub const SAVED: u8 = b'A';
/// Status: zero-line file, the session ends.
pub const QUIT: u8 = b'Q';
/// Status: file refused, the session ends.
pub const ERROR: u8 = b'E';

/// Files one call of `on_input` may begin before it gives the others a
/// turn: each costs a create and a rename on the loop's thread, with the
/// occasional journal wait. How long a bystander's `ECHO` waits with 8,
/// and with 32, is measured by `scripts/upload-fairness.py` (figures in
/// docs/PERFORMANCE.md); the wake-up per 8 files costs nothing next to
/// the files.
pub const FILES_PER_TURN: u32 = 8;

/// State shared by every upload connection: where files go, how large
/// they may be and how many one connection may save.
#[derive(Debug)]
pub struct Shared {
    /// Where files are saved.
    pub store: Box<dyn Store>,
    /// `--max-upload`: the largest file, in bytes.
    pub max_upload: u64,
    /// `--max-files`: files one connection may save.
    pub max_files: u64,
}

impl Shared {
    /// Shared state saving through `store`, refusing files over
    /// `max_upload` bytes; no limit on the number of files.
    pub fn new(store: Box<dyn Store>, max_upload: u64) -> Shared {
        Shared {
            store,
            max_upload,
            max_files: u64::MAX,
        }
    }

    /// The limits `config` asks for, with a [`NoStore`]: the core does no
    /// I/O, so the server opens the upload directory at start and puts its
    /// store in this one's place.
    pub fn from_config(config: &Config) -> Shared {
        Shared {
            max_files: config.max_files,
            ..Shared::new(Box::new(NoStore), config.max_upload)
        }
    }
}

/// Why a file was answered `E`.
#[derive(Debug)]
pub enum Refusal {
    /// The file passed `--max-upload`.
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The connection already saved `--max-files` files.
    TooMany {
        /// The limit, in files.
        limit: u64,
    },
    /// The store failed.
    Store(StoreError),
}

impl Refusal {
    /// Why the connection closes after this refusal: a limit, or an error.
    pub fn close_reason(&self) -> CloseReason {
        match self {
            Refusal::TooLarge { .. } => CloseReason::Limit(Limit::MaxUpload),
            Refusal::TooMany { .. } => CloseReason::Limit(Limit::MaxFiles),
            Refusal::Store(_) => CloseReason::Error,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooLarge { limit } => write!(f, "larger than --max-upload ({limit} bytes)"),
            Refusal::TooMany { limit } => {
                write!(f, "one file more than --max-files ({limit} files)")
            }
            Refusal::Store(e) => e.fmt(f),
        }
    }
}

/// Where a connection is in its stream of files.
enum State {
    /// Reading a line count.
    Header(WordReader),
    /// Streaming the lines of a file into the store.
    Lines {
        file: Box<dyn PendingFile>,
        /// Lines still to come (at least 1).
        left: u32,
        /// Bytes of the file received so far.
        written: u64,
    },
    /// `Q` or `E` was sent; input is ignored until the connection closes.
    Done,
    /// Between files, this turn's [`FILES_PER_TURN`] spent: the next call
    /// reads the next line count.
    Paused,
}

const FRESH: State = State::Header(WordReader::new());

/// The upload state machine of one connection.
pub struct UploadSession {
    state: State,
    /// Files begun on this connection; the current or last file's k.
    files: u64,
    /// When the first file began (names the per-connection directory).
    started: Option<SystemTime>,
}

impl Default for UploadSession {
    fn default() -> Self {
        UploadSession::new()
    }
}

/// Bytes counted at a time when looking for LFs: small enough that the
/// block holding the last LF is rescanned cheaply, large enough that the
/// count runs vectorised.
const SCAN_BLOCK: usize = 4096;

/// The bytes at the start of `input` that belong to a file still missing
/// `lines` (≥ 1) lines: returns their length and the LFs among them, which
/// equal `lines` exactly when the file ends there.
fn take_lines(input: &[u8], lines: u32) -> (usize, u32) {
    let wanted = u64::from(lines);
    let mut seen: u64 = 0;
    let mut start = 0;
    for block in input.chunks(SCAN_BLOCK) {
        let in_block = block.iter().filter(|&&b| b == b'\n').count() as u64;
        if seen + in_block < wanted {
            seen += in_block;
            start += block.len();
            continue;
        }
        // The file's last LF is in this block.
        for (i, &b) in block.iter().enumerate() {
            if b == b'\n' {
                seen += 1;
                if seen == wanted {
                    return (start + i + 1, lines);
                }
            }
        }
    }
    // `seen < wanted <= u32::MAX` here.
    (input.len(), seen as u32)
}

impl UploadSession {
    /// A session waiting for its first line count.
    pub fn new() -> UploadSession {
        UploadSession {
            state: FRESH,
            files: 0,
            started: None,
        }
    }

    /// Acts on a complete line count.
    fn start_file(&mut self, lines: u32, cx: &mut Cx<'_>) {
        if lines == 0 {
            log::debug!(
                "upload conn {}: end after {} file(s)",
                cx.conn_id,
                self.files
            );
            self.state = State::Done;
            cx.out.put(&[QUIT]);
            cx.close_after_flush();
            return;
        }
        self.files += 1;
        let max_files = cx.shared.upload.max_files;
        if self.files > max_files {
            self.refuse(Refusal::TooMany { limit: max_files }, cx);
            return;
        }
        let key = FileKey {
            conn_id: cx.conn_id,
            conn_started: *self.started.get_or_insert(cx.now),
            k: self.files,
        };
        match cx.shared.upload.store.begin(key) {
            Ok(file) => {
                self.state = State::Lines {
                    file,
                    left: lines,
                    written: 0,
                }
            }
            Err(e) => self.refuse(Refusal::Store(e), cx),
        }
    }

    /// The current file is complete: saves it and answers `A` (or `E`).
    fn finish_file(&mut self, cx: &mut Cx<'_>) {
        if let State::Lines { file, written, .. } = std::mem::replace(&mut self.state, FRESH) {
            match file.commit() {
                Ok(()) => {
                    log::debug!(
                        "upload conn {}: saved file {} ({written} bytes)",
                        cx.conn_id,
                        self.files
                    );
                    cx.out.put(&[SAVED]);
                    cx.shared.counts.request(Protocol::Upload);
                    cx.shared.counts.upload_files_saved += 1;
                }
                Err(e) => self.refuse(Refusal::Store(e), cx),
            }
        }
    }

    /// Answers `E`, drops the current file and ends the session.
    fn refuse(&mut self, why: Refusal, cx: &mut Cx<'_>) {
        cx.shared.counts.upload_files_refused += 1;
        if let State::Lines { file, .. } = std::mem::replace(&mut self.state, State::Done) {
            file.abort();
        }
        log::warn!(
            "upload from {} (conn {}): file {} refused, {why}; answered E and closing",
            cx.peer,
            cx.conn_id,
            self.files
        );
        cx.out.put(&[ERROR]);
        cx.close_after_flush_for(why.close_reason());
    }

    /// The input ended (`how`): an unfinished file is dropped, leaving no
    /// trace.
    fn abandon(&mut self, how: &str, cx: &mut Cx<'_>) {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Lines { file, written, .. } => {
                file.abort();
                log::info!(
                    "upload from {} (conn {}): {how} {written} bytes into file {}; \
                     temporary removed",
                    cx.peer,
                    cx.conn_id,
                    self.files
                );
            }
            State::Header(reader) if !reader.is_empty() => log::info!(
                "upload from {} (conn {}): {how} in a line count",
                cx.peer,
                cx.conn_id
            ),
            _ => {}
        }
    }
}

impl super::Declared for UploadSession {
    const DECLARATION: super::Declaration = super::Declaration {
        name: "upload",
        default_port: 8010,
        served_by_default: true,
        transport: super::Transport::Tcp,
        server_full: b"",
        too_many_from_address: b"",
        flow: super::Flow::RequestReply,
        pacing: super::Pacing::Unpaced,
    };

    fn open(_shared: &mut super::Shared) -> UploadSession {
        UploadSession::new()
    }
}

impl Session for UploadSession {
    /// Consumes all of `input` but after [`FILES_PER_TURN`] files begun in
    /// this call: a partial line count is kept in the session and lines go
    /// straight to the store, so the connection carries upload input only
    /// when the core paused ([`Session::wants_turn`]) at a file boundary.
    fn on_input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> usize {
        let max_upload = cx.shared.upload.max_upload;
        let mut begun = 0;
        let mut rest = input;
        if let State::Paused = self.state {
            self.state = FRESH;
        }
        while !rest.is_empty() {
            match &mut self.state {
                State::Done => break,
                State::Paused => return input.len() - rest.len(),
                State::Header(reader) => {
                    if begun == FILES_PER_TURN && reader.is_empty() {
                        // This turn's slice is spent: the rest, from a file
                        // boundary, waits for the next turn.
                        self.state = State::Paused;
                        continue;
                    }
                    let (count, after) = reader.push(rest);
                    rest = after;
                    if let Some(lines) = count {
                        begun += 1;
                        self.start_file(lines, cx);
                    }
                }
                State::Lines {
                    file,
                    left,
                    written,
                } => {
                    let (len, lines) = take_lines(rest, *left);
                    let (chunk, after) = split_at_most(rest, len);
                    rest = after;
                    let size = *written + len as u64;
                    if size > max_upload {
                        self.refuse(Refusal::TooLarge { limit: max_upload }, cx);
                        continue;
                    }
                    if let Err(e) = file.write(chunk) {
                        self.refuse(Refusal::Store(e), cx);
                        continue;
                    }
                    *written = size;
                    *left -= lines;
                    if *left == 0 {
                        self.finish_file(cx);
                    }
                }
            }
        }
        input.len()
    }

    fn on_eof(&mut self, cx: &mut Cx<'_>) {
        self.abandon("input ended", cx);
    }

    fn on_close(&mut self, cx: &mut Cx<'_>, _reason: CloseReason) {
        self.abandon("connection closed", cx);
        if self.files > 0 {
            cx.shared.upload.store.end_connection(cx.conn_id);
        }
    }

    fn mid_message(&self) -> bool {
        match self.state {
            State::Header(reader) => !reader.is_empty(),
            State::Lines { .. } => true,
            State::Done | State::Paused => false,
        }
    }

    fn wants_turn(&self) -> bool {
        matches!(self.state, State::Paused)
    }

    /// A new turn: the next call reads the next line count.
    fn on_turn(&mut self, _cx: &mut Cx<'_>) {
        if let State::Paused = self.state {
            self.state = FRESH;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UploadLayout;
    use crate::proto::{Output, Shared as AllShared};
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    /// A file on the wire: the count of `lines`, then each line and an LF.
    fn file(lines: &[&[u8]]) -> Vec<u8> {
        let mut v = (lines.len() as u32).to_be_bytes().to_vec();
        for line in lines {
            v.extend_from_slice(line);
            v.push(b'\n');
        }
        v
    }

    const END: [u8; 4] = [0; 4];

    /// One connection's session, fed by a test.
    struct Conn {
        session: UploadSession,
        out: Output,
        shared: AllShared,
        closing: bool,
        paused: bool,
    }

    impl Conn {
        fn with_store(store: Box<dyn Store>, max_upload: u64) -> Conn {
            let mut shared = AllShared::new(&Config::default());
            shared.upload = Shared::new(store, max_upload);
            Conn {
                session: UploadSession::new(),
                out: Output::new(),
                shared,
                closing: false,
                paused: false,
            }
        }

        fn mem(store: &MemStore, max_upload: u64) -> Conn {
            Conn::with_store(Box::new(store.clone()), max_upload)
        }

        fn call<R>(&mut self, f: impl FnOnce(&mut UploadSession, &mut Cx<'_>) -> R) -> R {
            let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_295_101);
            let mut effects = Vec::new();
            let mut cx = Cx::new(&mut self.out, &mut self.shared, &mut effects, peer, 42, now);
            let r = f(&mut self.session, &mut cx);
            self.closing |= cx.close_requested();
            self.paused = self.session.wants_turn();
            r
        }

        /// Feeds `chunks` as the loop would until it closes: one call
        /// each, and the rest again while the core pauses on its budget.
        fn feed(&mut self, chunks: &[&[u8]]) -> &mut Conn {
            for chunk in chunks {
                let mut rest: &[u8] = chunk;
                loop {
                    if self.closing {
                        return self;
                    }
                    let n = self.call(|s, cx| s.on_input(rest, cx));
                    if n == rest.len() {
                        assert!(!self.paused, "paused with nothing left");
                        break;
                    }
                    assert!(self.paused, "upload leaves input only when it pauses");
                    rest = &rest[n..];
                }
            }
            self
        }

        fn replies(&mut self) -> Vec<u8> {
            self.out.take_all()
        }

        fn close(&mut self) {
            self.call(|s, cx| s.on_close(cx, crate::proto::CloseReason::PeerClosed));
        }
    }

    /// Runs `chunks` through a fresh session on a fresh flat store.
    fn run(chunks: &[&[u8]], max_upload: u64) -> (Vec<u8>, MemStore, bool) {
        run_on(MemStore::new(UploadLayout::Flat), chunks, max_upload)
    }

    /// Runs `chunks` through a fresh session on `store`.
    fn run_on(store: MemStore, chunks: &[&[u8]], max_upload: u64) -> (Vec<u8>, MemStore, bool) {
        let mut conn = Conn::mem(&store, max_upload);
        let replies = conn.feed(chunks).replies();
        let closing = conn.closing;
        conn.close();
        (replies, store, closing)
    }

    fn two_files_then_end() -> Vec<u8> {
        [
            file(&[b"hello", b"world"]),
            file(&[b"", b"x"]),
            END.to_vec(),
        ]
        .concat()
    }

    #[test]
    fn two_files_then_zero_lines_are_saved_as_1_and_2_and_answered_a_a_q() {
        let (replies, store, closing) = run(&[&two_files_then_end()], u64::MAX);
        assert_eq!(replies, b"AAQ");
        assert!(closing, "Q closes the connection");
        assert_eq!(store.saved("1.txt").unwrap(), b"hello\nworld\n");
        assert_eq!(store.saved("2.txt").unwrap(), b"\nx\n");
        assert_eq!(store.names().len(), 2);
        assert_eq!(store.open_temporaries(), 0);
    }

    #[test]
    fn header_and_lines_give_the_same_result_at_every_split() {
        let stream = two_files_then_end();
        for cut in 0..=stream.len() {
            let (replies, store, _) = run(&[&stream[..cut], &stream[cut..]], u64::MAX);
            assert_eq!(replies, b"AAQ", "cut at {cut}");
            assert_eq!(store.saved("1.txt").unwrap(), b"hello\nworld\n");
            assert_eq!(store.saved("2.txt").unwrap(), b"\nx\n");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let (replies, store, _) = run(&bytes, u64::MAX);
        assert_eq!(replies, b"AAQ");
        assert_eq!(store.saved("2.txt").unwrap(), b"\nx\n");
    }

    #[test]
    fn a_line_split_across_reads_is_counted_once_and_a_is_sent_after_the_last_lf() {
        let store = MemStore::new(UploadLayout::Flat);
        let mut conn = Conn::mem(&store, u64::MAX);
        conn.feed(&[&[0, 0, 0, 2], b"first li"]);
        conn.feed(&[b"ne\nsecond"]);
        assert_eq!(conn.replies(), b"", "one LF of two: no status yet");
        assert!(conn.session.mid_message());
        conn.feed(&[b" line"]);
        assert_eq!(conn.replies(), b"");
        conn.feed(&[b"\n"]);
        assert_eq!(conn.replies(), b"A");
        assert!(!conn.session.mid_message());
        assert_eq!(store.saved("1.txt").unwrap(), b"first line\nsecond line\n");
    }

    #[test]
    fn binary_bytes_and_cr_in_lines_are_saved_as_they_are() {
        let line: Vec<u8> = (0u8..=255).filter(|&b| b != b'\n').collect();
        let input = [
            file(&[&line, b"dos\r", b"\r\r", b"\xff\xfe\x00"]),
            END.to_vec(),
        ]
        .concat();
        let (replies, store, _) = run(&[&input], u64::MAX);
        assert_eq!(replies, b"AQ");
        let expected = [&line[..], b"\ndos\r\n\r\r\n\xff\xfe\x00\n"].concat();
        assert_eq!(store.saved("1.txt").unwrap(), expected);
    }

    #[test]
    fn zero_lines_first_answers_q_closes_and_saves_nothing() {
        let (replies, store, closing) = run(&[&END, b"ignored after Q"], u64::MAX);
        assert_eq!(replies, b"Q");
        assert!(closing);
        assert!(store.names().is_empty());
    }

    #[test]
    fn bytes_after_q_in_the_same_read_are_ignored() {
        let input = [END.to_vec(), file(&[b"late"])].concat();
        let (replies, store, _) = run(&[&input], u64::MAX);
        assert_eq!(replies, b"Q");
        assert!(store.names().is_empty());
    }

    #[test]
    fn a_read_is_written_in_one_call_whatever_its_number_of_lines() {
        let store = MemStore::new(UploadLayout::Flat);
        let lines: Vec<&[u8]> = vec![b"a"; 1000];
        let input = file(&lines);
        Conn::mem(&store, u64::MAX).feed(&[&input[..4], &input[4..1004], &input[1004..]]);
        assert_eq!(store.write_calls(), 2);
        assert_eq!(store.saved("1.txt").unwrap().len(), 2000);
    }

    #[test]
    fn a_file_of_exactly_max_upload_bytes_is_saved() {
        let input = file(&[b"abc", b"de"]);
        let (replies, store, _) = run(&[&input], 7);
        assert_eq!(replies, b"A");
        assert_eq!(store.saved("1.txt").unwrap(), b"abc\nde\n");
    }

    #[test]
    fn a_file_over_max_upload_is_answered_e_as_soon_as_the_limit_is_passed() {
        let store = MemStore::new(UploadLayout::Flat);
        let mut conn = Conn::mem(&store, 6);
        let input = file(&[b"abc", b"de"]);
        conn.feed(&[&input[..4], b"abc\nde"]);
        assert_eq!(conn.replies(), b"", "6 bytes: still within the limit");
        assert_eq!(store.open_temporaries(), 1);
        conn.feed(&[b"\n"]);
        assert_eq!(conn.replies(), b"E");
        assert!(conn.closing);
        assert_eq!(store.open_temporaries(), 0, "temporary removed");
        assert!(store.names().is_empty());
        assert!(!conn.session.mid_message());
    }

    #[test]
    fn the_limit_is_checked_before_the_last_line_arrives() {
        let store = MemStore::new(UploadLayout::Flat);
        let mut conn = Conn::mem(&store, 10);
        conn.feed(&[&[0, 0, 0, 3], b"0123456789ab"]);
        assert_eq!(conn.replies(), b"E", "no LF yet, but past the limit");
        assert_eq!(store.open_temporaries(), 0);
    }

    #[test]
    fn earlier_files_stay_saved_when_a_later_one_is_refused() {
        let input = [file(&[b"ok"]), file(&[b"much too long"]), END.to_vec()].concat();
        let (replies, store, closing) = run(&[&input], 5);
        assert_eq!(replies, b"AE");
        assert!(closing);
        assert_eq!(store.names(), vec![std::path::PathBuf::from("1.txt")]);
    }

    #[test]
    fn a_write_failure_is_answered_e_and_leaves_nothing() {
        let store = MemStore::new(UploadLayout::Flat);
        store.inject(Fault::WriteAfter(4, libc::ENOSPC));
        let mut conn = Conn::mem(&store, u64::MAX);
        conn.feed(&[&file(&[b"abc"]), &file(&[b"abcdef"]), &END]);
        assert_eq!(conn.replies(), b"AE");
        assert!(conn.closing);
        assert_eq!(store.open_temporaries(), 0);
        assert_eq!(store.names().len(), 1);
    }

    #[test]
    fn failures_to_create_or_rename_are_answered_e() {
        for fault in [
            Fault::Begin(libc::EACCES),
            Fault::Commit(libc::EISDIR),
            Fault::WriteAfter(0, libc::EIO),
        ] {
            let store = MemStore::new(UploadLayout::Flat);
            store.inject(fault);
            let (replies, _, closing) = run_on(store.clone(), &[&file(&[b"x"]), &END], u64::MAX);
            assert_eq!(replies, b"E", "{fault:?}");
            assert!(closing);
            assert_eq!(store.open_temporaries(), 0);
            assert!(store.names().is_empty());
        }
    }

    #[test]
    fn close_or_eof_mid_file_leaves_no_temporary_and_no_saved_file() {
        for eof in [false, true] {
            let store = MemStore::new(UploadLayout::Flat);
            let mut conn = Conn::mem(&store, u64::MAX);
            conn.feed(&[&file(&[b"a", b"b"])[..7]]);
            assert_eq!(store.open_temporaries(), 1);
            if eof {
                conn.call(|s, cx| s.on_eof(cx));
                assert_eq!(store.open_temporaries(), 0);
            }
            conn.close();
            assert_eq!(conn.replies(), b"");
            assert_eq!(store.open_temporaries(), 0);
            assert!(store.names().is_empty());
        }
    }

    #[test]
    fn a_dropped_session_removes_its_temporary_too() {
        let store = MemStore::new(UploadLayout::Flat);
        let mut conn = Conn::mem(&store, u64::MAX);
        conn.feed(&[&file(&[b"a"])[..5]]);
        drop(conn);
        assert_eq!(store.open_temporaries(), 0);
    }

    #[test]
    fn a_later_connection_overwrites_the_files_of_an_earlier_one() {
        let store = MemStore::new(UploadLayout::Flat);
        Conn::mem(&store, u64::MAX).feed(&[&file(&[b"first"]), &END]);
        Conn::mem(&store, u64::MAX).feed(&[&file(&[b"second"]), &END]);
        assert_eq!(store.saved("1.txt").unwrap(), b"second\n");
    }

    #[test]
    fn per_connection_layout_saves_under_the_connection_directory() {
        let store = MemStore::new(UploadLayout::PerConnection);
        Conn::mem(&store, u64::MAX).feed(&[&file(&[b"a"]), &file(&[b"b"]), &END]);
        assert_eq!(
            store.saved("20261121T210501Z-c42/2.txt").unwrap(),
            b"b\n".to_vec()
        );
        assert_eq!(store.names().len(), 2);
    }

    #[test]
    fn mid_message_is_true_from_the_first_count_byte_to_the_last_lf() {
        let store = MemStore::new(UploadLayout::Flat);
        let mut conn = Conn::mem(&store, u64::MAX);
        assert!(!conn.session.mid_message());
        conn.feed(&[&[0]]);
        assert!(conn.session.mid_message());
        conn.feed(&[&[0, 0, 1], b"x"]);
        assert!(conn.session.mid_message());
        conn.feed(&[b"\n"]);
        assert!(!conn.session.mid_message());
    }

    #[test]
    fn one_call_begins_at_most_files_per_turn_files_and_pauses_at_a_boundary() {
        let store = MemStore::new(UploadLayout::Flat);
        let mut conn = Conn::mem(&store, u64::MAX);
        let n = FILES_PER_TURN as usize * 2 + 3;
        let input: Vec<u8> = (0..n).flat_map(|_| file(&[b"x"])).collect();
        let used = conn.call(|s, cx| s.on_input(&input, cx));
        assert!(conn.paused);
        assert_eq!(
            used,
            FILES_PER_TURN as usize * 6,
            "stops at a file boundary"
        );
        assert_eq!(store.names().len(), FILES_PER_TURN as usize);
        assert!(!conn.session.mid_message());
        conn.feed(&[&input[used..]]);
        assert_eq!(conn.replies(), vec![SAVED; n]);
        assert_eq!(store.names().len(), n);
    }

    #[test]
    fn the_file_after_max_files_is_answered_e_and_the_connection_closed() {
        let store = MemStore::new(UploadLayout::Flat);
        let mut conn = Conn::mem(&store, u64::MAX);
        conn.shared.upload.max_files = 2;
        conn.feed(&[&file(&[b"a"]), &file(&[b"b"]), &file(&[b"c"]), &END]);
        assert_eq!(conn.replies(), b"AAE");
        assert!(conn.closing);
        assert_eq!(store.names().len(), 2);
        assert_eq!(store.open_temporaries(), 0);
    }

    #[test]
    fn take_lines_finds_the_nth_lf_across_scan_blocks() {
        let mut input = vec![b'x'; SCAN_BLOCK * 3];
        for i in [5, SCAN_BLOCK - 1, SCAN_BLOCK, 2 * SCAN_BLOCK + 7] {
            input[i] = b'\n';
        }
        assert_eq!(take_lines(&input, 1), (6, 1));
        assert_eq!(take_lines(&input, 2), (SCAN_BLOCK, 2));
        assert_eq!(take_lines(&input, 3), (SCAN_BLOCK + 1, 3));
        assert_eq!(take_lines(&input, 4), (2 * SCAN_BLOCK + 8, 4));
        assert_eq!(take_lines(&input, 5), (input.len(), 4));
        assert_eq!(take_lines(&input, u32::MAX), (input.len(), 4));
        assert_eq!(take_lines(b"", 1), (0, 0));
    }

    mod splits {
        use super::*;
        use proptest::prelude::*;

        /// Lines of any bytes but LF.
        fn arb_file() -> impl Strategy<Value = Vec<Vec<u8>>> {
            proptest::collection::vec(
                proptest::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..12),
                1..6,
            )
        }

        /// Splits `stream` at `cuts`.
        fn chunks<'a>(stream: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            points.sort_unstable();
            let mut out = Vec::new();
            let mut start = 0;
            for p in points {
                out.push(&stream[start..p]);
                start = p;
            }
            out.push(&stream[start..]);
            out
        }

        /// What a run leaves: statuses, saved files (name, content), closing.
        type Outcome = (Vec<u8>, Vec<(std::path::PathBuf, Vec<u8>)>, bool);

        fn outcome(chunks: &[&[u8]], max_upload: u64) -> Outcome {
            let (replies, store, closing) = run(chunks, max_upload);
            assert_eq!(store.open_temporaries(), 0);
            let files = store
                .names()
                .into_iter()
                .map(|n| {
                    let data = store.saved(&n.to_string_lossy()).unwrap_or_default();
                    (n, data)
                })
                .collect();
            (replies, files, closing)
        }

        proptest! {
            /// Any split of any stream of files gives the same statuses and
            /// the same saved files as the stream fed whole; and fed whole
            /// within the limit, each file is saved as sent.
            #[test]
            fn any_split_gives_the_same_statuses_and_files(
                files in proptest::collection::vec(arb_file(), 0..5),
                end in any::<bool>(),
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
                max_upload in prop_oneof![Just(u64::MAX), 0u64..40],
            ) {
                let mut stream: Vec<u8> = files
                    .iter()
                    .flat_map(|f| file(&f.iter().map(Vec::as_slice).collect::<Vec<_>>()))
                    .collect();
                if end {
                    stream.extend_from_slice(&END);
                }
                let whole = outcome(&[&stream], max_upload);
                prop_assert_eq!(&outcome(&chunks(&stream, &cuts), max_upload), &whole);
                let bytes: Vec<&[u8]> = stream.chunks(1).collect();
                prop_assert_eq!(&outcome(&bytes, max_upload), &whole);
                if max_upload == u64::MAX {
                    let expected = "A".repeat(files.len()) + if end { "Q" } else { "" };
                    prop_assert_eq!(&whole.0, expected.as_bytes());
                    for (k, f) in files.iter().enumerate() {
                        let sent: Vec<u8> = f.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect();
                        prop_assert_eq!(&whole.1[k].1, &sent);
                    }
                }
            }
        }
    }
}
