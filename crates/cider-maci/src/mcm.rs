//! MCM, the Multimodal Causal Module (docs/method.md §5.8): CIDer's classifier, a backdoor adjustment
//! over `C` class confounders `z_i` (class prototypes) with prior `P(z_i)`:
//!
//! `p(y | do(x)) = Σ_i P(z_i) · softmax(W_i [r ; φ_l(z_i^l) ; φ_a(z_i^a) ; φ_v(z_i^v)])`,
//! returned as `log p` (no epsilon, as in the reference).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::{relu, softmax};
use burn::tensor::backend::Backend;
use cider_model::weights::WeightLoader;

/// Normalisation inside the audio and vision confounder encoders.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum ConfounderNorm {
    /// IID and OOD runs: `Linear → ReLU → Linear → ReLU → Linear`.
    None,
    /// Cross-dataset runs: a LayerNorm without affine parameters (eps 1e-5) after each of the
    /// first two Linear layers of `φ_a` and `φ_v`, before the ReLU. `φ_l` never has it.
    LayerNorm,
}

/// LayerNorm epsilon of the cross-dataset confounder encoders (PyTorch's default).
const NORM_EPS: f64 = 1e-5;

/// Configuration of the [`Mcm`].
#[derive(Config, Debug)]
pub struct McmConfig {
    /// Width `D` (the joint representation has `3D` features).
    pub d_model: usize,
    /// `d_l`: text part of a prototype.
    pub d_l: usize,
    /// `d_a`: audio part of a prototype.
    pub d_a: usize,
    /// `d_v`: vision part of a prototype.
    pub d_v: usize,
    /// `C`: classes, also the number of confounders and heads (3 binary, 7 seven-class).
    pub num_classes: usize,
    /// Normalisation of `φ_a` / `φ_v` (cross-dataset: [`ConfounderNorm::LayerNorm`]).
    #[config(default = "ConfounderNorm::None")]
    pub confounder_norm: ConfounderNorm,
    /// `R`, the width of the joint representation; `None` is CIDer's `3D`. Another backbone
    /// (docs/method.md §13.1) sets its own.
    #[config(default = "None")]
    pub representation_dim: Option<usize>,
}

/// A confounder encoder `φ`: `Linear(d → D) → [LN] → ReLU → Linear(D → D) → [LN] → ReLU →
/// Linear(D → D)`.
#[derive(Module, Debug)]
pub struct ConfounderEncoder<B: Backend> {
    /// The three Linear layers.
    pub layers: Vec<Linear<B>>,
    /// Whether the first two layers are followed by a non-affine LayerNorm.
    pub norm: ConfounderNorm,
}

impl<B: Backend> ConfounderEncoder<B> {
    fn new(d_input: usize, d_model: usize, norm: ConfounderNorm, device: &B::Device) -> Self {
        Self {
            layers: vec![
                LinearConfig::new(d_input, d_model).init(device),
                LinearConfig::new(d_model, d_model).init(device),
                LinearConfig::new(d_model, d_model).init(device),
            ],
            norm,
        }
    }

    /// # Shapes
    /// - z: `[..., d]`
    /// - output: `[..., D]`
    pub fn forward<const N: usize>(&self, z: Tensor<B, N>) -> Tensor<B, N> {
        let last = self.layers.len() - 1;
        self.layers.iter().enumerate().fold(z, |x, (i, layer)| {
            let x = layer.forward(x); // [..., D]
            if i == last {
                x
            } else {
                relu(match self.norm {
                    ConfounderNorm::None => x,
                    ConfounderNorm::LayerNorm => layer_norm_plain(x),
                })
            }
        })
    }

    /// Reference key index of each Linear inside its `nn.Sequential` (`0, 2, 4` without
    /// LayerNorm, `0, 3, 6` with it).
    pub fn reference_indices(&self) -> [usize; 3] {
        match self.norm {
            ConfounderNorm::None => [0, 2, 4],
            ConfounderNorm::LayerNorm => [0, 3, 6],
        }
    }
}

/// LayerNorm over the last axis without affine parameters: `(x − mean) / sqrt(var + ε)`, biased
/// variance.
fn layer_norm_plain<B: Backend, const N: usize>(x: Tensor<B, N>) -> Tensor<B, N> {
    let (var, mean) = x.clone().var_mean_bias(N - 1); // [..., 1] each
    (x - mean).div(var.add_scalar(NORM_EPS).sqrt())
}

/// The Multimodal Causal Module.
#[derive(Module, Debug)]
pub struct Mcm<B: Backend> {
    /// `φ_l` (reference `cls_encoders_l`).
    pub phi_l: ConfounderEncoder<B>,
    /// `φ_a` (reference `cls_encoders_a`).
    pub phi_a: ConfounderEncoder<B>,
    /// `φ_v` (reference `cls_encoders_v`).
    pub phi_v: ConfounderEncoder<B>,
    /// The `C` heads `W_i: Linear(R + 3D → C)`, `R = 3D` for CIDer (reference `classifiers.{i}`).
    pub heads: Vec<Linear<B>>,
    /// Prototype part sizes `[d_l, d_a, d_v]`.
    pub parts: [usize; 3],
}

