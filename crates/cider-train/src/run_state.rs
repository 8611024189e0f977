//! What a run persists besides the weights and the optimiser state (docs/method.md §6.3 exact
//! resuming, §6.4 the chosen checkpoint, §7.2 the MACI confounders): `checkpoint/state.json`,
//! `best/state.json` and `best/maci.json`.

use serde::{Deserialize, Serialize};

use crate::early_stopping::EarlyStopping;
use crate::epoch_record::EpochRecord;

/// Everything a resumed run needs besides the weights and the optimiser state. The random
/// streams need no state: they are derived from `(seed, epoch)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Epochs finished.
    pub epoch: usize,
    /// The patience counter and the best metric.
    pub stopping: EarlyStopping,
    /// One record per finished epoch.
    pub history: Vec<EpochRecord>,
}

/// `best/state.json`: which epoch the best model is from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestInfo {
    /// Its epoch.
    pub epoch: usize,
    /// The split that selected it.
    pub split: String,
    /// Headline metric name.
    pub metric: String,
    /// Headline metric value.
    pub value: f64,
    /// τ chosen on the validation split (0 for the linear classifier).
    pub tau: f64,
}

/// `best/maci.json`: what inference needs besides the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaciState {
    /// Bias-word ids of the training split (docs/method.md §4.1), in dictionary order.
    pub bias_words: Vec<u32>,
    /// Training prototypes `z_i`, `C × (d_l + d_a + d_v)`.
    pub prototypes: Vec<Vec<f32>>,
    /// Training class prior `P(z_i)`.
    pub priors: Vec<f32>,
}
