//! MACI inference (docs/method.md §7.3, §7.4): a trained model's factual and counterfactual
//! passes over a split, and the metrics of `s_τ = ℓ − τ·ℓ_cf` over the τ grid.
//!
//! [`predict`] runs the model over a split in file order, [`EVAL_BATCH_SIZE`] samples a batch
//! (the batch-indexed positional term makes the batching matter, docs/method.md §11.1):
//! `ℓ = pred_m` for the missing view and `ℓ_cf = cf_pred_m` for its counterfactual (the text
//! keeps only the bias words, docs/method.md §4.2). [`Sweep`] turns those outputs into metrics.
//! Deterministic: batches are in file order and a non-autodiff backend runs without dropout.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use cider_data::batch::{Batch, Order, batch_indices, gather_rows};
use cider_data::dataset::{Split, Task};
use cider_data::missing::MissingView;
use cider_model::backbone::Backbone;
use cider_model::batch_input::BatchView;
use cider_model::network::InputMasks;
use serde::{Deserialize, Serialize};

use crate::MaciError;
use crate::counterfactual::{CfOutputs, Tau, TauSweep};
use crate::full_model::Maci;
use crate::metrics::{self, Metrics};
use crate::prototypes::Prototypes;

/// Evaluation batch size of the reference (docs/method.md §8.2), in file order.
pub const EVAL_BATCH_SIZE: usize = 128;

/// Whether MACI's counterfactual debiasing is applied (docs/method.md §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Debiasing {
    /// `s_τ = ℓ − τ·ℓ_cf` with τ from the grid {0.0, …, 3.0}.
    #[default]
    Maci,
    /// The plain MCM prediction: τ fixed at 0 for both rules, no counterfactual pass.
    NoMaci,
}

impl Debiasing {
    /// `"maci"` or `"no_maci"`.
    pub fn name(self) -> &'static str {
        match self {
            Debiasing::Maci => "maci",
            Debiasing::NoMaci => "no_maci",
        }
    }
}

/// The model outputs of one split, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// `C`, the number of classes.
    pub classes: usize,
    /// `ℓ = pred_m`: log-probabilities of the factual (missing-view) input, `[N, C]`.
    pub pred: Vec<f32>,
    /// `ℓ_cf = cf_pred_m` of the counterfactual input, `[N, C]`; `None` when no counterfactual
    /// ids were given.
    pub cf_pred: Option<Vec<f32>>,
}

/// Runs `model` (any backbone with MACI's classifier) over every sample of `split` in file order, `batch_size` samples a batch.
///
/// `view` is the split's missing view (all `N` rows, from [`cider_data::missing::eval_view`]); `cf_ids` are the
/// counterfactual token ids `[N, T_l]` (docs/method.md §4.2), or `None` for the factual pass only;
/// `confounders` are the split's test-time prototypes and priors (docs/method.md §7.2), the same for every
/// sample. The text goes to the model as its encoder takes it
/// ([`cider_model::batch_input`]: the missing view is the factual input).
///
/// # Errors
/// Sizes that disagree with the split, `batch_size` 0, precomputed-feature models on splits
/// without `text` features, and model input errors.
pub fn predict<B: Backend, M: Backbone<B>>(
    model: &Maci<B, M>,
    split: &Split,
    view: &MissingView,
    cf_ids: Option<&[u32]>,
    confounders: &Prototypes,
    batch_size: usize,
    device: &B::Device,
) -> Result<Predictions, MaciError> {
    let t_l = split.dims.t_l;
    if batch_size == 0 {
        return Err(invalid("batch size", "must be at least 1"));
    }
    if view.n != split.n || view.dims != split.dims {
        return Err(invalid(
            "missing view",
            format!(
                "it has {} rows of {:?}, split `{}` has {} samples of {:?}",
                view.n, view.dims, split.name, split.n, split.dims
            ),
        ));
    }
    if let Some(cf) = cf_ids
        && Some(cf.len()) != split.n.checked_mul(t_l)
    {
        return Err(invalid(
            "counterfactual ids",
            format!(
                "{} ids do not fill [{}, {t_l}] for split `{}`",
                cf.len(),
                split.n,
                split.name
            ),
        ));
    }
    let classes = confounders.num_classes();
    // Batches carry labels, which inference does not read.
    let labels = vec![0u8; split.n];
    let mut pred = Vec::with_capacity(split.n * classes);
    let mut cf_pred = cf_ids.map(|_| Vec::with_capacity(split.n * classes));
    for indices in batch_indices(split.n, batch_size, Order::Sequential, 0) {
        let rows = view.rows(&indices)?;
        let cf_rows = cf_ids.map(|cf| gather_rows(cf, t_l, &indices));
        let batch = Batch::<B>::new(split, &indices, &rows, cf_rows.as_deref(), &labels, device);
        let masks = InputMasks::of(&batch);
        let conf = confounders.confounders::<B>(indices.len(), device);
        let source = model.network.text_source();
        let factual = source.view_of(&batch, BatchView::Missing, &split.name)?;
        match cf_pred.as_mut() {
            Some(cf_out) => {
                let cf_text = source.text_of(&batch, BatchView::Counterfactual, &split.name)?;
                let (factual, counterfactual) =
                    model.factual_and_counterfactual(factual, cf_text, &masks, &conf)?;
                pred.extend(to_f32(factual)?);
                cf_out.extend(to_f32(counterfactual)?);
            }
            None => {
                let (out, _) = model.log_probs(factual, &masks, &conf)?;
                pred.extend(to_f32(out)?);
            }
        }
    }
    Ok(Predictions {
        classes,
        pred,
        cf_pred,
    })
}

