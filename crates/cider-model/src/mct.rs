//! MCT, the Multimodal Composite Transformer (docs/method.md §5.5): a pre-LayerNorm transformer over the
//! fused sequence `Z = [G_l ; G_a ; G_v]` (`3L` tokens) whose attention, the Multimodal
//! Composite Attention (MCA), runs seven masked branches, one per non-empty modality subset.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::kernels::{self, composed};
use crate::network_config::PositionalMode;
use crate::wsam::xavier_linear;

/// The seven modality subsets `U ⊆ {L, A, V}` of the MCA, in the reference's projection order
/// (`LAV`→0, `LA`→1, `LV`→2, `AV`→3, `L`→4, `A`→5, `V`→6); each entry says whether text, audio
/// and vision belong to the subset.
pub const BRANCHES: [[bool; 3]; 7] = [
    [true, true, true],
    [true, true, false],
    [true, false, true],
    [false, true, true],
    [true, false, false],
    [false, true, false],
    [false, false, true],
];

/// For each modality (text, audio, vision), the four branches that contain it, in the order
/// their outputs are concatenated before the summarisation `s_l` / `s_a` / `s_v`.
pub(crate) const SUMMARY_BRANCHES: [[usize; 4]; 3] = [[0, 1, 2, 4], [0, 1, 3, 5], [0, 2, 3, 6]];

/// The branch whose attention probabilities get dropout (`LAV`).
pub(crate) const LAV: usize = 0;

/// The sinusoidal table `pe[p, 2k] = sin(p·ω_k)`, `pe[p, 2k+1] = cos(p·ω_k)`,
/// `ω_k = 10000^(−2k/D)` (no `sqrt(D)` scaling), computed in `f64`.
///
/// # Returns
/// `rows × d_model` values, row-major.
pub fn sinusoidal_table(rows: usize, d_model: usize) -> Vec<f32> {
    let mut table = vec![0.0f32; rows * d_model];
    for (p, row) in table.chunks_exact_mut(d_model).enumerate() {
        for (i, value) in row.iter_mut().enumerate() {
            let k = i / 2;
            let omega = 10000f64.powf(-((2 * k) as f64) / d_model as f64);
            let angle = p as f64 * omega;
            *value = if i % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
        }
    }
    table
}

/// Configuration of a [`Mca`].
#[derive(Config, Debug)]
pub struct McaConfig {
    /// Width `D`.
    pub d_model: usize,
    /// Heads `H` (`hd = D / H`).
    pub num_heads: usize,
    /// Dropout on the `LAV` branch's attention probabilities.
    #[config(default = 0.0)]
    pub attn_dropout: f64,
}

/// Multimodal Composite Attention (docs/method.md §5.5, steps 1-6): self-attention with `q = k = v = x`.
#[derive(Module, Debug)]
pub struct Mca<B: Backend> {
    /// Packed input projection: `Linear(D → 3D)`, columns `[q | k | v]`.
    pub in_proj: Linear<B>,
    /// The seven branch projections `Linear_U(D → D)`, indexed as [`BRANCHES`].
    pub out_proj: Vec<Linear<B>>,
    /// Text summarisation `s_l: Linear(4D → D)` over `[O_LAV ; O_LA ; O_LV ; O_L]`.
    pub s_l: Linear<B>,
    /// Audio summarisation `s_a: Linear(4D → D)` over `[O_LAV ; O_LA ; O_AV ; O_A]`.
    pub s_a: Linear<B>,
    /// Vision summarisation `s_v: Linear(4D → D)` over `[O_LAV ; O_LV ; O_AV ; O_V]`.
    pub s_v: Linear<B>,
    /// `final_out_proj: Linear(D → D)`.
    pub final_out_proj: Linear<B>,
    /// Dropout on the `LAV` attention probabilities.
    pub attn_dropout: Dropout,
    /// Heads `H`.
    pub num_heads: usize,
}

impl McaConfig {
    /// Initialises a [`Mca`] (Xavier-uniform in-projection and branch projections with zero
    /// biases; PyTorch-default `s_*` and `final_out_proj`, docs/method.md §5.11).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Mca<B> {
        let d = self.d_model;
        Mca {
            in_proj: xavier_linear(d, 3 * d, device),
            out_proj: (0..BRANCHES.len())
                .map(|_| xavier_linear(d, d, device))
                .collect(),
            s_l: LinearConfig::new(4 * d, d).init(device),
            s_a: LinearConfig::new(4 * d, d).init(device),
            s_v: LinearConfig::new(4 * d, d).init(device),
            final_out_proj: LinearConfig::new(d, d).init(device),
            attn_dropout: DropoutConfig::new(self.attn_dropout).init(),
            num_heads: self.num_heads,
        }
    }
}

