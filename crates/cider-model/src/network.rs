//! The CIDer network up to the joint representation `r` (docs/method.md §5.0-§5.7), plus the
//! reconstruction decoders (§5.9). The causal classifier (MCM) and the pass outputs of §5.10
//! live in `cider-maci`, which wraps this network.

use burn::module::{Initializer, Module};
use burn::nn::{Gru, GruConfig, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::module::linear;
use burn::tensor::{Int, Tensor};

use crate::ModelError;
use crate::backbone::{BackboneKind, Network};
use crate::bert::Bert;
use crate::decoder::{Decoders, DecodersConfig, Reconstruction};
use crate::kernels;
use crate::mct::{Mct, MctConfig, MctOutput};
use crate::mult::MultConfig;
use crate::network_config::{Alignment, NetworkConfig, PositionalMode};
use crate::pooling::{NaiveAttention, NaiveAttentionConfig};
use crate::projection::{
    ResidualProjection, ResidualProjectionConfig, TemporalProjection, TemporalProjectionConfig,
};
use crate::wsam::{Wsam, WsamConfig};

/// Text features given directly (MMSA's pre-extracted `text`), no encoder weights.
#[derive(Module, Debug, Clone)]
pub struct PrecomputedText;

/// The text encoder producing `X_l` `[batch, T_l, d_l]`.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum TextEncoder<B: Backend> {
    /// A BERT fed with token ids (fine-tuned with the network).
    Bert(Bert<B>),
    /// Pre-extracted features passed through unchanged.
    Precomputed(PrecomputedText),
}

impl<B: Backend> TextEncoder<B> {
    /// Encodes one view's text into `X_l`.
    ///
    /// # Shapes
    /// - text: token ids `[batch, T_l]` or features `[batch, T_l, d_l]`
    /// - returns `[batch, T_l, d_l]`
    ///
    /// # Errors
    /// [`ModelError::Input`] when the text kind does not fit the encoder.
    pub fn encode(&self, text: TextInput<B>) -> Result<Tensor<B, 3>, ModelError> {
        match (self, text) {
            (
                TextEncoder::Bert(bert),
                TextInput::Tokens {
                    ids,
                    attention_mask,
                    token_types,
                },
            ) => Ok(bert.forward(ids, attention_mask, token_types)), // [B, T_l, d_l]
            (TextEncoder::Precomputed(_), TextInput::Features(features)) => Ok(features),
            (TextEncoder::Bert(_), TextInput::Features(_)) => Err(input_error(
                "text",
                "the BERT text encoder needs token ids, got precomputed features".into(),
            )),
            (TextEncoder::Precomputed(_), TextInput::Tokens { .. }) => Err(input_error(
                "text",
                "the precomputed text encoder needs features, got token ids".into(),
            )),
        }
    }
}

/// The text of one view, in the form its [`TextEncoder`] takes.
#[derive(Debug, Clone)]
pub enum TextInput<B: Backend> {
    /// MMSA `text_bert` rows for [`TextEncoder::Bert`], each `[batch, T_l]`.
    Tokens {
        /// Word-piece ids.
        ids: Tensor<B, 2, Int>,
        /// 1 on real tokens (incl. `[CLS]`/`[SEP]`), 0 on padding.
        attention_mask: Tensor<B, 2>,
        /// Segment ids.
        token_types: Tensor<B, 2, Int>,
    },
    /// Features `[batch, T_l, d_l]` for [`TextEncoder::Precomputed`].
    Features(Tensor<B, 3>),
}

impl<B: Backend> TextInput<B> {
    /// Splits the reference's float `[batch, 3, T_l]` text tensor (rows: ids, attention mask,
    /// segment ids) into [`TextInput::Tokens`].
    pub fn from_bert_rows(rows: Tensor<B, 3>) -> Self {
        let [batch, _, t_l] = rows.dims();
        let row = |i: usize| {
            rows.clone()
                .slice([0..batch, i..i + 1, 0..t_l])
                .reshape([batch, t_l])
        };
        TextInput::Tokens {
            ids: row(0).int(),
            attention_mask: row(1),
            token_types: row(2).int(),
        }
    }
}

