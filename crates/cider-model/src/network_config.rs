//! Configuration of the CIDer network (docs/method.md §5, defaults from §9).
//!
//! [`NetworkOptions`] holds what a user chooses (the `[model]` table of a training
//! configuration); [`NetworkConfig`] adds what the data decides (sizes, alignment) and the
//! architecture of a pretrained BERT. The causal classifier (MCM) is configured in
//! `cider-maci`.

use std::path::PathBuf;

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::backbone::BackboneKind;
use crate::bert::BertConfig;
use crate::mult::MultOptions;

/// Whether audio and vision come word-aligned to the text (docs/method.md §2.3, §5.3).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// `T_a = T_v = T_l`: WSAM is skipped (`S_a = P_a`, `S_v = P_v`) but still holds parameters.
    Aligned,
    /// Audio and vision have their own lengths and are mapped onto `T_l` by WSAM.
    Unaligned,
}

/// The positional term added to the MCT input (docs/method.md §5.5, §11.1); written
/// `batch-index` / `time-index` in configuration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PositionalMode {
    /// Reference behaviour (parity): `pe[b]`, the table row of the sample's index inside the
    /// batch, is added to every token of sample `b`; tokens carry no time position.
    #[default]
    BatchIndex,
    /// Corrected behaviour: `pe[t]` is added to token `t` of the fused sequence, `t < 3L`.
    TimeIndex,
}

/// Where `X_l (B, T_l, d_l)` comes from (docs/method.md §5.1); written `precomputed` /
/// `bert` in configuration files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextSource {
    /// Pre-extracted text features (MMSA's `text` array, `[B, T_l, 768]`): no BERT.
    #[default]
    Precomputed,
    /// A pretrained BERT fine-tuned with the rest of the network (the reference setup).
    Bert,
}

/// The network's hyper-parameters, the `[model]` table of a training configuration
/// (docs/method.md §5, defaults the single-run set of §9.3). Every key is optional and an
/// unknown key is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkOptions {
    /// `D`: model width (32).
    pub embed_dim: usize,
    /// Number of MCT layers `n` (3).
    pub multimodal_layers: usize,
    /// `H`: heads of the MCT attention (8); `D` must be a multiple of `H`.
    pub num_heads: usize,
    /// Dropout on the attention probabilities of the full `LAV` MCT branch only (0.0).
    pub attn_dropout: f64,
    /// Dropout inside the residual projection that forms `r` (0.3, docs/method.md §5.7).
    pub out_dropout: f64,
    /// Dropout after the positional term of the MCT (0.2).
    pub embed_dropout: f64,
    /// Dropout after the ReLU of the MCT feed-forward block (0.1).
    pub relu_dropout: f64,
    /// Dropout on both residual branches of an MCT layer (0.1).
    pub res_dropout: f64,
    /// Positional term of the MCT (parity: [`PositionalMode::BatchIndex`]).
    pub positional: PositionalMode,
    /// Rows of the sinusoidal table (1024 in the reference).
    pub max_positions: usize,
    /// The text encoder.
    pub text_encoder: TextSource,
    /// HuggingFace BERT folder (`config.json`, weights, tokenizer) for
    /// [`TextSource::Bert`]; read when training starts, not when a trained model is opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bert_dir: Option<PathBuf>,
    /// The network that produces `r`: CIDer's own or MulT (docs/method.md §13). With MulT the
    /// CIDer-specific keys above (`embed_dim` … `max_positions`) are not used.
    pub backbone: BackboneKind,
    /// MulT's hyper-parameters (the `[model.mult]` table), read with `backbone = "mult"`.
    pub mult: MultOptions,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        Self {
            embed_dim: 32,
            multimodal_layers: 3,
            num_heads: 8,
            attn_dropout: 0.0,
            out_dropout: 0.3,
            embed_dropout: 0.2,
            relu_dropout: 0.1,
            res_dropout: 0.1,
            positional: PositionalMode::BatchIndex,
            max_positions: 1024,
            text_encoder: TextSource::Precomputed,
            bert_dir: None,
            backbone: BackboneKind::Cider,
            mult: MultOptions::default(),
        }
    }
}

