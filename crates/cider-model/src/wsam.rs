//! WSAM, the Word-level Self-aligned Attention Module (docs/method.md §5.3; the reference's
//! `CompressedMultiheadAttention`): maps an unaligned audio or vision sequence onto the text
//! length `T_l` with one masked attention head whose queries are the projected words.

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::module::linear;
use burn::tensor::{Bool, Int, Tensor};

use crate::kernels::{self, composed};

/// Configuration of a [`Wsam`].
#[derive(Config, Debug)]
pub struct WsamConfig {
    /// Width `D` of queries, keys and values.
    pub d_model: usize,
}

/// One WSAM (single head, width `D`, no attention dropout).
///
/// `q = P_l W_qᵀ + b_q`, `k = P_x W_kᵀ + b_k`, `v = P_x W_vᵀ + b_v`, `q ← q·D^(−1/2)`;
/// `P = masked_softmax(q kᵀ)`; `S_x = (P v) W_oᵀ + b_o`.
#[derive(Module, Debug)]
pub struct Wsam<B: Backend> {
    /// Packed `W_in` `[D, 3D]` (columns `[q | k | v]`) and `b_in` `[3D]`.
    pub in_proj: Linear<B>,
    /// Output projection `Linear(D → D)` with bias.
    pub out_proj: Linear<B>,
    /// Width `D`.
    pub d_model: usize,
}

impl WsamConfig {
    /// Initialises a [`Wsam`]: Xavier-uniform weights over the packed `[3D, D]` input matrix and
    /// the output matrix, zero biases (docs/method.md §5.11).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Wsam<B> {
        let d = self.d_model;
        Wsam {
            in_proj: xavier_linear(d, 3 * d, device),
            out_proj: xavier_linear(d, d, device),
            d_model: d,
        }
    }
}

/// A `Linear(d_input → d_output)` with Xavier-uniform weight and zero bias.
pub(crate) fn xavier_linear<B: Backend>(
    d_input: usize,
    d_output: usize,
    device: &B::Device,
) -> Linear<B> {
    let mut layer = LinearConfig::new(d_input, d_output)
        .with_initializer(Initializer::XavierUniform { gain: 1.0 })
        .init(device);
    layer.bias = Some(Initializer::Zeros.init([d_output], device));
    layer
}

impl<B: Backend> Wsam<B> {
    /// Aligns `key_value` onto the text positions.
    ///
    /// # Shapes
    /// - query `P_l`: `[batch, T_l, D]`
    /// - key_value `P_x`: `[batch, T_x, D]`
    /// - text_mask `m_t`: `[batch, T_l]` (1 = real token, including `[CLS]`/`[SEP]`)
    /// - x_mask `m_x`: `[batch, T_x]` (input length mask, 1 = real frame)
    /// - text_len: `[batch]` (the `[SEP]` sits at `text_len − 1`)
    /// - output `S_x`: `[batch, T_l, D]`
    pub fn forward(
        &self,
        query: Tensor<B, 3>,
        key_value: Tensor<B, 3>,
        text_mask: Tensor<B, 2>,
        x_mask: Tensor<B, 2>,
        text_len: Tensor<B, 1, Int>,
    ) -> Tensor<B, 3> {
        let (q, k, v) = self.projections(query, key_value);
        let (column_bias, rows) = mask_terms(text_mask, x_mask, text_len);
        let inputs = kernels::AttentionTensors {
            q,
            k,
            v,
            column_bias,
            rows,
        };
        let context = kernels::masked_attention(inputs); // [B, T_l, D]
        self.out_proj.forward(context)
    }

    /// [`Wsam::forward`] that also returns the attention probabilities `P`
    /// `[batch, T_l, T_x]` (rows sum to 1, or to 0 for `[CLS]`, `[SEP]`, padding and rows whose
    /// sample has no frame), composed from Burn ops on every backend.
    pub fn forward_with_weights(
        &self,
        query: Tensor<B, 3>,
        key_value: Tensor<B, 3>,
        text_mask: Tensor<B, 2>,
        x_mask: Tensor<B, 2>,
        text_len: Tensor<B, 1, Int>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (q, k, v) = self.projections(query, key_value);
        let (column_bias, rows) = mask_terms(text_mask, x_mask, text_len);
        let probs = composed::masked_probabilities(q, k, column_bias, rows); // [B, T_l, T_x]
        let out = self.out_proj.forward(probs.clone().matmul(v)); // [B, T_l, D]
        (out, probs)
    }

