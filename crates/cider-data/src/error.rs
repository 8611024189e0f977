//! The one error type of `cider-data`. Every variant names the file (or source) involved, the key
//! or offset, and what was expected, so that a user can fix the input without reading our code.

use std::path::PathBuf;

/// Everything that can go wrong while reading, validating or writing CIDer data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O failure on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An array whose element count disagrees with its shape.
    #[error("array of shape {shape:?} cannot hold {len} elements")]
    ArrayShape {
        /// The shape.
        shape: Vec<usize>,
        /// The number of elements given.
        len: usize,
    },

    /// A file that is not a readable PyTorch checkpoint (`torch.save` zip), or one whose
    /// tensors are not rebuilt the way PyTorch writes them.
    #[error("{file}: bad PyTorch checkpoint: {message}")]
    Checkpoint {
        /// The file involved.
        file: String,
        /// What is wrong, and what was expected.
        message: String,
    },

    /// A malformed or truncated pickle stream.
    #[error("{file}: bad pickle at byte {offset}: {message}")]
    Pickle {
        /// The file involved.
        file: String,
        /// Byte offset in the stream.
        offset: usize,
        /// What is wrong, and what was expected.
        message: String,
    },

    /// A pickle that asks for a Python global we do not allow (nothing is ever executed).
    #[error(
        "{file}: refused pickle global `{module}.{name}` at byte {offset} (only NumPy array reconstruction and plain containers are allowed)"
    )]
    ForbiddenGlobal {
        /// The file involved.
        file: String,
        /// Byte offset in the stream.
        offset: usize,
        /// The module of the global.
        module: String,
        /// The name of the global.
        name: String,
    },

    /// A malformed joblib container.
    #[error("{file}: bad joblib file: {message}")]
    Joblib {
        /// The file involved.
        file: String,
        /// What is wrong, and what was expected.
        message: String,
    },

    /// A malformed `.npy` / `.npz` file.
    #[error("{file}: bad npy data: {message}")]
    Npy {
        /// The file involved.
        file: String,
        /// What is wrong, and what was expected.
        message: String,
    },

    /// A required key is absent.
    #[error("{file}: missing key `{key}` (expected {expected})")]
    MissingKey {
        /// The file involved.
        file: String,
        /// The key involved (a dotted path for configuration keys).
        key: String,
        /// What was expected.
        expected: String,
    },

    /// A value of the wrong type or dtype.
    #[error("{file}: key `{key}` has type {found}, expected {expected}")]
    WrongType {
        /// The file involved.
        file: String,
        /// The key involved (a dotted path for configuration keys).
        key: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },

    /// An array of the wrong shape.
    #[error("{file}: key `{key}` has shape {found:?}, expected {expected}")]
    Shape {
        /// The file involved.
        file: String,
        /// The key involved (a dotted path for configuration keys).
        key: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: Vec<usize>,
    },

    /// A bad value (label out of range, length beyond the padded size, NaN where none may be…).
    #[error("{file}: key `{key}` at index {index}: {message}")]
    Value {
        /// The file involved.
        file: String,
        /// The key involved (a dotted path for configuration keys).
        key: String,
        /// Position of the offending value.
        index: usize,
        /// What is wrong, and what was expected.
        message: String,
    },

    /// A split with no sample.
    #[error("{file}: split `{split}` is empty")]
    EmptySplit {
        /// The file involved.
        file: String,
        /// The split involved.
        split: String,
    },

    /// A dataset catalog that cannot be used, or an entry that cannot be found
    /// ([`crate::catalog`]).
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),

    /// An invalid option (missing rate outside [0, 1], unknown layout name…).
    #[error("invalid {what}: {message}")]
    Invalid {
        /// The input involved.
        what: String,
        /// What is wrong, and what was expected.
        message: String,
    },
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