/// One view of a batch (complete, missing or counterfactual).
#[derive(Debug, Clone)]
pub struct ViewInput<B: Backend> {
    /// The text.
    pub text: TextInput<B>,
    /// Audio features `[batch, T_a, d_a]`.
    pub audio: Tensor<B, 3>,
    /// Vision features `[batch, T_v, d_v]`.
    pub vision: Tensor<B, 3>,
}

impl<B: Backend> ViewInput<B> {
    /// The same audio and vision with another text (the counterfactual view, docs/method.md
    /// §7.3).
    pub fn with_text(&self, text: TextInput<B>) -> Self {
        Self {
            text,
            audio: self.audio.clone(),
            vision: self.vision.clone(),
        }
    }
}

/// The original input masks and text lengths; every pass uses these, never the missing masks
/// (docs/method.md §5.10).
#[derive(Debug, Clone)]
pub struct InputMasks<B: Backend> {
    /// Text mask `m_t` `[batch, T_l]` (the attention-mask row).
    pub text: Tensor<B, 2>,
    /// Audio length mask `m_a` `[batch, T_a]`.
    pub audio: Tensor<B, 2>,
    /// Vision length mask `m_v` `[batch, T_v]`.
    pub vision: Tensor<B, 2>,
    /// `text_len` `[batch]` (tokens incl. `[CLS]` and `[SEP]`).
    pub text_len: Tensor<B, 1, Int>,
}

/// What one forward pass of the network produces.
#[derive(Debug, Clone)]
pub struct NetworkOutput<B: Backend> {
    /// Joint representation `r` `[batch, 3D]`.
    pub joint_rep: Tensor<B, 2>,
    /// Raw scores of the last MCT layer `[batch·H, 3L, 3L]`.
    pub attn: Tensor<B, 3>,
    /// The text encoder's output `X_l` `[batch, T_l, d_l]` (not detached).
    pub text_features: Tensor<B, 3>,
    /// The MCT output segments `Z_l, Z_a, Z_v`, input of the decoders.
    pub fused: MctOutput<B>,
}

/// The CIDer network without its classifier.
#[derive(Module, Debug)]
pub struct CiderNetwork<B: Backend> {
    /// BERT or precomputed text features.
    pub text_encoder: TextEncoder<B>,
    /// `proj_l: d_l → D`.
    pub proj_l: TemporalProjection<B>,
    /// `proj_a: d_a → D`.
    pub proj_a: TemporalProjection<B>,
    /// `proj_v: d_v → D`.
    pub proj_v: TemporalProjection<B>,
    /// WSAM for audio (run only for unaligned input).
    pub wsam_a: Wsam<B>,
    /// WSAM for vision (run only for unaligned input).
    pub wsam_v: Wsam<B>,
    /// `GRU_t` over `P_l`.
    pub gru_l: Gru<B>,
    /// `GRU_a` over `S_a`.
    pub gru_a: Gru<B>,
    /// `GRU_v` over `S_v`.
    pub gru_v: Gru<B>,
    /// The Multimodal Composite Transformer.
    pub mct: Mct<B>,
    /// Pooling of `Z_l`.
    pub pool_l: NaiveAttention<B>,
    /// Pooling of `Z_a`.
    pub pool_a: NaiveAttention<B>,
    /// Pooling of `Z_v`.
    pub pool_v: NaiveAttention<B>,
    /// `r = h + proj2(Dropout(ReLU(proj1(h))))`.
    pub residual: ResidualProjection<B>,
    /// Reconstruction decoders of the missing view.
    pub decoders: Decoders<B>,
    /// Aligned input skips WSAM.
    pub alignment: Alignment,
    /// Expected input sizes `[T_l, T_a, T_v, d_l, d_a, d_v]`.
    pub input_dims: [usize; 6],
}