    /// `(q·D^(−1/2), k, v)`: `q` `[B, T_l, D]` from the query, `k` and `v` `[B, T_x, D]` from
    /// the key-value sequence, each through its columns of the packed input projection.
    fn projections(
        &self,
        query: Tensor<B, 3>,
        key_value: Tensor<B, 3>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) {
        let d = self.d_model;
        let weight = self.in_proj.weight.val(); // [D, 3D]
        let bias = self.in_proj.bias.as_ref().map(|b| b.val()); // [3D]
        let part = |x: Tensor<B, 3>, i: usize| {
            let cols = i * d..(i + 1) * d;
            linear(
                x,
                weight.clone().slice([0..d, cols.clone()]),
                bias.clone().map(|b| b.slice([cols])),
            )
        };
        let scale = (d as f64).powf(-0.5);
        let q = part(query, 0).mul_scalar(scale); // [B, T_l, D]
        (q, part(key_value.clone(), 1), part(key_value, 2))
    }
}

/// The WSAM mask as the column bias `[B, 1, T_x]` (`0` for an allowed frame, about `f32::MIN`
/// for a blocked one, so that `exp` gives exactly 0, as the reference's −1e9 does) and the row
/// factor `[B, T_l, 1]` that zeroes rows without any allowed entry afterwards: `M` is the outer
/// product of a row mask and a column mask, so no `[B, T_l, T_x]` mask is built.
fn mask_terms<B: Backend>(
    text_mask: Tensor<B, 2>,
    x_mask: Tensor<B, 2>,
    text_len: Tensor<B, 1, Int>,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    let (rows, columns) = mask_factors(text_mask, x_mask, text_len); // [B, T_l, 1], [B, 1, T_x]
    let column_bias = columns.bool_not().float().mul_scalar(f32::MIN); // [B, 1, T_x]
    (column_bias, rows)
}