impl McmConfig {
    /// Initialises the [`Mcm`] (PyTorch-default Linear initialisation).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Mcm<B> {
        let d = self.d_model;
        let r = self.representation_dim.unwrap_or(3 * d);
        Mcm {
            phi_l: ConfounderEncoder::new(self.d_l, d, ConfounderNorm::None, device),
            phi_a: ConfounderEncoder::new(self.d_a, d, self.confounder_norm, device),
            phi_v: ConfounderEncoder::new(self.d_v, d, self.confounder_norm, device),
            heads: (0..self.num_classes)
                .map(|_| LinearConfig::new(r + 3 * d, self.num_classes).init(device))
                .collect(),
            parts: [self.d_l, self.d_a, self.d_v],
        }
    }
}

impl<B: Backend> Mcm<B> {
    /// Classifies the joint representation under the confounders.
    ///
    /// # Shapes
    /// - joint_rep `r`: `[batch, R]` (`R = 3D` for CIDer)
    /// - cls_feats `z`: `[C, batch, d_l + d_a + d_v]` (prototype `i` for every sample)
    /// - cls_probs `P(z)`: `[batch, C]`
    /// - output `log p(y|x)`: `[batch, C]`
    pub fn forward(
        &self,
        joint_rep: Tensor<B, 2>,
        cls_feats: Tensor<B, 3>,
        cls_probs: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let [classes, batch, _] = cls_feats.dims();
        let [d_l, d_a, d_v] = self.parts;
        let part = |start: usize, len: usize| {
            cls_feats
                .clone()
                .slice([0..classes, 0..batch, start..start + len])
        };
        let confounders = Tensor::cat(
            vec![
                self.phi_l.forward(part(0, d_l)),         // [C, B, D]
                self.phi_a.forward(part(d_l, d_a)),       // [C, B, D]
                self.phi_v.forward(part(d_l + d_a, d_v)), // [C, B, D]
            ],
            2,
        ); // [C, B, 3D]
        let width = confounders.dims()[2];
        let mixture = self.heads.iter().enumerate().fold(
            cls_probs.zeros_like(), // [B, C]
            |acc, (i, head)| {
                let z_i = confounders.clone().narrow(0, i, 1).reshape([batch, width]); // [B, 3D]
                let logits = head.forward(Tensor::cat(vec![joint_rep.clone(), z_i], 1)); // [B, C]
                let prior = cls_probs.clone().slice([0..batch, i..i + 1]); // [B, 1]
                acc + softmax(logits, 1) * prior // [B, C]
            },
        );
        mixture.log() // [B, C]
    }
}

