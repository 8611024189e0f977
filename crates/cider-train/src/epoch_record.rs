//! The record of one finished epoch (docs/method.md §6.2 losses, §6.4 selection metric): a
//! row of `metrics.csv` in its CSV form, an object of `metrics.json` in its JSON form.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// What one epoch did (a row of `metrics.csv`, an object of `metrics.json`). Losses are
/// per-sample means over the epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// The reference's logged loss: `L_2` (or the task loss without distillation).
    pub train_loss: f64,
    /// `L_1`, the complete-view task loss (or the missing-view one without distillation).
    pub task_loss: f64,
    /// `NLL_m`, the missing-view task loss (MSSD only).
    pub task_m_loss: Option<f64>,
    /// `L_rep` (MSSD only).
    pub joint_rep_loss: Option<f64>,
    /// `KL_attn` (MSSD only).
    pub attn_loss: Option<f64>,
    /// `R_t` (MSSD only).
    pub recon_text: Option<f64>,
    /// `R_a` (MSSD only).
    pub recon_audio: Option<f64>,
    /// `R_v` (MSSD only).
    pub recon_vision: Option<f64>,
    /// The split whose metric selects epochs: `valid` or `test`.
    pub split: String,
    /// The headline metric's name (`Non0_acc_2` or `Acc_7`).
    pub metric: String,
    /// Its value at τ.
    pub value: f64,
    /// τ of the value.
    pub tau: f64,
    /// Whether the value strictly improved on the best so far.
    pub improved: bool,
    /// Best epoch after this one.
    pub best_epoch: usize,
    /// Seconds spent in training steps.
    pub train_seconds: f64,
    /// Seconds spent evaluating the selection split.
    pub eval_seconds: f64,
    /// Training samples per second of step time.
    pub samples_per_second: f64,
}

/// Columns of `metrics.csv`, in [`EpochRecord`] field order.
pub(crate) const CSV_HEADER: &str = "epoch,train_loss,task_loss,task_m_loss,joint_rep_loss,attn_loss,\
recon_text,recon_audio,recon_vision,split,metric,value,tau,improved,best_epoch,train_seconds,\
eval_seconds,samples_per_second";

impl EpochRecord {
    /// One CSV row (no newline); absent losses are empty cells.
    pub(crate) fn csv_row(&self) -> String {
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        let mut row = String::new();
        let _ = write!(
            row,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.epoch,
            self.train_loss,
            self.task_loss,
            opt(self.task_m_loss),
            opt(self.joint_rep_loss),
            opt(self.attn_loss),
            opt(self.recon_text),
            opt(self.recon_audio),
            opt(self.recon_vision),
            self.split,
            self.metric,
            self.value,
            self.tau,
            self.improved,
            self.best_epoch,
            self.train_seconds,
            self.eval_seconds,
            self.samples_per_second
        );
        row
    }
}
