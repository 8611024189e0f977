//! The data side of MACI, prepared once from the dataset before training: the training
//! prototypes and class prior (docs/method.md §7.2), the bias words of the training split
//! (§4.1), and the selection split(s) at missing rate 0 with their counterfactual text (§4.2)
//! and test-time confounders (§6.4).

use cider_data::bias::{bias_words, counterfactual_ids};
use cider_data::dataset::{Dataset, Split};
use cider_data::missing::{DEFAULT_MISSING_SEED, EvalMissing, MissingView, eval_view};
use cider_maci::full_model::Classifier;
use cider_maci::prototypes::{Prototypes, TextFeatures};

use crate::train_config::{Selection, TrainConfig};
use crate::trainer::TrainError;

/// The selection split at missing rate 0, prepared once.
pub(crate) struct EvalSet {
    /// `valid` or `test` (the dataset split's name).
    pub(crate) name: String,
    /// Its evaluation view (rate 0: the complete data).
    pub(crate) view: MissingView,
    /// Counterfactual ids `[N, T_l]` (MACI only).
    pub(crate) cf_ids: Option<Vec<u32>>,
    /// Test-time confounders.
    pub(crate) prototypes: Prototypes,
}

/// The data side of MACI, built once from the dataset: training confounders, bias words, and
/// the selection split(s) at missing rate 0.
pub(crate) struct MaciInputs {
    /// Training prototypes `z_i` and class prior `P(z_i)`.
    pub(crate) prototypes: Prototypes,
    /// Bias-word ids of the training split.
    pub(crate) bias_words: Vec<u32>,
    /// The validation split.
    pub(crate) valid: EvalSet,
    /// The test split, for [`Selection::TestLeak`].
    pub(crate) test: Option<EvalSet>,
}

impl MaciInputs {
    pub(crate) fn new(config: &TrainConfig, data: &Dataset) -> Result<Self, TrainError> {
        if let Some(split) = data
            .splits()
            .into_iter()
            .find(|s| s.text_features.is_none())
        {
            return Err(TrainError::Unusable {
                source_name: data.source.clone(),
                message: format!(
                    "split `{}` has no precomputed `text` features, which the text part of the \
                     MACI prototypes needs",
                    split.name
                ),
            });
        }
        let task = config.task;
        let prototypes = Prototypes::from_split(&data.train, task, TextFeatures::FromSplit)?;
        let m = &config.maci;
        let bias_words = bias_words(&data.train, task, m.bias_thresh, m.bias_rule)?;
        let counterfactual = m.classifier == Classifier::Maci;
        let eval_set = |split: &Split| -> Result<EvalSet, TrainError> {
            let view = eval_view(split, EvalMissing::Rmfm { rate: 0.0 }, DEFAULT_MISSING_SEED)?;
            let cf_ids = counterfactual.then(|| counterfactual_ids(&view.text_m_ids, &bias_words));
            let prototypes =
                m.test_prototypes
                    .build(&prototypes, split, task, TextFeatures::FromSplit)?;
            Ok(EvalSet {
                name: split.name.clone(),
                view,
                cf_ids,
                prototypes,
            })
        };
        let valid = eval_set(&data.valid)?;
        let test = match config.selection {
            Selection::Validation => None,
            Selection::TestLeak => Some(eval_set(&data.test)?),
        };
        Ok(Self {
            prototypes,
            bias_words,
            valid,
            test,
        })
    }
}