impl NetworkConfig {
    /// Builds the network with the initialisation of docs/method.md §5.11.
    ///
    /// # Errors
    /// [`ModelError::Config`] when [`NetworkConfig::validate`] fails.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<CiderNetwork<B>, ModelError> {
        self.validate()?;
        let o = &self.options;
        let d = o.embed_dim;
        let text_encoder = self.init_text_encoder(device)?;
        let bound = 1.0 / (d as f64).sqrt();
        let gru = GruConfig::new(d, d, true).with_initializer(Initializer::Uniform {
            min: -bound,
            max: bound,
        });
        let projection = |d_input| TemporalProjectionConfig::new(d_input, d).init(device);
        let pool = || NaiveAttentionConfig::new(d).init(device);
        Ok(CiderNetwork {
            text_encoder,
            proj_l: projection(self.d_l),
            proj_a: projection(self.d_a),
            proj_v: projection(self.d_v),
            wsam_a: WsamConfig::new(d).init(device),
            wsam_v: WsamConfig::new(d).init(device),
            gru_l: gru.init(device),
            gru_a: gru.init(device),
            gru_v: gru.init(device),
            mct: MctConfig::new(d, o.num_heads, o.multimodal_layers)
                .with_attn_dropout(o.attn_dropout)
                .with_relu_dropout(o.relu_dropout)
                .with_res_dropout(o.res_dropout)
                .with_embed_dropout(o.embed_dropout)
                .with_positional(o.positional)
                .with_max_positions(o.max_positions)
                .init(device),
            pool_l: pool(),
            pool_a: pool(),
            pool_v: pool(),
            residual: ResidualProjectionConfig::new(3 * d)
                .with_dropout(o.out_dropout)
                .init(device),
            decoders: DecodersConfig::new(
                d, self.t_l, self.t_a, self.t_v, self.d_l, self.d_a, self.d_v,
            )
            .init(device),
            alignment: self.alignment,
            input_dims: [self.t_l, self.t_a, self.t_v, self.d_l, self.d_a, self.d_v],
        })
    }
}

impl NetworkConfig {
    /// Builds the backbone `options.backbone` names: CIDer's network ([`NetworkConfig::init`])
    /// or MulT (docs/method.md §13.2).
    ///
    /// # Errors
    /// [`ModelError::Config`] when [`NetworkConfig::validate`] fails.
    pub fn init_network<B: Backend>(&self, device: &B::Device) -> Result<Network<B>, ModelError> {
        match self.options.backbone {
            BackboneKind::Cider => Ok(Network::Cider(self.init(device)?)),
            BackboneKind::Mult => {
                self.validate()?;
                let config = MultConfig {
                    options: self.options.mult.clone(),
                    input_dims: [self.t_l, self.t_a, self.t_v, self.d_l, self.d_a, self.d_v],
                };
                Ok(Network::Mult(
                    config.init(self.init_text_encoder(device)?, device)?,
                ))
            }
        }
    }

    /// The BERT of `bert`, or the precomputed-feature pass-through.
    fn init_text_encoder<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<TextEncoder<B>, ModelError> {
        Ok(match &self.bert {
            Some(bert) => TextEncoder::Bert(bert.init(device)?),
            None => TextEncoder::Precomputed(PrecomputedText),
        })
    }
}

