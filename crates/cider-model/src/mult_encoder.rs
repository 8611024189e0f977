//! MulT's transformer encoder as the MMSA toolkit ships it (docs/method.md §13.2): a stack of
//! pre-LayerNorm layers whose attention takes its keys and values from a second sequence
//! (crossmodal) or from its own input (self-attention), with a final LayerNorm.
//!
//! ```text
//! x = √E·x_q            k = √E·x_kv           v = √E·x_kv        (each with its own dropout)
//! layer:  x = x + Drop_res(Attn(LN_0(x), LN_0(k), LN_0(v), future mask))
//!         x = x + Drop_res(fc2(Drop_relu(ReLU(fc1(LN_1(x))))))
//! out   = LN(x)
//! ```
//!
//! Sequences are batch-first here (`[batch, T, E]`); MMSA's are time-first, which changes no
//! number. No positional embedding is added (MMSA builds the encoder without one).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};

use crate::kernels;
use crate::weights::WeightLoader;
use crate::wsam::xavier_linear;

/// Configuration of a [`MultEncoder`].
#[derive(Config, Debug)]
pub struct MultEncoderConfig {
    /// Width `E`.
    pub width: usize,
    /// Heads (`E` must be a multiple).
    pub num_heads: usize,
    /// Number of layers.
    pub num_layers: usize,
    /// Dropout on the attention probabilities.
    #[config(default = 0.0)]
    pub attn_dropout: f64,
    /// Dropout after the feed-forward ReLU.
    #[config(default = 0.0)]
    pub relu_dropout: f64,
    /// Dropout on both residual branches.
    #[config(default = 0.0)]
    pub res_dropout: f64,
    /// Dropout on the scaled inputs.
    #[config(default = 0.0)]
    pub embed_dropout: f64,
    /// Whether a query step may only see keys up to `|T_k − T_q|` steps ahead of it.
    #[config(default = true)]
    pub future_mask: bool,
}

impl MultEncoderConfig {
    /// Builds the encoder: Xavier-uniform projections with zero biases, unit LayerNorms.
    pub fn init<B: Backend>(&self, device: &B::Device) -> MultEncoder<B> {
        let e = self.width;
        let layers = (0..self.num_layers)
            .map(|_| MultEncoderLayer {
                attention: MultAttention {
                    in_proj: xavier_linear(e, 3 * e, device),
                    out_proj: xavier_linear(e, e, device),
                    dropout: DropoutConfig::new(self.attn_dropout).init(),
                    num_heads: self.num_heads,
                },
                fc1: xavier_linear(e, 4 * e, device),
                fc2: xavier_linear(4 * e, e, device),
                layer_norms: (0..2)
                    .map(|_| LayerNormConfig::new(e).init(device))
                    .collect(),
                relu_dropout: DropoutConfig::new(self.relu_dropout).init(),
                res_dropout: DropoutConfig::new(self.res_dropout).init(),
            })
            .collect();
        MultEncoder {
            layers,
            layer_norm: LayerNormConfig::new(e).init(device),
            embed_dropout: DropoutConfig::new(self.embed_dropout).init(),
            future_mask: self.future_mask,
        }
    }
}

/// Multi-head attention with a packed input projection `[q | k | v]` (`Linear(E → 3E)`).
#[derive(Module, Debug)]
pub struct MultAttention<B: Backend> {
    /// Query, key and value projections side by side.
    pub in_proj: Linear<B>,
    /// `Linear(E → E)` after the heads are joined.
    pub out_proj: Linear<B>,
    /// Dropout on the attention probabilities.
    pub dropout: Dropout,
    /// Heads.
    pub num_heads: usize,
}

impl<B: Backend> MultAttention<B> {
    /// Attention of `query` over `key` / `value`, `mask` true where a score is excluded.
    ///
    /// # Shapes
    /// - query `[batch, T_q, E]`, key and value `[batch, T_k, E]`, mask `[T_q, T_k]`
    /// - returns `[batch, T_q, E]`
    pub fn forward(
        &self,
        query: Tensor<B, 3>,
        key: Tensor<B, 3>,
        value: Tensor<B, 3>,
        mask: Option<Tensor<B, 2, Bool>>,
    ) -> Tensor<B, 3> {
        let [batch, t_q, e] = query.dims();
        let t_k = key.dims()[1];
        let heads = self.num_heads;
        let hd = e / heads;
        // One block of the packed projection: rows `part·E..(part+1)·E` of PyTorch's weight.
        let project = |x: Tensor<B, 3>, part: usize, t: usize| {
            let w = self.in_proj.weight.val().narrow(1, part * e, e); // [E, E]
            let mut y = x.matmul(w.unsqueeze::<3>()); // [B, t, E]
            if let Some(b) = &self.in_proj.bias {
                y = y + b.val().narrow(0, part * e, e).unsqueeze::<3>();
            }
            y.reshape([batch, t, heads, hd]).swap_dims(1, 2) // [B, H, t, hd]
        };
        let q = project(query, 0, t_q).mul_scalar((hd as f64).powf(-0.5)); // [B, H, T_q, hd]
        let k = project(key, 1, t_k); // [B, H, T_k, hd]
        let v = project(value, 2, t_k); // [B, H, T_k, hd]
        let mut scores = q.matmul(k.swap_dims(2, 3)); // [B, H, T_q, T_k]
        if let Some(mask) = mask {
            scores = scores.mask_fill(mask.unsqueeze::<4>(), f32::NEG_INFINITY);
        }
        let probs = kernels::dropout(softmax(scores, 3), &self.dropout); // [B, H, T_q, T_k]
        let joined = probs
            .matmul(v) // [B, H, T_q, hd]
            .swap_dims(1, 2)
            .reshape([batch, t_q, e]);
        self.out_proj.forward(joined) // [B, T_q, E]
    }
}

