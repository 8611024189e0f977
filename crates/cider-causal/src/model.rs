//! The complete CIDer model: the network of `cider-model` (up to the joint representation `r`
//! and the decoders) followed by the MCM, with the forward passes of spec §5.10 and the import
//! of a reference `state_dict`.

use std::path::Path;

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use cider_model::ModelError;
use cider_model::config::NetworkConfig;
use cider_model::decoder::Reconstruction;
use cider_model::import::{is_bert_key, load_reference_network, load_reference_text_encoder};
use cider_model::model::{CiderNetwork, InputMasks, NetworkOutput, TextInput, ViewInput};
use cider_model::weights::{WeightFile, WeightLoader};

use crate::mcm::{ConfounderNorm, Mcm, McmConfig, load_reference_mcm};

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
}

impl CiderConfig {
    /// The MCM part of this configuration.
    pub fn mcm(&self) -> McmConfig {
        let n = &self.network;
        McmConfig::new(n.embed_dim, n.d_l, n.d_a, n.d_v, self.num_classes)
            .with_confounder_norm(self.confounder_norm)
    }

    /// Builds the model with the initialisation of spec §5.11.
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
        Ok(Cider {
            network: self.network.init(device)?,
            mcm: self.mcm().init(device),
        })
    }
}

/// The class confounders of a batch (spec §5.8, §7.2).
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
        self.check_confounders(confounders, out.joint_rep.dims()[0])?;
        let pred = self.mcm.forward(
            out.joint_rep.clone(),
            confounders.feats.clone(),
            confounders.probs.clone(),
        ); // [B, C]
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

    /// Loads a reference `state_dict` saved as safetensors (CIDer repo key names).
    ///
    /// With a precomputed-feature text encoder the file's BERT keys are not used.
    ///
    /// # Errors
    /// [`ModelError::WeightFile`] for an unreadable file; one [`ModelError::Weights`] listing
    /// every missing, unexpected and mis-shaped key of the network, the MCM and the BERT.
    pub fn load_reference(self, path: &Path, device: &B::Device) -> Result<Self, ModelError> {
        let file = WeightFile::read_safetensors(path)?;
        let mut loader = WeightLoader::new(&file, "", device);
        let network = load_reference_network(self.network, &mut loader);
        let mcm = load_reference_mcm(self.mcm, &mut loader);
        let rest = loader.finish(is_bert_key);
        let bert = load_reference_text_encoder(network, &file, device);
        match (bert, rest) {
            (Ok(network), Ok(())) => Ok(Self { network, mcm }),
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
