//! The complete model: a backbone (CIDer's network, MulT or a user's own module, up to the joint
//! representation `r`) followed by MACI's classifier, with the forward passes of
//! docs/method.md §5.10 and the import of a reference `state_dict`.
//!
//! [`Maci`] is generic over the backbone ([`Backbone`], docs/method.md §13.1); [`Cider`] is
//! [`Maci`] over the built-in [`Network`], the model the training loop, the protocol and the
//! command line work with. MSSD's passes ([`Cider::complete`], [`Cider::missing`]) need CIDer's
//! own network; the factual / counterfactual passes of inference work with any backbone.

use std::path::Path;

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use cider_model::ModelError;
use cider_model::backbone::{Backbone, BackboneKind, BackboneOutput, Network};
use cider_model::decoder::Reconstruction;
use cider_model::import::{is_bert_key, load_reference_network, load_reference_text_encoder};
use cider_model::mult::load_mmsa_mult;
use cider_model::network::{InputMasks, NetworkOutput, TextEncoder, TextInput, ViewInput};
use cider_model::network_config::NetworkConfig;
use cider_model::weights::{WeightFile, WeightLoader};

use crate::mcm::{ConfounderNorm, Mcm, McmConfig, load_reference_mcm};

/// Which classifier turns the joint representation `r` into `log p(y|x)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Classifier {
    /// CIDer: the MCM (docs/method.md §5.8), a backdoor adjustment over the class confounders.
    #[default]
    Maci,
    /// The ablation without MACI: `log_softmax(W r + b)`, `W: Linear(R → C)`; the confounders
    /// are ignored and inference uses τ = 0. The MCM is still built (so every configuration has
    /// the same modules) but receives no gradient. For MulT this is MMSA's own `out_layer`.
    Linear,
}

/// Configuration of MACI's classifier around any backbone (docs/method.md §13.1).
#[derive(Config, Debug)]
pub struct MaciConfig {
    /// `C`: 3 for the "binary" task (negative / neutral / positive), 7 for "seven".
    pub num_classes: usize,
    /// Prototype part sizes `[d_l, d_a, d_v]` (the data's feature sizes).
    pub prototype_dims: [usize; 3],
    /// `D`: width of each confounder encoder `φ` (CIDer uses its model width).
    pub confounder_width: usize,
    /// Cross-dataset runs normalise the audio / vision confounder encoders.
    #[config(default = "ConfounderNorm::None")]
    pub confounder_norm: ConfounderNorm,
    /// The MCM or a plain linear head.
    #[config(default = "Classifier::Maci")]
    pub classifier: Classifier,
}

impl MaciConfig {
    /// Wraps `network` with the MCM (and the linear head of [`Classifier::Linear`]).
    ///
    /// # Errors
    /// [`ModelError::Config`] for `num_classes` = 0 or a zero width.
    pub fn init<B: Backend, M: Backbone<B>>(
        &self,
        network: M,
        device: &B::Device,
    ) -> Result<Maci<B, M>, ModelError> {
        let linear_head = self.linear_head(network.representation_dim(), device)?;
        self.assemble(network, linear_head, device)
    }

    /// The linear head of [`Classifier::Linear`] over `r` `[batch, R]`.
    fn linear_head<B: Backend>(
        &self,
        r: usize,
        device: &B::Device,
    ) -> Result<Option<Linear<B>>, ModelError> {
        if self.num_classes == 0 || self.confounder_width == 0 || r == 0 {
            return Err(ModelError::Config {
                source_name: "MaciConfig".into(),
                message: format!(
                    "num_classes ({}), confounder_width ({}) and the backbone's representation \
                     width ({r}) must be at least 1",
                    self.num_classes, self.confounder_width
                ),
            });
        }
        Ok((self.classifier == Classifier::Linear)
            .then(|| LinearConfig::new(r, self.num_classes).init(device)))
    }

    /// The model from its parts; the MCM is initialised here.
    fn assemble<B: Backend, M: Backbone<B>>(
        &self,
        network: M,
        linear_head: Option<Linear<B>>,
        device: &B::Device,
    ) -> Result<Maci<B, M>, ModelError> {
        let [d_l, d_a, d_v] = self.prototype_dims;
        let mcm = McmConfig::new(self.confounder_width, d_l, d_a, d_v, self.num_classes)
            .with_confounder_norm(self.confounder_norm)
            .with_representation_dim(Some(network.representation_dim()));
        Ok(Maci {
            network,
            mcm: mcm.init(device),
            linear_head,
        })
    }
}

