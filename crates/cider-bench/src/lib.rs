//! Benchmarks for cider-rs: criterion benches under `benches/` and the inputs they share.
//!
//! Run `cargo bench -p cider-bench` (add `--no-default-features --features wgpu` or `cuda` for
//! the GPU backends); bench ids start with the backend name.

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor};
use cider_causal::model::{CiderConfig, Confounders};
use cider_data::dataset::Dims;
use cider_data::synth::Layout;
use cider_model::ModelError;
use cider_model::bert::BertConfig;
use cider_model::config::{Alignment, NetworkConfig, TextEncoderConfig};
use cider_model::model::{InputMasks, TextInput, ViewInput};

/// How the text enters the model in a bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMode {
    /// MMSA's 768-d precomputed features (no BERT).
    Precomputed,
    /// A `bert-base-uncased`-shaped encoder with random weights.
    BertBase,
}

impl TextMode {
    /// Name used in bench ids.
    pub fn name(self) -> &'static str {
        match self {
            TextMode::Precomputed => "precomputed",
            TextMode::BertBase => "bert-base",
        }
    }
}

/// The reference's default configuration (spec §9.3: D 32, 3 MCT layers, 8 heads) for a
/// layout, 3 classes.
pub fn reference_config(layout: Layout, text: TextMode) -> CiderConfig {
    let Dims {
        d_l,
        t_l,
        t_a,
        t_v,
        d_a,
        d_v,
    } = layout.dims();
    let alignment = if layout.aligned() {
        Alignment::Aligned
    } else {
        Alignment::Unaligned
    };
    let encoder = match text {
        TextMode::Precomputed => TextEncoderConfig::Precomputed,
        TextMode::BertBase => TextEncoderConfig::Bert(BertConfig::bert_base_uncased()),
    };
    CiderConfig::new(
        NetworkConfig::new(d_l, d_a, d_v, t_l, t_a, t_v, alignment).with_text_encoder(encoder),
        3,
    )
}

/// Random inputs of one batch: a view, its input masks (every position valid) and uniform
/// confounders.
pub struct BenchInputs<B: Backend> {
    /// Text, audio `[batch, T_a, d_a]`, vision `[batch, T_v, d_v]`.
    pub view: ViewInput<B>,
    /// All-ones input masks and `text_len = T_l`.
    pub masks: InputMasks<B>,
    /// Prototypes `[C, batch, d_l + d_a + d_v]` and a uniform prior `[batch, C]`.
    pub confounders: Confounders<B>,
}

impl<B: Backend> Clone for BenchInputs<B> {
    fn clone(&self) -> Self {
        Self {
            view: self.view.clone(),
            masks: self.masks.clone(),
            confounders: self.confounders.clone(),
        }
    }
}

/// Random inputs for `batch` samples of `layout`.
pub fn random_inputs<B: Backend>(
    layout: Layout,
    text: TextMode,
    batch: usize,
    device: &B::Device,
) -> BenchInputs<B> {
    let Dims {
        d_l,
        t_l,
        t_a,
        t_v,
        d_a,
        d_v,
    } = layout.dims();
    let normal = Distribution::Normal(0.0, 1.0);
    let text = match text {
        TextMode::Precomputed => {
            TextInput::Features(Tensor::random([batch, t_l, d_l], normal, device))
        }
        TextMode::BertBase => TextInput::Tokens {
            ids: Tensor::<B, 2, Int>::random(
                [batch, t_l],
                Distribution::Uniform(1000.0, 30000.0),
                device,
            ),
            attention_mask: Tensor::ones([batch, t_l], device),
            token_types: Tensor::zeros([batch, t_l], device),
        },
    };
    let classes = 3;
    BenchInputs {
        view: ViewInput {
            text,
            audio: Tensor::random([batch, t_a, d_a], normal, device),
            vision: Tensor::random([batch, t_v, d_v], normal, device),
        },
        masks: InputMasks {
            text: Tensor::ones([batch, t_l], device),
            audio: Tensor::ones([batch, t_a], device),
            vision: Tensor::ones([batch, t_v], device),
            text_len: Tensor::<B, 1, Int>::full([batch], t_l as i64, device),
        },
        confounders: Confounders {
            feats: Tensor::random([classes, batch, d_l + d_a + d_v], normal, device),
            probs: Tensor::full([batch, classes], 1.0 / classes as f32, device),
        },
    }
}

/// Builds the reference configuration's model for a layout.
///
/// # Errors
/// Only if the configuration were invalid (it is not for the listed layouts).
pub fn reference_model<B: Backend>(
    layout: Layout,
    text: TextMode,
    device: &B::Device,
) -> Result<cider_causal::model::Cider<B>, ModelError> {
    reference_config(layout, text).init(device)
}