impl<B: Backend> Mca<B> {
    /// Runs the seven branches and the per-modality summarisation.
    ///
    /// The branch outputs come from [`kernels::mca_branches`]: a fused kernel on `Flex`, the
    /// blockwise composition of Burn ops elsewhere (both described there). Each row block then
    /// goes through its four branch projections, its summarisation and `final_out_proj`,
    /// folded into one affine map per block.
    ///
    /// # Shapes
    /// - x: `[batch, 3L, D]` (segments text, audio, vision of length `L` each)
    /// - returns `[batch, 3L, D]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.forward_with_scores(x, false).0
    }

    /// [`Mca::forward`], and with `scores` also the raw attention scores.
    ///
    /// # Shapes
    /// - x: `[batch, 3L, D]`
    /// - returns `(output [batch, 3L, D], raw scores [batch·H, 3L, 3L])`; the scores are
    ///   `q kᵀ / √hd` before any mask or softmax, flat index `b·H + h`
    pub fn forward_with_scores(
        &self,
        x: Tensor<B, 3>,
        scores: bool,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 3>>) {
        let [batch, n, d] = x.dims();
        let l = n / 3;
        let qkv = self.in_proj.forward(x); // [B, 3L, 3D]
        let scores = scores.then(|| composed::raw_scores(qkv.clone(), self.num_heads));
        let branches = kernels::mca_branches(qkv, self.num_heads, &self.attn_dropout); // [3, B·L, 4D]
        let (weight, bias) = self.composed_output(); // [3, 4D, D], [3, 1, D]
        let out = (branches.matmul(weight) + bias) // [3, B·L, D]
            .reshape([3, batch, l, d])
            .swap_dims(0, 1)
            .reshape([batch, n, d]); // [B, 3L, D]
        (out, scores)
    }

    /// The affine map from a row block's four branch outputs to the MCA output.
    ///
    /// For the rows of modality `i`, `Linear_U` of its four branches, the summarisation `s_i`
    /// and `final_out_proj` follow one another with no non-linearity in between, so
    /// `((cat_k(O_k W_k + b_k)) W_s + b_s) W_f + b_f = cat_k(O_k) · W + b` with
    /// `W = stack_k(W_k W_s[k]) · W_f` and `b = (Σ_k b_k W_s[k] + b_s) W_f + b_f`, where
    /// `W_s[k]` is rows `kD..(k+1)D` of `W_s` (Burn's `[in, out]` weight layout). The
    /// composition is differentiable, so every original weight still gets its gradient.
    ///
    /// # Returns
    /// `W` `[3, 4D, D]` and `b` `[3, 1, D]`, row blocks text, audio, vision.
    fn composed_output(&self) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let w_f = self.final_out_proj.weight.val(); // [D, D]
        let d = w_f.dims()[0];
        let bias_of = |layer: &Linear<B>| layer.bias.as_ref().map(|b| b.val().reshape([1, d]));
        let add = |a: Tensor<B, 2>, b: Option<Tensor<B, 2>>| match b {
            Some(b) => a + b,
            None => a,
        };
        let (weights, biases): (Vec<_>, Vec<_>) = [&self.s_l, &self.s_a, &self.s_v]
            .into_iter()
            .zip(SUMMARY_BRANCHES)
            .map(|(summary, slots)| {
                let w_s = summary.weight.val(); // [4D, D]
                let mut parts = Vec::with_capacity(slots.len());
                let mut bias =
                    bias_of(summary).unwrap_or_else(|| Tensor::zeros([1, d], &w_f.device()));
                for (k, u) in slots.into_iter().enumerate() {
                    let w_sk = w_s.clone().narrow(0, k * d, d); // [D, D]
                    let branch = &self.out_proj[u];
                    if let Some(b_u) = bias_of(branch) {
                        bias = bias + b_u.matmul(w_sk.clone()); // [1, D]
                    }
                    parts.push(branch.weight.val().matmul(w_sk)); // [D, D]
                }
                let weight = Tensor::cat(parts, 0).matmul(w_f.clone()); // [4D, D]
                let bias = add(bias.matmul(w_f.clone()), bias_of(&self.final_out_proj)); // [1, D]
                (weight.unsqueeze_dim::<3>(0), bias.unsqueeze_dim::<3>(0))
            })
            .unzip();
        (Tensor::cat(weights, 0), Tensor::cat(biases, 0))
    }
}

