//! `onepoll-client upload`: the client side of the upload protocol
//! ([`crate::proto::upload`]). Sends files over one connection and reports
//! each status, or runs the interactive mode of the original assignment
//! (type a line count, then the lines).
//!
//! Blocking I/O on any [`Link`] (a `TcpStream` in `onepoll-client`; an
//! in-memory server in the tests). A file is read twice: once to count its
//! lines, since the count goes first, and once to send it, in 64 KiB
//! pieces, so memory does not grow with the file. Stdin (`-`), which cannot
//! be read twice, is first copied to an unlinked temporary file. Between
//! pieces the client looks, without blocking, for an early answer: a file
//! over the server's `--max-upload` is answered `E` before it has all been
//! sent, and the client then stops sending it.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use super::{ClientError, ClientOptions};
use crate::config::Protocol;
use crate::proto::upload::{ERROR, QUIT, SAVED};

/// The usage of the subcommand.
pub const USAGE: &str = "upload [FILE...]
  Sends every FILE over one connection (- reads one from stdin), prints
  the server's status for each, then ends the session (a zero line
  count). A last line without LF is sent with one. No FILE: asks on
  stdin for a line count, then that many lines, until the count is 0.";

/// Bytes read from a file and written to the socket at a time.
const CHUNK: usize = 64 * 1024;

/// A connection an upload runs over: a byte stream that can also tell,
/// without blocking, whether the server has answered already.
pub trait Link: Read + Write {
    /// Whether a status byte (or the end of the stream) is waiting to be
    /// read. Never blocks.
    fn answer_waiting(&mut self) -> io::Result<bool>;
}

impl Link for TcpStream {
    fn answer_waiting(&mut self) -> io::Result<bool> {
        self.set_nonblocking(true)?;
        let peeked = self.peek(&mut [0]);
        self.set_nonblocking(false)?;
        match peeked {
            // A byte, or the server's FIN.
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl<L: Link + ?Sized> Link for &mut L {
    fn answer_waiting(&mut self) -> io::Result<bool> {
        (**self).answer_waiting()
    }
}

/// The server's answer to one file or to the end message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `A`: the file was saved.
    Saved,
    /// `Q`: the session ended (answer to a zero line count).
    Ended,
    /// `E`: the file was refused; the server closes the connection.
    Refused,
}

impl Status {
    /// The status a byte stands for.
    pub fn from_byte(byte: u8) -> Option<Status> {
        match byte {
            SAVED => Some(Status::Saved),
            QUIT => Some(Status::Ended),
            ERROR => Some(Status::Refused),
            _ => None,
        }
    }

    /// The byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            Status::Saved => SAVED,
            Status::Ended => QUIT,
            Status::Refused => ERROR,
        }
    }
}

/// What went wrong on the client's side of an upload.
#[derive(Debug)]
pub enum UploadError {
    /// The connection failed.
    Io(io::Error),
    /// The server closed the connection without a status.
    NoStatus,
    /// The server answered a byte that is no status.
    BadStatus(u8),
    /// A file to send cannot be read.
    Source {
        /// The file (`-` for stdin).
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file has no lines: it cannot be sent, since a zero line count
    /// ends the session.
    Empty(PathBuf),
    /// A file has more lines than a 32-bit count can say.
    TooManyLines(PathBuf),
    /// A file changed between counting its lines and sending them; the
    /// connection is out of step and must be dropped.
    Changed(PathBuf),
    /// Interactive input ended in the middle of a file.
    InputEnded {
        /// Lines typed.
        got: u32,
        /// Lines announced.
        want: u32,
    },
}

impl fmt::Display for UploadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadError::Io(e) => write!(f, "connection failed: {e}"),
            UploadError::NoStatus => {
                f.write_str("the server closed the connection without a status")
            }
            UploadError::BadStatus(b) => {
                write!(f, "the server answered {b:#04x}, which is no status")
            }
            UploadError::Source { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            UploadError::Empty(path) => write!(
                f,
                "{} is empty: a file needs at least one line (a zero count ends the session)",
                path.display()
            ),
            UploadError::TooManyLines(path) => {
                write!(f, "{} has more than 4294967295 lines", path.display())
            }
            UploadError::Changed(path) => {
                write!(f, "{} changed while it was being sent", path.display())
            }
            UploadError::InputEnded { got, want } => {
                write!(f, "input ended after {got} of {want} lines")
            }
        }
    }
}

