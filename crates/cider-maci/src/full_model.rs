//! The complete CIDer model: the network of `cider-model` (up to the joint representation `r`
//! and the decoders) followed by the MCM, with the forward passes of docs/method.md §5.10 and the import
//! of a reference `state_dict`.

use std::path::Path;

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use cider_model::ModelError;
use cider_model::decoder::Reconstruction;
use cider_model::import::{is_bert_key, load_reference_network, load_reference_text_encoder};
use cider_model::network::{CiderNetwork, InputMasks, NetworkOutput, TextInput, ViewInput};
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
    /// The ablation without MACI: `log_softmax(W r + b)`, `W: Linear(3D → C)`; the confounders
    /// are ignored and inference uses τ = 0. The MCM is still built (so every configuration has
    /// the same modules) but receives no gradient.
    Linear,
}

/// Configuration of the complete model.
#[derive(Config, Debug)]
pub struct CiderConfig {
    /// The network up to `r` and the decoders.
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
    /// The MCM part of this configuration.
    pub fn mcm(&self) -> McmConfig {
        let n = &self.network;
        McmConfig::new(n.options.embed_dim, n.d_l, n.d_a, n.d_v, self.num_classes)
            .with_confounder_norm(self.confounder_norm)
    }

    /// Builds the model with the initialisation of docs/method.md §5.11.
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
        let linear_head = (self.classifier == Classifier::Linear).then(|| {
            LinearConfig::new(3 * self.network.options.embed_dim, self.num_classes).init(device)
        });
        Ok(Cider {
            network: self.network.init(device)?,
            mcm: self.mcm().init(device),
            linear_head,
        })
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

/// CIDer: network + MCM.
#[derive(Module, Debug)]
pub struct Cider<B: Backend> {
    /// Everything up to `r`, plus the decoders.
    pub network: CiderNetwork<B>,
    /// The causal classifier.
    pub mcm: Mcm<B>,
    /// The ablation's linear head `Linear(3D → C)` ([`Classifier::Linear`]); when present it
    /// replaces the MCM.
    pub linear_head: Option<Linear<B>>,
}

impl<B: Backend> Cider<B> {
    /// One view through the network and the MCM; also returns the network output.
    ///
    /// # Errors
    /// [`ModelError::Input`] for inputs that do not fit the configuration.
    pub fn forward_view(
        &self,
        view: ViewInput<B>,
        masks: &InputMasks<B>,
        confounders: &Confounders<B>,
    ) -> Result<(ViewOutput<B>, NetworkOutput<B>), ModelError> {
        let out = self.network.forward(view, masks)?;
        let pred = match &self.linear_head {
            Some(head) => log_softmax(head.forward(out.joint_rep.clone()), 1), // [B, C]
            None => {
                self.check_confounders(confounders, out.joint_rep.dims()[0])?;
                self.mcm.forward(
                    out.joint_rep.clone(),
                    confounders.feats.clone(),
                    confounders.probs.clone(),
                ) // [B, C]
            }
        };
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
            recon: self.network.reconstruct(&out.fused),
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
        let counterfactual = ViewInput {
            text: counterfactual_text,
            audio: factual.audio.clone(),
            vision: factual.vision.clone(),
        };
        let (factual, _) = self.forward_view(factual, masks, confounders)?;
        let (counterfactual, _) = self.forward_view(counterfactual, masks, confounders)?;
        Ok(TestOutput {
            factual,
            counterfactual,
        })
    }

    /// Loads a reference `state_dict` (CIDer repo key names) from a `.safetensors` file or a
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
        let network = load_reference_network(self.network, &mut loader);
        let mcm = load_reference_mcm(self.mcm, &mut loader);
        let rest = loader.finish(is_bert_key);
        let bert = load_reference_text_encoder(network, file, device);
        match (bert, rest) {
            (Ok(network), Ok(())) => Ok(Self {
                network,
                mcm,
                linear_head: self.linear_head,
            }),
            (Ok(_), Err(e)) | (Err(e), Ok(())) => Err(e),
            (Err(a), Err(b)) => Err(merge_weight_errors(a, b)),
        }
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
        for grad in [
            grad_of(&model.network.wsam_a.in_proj.weight),
            grad_of(&model.network.mct.layers[0].self_attn.in_proj.weight),
            grad_of(&model.mcm.phi_l.layers[0].weight),
            grad_of(&model.network.proj_l.linear.weight),
        ] {
            assert!(grad.iter().all(|g| g.is_finite()), "{grad:?}");
            assert!(grad.iter().any(|g| *g != 0.0));
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