/// Configuration of an [`MctLayer`].
#[derive(Config, Debug)]
pub struct MctLayerConfig {
    /// Width `D`.
    pub d_model: usize,
    /// Heads `H`.
    pub num_heads: usize,
    /// Dropout on the `LAV` attention probabilities.
    #[config(default = 0.0)]
    pub attn_dropout: f64,
    /// Dropout after the feed-forward ReLU.
    #[config(default = 0.1)]
    pub relu_dropout: f64,
    /// Dropout on both residual branches.
    #[config(default = 0.1)]
    pub res_dropout: f64,
}

/// One pre-LayerNorm MCT layer:
/// `x1 = x + Dropout_res(MCA(LN_0(x)))`,
/// `x2 = x1 + Dropout_res(fc2(Dropout_relu(ReLU(fc1(LN_1(x1))))))`.
#[derive(Module, Debug)]
pub struct MctLayer<B: Backend> {
    /// The composite attention.
    pub self_attn: Mca<B>,
    /// `fc1: Linear(D → 4D)`.
    pub fc1: Linear<B>,
    /// `fc2: Linear(4D → D)`.
    pub fc2: Linear<B>,
    /// `LN_0` (before the attention) and `LN_1` (before the feed-forward block), eps 1e-5.
    pub layer_norms: Vec<LayerNorm<B>>,
    /// `Dropout_relu`.
    pub relu_dropout: Dropout,
    /// `Dropout_res`.
    pub res_dropout: Dropout,
}

impl MctLayerConfig {
    /// Initialises an [`MctLayer`] (Xavier-uniform `fc1`/`fc2` with zero biases, docs/method.md §5.11).
    pub fn init<B: Backend>(&self, device: &B::Device) -> MctLayer<B> {
        let d = self.d_model;
        MctLayer {
            self_attn: McaConfig::new(d, self.num_heads)
                .with_attn_dropout(self.attn_dropout)
                .init(device),
            fc1: xavier_linear(d, 4 * d, device),
            fc2: xavier_linear(4 * d, d, device),
            layer_norms: (0..2)
                .map(|_| LayerNormConfig::new(d).init(device))
                .collect(),
            relu_dropout: DropoutConfig::new(self.relu_dropout).init(),
            res_dropout: DropoutConfig::new(self.res_dropout).init(),
        }
    }
}

impl<B: Backend> MctLayer<B> {
    /// Runs the layer; with `scores`, also returns its attention's raw scores.
    ///
    /// # Shapes
    /// - x: `[batch, 3L, D]`
    /// - returns `(x2 [batch, 3L, D], raw scores [batch·H, 3L, 3L])`
    pub fn forward(&self, x: Tensor<B, 3>, scores: bool) -> (Tensor<B, 3>, Option<Tensor<B, 3>>) {
        let (attn, scores) = self
            .self_attn
            .forward_with_scores(self.layer_norms[0].forward(x.clone()), scores); // [B, 3L, D]
        let x1 = x + kernels::dropout(attn, &self.res_dropout); // [B, 3L, D]
        let hidden = relu(self.fc1.forward(self.layer_norms[1].forward(x1.clone()))); // [B, 3L, 4D]
        let ffn = self
            .fc2
            .forward(kernels::dropout(hidden, &self.relu_dropout)); // [B, 3L, D]
        (x1 + kernels::dropout(ffn, &self.res_dropout), scores) // [B, 3L, D]
    }
}

/// Configuration of an [`Mct`].
#[derive(Config, Debug)]
pub struct MctConfig {
    /// Width `D`.
    pub d_model: usize,
    /// Heads `H`.
    pub num_heads: usize,
    /// Number of layers `n` (at least 1).
    pub num_layers: usize,
    /// Dropout on the `LAV` attention probabilities.
    #[config(default = 0.0)]
    pub attn_dropout: f64,
    /// Dropout after the feed-forward ReLU.
    #[config(default = 0.1)]
    pub relu_dropout: f64,
    /// Dropout on the residual branches.
    #[config(default = 0.1)]
    pub res_dropout: f64,
    /// Dropout after the positional term.
    #[config(default = 0.2)]
    pub embed_dropout: f64,
    /// Batch-indexed (reference) or time-indexed positional term.
    #[config(default = "PositionalMode::BatchIndex")]
    pub positional: PositionalMode,
    /// Rows of the sinusoidal table.
    #[config(default = 1024)]
    pub max_positions: usize,
}