impl std::error::Error for UploadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UploadError::Io(e) | UploadError::Source { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for UploadError {
    fn from(e: io::Error) -> UploadError {
        UploadError::Io(e)
    }
}

/// The lines of a file, as the protocol counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineCount {
    /// Lines, counting a last line without LF.
    pub lines: u64,
    /// Bytes in the file.
    pub bytes: u64,
    /// The file's last line has no LF: one is sent after it, so the saved
    /// file is the original plus a final LF.
    pub adds_lf: bool,
}

/// Counts the lines of everything `source` yields.
pub fn count_lines(mut source: impl Read) -> io::Result<LineCount> {
    let mut buf = vec![0; CHUNK];
    let (mut lfs, mut bytes, mut last) = (0u64, 0u64, b'\n');
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let read = buf.get(..n).unwrap_or_default();
        lfs += read.iter().filter(|&&b| b == b'\n').count() as u64;
        bytes += n as u64;
        last = read.last().copied().unwrap_or(last);
    }
    let adds_lf = last != b'\n';
    Ok(LineCount {
        lines: lfs + u64::from(adds_lf),
        bytes,
        adds_lf,
    })
}

/// How much of a file went out.
enum Sent {
    /// All of it.
    Whole,
    /// The server answered before the end; the rest was not sent.
    CutShort,
}

/// One upload connection: files go out in turn, each answered by a status.
pub struct Uploader<S> {
    stream: S,
}

impl<S: Link> Uploader<S> {
    /// An uploader on a connected stream.
    pub fn new(stream: S) -> Uploader<S> {
        Uploader { stream }
    }

    /// Gives the stream back.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// Sends the file at `path` (`-`: stdin, copied to a temporary file
    /// first) and returns its line count and the server's status. After
    /// [`UploadError::Changed`] or an I/O error the connection is out of
    /// step: drop it.
    pub fn send_path(&mut self, path: &Path) -> Result<(LineCount, Status), UploadError> {
        let source_error = |source| UploadError::Source {
            path: path.to_path_buf(),
            source,
        };
        let mut file = if path == Path::new("-") {
            spool(io::stdin().lock()).map_err(source_error)?
        } else {
            File::open(path).map_err(source_error)?
        };
        let count = count_lines(&mut file).map_err(source_error)?;
        file.seek(SeekFrom::Start(0)).map_err(source_error)?;
        let status = self.send(path, count, file)?;
        Ok((count, status))
    }

    /// Sends `data` as one file (`name` is for error messages).
    pub fn send_bytes(&mut self, name: &Path, data: &[u8]) -> Result<Status, UploadError> {
        let count = count_lines(data).map_err(|source| UploadError::Source {
            path: name.to_path_buf(),
            source,
        })?;
        self.send(name, count, data)
    }

    /// Sends the `count.bytes` bytes `source` yields as one file of
    /// `count.lines` lines, then reads the status.
    pub fn send(
        &mut self,
        name: &Path,
        count: LineCount,
        source: impl Read,
    ) -> Result<Status, UploadError> {
        if count.lines == 0 {
            return Err(UploadError::Empty(name.to_path_buf()));
        }
        let lines = u32::try_from(count.lines)
            .map_err(|_| UploadError::TooManyLines(name.to_path_buf()))?;
        match self.send_body(name, lines, count, source) {
            Ok(Sent::Whole) => self.status(),
            Ok(Sent::CutShort) => match self.status()? {
                Status::Refused => Ok(Status::Refused),
                other => Err(UploadError::BadStatus(other.byte())),
            },
            // The server may have refused the file and closed while it was
            // sent: its `E` is then waiting to be read.
            Err(UploadError::Io(e)) => match self.status() {
                Ok(Status::Refused) => Ok(Status::Refused),
                _ => Err(UploadError::Io(e)),
            },
            Err(e) => Err(e),
        }
    }

