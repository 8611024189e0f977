//! The training configuration (docs/method.md §6.3, §9): one TOML file, every key optional, defaults from
//! docs/method.md §9.1 and the single-run set of §9.3 (MOSI, D 32, 3 MCT layers, 8 heads, λ_rep 0.5,
//! λ_attn 0.1, λ_rec 0.6, batch 128, lr 1e-3, 200 epochs, patience 10, seed 1111).
//!
//! ```toml
//! out_dir = "runs/synthetic"
//! epochs = 20
//!
//! [data]
//! source = "synthetic"      # or: source = "file", path = "MOSI/aligned_50.pkl"
//! layout = "mosi-aligned"
//!
//! [model]
//! num_heads = 4
//! ```
//!
//! Unknown keys, wrong types and values out of range are refused with one line naming the file,
//! the key (or the line) and what was expected. `key=value` overrides (`model.num_heads=4`,
//! `data.layout=mosi-unaligned`) are applied on top of the file before it is checked.
//! `docs/configuration.md` lists every key.

use std::path::{Path, PathBuf};

use cider_data::DataError;
use cider_data::bias::{BiasRule, DEFAULT_BIAS_THRESH};
use cider_data::dataset::{Dataset, Dims, Task};
use cider_data::missing::TrainRng;
use cider_data::synth::{self, SynthConfig};
use cider_maci::counterfactual::TauSelection;
use cider_maci::full_model::{CiderConfig, Classifier};
use cider_maci::prototypes::TestPrototypes;
use cider_model::backbone::BackboneKind;
use cider_model::bert::BertConfig;
use cider_model::network_config::{
    Alignment, NetworkConfig, NetworkOptions, PositionalMode, TextSource,
};
use serde::{Deserialize, Serialize};

use crate::mssd::{Distillation, MssdConfig};
use crate::optim::CiderAdamConfig;

/// A configuration that cannot be read or used. Displayed as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Not TOML, an unknown key, or a value of the wrong type (`at` is `line L, column C` when
    /// known).
    #[error("{source_name}{at}: {message}")]
    Parse {
        /// What the value came from (a file name, or a description of the text).
        source_name: String,
        /// `line L, column C` when known, else empty.
        at: String,
        /// What is wrong, and what was expected.
        message: String,
    },

    /// A malformed `key=value` override.
    #[error("override `{text}`: {message}")]
    Override {
        /// The text as given.
        text: String,
        /// What is wrong, and what was expected.
        message: String,
    },

    /// A configuration that cannot be written as TOML (not expected for values that parsed).
    #[error("cannot write the configuration as TOML: {message}")]
    Serialize {
        /// What is wrong, and what was expected.
        message: String,
    },

    /// A well-typed value that cannot be used (rate outside [0, 1], zero batch size…).
    #[error("{source_name}: `{key}` {message}")]
    Invalid {
        /// What the value came from (a file name, or a description of the text).
        source_name: String,
        /// The key involved (a dotted path for configuration keys).
        key: String,
        /// What is wrong, and what was expected.
        message: String,
    },
}

/// Which split chooses the best epoch (docs/method.md §6.4, §11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Selection {
    /// Clean: the validation split's headline metric (MACI, missing rate 0).
    #[default]
    #[serde(rename = "valid")]
    Validation,
    /// The reference's first public commit: the *test* split's headline metric (leaks the test
    /// labels into model selection; for comparison only).
    #[serde(rename = "test-leak")]
    TestLeak,
}