/// The output of the MCT, split back into modalities.
#[derive(Debug, Clone)]
pub struct MctOutput<B: Backend> {
    /// `Z_l`: `[batch, L, D]` (after the final LayerNorm).
    pub text: Tensor<B, 3>,
    /// `Z_a`: `[batch, L, D]`.
    pub audio: Tensor<B, 3>,
    /// `Z_v`: `[batch, L, D]`.
    pub vision: Tensor<B, 3>,
    /// The last layer's raw attention scores `[batch·H, 3L, 3L]` (index `b·H + h`);
    /// `[0, 3L, 3L]` for an MCT without layers.
    pub scores: Tensor<B, 3>,
}

/// The Multimodal Composite Transformer.
#[derive(Module, Debug)]
pub struct Mct<B: Backend> {
    /// The fixed sinusoidal table `[max_positions, D]` (a constant, not a parameter).
    pub pe: Tensor<B, 2>,
    /// The encoder layers.
    pub layers: Vec<MctLayer<B>>,
    /// Final LayerNorm(D).
    pub layer_norm: LayerNorm<B>,
    /// Dropout with `p = embed_dropout` after the positional term.
    pub embed_dropout: Dropout,
    /// How the positional term is indexed.
    pub positional: PositionalMode,
}

impl MctConfig {
    /// Initialises an [`Mct`].
    pub fn init<B: Backend>(&self, device: &B::Device) -> Mct<B> {
        let d = self.d_model;
        let layer = MctLayerConfig::new(d, self.num_heads)
            .with_attn_dropout(self.attn_dropout)
            .with_relu_dropout(self.relu_dropout)
            .with_res_dropout(self.res_dropout);
        Mct {
            pe: Tensor::from_data(
                TensorData::new(
                    sinusoidal_table(self.max_positions, d),
                    [self.max_positions, d],
                ),
                device,
            ),
            layers: (0..self.num_layers).map(|_| layer.init(device)).collect(),
            layer_norm: LayerNormConfig::new(d).init(device),
            embed_dropout: DropoutConfig::new(self.embed_dropout).init(),
            positional: self.positional,
        }
    }
}

impl<B: Backend> Mct<B> {
    /// Fuses the three modality sequences.
    ///
    /// # Shapes
    /// - text, audio, vision: `[batch, L, D]` each
    /// - output: see [`MctOutput`]
    ///
    /// # Panics
    /// With [`PositionalMode::BatchIndex`] when `batch` exceeds the table's rows, and with
    /// [`PositionalMode::TimeIndex`] when `3L` does (`NetworkConfig::validate` rules the latter
    /// out for the configured `T_l`).
    pub fn forward(
        &self,
        text: Tensor<B, 3>,
        audio: Tensor<B, 3>,
        vision: Tensor<B, 3>,
    ) -> MctOutput<B> {
        let [batch, l, d] = text.dims();
        let x = self.embed(Tensor::cat(vec![text, audio, vision], 1)); // [B, 3L, D]
        // Only the last layer's scores are kept, so only it computes them.
        let last = self.layers.len().saturating_sub(1);
        let (x, scores) = self
            .layers
            .iter()
            .enumerate()
            .fold((x, None), |(x, _), (i, layer)| layer.forward(x, i == last)); // [B, 3L, D], [B·H, 3L, 3L]
        let x = self.layer_norm.forward(x); // [B, 3L, D]
        let scores = scores.unwrap_or_else(|| Tensor::zeros([0, 3 * l, 3 * l], &x.device()));
        MctOutput {
            text: x.clone().slice([0..batch, 0..l, 0..d]),
            audio: x.clone().slice([0..batch, l..2 * l, 0..d]),
            vision: x.slice([0..batch, 2 * l..3 * l, 0..d]),
            scores,
        }
    }

