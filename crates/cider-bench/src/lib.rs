//! Benchmarks for cider-rs: criterion benches under `benches/` and the inputs they share.
//!
//! Run `cargo bench -p cider-bench` (add `--no-default-features --features wgpu` or `cuda` for
//! the GPU backends); bench ids start with the backend name.

#![warn(missing_docs)]

/// Every bench binary links this crate, so all of them measure with the allocator of the
/// `cider` program ([`cider_train::alloc::ReuseLargeBlocks`]).
#[global_allocator]
static ALLOCATOR: cider_train::alloc::ReuseLargeBlocks =
    cider_train::alloc::ReuseLargeBlocks::new();

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor};
use cider_data::dataset::Dims;
use cider_data::synth::Layout;
use cider_maci::full_model::{Cider, CiderConfig, Confounders};
use cider_model::ModelError;
use cider_model::bert::BertConfig;
use cider_model::network::{InputMasks, TextInput, ViewInput};
use cider_model::network_config::{Alignment, NetworkConfig};
use cider_train::mssd::{MissingMasks, MssdBatch};

/// How the text enters the model in a bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMode {
    /// MMSA's 768-d precomputed features (no BERT).
    Precomputed,
    /// A `bert-base-uncased`-shaped encoder with random weights, fine-tuned with the network
    /// (the reference setup, docs/method.md §5.1).
    BertBase,
    /// The same encoder frozen (no gradient, no update), as the reference harness's "frozen"
    /// variant.
    BertBaseFrozen,
}

impl TextMode {
    /// Name used in bench ids.
    pub fn name(self) -> &'static str {
        match self {
            TextMode::Precomputed => "precomputed",
            TextMode::BertBase => "bert-base",
            TextMode::BertBaseFrozen => "bert-base-frozen",
        }
    }

    /// Every mode, in the order of [`TextMode::NAMES`].
    pub const ALL: [TextMode; 3] = [
        TextMode::Precomputed,
        TextMode::BertBase,
        TextMode::BertBaseFrozen,
    ];

    /// The accepted names.
    pub const NAMES: [&'static str; 3] = ["precomputed", "bert-base", "bert-base-frozen"];

    /// The mode named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| mode.name() == name)
    }

    /// Whether the text enters as token ids through a BERT.
    pub fn uses_bert(self) -> bool {
        self != TextMode::Precomputed
    }
}

/// The reference's default configuration (docs/method.md §9.3: D 32, 3 MCT layers, 8 heads) for a
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
    let network = NetworkConfig::new(d_l, d_a, d_v, t_l, t_a, t_v, alignment);
    let network = match text {
        TextMode::Precomputed => network,
        TextMode::BertBase | TextMode::BertBaseFrozen => {
            network.with_bert_encoder(BertConfig::bert_base_uncased())
        }
    };
    CiderConfig::new(network, 3)
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
        TextMode::BertBase | TextMode::BertBaseFrozen => TextInput::Tokens {
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

/// Builds the reference configuration's model for a layout; with
/// [`TextMode::BertBaseFrozen`] the text encoder's parameters need no gradient.
///
/// # Errors
/// Only if the configuration were invalid (it is not for the listed layouts).
pub fn reference_model<B: Backend>(
    layout: Layout,
    text: TextMode,
    device: &B::Device,
) -> Result<Cider<B>, ModelError> {
    let mut model = reference_config(layout, text).init(device)?;
    if text == TextMode::BertBaseFrozen {
        let frozen = model.network.text_encoder().clone().no_grad();
        model.network = model.network.with_text_encoder(frozen);
    }
    Ok(model)
}

/// `[MASK]` id of `bert-base-uncased`, put where a missing view drops a word.
const MASK_ID: i64 = 103;

/// One MSSD training batch for `batch` samples of `layout`: the complete view of
/// [`random_inputs`], a missing view that drops each position of each modality with
/// probability 1/2 (zeroed features, `[MASK]` ids), its missing masks, and labels in `0..3`.
pub fn mssd_batch<B: Backend>(
    layout: Layout,
    text: TextMode,
    batch: usize,
    device: &B::Device,
) -> MssdBatch<B> {
    let inputs = random_inputs::<B>(layout, text, batch, device);
    let Dims { t_l, t_a, t_v, .. } = layout.dims();
    let keep =
        |len: usize| Tensor::<B, 2>::random([batch, len], Distribution::Bernoulli(0.5), device);
    let missing_masks = MissingMasks {
        text: keep(t_l),
        audio: keep(t_a),
        vision: keep(t_v),
    };
    let drop_frames =
        |x: &Tensor<B, 3>, mask: &Tensor<B, 2>| x.clone() * mask.clone().unsqueeze_dim(2);
    let text_m = match &inputs.view.text {
        TextInput::Features(x) => TextInput::Features(drop_frames(x, &missing_masks.text)),
        TextInput::Tokens {
            ids,
            attention_mask,
            token_types,
        } => TextInput::Tokens {
            ids: ids
                .clone()
                .mask_fill(missing_masks.text.clone().lower_elem(0.5), MASK_ID),
            attention_mask: attention_mask.clone(),
            token_types: token_types.clone(),
        },
    };
    let missing = ViewInput {
        text: text_m,
        audio: drop_frames(&inputs.view.audio, &missing_masks.audio),
        vision: drop_frames(&inputs.view.vision, &missing_masks.vision),
    };
    MssdBatch {
        complete: inputs.view,
        missing,
        masks: inputs.masks,
        missing_masks,
        labels: Tensor::<B, 1, Int>::random([batch], Distribution::Uniform(0.0, 3.0), device),
        confounders: inputs.confounders,
    }
}