/// The complete training configuration. Every field has a default (see [`Default`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Run directory: checkpoints, `best/`, `metrics.csv`, `metrics.json`, `config.toml`.
    pub out_dir: PathBuf,
    /// Seed of the initialisation, the shuffling, dropout and the training masks (1111).
    pub seed: u64,
    /// `binary` (3 classes) or `seven`.
    pub task: Task,
    /// Maximum number of epochs (200).
    pub epochs: usize,
    /// Early-stopping patience in epochs (10): reset on a strict improvement of the selection
    /// metric, decremented otherwise, training stops at 0.
    pub patience: usize,
    /// Batch size `B` of every split (128).
    pub batch_size: usize,
    /// Random-number path of the training masks: `fast` or `numpy_parity`.
    pub train_rng: TrainRng,
    /// Split whose headline metric picks the best epoch: `valid` or `test-leak`.
    pub selection: Selection,
    /// The dataset.
    pub data: DataConfig,
    /// The network's hyper-parameters and text encoder.
    pub model: NetworkOptions,
    /// The MSSD loss weights and switches.
    pub loss: MssdConfig,
    /// Adam with its parameter groups.
    pub optim: CiderAdamConfig,
    /// MACI: classifier, bias words, confounders, τ.
    pub maci: MaciConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            out_dir: PathBuf::from("runs/cider"),
            seed: 1111,
            task: Task::Binary,
            epochs: 200,
            patience: 10,
            batch_size: 128,
            train_rng: TrainRng::Fast,
            selection: Selection::Validation,
            data: DataConfig::default(),
            model: NetworkOptions::default(),
            loss: MssdConfig::default(),
            optim: CiderAdamConfig::default(),
            maci: MaciConfig::default(),
        }
    }
}

/// Where the data comes from: `source = "synthetic"` (the default when `source` is absent) or
/// `source = "file"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase", deny_unknown_fields)]
#[serde(remote = "Self")]
pub enum DataConfig {
    /// The built-in synthetic dataset (always with its 768-d precomputed text features, which
    /// the text part of the prototypes needs).
    Synthetic(SynthConfig),
    /// An MMSA pickle (`aligned_50.pkl`, `unaligned_50.pkl`) or a CIDer joblib dump.
    File(FileData),
}

impl Serialize for DataConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        DataConfig::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for DataConfig {
    /// The tagged form, with `source = "synthetic"` filled in when the table has no `source`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut table = toml::Table::deserialize(deserializer)?;
        table
            .entry("source")
            .or_insert_with(|| toml::Value::String("synthetic".into()));
        DataConfig::deserialize(toml::Value::Table(table))
            .map_err(|e| serde::de::Error::custom(e.message()))
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig::Synthetic(SynthConfig::default())
    }
}

/// `[data]` with `source = "file"`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileData {
    /// The dataset file (relative paths are relative to the working directory).
    pub path: PathBuf,
}

impl DataConfig {
    /// Reads or generates the dataset.
    pub fn load(&self) -> Result<Dataset, DataError> {
        match self {
            DataConfig::Synthetic(s) => synth::generate(&SynthConfig {
                text_features: true,
                ..s.clone()
            }),
            DataConfig::File(f) => Dataset::from_path(&f.path),
        }
    }
}

/// `[maci]`: the classifier and the inference-time debiasing (docs/method.md §4, §7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaciConfig {
    /// `maci` (the MCM with counterfactual debiasing) or `linear` (ablation: a linear head on
    /// `r`, τ = 0).
    pub classifier: Classifier,
    /// Number of bias words kept (100).
    pub bias_thresh: usize,
    /// Binary-task tokens never seen with a polar label: `clean` (skip) or `parity`.
    pub bias_rule: BiasRule,
    /// Valid/test prototypes: `clean` (mean of the training prototypes) or `parity`.
    pub test_prototypes: TestPrototypes,
    /// How τ is chosen for the selection metric: `validation` or `oracle`.
    pub tau_selection: TauSelection,
}

impl Default for MaciConfig {
    fn default() -> Self {
        Self {
            classifier: Classifier::Maci,
            bias_thresh: DEFAULT_BIAS_THRESH,
            bias_rule: BiasRule::Clean,
            test_prototypes: TestPrototypes::Clean,
            tau_selection: TauSelection::Validation,
        }
    }
}

/// Keys that may differ between a run and its resumption.
const RESUMABLE_KEYS: [&str; 3] = ["out_dir", "epochs", "patience"];