/// The two factors of the WSAM mask `M[b,i,j] = m_t'[b,i] · m_x[b,j]`, where `m_t'` is the
/// text mask with the `[SEP]` (`text_len − 1`) and the `[CLS]` (position 0) cleared.
///
/// As in the reference, `text_len = 0` clears the last position (Python index −1), and a
/// `text_len` beyond `T_l` clears nothing.
///
/// # Shapes
/// - text_mask: `[batch, T_l]`, x_mask: `[batch, T_x]`, text_len: `[batch]`
/// - returns the row factor `[batch, T_l, 1]` (1.0 where row `i` has at least one allowed
///   column: `m_t'[b,i] = 1` and sample `b` has a frame, else 0.0) and the allowed columns
///   `[batch, 1, T_x]` (`m_x > 0`)
fn mask_factors<B: Backend>(
    text_mask: Tensor<B, 2>,
    x_mask: Tensor<B, 2>,
    text_len: Tensor<B, 1, Int>,
) -> (Tensor<B, 3>, Tensor<B, 3, Bool>) {
    let [batch, t_l] = text_mask.dims();
    let device = text_mask.device();
    let positions = Tensor::<B, 1, Int>::arange(0..t_l as i64, &device).reshape([1, t_l]); // [1, T_l]
    let sep = text_len
        .add_scalar(t_l as i64 - 1)
        .remainder_scalar(t_l as i64)
        .reshape([batch, 1]); // [B, 1]
    let special = positions
        .clone()
        .equal(sep)
        .bool_or(positions.equal_elem(0)); // [B, T_l]
    let columns = x_mask.greater_elem(0.0); // [B, T_x]
    let has_frames = columns.clone().any_dim(1); // [B, 1]
    let rows = text_mask
        .greater_elem(0.0)
        .bool_and(special.bool_not())
        .bool_and(has_frames.expand([batch, t_l])); // [B, T_l]
    (rows.float().unsqueeze_dim(2), columns.unsqueeze_dim(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    type TB = Flex;

    #[test]
    fn init_matches_reference_scheme() {
        let device = Default::default();
        let wsam = WsamConfig::new(32).init::<TB>(&device);
        assert_eq!(wsam.num_params(), 4_224);
        // Xavier-uniform over the packed [3D, D] matrix: bound sqrt(6 / (D + 3D)).
        let bound = (6.0f32 / 128.0).sqrt();
        wsam.in_proj
            .weight
            .to_data()
            .assert_within_range(-bound..bound);
        let zeros = TensorData::zeros::<f32, _>([96]);
        let bias = wsam.in_proj.bias.as_ref().map(|b| b.to_data());
        assert_eq!(bias, Some(zeros));
    }

    /// Two samples, `T_l = 6`, `T_x = 5`. Sample 0: text length 5 (`[CLS]` w w w `[SEP]` pad),
    /// 3 frames. Sample 1: text length 6, no frame at all.
    fn example(device: &burn::backend::flex::FlexDevice) -> (Tensor<TB, 3>, Tensor<TB, 3>) {
        TB::seed(device, 7);
        let wsam = WsamConfig::new(4).init::<TB>(device);
        let query = Tensor::<TB, 3>::random([2, 6, 4], Distribution::Normal(0.0, 1.0), device);
        let key_value = Tensor::<TB, 3>::random([2, 5, 4], Distribution::Normal(0.0, 1.0), device);
        let text_mask =
            Tensor::<TB, 2>::from_floats([[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], [1.0; 6]], device);
        let x_mask = Tensor::<TB, 2>::from_floats([[1.0, 1.0, 1.0, 0.0, 0.0], [0.0; 5]], device);
        let text_len = Tensor::<TB, 1, Int>::from_ints([5, 6], device);
        let (out, probs) = wsam.forward_with_weights(query, key_value, text_mask, x_mask, text_len);
        let bias = wsam
            .out_proj
            .bias
            .as_ref()
            .expect("out_proj has a bias")
            .val();
        (out - bias.reshape([1, 1, 4]), probs)
    }

    #[test]
    fn row_sums_are_zero_for_cls_sep_padding_and_empty_samples() {
        let device = Default::default();
        let (_, probs) = example(&device);
        let sums = probs.clone().sum_dim(2).reshape([2, 6]);
        sums.into_data().assert_approx_eq::<f32>(
            &TensorData::from([[0.0f32, 1.0, 1.0, 1.0, 0.0, 0.0], [0.0; 6]]),
            Tolerance::default(),
        );
        // Padded frames (columns 3, 4 of sample 0) never get probability.
        let padded = probs.slice([0..1, 0..6, 3..5]);
        padded.into_data().assert_approx_eq::<f32>(
            &TensorData::zeros::<f32, _>([1, 6, 2]),
            Tolerance::default(),
        );
    }

    #[test]
    fn fully_masked_rows_equal_the_output_bias() {
        let device = Default::default();
        let (out_minus_bias, _) = example(&device);
        let rows = |b: usize, i: usize| out_minus_bias.clone().slice([b..b + 1, i..i + 1, 0..4]);
        for (b, i) in [(0, 0), (0, 4), (0, 5), (1, 0), (1, 3), (1, 5)] {
            rows(b, i).into_data().assert_approx_eq::<f32>(
                &TensorData::zeros::<f32, _>([1, 1, 4]),
                Tolerance::default(),
            );
        }
        // A word row with frames is not just the bias.
        let word: f32 = rows(0, 1).abs().sum().into_scalar();
        assert!(word > 1e-4, "word row equals the bias");
    }

    #[test]
    fn zero_text_len_clears_the_last_position_like_python() {
        let device = Default::default();
        let (rows, columns) = mask_factors::<TB>(
            Tensor::ones([1, 4], &device),
            Tensor::ones([1, 2], &device),
            Tensor::from_ints([0], &device),
        );
        let rows: Vec<f32> = rows.into_data().to_vec::<f32>().expect("float data");
        assert_eq!(rows, [0.0, 1.0, 1.0, 0.0]);
        let columns: Vec<bool> = columns.into_data().to_vec::<bool>().expect("bool data");
        assert_eq!(columns, [true, true]);
    }
}
