//! The filesystem [`Store`] of the upload protocol, and the start-up step
//! [`prepare`] that opens the upload directory and sweeps the temporaries a
//! crashed server left behind.
//!
//! # What it guarantees
//!
//! The server writes only inside the upload directory, and never through a
//! link, whoever else can write to that directory:
//!
//! - The directory is resolved once at start (`canonicalize`: it may be a
//!   symbolic link) and opened as a directory handle; every later call is
//!   relative to that handle (`openat`, `mkdirat`, `renameat`, `unlinkat`,
//!   `fstatat`), so renaming or replacing the path later changes nothing.
//! - A temporary is created only as a new file: `openat` with
//!   `O_CREAT | O_EXCL | O_NOFOLLOW`, which fails on any existing name
//!   (a file, a fifo, a directory, a symbolic link even if dangling) and
//!   so never opens, truncates or follows it. On a clash another name is
//!   tried ([`NAME_TRIES`] in all), then the file is answered `E`. Bytes
//!   go through the descriptor so created, never through a name.
//! - A per-connection directory is created new with `mkdirat` (which
//!   fails on an existing name, a link included) and then opened
//!   `O_DIRECTORY | O_NOFOLLOW` to record its device and inode; on a clash
//!   another name is tried, then `E`. It is not kept open between files
//!   (an idle connection holds no descriptor): each commit opens it again
//!   the same way and renames into it only if it still is that directory.
//! - The commit is `renameat` of the temporary over `<k>.txt`: a rename
//!   replaces the directory entry, so a symbolic link named `<k>.txt` is
//!   itself replaced, never followed (`<k>.txt` being a directory fails
//!   with `EISDIR`: `E`).
//! - The server removes only what it created, identified by the device and
//!   inode it recorded when it created it, never by name alone: before it
//!   unlinks a temporary (a dropped upload) or renames it into place, and
//!   before it removes a per-connection directory that saved nothing, it
//!   checks with `fstatat(AT_SYMLINK_NOFOLLOW)` that the name still is that
//!   very file. A name someone swapped in is left alone (and a commit is
//!   answered `E`).
//! - The start-up sweep removes only regular files of the server's own
//!   temporary pattern at the top of the upload directory (checked with
//!   `fstatat(AT_SYMLINK_NOFOLLOW)`, so no link is followed), and never
//!   descends into a directory. Temporaries live at the top in both
//!   layouts (a per-connection file is renamed from there into its
//!   directory, on the same filesystem), so that is where a crash leaves
//!   them.
//!
//! `O_CREAT | O_EXCL` plus a rename was chosen over an unnamed `O_TMPFILE`
//! linked in with `linkat`: `linkat` will not replace an existing
//! `<k>.txt`, so a named step (and a rename) is needed anyway, `O_TMPFILE`
//! is missing on some filesystems, and linking an unnamed file by its
//! descriptor needs `CAP_DAC_READ_SEARCH` or `/proc`.
//!
//! The calls are made with `rustix` (std has no `openat` family); none is
//! `unsafe` here.
//!
//! These calls block the event loop while the kernel does them; see the
//! module doc of [`crate::proto::upload`] for what that costs.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};

use crate::config::{Config, UploadLayout};
use crate::proto::upload::store::{
    connection_dir_name, is_temp_name, temp_name, FileKey, PendingFile, Store, StoreError, StoreOp,
    NAME_TRIES,
};

/// What identifies a file the server created: its device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(stat: &rustix::fs::Stat) -> FileId {
        FileId {
            dev: stat.st_dev,
            ino: stat.st_ino,
        }
    }
}

/// Whether `name` in `dir` is still the file `id`, not followed if a link.
fn is_still(dir: impl AsFd, name: &str, id: FileId) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|s| FileId::of(&s) == id)
}

/// A per-connection directory the store created: its name and what it is.
/// Not kept open between files (a descriptor per idle connection would
/// count against the descriptor limit): each commit opens it again
/// (no-follow) and checks it is still this directory.
#[derive(Debug)]
struct ConnDir {
    name: String,
    id: FileId,
    /// A file was committed into it: it stays when the connection ends.
    saved: Cell<bool>,
}

/// Saves uploads under the directory opened at start, in either layout.
#[derive(Debug)]
pub struct DirStore {
    /// The upload directory, opened once.
    dir: Rc<OwnedFd>,
    /// Its real path, for messages.
    path: PathBuf,
    layout: UploadLayout,
    fsync: bool,
    /// Per-connection directories of the connections that began a file.
    conns: HashMap<u64, Rc<ConnDir>>,
}