/// Moves the MCM's parameters through `loader` under the reference keys `cls_encoders_{l,a,v}.*`
/// and `classifiers.{i}.*`; missing and mis-shaped keys are recorded in the loader.
pub fn load_reference_mcm<B: Backend>(mcm: Mcm<B>, loader: &mut WeightLoader<'_, B>) -> Mcm<B> {
    let encoder = |phi: ConfounderEncoder<B>, loader: &mut WeightLoader<'_, B>, key: &str| {
        let indices = phi.reference_indices();
        ConfounderEncoder {
            layers: phi
                .layers
                .into_iter()
                .zip(indices)
                .map(|(layer, i)| loader.linear(layer, &format!("{key}.{i}")))
                .collect(),
            norm: phi.norm,
        }
    };
    Mcm {
        phi_l: encoder(mcm.phi_l, loader, "cls_encoders_l"),
        phi_a: encoder(mcm.phi_a, loader, "cls_encoders_a"),
        phi_v: encoder(mcm.phi_v, loader, "cls_encoders_v"),
        heads: mcm
            .heads
            .into_iter()
            .enumerate()
            .map(|(i, head)| loader.linear(head, &format!("classifiers.{i}")))
            .collect(),
        parts: mcm.parts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::backend::flex::FlexDevice;
    use burn::module::Param;
    use burn::tensor::{TensorData, Tolerance};

    type TB = Flex;

    fn set(linear: &mut Linear<TB>, weight: Tensor<TB, 2>, bias: Tensor<TB, 1>) {
        linear.weight = Param::from_tensor(weight);
        linear.bias = Some(Param::from_tensor(bias));
    }

    #[test]
    fn param_counts_match_spec() {
        let device = FlexDevice;
        let mcm = McmConfig::new(32, 768, 5, 20, 3).init::<TB>(&device);
        assert_eq!(mcm.phi_l.num_params(), 26_720);
        assert_eq!(mcm.phi_a.num_params(), 2_304);
        assert_eq!(mcm.phi_v.num_params(), 2_784);
        assert_eq!(
            mcm.heads.iter().map(|h| h.num_params()).sum::<usize>(),
            1_737
        );
        let seven = McmConfig::new(32, 768, 5, 20, 7).init::<TB>(&device);
        assert_eq!(
            seven.heads.iter().map(|h| h.num_params()).sum::<usize>(),
            9_457
        );
        // The cross-dataset LayerNorms carry no parameters.
        let cross = McmConfig::new(32, 768, 5, 20, 3)
            .with_confounder_norm(ConfounderNorm::LayerNorm)
            .init::<TB>(&device);
        assert_eq!(cross.num_params(), mcm.num_params());
    }

    /// `D = 1`, prototypes of one value per modality, `C = 2`.
    ///
    /// φ_l is the identity on positive input (all weights 1, biases 0), φ_a and φ_v output 0.
    /// Head 0 reads `r₁` with weight 2 for class 0: logits `(2 r₁, 0)`. Head 1 reads `φ_l(z₁ˡ)`
    /// for class 0: logits `(z₁ˡ, 0)`. With `r = (1, 0, 0)`, `z₁ˡ = ln 3`, prior `(¼, ¾)`:
    /// `p = ¼·(e²/(e²+1), 1/(e²+1)) + ¾·(¾, ¼)`.
    #[test]
    fn mixture_of_softmaxes_on_hand_values() {
        let device = FlexDevice;
        let mut mcm = McmConfig::new(1, 1, 1, 1, 2).init::<TB>(&device);
        let one = || Tensor::<TB, 2>::ones([1, 1], &device);
        let zero_w = || Tensor::<TB, 2>::zeros([1, 1], &device);
        let zero_b = || Tensor::<TB, 1>::zeros([1], &device);
        for layer in &mut mcm.phi_l.layers {
            set(layer, one(), zero_b());
        }
        for layer in mcm.phi_a.layers.iter_mut().chain(&mut mcm.phi_v.layers) {
            set(layer, zero_w(), zero_b());
        }
        // Head inputs: [r₁, r₂, r₃, φ_l, φ_a, φ_v] (6D = 6), outputs 2 classes.
        let mut w0 = [[0.0f32; 2]; 6];
        w0[0][0] = 2.0;
        let mut w1 = [[0.0f32; 2]; 6];
        w1[3][0] = 1.0;
        set(
            &mut mcm.heads[0],
            Tensor::from_floats(w0, &device),
            Tensor::zeros([2], &device),
        );
        set(
            &mut mcm.heads[1],
            Tensor::from_floats(w1, &device),
            Tensor::zeros([2], &device),
        );

        let r = Tensor::<TB, 2>::from_floats([[1.0, 0.0, 0.0]], &device);
        // cls_feats [C = 2, B = 1, 3]: z₀ = (5, 1, 1) (only φ_l(z₀ˡ) = 5 reaches head 0, which
        // ignores it), z₁ = (ln 3, 2, 2).
        let feats =
            Tensor::<TB, 3>::from_floats([[[5.0, 1.0, 1.0]], [[3f32.ln(), 2.0, 2.0]]], &device);
        let probs = Tensor::<TB, 2>::from_floats([[0.25, 0.75]], &device);
        let e2 = 2f64.exp();
        let p0 = 0.25 * e2 / (e2 + 1.0) + 0.75 * 0.75;
        let p1 = 0.25 / (e2 + 1.0) + 0.75 * 0.25;
        mcm.forward(r, feats, probs)
            .into_data()
            .assert_approx_eq::<f32>(
                &TensorData::from([[p0.ln() as f32, p1.ln() as f32]]),
                Tolerance::absolute(1e-6),
            );
    }

    /// Cross-dataset φ: `Linear → LN → ReLU → Linear → LN → ReLU → Linear`, LayerNorm without
    /// affine parameters.
    #[test]
    fn layer_norm_variant_normalises_before_relu() {
        let device = FlexDevice;
        let mut phi = McmConfig::new(2, 1, 1, 2, 1)
            .with_confounder_norm(ConfounderNorm::LayerNorm)
            .init::<TB>(&device)
            .phi_v;
        assert_eq!(phi.reference_indices(), [0, 3, 6]);
        let identity = || Tensor::<TB, 2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &device);
        for layer in &mut phi.layers {
            set(layer, identity(), Tensor::zeros([2], &device));
        }
        // (1, 3) → LN: mean 2, var 1 → (−1, 1)/√(1+1e-5) → ReLU (0, s) → LN: mean s/2,
        // var s²/4 → (−1, 1)·(s/2)/√(s²/4 + 1e-5) → ReLU → (0, t) → identity.
        let s = 1.0 / (1.0f64 + 1e-5).sqrt();
        let t = (s / 2.0) / (s * s / 4.0 + 1e-5).sqrt();
        let out = phi.forward(Tensor::<TB, 2>::from_floats([[1.0, 3.0]], &device));
        out.into_data().assert_approx_eq::<f32>(
            &TensorData::from([[0.0f32, t as f32]]),
            Tolerance::absolute(1e-6),
        );
        let plain = McmConfig::new(2, 1, 1, 2, 1).init::<TB>(&device).phi_v;
        assert_eq!(plain.reference_indices(), [0, 2, 4]);
    }
}
