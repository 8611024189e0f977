//! The CLI's error type: the library's errors plus usage and output-file failures.

use std::path::PathBuf;

/// Anything a `cider` command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Any error of the library and the crates behind it.
    #[error(transparent)]
    Library(cider::Error),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Usage(String),
}

/// Every error the library can convert ([`cider::Error`] and those of the crates behind it).
impl<E: Into<cider::Error>> From<E> for CliError {
    fn from(error: E) -> Self {
        CliError::Library(error.into())
    }
}

impl CliError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CliError::Io {
            path: path.into(),
            source,
        }
    }
}