fn store_error(op: StoreOp, path: PathBuf, source: impl Into<io::Error>) -> StoreError {
    StoreError {
        op,
        path,
        source: source.into(),
    }
}

impl DirStore {
    /// A store saving into the directory `path` (resolved and opened here,
    /// once; no sweep: see [`prepare`]). With `fsync`, a file and its
    /// directory are flushed to stable storage before the file is
    /// acknowledged.
    pub fn open(path: &Path, layout: UploadLayout, fsync: bool) -> io::Result<DirStore> {
        let real = fs::canonicalize(path)?;
        // Canonical: no component is a link now; O_NOFOLLOW refuses a
        // last component swapped for one since.
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let dir = rustix::fs::openat(CWD, &real, flags, Mode::empty())?;
        Ok(DirStore {
            dir: Rc::new(dir),
            path: real,
            layout,
            fsync,
            conns: HashMap::new(),
        })
    }

    /// The upload directory's real path (links resolved).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The per-connection directory of `key`'s connection, created on its
    /// first file under a name that did not exist.
    fn conn_dir(&mut self, key: FileKey) -> Result<Rc<ConnDir>, StoreError> {
        if let Some(dir) = self.conns.get(&key.conn_id) {
            return Ok(Rc::clone(dir));
        }
        let mut attempt = 0;
        let name = loop {
            let name = connection_dir_name(key, attempt);
            match rustix::fs::mkdirat(&*self.dir, name.as_str(), Mode::from_raw_mode(0o777)) {
                Ok(()) => break name,
                Err(rustix::io::Errno::EXIST) if attempt + 1 < NAME_TRIES => attempt += 1,
                Err(e) => return Err(store_error(StoreOp::CreateDir, self.path.join(name), e)),
            }
        };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let opened = rustix::fs::openat(&*self.dir, name.as_str(), flags, Mode::empty())
            .and_then(|fd| rustix::fs::fstat(&fd));
        let id = opened
            .map(|stat| FileId::of(&stat))
            .map_err(|e| store_error(StoreOp::CreateDir, self.path.join(&name), e))?;
        let dir = Rc::new(ConnDir {
            name,
            id,
            saved: Cell::new(false),
        });
        self.conns.insert(key.conn_id, Rc::clone(&dir));
        Ok(dir)
    }
}

impl Store for DirStore {
    fn begin(&mut self, key: FileKey) -> Result<Box<dyn PendingFile>, StoreError> {
        let conn_dir = match self.layout {
            UploadLayout::Flat => None,
            UploadLayout::PerConnection => Some(self.conn_dir(key)?),
        };
        let dest_name = format!("{}.txt", key.k);
        let dest = match &conn_dir {
            Some(d) => self.path.join(&d.name).join(&dest_name),
            None => self.path.join(&dest_name),
        };
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut attempt = 0;
        let (fd, temp) = loop {
            let temp = temp_name(key, attempt);
            match rustix::fs::openat(&*self.dir, temp.as_str(), flags, Mode::from_raw_mode(0o666)) {
                Ok(fd) => break (fd, temp),
                Err(rustix::io::Errno::EXIST) if attempt + 1 < NAME_TRIES => attempt += 1,
                Err(e) => return Err(store_error(StoreOp::Create, self.path.join(temp), e)),
            }
        };
        let temp_id = match rustix::fs::fstat(&fd) {
            Ok(stat) => FileId::of(&stat),
            Err(e) => {
                // Never seen (fstat of a descriptor just opened), and
                // without its identity nothing is removed by name: the
                // empty temporary stays for the next start's sweep.
                return Err(store_error(StoreOp::Create, self.path.join(temp), e));
            }
        };
        Ok(Box::new(DirFile {
            file: File::from(fd),
            dir: Rc::clone(&self.dir),
            temp,
            temp_id,
            conn_dir,
            dest_name,
            dest,
            fsync: self.fsync,
            committed: false,
        }))
    }

    fn end_connection(&mut self, conn_id: u64) {
        let Some(dir) = self.conns.remove(&conn_id) else {
            return;
        };
        // A connection that saved nothing leaves no directory: ours, if
        // the name still is ours (and empty, or rmdir refuses).
        if !dir.saved.get() && is_still(&*self.dir, &dir.name, dir.id) {
            let _ = rustix::fs::unlinkat(&*self.dir, dir.name.as_str(), AtFlags::REMOVEDIR);
        }
    }
}