/// Configuration of the complete model over a built-in backbone.
#[derive(Config, Debug)]
pub struct CiderConfig {
    /// The backbone (`network.options.backbone`) up to `r`, plus CIDer's decoders.
    pub network: NetworkConfig,
    /// `C`: 3 for the "binary" task (negative / neutral / positive), 7 for "seven".
    pub num_classes: usize,
    /// Cross-dataset runs normalise the audio / vision confounder encoders.
    #[config(default = "ConfounderNorm::None")]
    pub confounder_norm: ConfounderNorm,
    /// The MCM (CIDer) or a plain linear head (ablation).
    #[config(default = "Classifier::Maci")]
    pub classifier: Classifier,
}

impl CiderConfig {
    /// The classifier part: confounder encoders `D` wide for CIDer, `2E` for MulT (so that
    /// `R = 3·D` for both).
    pub fn maci(&self) -> MaciConfig {
        let n = &self.network;
        let width = match n.options.backbone {
            BackboneKind::Cider => n.options.embed_dim,
            BackboneKind::Mult => 2 * n.options.mult.width,
        };
        MaciConfig::new(self.num_classes, [n.d_l, n.d_a, n.d_v], width)
            .with_confounder_norm(self.confounder_norm)
            .with_classifier(self.classifier)
    }

    /// Builds the model with the initialisation of docs/method.md §5.11 (§13.2 for MulT).
    ///
    /// # Errors
    /// [`ModelError::Config`] for an invalid network configuration or `num_classes` = 0.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Cider<B>, ModelError> {
        if self.num_classes == 0 {
            return Err(ModelError::Config {
                source_name: "CiderConfig".into(),
                message: "num_classes must be at least 1".into(),
            });
        }
        let maci = self.maci();
        // The head first, then the backbone, then the MCM: the order of the random draws.
        let linear_head = maci.linear_head(self.representation_dim(), device)?;
        let network = self.network.init_network(device)?;
        maci.assemble(network, linear_head, device)
    }

    /// `R`: `3D` for CIDer, `6E` for MulT.
    pub fn representation_dim(&self) -> usize {
        let o = &self.network.options;
        match o.backbone {
            BackboneKind::Cider => 3 * o.embed_dim,
            BackboneKind::Mult => o.mult.representation_dim(),
        }
    }
}

/// The class confounders of a batch (docs/method.md §5.8, §7.2).
#[derive(Debug, Clone)]
pub struct Confounders<B: Backend> {
    /// Prototypes `z_i` for every sample: `[C, batch, d_l + d_a + d_v]`.
    pub feats: Tensor<B, 3>,
    /// Prior `P(z_i)` for every sample: `[batch, C]`.
    pub probs: Tensor<B, 2>,
}

/// One view's classifier output and the network quantities the losses use.
#[derive(Debug, Clone)]
pub struct ViewOutput<B: Backend> {
    /// `log p(y|x)` `[batch, C]`.
    pub pred: Tensor<B, 2>,
    /// Joint representation `r` `[batch, 3D]`.
    pub joint_rep: Tensor<B, 2>,
    /// Last MCT layer's raw scores `[batch·H, 3L, 3L]`.
    pub attn: Tensor<B, 3>,
}

/// Complete-view pass (training and validation loss).
#[derive(Debug, Clone)]
pub struct CompleteOutput<B: Backend> {
    /// `pred`, `joint_rep`, `attn`.
    pub view: ViewOutput<B>,
    /// The text encoder output, detached: the text reconstruction target `[batch, T_l, d_l]`.
    pub text_for_recon: Tensor<B, 3>,
}

/// Missing-view pass (training and validation loss).
#[derive(Debug, Clone)]
pub struct MissingOutput<B: Backend> {
    /// `pred_m`, `joint_rep_m`, `attn_m`.
    pub view: ViewOutput<B>,
    /// `text_recon`, `audio_recon`, `vision_recon`.
    pub recon: Reconstruction<B>,
}

/// Test pass: the factual missing view and its counterfactual (text replaced by `text_cf`).
#[derive(Debug, Clone)]
pub struct TestOutput<B: Backend> {
    /// `pred_m`, `joint_rep_m`, `attn_m`.
    pub factual: ViewOutput<B>,
    /// `cf_pred_m`, `cf_joint_rep_m`, `cf_attn_m`.
    pub counterfactual: ViewOutput<B>,
}

/// A backbone followed by MACI's classifier.
#[derive(Module, Debug)]
pub struct Maci<B: Backend, M: Module<B>> {
    /// Everything up to `r` (for CIDer also the decoders).
    pub network: M,
    /// The causal classifier.
    pub mcm: Mcm<B>,
    /// The linear head `Linear(R → C)` ([`Classifier::Linear`]); when present it replaces the
    /// MCM.
    pub linear_head: Option<Linear<B>>,
}