impl TrainConfig {
    /// A small run on the built-in synthetic data that trains in about a minute on two CPU
    /// cores: 3 epochs of batch 32 over 300 / 100 / 150 samples of the IID variant (the test
    /// split is distributed like training, so the accuracies show the missing-rate effect
    /// alone), the defaults otherwise; the run is written to `out_dir`.
    pub fn quick(out_dir: impl Into<PathBuf>) -> Self {
        Self {
            out_dir: out_dir.into(),
            epochs: 3,
            batch_size: 32,
            data: DataConfig::Synthetic(SynthConfig {
                n_train: 300,
                n_valid: 100,
                n_test: 150,
                variant: cider_data::synth::Variant::Iid,
                ..SynthConfig::default()
            }),
            ..Self::default()
        }
    }

    /// Reads a TOML file and applies `overrides` (`key=value`, dotted keys).
    pub fn from_file(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string(), overrides)
    }

    /// Parses TOML text (`source_name` names it in errors), applies `overrides`, checks values.
    pub fn from_toml_str(
        text: &str,
        source_name: &str,
        overrides: &[String],
    ) -> Result<Self, ConfigError> {
        let parse_error = |e: toml::de::Error, name: &str| ConfigError::Parse {
            source_name: name.to_string(),
            at: e
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or_default(),
            message: match e.span().and_then(|span| key_at(text, span.start)) {
                Some(key) => format!("`{key}`: {}", one_line(e.message())),
                None => one_line(e.message()),
            },
        };
        let config: TrainConfig = if overrides.is_empty() {
            toml::from_str(text).map_err(|e| parse_error(e, source_name))?
        } else {
            let mut table: toml::Table =
                toml::from_str(text).map_err(|e| parse_error(e, source_name))?;
            for item in overrides {
                apply_override(&mut table, item)?;
            }
            let with = format!("{source_name} with {}", overrides.join(" "));
            TrainConfig::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
                source_name: with,
                at: String::new(),
                message: one_line(e.message()),
            })?
        };
        config.validate(source_name)?;
        Ok(config)
    }

    /// The configuration as TOML (what `config.toml` of a run holds).
    pub fn to_toml_string(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Serialize {
            message: e.to_string(),
        })
    }

    /// The configuration as a TOML value (tables for the sections).
    fn to_value(&self) -> Result<toml::Value, ConfigError> {
        toml::Value::try_from(self).map_err(|e| ConfigError::Serialize {
            message: e.to_string(),
        })
    }

    /// Checks the values serde cannot: ranges, sizes, and combinations.
    pub fn validate(&self, source_name: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| {
            Err(ConfigError::Invalid {
                source_name: source_name.to_string(),
                key: key.to_string(),
                message,
            })
        };
        let positive = [
            ("epochs", self.epochs),
            ("patience", self.patience),
            ("batch_size", self.batch_size),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return invalid(key, "= 0, expected at least 1".into());
        }
        if self.out_dir.as_os_str().is_empty() {
            return invalid("out_dir", "is empty, expected a run directory".into());
        }
        if let DataConfig::File(file) = &self.data
            && file.path.as_os_str().is_empty()
        {
            return invalid(
                "data.path",
                "is required when data.source = \"file\" (an MMSA pickle or a CIDer joblib \
                 dump)"
                    .into(),
            );
        }
        if let Err((key, message)) = self.model.check() {
            return invalid(&format!("model.{key}"), message);
        }
        let m = &self.model;
        let non_negative = [
            ("loss.lambda_rep", self.loss.lambda_rep),
            ("loss.lambda_attn", self.loss.lambda_attn),
            ("loss.lambda_rec", self.loss.lambda_rec),
            ("optim.wd_bert", self.optim.wd_bert),
        ];
        if let Some((key, v)) = non_negative
            .iter()
            .find(|(_, v)| !(v.is_finite() && *v >= 0.0))
        {
            return invalid(key, format!("= {v}, expected a finite value ≥ 0"));
        }
        let rates = [
            ("optim.lr", self.optim.lr),
            ("optim.lr_bert", self.optim.lr_bert),
            ("optim.epsilon", self.optim.epsilon),
        ];
        if let Some((key, v)) = rates.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            return invalid(key, format!("= {v}, expected a finite value > 0"));
        }
        let betas = [
            ("optim.beta_1", self.optim.beta_1),
            ("optim.beta_2", self.optim.beta_2),
        ];
        if let Some((key, v)) = betas.iter().find(|(_, v)| !(0.0..1.0).contains(v)) {
            return invalid(key, format!("= {v} is not in [0, 1)"));
        }
        if m.text_encoder == TextSource::Bert && m.bert_dir.is_none() {
            return invalid(
                "model.bert_dir",
                "is required when model.text_encoder = \"bert\" (a HuggingFace BERT folder)".into(),
            );
        }
        if m.positional == PositionalMode::TimeIndex && m.max_positions < 150 {
            // 3·T_l with the MMSA text length 50; the exact check runs once T_l is known.
            return invalid(
                "model.max_positions",
                format!(
                    "= {} is too short for time-index positions (3·T_l)",
                    m.max_positions
                ),
            );
        }
        if let DataConfig::Synthetic(s) = &self.data {
            let biases = [
                ("data.label_bias", s.label_bias),
                ("data.language_bias", s.language_bias),
            ];
            if let Some((key, v)) = biases.iter().find(|(_, v)| !(0.0..=1.0).contains(v)) {
                return invalid(key, format!("= {v} is not a rate in [0, 1]"));
            }
            if let Err(DataError::Invalid { message, .. }) = s.validate() {
                return invalid("data", message);
            }
        }
        Ok(())
    }

    /// The training step this configuration runs: `[loss]` as written, except that MSSD is
    /// CIDer's own and a MulT backbone always trains with the single missing-view pass
    /// (`loss.distillation` is not used then; docs/method.md §13.3).
    pub fn effective_step(&self) -> MssdConfig {
        match self.model.backbone {
            BackboneKind::Cider => self.loss.clone(),
            BackboneKind::Mult => MssdConfig {
                distillation: Distillation::None,
                ..self.loss.clone()
            },
        }
    }

    /// The model configuration for a dataset of dimensions `dims`; `bert` is the pretrained
    /// BERT's configuration when `model.text_encoder = "bert"`.
    pub fn cider_config(&self, dims: Dims, aligned: bool, bert: Option<BertConfig>) -> CiderConfig {
        let alignment = if aligned {
            Alignment::Aligned
        } else {
            Alignment::Unaligned
        };
        let network = NetworkConfig::new(
            dims.d_l, dims.d_a, dims.d_v, dims.t_l, dims.t_a, dims.t_v, alignment,
        )
        .with_options(self.model.clone());
        let network = match bert {
            Some(bert) => network.with_bert_encoder(bert),
            None => network,
        };
        CiderConfig::new(network, self.task.num_classes()).with_classifier(self.maci.classifier)
    }

    /// The first key (dotted path) where `other` differs from `self`, ignoring the keys that
    /// may change when a run is resumed (`out_dir`, `epochs`, `patience`); `None` if they agree.
    ///
    /// # Errors
    /// [`ConfigError::Serialize`] if either configuration cannot be written as TOML.
    pub fn first_difference(&self, other: &TrainConfig) -> Result<Option<String>, ConfigError> {
        let strip = |c: &TrainConfig| {
            let mut value = c.to_value()?;
            if let toml::Value::Table(table) = &mut value {
                for key in RESUMABLE_KEYS {
                    table.remove(key);
                }
            }
            Ok::<_, ConfigError>(value)
        };
        Ok(first_difference(&strip(self)?, &strip(other)?, ""))
    }

    /// The value at a dotted key, as TOML (`8`, `"mosi-aligned"`), or `absent`.
    pub fn value_at(&self, key: &str) -> String {
        let mut value = self.to_value().ok();
        for part in key.split('.') {
            value = value.and_then(|v| v.get(part).cloned());
        }
        value.map_or_else(|| "absent".to_string(), |v| v.to_string())
    }
}