    fn send_body(
        &mut self,
        name: &Path,
        lines: u32,
        count: LineCount,
        source: impl Read,
    ) -> Result<Sent, UploadError> {
        self.stream.write_all(&lines.to_be_bytes())?;
        let mut source = source.take(count.bytes);
        let mut buf = vec![0; CHUNK.min(count.bytes as usize).max(1)];
        let (mut sent, mut lfs) = (0u64, 0u64);
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(UploadError::Source {
                        path: name.to_path_buf(),
                        source,
                    })
                }
            };
            if sent > 0 && self.stream.answer_waiting()? {
                return Ok(Sent::CutShort);
            }
            let piece = buf.get(..n).unwrap_or_default();
            lfs += piece.iter().filter(|&&b| b == b'\n').count() as u64;
            sent += n as u64;
            self.stream.write_all(piece)?;
        }
        if count.adds_lf {
            self.stream.write_all(b"\n")?;
            lfs += 1;
        }
        if sent != count.bytes || lfs != count.lines {
            return Err(UploadError::Changed(name.to_path_buf()));
        }
        self.stream.flush()?;
        Ok(Sent::Whole)
    }

    /// Sends already-framed lines (each ending in LF) as one file.
    fn send_lines(&mut self, lines: &[Vec<u8>]) -> Result<Status, UploadError> {
        let mut message = (lines.len() as u32).to_be_bytes().to_vec();
        for line in lines {
            message.extend_from_slice(line);
        }
        self.stream.write_all(&message)?;
        self.stream.flush()?;
        self.status()
    }

    /// Sends the zero-line message that ends the session; the server
    /// answers `Q` and closes.
    pub fn finish(&mut self) -> Result<Status, UploadError> {
        self.stream.write_all(&0u32.to_be_bytes())?;
        self.stream.flush()?;
        self.status()
    }

    /// Reads one status byte.
    fn status(&mut self) -> Result<Status, UploadError> {
        let mut byte = [0];
        loop {
            match self.stream.read(&mut byte) {
                Ok(0) => return Err(UploadError::NoStatus),
                Ok(_) => return Status::from_byte(byte[0]).ok_or(UploadError::BadStatus(byte[0])),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(UploadError::Io(e)),
            }
        }
    }
}

/// Copies `input` into a new temporary file, already unlinked, and
/// returns it: a stream read once becomes a file that can be read twice,
/// without holding it in memory.
fn spool(mut input: impl Read) -> io::Result<File> {
    let dir = std::env::temp_dir();
    let mut attempt = 0u32;
    let (mut file, path) = loop {
        let path = dir.join(format!(
            ".onepoll-client-stdin-{}-{attempt}",
            std::process::id()
        ));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => break (file, path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    std::fs::remove_file(&path)?;
    io::copy(&mut input, &mut file)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// What became of the files of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Files the server saved.
    pub saved: u64,
    /// Files not sent: unreadable, or empty.
    pub skipped: u64,
    /// The file the server answered `E`, which ended the run.
    pub refused: Option<PathBuf>,
}

/// Sends every file of `paths` over `stream`, one report line each on
/// `report`, then the end message. Stops at the first refused file (the
/// server has closed) or failure. A file that cannot be read or is empty
/// is reported and skipped.
pub fn upload_files<S: Link>(
    stream: S,
    paths: &[PathBuf],
    mut report: impl Write,
) -> Result<Summary, UploadError> {
    let mut up = Uploader::new(stream);
    let mut summary = Summary::default();
    for path in paths {
        match up.send_path(path) {
            Ok((count, Status::Saved)) => {
                summary.saved += 1;
                writeln!(
                    report,
                    "{}: A, saved as {}.txt ({} line(s), {} byte(s){})",
                    path.display(),
                    summary.saved,
                    count.lines,
                    count.bytes + u64::from(count.adds_lf),
                    if count.adds_lf { ", LF added" } else { "" }
                )?;
            }
            Ok((_, status)) => {
                writeln!(
                    report,
                    "{}: {}, refused by the server; it closed the connection",
                    path.display(),
                    char::from(status.byte())
                )?;
                summary.refused = Some(path.clone());
                return Ok(summary);
            }
            Err(e @ (UploadError::Empty(_) | UploadError::Source { .. })) => {
                writeln!(report, "{e}; skipped")?;
                summary.skipped += 1;
            }
            Err(e) => return Err(e),
        }
    }
    match up.finish()? {
        Status::Ended => writeln!(report, "Q, done: {} file(s) saved", summary.saved)?,
        other => return Err(UploadError::BadStatus(other.byte())),
    }
    Ok(summary)
}

/// The interactive mode of the original assignment: asks on `prompts` for
/// a line count, reads that many lines from `input`, sends them as a file
/// and reports its status; again until the count is 0 (or `input` ends
/// between files), which ends the session. Returns whether every file was
/// saved.
pub fn prompt_files<S: Link>(
    stream: S,
    mut input: impl BufRead,
    mut prompts: impl Write,
) -> Result<bool, UploadError> {
    let mut up = Uploader::new(stream);
    let mut k = 0u64;
    loop {
        write!(prompts, "Number of lines in file {} (0 to end): ", k + 1)?;
        prompts.flush()?;
        let mut answer = String::new();
        let wanted = if input.read_line(&mut answer)? == 0 {
            0
        } else {
            match answer.trim().parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    writeln!(prompts, "'{}' is not a line count", answer.trim())?;
                    continue;
                }
            }
        };
        if wanted == 0 {
            let status = up.finish()?;
            writeln!(prompts, "Q, done: {k} file(s) saved")?;
            return match status {
                Status::Ended => Ok(true),
                other => Err(UploadError::BadStatus(other.byte())),
            };
        }
        let mut lines = Vec::new();
        for i in 1..=wanted {
            write!(prompts, "line {i}: ")?;
            prompts.flush()?;
            let mut line = Vec::new();
            if input.read_until(b'\n', &mut line)? == 0 {
                return Err(UploadError::InputEnded {
                    got: i - 1,
                    want: wanted,
                });
            }
            if line.last() != Some(&b'\n') {
                line.push(b'\n');
            }
            lines.push(line);
        }
        match up.send_lines(&lines)? {
            Status::Saved => {
                k += 1;
                writeln!(prompts, "A, saved as {k}.txt")?;
            }
            status => {
                writeln!(
                    prompts,
                    "{}, refused by the server; it closed the connection",
                    char::from(status.byte())
                )?;
                return Ok(false);
            }
        }
    }
}

