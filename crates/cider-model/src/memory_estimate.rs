//! A rough memory estimate of a network configuration, checked before the network is built, so
//! that a width or a table too large for the machine is refused with one line instead of an
//! allocation abort.
//!
//! The estimate counts `f32` values (4 bytes), with `D` = `embed_dim`, `n` =
//! `multimodal_layers`, `H` = `num_heads`, `L` = `T_l`, `F = d_l + d_a + d_v`, `C` classes and
//! batch size `B` (docs/method.md §5):
//!
//! ```text
//! parameters  P = 32·D²·n            (MCT layer: attention 20·D², feed-forward 8·D², rounded up)
//!               + 24·D²              (three GRUs)
//!               + 4·D·F + 4·C·(F + D) (projections, decoders, pooling, MCM)
//!               + max_positions·D    (sinusoidal table)
//!               + BERT (vocab·h + max_position_embeddings·h + layers·12·h²)
//! activations A = B·n·(16·3L·D + 2·H·(3L)²)   (per MCT layer: its tensors and attention scores)
//!               + B·8·(T_l + T_a + T_v)·D + 2·B·(T_l·d_l + T_a·d_a + T_v·d_v)
//!               + BERT: B·layers·(16·L·h + 2·heads·L²)
//! training    4·(4·P + 2·A) bytes   (weights, gradients, two Adam moments; two MSSD passes)
//! ```
//!
//! The limit is the machine's physical memory (`MemTotal` of `/proc/meminfo`, 64 GiB where it
//! cannot be read), or `CIDER_MAX_MEMORY_GIB` when that environment variable is set.

use crate::ModelError;
use crate::backbone::BackboneKind;
use crate::network_config::NetworkConfig;

/// The environment variable that sets the memory limit in GiB.
pub const MAX_MEMORY_ENV: &str = "CIDER_MAX_MEMORY_GIB";

const GIB: f64 = (1u64 << 30) as f64;

/// The estimated memory of a network, in bytes, and the key that contributes most.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryEstimate {
    /// Number of parameters `P`.
    pub parameters: f64,
    /// Activation values `A` of one batch.
    pub activations: f64,
    /// Bytes of a training step: `4·(4·P + 2·A)`.
    pub bytes: f64,
    /// The configuration key whose term is largest (`model.embed_dim`, `model.max_positions`,
    /// `model.text_encoder` or `batch_size`).
    pub largest: &'static str,
}

impl MemoryEstimate {
    /// The estimate of `network` with `num_classes` classes and batches of `batch`.
    pub fn of(network: &NetworkConfig, num_classes: usize, batch: usize) -> Self {
        let o = &network.options;
        let f = |v: usize| v as f64;
        let (d, n, h) = (f(o.embed_dim), f(o.multimodal_layers), f(o.num_heads));
        let (t_l, t_a, t_v) = (f(network.t_l), f(network.t_a), f(network.t_v));
        let features = f(network.d_l + network.d_a + network.d_v);
        let b = f(batch.max(1));
        let (bert_params, bert_acts) = network.bert.as_ref().map_or((0.0, 0.0), |bert| {
            let hid = f(bert.hidden_size);
            let layers = f(bert.num_hidden_layers);
            let params = (f(bert.vocab_size) + f(bert.max_position_embeddings)) * hid
                + layers * 12.0 * hid * hid;
            let heads = f(bert.num_attention_heads);
            (
                params,
                b * layers * (16.0 * t_l * hid + 2.0 * heads * t_l * t_l),
            )
        });
        if o.backbone == BackboneKind::Mult {
            return Self::of_mult(network, b, (bert_params, bert_acts));
        }
        let layer_params = 32.0 * d * d * n + 24.0 * d * d;
        let table = f(o.max_positions) * d;
        let parameters = layer_params
            + 4.0 * d * features
            + 4.0 * f(num_classes) * (features + d)
            + table
            + bert_params;
        let fused = 3.0 * t_l;
        let mct_acts = b * n * (16.0 * fused * d + 2.0 * h * fused * fused);
        let activations = mct_acts
            + b * 8.0 * (t_l + t_a + t_v) * d
            + 2.0 * b * (t_l * f(network.d_l) + t_a * f(network.d_a) + t_v * f(network.d_v))
            + bert_acts;
        let terms = [
            ("model.embed_dim", 4.0 * layer_params),
            ("model.max_positions", 4.0 * table),
            ("model.text_encoder", 4.0 * bert_params + 2.0 * bert_acts),
            ("batch_size", 2.0 * mct_acts),
        ];
        Self::from_terms(parameters, activations, &terms)
    }