/// One file being received: the temporary it created, open, and where it
/// goes.
struct DirFile {
    file: File,
    /// The upload directory, where the temporary is.
    dir: Rc<OwnedFd>,
    temp: String,
    /// The temporary as created: what is unlinked or renamed must still
    /// be it.
    temp_id: FileId,
    /// Per-connection layout: the directory the file goes to.
    conn_dir: Option<Rc<ConnDir>>,
    dest_name: String,
    /// The saved file's path, for messages.
    dest: PathBuf,
    fsync: bool,
    committed: bool,
}

impl DirFile {
    fn temp_path(&self) -> PathBuf {
        self.dest.with_file_name(&self.temp)
    }

    /// Opens the connection's directory `d` again, not following a link,
    /// and checks that it is still the directory the store created.
    fn open_conn_dir(&self, d: &ConnDir) -> Result<OwnedFd, StoreError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&*self.dir, d.name.as_str(), flags, Mode::empty())
            .map_err(|e| store_error(StoreOp::Rename, self.dest.clone(), e))?;
        match rustix::fs::fstat(&fd) {
            Ok(stat) if FileId::of(&stat) == d.id => Ok(fd),
            Ok(_) => {
                let e = io::Error::other("the connection's directory was replaced");
                Err(store_error(StoreOp::Rename, self.dest.clone(), e))
            }
            Err(e) => Err(store_error(StoreOp::Rename, self.dest.clone(), e)),
        }
    }
}

impl PendingFile for DirFile {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.file
            .write_all(bytes)
            .map_err(|e| store_error(StoreOp::Write, self.temp_path(), e))
    }

    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        if self.fsync {
            self.file
                .sync_all()
                .map_err(|e| store_error(StoreOp::Sync, self.temp_path(), e))?;
        }
        if !is_still(&*self.dir, &self.temp, self.temp_id) {
            // Someone renamed or replaced our temporary: whatever has its
            // name now is not ours to publish.
            let e = io::Error::other("the temporary was replaced");
            return Err(store_error(StoreOp::Rename, self.dest.clone(), e));
        }
        let conn_dir = match &self.conn_dir {
            Some(d) => Some(self.open_conn_dir(d)?),
            None => None,
        };
        let to_dir: &OwnedFd = conn_dir.as_ref().unwrap_or(&self.dir);
        rustix::fs::renameat(
            &*self.dir,
            self.temp.as_str(),
            to_dir,
            self.dest_name.as_str(),
        )
        .map_err(|e| store_error(StoreOp::Rename, self.dest.clone(), e))?;
        self.committed = true;
        if let Some(d) = &self.conn_dir {
            d.saved.set(true);
        }
        if self.fsync {
            // The rename is durable once the directory entry is.
            rustix::fs::fsync(to_dir)
                .map_err(|e| store_error(StoreOp::Sync, self.dest.clone(), e))?;
        }
        Ok(())
    }
}

impl Drop for DirFile {
    /// An uncommitted file is aborted: its temporary is removed (if the
    /// name still is the file it created), so a dropped upload leaves no
    /// trace.
    fn drop(&mut self) {
        if self.committed || !is_still(&*self.dir, &self.temp, self.temp_id) {
            return;
        }
        if let Err(e) = rustix::fs::unlinkat(&*self.dir, self.temp.as_str(), AtFlags::empty()) {
            if e != rustix::io::Errno::NOENT {
                log::warn!("cannot remove {}: {e}", self.temp_path().display());
            }
        }
    }
}

/// The upload directory cannot be used: the server exits 1.
#[derive(Debug)]
pub enum UploadDirError {
    /// It is missing and cannot be created.
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The path exists and is not a directory.
    NotADirectory(PathBuf),
    /// It exists but cannot be opened.
    Open {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl fmt::Display for UploadDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadDirError::Create { path, source } => {
                write!(
                    f,
                    "cannot create upload directory {}: {source}",
                    path.display()
                )
            }
            UploadDirError::NotADirectory(path) => {
                write!(f, "upload directory {} is not a directory", path.display())
            }
            UploadDirError::Open { path, source } => {
                write!(
                    f,
                    "cannot open upload directory {}: {source}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for UploadDirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UploadDirError::Create { source, .. } | UploadDirError::Open { source, .. } => {
                Some(source)
            }
            UploadDirError::NotADirectory(_) => None,
        }
    }
}

