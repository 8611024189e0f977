//! Configuration of the CIDer network (docs/method.md §5, defaults from §9).
//!
//! [`NetworkConfig`] describes everything up to the joint representation `r` and the
//! reconstruction decoders; the causal classifier (MCM) is configured in `cider-causal`.

use burn::config::Config;

use crate::ModelError;
use crate::bert::BertConfig;

/// Whether audio and vision come word-aligned to the text (docs/method.md §2.3, §5.3).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// `T_a = T_v = T_l`: WSAM is skipped (`S_a = P_a`, `S_v = P_v`) but still holds parameters.
    Aligned,
    /// Audio and vision have their own lengths and are mapped onto `T_l` by WSAM.
    Unaligned,
}

/// The positional term added to the MCT input (docs/method.md §5.5, §11.1).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum PositionalMode {
    /// Reference behaviour (parity): `pe[b]`, the table row of the sample's index inside the
    /// batch, is added to every token of sample `b`; tokens carry no time position.
    BatchIndex,
    /// Corrected behaviour: `pe[t]` is added to token `t` of the fused sequence, `t < 3L`.
    TimeIndex,
}

/// Which text encoder produces `X_l (B, T_l, d_l)` (docs/method.md §5.1).
#[derive(Config, Debug)]
pub enum TextEncoderConfig {
    /// A BERT fine-tuned with the rest of the network (the reference setup).
    Bert(BertConfig),
    /// Pre-extracted text features (MMSA's `text` array, `[B, T_l, 768]`): BERT is skipped.
    Precomputed,
}

/// Hyper-parameters of the CIDer network (docs/method.md §5; defaults are the single-run set of §9.3).
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
    /// `D`: model width.
    #[config(default = 32)]
    pub embed_dim: usize,
    /// Number of MCT layers `n`.
    #[config(default = 3)]
    pub multimodal_layers: usize,
    /// `H`: heads of the MCT attention (`D` must be a multiple of `H`).
    #[config(default = 8)]
    pub num_heads: usize,
    /// Dropout on the attention probabilities of the full `LAV` MCT branch only.
    #[config(default = 0.0)]
    pub attn_dropout: f64,
    /// Dropout inside the residual projection that forms `r` (docs/method.md §5.7).
    #[config(default = 0.3)]
    pub out_dropout: f64,
    /// Dropout after the positional term of the MCT.
    #[config(default = 0.2)]
    pub embed_dropout: f64,
    /// Dropout after the ReLU of the MCT feed-forward block.
    #[config(default = 0.1)]
    pub relu_dropout: f64,
    /// Dropout on both residual branches of an MCT layer.
    #[config(default = 0.1)]
    pub res_dropout: f64,
    /// Positional term of the MCT (parity: [`PositionalMode::BatchIndex`]).
    #[config(default = "PositionalMode::BatchIndex")]
    pub positional: PositionalMode,
    /// Rows of the sinusoidal table (1024 in the reference).
    #[config(default = 1024)]
    pub max_positions: usize,
    /// The text encoder.
    #[config(default = "TextEncoderConfig::Precomputed")]
    pub text_encoder: TextEncoderConfig,
}

impl NetworkConfig {
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
            ("embed_dim", self.embed_dim),
            ("multimodal_layers", self.multimodal_layers),
            ("num_heads", self.num_heads),
            ("max_positions", self.max_positions),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return fail(format!("{name} must be at least 1"));
        }
        if !self.embed_dim.is_multiple_of(self.num_heads) {
            return fail(format!(
                "embed_dim {} is not a multiple of num_heads {}",
                self.embed_dim, self.num_heads
            ));
        }
        if self.alignment == Alignment::Aligned && (self.t_a != self.t_l || self.t_v != self.t_l) {
            return fail(format!(
                "aligned input needs t_a = t_v = t_l, got t_l {}, t_a {}, t_v {}",
                self.t_l, self.t_a, self.t_v
            ));
        }
        if self.positional == PositionalMode::TimeIndex && 3 * self.t_l > self.max_positions {
            return fail(format!(
                "positional TimeIndex needs 3·t_l = {} ≤ max_positions {}",
                3 * self.t_l,
                self.max_positions
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
            return fail(format!("{name} = {p} is not a probability in [0, 1)"));
        }
        if let TextEncoderConfig::Bert(bert) = &self.text_encoder
            && bert.hidden_size != self.d_l
        {
            return fail(format!(
                "BERT hidden size {} differs from d_l {}",
                bert.hidden_size, self.d_l
            ));
        }
        Ok(())
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
        let c = mosi_unaligned();
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
        assert!(matches!(c.text_encoder, TextEncoderConfig::Precomputed));
        assert!(c.validate().is_ok());
    }

    fn rejects(config: NetworkConfig, needle: &str) {
        match config.validate() {
            Err(ModelError::Config { message, .. }) => {
                assert!(message.contains(needle), "{message:?} lacks {needle:?}")
            }
            other => panic!("expected a config error mentioning {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn invalid_values_are_named() {
        rejects(mosi_unaligned().with_num_heads(5), "num_heads");
        rejects(
            mosi_unaligned().with_multimodal_layers(0),
            "multimodal_layers",
        );
        rejects(mosi_unaligned().with_out_dropout(1.0), "out_dropout");
        rejects(
            NetworkConfig::new(768, 5, 20, 50, 375, 500, Alignment::Aligned),
            "t_a = t_v = t_l",
        );
        rejects(
            mosi_unaligned()
                .with_positional(PositionalMode::TimeIndex)
                .with_max_positions(149),
            "TimeIndex",
        );
        assert!(
            mosi_unaligned()
                .with_positional(PositionalMode::TimeIndex)
                .with_max_positions(150)
                .validate()
                .is_ok()
        );
        let tiny_bert = BertConfig::new(100, 64, 1, 2, 128, 16);
        rejects(
            mosi_unaligned().with_text_encoder(TextEncoderConfig::Bert(tiny_bert)),
            "d_l",
        );
    }
}