impl From<UploadError> for ClientError {
    fn from(e: UploadError) -> ClientError {
        match e {
            UploadError::Io(e) => ClientError::from(e),
            UploadError::NoStatus | UploadError::BadStatus(_) => {
                ClientError::BadReply(e.to_string())
            }
            UploadError::Source { .. }
            | UploadError::Empty(_)
            | UploadError::TooManyLines(_)
            | UploadError::Changed(_)
            | UploadError::InputEnded { .. } => ClientError::Input(e.to_string()),
        }
    }
}

/// The files named on the command line: `--` ends the options (there are
/// none), `-` is stdin (at most once), any other `-…` is a usage error.
pub fn parse_args(args: &[String]) -> Result<Vec<PathBuf>, ClientError> {
    let mut paths = Vec::new();
    let mut options_ended = false;
    for arg in args {
        if !options_ended && arg == "--" {
            options_ended = true;
        } else if !options_ended && arg.len() > 1 && arg.starts_with('-') {
            return Err(ClientError::Usage(format!(
                "upload: unknown option '{arg}'\nUsage: onepoll-client [-h HOST] [-p PORT] {USAGE}"
            )));
        } else {
            paths.push(PathBuf::from(arg));
        }
    }
    if paths.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(ClientError::Usage(
            "upload: '-' (stdin) may be given only once".into(),
        ));
    }
    Ok(paths)
}

