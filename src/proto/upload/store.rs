//! Where an upload's bytes go: the [`Store`] trait the upload core writes
//! through, the names of saved and temporary files, and [`MemStore`], an
//! in-memory store with injectable faults that lets the core be tested
//! without a disk. The filesystem store is the server's
//! (`stores::upload`): this module does no I/O.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::SystemTime;

use crate::config::UploadLayout;

/// Which file of which connection is being saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileKey {
    /// The connection's server-unique id.
    pub conn_id: u64,
    /// When the connection's first file began; per-connection directories
    /// are named after it.
    pub conn_started: SystemTime,
    /// 1 for the connection's first file, 2 for the next, …
    pub k: u64,
}

/// The name a complete file is saved under, relative to the upload
/// directory: `<k>.txt`, or `<conn-dir>/<k>.txt` in the per-connection
/// layout (the first [`connection_dir_name`]; a store that had to pick
/// another reports that one).
pub fn saved_name(layout: UploadLayout, key: FileKey) -> PathBuf {
    let file = format!("{}.txt", key.k);
    match layout {
        UploadLayout::Flat => PathBuf::from(file),
        UploadLayout::PerConnection => PathBuf::from(connection_dir_name(key, 0)).join(file),
    }
}

/// How many names a store tries for one temporary or one per-connection
/// directory before it gives up on a name clash (and the file is
/// answered `E`).
pub const NAME_TRIES: u32 = 8;

/// The temporary a file is written to before it is renamed into place, in
/// the upload directory itself: `.<k>.txt.<conn-id>.tmp` on the first try
/// (`attempt` 0), `.<k>.txt.<conn-id>.<attempt>.tmp` after a clash.
/// Hidden, and unique per connection, so concurrent connections never
/// share one.
pub fn temp_name(key: FileKey, attempt: u32) -> String {
    match attempt {
        0 => format!(".{}.txt.{}.tmp", key.k, key.conn_id),
        n => format!(".{}.txt.{}.{n}.tmp", key.k, key.conn_id),
    }
}

/// Whether `name` has the shape of a [`temp_name`]: the only names the
/// server's start-up sweep removes (and only regular files of them).
pub fn is_temp_name(name: &str) -> bool {
    let Some(middle) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    let Some((k, rest)) = middle.split_once(".txt.") else {
        return false;
    };
    let id_ok = match rest.split_once('.') {
        Some((id, attempt)) => is_digits(id) && is_digits(attempt),
        None => is_digits(rest),
    };
    is_digits(k) && id_ok
}

/// The directory of one connection in the per-connection layout:
/// `<UTC time of its first file>-c<conn-id>`, e.g. `20261121T210501Z-c42`
/// (`attempt` 0), or `…-c42.<attempt>` when that name was taken. Names
/// sort by time (to the second) and say which connection (as logged) the
/// files came from.
pub fn connection_dir_name(key: FileKey, attempt: u32) -> String {
    const STAMP: &[time::format_description::FormatItem<'static>] =
        time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let stamp = time::OffsetDateTime::from(key.conn_started)
        .format(STAMP)
        .unwrap_or_else(|_| "00000000T000000Z".to_string());
    match attempt {
        0 => format!("{stamp}-c{}", key.conn_id),
        n => format!("{stamp}-c{}.{n}", key.conn_id),
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The step of a save that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Creating a per-connection directory.
    CreateDir,
    /// Creating the temporary file.
    Create,
    /// Writing to the temporary file.
    Write,
    /// Flushing the file or its directory to stable storage.
    Sync,
    /// Renaming the temporary over the saved name.
    Rename,
}

impl fmt::Display for StoreOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreOp::CreateDir => "create directory",
            StoreOp::Create => "create",
            StoreOp::Write => "write",
            StoreOp::Sync => "sync",
            StoreOp::Rename => "rename into place",
        })
    }
}

/// A save that failed: what was being done, to which file, and why.
#[derive(Debug)]
pub struct StoreError {
    /// The step that failed.
    pub op: StoreOp,
    /// The file or directory it failed on.
    pub path: PathBuf,
    /// The operating system's reason.
    pub source: io::Error,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.op,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Where complete files are saved. One store serves every connection.
pub trait Store: fmt::Debug {
    /// Starts file `key`: a new, empty temporary that no reader of saved
    /// files can see.
    fn begin(&mut self, key: FileKey) -> Result<Box<dyn PendingFile>, StoreError>;