impl<B: Backend> CiderNetwork<B> {
    /// One forward pass (`forward_once` of docs/method.md §5.0 without the classifier).
    ///
    /// # Shapes
    /// - view: text `[batch, T_l]` tokens or `[batch, T_l, d_l]` features, audio
    ///   `[batch, T_a, d_a]`, vision `[batch, T_v, d_v]`
    /// - masks: see [`InputMasks`]
    /// - output: see [`NetworkOutput`]
    ///
    /// # Errors
    /// [`ModelError::Input`] when the text kind does not fit the encoder or a shape does not
    /// fit the configuration.
    pub fn forward(
        &self,
        view: ViewInput<B>,
        masks: &InputMasks<B>,
    ) -> Result<NetworkOutput<B>, ModelError> {
        self.check_inputs(&view, masks)?;
        let x_l = self.text_encoder.encode(view.text)?; // [B, T_l, d_l]
        let p_l = self.proj_l.forward(x_l.clone()); // [B, T_l, D]
        let p_a = self.proj_a.forward(view.audio); // [B, T_a, D]
        let p_v = self.proj_v.forward(view.vision); // [B, T_v, D]
        let (s_a, s_v) = match self.alignment {
            Alignment::Aligned => (p_a, p_v), // [B, T_l, D] each
            Alignment::Unaligned => {
                let wsam = |module: &Wsam<B>, x: Tensor<B, 3>, x_mask: &Tensor<B, 2>| {
                    module.forward(
                        p_l.clone(),
                        x,
                        masks.text.clone(),
                        x_mask.clone(),
                        masks.text_len.clone(),
                    )
                };
                (
                    wsam(&self.wsam_a, p_a, &masks.audio),  // [B, T_l, D]
                    wsam(&self.wsam_v, p_v, &masks.vision), // [B, T_l, D]
                )
            }
        };
        let g_l = gru_sequence(&self.gru_l, p_l); // [B, T_l, D]
        let g_a = gru_sequence(&self.gru_a, s_a); // [B, T_l, D]
        let g_v = gru_sequence(&self.gru_v, s_v); // [B, T_l, D]
        let fused = self.mct.forward(g_l, g_a, g_v); // 3 × [B, L, D], scores [B·H, 3L, 3L]
        let h = Tensor::cat(
            vec![
                self.pool_l.forward(fused.text.clone()),   // [B, D]
                self.pool_a.forward(fused.audio.clone()),  // [B, D]
                self.pool_v.forward(fused.vision.clone()), // [B, D]
            ],
            1,
        ); // [B, 3D]
        let joint_rep = self.residual.forward(h); // [B, 3D]
        Ok(NetworkOutput {
            joint_rep,
            attn: fused.scores.clone(),
            text_features: x_l,
            fused,
        })
    }

    /// Reconstructs the inputs from a pass's MCT output (docs/method.md §5.9).
    pub fn reconstruct(&self, fused: &MctOutput<B>) -> Reconstruction<B> {
        self.decoders.forward(
            fused.text.clone(),
            fused.audio.clone(),
            fused.vision.clone(),
        )
    }

    /// Checks every input shape against the configuration, and the batch size against the
    /// positional table in [`PositionalMode::BatchIndex`].
    fn check_inputs(&self, view: &ViewInput<B>, masks: &InputMasks<B>) -> Result<(), ModelError> {
        check_view_shapes(view, masks, self.input_dims)?;
        let batch = view.audio.dims()[0];
        let table_rows = self.mct.pe.dims()[0];
        if self.mct.positional == PositionalMode::BatchIndex && batch > table_rows {
            return Err(input_error(
                "batch",
                format!(
                    "batch size {batch} exceeds the {table_rows} rows of the batch-indexed \
                     positional table"
                ),
            ));
        }
        Ok(())
    }
}

/// Checks a view and its masks against the input sizes `[T_l, T_a, T_v, d_l, d_a, d_v]`.
///
/// # Errors
/// [`ModelError::Input`] naming the first input whose shape differs.
pub fn check_view_shapes<B: Backend>(
    view: &ViewInput<B>,
    masks: &InputMasks<B>,
    input_dims: [usize; 6],
) -> Result<(), ModelError> {
    let [t_l, t_a, t_v, d_l, d_a, d_v] = input_dims;
    let batch = view.audio.dims()[0];
    let expect = |what: &str, got: Vec<usize>, want: Vec<usize>| {
        if got == want {
            Ok(())
        } else {
            Err(input_error(
                what,
                format!("expected shape {want:?}, got {got:?}"),
            ))
        }
    };
    match &view.text {
        TextInput::Tokens {
            ids,
            attention_mask,
            token_types,
        } => {
            expect("text ids", ids.dims().to_vec(), vec![batch, t_l])?;
            expect(
                "text attention mask",
                attention_mask.dims().to_vec(),
                vec![batch, t_l],
            )?;
            expect(
                "text token types",
                token_types.dims().to_vec(),
                vec![batch, t_l],
            )?;
        }
        TextInput::Features(x) => expect("text", x.dims().to_vec(), vec![batch, t_l, d_l])?,
    }
    expect("audio", view.audio.dims().to_vec(), vec![batch, t_a, d_a])?;
    expect("vision", view.vision.dims().to_vec(), vec![batch, t_v, d_v])?;
    expect("text mask", masks.text.dims().to_vec(), vec![batch, t_l])?;
    expect("audio mask", masks.audio.dims().to_vec(), vec![batch, t_a])?;
    expect(
        "vision mask",
        masks.vision.dims().to_vec(),
        vec![batch, t_v],
    )?;
    expect("text_len", masks.text_len.dims().to_vec(), vec![batch])?;
    Ok(())
}

