//! The filesystem [`Store`]: each file goes to a temporary in its final
//! directory and is renamed over `<k>.txt` when complete; and the start-up
//! step [`prepare_upload_dir`] that creates the upload directory and clears
//! temporaries a crashed server left behind.
//!
//! These calls block the event loop while the kernel does them; see the
//! module doc of [`super`] for what that costs.

use std::ffi::CString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::store::{
    connection_dir_name, is_connection_dir_name, is_temp_name, temp_name, FileKey, PendingFile,
    Store, StoreError, StoreOp,
};
use crate::config::{Config, UploadLayout};

/// Saves uploads under a directory, in either layout.
#[derive(Debug, Clone)]
pub struct DirStore {
    dir: PathBuf,
    layout: UploadLayout,
    fsync: bool,
}

impl DirStore {
    /// A store saving into `dir` (which [`prepare_upload_dir`] has made).
    /// With `fsync`, a file and its directory are flushed to stable storage
    /// before the file is acknowledged. Does no I/O itself.
    pub fn new(dir: PathBuf, layout: UploadLayout, fsync: bool) -> DirStore {
        DirStore { dir, layout, fsync }
    }

    /// The store `config` asks for.
    pub fn from_config(config: &Config) -> DirStore {
        DirStore::new(
            config.upload_dir.clone(),
            config.upload_layout,
            config.upload_fsync,
        )
    }
}

fn store_error(op: StoreOp, path: &Path, source: io::Error) -> StoreError {
    StoreError {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl Store for DirStore {
    fn begin(&mut self, key: FileKey) -> Result<Box<dyn PendingFile>, StoreError> {
        let (dir, own_dir) = match self.layout {
            UploadLayout::Flat => (self.dir.clone(), false),
            UploadLayout::PerConnection => {
                let dir = self.dir.join(connection_dir_name(key));
                match fs::create_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(store_error(StoreOp::CreateDir, &dir, e)),
                }
                (dir, true)
            }
        };
        let temp = dir.join(temp_name(key));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp);
        let file = match file {
            Ok(file) => file,
            Err(e) => {
                if own_dir {
                    // The directory may be this connection's, just made.
                    let _ = fs::remove_dir(&dir);
                }
                return Err(store_error(StoreOp::Create, &temp, e));
            }
        };
        Ok(Box::new(DirFile {
            file,
            dest: dir.join(format!("{}.txt", key.k)),
            temp,
            own_dir: own_dir.then_some(dir),
            fsync: self.fsync,
            committed: false,
        }))
    }
}

/// One file being received: an open temporary and where it goes.
struct DirFile {
    file: File,
    temp: PathBuf,
    dest: PathBuf,
    /// The per-connection directory, removed on abort if left empty.
    own_dir: Option<PathBuf>,
    fsync: bool,
    committed: bool,
}

impl PendingFile for DirFile {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.file
            .write_all(bytes)
            .map_err(|e| store_error(StoreOp::Write, &self.temp, e))
    }

    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        if self.fsync {
            self.file
                .sync_all()
                .map_err(|e| store_error(StoreOp::Sync, &self.temp, e))?;
        }
        fs::rename(&self.temp, &self.dest)
            .map_err(|e| store_error(StoreOp::Rename, &self.dest, e))?;
        self.committed = true;
        if self.fsync {
            // The rename is durable once the directory entry is.
            let dir = self.dest.parent().unwrap_or(Path::new("."));
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| store_error(StoreOp::Sync, dir, e))?;
        }
        Ok(())
    }
}

impl Drop for DirFile {
    /// An uncommitted file is aborted: its temporary is removed, and a
    /// per-connection directory left empty goes too, so a dropped upload
    /// leaves no trace.
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        match fs::remove_file(&self.temp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot remove {}: {e}", self.temp.display()),
        }
        if let Some(dir) = &self.own_dir {
            // Fails, as it should, when the connection saved other files.
            let _ = fs::remove_dir(dir);
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
        }
    }
}

impl std::error::Error for UploadDirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UploadDirError::Create { source, .. } => Some(source),
            UploadDirError::NotADirectory(_) => None,
        }
    }
}

/// Makes `config.upload_dir` ready before the server accepts anyone:
/// creates it if missing (an error if that fails or the path is not a
/// directory), then removes the temporaries a crash left behind, in it and
/// in its per-connection directories (and those directories, if that
/// leaves them empty). Only names the server itself makes are touched.
///
/// A directory that exists but cannot be written is not an error (the
/// permissions may be fixed while the server runs); it is logged as a
/// warning, and uploads are answered `E` meanwhile.
pub fn prepare_upload_dir(config: &Config) -> Result<(), UploadDirError> {
    let dir = &config.upload_dir;
    fs::create_dir_all(dir).map_err(|source| UploadDirError::Create {
        path: dir.clone(),
        source,
    })?;
    if !dir.is_dir() {
        return Err(UploadDirError::NotADirectory(dir.clone()));
    }
    let removed = remove_stale(dir, true);
    if removed > 0 {
        log::info!(
            "removed {removed} stale upload temporar{} from {}",
            if removed == 1 { "y" } else { "ies" },
            dir.display()
        );
    }
    if !writable(dir) {
        log::warn!(
            "upload directory {} is not writable: uploads will be answered E",
            dir.display()
        );
    }
    Ok(())
}