/// One pre-LayerNorm layer; `LN_0` normalises the query and the key / value inputs alike.
#[derive(Module, Debug)]
pub struct MultEncoderLayer<B: Backend> {
    /// The attention.
    pub attention: MultAttention<B>,
    /// `fc1: Linear(E → 4E)`.
    pub fc1: Linear<B>,
    /// `fc2: Linear(4E → E)`.
    pub fc2: Linear<B>,
    /// `LN_0` (attention inputs) and `LN_1` (feed-forward input).
    pub layer_norms: Vec<LayerNorm<B>>,
    /// `Drop_relu`.
    pub relu_dropout: Dropout,
    /// `Drop_res`.
    pub res_dropout: Dropout,
}

impl<B: Backend> MultEncoderLayer<B> {
    /// # Shapes
    /// - x `[batch, T_q, E]`; key / value `[batch, T_k, E]` (`None`: self-attention);
    ///   mask `[T_q, T_k]`
    /// - returns `[batch, T_q, E]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        key_value: Option<(Tensor<B, 3>, Tensor<B, 3>)>,
        mask: Option<Tensor<B, 2, Bool>>,
    ) -> Tensor<B, 3> {
        let ln0 = &self.layer_norms[0];
        let q = ln0.forward(x.clone());
        let (k, v) = match key_value {
            Some((k, v)) => (ln0.forward(k), ln0.forward(v)),
            None => (q.clone(), q.clone()),
        };
        let attended = self.attention.forward(q, k, v, mask); // [B, T_q, E]
        let x = x + kernels::dropout(attended, &self.res_dropout);
        let hidden = relu(self.fc1.forward(self.layer_norms[1].forward(x.clone()))); // [B, T_q, 4E]
        let ffn = self
            .fc2
            .forward(kernels::dropout(hidden, &self.relu_dropout)); // [B, T_q, E]
        x + kernels::dropout(ffn, &self.res_dropout)
    }
}

/// MMSA's `TransformerEncoder`: the layers and a final LayerNorm.
#[derive(Module, Debug)]
pub struct MultEncoder<B: Backend> {
    /// The layers, in order.
    pub layers: Vec<MultEncoderLayer<B>>,
    /// The final LayerNorm.
    pub layer_norm: LayerNorm<B>,
    /// Dropout on the scaled inputs.
    pub embed_dropout: Dropout,
    /// Whether the future mask is applied.
    pub future_mask: bool,
}

impl<B: Backend> MultEncoder<B> {
    /// Encodes `x`, attending over `source` (crossmodal) or over `x` itself (`None`).
    ///
    /// # Shapes
    /// - x `[batch, T_q, E]`, source `[batch, T_k, E]`
    /// - returns `[batch, T_q, E]`
    pub fn forward(&self, x: Tensor<B, 3>, source: Option<Tensor<B, 3>>) -> Tensor<B, 3> {
        let [_, t_q, e] = x.dims();
        let scale = (e as f64).sqrt();
        let mut x = kernels::dropout(x.mul_scalar(scale), &self.embed_dropout);
        // MMSA drops out the key and the value inputs separately.
        let key_value = source.map(|s| {
            let s = s.mul_scalar(scale);
            (
                kernels::dropout(s.clone(), &self.embed_dropout),
                kernels::dropout(s, &self.embed_dropout),
            )
        });
        let t_k = key_value.as_ref().map_or(t_q, |(k, _)| k.dims()[1]);
        let mask = self.future_mask.then(|| future_mask(t_q, t_k, &x.device()));
        for layer in &self.layers {
            x = layer.forward(x, key_value.clone(), mask.clone());
        }
        self.layer_norm.forward(x)
    }

    /// The width `E`.
    pub fn width(&self) -> usize {
        self.layer_norm.gamma.dims()[0]
    }
}