/// Runs a GRU over every step from a zero state (docs/method.md §5.4, PyTorch's equations):
/// `r = σ(x W_ir + b_ir + h W_hr + b_hr)`, `z = σ(x W_iz + b_iz + h W_hz + b_hz)`,
/// `n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn))`, `h' = (1 − z) ⊙ n + z ⊙ h`.
///
/// This is what `Gru::forward` computes for the network's GRUs (sigmoid and tanh activations,
/// reset applied after the hidden matmul, no clipping: `GruConfig`'s defaults, which
/// [`NetworkConfig::init`] keeps), with far fewer operations: the input projections of all
/// steps are one matmul `[B·T, D] × [D, 3D]`, and the recurrence is [`kernels::gru_scan`]
/// (a fused kernel on `Flex`, one hidden matmul `[B, D] × [D, 3D]` per step elsewhere).
///
/// # Shapes
/// - x: `[batch, T, D]`
/// - output: every hidden state, `[batch, T, D]`
pub fn gru_sequence<B: Backend>(gru: &Gru<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let d = gru.d_hidden;
    let device = x.device();
    let gates = [&gru.reset_gate, &gru.update_gate, &gru.new_gate];
    let bias = |linear: &Linear<B>| match &linear.bias {
        Some(b) => b.val(),
        None => Tensor::zeros([d], &device),
    };
    let w_i = Tensor::cat(
        gates
            .iter()
            .map(|g| g.input_transform.weight.val())
            .collect(),
        1,
    ); // [D_in, 3D]: columns r | z | n
    let w_h = Tensor::cat(
        gates
            .iter()
            .map(|g| g.hidden_transform.weight.val())
            .collect(),
        1,
    ); // [D, 3D]
    // r and z take both of their biases here; b_hn stays inside r ⊙ (h W_hn + b_hn).
    let b_i = Tensor::cat(
        vec![
            bias(&gru.reset_gate.input_transform) + bias(&gru.reset_gate.hidden_transform),
            bias(&gru.update_gate.input_transform) + bias(&gru.update_gate.hidden_transform),
            bias(&gru.new_gate.input_transform),
        ],
        0,
    ); // [3D]
    let b_hn = bias(&gru.new_gate.hidden_transform); // [D]
    let projected = linear(x, w_i, Some(b_i)); // [B, T, 3D]
    kernels::gru_scan(projected, w_h, b_hn)
}