/// Removes stale temporaries in `dir` (and, at the top, in per-connection
/// directories); returns how many. Failures are logged, not fatal.
fn remove_stale(dir: &Path, top: bool) -> usize {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            log::warn!("cannot list {} to clean temporaries: {e}", dir.display());
            return 0;
        }
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_temp_name(name) && !is_dir {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => log::warn!("cannot remove {}: {e}", entry.path().display()),
            }
        } else if top && is_dir && is_connection_dir_name(name) {
            let path = entry.path();
            removed += remove_stale(&path, false);
            // Only an empty directory goes: one a crash left with nothing.
            let _ = fs::remove_dir(&path);
        }
    }
    removed
}

/// Whether this process may create files in `dir`.
fn writable(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::upload::test_dir::TempDir;
    use std::time::{Duration, SystemTime};

    fn key(conn_id: u64, k: u64) -> FileKey {
        FileKey {
            conn_id,
            conn_started: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_295_101),
            k,
        }
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
        let mut store = DirStore::new(tmp.0.clone(), UploadLayout::Flat, false);
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
        let mut store = DirStore::new(tmp.0.clone(), UploadLayout::Flat, false);
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
        let mut store = DirStore::new(tmp.0.clone(), UploadLayout::Flat, true);
        let mut file = store.begin(key(1, 2)).unwrap();
        file.write(b"x\n").unwrap();
        file.commit().unwrap();
        assert_eq!(fs::read(tmp.0.join("2.txt")).unwrap(), b"x\n");
    }

    #[test]
    fn per_connection_files_go_in_a_directory_named_by_time_and_connection() {
        let tmp = TempDir::new("dirstore-perconn");
        let mut store = DirStore::new(tmp.0.clone(), UploadLayout::PerConnection, false);
        for k in 1..=2 {
            let mut file = store.begin(key(42, k)).unwrap();
            file.write(format!("{k}\n").as_bytes()).unwrap();
            file.commit().unwrap();
        }
        assert_eq!(
            tmp.listing(),
            vec![
                "20261121T210501Z-c42/",
                "20261121T210501Z-c42/1.txt",
                "20261121T210501Z-c42/2.txt"
            ]
        );
        // A connection that drops in its first file leaves no directory.
        store.begin(key(43, 1)).unwrap().abort();
        // One that drops in a later file keeps the files it saved.
        store.begin(key(42, 3)).unwrap().abort();
        assert_eq!(tmp.listing().len(), 3);
    }

    #[test]
    fn a_rename_over_a_directory_fails_and_removes_the_temporary() {
        let tmp = TempDir::new("dirstore-rename");
        fs::create_dir(tmp.0.join("1.txt")).unwrap();
        fs::write(tmp.0.join("1.txt/keep"), b"").unwrap();
        let mut store = DirStore::new(tmp.0.clone(), UploadLayout::Flat, false);
        let mut file = store.begin(key(1, 1)).unwrap();
        file.write(b"x\n").unwrap();
        let err = file.commit().unwrap_err();
        assert_eq!(err.op, StoreOp::Rename);
        assert_eq!(tmp.listing(), vec!["1.txt/", "1.txt/keep"]);
    }

    #[test]
    fn a_missing_directory_is_a_create_error() {
        let tmp = TempDir::new("dirstore-missing");
        let mut store = DirStore::new(tmp.0.join("gone"), UploadLayout::Flat, false);
        let err = store.begin(key(1, 1)).err().unwrap();
        assert_eq!(err.op, StoreOp::Create);
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
        let mut store = DirStore::new(tmp.0.join("gone"), UploadLayout::PerConnection, false);
        let err = store.begin(key(1, 1)).err().unwrap();
        assert_eq!(err.op, StoreOp::CreateDir);
    }

    #[test]
    fn prepare_creates_the_directory_and_removes_only_stale_temporaries() {
        let tmp = TempDir::new("prepare");
        let dir = tmp.0.join("a/b");
        prepare_upload_dir(&config(&dir)).unwrap();
        assert!(dir.is_dir());

        let conn = dir.join("20261121T210501Z-c7");
        let crashed = dir.join("20261121T210502Z-c8");
        fs::create_dir(&conn).unwrap();
        fs::create_dir(&crashed).unwrap();
        for path in [
            dir.join(".1.txt.3.tmp"),
            dir.join("1.txt"),
            dir.join(".notes.tmp"),
            conn.join(".2.txt.7.tmp"),
            conn.join("1.txt"),
            crashed.join(".1.txt.8.tmp"),
        ] {
            fs::write(path, b"x").unwrap();
        }
        prepare_upload_dir(&config(&dir)).unwrap();
        assert_eq!(
            tmp.listing(),
            vec![
                "a/",
                "a/b/",
                "a/b/.notes.tmp",
                "a/b/1.txt",
                "a/b/20261121T210501Z-c7/",
                "a/b/20261121T210501Z-c7/1.txt",
            ]
        );
    }

    #[test]
    fn prepare_fails_on_a_path_that_is_a_file() {
        let tmp = TempDir::new("prepare-file");
        let file = tmp.0.join("f");
        fs::write(&file, b"").unwrap();
        let err = prepare_upload_dir(&config(&file)).unwrap_err();
        assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
        let err = prepare_upload_dir(&config(&file.join("sub"))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot create upload directory"),
            "{err}"
        );
    }
}
