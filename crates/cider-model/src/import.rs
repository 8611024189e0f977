//! Import of the reference PyTorch `state_dict` (key names of the CIDer repo's `CIDERModel`)
//! into [`CiderNetwork`].
//!
//! Layouts that differ from Burn's, handled here:
//! - `proj_*.weight` is a Conv1d weight `[D, d, 1]` → Linear `[d, D]`;
//! - GRU `weight_ih_l0` / `weight_hh_l0` `[3D, D]` and biases `[3D]` stack the reset, update and
//!   new gates (`[r, z, n]`) → one Linear per gate and input;
//! - attention `in_proj_weight` `[3D, D]` → packed Linear `[D, 3D]`;
//! - `multimodal_transformer.embed_positions.pe` `[1, P, D]` → the MCT table `[P, D]`;
//!   `multimodal_transformer.version` (a fairseq buffer) is read and ignored.
//!
//! The BERT (`text_model.model.*`) is loaded by [`crate::bert::load_bert_weights`] and the
//! classifier keys (`cls_encoders_*`, `classifiers.*`) by `cider-maci`.

use std::ops::Range;

use burn::nn::{GateController, Gru, Linear};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::ModelError;
use crate::bert::load_bert_weights;
use crate::decoder::{Decoders, SequenceDecoder};
use crate::mct::{Mca, Mct, MctLayer};
use crate::network::{CiderNetwork, TextEncoder};
use crate::pooling::NaiveAttention;
use crate::projection::{ResidualProjection, TemporalProjection};
use crate::weights::{WeightFile, WeightLoader, replace_param};
use crate::wsam::Wsam;

/// Key prefix of the BERT inside the reference `state_dict`.
pub const BERT_PREFIX: &str = "text_model.model.";

/// Loads the BERT of a text encoder from `file` (keys under [`BERT_PREFIX`]).
///
/// With [`TextEncoder::Precomputed`] there is nothing to load and the file's BERT keys are not
/// used.
///
/// # Errors
/// [`ModelError::Weights`] for missing, unexpected or mis-shaped BERT keys.
pub fn load_reference_text_encoder<B: Backend>(
    text_encoder: TextEncoder<B>,
    file: &WeightFile,
    device: &B::Device,
) -> Result<TextEncoder<B>, ModelError> {
    Ok(match text_encoder {
        TextEncoder::Bert(bert) => {
            TextEncoder::Bert(load_bert_weights(bert, file, BERT_PREFIX, device)?)
        }
        precomputed @ TextEncoder::Precomputed(_) => precomputed,
    })
}

/// Whether `key` (a full reference key) belongs to the BERT, which
/// [`load_reference_text_encoder`] handles.
pub fn is_bert_key(key: &str) -> bool {
    key.starts_with(BERT_PREFIX)
}

/// Moves every non-BERT parameter of `network` through `loader` (prefix `""`), under the
/// reference key names. Missing and mis-shaped keys are recorded in the loader and reported by
/// [`WeightLoader::finish`].
pub fn load_reference_network<B: Backend>(
    network: CiderNetwork<B>,
    loader: &mut WeightLoader<'_, B>,
) -> CiderNetwork<B> {
    CiderNetwork {
        proj_l: conv1x1(network.proj_l, loader, "proj_l"),
        proj_a: conv1x1(network.proj_a, loader, "proj_a"),
        proj_v: conv1x1(network.proj_v, loader, "proj_v"),
        wsam_a: wsam(network.wsam_a, loader, "a_compress"),
        wsam_v: wsam(network.wsam_v, loader, "v_compress"),
        gru_l: gru(network.gru_l, loader, "t"),
        gru_a: gru(network.gru_a, loader, "a"),
        gru_v: gru(network.gru_v, loader, "v"),
        mct: mct(network.mct, loader, "multimodal_transformer"),
        pool_l: naive_attention(network.pool_l, loader, "attn_l"),
        pool_a: naive_attention(network.pool_a, loader, "attn_a"),
        pool_v: naive_attention(network.pool_v, loader, "attn_v"),
        residual: residual(network.residual, loader),
        decoders: decoders(network.decoders, loader),
        ..network
    }
}

/// Conv1d `[D, d, 1]` without bias → [`TemporalProjection`] weight `[d, D]`.
fn conv1x1<B: Backend>(
    mut proj: TemporalProjection<B>,
    loader: &mut WeightLoader<'_, B>,
    key: &str,
) -> TemporalProjection<B> {
    let [d_in, d_model] = proj.linear.weight.lazy_shape().dims();
    if let Some(w) = loader.tensor(&format!("{key}.weight"), [d_model, d_in, 1]) {
        let w = w.reshape([d_model, d_in]).transpose(); // [d, D]
        proj.linear.weight = replace_param(proj.linear.weight, w);
    }
    proj
}

