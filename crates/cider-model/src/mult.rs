//! MulT (Tsai et al., ACL 2019) exactly as the MMSA toolkit 2.2.1 ships it, as a second backbone
//! beside CIDer's network (docs/method.md §13.2).
//!
//! ```text
//! P_m   = Conv1d_m(X_m)      (no bias, no padding: T_m − k_m + 1 steps; skipped when d_m = E)
//! h_l   = Mem_l([Enc_{l←a}(P_l, P_a) ; Enc_{l←v}(P_l, P_v)])        [batch, T_l', 2E]
//! h_a   = Mem_a([Enc_{a←l}(P_a, P_l) ; Enc_{a←v}(P_a, P_v)])
//! h_v   = Mem_v([Enc_{v←l}(P_v, P_l) ; Enc_{v←a}(P_v, P_a)])
//! f     = [h_l[last] ; h_a[last] ; h_v[last]]                          [batch, 6E]
//! r     = f + proj2(Drop_out(ReLU(proj1(f))))                          [batch, 6E]
//! ```
//!
//! `r` is the joint representation MACI's classifier reads; MMSA's own head `out_layer:
//! Linear(6E → C)` is the plain classifier. The padding masks are not used (MMSA does not use
//! them either).

use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{Dropout, DropoutConfig, PaddingConfig1d};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::kernels;
use crate::mult_encoder::{MultEncoder, MultEncoderConfig, load_mmsa_encoder};
use crate::network::TextEncoder;
use crate::projection::{ResidualProjection, ResidualProjectionConfig};
use crate::weights::WeightLoader;

/// MulT's hyper-parameters, the `[model.mult]` table of a training configuration. Defaults are
/// MMSA's MOSI values ([`MultOptions::mosi`]); every key is optional and an unknown key is an
/// error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultOptions {
    /// `E`: width of the crossmodal encoders (the memory encoders are `2E` wide) (50).
    pub width: usize,
    /// Heads of every encoder (10); `E` must be a multiple.
    pub num_heads: usize,
    /// Layers of each crossmodal encoder; the memory encoders have `max(levels, 3)` (4).
    pub levels: usize,
    /// Conv1d kernel sizes for text, audio and vision (`[5, 5, 5]`).
    pub kernels: [usize; 3],
    /// Attention dropout of the encoders whose keys come from text, and of the memory
    /// encoders (0.3).
    pub attn_dropout: f64,
    /// Attention dropout of the encoders whose keys come from audio (0.2).
    pub attn_dropout_a: f64,
    /// Attention dropout of the encoders whose keys come from vision (0.0).
    pub attn_dropout_v: f64,
    /// Dropout after each feed-forward ReLU (0.0).
    pub relu_dropout: f64,
    /// Dropout on each encoder's scaled inputs (0.2).
    pub embed_dropout: f64,
    /// Dropout on the residual branches (0.0).
    pub res_dropout: f64,
    /// Dropout inside the residual head (0.5).
    pub output_dropout: f64,
    /// Dropout on the text features before the projection (0.5).
    pub text_dropout: f64,
    /// Whether the encoders use the future mask (true).
    pub future_mask: bool,
}

impl Default for MultOptions {
    fn default() -> Self {
        Self::mosi()
    }
}

impl MultOptions {
    /// MMSA's MOSI values (`config_regression.json`, `mult` / `mosi`).
    pub fn mosi() -> Self {
        Self {
            width: 50,
            num_heads: 10,
            levels: 4,
            kernels: [5, 5, 5],
            attn_dropout: 0.3,
            attn_dropout_a: 0.2,
            attn_dropout_v: 0.0,
            relu_dropout: 0.0,
            embed_dropout: 0.2,
            res_dropout: 0.0,
            output_dropout: 0.5,
            text_dropout: 0.5,
            future_mask: true,
        }
    }

    /// MMSA's MOSEI values (`mult` / `mosei`): width 30, 6 heads, kernels `[5, 1, 3]`.
    pub fn mosei() -> Self {
        Self {
            width: 30,
            num_heads: 6,
            kernels: [5, 1, 3],
            attn_dropout: 0.4,
            attn_dropout_a: 0.0,
            embed_dropout: 0.0,
            text_dropout: 0.3,
            ..Self::mosi()
        }
    }