    /// Connection `conn_id` is gone (called once, after its last file was
    /// committed or dropped): the store forgets what it kept for it (a
    /// per-connection directory, removed if no file was saved in it).
    fn end_connection(&mut self, _conn_id: u64) {}
}

/// The store of a server that opened no upload directory: every file is
/// refused. [`super::Shared::from_config`] starts with it; the server
/// puts its filesystem store in its place at start.
#[derive(Debug, Default)]
pub struct NoStore;

impl Store for NoStore {
    fn begin(&mut self, key: FileKey) -> Result<Box<dyn PendingFile>, StoreError> {
        Err(StoreError {
            op: StoreOp::Create,
            path: PathBuf::from(format!("{}.txt", key.k)),
            source: io::Error::other("no upload directory is open"),
        })
    }
}

/// A file being received. Until [`commit`](PendingFile::commit) succeeds it
/// is invisible; dropping it uncommitted (or [`abort`](PendingFile::abort))
/// removes its temporary and leaves every saved file as it was.
pub trait PendingFile {
    /// Appends `bytes` to the file.
    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError>;

    /// Makes the file visible under its saved name in one atomic step,
    /// replacing any earlier file of that name. On failure the temporary is
    /// removed and the saved name keeps its earlier content.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;

    /// Gives the file up: removes the temporary. The same as dropping it,
    /// spelt out for readers of the call site.
    fn abort(self: Box<Self>) {}
}

/// A fault a [`MemStore`] is told to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `begin` fails with this OS error number.
    Begin(i32),
    /// A write fails with this OS error number once a file would pass this
    /// many bytes (`ENOSPC` on a small disk, say).
    WriteAfter(u64, i32),
    /// `commit` fails with this OS error number.
    Commit(i32),
}

#[derive(Debug, Default)]
struct MemInner {
    layout: Option<UploadLayout>,
    saved: BTreeMap<PathBuf, Vec<u8>>,
    open: usize,
    writes: usize,
    fault: Option<Fault>,
}

/// An in-memory [`Store`] for tests: saved files in a map, with counters
/// and injectable faults. Clones share the same files, so a test keeps one
/// clone to inspect what the core saved through another.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    inner: Rc<RefCell<MemInner>>,
}

impl MemStore {
    /// An empty store that names files as `layout` does.
    pub fn new(layout: UploadLayout) -> MemStore {
        let store = MemStore::default();
        store.inner.borrow_mut().layout = Some(layout);
        store
    }

    /// Injects `fault` into every later file.
    pub fn inject(&self, fault: Fault) {
        self.inner.borrow_mut().fault = Some(fault);
    }

    /// The content saved under `name` (relative to the upload directory).
    pub fn saved(&self, name: &str) -> Option<Vec<u8>> {
        self.inner.borrow().saved.get(&PathBuf::from(name)).cloned()
    }

    /// The names of every saved file, sorted.
    pub fn names(&self) -> Vec<PathBuf> {
        self.inner.borrow().saved.keys().cloned().collect()
    }

    /// Temporaries that exist now (begun and neither committed nor dropped).
    pub fn open_temporaries(&self) -> usize {
        self.inner.borrow().open
    }

    /// Write calls made so far, all files together.
    pub fn write_calls(&self) -> usize {
        self.inner.borrow().writes
    }
}