/// `nn.MultiheadAttention`-style packed input projection plus `out_proj`.
fn wsam<B: Backend>(mut module: Wsam<B>, loader: &mut WeightLoader<'_, B>, key: &str) -> Wsam<B> {
    module.in_proj = packed_in_proj(module.in_proj, loader, key);
    module.out_proj = loader.linear(module.out_proj, &format!("{key}.out_proj"));
    module
}

/// `key.in_proj_weight` `[3D, D]` and `key.in_proj_bias` `[3D]` into a packed `Linear(D → 3D)`.
fn packed_in_proj<B: Backend>(
    mut linear: Linear<B>,
    loader: &mut WeightLoader<'_, B>,
    key: &str,
) -> Linear<B> {
    linear.weight = loader.param_transposed(linear.weight, &format!("{key}.in_proj_weight"));
    linear.bias = linear
        .bias
        .map(|b| loader.param(b, &format!("{key}.in_proj_bias")));
    linear
}

/// PyTorch GRU (one layer) → Burn [`Gru`]: gate blocks `[r, z, n]` of the stacked tensors.
fn gru<B: Backend>(mut module: Gru<B>, loader: &mut WeightLoader<'_, B>, key: &str) -> Gru<B> {
    let [d_in, hidden] = module.reset_gate.input_transform.weight.lazy_shape().dims();
    let stacked = StackedGru {
        w_ih: loader.tensor(&format!("{key}.weight_ih_l0"), [3 * hidden, d_in]),
        w_hh: loader.tensor(&format!("{key}.weight_hh_l0"), [3 * hidden, hidden]),
        b_ih: loader.tensor(&format!("{key}.bias_ih_l0"), [3 * hidden]),
        b_hh: loader.tensor(&format!("{key}.bias_hh_l0"), [3 * hidden]),
    };
    module.reset_gate = stacked.gate(module.reset_gate, 0..hidden);
    module.update_gate = stacked.gate(module.update_gate, hidden..2 * hidden);
    module.new_gate = stacked.gate(module.new_gate, 2 * hidden..3 * hidden);
    module
}

/// PyTorch's stacked GRU tensors (each `None` when missing or mis-shaped).
struct StackedGru<B: Backend> {
    /// `[3H, d_in]`.
    w_ih: Option<Tensor<B, 2>>,
    /// `[3H, H]`.
    w_hh: Option<Tensor<B, 2>>,
    /// `[3H]`.
    b_ih: Option<Tensor<B, 1>>,
    /// `[3H]`.
    b_hh: Option<Tensor<B, 1>>,
}

impl<B: Backend> StackedGru<B> {
    /// Fills one gate from the row block `rows` of the stacked tensors.
    fn gate(&self, gate: GateController<B>, rows: Range<usize>) -> GateController<B> {
        GateController {
            input_transform: block(gate.input_transform, &self.w_ih, &self.b_ih, &rows),
            hidden_transform: block(gate.hidden_transform, &self.w_hh, &self.b_hh, &rows),
        }
    }
}

/// Sets `linear` to rows `rows` of a stacked `[3H, d]` weight (transposed to `[d, H]`) and
/// `[3H]` bias.
fn block<B: Backend>(
    mut linear: Linear<B>,
    weight: &Option<Tensor<B, 2>>,
    bias: &Option<Tensor<B, 1>>,
    rows: &Range<usize>,
) -> Linear<B> {
    if let Some(w) = weight {
        let d = w.dims()[1];
        let w = w.clone().slice([rows.clone(), 0..d]).transpose(); // [d, H]
        linear.weight = replace_param(linear.weight, w);
    }
    if let Some(b) = bias {
        linear.bias = linear
            .bias
            .map(|param| replace_param(param, b.clone().slice([rows.clone()])));
    }
    linear
}