/// The complete model over a built-in backbone: CIDer's network (the paper's model) or MulT.
pub type Cider<B> = Maci<B, Network<B>>;

impl<B: Backend, M: Backbone<B>> Maci<B, M> {
    /// The parameters that receive a gradient: the backbone and the classifier in use (the MCM,
    /// or the linear head that replaces it).
    pub fn trained_params(&self) -> usize {
        let classifier = match &self.linear_head {
            Some(head) => head.num_params(),
            None => self.mcm.num_params(),
        };
        Module::num_params(&self.network) + classifier
    }

    /// `log p(y|x)` `[batch, C]` of `r` `[batch, R]`: the MCM under the confounders, or the
    /// linear head (which ignores them).
    ///
    /// # Errors
    /// [`ModelError::Input`] for confounders that do not fit the MCM or the batch.
    pub fn classify(
        &self,
        joint_rep: Tensor<B, 2>,
        confounders: &Confounders<B>,
    ) -> Result<Tensor<B, 2>, ModelError> {
        Ok(match &self.linear_head {
            Some(head) => log_softmax(head.forward(joint_rep), 1), // [B, C]
            None => {
                self.check_confounders(confounders, joint_rep.dims()[0])?;
                self.mcm.forward(
                    joint_rep,
                    confounders.feats.clone(),
                    confounders.probs.clone(),
                ) // [B, C]
            }
        })
    }

    /// One view through the backbone and the classifier: `log p(y|x)` `[batch, C]` and the
    /// backbone's output.
    ///
    /// # Errors
    /// [`ModelError::Input`] for inputs that do not fit the model.
    pub fn log_probs(
        &self,
        view: ViewInput<B>,
        masks: &InputMasks<B>,
        confounders: &Confounders<B>,
    ) -> Result<(Tensor<B, 2>, BackboneOutput<B>), ModelError> {
        let out = self.network.forward_view(view, masks)?;
        Ok((self.classify(out.joint_rep.clone(), confounders)?, out))
    }

    /// MACI's two inference passes (docs/method.md §7.3): `ℓ` of the factual view and `ℓ_cf`
    /// of the same audio / vision with the counterfactual text, each `[batch, C]`.
    ///
    /// # Errors
    /// As [`Maci::log_probs`].
    pub fn factual_and_counterfactual(
        &self,
        factual: ViewInput<B>,
        counterfactual_text: TextInput<B>,
        masks: &InputMasks<B>,
        confounders: &Confounders<B>,
    ) -> Result<(Tensor<B, 2>, Tensor<B, 2>), ModelError> {
        let counterfactual = factual.with_text(counterfactual_text);
        let (pred, _) = self.log_probs(factual, masks, confounders)?;
        let (cf_pred, _) = self.log_probs(counterfactual, masks, confounders)?;
        Ok((pred, cf_pred))
    }

    /// Checks the confounder shapes against the MCM and the batch.
    fn check_confounders(&self, c: &Confounders<B>, batch: usize) -> Result<(), ModelError> {
        let classes = self.mcm.heads.len();
        let width: usize = self.mcm.parts.iter().sum();
        let fail = |what: &str, got: Vec<usize>, want: Vec<usize>| {
            Err(ModelError::Input {
                what: what.into(),
                message: format!("expected shape {want:?}, got {got:?}"),
            })
        };
        if c.feats.dims() != [classes, batch, width] {
            return fail(
                "cls_feats",
                c.feats.dims().to_vec(),
                vec![classes, batch, width],
            );
        }
        if c.probs.dims() != [batch, classes] {
            return fail("cls_probs", c.probs.dims().to_vec(), vec![batch, classes]);
        }
        Ok(())
    }
}

impl<B: Backend> Cider<B> {
    /// The text encoder in front of the backbone.
    pub fn text_encoder(&self) -> &TextEncoder<B> {
        self.network.text_encoder()
    }

    /// One view through CIDer's network and the classifier; also returns the network output
    /// (attention scores and MCT segments, which MSSD uses).
    ///
    /// # Errors
    /// [`ModelError::Input`] for inputs that do not fit the configuration;
    /// [`ModelError::Config`] for a MulT backbone.
    pub fn forward_view(
        &self,
        view: ViewInput<B>,
        masks: &InputMasks<B>,
        confounders: &Confounders<B>,
    ) -> Result<(ViewOutput<B>, NetworkOutput<B>), ModelError> {
        let out = self.network.cider("this pass")?.forward(view, masks)?;
        let pred = self.classify(out.joint_rep.clone(), confounders)?;
        let view = ViewOutput {
            pred,
            joint_rep: out.joint_rep.clone(),
            attn: out.attn.clone(),
        };
        Ok((view, out))
    }