    /// Checks the values no MulT can run with, naming the key.
    ///
    /// # Errors
    /// `(key, message)` of the first offending value.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (name, v) in [
            ("mult.width", self.width),
            ("mult.num_heads", self.num_heads),
            ("mult.levels", self.levels),
        ] {
            if v == 0 {
                return Err((name, "= 0, expected at least 1".into()));
            }
        }
        if self.kernels.contains(&0) {
            return Err((
                "mult.kernels",
                format!("= {:?}, expected sizes ≥ 1", self.kernels),
            ));
        }
        if !self.width.is_multiple_of(self.num_heads) {
            return Err((
                "mult.num_heads",
                format!(
                    "= {} does not divide mult.width = {}",
                    self.num_heads, self.width
                ),
            ));
        }
        let dropouts = [
            ("mult.attn_dropout", self.attn_dropout),
            ("mult.attn_dropout_a", self.attn_dropout_a),
            ("mult.attn_dropout_v", self.attn_dropout_v),
            ("mult.relu_dropout", self.relu_dropout),
            ("mult.embed_dropout", self.embed_dropout),
            ("mult.res_dropout", self.res_dropout),
            ("mult.output_dropout", self.output_dropout),
            ("mult.text_dropout", self.text_dropout),
        ];
        if let Some((name, p)) = dropouts.iter().find(|(_, p)| !(0.0..1.0).contains(p)) {
            return Err((name, format!("= {p} is not a rate in [0, 1)")));
        }
        Ok(())
    }

    /// Width of the joint representation `r`: `6E`.
    pub fn representation_dim(&self) -> usize {
        6 * self.width
    }
}

/// A MulT for inputs of sizes `[T_l, T_a, T_v, d_l, d_a, d_v]`.
#[derive(Debug, Clone)]
pub struct MultConfig {
    /// The hyper-parameters.
    pub options: MultOptions,
    /// `[T_l, T_a, T_v, d_l, d_a, d_v]`.
    pub input_dims: [usize; 6],
}

impl MultConfig {
    /// Builds MulT with MMSA's initialisation (PyTorch's Conv1d / Linear defaults; Xavier-uniform
    /// attention and feed-forward weights with zero biases), taking `text_encoder` as is.
    ///
    /// # Errors
    /// [`ModelError::Config`] when [`MultOptions::check`] fails or a kernel is longer than its
    /// sequence.
    pub fn init<B: Backend>(
        &self,
        text_encoder: TextEncoder<B>,
        device: &B::Device,
    ) -> Result<Mult<B>, ModelError> {
        let o = &self.options;
        o.check().map_err(|(key, message)| ModelError::Config {
            source_name: "model".into(),
            message: format!("{key} {message}"),
        })?;
        let [t_l, t_a, t_v, d_l, d_a, d_v] = self.input_dims;
        for (name, t, k) in [
            ("text", t_l, o.kernels[0]),
            ("audio", t_a, o.kernels[1]),
            ("vision", t_v, o.kernels[2]),
        ] {
            if k > t {
                return Err(ModelError::Config {
                    source_name: "model".into(),
                    message: format!(
                        "mult.kernels: the {name} kernel {k} is longer than its {t} steps"
                    ),
                });
            }
        }
        let e = o.width;
        let conv = |d: usize, k: usize| {
            Conv1dConfig::new(d, e, k)
                .with_bias(false)
                .with_padding(PaddingConfig1d::Valid)
                .init(device)
        };
        let encoder = |width: usize, layers: usize, attn_dropout: f64| {
            MultEncoderConfig::new(width, o.num_heads, layers)
                .with_attn_dropout(attn_dropout)
                .with_relu_dropout(o.relu_dropout)
                .with_res_dropout(o.res_dropout)
                .with_embed_dropout(o.embed_dropout)
                .with_future_mask(o.future_mask)
                .init(device)
        };
        // The attention dropout follows the key / value modality; the memories take the text's.
        let cross = |source: usize| {
            let p = [o.attn_dropout, o.attn_dropout_a, o.attn_dropout_v][source];
            encoder(e, o.levels, p)
        };
        let memory = || encoder(2 * e, o.levels.max(3), o.attn_dropout);
        let [k_l, k_a, k_v] = o.kernels;
        let combined = 6 * e;
        Ok(Mult {
            text_encoder,
            proj_l: conv(d_l, k_l),
            proj_a: conv(d_a, k_a),
            proj_v: conv(d_v, k_v),
            trans_l_with_a: cross(1),
            trans_l_with_v: cross(2),
            trans_a_with_l: cross(0),
            trans_a_with_v: cross(2),
            trans_v_with_l: cross(0),
            trans_v_with_a: cross(1),
            trans_l_mem: memory(),
            trans_a_mem: memory(),
            trans_v_mem: memory(),
            residual: ResidualProjectionConfig::new(combined)
                .with_dropout(o.output_dropout)
                .init(device),
            text_dropout: DropoutConfig::new(o.text_dropout).init(),
            input_dims: self.input_dims,
        })
    }
}