/// The MCT: table, layers and final LayerNorm.
fn mct<B: Backend>(mut module: Mct<B>, loader: &mut WeightLoader<'_, B>, key: &str) -> Mct<B> {
    let [rows, d] = module.pe.dims();
    if let Some(pe) = loader.tensor(&format!("{key}.embed_positions.pe"), [1, rows, d]) {
        module.pe = pe.reshape([rows, d]);
    }
    loader.skip(&format!("{key}.version"));
    module.layers = module
        .layers
        .into_iter()
        .enumerate()
        .map(|(i, layer)| mct_layer(layer, loader, &format!("{key}.layers.{i}")))
        .collect();
    module.layer_norm = loader.layer_norm(module.layer_norm, &format!("{key}.layer_norm"));
    module
}

fn mct_layer<B: Backend>(
    mut layer: MctLayer<B>,
    loader: &mut WeightLoader<'_, B>,
    key: &str,
) -> MctLayer<B> {
    layer.self_attn = mca(layer.self_attn, loader, &format!("{key}.self_attn"));
    layer.fc1 = loader.linear(layer.fc1, &format!("{key}.fc1"));
    layer.fc2 = loader.linear(layer.fc2, &format!("{key}.fc2"));
    layer.layer_norms = layer
        .layer_norms
        .into_iter()
        .enumerate()
        .map(|(i, norm)| loader.layer_norm(norm, &format!("{key}.layer_norms.{i}")))
        .collect();
    layer
}

fn mca<B: Backend>(mut module: Mca<B>, loader: &mut WeightLoader<'_, B>, key: &str) -> Mca<B> {
    module.in_proj = packed_in_proj(module.in_proj, loader, key);
    module.out_proj = module
        .out_proj
        .into_iter()
        .enumerate()
        .map(|(u, proj)| loader.linear(proj, &format!("{key}.out_proj.{u}")))
        .collect();
    module.s_l = loader.linear(module.s_l, &format!("{key}.s_l"));
    module.s_a = loader.linear(module.s_a, &format!("{key}.s_a"));
    module.s_v = loader.linear(module.s_v, &format!("{key}.s_v"));
    module.final_out_proj = loader.linear(module.final_out_proj, &format!("{key}.final_out_proj"));
    module
}

/// `key.attention.0` (D → D, before tanh) and `key.attention.2` (D → 1).
fn naive_attention<B: Backend>(
    mut module: NaiveAttention<B>,
    loader: &mut WeightLoader<'_, B>,
    key: &str,
) -> NaiveAttention<B> {
    module.hidden = loader.linear(module.hidden, &format!("{key}.attention.0"));
    module.score = loader.linear(module.score, &format!("{key}.attention.2"));
    module
}

fn residual<B: Backend>(
    mut module: ResidualProjection<B>,
    loader: &mut WeightLoader<'_, B>,
) -> ResidualProjection<B> {
    module.proj1 = loader.linear(module.proj1, "proj1");
    module.proj2 = loader.linear(module.proj2, "proj2");
    module
}

fn decoders<B: Backend>(mut module: Decoders<B>, loader: &mut WeightLoader<'_, B>) -> Decoders<B> {
    module.text = loader.linear(module.text, "recon_text");
    module.audio = sequence_decoder(module.audio, loader, "recon_audio");
    module.vision = sequence_decoder(module.vision, loader, "recon_vision");
    module
}

