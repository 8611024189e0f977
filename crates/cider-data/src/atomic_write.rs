//! Atomic file writes for every writer of the workspace's data files (pickle, `.npy`,
//! safetensors, `tokenizer.json`): the bytes go to a
//! temporary sibling of the target, are synced, then renamed over it, so readers never see a
//! half-written file.

use std::io::Write;
use std::path::Path;

use crate::error::DataError;

/// Writes `bytes` to a temporary sibling of `path`, syncs it and renames it over `path`; on
/// failure the temporary file is removed.
///
/// # Errors
/// [`DataError::Invalid`] for a path without a file name, [`DataError::Io`] naming `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let name = path.file_name().ok_or_else(|| DataError::Invalid {
        what: "output path".to_string(),
        message: format!("{} has no file name", path.display()),
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    result.map_err(|e| {
        // Best effort: the temporary file may not exist.
        let _ = std::fs::remove_file(&temp);
        DataError::io(path, e)
    })
}