/// MulT up to its joint representation (MMSA's `MULT` without `out_layer`), with the text
/// encoder in front.
#[derive(Module, Debug)]
pub struct Mult<B: Backend> {
    /// BERT or precomputed text features.
    pub text_encoder: TextEncoder<B>,
    /// `Conv1d(d_l → E, k_l)`, weight `[E, d_l, k_l]`.
    pub proj_l: Conv1d<B>,
    /// `Conv1d(d_a → E, k_a)`.
    pub proj_a: Conv1d<B>,
    /// `Conv1d(d_v → E, k_v)`.
    pub proj_v: Conv1d<B>,
    /// Text attending to audio.
    pub trans_l_with_a: MultEncoder<B>,
    /// Text attending to vision.
    pub trans_l_with_v: MultEncoder<B>,
    /// Audio attending to text.
    pub trans_a_with_l: MultEncoder<B>,
    /// Audio attending to vision.
    pub trans_a_with_v: MultEncoder<B>,
    /// Vision attending to text.
    pub trans_v_with_l: MultEncoder<B>,
    /// Vision attending to audio.
    pub trans_v_with_a: MultEncoder<B>,
    /// Self-attention over the text target's `2E` features.
    pub trans_l_mem: MultEncoder<B>,
    /// Self-attention over the audio target's `2E` features.
    pub trans_a_mem: MultEncoder<B>,
    /// Self-attention over the vision target's `2E` features.
    pub trans_v_mem: MultEncoder<B>,
    /// The residual head `r = f + proj2(Drop(ReLU(proj1(f))))`, `proj1, proj2: Linear(6E → 6E)`.
    pub residual: ResidualProjection<B>,
    /// Dropout on the text features.
    pub text_dropout: Dropout,
    /// Expected input sizes `[T_l, T_a, T_v, d_l, d_a, d_v]`.
    pub input_dims: [usize; 6],
}

/// MulT's outputs for one batch (MMSA's `Feature_*` entries plus `r`).
#[derive(Debug, Clone)]
pub struct MultOutput<B: Backend> {
    /// Last step of the text target's memory `[batch, 2E]` (`Feature_t`).
    pub text: Tensor<B, 2>,
    /// Last step of the audio target's memory `[batch, 2E]` (`Feature_a`).
    pub audio: Tensor<B, 2>,
    /// Last step of the vision target's memory `[batch, 2E]` (`Feature_v`).
    pub vision: Tensor<B, 2>,
    /// Their concatenation `f` `[batch, 6E]` (`Feature_f`).
    pub fused: Tensor<B, 2>,
    /// The joint representation `r = f + proj2(Drop(ReLU(proj1(f))))` `[batch, 6E]`.
    pub joint_rep: Tensor<B, 2>,
}