fn sequence_decoder<B: Backend>(
    mut module: SequenceDecoder<B>,
    loader: &mut WeightLoader<'_, B>,
    key: &str,
) -> SequenceDecoder<B> {
    module.time = loader.linear(module.time, &format!("{key}.0"));
    module.feature = loader.linear(module.feature, &format!("{key}.1"));
    module
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use burn::backend::Flex;
    use burn::backend::flex::FlexDevice;

    use super::*;
    use crate::network_config::{Alignment, NetworkConfig, NetworkOptions};

    type TB = Flex;

    fn golden_weights() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/torch-golden/mosi-unaligned-small/model.safetensors")
    }

    /// The golden network (2 layers, `D = 32`, `H = 8`) with precomputed text features.
    fn network() -> CiderNetwork<TB> {
        NetworkConfig::new(64, 5, 20, 16, 40, 48, Alignment::Unaligned)
            .with_options(NetworkOptions {
                multimodal_layers: 2,
                ..NetworkOptions::default()
            })
            .init(&FlexDevice)
            .expect("valid config")
    }

    fn values<const D: usize>(t: Tensor<TB, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().expect("f32 data")
    }

    /// Rows `rows` of a row-major `[_, cols]` matrix, transposed to `[cols, rows.len()]`.
    fn transposed_rows(data: &[f32], cols: usize, rows: Range<usize>) -> Vec<f32> {
        (0..cols)
            .flat_map(|c| rows.clone().map(move |r| (r, c)))
            .map(|(r, c)| data[r * cols + c])
            .collect()
    }

    #[test]
    fn reference_layouts_are_converted() {
        let file = WeightFile::read_safetensors(&golden_weights()).expect("golden weights");
        let mut loader = WeightLoader::new(&file, "", &FlexDevice);
        let net = load_reference_network(network(), &mut loader);
        loader
            .finish(|k| {
                is_bert_key(k) || k.starts_with("cls_encoders_") || k.starts_with("classifiers.")
            })
            .expect("every network key fits");

        // GRU `t`: blocks r, z, n of weight_ih_l0 / bias_hh_l0.
        let (_, w_ih) = file.get_f32("t.weight_ih_l0").expect("key");
        let (_, b_hh) = file.get_f32("t.bias_hh_l0").expect("key");
        let gates = [
            &net.gru_l.reset_gate,
            &net.gru_l.update_gate,
            &net.gru_l.new_gate,
        ];
        for (g, gate) in gates.into_iter().enumerate() {
            let rows = g * 32..(g + 1) * 32;
            assert_eq!(
                values(gate.input_transform.weight.val()),
                transposed_rows(&w_ih, 32, rows.clone()),
                "gate {g}"
            );
            let bias = gate.hidden_transform.bias.as_ref().expect("bias");
            assert_eq!(values(bias.val()), b_hh[rows].to_vec(), "gate {g}");
        }

        // Conv1d [D, d, 1] → [d, D].
        let (_, conv) = file.get_f32("proj_a.weight").expect("key");
        assert_eq!(
            values(net.proj_a.linear.weight.val()),
            transposed_rows(&conv, 5, 0..32)
        );

        // Packed attention input projection [3D, D] → [D, 3D].
        let (_, in_proj) = file
            .get_f32("multimodal_transformer.layers.1.self_attn.in_proj_weight")
            .expect("key");
        assert_eq!(
            values(net.mct.layers[1].self_attn.in_proj.weight.val()),
            transposed_rows(&in_proj, 32, 0..96)
        );
    }

    /// The table computed here equals the buffer saved by the reference (computed in f32
    /// there, hence the tolerance that grows with the position).
    #[test]
    fn sinusoidal_table_equals_reference_buffer() {
        let file = WeightFile::read_safetensors(&golden_weights()).expect("golden weights");
        let (shape, pe) = file
            .get_f32("multimodal_transformer.embed_positions.pe")
            .expect("key");
        assert_eq!(shape, [1, 1024, 32]);
        let ours = crate::mct::sinusoidal_table(1024, 32);
        for (i, (a, b)) in ours.iter().zip(&pe).enumerate() {
            let p = i / 32;
            let tol = 1e-6 + 2e-7 * p as f32;
            assert!((a - b).abs() <= tol, "pe[{p}, {}]: {a} vs {b}", i % 32);
        }
    }

    #[test]
    fn misshaped_and_missing_keys_are_listed() {
        let file = WeightFile::read_safetensors(&golden_weights()).expect("golden weights");
        // An aligned network has 16 → 16 decoders: the time maps of the file (16 → 40 / 48)
        // do not fit.
        let aligned = NetworkConfig::new(64, 5, 20, 16, 16, 16, Alignment::Aligned)
            .with_options(NetworkOptions {
                multimodal_layers: 3,
                ..NetworkOptions::default()
            })
            .init::<TB>(&FlexDevice)
            .expect("valid config");
        let mut loader = WeightLoader::new(&file, "", &FlexDevice);
        let _ = load_reference_network(aligned, &mut loader);
        let Err(ModelError::Weights {
            missing,
            misshaped,
            unexpected,
            ..
        }) = loader.finish(|k| {
            is_bert_key(k) || k.starts_with("cls_encoders_") || k.starts_with("classifiers.")
        })
        else {
            panic!("expected a weights error");
        };
        assert!(unexpected.is_empty(), "{unexpected:?}");
        assert!(
            missing
                .iter()
                .all(|k| k.starts_with("multimodal_transformer.layers.2.")),
            "{missing:?}"
        );
        // 32 keys per MCT layer: in-proj 2, 7 branch projections 14, s_l/s_a/s_v 6,
        // final_out_proj 2, fc1 2, fc2 2, two LayerNorms 4.
        assert_eq!(missing.len(), 32);
        assert_eq!(misshaped.len(), 4, "{misshaped:?}");
        assert!(misshaped[0].starts_with("recon_audio.0.weight (file [40, 16]"));
    }
}