/// Makes `config.upload_dir` ready before the server accepts anyone and
/// returns the store saving into it: creates it if missing (an error if
/// that fails or the path is not a directory), resolves it once (it may be
/// a link) and logs its real path, opens it, then removes the temporaries
/// a crash left behind (see the module doc for which).
///
/// A directory that exists but cannot be written is not an error (the
/// permissions may be fixed while the server runs); it is logged as a
/// warning, and uploads are answered `E` meanwhile.
pub fn prepare(config: &Config) -> Result<DirStore, UploadDirError> {
    let dir = &config.upload_dir;
    fs::create_dir_all(dir).map_err(|source| UploadDirError::Create {
        path: dir.clone(),
        source,
    })?;
    if !dir.is_dir() {
        return Err(UploadDirError::NotADirectory(dir.clone()));
    }
    let store =
        DirStore::open(dir, config.upload_layout, config.upload_fsync).map_err(|source| {
            UploadDirError::Open {
                path: dir.clone(),
                source,
            }
        })?;
    log::info!("upload directory {}", store.path().display());
    let removed = remove_stale(&store);
    if removed > 0 {
        log::info!(
            "removed {removed} stale upload temporar{} from {}",
            if removed == 1 { "y" } else { "ies" },
            store.path().display()
        );
    }
    let access = rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK;
    if rustix::fs::accessat(&*store.dir, ".", access, AtFlags::empty()).is_err() {
        log::warn!(
            "upload directory {} is not writable: uploads will be answered E",
            store.path().display()
        );
    }
    Ok(store)
}