impl<B: Backend> Mult<B> {
    /// One forward pass over encoded text features.
    ///
    /// # Shapes
    /// - text `[batch, T_l, d_l]`, audio `[batch, T_a, d_a]`, vision `[batch, T_v, d_v]`;
    ///   every `T_m ≥ k_m`
    /// - output: see [`MultOutput`]
    pub fn forward_features(
        &self,
        text: Tensor<B, 3>,
        audio: Tensor<B, 3>,
        vision: Tensor<B, 3>,
    ) -> MultOutput<B> {
        let width = self.width();
        let project = |conv: &Conv1d<B>, x: Tensor<B, 3>, d: usize| {
            if d == width {
                x // MMSA skips the projection when the sizes already agree.
            } else {
                conv.forward(x.swap_dims(1, 2)).swap_dims(1, 2) // [B, T − k + 1, E]
            }
        };
        let [_, _, _, d_l, d_a, d_v] = self.input_dims;
        let p_l = project(
            &self.proj_l,
            kernels::dropout(text, &self.text_dropout),
            d_l,
        );
        let p_a = project(&self.proj_a, audio, d_a);
        let p_v = project(&self.proj_v, vision, d_v);
        let target = |x: &Tensor<B, 3>,
                      (first, s1): (&MultEncoder<B>, &Tensor<B, 3>),
                      (second, s2): (&MultEncoder<B>, &Tensor<B, 3>),
                      memory: &MultEncoder<B>| {
            let both = Tensor::cat(
                vec![
                    first.forward(x.clone(), Some(s1.clone())),
                    second.forward(x.clone(), Some(s2.clone())),
                ],
                2,
            ); // [B, T_x', 2E]
            let h = memory.forward(both, None); // [B, T_x', 2E]
            let [batch, steps, w] = h.dims();
            h.narrow(1, steps - 1, 1).reshape([batch, w]) // [B, 2E]
        };
        let text = target(
            &p_l,
            (&self.trans_l_with_a, &p_a),
            (&self.trans_l_with_v, &p_v),
            &self.trans_l_mem,
        );
        let audio = target(
            &p_a,
            (&self.trans_a_with_l, &p_l),
            (&self.trans_a_with_v, &p_v),
            &self.trans_a_mem,
        );
        let vision = target(
            &p_v,
            (&self.trans_v_with_l, &p_l),
            (&self.trans_v_with_a, &p_a),
            &self.trans_v_mem,
        );
        let fused = Tensor::cat(vec![text.clone(), audio.clone(), vision.clone()], 1); // [B, 6E]
        let joint_rep = self.residual.forward(fused.clone()); // [B, 6E]
        MultOutput {
            text,
            audio,
            vision,
            fused,
            joint_rep,
        }
    }

    /// `E`.
    pub fn width(&self) -> usize {
        self.trans_l_with_a.width()
    }

    /// Width of `r`: `6E`.
    pub fn representation_dim(&self) -> usize {
        6 * self.width()
    }

    /// The kernel sizes `[k_l, k_a, k_v]`.
    pub fn kernels(&self) -> [usize; 3] {
        [&self.proj_l, &self.proj_a, &self.proj_v].map(|c| c.weight.dims()[2])
    }
}

