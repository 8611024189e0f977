//! MACI (docs/method.md §7): the multimodal causal classifier (MCM), prototypes and priors,
//! counterfactual inference and the τ rules, and the whole CIDer model built on them.
//!
//! MACI works on any model's log-probabilities: the factual prediction `ℓ` and the prediction
//! `ℓ_cf` of the counterfactual input (only the bias words left) give the debiased scores
//! `s_τ = ℓ − τ·ℓ_cf` (docs/method.md §7.4), and the metrics say what debiasing bought:
//!
//! ```
//! use cider_data::dataset::Task;
//! use cider_maci::counterfactual::debiased_scores_at;
//! use cider_maci::metrics::{self, Metric};
//!
//! # fn main() -> Result<(), cider_maci::MaciError> {
//! // Two positive utterances, three classes (negative, neutral, positive), row-major [N, C].
//! // The first is called negative because of a shortcut word, which its counterfactual
//! // (nothing but that word) shows.
//! let pred = [-0.5_f32, -3.0, -1.0, -2.0, -3.0, -0.2];
//! let cf_pred = [-0.2_f32, -3.0, -2.5, -1.0, -1.0, -1.0];
//! let scores = debiased_scores_at(&pred, &cf_pred, 1.0)?; // s = ℓ − 1.0·ℓ_cf
//! assert_eq!(metrics::argmax(&scores[..3]), 2);
//! let labels = [2_u8, 2];
//! let plain = metrics::evaluate(Task::Binary, &pred, &labels)?;
//! let debiased = metrics::evaluate(Task::Binary, &scores, &labels)?;
//! assert_eq!(plain.get(Metric::Non0Acc2), Some(0.5));
//! assert_eq!(debiased.get(Metric::Non0Acc2), Some(1.0));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod counterfactual;
pub mod error;
pub mod full_model;
pub mod golden;
pub mod inference;
pub mod mcm;
pub mod metrics;
pub mod prototypes;
pub mod reference_checkpoint;
pub mod reference_prototypes;
pub mod tau_rules;

pub use error::MaciError;