    /// Adds the positional term and applies the embedding dropout: `pe[b]` to every token of
    /// sample `b` ([`PositionalMode::BatchIndex`]) or `pe[t]` to token `t`
    /// ([`PositionalMode::TimeIndex`]).
    ///
    /// # Shapes
    /// - x: `[batch, tokens, D]`
    /// - output: `[batch, tokens, D]`
    pub fn embed(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, tokens, d] = x.dims();
        let term = match self.positional {
            PositionalMode::BatchIndex => {
                self.pe
                    .clone()
                    .slice([0..batch, 0..d])
                    .reshape([batch, 1, d]) // [B, 1, D]
            }
            PositionalMode::TimeIndex => {
                self.pe
                    .clone()
                    .slice([0..tokens, 0..d])
                    .reshape([1, tokens, d]) // [1, N, D]
            }
        };
        kernels::dropout(x + term, &self.embed_dropout) // [B, N, D]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::module::AutodiffModule;
    use burn::tensor::{Bool, Distribution, Tolerance, activation};

    type TB = Flex;

    fn values<const D: usize>(t: Tensor<TB, D>) -> Vec<f64> {
        t.into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .expect("float data")
    }

    /// `y = x W + b` with Burn's `[in, out]` weight layout, in f64.
    fn apply(layer: &Linear<TB>, x: &[f64]) -> Vec<f64> {
        let [d_in, d_out] = layer.weight.dims();
        let w = values(layer.weight.val());
        let b = layer
            .bias
            .as_ref()
            .map(|b| values(b.val()))
            .unwrap_or_else(|| vec![0.0; d_out]);
        (0..d_out)
            .map(|o| b[o] + (0..d_in).map(|i| x[i] * w[i * d_out + o]).sum::<f64>())
            .collect()
    }

    #[test]
    fn param_counts_match_spec() {
        let device = Default::default();
        let layer = MctLayerConfig::new(32, 8).init::<TB>(&device);
        assert_eq!(layer.self_attn.num_params(), 24_000);
        assert_eq!(layer.num_params(), 32_480);
        let mct = MctConfig::new(32, 8, 3).init::<TB>(&device);
        assert_eq!(mct.num_params(), 97_504);
    }

    #[test]
    fn sinusoidal_table_values() {
        let table = sinusoidal_table(3, 4);
        // ω_0 = 1, ω_1 = 10000^(-1/2) = 0.01.
        let expected = [
            0.0f64,
            1.0,
            0.0,
            1.0, //
            1f64.sin(),
            1f64.cos(),
            0.01f64.sin(),
            0.01f64.cos(), //
            2f64.sin(),
            2f64.cos(),
            0.02f64.sin(),
            0.02f64.cos(),
        ];
        for (got, want) in table.iter().zip(expected) {
            assert!((f64::from(*got) - want).abs() < 1e-7, "{got} vs {want}");
        }
    }

    /// With zero input, every token of sample `b` equals `pe[b]` (reference) or token `t`
    /// equals `pe[t]` (corrected).
    #[test]
    fn positional_modes_on_zero_input() {
        let device = Default::default();
        let (batch, tokens, d) = (3, 6, 8);
        let table = sinusoidal_table(16, d);
        let row = |p: usize| &table[p * d..(p + 1) * d];
        for mode in [PositionalMode::BatchIndex, PositionalMode::TimeIndex] {
            let mct = MctConfig::new(d, 2, 1)
                .with_positional(mode)
                .with_max_positions(16)
                .init::<TB>(&device);
            let out = values(mct.embed(Tensor::zeros([batch, tokens, d], &device)));
            for b in 0..batch {
                for t in 0..tokens {
                    let p = match mode {
                        PositionalMode::BatchIndex => b,
                        PositionalMode::TimeIndex => t,
                    };
                    let token = &out[(b * tokens + t) * d..(b * tokens + t + 1) * d];
                    for (got, want) in token.iter().zip(row(p)) {
                        assert!(
                            (got - f64::from(*want)).abs() < 1e-7,
                            "{mode:?} b {b} t {t}"
                        );
                    }
                }
            }
        }
    }

    /// An MCA with random, non-zero biases everywhere so that every term matters.
    fn noisy_mca<B: Backend>(d: usize, heads: usize, dropout: f64, device: &B::Device) -> Mca<B> {
        let mut mca = McaConfig::new(d, heads)
            .with_attn_dropout(dropout)
            .init::<B>(device);
        let noisy = |layer: &mut Linear<B>| {
            let [_, d_out] = layer.weight.dims();
            layer.bias = Some(burn::module::Param::from_tensor(Tensor::random(
                [d_out],
                Distribution::Normal(0.0, 0.5),
                device,
            )));
        };
        noisy(&mut mca.in_proj);
        mca.out_proj.iter_mut().for_each(noisy);
        mca
    }

