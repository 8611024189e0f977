//! MCT, the Multimodal Composite Transformer (spec §5.5): a pre-LayerNorm transformer over the
//! fused sequence `Z = [G_l ; G_a ; G_v]` (`3L` tokens) whose attention, the Multimodal
//! Composite Attention (MCA), runs seven masked branches, one per non-empty modality subset.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};

use crate::config::PositionalMode;
use crate::wsam::{masked_softmax, xavier_linear};

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

/// The branch whose attention probabilities get dropout (`LAV`).
const FULL_BRANCH: usize = 0;

/// For each modality (text, audio, vision), the four branches that contain it, in the order
/// their outputs are concatenated before the summarisation `s_l` / `s_a` / `s_v`.
const SUMMARY_BRANCHES: [[usize; 4]; 3] = [[0, 1, 2, 4], [0, 1, 3, 5], [0, 2, 3, 6]];

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

/// The seven MCA branch masks for segments of length `L`, built once per forward.
///
/// `allowed[u][i, j]` is true when token `i` and token `j` both belong to a modality of
/// branch `u`; rows outside the branch have no allowed column.
#[derive(Debug, Clone)]
pub struct BranchMasks<B: Backend> {
    /// One `[1, 1, 3L, 3L]` mask per branch, broadcast over batch and heads.
    pub allowed: Vec<Tensor<B, 4, Bool>>,
}

impl<B: Backend> BranchMasks<B> {
    /// Builds the masks for modality segments `[0, L)` text, `[L, 2L)` audio, `[2L, 3L)` vision.
    pub fn new(segment_len: usize, device: &B::Device) -> Self {
        let n = 3 * segment_len;
        let allowed = BRANCHES
            .iter()
            .map(|members| {
                let mut values = Vec::with_capacity(n * n);
                for i in 0..n {
                    for j in 0..n {
                        values.push(members[i / segment_len] && members[j / segment_len]);
                    }
                }
                Tensor::from_data(TensorData::new(values, [1, 1, n, n]), device)
            })
            .collect();
        Self { allowed }
    }
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

/// Multimodal Composite Attention (spec §5.5, steps 1-6): self-attention with `q = k = v = x`.
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
    /// biases; PyTorch-default `s_*` and `final_out_proj`, spec §5.11).
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
    /// # Shapes
    /// - x: `[batch, 3L, D]` (segments text, audio, vision of length `L` each)
    /// - masks: built for `L`
    /// - returns `(output [batch, 3L, D], raw scores [batch·H, 3L, 3L])`; the scores are
    ///   `q kᵀ` before any mask or softmax, flat index `b·H + h`
    pub fn forward(&self, x: Tensor<B, 3>, masks: &BranchMasks<B>) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let [batch, n, d] = x.dims();
        let heads = self.num_heads;
        let hd = d / heads;
        let qkv = self.in_proj.forward(x); // [B, 3L, 3D]
        let split_heads = |i: usize| {
            qkv.clone()
                .slice([0..batch, 0..n, i * d..(i + 1) * d]) // [B, 3L, D]
                .reshape([batch, n, heads, hd])
                .swap_dims(1, 2) // [B, H, 3L, hd]
        };
        let q = split_heads(0).mul_scalar((hd as f64).powf(-0.5)); // [B, H, 3L, hd]
        let k = split_heads(1); // [B, H, 3L, hd]
        let v = split_heads(2); // [B, H, 3L, hd]
        let scores = q.matmul(k.swap_dims(2, 3)); // [B, H, 3L, 3L]

        let branch_out: Vec<Tensor<B, 3>> = masks
            .allowed
            .iter()
            .zip(&self.out_proj)
            .enumerate()
            .map(|(u, (allowed, proj))| {
                let mut probs = masked_softmax(scores.clone(), allowed.clone()); // [B, H, 3L, 3L]
                if u == FULL_BRANCH {
                    probs = self.attn_dropout.forward(probs);
                }
                let merged = probs
                    .matmul(v.clone()) // [B, H, 3L, hd]
                    .swap_dims(1, 2) // [B, 3L, H, hd]
                    .reshape([batch, n, d]); // [B, 3L, D]
                proj.forward(merged) // [B, 3L, D]
            })
            .collect();