fn os_error(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

impl Store for MemStore {
    fn begin(&mut self, key: FileKey) -> Result<Box<dyn PendingFile>, StoreError> {
        let mut inner = self.inner.borrow_mut();
        let name = saved_name(inner.layout.unwrap_or(UploadLayout::Flat), key);
        if let Some(Fault::Begin(errno)) = inner.fault {
            return Err(StoreError {
                op: StoreOp::Create,
                path: name,
                source: os_error(errno),
            });
        }
        inner.open += 1;
        Ok(Box::new(MemFile {
            store: self.clone(),
            name,
            data: Vec::new(),
        }))
    }
}

struct MemFile {
    store: MemStore,
    name: PathBuf,
    data: Vec<u8>,
}

impl MemFile {
    fn error(&self, op: StoreOp, errno: i32) -> StoreError {
        StoreError {
            op,
            path: self.name.clone(),
            source: os_error(errno),
        }
    }
}

impl PendingFile for MemFile {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let fault = {
            let mut inner = self.store.inner.borrow_mut();
            inner.writes += 1;
            inner.fault
        };
        if let Some(Fault::WriteAfter(limit, errno)) = fault {
            if (self.data.len() + bytes.len()) as u64 > limit {
                return Err(self.error(StoreOp::Write, errno));
            }
        }
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        let fault = self.store.inner.borrow().fault;
        if let Some(Fault::Commit(errno)) = fault {
            return Err(self.error(StoreOp::Rename, errno));
        }
        let data = std::mem::take(&mut self.data);
        let name = std::mem::take(&mut self.name);
        self.store.inner.borrow_mut().saved.insert(name, data);
        Ok(())
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        self.store.inner.borrow_mut().open -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(conn_id: u64, k: u64) -> FileKey {
        FileKey {
            conn_id,
            conn_started: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_295_101),
            k,
        }
    }

    #[test]
    fn flat_names_are_k_txt_and_per_connection_names_sort_by_time() {
        assert_eq!(
            saved_name(UploadLayout::Flat, key(42, 3)),
            PathBuf::from("3.txt")
        );
        assert_eq!(
            saved_name(UploadLayout::PerConnection, key(42, 3)),
            PathBuf::from("20261121T210501Z-c42/3.txt")
        );
        let later = FileKey {
            conn_started: key(7, 1).conn_started + Duration::from_secs(1),
            ..key(7, 1)
        };
        assert!(connection_dir_name(key(42, 1), 0) < connection_dir_name(later, 0));
        assert_eq!(connection_dir_name(key(42, 1), 3), "20261121T210501Z-c42.3");
    }

    #[test]
    fn temporaries_are_hidden_unique_per_connection_and_recognised() {
        assert_eq!(temp_name(key(42, 3), 0), ".3.txt.42.tmp");
        assert_eq!(temp_name(key(42, 3), 2), ".3.txt.42.2.tmp");
        assert_ne!(temp_name(key(1, 1), 0), temp_name(key(2, 1), 0));
        assert!(is_temp_name(".3.txt.42.tmp"));
        assert!(is_temp_name(".3.txt.42.7.tmp"));
        for other in [
            "3.txt",
            ".3.txt.42",
            ".3.txt..tmp",
            "..txt.4.tmp",
            ".a.txt.4.tmp",
            ".3.txt.4x.tmp",
            ".3.txt.4..tmp",
            ".3.txt.4.x.tmp",
            ".tmp",
            "notes.tmp",
        ] {
            assert!(!is_temp_name(other), "{other}");
        }
    }

    #[test]
    fn mem_store_saves_on_commit_only_and_counts_open_temporaries() {
        let mut store = MemStore::new(UploadLayout::Flat);
        let mut file = store.begin(key(1, 1)).unwrap();
        file.write(b"a\n").unwrap();
        assert_eq!(store.open_temporaries(), 1);
        assert_eq!(store.saved("1.txt"), None);
        file.commit().unwrap();
        assert_eq!(store.saved("1.txt"), Some(b"a\n".to_vec()));
        assert_eq!(store.open_temporaries(), 0);
        store.begin(key(1, 2)).unwrap().abort();
        assert_eq!(store.open_temporaries(), 0);
        assert_eq!(store.names(), vec![PathBuf::from("1.txt")]);
    }

    #[test]
    fn store_errors_say_what_failed_where_and_why() {
        let store = MemStore::new(UploadLayout::Flat);
        store.inject(Fault::WriteAfter(0, libc::ENOSPC));
        let mut file = store.clone().begin(key(1, 1)).unwrap();
        let err = file.write(b"x").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("cannot write 1.txt: "), "{text}");
        assert_eq!(err.source.raw_os_error(), Some(libc::ENOSPC));
    }
}