    /// A loop-by-loop formulation of docs/method.md §5.5 in f64: for each of the seven subsets `U`, rows
    /// in `U` take a softmax over the columns in `U` and rows outside give a zero vector before
    /// `Linear_U`; each modality's rows are summarised from the four subsets that contain it.
    /// `lav_dropout` = (keep mask `[batch, H, 3L, 3L]`, keep probability) multiplies the `LAV`
    /// probabilities by `keep / p`.
    ///
    /// # Returns
    /// `(output [batch, 3L, D], scores [batch·H, 3L, 3L])`, row-major.
    fn reference_mca(
        mca: &Mca<TB>,
        xs: &[f64],
        [batch, l, d]: [usize; 3],
        lav_dropout: Option<(&[f64], f64)>,
    ) -> (Vec<f64>, Vec<f64>) {
        let heads = mca.num_heads;
        let (n, hd) = (3 * l, d / heads);
        let names = ["LAV", "LA", "LV", "AV", "L", "A", "V"];
        let letter = |i: usize| ["L", "A", "V"][i / l];
        let mut want_out = vec![0.0; batch * n * d];
        let mut want_scores = vec![0.0; batch * heads * n * n];
        for b in 0..batch {
            let qkv: Vec<Vec<f64>> = (0..n)
                .map(|i| apply(&mca.in_proj, &xs[(b * n + i) * d..(b * n + i + 1) * d]))
                .collect();
            let score = |h: usize, i: usize, j: usize| {
                (0..hd)
                    .map(|c| qkv[i][h * hd + c] * (hd as f64).powf(-0.5) * qkv[j][d + h * hd + c])
                    .sum::<f64>()
            };
            for h in 0..heads {
                for i in 0..n {
                    for j in 0..n {
                        want_scores[((b * heads + h) * n + i) * n + j] = score(h, i, j);
                    }
                }
            }
            // branch_out[u][i] = Linear_U(O_U[i]).
            let branch_out: Vec<Vec<Vec<f64>>> = names
                .iter()
                .enumerate()
                .map(|(u, name)| {
                    (0..n)
                        .map(|i| {
                            let mut o = vec![0.0; d];
                            if name.contains(letter(i)) {
                                let cols: Vec<usize> =
                                    (0..n).filter(|&j| name.contains(letter(j))).collect();
                                for h in 0..heads {
                                    let s: Vec<f64> =
                                        cols.iter().map(|&j| score(h, i, j)).collect();
                                    let max = s.iter().cloned().fold(f64::MIN, f64::max);
                                    let z: f64 = s.iter().map(|v| (v - max).exp()).sum();
                                    for (&j, sj) in cols.iter().zip(&s) {
                                        let mut p = (sj - max).exp() / z;
                                        if let (0, Some((keep, prob))) = (u, lav_dropout) {
                                            p *= keep[((b * heads + h) * n + i) * n + j] / prob;
                                        }
                                        for c in 0..hd {
                                            o[h * hd + c] += p * qkv[j][2 * d + h * hd + c];
                                        }
                                    }
                                }
                            }
                            apply(&mca.out_proj[u], &o)
                        })
                        .collect()
                })
                .collect();
            for i in 0..n {
                let summary = [&mca.s_l, &mca.s_a, &mca.s_v][i / l];
                let concat: Vec<f64> = names
                    .iter()
                    .enumerate()
                    .filter(|(_, name)| name.contains(letter(i)))
                    .flat_map(|(u, _)| branch_out[u][i].clone())
                    .collect();
                let y = apply(&mca.final_out_proj, &apply(summary, &concat));
                want_out[(b * n + i) * d..(b * n + i + 1) * d].copy_from_slice(&y);
            }
        }
        (want_out, want_scores)
    }