fn input_error(what: &str, message: String) -> ModelError {
    ModelError::Input {
        what: what.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network_config::NetworkOptions;
    use burn::backend::Flex;
    use burn::backend::flex::FlexDevice;
    use burn::tensor::{Distribution, TensorData};

    type TB = Flex;

    /// `B = 2`, `T_l = 4`, `T_a = 6`, `T_v = 5`, `d = 6 / 3 / 2`, `D = 8`, `H = 2`.
    fn config(alignment: Alignment) -> NetworkConfig {
        let (t_a, t_v) = match alignment {
            Alignment::Aligned => (4, 4),
            Alignment::Unaligned => (6, 5),
        };
        NetworkConfig::new(6, 3, 2, 4, t_a, t_v, alignment).with_options(NetworkOptions {
            embed_dim: 8,
            num_heads: 2,
            multimodal_layers: 1,
            ..NetworkOptions::default()
        })
    }

    fn inputs(config: &NetworkConfig, device: &FlexDevice) -> (ViewInput<TB>, InputMasks<TB>) {
        TB::seed(device, 11);
        let normal = Distribution::Normal(0.0, 1.0);
        let view = ViewInput {
            text: TextInput::Features(Tensor::random([2, config.t_l, config.d_l], normal, device)),
            audio: Tensor::random([2, config.t_a, config.d_a], normal, device),
            vision: Tensor::random([2, config.t_v, config.d_v], normal, device),
        };
        let prefix = |len: usize, lens: [usize; 2]| {
            let values: Vec<f32> = lens
                .iter()
                .flat_map(|&n| (0..len).map(move |t| if t < n { 1.0 } else { 0.0 }))
                .collect();
            Tensor::<TB, 2>::from_data(TensorData::new(values, [2, len]), device)
        };
        let masks = InputMasks {
            text: prefix(config.t_l, [4, 3]),
            audio: prefix(config.t_a, [config.t_a, 2]),
            vision: prefix(config.t_v, [1, config.t_v]),
            text_len: Tensor::from_ints([4, 3], device),
        };
        (view, masks)
    }

    #[test]
    fn forward_shapes() {
        let device = FlexDevice;
        for alignment in [Alignment::Aligned, Alignment::Unaligned] {
            let config = config(alignment);
            let network = config.init::<TB>(&device).expect("valid config");
            let (view, masks) = inputs(&config, &device);
            let out = network.forward(view, &masks).expect("valid input");
            assert_eq!(out.joint_rep.dims(), [2, 24]);
            assert_eq!(out.attn.dims(), [4, 12, 12]);
            assert_eq!(out.text_features.dims(), [2, 4, 6]);
            let recon = network.reconstruct(&out.fused);
            assert_eq!(recon.text.dims(), [2, 4, 6]);
            assert_eq!(recon.audio.dims(), [2, config.t_a, 3]);
            assert_eq!(recon.vision.dims(), [2, config.t_v, 2]);
        }
    }

    /// Inference on `Flex` (fused MCA and GRU forward) gives the composed path's outputs.
    #[cfg(feature = "flex")]
    #[test]
    fn fused_inference_matches_the_composition() {
        let device = FlexDevice;
        for alignment in [Alignment::Aligned, Alignment::Unaligned] {
            let config = config(alignment);
            let network = config.init::<TB>(&device).expect("valid config");
            // Drawn once: tests running in parallel share the backend's RNG.
            let (view, masks) = inputs(&config, &device);
            let run = |fused: bool| {
                crate::kernels::set_fused(fused);
                let out = network.forward(view.clone(), &masks).expect("valid input");
                crate::kernels::set_fused(true);
                let mut all = out.joint_rep.into_data().to_vec::<f32>().unwrap();
                all.extend(out.attn.into_data().to_vec::<f32>().unwrap());
                all
            };
            let (fused, composed) = (run(true), run(false));
            let worst = fused
                .iter()
                .zip(&composed)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst <= 1e-5, "{alignment:?}: largest difference {worst}");
        }
    }

    /// The whole network, unaligned (WSAM, GRUs, MCT): the fused kernels give the composed
    /// path's outputs and parameter gradients, over two backward passes with a parameter
    /// update in between, as in the MSSD step.
    #[cfg(feature = "flex")]
    #[test]
    fn fused_kernels_match_the_composition_through_the_network() {
        use burn::module::{ModuleMapper, Param};
        use burn::optim::GradientsParams;
        type AB = burn::backend::Autodiff<TB>;
        let device = FlexDevice;
        // No dropout: tests running in parallel share the backend's RNG, so two runs could not
        // be given the same masks.
        let config = NetworkConfig::new(6, 3, 2, 4, 6, 5, Alignment::Unaligned).with_options(
            NetworkOptions {
                embed_dim: 8,
                num_heads: 2,
                multimodal_layers: 2,
                out_dropout: 0.0,
                embed_dropout: 0.0,
                relu_dropout: 0.0,
                res_dropout: 0.0,
                ..NetworkOptions::default()
            },
        );
        let network = config.init::<AB>(&device).expect("valid config");
        let (view, masks) = inputs(&config, &device);
        // Parameters are initialised lazily: a first forward fixes them before the clones.
        let lift = |view: &ViewInput<TB>, masks: &InputMasks<TB>| {
            let TextInput::Features(text) = &view.text else {
                unreachable!()
            };
            (
                ViewInput {
                    text: TextInput::Features(Tensor::<AB, 3>::from_inner(text.clone())),
                    audio: Tensor::from_inner(view.audio.clone()),
                    vision: Tensor::from_inner(view.vision.clone()),
                },
                InputMasks {
                    text: Tensor::from_inner(masks.text.clone()),
                    audio: Tensor::from_inner(masks.audio.clone()),
                    vision: Tensor::from_inner(masks.vision.clone()),
                    text_len: Tensor::from_inner(masks.text_len.clone()),
                },
            )
        };
        /// θ − 0.01·g/(|g| + 10⁻³): a step that, like Adam's first, hardly depends on the
        /// gradient's size, and unlike `sign(g)` is continuous at zero, so a gradient that the
        /// two paths round to either side of zero cannot flip it.
        struct SignStep<'a>(&'a GradientsParams);
        impl ModuleMapper<AB> for SignStep<'_> {
            fn map_float<const D: usize>(
                &mut self,
                param: Param<Tensor<AB, D>>,
            ) -> Param<Tensor<AB, D>> {
                let grad = self.0.get::<TB, D>(param.id);
                param.map(|t| match grad {
                    Some(g) => {
                        let step = g.clone().div(g.abs().add_scalar(1e-3)).mul_scalar(0.01);
                        Tensor::from_inner(t.inner() - step).require_grad()
                    }
                    None => t,
                })
            }
        }
        let (v, m) = lift(&view, &masks);
        network.forward(v, &m).expect("valid input");
        let run = |fused: bool| {
            crate::kernels::set_fused(fused);
            let mut network = network.clone();
            let mut all = Vec::new();
            for pass in 0..2 {
                let (view, masks) = lift(&view, &masks);
                let out = network.forward(view, &masks).expect("valid input");
                let loss = out.joint_rep.clone().powi_scalar(2).sum()
                    + out.attn.clone().mul_scalar(0.1).sum()
                    + out.fused.text.clone().sum().mul_scalar(0.5);
                all.extend(out.joint_rep.inner().into_data().to_vec::<f32>().unwrap());
                let grads = GradientsParams::from_grads(loss.backward(), &network);
                struct Collect<'a>(&'a GradientsParams, &'a mut Vec<f32>);
                impl burn::module::ModuleVisitor<AB> for Collect<'_> {
                    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
                        if let Some(g) = self.0.get::<TB, D>(param.id) {
                            self.1.extend(g.into_data().to_vec::<f32>().unwrap());
                        }
                    }
                }
                network.visit(&mut Collect(&grads, &mut all));
                if pass == 0 {
                    network = network.map(&mut SignStep(&grads));
                }
            }
            crate::kernels::set_fused(true);
            all
        };
        let (fused, composed) = (run(true), run(false));
        crate::kernels::tests::assert_close("two training passes", fused, composed);
    }

    /// The fused GRU loop computes what Burn's own `Gru::forward` computes (PyTorch's
    /// equations, checked against them in Burn's notes), for every step, and the same
    /// gradients for the input and the weights.
    #[test]
    fn gru_sequence_matches_burn_gru() {
        type AB = burn::backend::Autodiff<TB>;
        let device = FlexDevice;
        TB::seed(&device, 17);
        let gru = GruConfig::new(6, 6, true)
            .with_initializer(Initializer::Uniform {
                min: -0.6,
                max: 0.6,
            })
            .init::<AB>(&device);
        let x = Tensor::<TB, 3>::random([3, 7, 6], Distribution::Normal(0.0, 1.5), &device);
        let probe = Tensor::<AB, 3>::random([3, 7, 6], Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let x = Tensor::<AB, 3>::from_inner(x.clone()).require_grad();
            let out = if fused {
                gru_sequence(&gru, x.clone())
            } else {
                gru.forward(x.clone(), None)
            };
            let grads = (out.clone() * probe.clone()).sum().backward();
            let weight = &gru.new_gate.hidden_transform.weight;
            let bias = gru.reset_gate.hidden_transform.bias.as_ref().expect("bias");
            (
                out.inner().into_data(),
                x.grad(&grads).expect("input gradient").into_data(),
                weight.grad(&grads).expect("weight gradient").into_data(),
                bias.grad(&grads).expect("bias gradient").into_data(),
            )
        };
        let (got, want) = (run(true), run(false));
        let tol = burn::tensor::Tolerance::absolute(1e-5);
        got.0.assert_approx_eq::<f32>(&want.0, tol);
        got.1.assert_approx_eq::<f32>(&want.1, tol);
        got.2.assert_approx_eq::<f32>(&want.2, tol);
        got.3.assert_approx_eq::<f32>(&want.3, tol);
    }

    /// GRU weights and biases `U(±1/sqrt(D))` (docs/method.md §5.11).
    #[test]
    fn gru_init_range() {
        let network = config(Alignment::Aligned)
            .init::<TB>(&FlexDevice)
            .expect("valid config");
        let k = 1.0 / 8f32.sqrt();
        for gate in [&network.gru_a.reset_gate, &network.gru_a.new_gate] {
            gate.hidden_transform
                .weight
                .to_data()
                .assert_within_range(-k..k);
            let bias = gate.input_transform.bias.as_ref().expect("bias");
            bias.to_data().assert_within_range(-k..k);
        }
    }

    /// The audio length mask only reaches the network through WSAM, which aligned input skips.
    #[test]
    fn audio_mask_matters_only_when_unaligned() {
        let device = FlexDevice;
        for (alignment, should_change) in
            [(Alignment::Aligned, false), (Alignment::Unaligned, true)]
        {
            let config = config(alignment);
            let network = config.init::<TB>(&device).expect("valid config");
            let (view, masks) = inputs(&config, &device);
            let mut other = masks.clone();
            other.audio = other.audio.zeros_like();
            let a = network
                .forward(view.clone(), &masks)
                .expect("valid input")
                .joint_rep;
            let b = network
                .forward(view, &other)
                .expect("valid input")
                .joint_rep;
            let diff: f32 = (a - b).abs().max().into_scalar();
            assert_eq!(diff > 1e-6, should_change, "{alignment:?}: diff {diff}");
        }
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let device = FlexDevice;
        let config = config(Alignment::Unaligned);
        let network = config.init::<TB>(&device).expect("valid config");
        let (view, masks) = inputs(&config, &device);
        let what = |r: Result<NetworkOutput<TB>, ModelError>| match r {
            Err(ModelError::Input { what, .. }) => what,
            other => panic!("expected an input error, got {other:?}"),
        };

        let tokens = ViewInput {
            text: TextInput::from_bert_rows(Tensor::zeros([2, 3, 4], &device)),
            ..view.clone()
        };
        assert_eq!(what(network.forward(tokens, &masks)), "text");

        let short_audio = ViewInput {
            audio: Tensor::zeros([2, 5, 3], &device),
            ..view.clone()
        };
        assert_eq!(what(network.forward(short_audio, &masks)), "audio");

        let mut bad_masks = masks.clone();
        bad_masks.text_len = Tensor::from_ints([4, 3, 2], &device);
        assert_eq!(what(network.forward(view.clone(), &bad_masks)), "text_len");

        let mut small_table = config;
        small_table.options.max_positions = 1;
        let small_table = small_table.init::<TB>(&device).expect("valid");
        assert_eq!(what(small_table.forward(view, &masks)), "batch");
    }

    #[test]
    fn from_bert_rows_splits_ids_mask_and_segments() {
        let device = FlexDevice;
        let rows = Tensor::<TB, 3>::from_floats(
            [[[101.0, 7.0, 102.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]]],
            &device,
        );
        let TextInput::Tokens {
            ids,
            attention_mask,
            token_types,
        } = TextInput::from_bert_rows(rows)
        else {
            panic!("expected tokens");
        };
        let ints = |t: Tensor<TB, 2, Int>| {
            t.into_data()
                .convert::<i64>()
                .to_vec::<i64>()
                .expect("ints")
        };
        assert_eq!(ints(ids), [101, 7, 102]);
        assert_eq!(ints(token_types), [0, 0, 1]);
        assert_eq!(
            attention_mask.into_data().to_vec::<f32>().expect("floats"),
            [1.0, 1.0, 1.0]
        );
    }
}
