//! The library's error type: every failure of the high-level API, by kind, so that a caller can
//! match on it; each displays as one line naming the file, the key or the input and what was
//! expected.

use std::path::PathBuf;

/// Anything the high-level API ([`crate::Run`], [`crate::Utterance`]) can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A dataset, pickle, joblib or `.npy` file could not be read or is malformed.
    #[error(transparent)]
    Data(#[from] cider_data::DataError),

    /// Model weights, configuration or inputs that do not fit the network.
    #[error(transparent)]
    Model(#[from] cider_model::ModelError),

    /// Prototypes or priors that do not fit the classifier.
    #[error(transparent)]
    Maci(#[from] cider_maci::MaciError),

    /// Evaluation or prediction inputs that disagree (sizes, prototypes, τ).
    #[error(transparent)]
    Eval(#[from] cider_train::evaluate::EvalError),

    /// A run directory's checkpoint files.
    #[error(transparent)]
    Checkpoint(#[from] cider_train::checkpoint::CheckpointError),

    /// A training configuration (TOML) with an unknown key, a wrong type or a bad value.
    #[error(transparent)]
    Config(#[from] cider_train::train_config::ConfigError),

    /// Training failed.
    #[error(transparent)]
    Train(#[from] cider_train::trainer::TrainError),

    /// The path is not a run directory of `cider train` nor a model directory inside one.
    #[error("{path}: not a run directory of `cider train` ({reason})")]
    NotARun {
        /// The path given.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },

    /// A dataset whose layout does not fit the run's model (alignment, lengths, sizes).
    #[error("{file}: does not fit the model of {run}: {message}")]
    DataMismatch {
        /// The dataset file.
        file: String,
        /// The model directory.
        run: PathBuf,
        /// The first size that differs, in the run and in the file.
        message: String,
    },

    /// An utterance whose arrays do not fit the model, or a τ that is not allowed.
    #[error("{what}: {message}")]
    Input {
        /// The input concerned (`audio`, `vision`, `text`, `tau`, …).
        what: String,
        /// What was expected.
        message: String,
    },
}

impl Error {
    /// An [`Error::Input`].
    pub fn input(what: &str, message: impl Into<String>) -> Self {
        Error::Input {
            what: what.to_string(),
            message: message.into(),
        }
    }
}