impl NetworkOptions {
    /// Checks the values that no network can run with, naming the key.
    ///
    /// # Errors
    /// `(key, message)` of the first offending value.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let sizes = [
            ("embed_dim", self.embed_dim),
            ("multimodal_layers", self.multimodal_layers),
            ("num_heads", self.num_heads),
            ("max_positions", self.max_positions),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err((name, "= 0, expected at least 1".into()));
        }
        if !self.embed_dim.is_multiple_of(self.num_heads) {
            return Err((
                "num_heads",
                format!(
                    "= {} does not divide embed_dim = {}",
                    self.num_heads, self.embed_dim
                ),
            ));
        }
        let dropouts = [
            ("attn_dropout", self.attn_dropout),
            ("out_dropout", self.out_dropout),
            ("embed_dropout", self.embed_dropout),
            ("relu_dropout", self.relu_dropout),
            ("res_dropout", self.res_dropout),
        ];
        if let Some((name, p)) = dropouts.iter().find(|(_, p)| !(0.0..1.0).contains(p)) {
            return Err((name, format!("= {p} is not a rate in [0, 1)")));
        }
        match self.backbone {
            BackboneKind::Cider => Ok(()),
            BackboneKind::Mult => self.mult.check(),
        }
    }
}

/// The whole configuration of a CIDer network: the data's sizes, the [`NetworkOptions`] and,
/// for [`TextSource::Bert`], the BERT architecture (written into a trained model's
/// `model.json`, so opening it needs no BERT folder).
#[derive(Config, Debug)]
pub struct NetworkConfig {
    /// `d_l`: width of the text features (768 for BERT-base; the BERT hidden size).
    pub d_l: usize,
    /// `d_a`: raw audio feature size.
    pub d_a: usize,
    /// `d_v`: raw vision feature size.
    pub d_v: usize,
    /// `T_l = L`: text length, also the token count of every modality inside the MCT.
    pub t_l: usize,
    /// `T_a`: audio length (equal to `T_l` when aligned).
    pub t_a: usize,
    /// `T_v`: vision length (equal to `T_l` when aligned).
    pub t_v: usize,
    /// Aligned or unaligned input (decides whether WSAM runs).
    pub alignment: Alignment,
    /// The hyper-parameters.
    #[config(default = "NetworkOptions::default()")]
    pub options: NetworkOptions,
    /// The BERT architecture, present exactly when `options.text_encoder` is
    /// [`TextSource::Bert`].
    pub bert: Option<BertConfig>,
}

impl NetworkConfig {
    /// The same configuration with a BERT text encoder of architecture `bert`.
    pub fn with_bert_encoder(mut self, bert: BertConfig) -> Self {
        self.options.text_encoder = TextSource::Bert;
        self.d_l = bert.hidden_size;
        self.bert = Some(bert);
        self
    }