    /// The complete-view pass: `pred`, `joint_rep`, `attn`, `text_for_recon`.
    pub fn complete(
        &self,
        view: ViewInput<B>,
        masks: &InputMasks<B>,
        confounders: &Confounders<B>,
    ) -> Result<CompleteOutput<B>, ModelError> {
        let (view, out) = self.forward_view(view, masks, confounders)?;
        Ok(CompleteOutput {
            view,
            text_for_recon: out.text_features.detach(),
        })
    }

    /// The missing-view pass: `pred_m`, `joint_rep_m`, `attn_m` and the reconstructions.
    pub fn missing(
        &self,
        view: ViewInput<B>,
        masks: &InputMasks<B>,
        confounders: &Confounders<B>,
    ) -> Result<MissingOutput<B>, ModelError> {
        let (view, out) = self.forward_view(view, masks, confounders)?;
        Ok(MissingOutput {
            view,
            recon: self
                .network
                .cider("reconstruction")?
                .reconstruct(&out.fused),
        })
    }

    /// The test pass: the factual missing view, then the same audio / vision with the
    /// counterfactual text (same weights, same masks).
    pub fn test(
        &self,
        factual: ViewInput<B>,
        counterfactual_text: TextInput<B>,
        masks: &InputMasks<B>,
        confounders: &Confounders<B>,
    ) -> Result<TestOutput<B>, ModelError> {
        let counterfactual = factual.with_text(counterfactual_text);
        let (factual, _) = self.forward_view(factual, masks, confounders)?;
        let (counterfactual, _) = self.forward_view(counterfactual, masks, confounders)?;
        Ok(TestOutput {
            factual,
            counterfactual,
        })
    }

    /// Loads a reference `state_dict` (CIDer repo key names; MMSA's for MulT) from a `.safetensors` file or a
    /// PyTorch `.pt` / `.pth` / `.bin` file (a state dict, or a whole pickled module as the
    /// reference saves its models; read without running anything).
    ///
    /// With a precomputed-feature text encoder the file's BERT keys are not used. The
    /// reference has no linear head: that of [`Classifier::Linear`] keeps its weights.
    ///
    /// # Errors
    /// [`ModelError::WeightFile`] for an unreadable file; one [`ModelError::Weights`] listing
    /// every missing, unexpected and mis-shaped key of the network, the MCM and the BERT.
    pub fn load_reference(self, path: &Path, device: &B::Device) -> Result<Self, ModelError> {
        self.load_reference_file(&WeightFile::open(path)?, device)
    }

    /// [`Cider::load_reference`] from a weight file already open.
    ///
    /// # Errors
    /// As [`Cider::load_reference`].
    pub fn load_reference_file(
        self,
        file: &WeightFile,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let mut loader = WeightLoader::new(file, "", device);
        let model = load_reference_keys(self, &mut loader);
        let rest = loader.finish(is_bert_key);
        match (load_reference_bert(model, file, device), rest) {
            (Ok(model), Ok(())) => Ok(model),
            (Ok(_), Err(e)) | (Err(e), Ok(())) => Err(e),
            (Err(a), Err(b)) => Err(merge_weight_errors(a, b)),
        }
    }
}

/// Moves the non-BERT tensors of a reference file into `model` through `loader` (prefix `""`):
/// for CIDer the network and MCM keys of the CIDer repo; for MulT MMSA's `MULT` keys, with
/// `out_layer` into the linear head ([`Classifier::Linear`]; with the MCM, MMSA's head has no
/// place and is skipped). Missing and mis-shaped keys are recorded in the loader.
pub fn load_reference_keys<B: Backend>(
    model: Cider<B>,
    loader: &mut WeightLoader<'_, B>,
) -> Cider<B> {
    match model.network {
        Network::Cider(network) => Maci {
            network: Network::Cider(load_reference_network(network, loader)),
            mcm: load_reference_mcm(model.mcm, loader),
            linear_head: model.linear_head,
        },
        Network::Mult(mult) => {
            let network = Network::Mult(load_mmsa_mult(mult, loader));
            let linear_head = match model.linear_head {
                Some(head) => Some(loader.linear(head, "out_layer")),
                None => {
                    loader.skip("out_layer.weight");
                    loader.skip("out_layer.bias");
                    None
                }
            };
            Maci {
                network,
                mcm: model.mcm,
                linear_head,
            }
        }
    }
}