    /// The MCA against [`reference_mca`].
    #[test]
    fn mca_matches_direct_formulation() {
        let device = Default::default();
        TB::seed(&device, 3);
        let (batch, l, d, heads) = (2, 3, 8, 2);
        let n = 3 * l;
        let mca = noisy_mca::<TB>(d, heads, 0.0, &device);
        let x = Tensor::<TB, 3>::random([batch, n, d], Distribution::Normal(0.0, 1.0), &device);
        let (out, scores) = mca.forward_with_scores(x.clone(), true);
        let scores = scores.expect("scores were asked for");
        assert_eq!(scores.dims(), [batch * heads, n, n]);
        let (want_out, want_scores) = reference_mca(&mca, &values(x), [batch, l, d], None);
        let tol = Tolerance::<f64>::absolute(1e-5);
        out.into_data()
            .convert::<f64>()
            .assert_approx_eq::<f64>(&TensorData::new(want_out, [batch, n, d]), tol);
        scores
            .into_data()
            .convert::<f64>()
            .assert_approx_eq::<f64>(&TensorData::new(want_scores, [batch * heads, n, n]), tol);
    }

    /// In training, dropout acts on the `LAV` probabilities only: the output equals the direct
    /// formulation with the keep mask that the seeded dropout draws (one Bernoulli tensor over
    /// the `[batch, H, 3L, 3L]` probabilities), and without autodiff nothing is dropped.
    #[test]
    fn mca_attention_dropout_acts_on_lav_probabilities() {
        type AB = burn::backend::Autodiff<TB>;
        let device = Default::default();
        TB::seed(&device, 5);
        let (batch, l, d, heads, prob) = (2, 3, 8, 2, 0.5);
        let n = 3 * l;
        let mca = noisy_mca::<AB>(d, heads, prob, &device);
        let x = Tensor::<TB, 3>::random([batch, n, d], Distribution::Normal(0.0, 1.0), &device);
        let xs = values(x.clone());
        let inner = mca.valid();

        // The backend's RNG is global, and tests running in parallel may reseed it between our
        // seed and the dropout's draw; such an attempt gives a mask we cannot reproduce, so
        // attempts are repeated (a wrong MCA fails every one).
        let draw = || {
            TB::seed(&device, 9);
            values(Tensor::<TB, 4>::random(
                [batch, heads, n, n],
                Distribution::Bernoulli(1.0 - prob),
                &device,
            ))
        };
        let largest_errors: Vec<f64> = (0..20)
            .map(|_| {
                TB::seed(&device, 9);
                let out = mca.forward(Tensor::from_inner(x.clone()));
                let keep = draw();
                assert!(keep.contains(&0.0), "the mask drops something");
                let (want, _) =
                    reference_mca(&inner, &xs, [batch, l, d], Some((&keep, 1.0 - prob)));
                values(out.inner())
                    .iter()
                    .zip(want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max)
            })
            .take_while(|&error| error >= 1e-5)
            .collect();
        assert!(
            largest_errors.len() < 20,
            "no attempt matched the reference; largest errors {largest_errors:?}"
        );
        let tol = Tolerance::<f64>::absolute(1e-5);
        let eval_out = inner.forward(x);
        let (want_eval, _) = reference_mca(&inner, &xs, [batch, l, d], None);
        eval_out
            .into_data()
            .convert::<f64>()
            .assert_approx_eq::<f64>(&TensorData::new(want_eval, [batch, n, d]), tol);
    }