    /// Checks the values that the network cannot run with.
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the offending field.
    pub fn validate(&self) -> Result<(), ModelError> {
        let fail = |message: String| {
            Err(ModelError::Config {
                source_name: "NetworkConfig".into(),
                message,
            })
        };
        let sizes = [
            ("d_l", self.d_l),
            ("d_a", self.d_a),
            ("d_v", self.d_v),
            ("t_l", self.t_l),
            ("t_a", self.t_a),
            ("t_v", self.t_v),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return fail(format!("{name} must be at least 1"));
        }
        if let Err((key, message)) = self.options.check() {
            return fail(format!("{key} {message}"));
        }
        let o = &self.options;
        if self.alignment == Alignment::Aligned && (self.t_a != self.t_l || self.t_v != self.t_l) {
            return fail(format!(
                "aligned input needs t_a = t_v = t_l, got t_l {}, t_a {}, t_v {}",
                self.t_l, self.t_a, self.t_v
            ));
        }
        if o.positional == PositionalMode::TimeIndex && 3 * self.t_l > o.max_positions {
            return fail(format!(
                "positional time-index needs 3·t_l = {} ≤ max_positions {}",
                3 * self.t_l,
                o.max_positions
            ));
        }
        match (o.text_encoder, &self.bert) {
            (TextSource::Bert, Some(bert)) if bert.hidden_size != self.d_l => fail(format!(
                "BERT hidden size {} differs from d_l {}",
                bert.hidden_size, self.d_l
            )),
            (TextSource::Bert, None) => {
                fail("text_encoder bert needs the BERT architecture (`bert`)".into())
            }
            (TextSource::Precomputed, Some(_)) => {
                fail("text_encoder precomputed takes no BERT architecture (`bert`)".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mosi_unaligned() -> NetworkConfig {
        NetworkConfig::new(768, 5, 20, 50, 375, 500, Alignment::Unaligned)
    }

    #[test]
    fn defaults_are_the_single_run_set() {
        let config = mosi_unaligned();
        let c = &config.options;
        assert_eq!((c.embed_dim, c.multimodal_layers, c.num_heads), (32, 3, 8));
        assert_eq!(
            [
                c.attn_dropout,
                c.out_dropout,
                c.embed_dropout,
                c.relu_dropout,
                c.res_dropout
            ],
            [0.0, 0.3, 0.2, 0.1, 0.1]
        );
        assert_eq!(c.positional, PositionalMode::BatchIndex);
        assert_eq!(c.max_positions, 1024);
        assert_eq!(c.text_encoder, TextSource::Precomputed);
        assert!(config.bert.is_none());
        assert!(config.validate().is_ok());
    }

    fn rejects(config: NetworkConfig, needle: &str) {
        match config.validate() {
            Err(ModelError::Config { message, .. }) => {
                assert!(message.contains(needle), "{message:?} lacks {needle:?}")
            }
            other => panic!("expected a config error mentioning {needle:?}, got {other:?}"),
        }
    }

    fn with(change: impl FnOnce(&mut NetworkOptions)) -> NetworkConfig {
        let mut options = NetworkOptions::default();
        change(&mut options);
        mosi_unaligned().with_options(options)
    }

    #[test]
    fn invalid_values_are_named() {
        rejects(with(|o| o.num_heads = 5), "num_heads");
        rejects(with(|o| o.multimodal_layers = 0), "multimodal_layers");
        rejects(with(|o| o.out_dropout = 1.0), "out_dropout");
        rejects(
            NetworkConfig::new(768, 5, 20, 50, 375, 500, Alignment::Aligned),
            "t_a = t_v = t_l",
        );
        let time_index = |rows| {
            with(|o| {
                o.positional = PositionalMode::TimeIndex;
                o.max_positions = rows;
            })
        };
        rejects(time_index(149), "time-index");
        assert!(time_index(150).validate().is_ok());
        let tiny_bert = BertConfig::new(100, 64, 1, 2, 128, 16);
        let mut bert_run = mosi_unaligned().with_bert_encoder(tiny_bert.clone());
        assert_eq!(bert_run.d_l, 64);
        assert!(bert_run.validate().is_ok());
        bert_run.d_l = 768;
        rejects(bert_run, "d_l");
        rejects(
            with(|o| o.text_encoder = TextSource::Bert),
            "BERT architecture",
        );
        rejects(mosi_unaligned().with_bert(Some(tiny_bert)), "precomputed");
    }

    /// `[model]` keys: the documented names, defaults for absent keys, unknown keys refused.
    #[test]
    fn options_read_from_toml_names() {
        let options: NetworkOptions = serde_json::from_value(serde_json::json!({
            "embed_dim": 16, "positional": "time-index", "text_encoder": "bert", "bert_dir": "b"
        }))
        .unwrap();
        assert_eq!(options.embed_dim, 16);
        assert_eq!(options.positional, PositionalMode::TimeIndex);
        assert_eq!(options.text_encoder, TextSource::Bert);
        assert_eq!(options.bert_dir, Some(PathBuf::from("b")));
        assert_eq!(options.num_heads, 8);
        let typo = serde_json::from_value::<NetworkOptions>(serde_json::json!({"embed_dims": 16}));
        assert!(typo.unwrap_err().to_string().contains("embed_dims"));
    }
}
