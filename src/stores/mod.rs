//! The file-system back-ends of the cores' storage traits: the only part
//! of the crate besides the loop that does I/O, kept out of both `proto`
//! (sans-IO) and `server` (which knows no protocol). [`attach`] prepares,
//! at start, the back-end of each protocol served that stores files.

pub mod upload;

use crate::config::Config;
use crate::proto::{Protocol, Shared};

/// A store that could not be prepared at start.
pub type StoreError = upload::UploadDirError;

/// Prepares the storage back-end of every protocol `config` serves that
/// needs one, and hands it to that protocol's shared state.
pub fn attach(config: &Config, shared: &mut Shared) -> Result<(), StoreError> {
    if config.listeners.iter().any(|(p, _)| *p == Protocol::Upload) {
        shared.upload.store = Box::new(upload::prepare(config)?);
    }
    Ok(())
}