/// The dotted path of the first difference between two TOML values.
fn first_difference(a: &toml::Value, b: &toml::Value, path: &str) -> Option<String> {
    match (a, b) {
        (toml::Value::Table(a), toml::Value::Table(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|key| {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => first_difference(x, y, &sub),
                    _ => Some(sub),
                }
            })
        }
        _ => (a != b).then(|| path.to_string()),
    }
}

/// `line L, column C` (1-based) of byte `offset` in `text`, with a leading space.
fn line_column(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
    format!(" line {line}, column {column}")
}

/// The dotted key (`model.num_heads`) whose value starts at `offset`: the `key =` before it
/// on its line, under the last `[table]` header above; `None` when `offset` is not in a value.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let (key, _) = before[line_start..].split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() {
        return None;
    }
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.starts_with('['))
        .map(|line| line.trim_matches(|c| c == '[' || c == ']').trim());
    Some(match table {
        Some(table) if !table.is_empty() => format!("{table}.{key}"),
        _ => key.to_string(),
    })
}

/// Sets `key=value` in `table`: the key is dotted (`model.num_heads`), the value is read as a
/// TOML value (`4`, `0.5`, `true`, `"x"`) or, failing that, taken as a string
/// (`mosi-unaligned`, `runs/a`).
fn apply_override(table: &mut toml::Table, item: &str) -> Result<(), ConfigError> {
    let fail = |message: &str| ConfigError::Override {
        text: item.to_string(),
        message: message.to_string(),
    };
    let (key, raw) = item
        .split_once('=')
        .ok_or_else(|| fail("expected key=value"))?;
    let (key, raw) = (key.trim(), raw.trim());
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(fail("empty key"));
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let (last, parents) = parts.split_last().ok_or_else(|| fail("empty key"))?;
    let mut node = table;
    for part in parents {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        node = entry
            .as_table_mut()
            .ok_or_else(|| fail(&format!("`{part}` is not a table")))?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}

/// A parser's message on one line: `toml` puts what it expected on a line of its own.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mssd::Distillation;
    use crate::mssd::losses::ReconLoss;
    use cider_data::synth::{Layout, Variant};

    fn parse(text: &str) -> Result<TrainConfig, ConfigError> {
        TrainConfig::from_toml_str(text, "test.toml", &[])
    }

    fn error_line(text: &str) -> String {
        parse(text).expect_err("invalid config").to_string()
    }

    #[test]
    fn empty_file_gives_the_spec_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, TrainConfig::default());
        assert_eq!(
            (
                c.model.embed_dim,
                c.model.multimodal_layers,
                c.model.num_heads
            ),
            (32, 3, 8)
        );
        assert_eq!(
            [
                c.model.attn_dropout,
                c.model.out_dropout,
                c.model.embed_dropout,
                c.model.relu_dropout,
                c.model.res_dropout
            ],
            [0.0, 0.3, 0.2, 0.1, 0.1]
        );
        assert_eq!(
            (c.loss.lambda_rep, c.loss.lambda_attn, c.loss.lambda_rec),
            (0.5, 0.1, 0.6)
        );
        assert_eq!(
            (c.batch_size, c.epochs, c.patience, c.seed),
            (128, 200, 10, 1111)
        );
        assert_eq!(
            (c.optim.lr, c.optim.lr_bert, c.optim.wd_bert),
            (1e-3, 5e-5, 1e-3)
        );
        assert_eq!(c.maci.bias_thresh, 100);
        assert_eq!(c.selection, Selection::Validation);
        assert_eq!(c.loss.recon, ReconLoss::SmoothL1);
    }

    #[test]
    fn a_full_file_round_trips_through_toml() {
        let text = r#"
            out_dir = "runs/x"
            seed = 7
            task = "seven"
            epochs = 3
            selection = "test-leak"
            train_rng = "numpy_parity"
            [data]
            source = "synthetic"
            layout = "mosi-unaligned"
            variant = "iid"
            n_train = 40
            [model]
            num_heads = 4
            positional = "time-index"
            [loss]
            distillation = "none"
            recon = "mse"
            [maci]
            classifier = "linear"
            bias_rule = "parity"
            test_prototypes = "parity"
            tau_selection = "oracle"
        "#;
        let c = parse(text).unwrap();
        assert_eq!(c.task, Task::Seven);
        assert_eq!(c.selection, Selection::TestLeak);
        assert_eq!(c.train_rng, TrainRng::NumpyParity);
        let DataConfig::Synthetic(s) = &c.data else {
            panic!("synthetic source")
        };
        assert_eq!(
            (s.layout, s.variant, s.n_train, s.n_valid),
            (Layout::MosiUnaligned, Variant::Iid, 40, 150)
        );
        assert_eq!(c.model.num_heads, 4);
        assert_eq!(c.model.positional, PositionalMode::TimeIndex);
        assert_eq!(c.loss.distillation, Distillation::None);
        assert_eq!(c.maci.classifier, Classifier::Linear);
        assert_eq!(c.maci.tau_selection, TauSelection::Oracle);
        let again = parse(&c.to_toml_string().unwrap()).unwrap();
        assert_eq!(again, c);

        let untagged = parse("[data]\nlayout = \"mosei-aligned\"\n").unwrap();
        let DataConfig::Synthetic(s) = &untagged.data else {
            panic!("source defaults to synthetic")
        };
        assert_eq!(s.layout, Layout::MoseiAligned);

        let file = parse("[data]\nsource = \"file\"\npath = \"d/aligned_50.pkl\"\n").unwrap();
        assert_eq!(
            file.data,
            DataConfig::File(FileData {
                path: "d/aligned_50.pkl".into()
            })
        );
    }

    #[test]
    fn the_shipped_example_parses_to_the_defaults_but_two_keys() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/train_synthetic.toml");
        let c = TrainConfig::from_file(&path, &[]).unwrap();
        let expected = TrainConfig {
            out_dir: "runs/synthetic".into(),
            epochs: 20,
            ..TrainConfig::default()
        };
        assert_eq!(c, expected);
    }

    #[test]
    fn every_dataset_config_parses_to_the_reference_values_and_its_file() {
        // The data files need not exist: parsing and validation never open them.
        let catalog = cider_data::catalog::Catalog::builtin().unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
        for entry in &catalog.entries {
            let c = TrainConfig::from_file(&dir.join(&entry.config), &[]).unwrap();
            let expected = TrainConfig {
                out_dir: format!("runs/{}", entry.name).into(),
                task: entry.task.unwrap_or(Task::Binary),
                data: DataConfig::File(FileData {
                    path: Path::new("data").join(&entry.reference_path),
                }),
                ..TrainConfig::default()
            };
            assert_eq!(c, expected, "{}", entry.config);
        }
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let line = error_line("epochs = 3\nepoch = 4\n");
        assert!(
            line.starts_with("test.toml line 2, column 1: unknown field `epoch`"),
            "{line}"
        );
        let line = error_line("[model]\nheads = 4\n");
        assert!(line.contains("unknown field `heads`"), "{line}");
        let line = error_line("[data]\nsource = \"file\"\nlayout = \"mosi-aligned\"\n");
        assert!(line.contains("unknown field `layout`"), "{line}");
        assert!(!line.contains('\n'), "one line: {line}");
    }

    #[test]
    fn wrong_types_and_values_are_refused() {
        let line = error_line("epochs = \"many\"\n");
        assert!(
            line.contains("line 1, column 10") && line.contains("expected usize"),
            "{line}"
        );
        let line = error_line("[loss]\nrecon = \"huber\"\n");
        assert!(
            line.contains("unknown variant `huber`, expected one of `smooth-l1`, `l1`, `mse`"),
            "{line}"
        );
        let line = error_line("[model]\npositional = \"sideways\"\n");
        assert!(line.contains("unknown variant `sideways`"), "{line}");
        assert!(!line.contains('\n'), "one line: {line}");
        assert_eq!(
            error_line("[model]\nout_dropout = 1.5\n"),
            "test.toml: `model.out_dropout` = 1.5 is not a rate in [0, 1)"
        );
        assert_eq!(
            error_line("[data]\nsource = \"synthetic\"\nlabel_bias = -0.1\n"),
            "test.toml: `data.label_bias` = -0.1 is not a rate in [0, 1]"
        );
        assert_eq!(
            error_line("batch_size = 0\n"),
            "test.toml: `batch_size` = 0, expected at least 1"
        );
        assert_eq!(
            error_line("[model]\nnum_heads = 5\n"),
            "test.toml: `model.num_heads` = 5 does not divide embed_dim = 32"
        );
        assert!(error_line("[optim]\nlr = 0\n").contains("`optim.lr`"));
        assert_eq!(
            error_line("[optim]\nbeta_2 = 1.0\n"),
            "test.toml: `optim.beta_2` = 1 is not in [0, 1)"
        );
        assert!(error_line("[optim]\nepsilon = -1e-8\n").contains("`optim.epsilon`"));
        assert!(error_line("[model]\ntext_encoder = \"bert\"\n").contains("`model.bert_dir`"));
        assert!(error_line("[data]\nsource = \"synthetic\"\nn_valid = 0\n").contains("n_valid"));
    }

    #[test]
    fn a_toml_syntax_error_is_one_line() {
        assert_eq!(
            error_line("epochs = [\n"),
            "test.toml line 2, column 1: invalid array, expected `]`"
        );
    }

    #[test]
    fn a_wrong_type_names_its_key() {
        assert_eq!(
            error_line("seed = \"many\"\n"),
            "test.toml line 1, column 8: `seed`: invalid type: string \"many\", expected u64"
        );
        assert_eq!(
            error_line("epochs = 2\n[model]\nnum_heads = 2.5\n"),
            "test.toml line 3, column 13: `model.num_heads`: invalid type: floating point \
             `2.5`, expected usize"
        );
    }

    #[test]
    fn a_config_that_would_train_nothing_or_nowhere_is_refused() {
        assert_eq!(
            error_line("patience = 0\n"),
            "test.toml: `patience` = 0, expected at least 1"
        );
        assert_eq!(
            error_line("out_dir = \"\"\n"),
            "test.toml: `out_dir` is empty, expected a run directory"
        );
        assert_eq!(
            error_line("[data]\nsource = \"file\"\n"),
            "test.toml: `data.path` is required when data.source = \"file\" (an MMSA pickle or \
             a CIDer joblib dump)"
        );
    }

    #[test]
    fn overrides_set_dotted_keys_and_are_checked() {
        let set = |items: &[&str]| {
            let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
            TrainConfig::from_toml_str("epochs = 5\n", "f.toml", &items)
        };
        let c = set(&[
            "epochs=2",
            "model.num_heads=4",
            "data.layout=mosi-unaligned",
            "out_dir=runs/b",
        ])
        .unwrap();
        assert_eq!((c.epochs, c.model.num_heads), (2, 4));
        assert_eq!(c.out_dir, PathBuf::from("runs/b"));
        let DataConfig::Synthetic(s) = &c.data else {
            panic!("synthetic source")
        };
        assert_eq!(s.layout, Layout::MosiUnaligned);
        let e = set(&["model.heads=4"]).unwrap_err().to_string();
        assert!(
            e.contains("unknown field `heads`") && e.contains("model.heads=4"),
            "{e}"
        );
        let e = set(&["epochs=lots"]).unwrap_err().to_string();
        assert!(e.contains("expected usize"), "{e}");
        let e = set(&["epochs"]).unwrap_err().to_string();
        assert_eq!(e, "override `epochs`: expected key=value");
        let e = set(&["epochs.x=1"]).unwrap_err().to_string();
        assert!(e.contains("`epochs` is not a table"), "{e}");
        let e = set(&["model.res_dropout=1"]).unwrap_err().to_string();
        assert!(e.contains("model.res_dropout"), "{e}");
    }

    #[test]
    fn resumable_keys_are_ignored_when_comparing_runs() {
        let a = TrainConfig::default();
        let mut b = a.clone();
        b.epochs = 3;
        b.patience = 1;
        b.out_dir = "elsewhere".into();
        assert_eq!(a.first_difference(&b).unwrap(), None);
        b.model.num_heads = 4;
        assert_eq!(
            a.first_difference(&b).unwrap().as_deref(),
            Some("model.num_heads")
        );
        assert_eq!(
            (a.value_at("model.num_heads"), b.value_at("model.num_heads")),
            ("8".into(), "4".into())
        );
        assert_eq!(a.value_at("data.layout"), "\"mosi-aligned\"");
        assert_eq!(a.value_at("model.nothing"), "absent");
        let mut c = a.clone();
        c.data = DataConfig::File(FileData {
            path: "x.pkl".into(),
        });
        assert!(
            a.first_difference(&c)
                .unwrap()
                .unwrap()
                .starts_with("data.")
        );
    }
}