        let l = n / 3;
        let summaries = [&self.s_l, &self.s_a, &self.s_v];
        let segments: Vec<Tensor<B, 3>> = SUMMARY_BRANCHES
            .iter()
            .zip(summaries)
            .enumerate()
            .map(|(m, (branches, summary))| {
                let rows = m * l..(m + 1) * l;
                let parts = branches
                    .iter()
                    .map(|&u| branch_out[u].clone().slice([0..batch, rows.clone(), 0..d]))
                    .collect(); // 4 × [B, L, D]
                summary.forward(Tensor::cat(parts, 2)) // [B, L, D]
            })
            .collect();
        let out = self.final_out_proj.forward(Tensor::cat(segments, 1)); // [B, 3L, D]
        (out, scores.reshape([batch * heads, n, n]))
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
    /// Initialises an [`MctLayer`] (Xavier-uniform `fc1`/`fc2` with zero biases, spec §5.11).
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
    /// # Shapes
    /// - x: `[batch, 3L, D]`
    /// - returns `(x2 [batch, 3L, D], raw scores [batch·H, 3L, 3L])`
    pub fn forward(&self, x: Tensor<B, 3>, masks: &BranchMasks<B>) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let (attn, scores) = self
            .self_attn
            .forward(self.layer_norms[0].forward(x.clone()), masks); // [B, 3L, D]
        let x1 = x + self.res_dropout.forward(attn); // [B, 3L, D]
        let hidden = relu(self.fc1.forward(self.layer_norms[1].forward(x1.clone()))); // [B, 3L, 4D]
        let ffn = self.fc2.forward(self.relu_dropout.forward(hidden)); // [B, 3L, D]
        (x1 + self.res_dropout.forward(ffn), scores) // [B, 3L, D]
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
        let masks = BranchMasks::new(l, &x.device());
        let (x, scores) = self.layers.iter().fold((x, None), |(x, _), layer| {
            let (x, scores) = layer.forward(x, &masks); // [B, 3L, D], [B·H, 3L, 3L]
            (x, Some(scores))
        });
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
        self.embed_dropout.forward(x + term) // [B, N, D]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tolerance};

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

    /// The MCA against a loop-by-loop formulation of spec §5.5 in f64: for each of the seven
    /// subsets `U`, rows in `U` take a softmax over the columns in `U` and rows outside give a
    /// zero vector before `Linear_U`; each modality's rows are summarised from the four subsets
    /// that contain it.
    #[test]
    fn mca_matches_direct_formulation() {
        let device = Default::default();
        TB::seed(&device, 3);
        let (batch, l, d, heads) = (2, 3, 8, 2);
        let (n, hd) = (3 * l, d / heads);
        let mut mca = McaConfig::new(d, heads).init::<TB>(&device);
        // Random, non-zero biases everywhere so that every term matters.
        let noisy = |layer: &mut Linear<TB>| {
            let [_, d_out] = layer.weight.dims();
            layer.bias = Some(burn::module::Param::from_tensor(Tensor::random(
                [d_out],
                Distribution::Normal(0.0, 0.5),
                &device,
            )));
        };
        noisy(&mut mca.in_proj);
        mca.out_proj.iter_mut().for_each(noisy);
        let x = Tensor::<TB, 3>::random([batch, n, d], Distribution::Normal(0.0, 1.0), &device);
        let (out, scores) = mca.forward(x.clone(), &BranchMasks::new(l, &device));
        assert_eq!(scores.dims(), [batch * heads, n, n]);

        let names = ["LAV", "LA", "LV", "AV", "L", "A", "V"];
        let letter = |i: usize| ["L", "A", "V"][i / l];
        let xs = values(x);
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
                                        let p = (sj - max).exp() / z;
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
        let tol = Tolerance::<f64>::absolute(1e-5);
        out.into_data()
            .convert::<f64>()
            .assert_approx_eq::<f64>(&TensorData::new(want_out, [batch, n, d]), tol);
        scores
            .into_data()
            .convert::<f64>()
            .assert_approx_eq::<f64>(&TensorData::new(want_scores, [batch * heads, n, n]), tol);
    }

    #[test]
    fn branch_masks_have_the_subset_blocks() {
        let device = Default::default();
        let masks = BranchMasks::<TB>::new(2, &device);
        assert_eq!(masks.allowed.len(), 7);
        // Branch LV (index 2): text and vision rows/columns, audio excluded.
        let lv: Vec<bool> = masks.allowed[2]
            .clone()
            .into_data()
            .to_vec::<bool>()
            .expect("bool data");
        let inside = |t: usize| !(2..4).contains(&t);
        for i in 0..6 {
            for j in 0..6 {
                assert_eq!(lv[i * 6 + j], inside(i) && inside(j), "({i}, {j})");
            }
        }
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