/// `[T_q, T_k]`, true where key step `j` lies more than `|T_k − T_q|` steps after query step
/// `i` (`j − i ≥ 1 + |T_k − T_q|`).
pub fn future_mask<B: Backend>(t_q: usize, t_k: usize, device: &B::Device) -> Tensor<B, 2, Bool> {
    let offset = 1 + t_q.abs_diff(t_k) as i64;
    Tensor::<B, 2, Int>::ones([t_q, t_k], device)
        .triu(offset)
        .bool()
}

/// Loads MMSA's `TransformerEncoder` keys under `key` (`layers.{i}.self_attn.in_proj_weight`,
/// `fc1`, `fc2`, `layer_norms.{0,1}`, `layer_norm`; the `version` buffer is read and ignored).
pub fn load_mmsa_encoder<B: Backend>(
    mut encoder: MultEncoder<B>,
    loader: &mut WeightLoader<'_, B>,
    key: &str,
) -> MultEncoder<B> {
    loader.skip(&format!("{key}.version"));
    encoder.layers = encoder
        .layers
        .into_iter()
        .enumerate()
        .map(|(i, mut layer)| {
            let at = format!("{key}.layers.{i}");
            let attn = &mut layer.attention;
            attn.in_proj.weight = loader.param_transposed(
                attn.in_proj.weight.clone(),
                &format!("{at}.self_attn.in_proj_weight"),
            );
            attn.in_proj.bias = attn
                .in_proj
                .bias
                .clone()
                .map(|b| loader.param(b, &format!("{at}.self_attn.in_proj_bias")));
            attn.out_proj =
                loader.linear(attn.out_proj.clone(), &format!("{at}.self_attn.out_proj"));
            layer.fc1 = loader.linear(layer.fc1, &format!("{at}.fc1"));
            layer.fc2 = loader.linear(layer.fc2, &format!("{at}.fc2"));
            layer.layer_norms = layer
                .layer_norms
                .into_iter()
                .enumerate()
                .map(|(j, norm)| loader.layer_norm(norm, &format!("{at}.layer_norms.{j}")))
                .collect();
            layer
        })
        .collect();
    encoder.layer_norm = loader.layer_norm(encoder.layer_norm, &format!("{key}.layer_norm"));
    encoder
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::backend::flex::FlexDevice;
    use burn::module::Module;

    use super::*;

    /// MMSA's `triu(-inf, 1 + |T_k − T_q|)`: with `T_q = 3`, `T_k = 5` query 0 sees keys 0–2,
    /// query 1 keys 0–3, query 2 every key; a square mask is the causal one.
    #[test]
    fn future_mask_allows_the_length_difference() {
        let mask: Vec<bool> = future_mask::<Flex>(3, 5, &FlexDevice)
            .into_data()
            .to_vec()
            .expect("bool");
        let expected = [
            [false, false, false, true, true],
            [false, false, false, false, true],
            [false; 5],
        ];
        assert_eq!(mask, expected.concat());
        let square: Vec<bool> = future_mask::<Flex>(2, 2, &FlexDevice)
            .into_data()
            .to_vec()
            .expect("bool");
        assert_eq!(square, [false, true, false, false]);
    }

    /// One layer holds `12E² + 13E` parameters (packed attention, `4E` feed-forward, two
    /// LayerNorms); the encoder adds its final LayerNorm.
    #[test]
    fn parameter_count_per_layer() {
        let e = 6;
        let encoder = MultEncoderConfig::new(e, 2, 3).init::<Flex>(&FlexDevice);
        assert_eq!(encoder.num_params(), 3 * (12 * e * e + 13 * e) + 2 * e);
        assert_eq!(encoder.width(), e);
    }

    /// The future mask hides later steps only: it changes the first step's output (which then
    /// sees only itself) and leaves the last step's (which sees every step) unchanged.
    #[test]
    fn the_mask_only_hides_later_steps() {
        let device = FlexDevice;
        Flex::seed(&device, 3);
        let masked = MultEncoderConfig::new(4, 2, 1).init::<Flex>(&device);
        let x = Tensor::<Flex, 3>::random([1, 4, 4], burn::tensor::Distribution::Default, &device);
        // Parameters are drawn lazily: run once so that the copy below has the same weights.
        let _ = masked.forward(x.clone(), None);
        let open = MultEncoder {
            future_mask: false,
            ..masked.clone()
        };
        let step = |e: &MultEncoder<Flex>, t: usize| -> Vec<f32> {
            e.forward(x.clone(), None)
                .narrow(1, t, 1)
                .into_data()
                .to_vec()
                .expect("f32")
        };
        let diff = |a: Vec<f32>, b: Vec<f32>| {
            a.iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max)
        };
        assert!(diff(step(&masked, 3), step(&open, 3)) < 1e-6);
        assert!(diff(step(&masked, 0), step(&open, 0)) > 1e-4);
    }
}
