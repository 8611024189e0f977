//! The error of a training run ([`TrainError`]): every reason a run cannot start or continue,
//! as one line.

use std::path::PathBuf;

use cider_data::DataError;
use cider_maci::MaciError;
use cider_model::ModelError;

use crate::checkpoint::CheckpointError;
use crate::evaluate::EvalError;
use crate::train_config::ConfigError;

/// Anything that stops a run from starting or continuing. Displayed as one line.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// Writing or reading the run directory.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),

    /// Reading, generating or masking the data.
    #[error(transparent)]
    Data(#[from] DataError),

    /// Building the model, loading BERT, or inputs the model refuses.
    #[error(transparent)]
    Model(#[from] ModelError),

    /// Prototypes, priors, metrics.
    #[error(transparent)]
    Maci(#[from] MaciError),

    /// Evaluating the selection split.
    #[error(transparent)]
    Eval(#[from] EvalError),

    /// `--resume` on a directory without a checkpoint, or a fresh run over an existing one.
    #[error("{dir}: {message}")]
    RunDir {
        /// The run directory.
        dir: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// A checkpoint made with another configuration than the one requested.
    #[error(
        "{dir} was trained with another configuration: `{key}` is {saved} there but {requested} here"
    )]
    Mismatch {
        /// The run directory.
        dir: PathBuf,
        /// The first configuration key that differs (e.g. `model.num_heads`).
        key: String,
        /// Its value in the checkpoint's configuration.
        saved: String,
        /// Its value in the requested configuration.
        requested: String,
    },

    /// Data the configuration cannot train on.
    #[error("data {source_name}: {message}")]
    Unusable {
        /// The data source.
        source_name: String,
        /// What the data lacks.
        message: String,
    },

    /// A training step whose loss is NaN or infinite: the weights have diverged.
    #[error(
        "training diverged: the loss of epoch {epoch}, batch {batch} is {loss}; try a smaller \
         learning rate (`optim.lr` = {lr:e})"
    )]
    NonFiniteLoss {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based batch within the epoch.
        batch: usize,
        /// The logged loss.
        loss: f64,
        /// The learning rate outside the BERT.
        lr: f64,
    },

    /// Predictions of the selection split that are NaN or infinite after an epoch: the
    /// weights have diverged.
    #[error(
        "training diverged: after epoch {epoch} the model predicts {value} ({what}); try a \
         smaller learning rate (`optim.lr` = {lr:e})"
    )]
    NonFinitePrediction {
        /// 1-based epoch.
        epoch: usize,
        /// The output concerned.
        what: String,
        /// The offending value.
        value: f64,
        /// The learning rate outside the BERT.
        lr: f64,
    },

    /// A step failed earlier and consumed the model.
    #[error("the trainer cannot continue after a failed training step")]
    Poisoned,
}