/// Loads the BERT of `model`'s text encoder from `file` (keys under `text_model.model.`, in
/// the CIDer repo and in MMSA alike); nothing for precomputed text.
///
/// # Errors
/// [`ModelError::Weights`] for missing, unexpected or mis-shaped BERT keys.
pub fn load_reference_bert<B: Backend>(
    model: Cider<B>,
    file: &WeightFile,
    device: &B::Device,
) -> Result<Cider<B>, ModelError> {
    let encoder = model.network.text_encoder().clone();
    let loaded = load_reference_text_encoder(encoder, file, device)?;
    Ok(Maci {
        network: model.network.with_text_encoder(loaded),
        ..model
    })
}

/// Joins two [`ModelError::Weights`] (BERT and the rest) into one; any other error wins.
fn merge_weight_errors(a: ModelError, b: ModelError) -> ModelError {
    match (a, b) {
        (
            ModelError::Weights {
                file,
                mut missing,
                mut unexpected,
                mut misshaped,
            },
            ModelError::Weights {
                missing: m2,
                unexpected: u2,
                misshaped: s2,
                ..
            },
        ) => {
            missing.extend(m2);
            unexpected.extend(u2);
            misshaped.extend(s2);
            ModelError::Weights {
                file,
                missing,
                unexpected,
                misshaped,
            }
        }
        (ModelError::Weights { .. }, other) | (other, _) => other,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use burn::backend::Flex;
    use burn::backend::flex::FlexDevice;
    use burn::tensor::{Distribution, Int};
    use cider_model::network_config::{Alignment, NetworkOptions};

    use super::*;

    type TB = Flex;

    /// `(name, d_a, d_v, T_l, T_a, T_v, aligned, C, layers, cross-dataset, docs/method.md §10 total)`.
    #[allow(clippy::type_complexity)]
    const SPEC_COUNTS: [(
        &str,
        usize,
        usize,
        usize,
        usize,
        usize,
        bool,
        usize,
        usize,
        bool,
        usize,
    ); 15] = [
        (
            "MOSI unaligned binary",
            5,
            20,
            50,
            375,
            500,
            false,
            3,
            3,
            false,
            276_566,
        ),
        (
            "MOSI unaligned seven",
            5,
            20,
            50,
            375,
            500,
            false,
            7,
            3,
            false,
            284_286,
        ),
        (
            "MOSI aligned binary",
            5,
            20,
            50,
            50,
            50,
            true,
            3,
            3,
            false,
            237_041,
        ),
        (
            "MOSI aligned seven",
            5,
            20,
            50,
            50,
            50,
            true,
            7,
            3,
            false,
            244_761,
        ),
        (
            "MOSEI unaligned binary",
            74,
            35,
            50,
            500,
            500,
            false,
            3,
            3,
            false,
            291_089,
        ),
        (
            "MOSEI unaligned seven",
            74,
            35,
            50,
            500,
            500,
            false,
            7,
            3,
            false,
            298_809,
        ),
        (
            "MOSEI aligned binary",
            74,
            35,
            50,
            50,
            50,
            true,
            3,
            3,
            false,
            245_189,
        ),
        (
            "MOSEI aligned seven",
            74,
            35,
            50,
            50,
            50,
            true,
            7,
            3,
            false,
            252_909,
        ),
        (
            "MOSI cross binary",
            25,
            171,
            44,
            44,
            44,
            true,
            3,
            3,
            true,
            252_488,
        ),
        (
            "MOSEI cross binary",
            25,
            171,
            75,
            75,
            75,
            true,
            3,
            3,
            true,
            259_928,
        ),
        (
            "MOSI unaligned binary, 1 layer",
            5,
            20,
            50,
            375,
            500,
            false,
            3,
            1,
            false,
            211_606,
        ),
        (
            "MOSI unaligned binary, 2 layers",
            5,
            20,
            50,
            375,
            500,
            false,
            3,
            2,
            false,
            244_086,
        ),
        (
            "MOSI unaligned binary, 4 layers",
            5,
            20,
            50,
            375,
            500,
            false,
            3,
            4,
            false,
            309_046,
        ),
        // H does not change the count.
        (
            "MOSI unaligned binary, H = 1",
            5,
            20,
            50,
            375,
            500,
            false,
            3,
            3,
            false,
            276_566,
        ),
        (
            "MOSI unaligned binary, H = 4",
            5,
            20,
            50,
            375,
            500,
            false,
            3,
            3,
            false,
            276_566,
        ),
    ];

    #[test]
    fn non_bert_param_counts_match_spec() {
        for (i, (name, d_a, d_v, t_l, t_a, t_v, aligned, classes, layers, cross, want)) in
            SPEC_COUNTS.into_iter().enumerate()
        {
            let alignment = if aligned {
                Alignment::Aligned
            } else {
                Alignment::Unaligned
            };
            let heads = match i {
                13 => 1,
                14 => 4,
                _ => 8,
            };
            let network = NetworkConfig::new(768, d_a, d_v, t_l, t_a, t_v, alignment).with_options(
                NetworkOptions {
                    multimodal_layers: layers,
                    num_heads: heads,
                    ..NetworkOptions::default()
                },
            );
            let norm = if cross {
                ConfounderNorm::LayerNorm
            } else {
                ConfounderNorm::None
            };
            let model = CiderConfig::new(network, classes)
                .with_confounder_norm(norm)
                .init::<TB>(&FlexDevice)
                .expect("valid config");
            assert_eq!(model.num_params(), want, "{name}");
        }
    }

    fn golden_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/torch-golden/mosi-unaligned-small")
    }

    /// docs/method.md §5.10's shapes for `B = 4`, MOSI unaligned binary, `H = 8` (precomputed text).
    #[test]
    fn pass_output_shapes() {
        let device = FlexDevice;
        TB::seed(&device, 5);
        let network = NetworkConfig::new(768, 5, 20, 50, 375, 500, Alignment::Unaligned)
            .with_options(NetworkOptions {
                multimodal_layers: 1,
                ..NetworkOptions::default()
            });
        let model = CiderConfig::new(network, 3)
            .init::<TB>(&device)
            .expect("valid");
        let normal = Distribution::Normal(0.0, 1.0);
        let view = || ViewInput {
            text: TextInput::Features(Tensor::random([4, 50, 768], normal, &device)),
            audio: Tensor::random([4, 375, 5], normal, &device),
            vision: Tensor::random([4, 500, 20], normal, &device),
        };
        let masks = InputMasks {
            text: Tensor::ones([4, 50], &device),
            audio: Tensor::ones([4, 375], &device),
            vision: Tensor::ones([4, 500], &device),
            text_len: Tensor::<TB, 1, Int>::from_ints([50, 50, 50, 50], &device),
        };
        let confounders = Confounders {
            feats: Tensor::random([3, 4, 793], normal, &device),
            probs: Tensor::ones([4, 3], &device).div_scalar(3.0),
        };
        let complete = model.complete(view(), &masks, &confounders).expect("valid");
        assert_eq!(complete.view.pred.dims(), [4, 3]);
        assert_eq!(complete.view.joint_rep.dims(), [4, 96]);
        assert_eq!(complete.view.attn.dims(), [32, 150, 150]);
        assert_eq!(complete.text_for_recon.dims(), [4, 50, 768]);
        // log of a probability mixture: rows of exp(pred) sum to 1.
        let sums: Vec<f32> = complete
            .view
            .pred
            .exp()
            .sum_dim(1)
            .into_data()
            .to_vec()
            .expect("f32");
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");

        let missing = model.missing(view(), &masks, &confounders).expect("valid");
        assert_eq!(missing.recon.text.dims(), [4, 50, 768]);
        assert_eq!(missing.recon.audio.dims(), [4, 375, 5]);
        assert_eq!(missing.recon.vision.dims(), [4, 500, 20]);

        let other_text = TextInput::Features(Tensor::random([4, 50, 768], normal, &device));
        let test = model
            .test(view(), other_text, &masks, &confounders)
            .expect("valid");
        assert_eq!(test.counterfactual.pred.dims(), [4, 3]);
        assert_eq!(test.counterfactual.attn.dims(), [32, 150, 150]);

        let bad = Confounders {
            feats: Tensor::zeros([3, 4, 792], &device),
            probs: confounders.probs.clone(),
        };
        match model.complete(view(), &masks, &bad) {
            Err(ModelError::Input { what, .. }) => assert_eq!(what, "cls_feats"),
            other => panic!("expected an input error, got {other:?}"),
        }
    }

    /// Backward through every pass on an autodiff backend gives finite gradients, also with
    /// WSAM rows and samples that have no allowed key (a sample without any audio frame).
    #[test]
    fn gradients_are_finite_with_fully_masked_rows() {
        type AD = burn::backend::Autodiff<Flex>;
        let device = FlexDevice;
        AD::seed(&device, 9);
        let network = NetworkConfig::new(6, 3, 2, 4, 6, 5, Alignment::Unaligned).with_options(
            NetworkOptions {
                embed_dim: 8,
                num_heads: 2,
                multimodal_layers: 2,
                attn_dropout: 0.1,
                ..NetworkOptions::default()
            },
        );
        let model = CiderConfig::new(network, 3)
            .init::<AD>(&device)
            .expect("valid");
        let normal = Distribution::Normal(0.0, 1.0);
        let view = ViewInput {
            text: TextInput::Features(Tensor::random([2, 4, 6], normal, &device)),
            audio: Tensor::random([2, 6, 3], normal, &device),
            vision: Tensor::random([2, 5, 2], normal, &device),
        };
        let masks = InputMasks {
            text: Tensor::from_floats([[1.0, 1.0, 1.0, 0.0], [1.0; 4]], &device),
            audio: Tensor::from_floats([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0], [0.0; 6]], &device),
            vision: Tensor::ones([2, 5], &device),
            text_len: Tensor::<AD, 1, Int>::from_ints([3, 4], &device),
        };
        let confounders = Confounders {
            feats: Tensor::random([3, 2, 11], normal, &device),
            probs: Tensor::from_floats([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]], &device),
        };
        let out = model.missing(view, &masks, &confounders).expect("valid");
        let loss = out.view.pred.sum()
            + out.view.attn.sum()
            + out.view.joint_rep.sum()
            + out.recon.audio.sum();
        let grads = loss.backward();
        let grad_of = |p: &burn::module::Param<Tensor<AD, 2>>| {
            p.val()
                .grad(&grads)
                .expect("parameter has a gradient")
                .into_data()
                .to_vec::<f32>()
                .expect("f32")
        };
        let network = model.network.cider("the test").expect("CIDer backbone");
        for grad in [
            grad_of(&network.wsam_a.in_proj.weight),
            grad_of(&network.mct.layers[0].self_attn.in_proj.weight),
            grad_of(&model.mcm.phi_l.layers[0].weight),
            grad_of(&network.proj_l.linear.weight),
        ] {
            assert!(grad.iter().all(|g| g.is_finite()), "{grad:?}");
            assert!(grad.iter().any(|g| *g != 0.0));
        }
    }

    /// MulT with a BERT in front (docs/method.md §13.2): token ids go in, MACI's factual and
    /// counterfactual passes come out as log-probabilities; the MCM's heads read `R + 3D =
    /// 6E + 3·2E`; MSSD's passes are refused.
    #[test]
    fn mult_reads_token_ids_through_its_bert() {
        let device = FlexDevice;
        TB::seed(&device, 4);
        let bert = cider_model::bert::BertConfig::new(200, 16, 1, 2, 32, 16);
        let mut network =
            NetworkConfig::new(16, 3, 2, 6, 6, 6, Alignment::Aligned).with_bert_encoder(bert);
        network.options.backbone = BackboneKind::Mult;
        network.options.mult.width = 4;
        network.options.mult.num_heads = 2;
        network.options.mult.levels = 1;
        network.options.mult.kernels = [3, 1, 1];
        let model = CiderConfig::new(network, 3)
            .init::<TB>(&device)
            .expect("valid");
        assert!(matches!(model.text_encoder(), TextEncoder::Bert(_)));
        assert_eq!(model.mcm.heads[0].weight.dims(), [24 + 3 * 8, 3]);
        let ids = |v: i64| Tensor::<TB, 2, Int>::from_ints([[101, v, v, 7, 102, 0]; 2], &device);
        let text = |v: i64| TextInput::Tokens {
            ids: ids(v),
            attention_mask: Tensor::from_floats([[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]; 2], &device),
            token_types: Tensor::zeros([2, 6], &device),
        };
        let normal = Distribution::Normal(0.0, 1.0);
        let view = ViewInput {
            text: text(5),
            audio: Tensor::random([2, 6, 3], normal, &device),
            vision: Tensor::random([2, 6, 2], normal, &device),
        };
        let masks = InputMasks {
            text: Tensor::from_floats([[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]; 2], &device),
            audio: Tensor::ones([2, 6], &device),
            vision: Tensor::ones([2, 6], &device),
            text_len: Tensor::<TB, 1, Int>::from_ints([5, 5], &device),
        };
        let confounders = Confounders {
            feats: Tensor::random([3, 2, 21], normal, &device),
            probs: Tensor::ones([2, 3], &device).div_scalar(3.0),
        };
        let (pred, cf_pred) = model
            .factual_and_counterfactual(view.clone(), text(103), &masks, &confounders)
            .expect("valid");
        let sums: Vec<f32> = pred
            .clone()
            .exp()
            .sum_dim(1)
            .into_data()
            .to_vec()
            .expect("f32");
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
        let diff: f32 = (pred - cf_pred).abs().max().into_scalar();
        assert!(diff > 0.0, "the counterfactual text changes the prediction");
        match model.complete(view, &masks, &confounders) {
            Err(ModelError::Config { message, .. }) => {
                assert!(message.contains("model.backbone = \"cider\""), "{message}")
            }
            other => panic!("expected a config error, got {:?}", other.map(|_| ())),
        }
    }

    /// [`Classifier::Linear`]: `log_softmax(W r + b)` with `C·(3D + 1)` more parameters; the
    /// confounders are not looked at (even mis-shaped ones).
    #[test]
    fn linear_head_replaces_the_mcm() {
        let device = FlexDevice;
        TB::seed(&device, 9);
        let network = NetworkConfig::new(16, 2, 3, 4, 4, 4, Alignment::Aligned).with_options(
            NetworkOptions {
                multimodal_layers: 1,
                num_heads: 2,
                ..NetworkOptions::default()
            },
        );
        let maci = CiderConfig::new(network.clone(), 3)
            .init::<TB>(&device)
            .expect("valid");
        let model = CiderConfig::new(network, 3)
            .with_classifier(Classifier::Linear)
            .init::<TB>(&device)
            .expect("valid");
        assert_eq!(model.num_params(), maci.num_params() + 3 * (96 + 1));
        let normal = Distribution::Normal(0.0, 1.0);
        let view = ViewInput {
            text: TextInput::Features(Tensor::random([2, 4, 16], normal, &device)),
            audio: Tensor::random([2, 4, 2], normal, &device),
            vision: Tensor::random([2, 4, 3], normal, &device),
        };
        let masks = InputMasks {
            text: Tensor::ones([2, 4], &device),
            audio: Tensor::ones([2, 4], &device),
            vision: Tensor::ones([2, 4], &device),
            text_len: Tensor::<TB, 1, Int>::from_ints([4, 4], &device),
        };
        let ignored = Confounders {
            feats: Tensor::zeros([1, 1, 1], &device),
            probs: Tensor::zeros([1, 1], &device),
        };
        let (out, _) = model.forward_view(view, &masks, &ignored).expect("valid");
        let head = model.linear_head.as_ref().expect("linear head");
        let expected = log_softmax(head.forward(out.joint_rep.clone()), 1);
        out.pred.clone().into_data().assert_approx_eq::<f32>(
            &expected.into_data(),
            burn::tensor::Tolerance::absolute(1e-6),
        );
        let sums: Vec<f32> = out.pred.exp().sum_dim(1).into_data().to_vec().expect("f32");
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    }

    /// Rewrites the golden `model.safetensors` with a renamed network key, a renamed BERT key
    /// and a transposed shape, and checks that one error lists all of them.
    #[test]
    fn tampered_state_dict_is_reported_in_full() {
        let bytes = std::fs::read(golden_dir().join("model.safetensors")).expect("golden file");
        let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        let mut header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..8 + header_len]).expect("json header");
        let rename = |h: &mut serde_json::Map<_, _>, from: &str, to: &str| {
            let v = h.remove(from).expect("key present");
            h.insert(to.to_string(), v);
        };
        rename(&mut header, "proj_a.weight", "proj_a.kernel");
        rename(
            &mut header,
            "text_model.model.embeddings.LayerNorm.bias",
            "text_model.model.embeddings.LayerNorm.beta",
        );
        header["recon_text.weight"]["shape"] = serde_json::json!([32, 64]);
        let new_header = serde_json::to_vec(&header).expect("json");
        let mut tampered = (new_header.len() as u64).to_le_bytes().to_vec();
        tampered.extend_from_slice(&new_header);
        tampered.extend_from_slice(&bytes[8 + header_len..]);
        let path =
            std::env::temp_dir().join(format!("cider-tampered-{}.safetensors", std::process::id()));
        std::fs::write(&path, tampered).expect("write temp file");

        let golden: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(golden_dir().join("golden.json")).expect("golden.json"),
        )
        .expect("json");
        let bert =
            cider_model::bert::BertConfig::from_json_str(&golden["bert"].to_string(), "bert")
                .expect("bert config");
        let network = NetworkConfig::new(64, 5, 20, 16, 40, 48, Alignment::Unaligned)
            .with_options(NetworkOptions {
                multimodal_layers: 2,
                ..NetworkOptions::default()
            })
            .with_bert_encoder(bert);
        let model = CiderConfig::new(network, 3)
            .init::<TB>(&FlexDevice)
            .expect("valid");
        let result = model.load_reference(&path, &FlexDevice);
        std::fs::remove_file(&path).expect("remove temp file");
        let Err(ModelError::Weights {
            missing,
            unexpected,
            misshaped,
            ..
        }) = result
        else {
            panic!("expected a weights error");
        };
        let mut missing = missing;
        missing.sort();
        let mut unexpected = unexpected;
        unexpected.sort();
        assert_eq!(
            missing,
            [
                "proj_a.weight",
                "text_model.model.embeddings.LayerNorm.bias"
            ]
        );
        assert_eq!(
            unexpected,
            [
                "proj_a.kernel",
                "text_model.model.embeddings.LayerNorm.beta"
            ]
        );
        assert_eq!(
            misshaped,
            ["recon_text.weight (file [32, 64], model expects [64, 32])"]
        );
    }
}