/// Removes the regular files named like temporaries at the top of the
/// upload directory; returns how many. Links, directories and anything
/// else are left alone. Failures are logged, not fatal.
fn remove_stale(store: &DirStore) -> usize {
    let dir = &*store.dir;
    let entries = match rustix::fs::Dir::read_from(dir) {
        Ok(entries) => entries,
        Err(e) => {
            log::warn!(
                "cannot list {} to clean temporaries: {e}",
                store.path().display()
            );
            return 0;
        }
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if !is_temp_name(name) {
            continue;
        }
        let regular = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::RegularFile);
        if !regular {
            continue;
        }
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) => removed += 1,
            Err(e) => log::warn!("cannot remove {}: {e}", store.path().join(name).display()),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, SystemTime};

    /// A fresh directory under the system's temporary directory, removed
    /// with everything in it when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(label: &str) -> TempDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("onepoll-{label}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        /// Every name under the directory, recursively, relative, sorted;
        /// directories (not links to them) end in `/`.
        fn listing(&self) -> Vec<String> {
            fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
                for entry in fs::read_dir(dir).unwrap().flatten() {
                    let path = entry.path();
                    let rel = path.strip_prefix(root).unwrap().display().to_string();
                    if entry.file_type().unwrap().is_dir() {
                        out.push(format!("{rel}/"));
                        walk(root, &path, out);
                    } else {
                        out.push(rel);
                    }
                }
            }
            let mut out = Vec::new();
            walk(&self.0, &self.0, &mut out);
            out.sort();
            out
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn key(conn_id: u64, k: u64) -> FileKey {
        FileKey {
            conn_id,
            conn_started: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_295_101),
            k,
        }
    }

    fn store(dir: &Path, layout: UploadLayout) -> DirStore {
        DirStore::open(dir, layout, false).unwrap()
    }

    fn config(dir: &Path) -> Config {
        Config {
            upload_dir: dir.to_path_buf(),
            ..Config::default()
        }
    }

    #[test]
    fn a_file_is_invisible_until_commit_renames_it_over_the_old_one() {
        let tmp = TempDir::new("dirstore-commit");
        fs::write(tmp.0.join("1.txt"), b"old\n").unwrap();
        let mut store = store(&tmp.0, UploadLayout::Flat);
        let mut file = store.begin(key(9, 1)).unwrap();
        file.write(b"new\n").unwrap();
        assert_eq!(tmp.listing(), vec![".1.txt.9.tmp", "1.txt"]);
        assert_eq!(fs::read(tmp.0.join("1.txt")).unwrap(), b"old\n");
        file.commit().unwrap();
        assert_eq!(tmp.listing(), vec!["1.txt"]);
        assert_eq!(fs::read(tmp.0.join("1.txt")).unwrap(), b"new\n");
    }

    #[test]
    fn an_aborted_or_dropped_file_leaves_no_temporary_and_the_old_file() {
        let tmp = TempDir::new("dirstore-abort");
        fs::write(tmp.0.join("1.txt"), b"old\n").unwrap();
        let mut store = store(&tmp.0, UploadLayout::Flat);
        let mut file = store.begin(key(9, 1)).unwrap();
        file.write(b"half").unwrap();
        file.abort();
        let mut file = store.begin(key(10, 1)).unwrap();
        file.write(b"half").unwrap();
        drop(file);
        assert_eq!(tmp.listing(), vec!["1.txt"]);
        assert_eq!(fs::read(tmp.0.join("1.txt")).unwrap(), b"old\n");
    }

    #[test]
    fn fsync_commit_saves_too() {
        let tmp = TempDir::new("dirstore-fsync");
        let mut store = DirStore::open(&tmp.0, UploadLayout::PerConnection, true).unwrap();
        let mut file = store.begin(key(1, 2)).unwrap();
        file.write(b"x\n").unwrap();
        file.commit().unwrap();
        assert_eq!(
            fs::read(tmp.0.join("20261121T210501Z-c1/2.txt")).unwrap(),
            b"x\n"
        );
    }

    #[test]
    fn per_connection_files_go_in_a_directory_named_by_time_and_connection() {
        let tmp = TempDir::new("dirstore-perconn");
        let mut store = store(&tmp.0, UploadLayout::PerConnection);
        for k in 1..=2 {
            let mut file = store.begin(key(42, k)).unwrap();
            file.write(format!("{k}\n").as_bytes()).unwrap();
            assert!(tmp.listing().contains(&format!(".{k}.txt.42.tmp")));
            file.commit().unwrap();
        }
        let saved = vec![
            "20261121T210501Z-c42/",
            "20261121T210501Z-c42/1.txt",
            "20261121T210501Z-c42/2.txt",
        ];
        assert_eq!(tmp.listing(), saved);
        // A connection that drops in its first file leaves no directory.
        store.begin(key(43, 1)).unwrap().abort();
        store.end_connection(43);
        // One that drops in a later file keeps the files it saved.
        store.begin(key(42, 3)).unwrap().abort();
        store.end_connection(42);
        assert_eq!(tmp.listing(), saved);
    }

    #[test]
    fn a_rename_over_a_directory_fails_and_removes_the_temporary() {
        let tmp = TempDir::new("dirstore-rename");
        fs::create_dir(tmp.0.join("1.txt")).unwrap();
        fs::write(tmp.0.join("1.txt/keep"), b"").unwrap();
        let mut store = store(&tmp.0, UploadLayout::Flat);
        let mut file = store.begin(key(1, 1)).unwrap();
        file.write(b"x\n").unwrap();
        let err = file.commit().unwrap_err();
        assert_eq!(err.op, StoreOp::Rename);
        assert_eq!(tmp.listing(), vec!["1.txt/", "1.txt/keep"]);
    }

    #[test]
    fn a_removed_directory_is_a_create_error() {
        let tmp = TempDir::new("dirstore-missing");
        let dir = tmp.0.join("gone");
        fs::create_dir(&dir).unwrap();
        let mut flat = store(&dir, UploadLayout::Flat);
        let mut per = store(&dir, UploadLayout::PerConnection);
        fs::remove_dir(&dir).unwrap();
        let err = flat.begin(key(1, 1)).err().unwrap();
        assert_eq!(err.op, StoreOp::Create);
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
        let err = per.begin(key(1, 1)).err().unwrap();
        assert_eq!(err.op, StoreOp::CreateDir);
    }

    /// Every kind of thing that can sit on a temporary's name: none is
    /// opened, written or removed; another name is used.
    #[test]
    fn a_temporary_never_reuses_an_existing_name_of_any_kind() {
        let tmp = TempDir::new("dirstore-clash");
        let outside = TempDir::new("dirstore-clash-outside");
        let target = outside.0.join("target");
        fs::write(&target, b"precious\n").unwrap();
        let dir = &tmp.0;
        symlink(&target, dir.join(".1.txt.5.tmp")).unwrap();
        symlink(outside.0.join("missing"), dir.join(".1.txt.5.1.tmp")).unwrap();
        rustix::fs::mkfifoat(CWD, dir.join(".1.txt.5.2.tmp"), Mode::from_raw_mode(0o600)).unwrap();
        fs::create_dir(dir.join(".1.txt.5.3.tmp")).unwrap();
        fs::write(dir.join(".1.txt.5.4.tmp"), b"theirs").unwrap();
        let before = tmp.listing();
        let mut store = store(dir, UploadLayout::Flat);
        let mut file = store.begin(key(5, 1)).unwrap();
        file.write(b"mine\n").unwrap();
        assert!(tmp.listing().contains(&".1.txt.5.5.tmp".to_string()));
        file.commit().unwrap();
        assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"mine\n");
        let mut after = before.clone();
        after.push("1.txt".into());
        after.sort();
        assert_eq!(tmp.listing(), after);
        assert_eq!(fs::read(&target).unwrap(), b"precious\n");
        assert_eq!(outside.listing(), vec!["target"]);
        // With every name taken, the file is refused and nothing changes.
        for n in 0..NAME_TRIES {
            let _ = fs::write(dir.join(temp_name(key(6, 1), n)), b"");
        }
        let before = tmp.listing();
        let err = store.begin(key(6, 1)).err().unwrap();
        assert_eq!(err.op, StoreOp::Create);
        assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(tmp.listing(), before);
    }

    #[test]
    fn the_commit_replaces_a_link_named_k_txt_and_never_writes_through_it() {
        let tmp = TempDir::new("dirstore-link");
        let outside = TempDir::new("dirstore-link-outside");
        let target = outside.0.join("target");
        fs::write(&target, b"precious\n").unwrap();
        symlink(&target, tmp.0.join("1.txt")).unwrap();
        let mut store = store(&tmp.0, UploadLayout::Flat);
        let mut file = store.begin(key(1, 1)).unwrap();
        file.write(b"mine\n").unwrap();
        file.commit().unwrap();
        let meta = fs::symlink_metadata(tmp.0.join("1.txt")).unwrap();
        assert!(meta.file_type().is_file(), "the link itself was replaced");
        assert_eq!(fs::read(tmp.0.join("1.txt")).unwrap(), b"mine\n");
        assert_eq!(fs::read(&target).unwrap(), b"precious\n");
    }

    #[test]
    fn a_per_connection_directory_is_always_new() {
        let tmp = TempDir::new("dirstore-conndir");
        let outside = TempDir::new("dirstore-conndir-outside");
        let dir = &tmp.0;
        symlink(&outside.0, dir.join("20261121T210501Z-c7")).unwrap();
        fs::create_dir(dir.join("20261121T210501Z-c7.1")).unwrap();
        let mut store = store(dir, UploadLayout::PerConnection);
        let mut file = store.begin(key(7, 1)).unwrap();
        file.write(b"mine\n").unwrap();
        file.commit().unwrap();
        store.end_connection(7);
        assert_eq!(
            fs::read(dir.join("20261121T210501Z-c7.2/1.txt")).unwrap(),
            b"mine\n"
        );
        assert!(outside.listing().is_empty());
        // A connection that saved nothing removes only its own directory.
        store.begin(key(8, 1)).unwrap().abort();
        store.end_connection(8);
        assert_eq!(
            tmp.listing(),
            vec![
                "20261121T210501Z-c7",
                "20261121T210501Z-c7.1/",
                "20261121T210501Z-c7.2/",
                "20261121T210501Z-c7.2/1.txt",
            ]
        );
    }

    /// A connection's directory swapped for another (a link or a
    /// directory) between two files: the next file is refused, and nothing
    /// is written into the impostor.
    #[test]
    fn a_swapped_per_connection_directory_is_not_written_into() {
        let tmp = TempDir::new("dirstore-swapdir");
        let outside = TempDir::new("dirstore-swapdir-outside");
        let dir = &tmp.0;
        let mut store = store(dir, UploadLayout::PerConnection);
        store.begin(key(9, 1)).unwrap().commit().unwrap();
        let name = "20261121T210501Z-c9";
        fs::rename(dir.join(name), dir.join("moved")).unwrap();
        for impostor in ["link", "dir"] {
            if impostor == "link" {
                symlink(&outside.0, dir.join(name)).unwrap();
            } else {
                fs::remove_file(dir.join(name)).unwrap();
                fs::create_dir(dir.join(name)).unwrap();
            }
            let file = store.begin(key(9, 2)).unwrap();
            let err = file.commit().unwrap_err();
            assert_eq!(err.op, StoreOp::Rename, "{impostor}");
        }
        assert!(outside.listing().is_empty());
        assert_eq!(
            tmp.listing(),
            vec!["20261121T210501Z-c9/", "moved/", "moved/1.txt"]
        );
    }

    /// A temporary renamed away and replaced by someone else's file is
    /// neither removed nor published.
    #[test]
    fn only_the_temporary_it_created_is_removed_or_renamed() {
        let tmp = TempDir::new("dirstore-swap");
        let dir = &tmp.0;
        let mut store = store(dir, UploadLayout::Flat);
        let file = store.begin(key(3, 1)).unwrap();
        fs::rename(dir.join(".1.txt.3.tmp"), dir.join("moved")).unwrap();
        fs::write(dir.join(".1.txt.3.tmp"), b"theirs").unwrap();
        drop(file);
        assert_eq!(fs::read(dir.join(".1.txt.3.tmp")).unwrap(), b"theirs");
        fs::remove_file(dir.join(".1.txt.3.tmp")).unwrap();

        let file = store.begin(key(4, 1)).unwrap();
        fs::remove_file(dir.join(".1.txt.4.tmp")).unwrap();
        fs::write(dir.join(".1.txt.4.tmp"), b"theirs").unwrap();
        let err = file.commit().unwrap_err();
        assert_eq!(err.op, StoreOp::Rename);
        assert!(!dir.join("1.txt").exists());
        assert_eq!(fs::read(dir.join(".1.txt.4.tmp")).unwrap(), b"theirs");
    }

    #[test]
    fn prepare_creates_the_directory_and_removes_only_stale_regular_temporaries() {
        let tmp = TempDir::new("prepare");
        let outside = TempDir::new("prepare-outside");
        fs::write(outside.0.join(".1.txt.9.tmp"), b"x").unwrap();
        let dir = tmp.0.join("a/b");
        prepare(&config(&dir)).unwrap();
        assert!(dir.is_dir());

        let conn = dir.join("20261121T210501Z-c7");
        fs::create_dir(&conn).unwrap();
        for path in [
            dir.join(".1.txt.3.tmp"),
            dir.join(".1.txt.3.2.tmp"),
            dir.join("1.txt"),
            dir.join(".notes.tmp"),
            conn.join(".2.txt.7.tmp"),
        ] {
            fs::write(path, b"x").unwrap();
        }
        fs::create_dir(dir.join(".2.txt.3.tmp")).unwrap();
        fs::write(dir.join(".2.txt.3.tmp/.1.txt.1.tmp"), b"x").unwrap();
        symlink(outside.0.join(".1.txt.9.tmp"), dir.join(".3.txt.3.tmp")).unwrap();
        prepare(&config(&dir)).unwrap();
        assert_eq!(
            tmp.listing(),
            vec![
                "a/",
                "a/b/",
                "a/b/.2.txt.3.tmp/",
                "a/b/.2.txt.3.tmp/.1.txt.1.tmp",
                "a/b/.3.txt.3.tmp",
                "a/b/.notes.tmp",
                "a/b/1.txt",
                "a/b/20261121T210501Z-c7/",
                "a/b/20261121T210501Z-c7/.2.txt.7.tmp",
            ]
        );
        assert_eq!(outside.listing(), vec![".1.txt.9.tmp"]);
    }

    #[test]
    fn prepare_resolves_a_linked_directory_once() {
        let tmp = TempDir::new("prepare-link");
        let real = tmp.0.join("real");
        fs::create_dir(&real).unwrap();
        symlink(&real, tmp.0.join("link")).unwrap();
        let mut store = prepare(&config(&tmp.0.join("link"))).unwrap();
        assert_eq!(store.path(), fs::canonicalize(&real).unwrap());
        // Pointing the link elsewhere later changes nothing.
        fs::remove_file(tmp.0.join("link")).unwrap();
        fs::create_dir(tmp.0.join("other")).unwrap();
        symlink(tmp.0.join("other"), tmp.0.join("link")).unwrap();
        store.begin(key(1, 1)).unwrap().commit().unwrap();
        assert!(real.join("1.txt").exists());
        assert!(!tmp.0.join("other/1.txt").exists());
    }

    mod planted {
        //! Whatever others plant in the directory, before the uploads of
        //! a few connections: nothing outside changes, nothing planted is
        //! touched but a `<k>.txt` a commit replaced, and every committed
        //! file is a regular file with what was sent.
        use super::*;
        use proptest::prelude::*;

        /// What can sit on a name.
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

        /// Names the server may use for connections 1–2, files 1–2.
        fn arb_name() -> impl Strategy<Value = String> {
            let key = (1u64..=2, 1u64..=2);
            prop_oneof![
                (key.clone(), 0..NAME_TRIES).prop_map(|((c, k), n)| temp_name(key_of(c, k), n)),
                (1u64..=2).prop_map(|k| format!("{k}.txt")),
                ((1u64..=2), 0..3u32).prop_map(|(c, n)| connection_dir_name(key_of(c, 1), n)),
            ]
        }

        fn key_of(conn: u64, k: u64) -> FileKey {
            key(conn, k)
        }

        /// A planted name's kind and content, not following links.
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
            #![proptest_config(ProptestConfig::with_cases(48))]
            #[test]
            fn nothing_planted_is_followed_or_touched(
                plants in proptest::collection::btree_map(arb_name(), arb_kind(), 0..10),
                per_connection in any::<bool>(),
                drop_second in any::<bool>(),
            ) {
                let tmp = TempDir::new("planted");
                let outside = TempDir::new("planted-outside");
                let target = outside.0.join("target");
                fs::write(&target, b"precious\n").unwrap();
                let dir = &tmp.0;
                for (name, kind) in &plants {
                    let path = dir.join(name);
                    match kind {
                        Kind::File => fs::write(&path, b"theirs").unwrap(),
                        Kind::LinkOut => symlink(&target, &path).unwrap(),
                        Kind::Dangling => symlink(outside.0.join("new"), &path).unwrap(),
                        Kind::Fifo => {
                            rustix::fs::mkfifoat(CWD, &path, Mode::from_raw_mode(0o600)).unwrap()
                        }
                        Kind::Dir => fs::create_dir(&path).unwrap(),
                    }
                }
                let before: Vec<(String, Option<String>)> =
                    plants.keys().map(|n| (n.clone(), state(&dir.join(n)))).collect();
                let layout = if per_connection {
                    UploadLayout::PerConnection
                } else {
                    UploadLayout::Flat
                };
                let mut store = store(dir, layout);
                let mut saved = Vec::new();
                for conn in 1..=2u64 {
                    for k in 1..=2u64 {
                        let Ok(mut file) = store.begin(key(conn, k)) else { continue };
                        let body = format!("conn {conn} file {k}\n");
                        file.write(body.as_bytes()).unwrap();
                        if drop_second && k == 2 {
                            drop(file);
                        } else if file.commit().is_ok() {
                            saved.push((conn, k, body));
                        }
                    }
                    store.end_connection(conn);
                }
                prop_assert_eq!(fs::read(&target).unwrap(), b"precious\n");
                prop_assert_eq!(outside.listing(), vec!["target".to_string()]);
                // Committed files are regular, with what was sent (the
                // flat layout: the later connection's k.txt wins).
                for (conn, k, body) in &saved {
                    let later = saved.iter().any(|(c, kk, _)| c > conn && kk == k);
                    if per_connection {
                        let found = fs::read_dir(dir).unwrap().flatten().any(|e| {
                            let name = e.file_name().to_string_lossy().into_owned();
                            let ours = name.ends_with(&format!("-c{conn}"))
                                || name.contains(&format!("-c{conn}."));
                            let p = e.path().join(format!("{k}.txt"));
                            ours && e.file_type().unwrap().is_dir()
                                && fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_file())
                                && fs::read(&p).unwrap() == body.as_bytes()
                        });
                        prop_assert!(found, "conn {} file {}", conn, k);
                    } else if !later {
                        let p = dir.join(format!("{k}.txt"));
                        prop_assert!(fs::symlink_metadata(&p).unwrap().file_type().is_file());
                        prop_assert_eq!(fs::read(&p).unwrap(), body.as_bytes());
                    }
                }
                // Everything planted is as it was, but a k.txt replaced.
                for (name, was) in &before {
                    let replaced = !per_connection
                        && saved.iter().any(|(_, k, _)| *name == format!("{k}.txt"));
                    if !replaced {
                        prop_assert_eq!(&state(&dir.join(name)), was, "{}", name);
                    }
                }
                // No temporary of ours is left.
                for entry in fs::read_dir(dir).unwrap().flatten() {
                    let name = entry.file_name().into_string().unwrap();
                    if is_temp_name(&name) {
                        prop_assert!(plants.contains_key(&name), "left {}", name);
                    }
                }
            }
        }
    }

    #[test]
    fn prepare_fails_on_a_path_that_is_a_file() {
        let tmp = TempDir::new("prepare-file");
        let file = tmp.0.join("f");
        fs::write(&file, b"").unwrap();
        let err = prepare(&config(&file)).err().unwrap();
        assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
        let err = prepare(&config(&file.join("sub"))).err().unwrap();
        assert!(
            err.to_string()
                .starts_with("cannot create upload directory"),
            "{err}"
        );
    }
}
