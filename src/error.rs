//! The CLI's error type: library errors plus output-file failures.

use std::path::PathBuf;

/// Anything a `cider` command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Data(#[from] cider_data::DataError),

    #[error(transparent)]
    Model(#[from] cider_model::ModelError),

    #[error(transparent)]
    Eval(#[from] cider_train::evaluate::EvalError),

    #[error(transparent)]
    Checkpoint(#[from] cider_train::checkpoint::CheckpointError),

    #[error(transparent)]
    Config(#[from] cider_train::config::ConfigError),

    #[error(transparent)]
    Train(#[from] cider_train::trainer::TrainError),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Usage(String),
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