    /// The estimate of a MulT backbone (docs/method.md §13.2), `E` = `mult.width`, `k` the
    /// kernels, `T' = T − k + 1`:
    /// - parameters `E·Σ d_m·k_m + (72·levels + 144·max(levels, 3) + 72)·E²`;
    /// - activations, per target `x` and source `y`, `B·levels·(16·T'_x·E + 2·H·T'_x·T'_y)`,
    ///   and per memory `B·max(levels, 3)·(32·T'_x·E + 2·H·T'_x²)`.
    fn of_mult(network: &NetworkConfig, b: f64, (bert_params, bert_acts): (f64, f64)) -> Self {
        let m = &network.options.mult;
        let f = |v: usize| v as f64;
        let (e, h) = (f(m.width), f(m.num_heads));
        let (levels, memory) = (f(m.levels), f(m.levels.max(3)));
        let dims = [network.d_l, network.d_a, network.d_v];
        let lengths = [network.t_l, network.t_a, network.t_v];
        let steps: Vec<f64> = lengths
            .iter()
            .zip(m.kernels)
            .map(|(&t, k)| f(t.saturating_sub(k) + 1))
            .collect();
        let projections: f64 = dims.iter().zip(m.kernels).map(|(&d, k)| e * f(d * k)).sum();
        let layer_params = (72.0 * levels + 144.0 * memory + 72.0) * e * e;
        let parameters = projections + layer_params + bert_params;
        let mut encoder_acts = 0.0;
        for (x, &t_x) in steps.iter().enumerate() {
            for (_, &t_y) in steps.iter().enumerate().filter(|&(y, _)| y != x) {
                encoder_acts += b * levels * (16.0 * t_x * e + 2.0 * h * t_x * t_y);
            }
            encoder_acts += b * memory * (32.0 * t_x * e + 2.0 * h * t_x * t_x);
        }
        let inputs: f64 = dims
            .iter()
            .zip(lengths)
            .map(|(&d, t)| 2.0 * b * f(t * d))
            .sum();
        let activations = encoder_acts + inputs + bert_acts;
        let terms = [
            ("model.mult.width", 4.0 * layer_params),
            ("model.text_encoder", 4.0 * bert_params + 2.0 * bert_acts),
            ("batch_size", 2.0 * encoder_acts),
        ];
        Self::from_terms(parameters, activations, &terms)
    }

    /// The estimate from its totals and the bytes each key contributes (`terms`, not empty).
    fn from_terms(parameters: f64, activations: f64, terms: &[(&'static str, f64)]) -> Self {
        let largest = terms
            .iter()
            .fold(terms[0], |best, t| if t.1 > best.1 { *t } else { best })
            .0;
        Self {
            parameters,
            activations,
            bytes: 4.0 * (4.0 * parameters + 2.0 * activations),
            largest,
        }
    }

    /// Refuses an estimate above `limit_gib`, naming `source` (a file or configuration).
    ///
    /// # Errors
    /// [`ModelError::TooLarge`] with the estimate, the limit and how to raise it.
    pub fn check(&self, source: &str, limit_gib: f64) -> Result<(), ModelError> {
        let gib = self.bytes / GIB;
        if gib.is_finite() && gib <= limit_gib {
            return Ok(());
        }
        Err(ModelError::TooLarge {
            source_name: source.to_string(),
            key: self.largest,
            estimate_gib: gib,
            parameters: self.parameters,
            limit_gib,
        })
    }
}

/// The memory limit in GiB: `CIDER_MAX_MEMORY_GIB` if set, else the machine's memory.
///
/// # Errors
/// [`ModelError::Config`] when the variable is not a positive number.
pub fn memory_limit_gib() -> Result<f64, ModelError> {
    if let Ok(text) = std::env::var(MAX_MEMORY_ENV) {
        return match text.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
            _ => Err(ModelError::Config {
                source_name: MAX_MEMORY_ENV.into(),
                message: format!("{text:?} is not a positive number of GiB"),
            }),
        };
    }
    Ok(physical_memory_gib().unwrap_or(64.0))
}

fn physical_memory_gib() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0 / GIB)
}

/// Checks that `network` with `num_classes` classes and batches of `batch` fits the memory
/// limit ([`memory_limit_gib`]), naming `source`.
///
/// # Errors
/// [`ModelError::TooLarge`], or a malformed `CIDER_MAX_MEMORY_GIB`.
pub fn check_memory(
    network: &NetworkConfig,
    num_classes: usize,
    batch: usize,
    source: &str,
) -> Result<(), ModelError> {
    MemoryEstimate::of(network, num_classes, batch).check(source, memory_limit_gib()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network_config::{Alignment, NetworkOptions};

    fn mosi(options: NetworkOptions) -> NetworkConfig {
        NetworkConfig::new(768, 5, 20, 50, 375, 500, Alignment::Unaligned).with_options(options)
    }

    #[test]
    fn the_default_model_is_small_and_huge_widths_or_tables_are_refused() {
        let default = MemoryEstimate::of(&mosi(NetworkOptions::default()), 3, 128);
        assert!(default.bytes / GIB < 4.0, "{}", default.bytes / GIB);
        assert!(default.check("run.toml", 16.0).is_ok());

        let wide = mosi(NetworkOptions {
            embed_dim: 65536,
            ..NetworkOptions::default()
        });
        let message = MemoryEstimate::of(&wide, 3, 128)
            .check("run.toml", 16.0)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("run.toml: `model.embed_dim`: the model would need about ")
                && message.ends_with(
                    "activations), above the limit of 16.0 GiB (set CIDER_MAX_MEMORY_GIB to raise it)"
                ),
            "{message}"
        );

        let table = mosi(NetworkOptions {
            max_positions: 100_000_000_000,
            ..NetworkOptions::default()
        });
        let estimate = MemoryEstimate::of(&table, 3, 128);
        assert_eq!(estimate.largest, "model.max_positions");
        assert!(estimate.parameters >= 32e11);
        assert!(estimate.check("model.json", 16.0).is_err());
    }
}
