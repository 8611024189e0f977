//! # cider
//!
//! CIDer (Zhong et al., *Towards Robust Multimodal Emotion Recognition under Missing
//! Modalities and Distribution Shifts*, arXiv 2506.10452) on [Burn](https://burn.dev): a
//! text + audio + vision sentiment model trained with MSSD self-distillation to stay accurate
//! when modality features go missing, with MACI's causal classifier and counterfactual
//! debiasing against label and word shortcuts. The method, with shapes, is in
//! `docs/method.md`.
//!
//! This crate is the front door: open a trained run and predict, train from a configuration
//! ([`Trainer`]), evaluate over missing rates ([`run_protocol`]), read dataset files
//! ([`Dataset::from_path`], pickle or joblib detected from the content). The crates behind it
//! are re-exported by concept: [`data`], [`model`], [`maci`], [`train`].
//!
//! The model behind a run is CIDer's network or MulT (`model.backbone`, [`BackboneKind`]); MACI
//! wraps any module that implements [`Backbone`] ([`MaciConfig::init`], trained by
//! [`fit_backbone`]; `examples/maci_any_model.rs` does it for a 30-line model).
//!
//! ```no_run
//! use cider::prelude::*;
//!
//! # fn main() -> Result<(), cider::Error> {
//! let device = Default::default();
//! // A run written by `cider train` or `cider demo` (synthetic layout: d_l 768, d_a 5, d_v 20).
//! let run = Run::<CpuBackend>::open("runs/demo", &device)?;
//! let text = Text::Features { values: vec![0.1; 4 * 768], ids: vec![101, 2204, 3185, 102] };
//! let audio = Frames { values: vec![0.0; 30 * 5], frames: 30 };
//! let vision = Frames { values: vec![0.2; 30 * 20], frames: 30 };
//! let utterance = Utterance::new(text, audio, vision).without_audio();
//! let prediction = run.predict(&utterance, &device)?;
//! println!("{} (p = {:.2}, τ = {})", prediction.label_name,
//!          prediction.debiased[prediction.label], prediction.tau);
//! # Ok(())
//! # }
//! ```
//!
//! Every function is generic over the Burn backend `B`; [`CpuBackend`] is the default CPU
//! backend (`flex`), the `wgpu` and `cuda` features add the GPU ones, and [`DefaultBackend`]
//! is whichever the features select. Errors are
//! [`Error`], whose variants a caller can match on.

#![warn(missing_docs)]

mod error;
mod predict;
mod reference_import;
mod run;

pub use error::Error;
pub use predict::{Frames, Prediction, Presence, Text, Utterance, class_names};
pub use reference_import::{BERT_DIR, IMPORT_FILE, ImportedRun, PrototypeSource, import_reference};
pub use run::Run;

/// Readers, datasets, missing-modality modes, bias words, the synthetic data (`cider-data`).
pub use cider_data as data;
/// MACI: the causal classifier, prototypes and priors, counterfactual inference, τ rules,
/// metrics (`cider-maci`).
pub use cider_maci as maci;
/// The network: BERT, WSAM, GRUs, MCT, pooling, decoders (`cider-model`).
pub use cider_model as model;
/// MSSD training, the evaluation protocol, results and charts (`cider-train`).
pub use cider_train as train;

pub use cider_data::dataset::{Dataset, Split, Task};
pub use cider_data::missing::EvalMissing;
pub use cider_data::missing_mode::EvalMode;
pub use cider_data::synth::SynthConfig;
pub use cider_maci::counterfactual::TauSelection;
pub use cider_maci::full_model::{Cider, CiderConfig, Classifier, Maci, MaciConfig};
pub use cider_maci::tau_rules::TauChoice;
pub use cider_model::backbone::{Backbone, BackboneKind, BackboneOutput};
pub use cider_model::mult::MultOptions;
pub use cider_model::network_config::NetworkOptions;
pub use cider_train::any_backbone::{Fitted, fit_backbone};
pub use cider_train::evaluate::{ProtocolConfig, ProtocolResults, run_protocol};
pub use cider_train::train_config::{DataConfig, TrainConfig};
pub use cider_train::trainer::{TrainProgress, TrainSummary, Trainer};

/// The default CPU backend (Burn's `flex`), for inference.
#[cfg(feature = "flex")]
pub type CpuBackend = burn::backend::Flex;

/// [`CpuBackend`] with automatic differentiation, for training.
#[cfg(feature = "flex")]
pub type CpuTrainingBackend = burn::backend::Autodiff<CpuBackend>;

/// The backend the Cargo features select (`cuda`, else `wgpu`, else `flex`), for inference.
#[cfg(any(feature = "flex", feature = "wgpu", feature = "cuda"))]
pub type DefaultBackend = cider_train::backend::Selected;

/// [`DefaultBackend`] with automatic differentiation, for training.
#[cfg(any(feature = "flex", feature = "wgpu", feature = "cuda"))]
pub type DefaultTrainingBackend = cider_train::backend::SelectedAutodiff;

/// The types most programs need: `use cider::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Backbone, BackboneOutput, Dataset, Error, EvalMode, Frames, MaciConfig, Prediction,
        Presence, ProtocolConfig, Run, Split, Task, TauChoice, TauSelection, Text, TrainConfig,
        TrainProgress, Trainer, Utterance, fit_backbone,
    };
    #[cfg(feature = "flex")]
    pub use crate::{CpuBackend, CpuTrainingBackend};
    #[cfg(any(feature = "flex", feature = "wgpu", feature = "cuda"))]
    pub use crate::{DefaultBackend, DefaultTrainingBackend};
}