/// Runs `onepoll-client upload ARGS`: the files of `args` (see
/// [`parse_args`]) over one connection, statuses on stdout; with no file,
/// the prompt mode on stdin. Fails (exit code 1) when the server cannot be
/// reached, answers `E`, or a file cannot be sent.
pub fn run(options: &ClientOptions, args: &[String]) -> Result<(), ClientError> {
    let paths = parse_args(args)?;
    let stream = super::connect(options, Protocol::Upload.default_port())?;
    if options.verbose {
        if let Ok(addr) = stream.peer_addr() {
            eprintln!("connected to {addr}");
        }
    }
    if paths.is_empty() {
        let stdin = io::stdin();
        if prompt_files(stream, stdin.lock(), io::stdout().lock())? {
            return Ok(());
        }
        return Err(ClientError::ServerError(
            "E: the file was refused (over --max-upload, or it could not be saved)".into(),
        ));
    }
    let summary = upload_files(stream, &paths, io::stdout().lock())?;
    if let Some(path) = summary.refused {
        return Err(ClientError::ServerError(format!(
            "E for {}: over --max-upload, or it could not be saved",
            path.display()
        )));
    }
    if summary.skipped > 0 {
        return Err(ClientError::Input(format!(
            "{} file(s) could not be sent",
            summary.skipped
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, UploadLayout};
    use crate::proto::upload::{MemStore, Shared as UploadShared, UploadSession};
    use crate::proto::{Cx, Output, Session, Shared};
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::SystemTime;

    /// A server in memory: what the client writes goes through an upload
    /// session at once; what the session answers is there to read. Every
    /// byte written is kept in `sent`, those after the close too.
    struct CoreServer {
        session: UploadSession,
        shared: Shared,
        out: Output,
        closed: bool,
        sent: Vec<u8>,
    }

    impl CoreServer {
        fn new(store: &MemStore, max_upload: u64) -> CoreServer {
            let mut shared = Shared::new(&Config::default());
            shared.upload = UploadShared::new(Box::new(store.clone()), max_upload);
            CoreServer {
                session: UploadSession::new(),
                shared,
                out: Output::new(),
                closed: false,
                sent: Vec::new(),
            }
        }
    }

    impl Write for CoreServer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.sent.extend_from_slice(buf);
            if self.closed {
                // Like the real server, which reads and drops input after
                // `Q` or `E` until the client's end of stream.
                return Ok(buf.len());
            }
            let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
            let mut effects = Vec::new();
            let mut cx = Cx::new(
                &mut self.out,
                &mut self.shared,
                &mut effects,
                peer,
                7,
                SystemTime::now(),
            );
            // Offered again while the core pauses on its per-call budget
            // of files, as the loop does.
            let mut rest = buf;
            loop {
                let used = self.session.on_input(rest, &mut cx);
                rest = &rest[used..];
                if rest.is_empty() || cx.close_requested() || !self.session.wants_turn() {
                    break;
                }
            }
            self.closed = cx.close_requested();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Link for CoreServer {
        fn answer_waiting(&mut self) -> io::Result<bool> {
            Ok(self.closed || !self.out.is_empty())
        }
    }

    impl Read for CoreServer {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let front = self.out.front();
            let n = front.len().min(buf.len());
            buf[..n].copy_from_slice(&front[..n]);
            self.out.consume(n);
            Ok(n)
        }
    }

    fn temp_file(name: &str, content: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("onepoll-client-{}-{name}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn lines_are_counted_across_reads_and_a_last_line_without_lf_counts() {
        let count = |d: &[u8]| count_lines(d).unwrap();
        assert_eq!(
            count(b"a\nb\n"),
            LineCount {
                lines: 2,
                bytes: 4,
                adds_lf: false
            }
        );
        assert_eq!(count(b"a\nb").lines, 2);
        assert!(count(b"a\nb").adds_lf);
        assert_eq!(count(b"").lines, 0);
        assert_eq!(count(b"\n\n\n").lines, 3);
        let big = vec![b'\n'; CHUNK * 2 + 3];
        assert_eq!(count(&big).lines, big.len() as u64);
    }

    #[test]
    fn files_go_over_one_connection_and_end_with_the_zero_count() {
        let a = temp_file("a", b"one\ntwo\r\n");
        let b = temp_file("b", b"no final lf");
        let store = MemStore::new(UploadLayout::Flat);
        let mut report = Vec::new();
        let mut server = CoreServer::new(&store, u64::MAX);
        let summary = upload_files(&mut server, &[a.clone(), b.clone()], &mut report).unwrap();
        assert_eq!(summary.saved, 2);
        assert_eq!(summary.skipped, 0);
        assert_eq!(summary.refused, None);
        assert!(server.closed);
        assert!(server.sent.ends_with(&[0, 0, 0, 0]));
        assert_eq!(store.saved("1.txt").unwrap(), b"one\ntwo\r\n");
        assert_eq!(store.saved("2.txt").unwrap(), b"no final lf\n");
        let report = String::from_utf8(report).unwrap();
        assert!(
            report.contains("A, saved as 1.txt (2 line(s), 9 byte(s))"),
            "{report}"
        );
        assert!(
            report.contains("A, saved as 2.txt (1 line(s), 12 byte(s), LF added)"),
            "{report}"
        );
        assert!(report.ends_with("Q, done: 2 file(s) saved\n"), "{report}");
        let _ = std::fs::remove_file(a);
        let _ = std::fs::remove_file(b);
    }

    #[test]
    fn empty_and_missing_files_are_skipped_and_reported() {
        let empty = temp_file("empty", b"");
        let store = MemStore::new(UploadLayout::Flat);
        let mut report = Vec::new();
        let missing = PathBuf::from("/nonexistent/onepoll");
        let summary = upload_files(
            CoreServer::new(&store, u64::MAX),
            &[empty.clone(), missing],
            &mut report,
        )
        .unwrap();
        assert_eq!(summary.skipped, 2);
        assert_eq!(summary.saved, 0);
        let report = String::from_utf8(report).unwrap();
        assert!(report.contains("is empty"), "{report}");
        assert!(
            report.contains("cannot read /nonexistent/onepoll"),
            "{report}"
        );
        assert!(report.ends_with("Q, done: 0 file(s) saved\n"), "{report}");
        let _ = std::fs::remove_file(empty);
    }

    #[test]
    fn a_refused_file_is_reported_and_ends_the_run() {
        let store = MemStore::new(UploadLayout::Flat);
        let mut up = Uploader::new(CoreServer::new(&store, 3));
        let status = up.send_bytes(Path::new("big"), b"too long\n").unwrap();
        assert_eq!(status, Status::Refused);
        assert!(store.names().is_empty());
    }

    #[test]
    fn a_file_answered_e_early_is_not_sent_to_the_end() {
        let store = MemStore::new(UploadLayout::Flat);
        let mut server = CoreServer::new(&store, 10);
        let mut up = Uploader::new(&mut server);
        let big = vec![b'\n'; CHUNK * 3];
        assert_eq!(
            up.send_bytes(Path::new("big"), &big).unwrap(),
            Status::Refused
        );
        assert_eq!(server.sent.len(), 4 + CHUNK, "stopped after the E");
    }

    #[test]
    fn stdin_is_spooled_to_a_file_that_reads_twice_and_leaves_no_name() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut file = spool(&data[..]).unwrap();
        let count = count_lines(&mut file).unwrap();
        assert_eq!(count.bytes, data.len() as u64);
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        let leftover = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!(".onepoll-client-stdin-{}-", std::process::id()))
            });
        assert!(!leftover, "the spool file is unlinked at once");
    }

    #[test]
    fn arguments_are_files_dash_is_stdin_once_and_options_are_refused() {
        let args = |a: &[&str]| parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            args(&["a", "-", "b"]).unwrap(),
            vec![PathBuf::from("a"), PathBuf::from("-"), PathBuf::from("b")]
        );
        assert_eq!(args(&["--", "-x"]).unwrap(), vec![PathBuf::from("-x")]);
        assert!(args(&[]).unwrap().is_empty());
        assert!(matches!(args(&["-x"]), Err(ClientError::Usage(_))));
        assert!(matches!(args(&["-", "-"]), Err(ClientError::Usage(_))));
    }

    #[test]
    fn a_file_that_changes_while_sent_is_detected() {
        let store = MemStore::new(UploadLayout::Flat);
        let mut up = Uploader::new(CoreServer::new(&store, u64::MAX));
        let claimed = LineCount {
            lines: 2,
            bytes: 4,
            adds_lf: false,
        };
        let err = up.send(Path::new("f"), claimed, &b"a\n"[..]).unwrap_err();
        assert!(matches!(err, UploadError::Changed(_)), "{err}");
    }

    #[test]
    fn the_prompt_asks_for_a_count_then_the_lines_until_zero() {
        let store = MemStore::new(UploadLayout::Flat);
        let input = &b"2\nfirst\nsecond\nx\n1\nonly\n0\n"[..];
        let mut prompts = Vec::new();
        let ok = prompt_files(CoreServer::new(&store, u64::MAX), input, &mut prompts).unwrap();
        assert!(ok);
        assert_eq!(store.saved("1.txt").unwrap(), b"first\nsecond\n");
        assert_eq!(store.saved("2.txt").unwrap(), b"only\n");
        let prompts = String::from_utf8(prompts).unwrap();
        assert!(prompts.starts_with("Number of lines in file 1 (0 to end): line 1: "));
        assert!(prompts.contains("'x' is not a line count"), "{prompts}");
        assert!(prompts.ends_with("Q, done: 2 file(s) saved\n"), "{prompts}");
    }

    #[test]
    fn input_ending_mid_file_is_an_error_and_between_files_ends_the_session() {
        let store = MemStore::new(UploadLayout::Flat);
        let err = prompt_files(
            CoreServer::new(&store, u64::MAX),
            &b"3\na\n"[..],
            io::sink(),
        )
        .unwrap_err();
        assert!(matches!(err, UploadError::InputEnded { got: 1, want: 3 }));
        let mut server = CoreServer::new(&store, u64::MAX);
        assert!(prompt_files(&mut server, &b"1\na"[..], io::sink()).unwrap());
        assert!(server.sent.ends_with(&[0, 0, 0, 0]));
        assert_eq!(store.saved("1.txt").unwrap(), b"a\n");
    }
}