    /// The dense formulation (one masked softmax over `[B, H, 3L, 3L]` per branch, then
    /// `Linear_U`, the summarisations and `final_out_proj` as separate layers), written with
    /// tensor operations so that autodiff can differentiate it.
    fn dense_mca<B: Backend>(mca: &Mca<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, n, d] = x.dims();
        let (heads, l) = (mca.num_heads, n / 3);
        let hd = d / heads;
        let qkv = mca.in_proj.forward(x);
        let split = |i: usize| {
            qkv.clone()
                .slice([0..batch, 0..n, i * d..(i + 1) * d])
                .reshape([batch, n, heads, hd])
                .swap_dims(1, 2)
        };
        let scores = split(0)
            .mul_scalar((hd as f64).powf(-0.5))
            .matmul(split(1).swap_dims(2, 3));
        let device = scores.device();
        let branch_out: Vec<Tensor<B, 3>> = BRANCHES
            .iter()
            .zip(&mca.out_proj)
            .map(|(members, proj)| {
                let allowed: Vec<bool> = (0..n * n)
                    .map(|ij| members[ij / n / l] && members[ij % n / l])
                    .collect();
                let allowed = Tensor::<B, 4, Bool>::from_data(
                    TensorData::new(allowed, [1, 1, n, n]),
                    &device,
                );
                // Blocked entries get exp(f32::MIN) = 0; rows outside the branch are cleared.
                let probs = activation::softmax(
                    scores
                        .clone()
                        .mask_fill(allowed.clone().bool_not().expand(scores.shape()), f32::MIN),
                    3,
                )
                .mask_fill(allowed.any_dim(3).bool_not().expand(scores.shape()), 0.0);
                proj.forward(
                    probs
                        .matmul(split(2))
                        .swap_dims(1, 2)
                        .reshape([batch, n, d]),
                )
            })
            .collect();
        let segments = SUMMARY_BRANCHES
            .iter()
            .zip([&mca.s_l, &mca.s_a, &mca.s_v])
            .enumerate()
            .map(|(m, (slots, summary))| {
                let parts = slots
                    .iter()
                    .map(|&u| {
                        branch_out[u]
                            .clone()
                            .slice([0..batch, m * l..(m + 1) * l, 0..d])
                    })
                    .collect();
                summary.forward(Tensor::cat(parts, 2))
            })
            .collect();
        mca.final_out_proj.forward(Tensor::cat(segments, 1))
    }

    /// Gradients through the block formulation (with its detached maxima and composed output
    /// map) equal those through the dense formulation, for the input and every parameter.
    #[test]
    fn mca_gradients_match_dense_formulation() {
        type AB = burn::backend::Autodiff<TB>;
        let device = Default::default();
        TB::seed(&device, 13);
        let (batch, l, d, heads) = (2, 4, 8, 4);
        let n = 3 * l;
        let mca = noisy_mca::<AB>(d, heads, 0.0, &device);
        let x_inner =
            Tensor::<TB, 3>::random([batch, n, d], Distribution::Normal(0.0, 2.0), &device);
        let probe = Tensor::<AB, 3>::random([batch, n, d], Distribution::Normal(0.0, 1.0), &device);
        let gradients = |block: bool| {
            let x = Tensor::<AB, 3>::from_inner(x_inner.clone()).require_grad();
            let out = if block {
                mca.forward(x.clone())
            } else {
                dense_mca(&mca, x.clone())
            };
            let grads = (out * probe.clone()).sum().backward();
            let mut all = values(x.grad(&grads).expect("input gradient"));
            let params = [
                &mca.in_proj,
                &mca.s_l,
                &mca.s_a,
                &mca.s_v,
                &mca.final_out_proj,
            ]
            .into_iter()
            .chain(&mca.out_proj);
            for layer in params {
                all.extend(values(layer.weight.grad(&grads).expect("weight gradient")));
                let bias = layer.bias.as_ref().expect("bias");
                all.extend(values(bias.grad(&grads).expect("bias gradient")));
            }
            all
        };
        let (got, want) = (gradients(true), gradients(false));
        assert_eq!(got.len(), want.len());
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
            .fold(0.0, f64::max);
        assert!(worst < 1e-4, "largest relative gradient difference {worst}");
    }

    /// Each modality's four summarised branches are exactly the subsets containing it, in the
    /// concatenation order of docs/method.md §5.5 ( step 5: `[LAV ; LA ; LV ; L]`, `[LAV ; LA ; AV ; A]`,
    /// `[LAV ; LV ; AV ; V]`), and `LAV` is the full subset.
    #[test]
    fn summary_branches_are_the_subsets_containing_each_modality() {
        for (i, slots) in SUMMARY_BRANCHES.iter().enumerate() {
            let containing: Vec<usize> = (0..BRANCHES.len()).filter(|&u| BRANCHES[u][i]).collect();
            assert_eq!(slots.to_vec(), containing, "modality {i}");
        }
        assert_eq!(SUMMARY_BRANCHES, [[0, 1, 2, 4], [0, 1, 3, 5], [0, 2, 3, 6]]);
        assert_eq!(BRANCHES[LAV], [true; 3]);
    }

    #[test]
    fn mct_output_shapes_and_last_layer_scores() {
        let device = Default::default();
        let mct = MctConfig::new(8, 4, 2).init::<TB>(&device);
        let x = || Tensor::<TB, 3>::random([3, 5, 8], Distribution::Normal(0.0, 1.0), &device);
        let out = mct.forward(x(), x(), x());
        assert_eq!(out.text.dims(), [3, 5, 8]);
        assert_eq!(out.audio.dims(), [3, 5, 8]);
        assert_eq!(out.vision.dims(), [3, 5, 8]);
        assert_eq!(out.scores.dims(), [12, 15, 15]);
    }
}
