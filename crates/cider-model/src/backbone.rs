//! Backbones: what produces the joint representation `r` that MACI's classifier reads
//! (docs/method.md §13.1).
//!
//! [`Backbone`] is the whole contract: one view in, `r` out, plus the text form the model reads.
//! The built-in backbones are CIDer's network and MulT, chosen by the `model.backbone` key
//! ([`BackboneKind`]) and held in [`Network`]; a user's own Burn module implements the trait in
//! a few lines and gets the causal classifier and counterfactual debiasing of `cider-maci`.

use burn::module::{Module, ModuleDisplay};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::mult::Mult;
use crate::network::{CiderNetwork, InputMasks, TextEncoder, ViewInput, check_view_shapes};
use crate::network_config::TextSource;

/// What one backbone pass gives MACI.
#[derive(Debug, Clone)]
pub struct BackboneOutput<B: Backend> {
    /// The joint representation `r` `[batch, R]`.
    pub joint_rep: Tensor<B, 2>,
    /// The backbone's own training loss for this pass (added to the task loss), if it has one.
    pub auxiliary_loss: Option<Tensor<B, 1>>,
}

impl<B: Backend> BackboneOutput<B> {
    /// An output with `r` `[batch, R]` and no auxiliary loss.
    pub fn new(joint_rep: Tensor<B, 2>) -> Self {
        Self {
            joint_rep,
            auxiliary_loss: None,
        }
    }

    /// Adds the backbone's auxiliary loss `[1]`.
    pub fn with_auxiliary_loss(self, loss: Tensor<B, 1>) -> Self {
        Self {
            auxiliary_loss: Some(loss),
            ..self
        }
    }
}

/// A model MACI can wrap: any Burn module (`#[derive(Module)]` gives the supertraits) that maps
/// one view of a batch to `r` `[batch, R]`.
pub trait Backbone<B: Backend>: Module<B> + ModuleDisplay {
    /// `R`, the width of the joint representation.
    fn representation_dim(&self) -> usize;

    /// Whether the text arrives as token ids (a BERT inside) or as feature rows
    /// `[batch, T_l, d_l]` (the default).
    fn text_source(&self) -> TextSource {
        TextSource::Precomputed
    }

    /// One pass over a view (the complete, missing or counterfactual one).
    ///
    /// # Shapes
    /// - view: text `[batch, T_l]` ids or `[batch, T_l, d_l]`, audio `[batch, T_a, d_a]`,
    ///   vision `[batch, T_v, d_v]`; masks: see [`InputMasks`]
    /// - output: `r` `[batch, R]`
    ///
    /// # Errors
    /// [`ModelError::Input`] when the view does not fit the model.
    fn forward_view(
        &self,
        view: ViewInput<B>,
        masks: &InputMasks<B>,
    ) -> Result<BackboneOutput<B>, ModelError>;
}

/// The built-in backbone a configuration asks for; written `cider` / `mult`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackboneKind {
    /// CIDer's network (WSAM, GRUs, MCT): docs/method.md §5.
    #[default]
    Cider,
    /// MulT as MMSA ships it: docs/method.md §13.2.
    Mult,
}

impl BackboneKind {
    /// `"cider"` or `"mult"`.
    pub fn name(self) -> &'static str {
        match self {
            BackboneKind::Cider => "cider",
            BackboneKind::Mult => "mult",
        }
    }
}

/// One of the built-in backbones.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Network<B: Backend> {
    /// CIDer's network.
    Cider(CiderNetwork<B>),
    /// MulT.
    Mult(Mult<B>),
}

impl<B: Backend> Network<B> {
    /// Which backbone this is.
    pub fn kind(&self) -> BackboneKind {
        match self {
            Network::Cider(_) => BackboneKind::Cider,
            Network::Mult(_) => BackboneKind::Mult,
        }
    }

    /// The text encoder in front of the backbone.
    pub fn text_encoder(&self) -> &TextEncoder<B> {
        match self {
            Network::Cider(n) => &n.text_encoder,
            Network::Mult(m) => &m.text_encoder,
        }
    }

    /// The same backbone with another text encoder (a pretrained BERT put in at the start of
    /// training).
    pub fn with_text_encoder(self, text_encoder: TextEncoder<B>) -> Self {
        match self {
            Network::Cider(n) => Network::Cider(CiderNetwork { text_encoder, ..n }),
            Network::Mult(m) => Network::Mult(Mult { text_encoder, ..m }),
        }
    }

    /// CIDer's network, for what only it has (MSSD's attention maps and decoders).
    ///
    /// # Errors
    /// [`ModelError::Config`] for MulT, naming `what` needs CIDer.
    pub fn cider(&self, what: &str) -> Result<&CiderNetwork<B>, ModelError> {
        match self {
            Network::Cider(n) => Ok(n),
            Network::Mult(_) => Err(ModelError::Config {
                source_name: "model".into(),
                message: format!(
                    "{what} needs model.backbone = \"cider\" (this model is MulT, which has no \
                     composite attention or decoders)"
                ),
            }),
        }
    }
}

impl<B: Backend> Backbone<B> for CiderNetwork<B> {
    fn representation_dim(&self) -> usize {
        self.residual.proj1.weight.dims()[1]
    }

    fn text_source(&self) -> TextSource {
        self.text_encoder.source()
    }

    fn forward_view(
        &self,
        view: ViewInput<B>,
        masks: &InputMasks<B>,
    ) -> Result<BackboneOutput<B>, ModelError> {
        Ok(BackboneOutput::new(self.forward(view, masks)?.joint_rep))
    }
}

impl<B: Backend> Backbone<B> for Mult<B> {
    fn representation_dim(&self) -> usize {
        Mult::representation_dim(self)
    }

    fn text_source(&self) -> TextSource {
        self.text_encoder.source()
    }

    fn forward_view(
        &self,
        view: ViewInput<B>,
        masks: &InputMasks<B>,
    ) -> Result<BackboneOutput<B>, ModelError> {
        check_view_shapes(&view, masks, self.input_dims)?;
        let text = self.text_encoder.encode(view.text)?; // [B, T_l, d_l]
        let out = self.forward_features(text, view.audio, view.vision);
        Ok(BackboneOutput::new(out.joint_rep))
    }
}

impl<B: Backend> Backbone<B> for Network<B> {
    fn representation_dim(&self) -> usize {
        match self {
            Network::Cider(n) => n.representation_dim(),
            Network::Mult(m) => Backbone::representation_dim(m),
        }
    }

    fn text_source(&self) -> TextSource {
        self.text_encoder().source()
    }

    fn forward_view(
        &self,
        view: ViewInput<B>,
        masks: &InputMasks<B>,
    ) -> Result<BackboneOutput<B>, ModelError> {
        match self {
            Network::Cider(n) => n.forward_view(view, masks),
            Network::Mult(m) => m.forward_view(view, masks),
        }
    }
}