/// A float tensor's values as `f32`, row-major.
fn to_f32<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Result<Vec<f32>, MaciError> {
    tensor
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| invalid("model output", format!("not readable as f32: {e:?}")))
}

/// The metrics of one split's outputs: the full τ sweep (MACI), or τ = 0 alone without MACI
/// or with the linear classifier. Used by the protocol and by the training loop's selection.
pub enum Sweep {
    /// The metrics at every τ of the grid (docs/method.md §7.4).
    Maci(TauSweep),
    /// The metrics of the plain prediction (τ = 0).
    Plain(Metrics),
}

impl Sweep {
    /// The sweep of `out` against `labels`: over τ when `out` has counterfactual outputs.
    pub fn new(task: Task, out: &Predictions, labels: &[u8]) -> Result<Self, MaciError> {
        Ok(match &out.cf_pred {
            Some(cf_pred) => Sweep::Maci(TauSweep::new(
                task,
                &CfOutputs {
                    pred: &out.pred,
                    cf_pred,
                    labels,
                },
            )?),
            None => Sweep::Plain(metrics::evaluate(task, &out.pred, labels)?),
        })
    }

    /// τ maximising the headline metric (0 without MACI).
    pub fn best_tau(&self) -> Tau {
        match self {
            Sweep::Maci(sweep) => sweep.best_tau(),
            Sweep::Plain(_) => Tau::ZERO,
        }
    }

    /// The metrics at `tau` (the only ones without MACI).
    pub fn at(&self, tau: Tau) -> &Metrics {
        match self {
            Sweep::Maci(sweep) => sweep.at(tau),
            Sweep::Plain(metrics) => metrics,
        }
    }

    /// The headline metric at every τ of the grid (one value without MACI).
    pub fn headline_per_tau(&self) -> Vec<f64> {
        match self {
            Sweep::Maci(sweep) => sweep.iter().map(|(_, m)| m.headline().1).collect(),
            Sweep::Plain(metrics) => vec![metrics.headline().1],
        }
    }

    /// Every metric maximised over τ separately.
    pub fn oracle(&self) -> Metrics {
        match self {
            Sweep::Maci(sweep) => sweep.oracle(),
            Sweep::Plain(metrics) => metrics.clone(),
        }
    }
}

fn invalid(what: &str, message: impl Into<String>) -> MaciError {
    MaciError::Invalid {
        what: what.to_string(),
        message: message.into(),
    }
}