/// Loads MMSA's `MULT` `state_dict` keys (`proj_*`, `trans_*`, `proj1`, `proj2`; not
/// `out_layer`, which belongs to the classifier, nor `text_model.*`) through `loader`.
pub fn load_mmsa_mult<B: Backend>(mut mult: Mult<B>, loader: &mut WeightLoader<'_, B>) -> Mult<B> {
    mult.proj_l.weight = loader.param(mult.proj_l.weight, "proj_l.weight");
    mult.proj_a.weight = loader.param(mult.proj_a.weight, "proj_a.weight");
    mult.proj_v.weight = loader.param(mult.proj_v.weight, "proj_v.weight");
    let load = |e: MultEncoder<B>, loader: &mut WeightLoader<'_, B>, key: &str| {
        load_mmsa_encoder(e, loader, key)
    };
    mult.trans_l_with_a = load(mult.trans_l_with_a, loader, "trans_l_with_a");
    mult.trans_l_with_v = load(mult.trans_l_with_v, loader, "trans_l_with_v");
    mult.trans_a_with_l = load(mult.trans_a_with_l, loader, "trans_a_with_l");
    mult.trans_a_with_v = load(mult.trans_a_with_v, loader, "trans_a_with_v");
    mult.trans_v_with_l = load(mult.trans_v_with_l, loader, "trans_v_with_l");
    mult.trans_v_with_a = load(mult.trans_v_with_a, loader, "trans_v_with_a");
    mult.trans_l_mem = load(mult.trans_l_mem, loader, "trans_l_mem");
    mult.trans_a_mem = load(mult.trans_a_mem, loader, "trans_a_mem");
    mult.trans_v_mem = load(mult.trans_v_mem, loader, "trans_v_mem");
    mult.residual.proj1 = loader.linear(mult.residual.proj1, "proj1");
    mult.residual.proj2 = loader.linear(mult.residual.proj2, "proj2");
    mult
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::backend::flex::FlexDevice;
    use burn::module::Module;

    use super::*;
    use crate::network::PrecomputedText;

    fn mult(options: MultOptions, input_dims: [usize; 6]) -> Result<Mult<Flex>, ModelError> {
        MultConfig {
            options,
            input_dims,
        }
        .init(TextEncoder::Precomputed(PrecomputedText), &FlexDevice)
    }

    /// MMSA's MOSEI values: `E = 30`, kernels 5/1/3, `d = 768, 74, 35`. By hand (docs/method.md
    /// §13.2): projections 30·(768·5 + 74 + 35·3) = 120 570; six crossmodal encoders
    /// 6·(4·(12·900 + 390) + 60) = 268 920; three memories 3·(4·(48·900 + 780) + 120) = 528 120;
    /// the residual head 2·(36·900 + 180) = 65 160; in all 982 770 (MMSA adds `out_layer`).
    #[test]
    fn mosei_parameter_count_by_hand() {
        let model = mult(MultOptions::mosei(), [50, 500, 500, 768, 74, 35]).expect("valid");
        assert_eq!(model.num_params(), 982_770);
        assert_eq!(model.representation_dim(), 180);
        assert_eq!(model.kernels(), [5, 1, 3]);
    }

    /// Each projection shortens its sequence by `k − 1`; `r` is `[batch, 6E]` and the fused
    /// features are the three last steps side by side.
    #[test]
    fn shapes_follow_the_kernels() {
        let options = MultOptions {
            width: 4,
            num_heads: 2,
            levels: 1,
            kernels: [3, 1, 2],
            ..MultOptions::mosi()
        };
        let model = mult(options, [6, 7, 5, 10, 3, 2]).expect("valid");
        let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
        let device = FlexDevice;
        let out = model.forward_features(
            Tensor::random([2, 6, 10], normal, &device),
            Tensor::random([2, 7, 3], normal, &device),
            Tensor::random([2, 5, 2], normal, &device),
        );
        assert_eq!(out.text.dims(), [2, 8]);
        assert_eq!(out.fused.dims(), [2, 24]);
        assert_eq!(out.joint_rep.dims(), [2, 24]);
        let fused: Vec<f32> = out.fused.into_data().to_vec().expect("f32");
        let audio: Vec<f32> = out.audio.into_data().to_vec().expect("f32");
        assert_eq!(&fused[8..16], &audio[..8]);
    }

    /// Values no MulT runs with are refused with the key's name.
    #[test]
    fn impossible_options_are_named() {
        let dims = [50, 50, 50, 768, 5, 20];
        let message = |options: MultOptions| match mult(options, dims) {
            Err(ModelError::Config { message, .. }) => message,
            other => panic!("expected a config error, got {other:?}"),
        };
        let base = MultOptions::mosi();
        assert!(
            message(MultOptions {
                num_heads: 7,
                ..base.clone()
            })
            .contains("mult.num_heads")
        );
        assert!(
            message(MultOptions {
                kernels: [5, 0, 5],
                ..base.clone()
            })
            .contains("mult.kernels")
        );
        assert!(
            message(MultOptions {
                levels: 0,
                ..base.clone()
            })
            .contains("mult.levels")
        );
        assert!(
            message(MultOptions {
                embed_dropout: 1.0,
                ..base.clone()
            })
            .contains("mult.embed_dropout")
        );
        let long = MultOptions {
            kernels: [5, 51, 5],
            ..base
        };
        assert!(message(long).contains("the audio kernel 51 is longer than its 50 steps"));
    }

    /// The `[model.mult]` keys: MMSA's MOSI defaults for absent keys, unknown keys refused.
    #[test]
    fn options_read_from_their_names() {
        let options: MultOptions =
            serde_json::from_value(serde_json::json!({"width": 30, "kernels": [5, 1, 3]}))
                .expect("valid");
        assert_eq!((options.width, options.kernels), (30, [5, 1, 3]));
        assert_eq!((options.num_heads, options.levels), (10, 4));
        assert_eq!(
            [
                options.attn_dropout,
                options.attn_dropout_a,
                options.output_dropout,
                options.text_dropout
            ],
            [0.3, 0.2, 0.5, 0.5]
        );
        let typo = serde_json::from_value::<MultOptions>(serde_json::json!({"widht": 30}));
        assert!(typo.unwrap_err().to_string().contains("widht"));
    }
}
