//! Checks of the JSON files of a run directory against what the trainer writes and the model
//! they belong to: `best/state.json`, `checkpoint/state.json`, `best/maci.json`. A tampered or
//! damaged file is refused with one line naming the file, the key and what was expected.

use std::path::Path;

use cider_maci::counterfactual::TAU_STEPS;
use cider_maci::full_model::CiderConfig;

use crate::checkpoint::CheckpointError;
use crate::run_state::{BestInfo, MaciState, TrainerState};

/// Vocabulary size of `bert-base-uncased`, whose word-piece ids MMSA's `text_bert` holds: the
/// bound of bias-word ids of a model with precomputed text features.
pub const MMSA_VOCAB_SIZE: usize = 30_522;

/// Largest allowed `|Σ priors − 1|` in `maci.json` (f32 rounding of `count / N`).
const PRIOR_SUM_TOLERANCE: f64 = 1e-3;

fn bad(path: &Path, key: &str, message: String) -> CheckpointError {
    CheckpointError::Format {
        path: path.to_path_buf(),
        message: format!("`{key}` {message}"),
    }
}

/// Checks `best/state.json` (at `path`): `epoch` in `1..=epochs` (`epochs`: the run's
/// finished epochs, when known), `value` finite, `tau` on the grid {0, 0.1, …, 3}
/// (docs/method.md §7.4).
///
/// # Errors
/// [`CheckpointError::Format`] naming the key.
pub fn check_best(
    info: &BestInfo,
    epochs: Option<usize>,
    path: &Path,
) -> Result<(), CheckpointError> {
    let max_epoch = epochs.unwrap_or(usize::MAX);
    if info.epoch == 0 || info.epoch > max_epoch {
        let range = epochs.map_or("≥ 1".to_string(), |n| format!("in 1..={n}"));
        return Err(bad(
            path,
            "epoch",
            format!(
                "= {}, expected an epoch {range} (the run's finished epochs)",
                info.epoch
            ),
        ));
    }
    if !info.value.is_finite() {
        return Err(bad(
            path,
            "value",
            format!("= {}, expected a finite metric", info.value),
        ));
    }
    let tau_max = (TAU_STEPS - 1) as f64 / 10.0;
    let k = (info.tau * 10.0).round();
    if !(info.tau.is_finite()
        && (0.0..=tau_max).contains(&info.tau)
        && (info.tau - k / 10.0).abs() < 1e-9)
    {
        return Err(bad(
            path,
            "tau",
            format!(
                "= {}, expected a τ of the grid 0, 0.1, …, {tau_max} (docs/method.md §7.4)",
                short_number(info.tau)
            ),
        ));
    }
    Ok(())
}

/// Checks `checkpoint/state.json` (at `path`): one history record per finished epoch, epochs
/// `1..=epoch` in order, the best epoch among them.
///
/// # Errors
/// [`CheckpointError::Format`] naming the key.
pub fn check_trainer_state(state: &TrainerState, path: &Path) -> Result<(), CheckpointError> {
    if state.history.len() != state.epoch {
        return Err(bad(
            path,
            "history",
            format!(
                "has {} records, expected one per finished epoch (`epoch` = {})",
                state.history.len(),
                state.epoch
            ),
        ));
    }
    if let Some((i, record)) = state
        .history
        .iter()
        .enumerate()
        .find(|(i, r)| r.epoch != i + 1)
    {
        return Err(bad(
            path,
            &format!("history[{i}].epoch"),
            format!("= {}, expected {}", record.epoch, i + 1),
        ));
    }
    if let Some(best) = state
        .stopping
        .best_epoch
        .filter(|&b| b == 0 || b > state.epoch)
    {
        return Err(bad(
            path,
            "stopping.best_epoch",
            format!("= {best}, expected an epoch in 1..={}", state.epoch),
        ));
    }
    Ok(())
}

/// Checks `best/maci.json` (at `path`) against the model: one prototype of
/// `d_l + d_a + d_v` values per class, priors a distribution over the classes (each in
/// [0, 1], summing to 1), bias-word ids below the vocabulary size (docs/method.md §4.1, §7.2).
///
/// # Errors
/// [`CheckpointError::Format`] naming the key.
pub fn check_maci(
    maci: &MaciState,
    model: &CiderConfig,
    path: &Path,
) -> Result<(), CheckpointError> {
    let classes = model.num_classes;
    let n = &model.network;
    let features = n.d_l + n.d_a + n.d_v;
    if maci.prototypes.len() != classes {
        return Err(bad(
            path,
            "prototypes",
            format!(
                "has {} rows, expected one per class ({classes})",
                maci.prototypes.len()
            ),
        ));
    }
    if let Some((class, row)) = maci
        .prototypes
        .iter()
        .enumerate()
        .find(|(_, r)| r.len() != features)
    {
        return Err(bad(
            path,
            &format!("prototypes[{class}]"),
            format!(
                "has {} values, expected d_l + d_a + d_v = {} + {} + {} = {features}",
                row.len(),
                n.d_l,
                n.d_a,
                n.d_v
            ),
        ));
    }
    if maci.priors.len() != classes {
        return Err(bad(
            path,
            "priors",
            format!(
                "has {} values, expected one per class ({classes})",
                maci.priors.len()
            ),
        ));
    }
    let sum: f64 = maci.priors.iter().map(|&p| f64::from(p)).sum();
    let in_range = maci.priors.iter().all(|p| (0.0..=1.0).contains(p));
    if !in_range || (sum - 1.0).abs() > PRIOR_SUM_TOLERANCE {
        return Err(bad(
            path,
            "priors",
            format!(
                "= {:?}, expected class frequencies in [0, 1] that sum to 1",
                maci.priors
            ),
        ));
    }
    let vocab = n.bert.as_ref().map_or(MMSA_VOCAB_SIZE, |b| b.vocab_size);
    if let Some((i, id)) = maci
        .bias_words
        .iter()
        .enumerate()
        .find(|(_, id)| **id as usize >= vocab)
    {
        return Err(bad(
            path,
            &format!("bias_words[{i}]"),
            format!("= {id}, expected a word-piece id below the vocabulary size {vocab}"),
        ));
    }
    Ok(())
}

/// `x` as written, or in scientific notation when it is too long to echo (`1e308`).
fn short_number(x: f64) -> String {
    if x.abs() < 1e9 {
        x.to_string()
    } else {
        format!("{x:e}")
    }
}
