//! The authors' own model files: the reference saves every trained model with
//! `torch.save(model, path)` (its `src/utils.py` `save_model`), a whole pickled
//! `src.models.CIDERModel`. Its attributes are the constructor's hyper-parameters, its
//! `text_model` holds the HuggingFace `BertModel` (with its pickled `BertConfig`) and the
//! `BertTokenizer`, and its file name says dataset, alignment, IID / OOD, task and trial.
//!
//! [`ReferenceCheckpoint`] reads all of it from a [`TorchCheckpoint`] without running anything:
//! the [`CiderConfig`] (the same one [`crate::golden::golden_config`] builds from the
//! hyper-parameters of a golden folder), the tokenizer for raw text, and the parsed file name.
//! Where the file name and the pickled attributes disagree, the attributes win and the
//! disagreement is returned in [`ReferenceCheckpoint::discrepancies`].

use std::fmt;
use std::path::Path;

use cider_data::dataset::Task;
use cider_data::synth::Variant;
use cider_data::torch_file::TorchCheckpoint;
use cider_data::{PyObject, PyValue};
use cider_model::ModelError;
use cider_model::bert::BertConfig;
use cider_model::hf_pickle::{self, Pickled};
use cider_model::network_config::{Alignment, NetworkConfig, NetworkOptions, PositionalMode};
use cider_model::tokenize::WordPieceTokenizer;

use crate::full_model::CiderConfig;
use crate::mcm::ConfounderNorm;

/// The class of the reference model, as pickled.
pub const CIDER_MODEL_CLASS: &str = "src.models.CIDERModel";

/// The class of the reference text encoder (`CIDERModel.text_model`).
const TEXT_ENCODER_CLASS: &str = "src.models.BertTextEncoder";

/// The class of the LayerNorms that cross-dataset runs put into the audio / vision
/// confounder encoders.
const LAYER_NORM_CLASS: &str = "torch.nn.modules.normalization.LayerNorm";

/// The hyper-parameters that fix the reference model's architecture, under the reference's
/// argument names (`hyp_params`).
#[derive(Debug, Clone)]
pub struct ReferenceHyperParameters {
    /// Text feature width (`orig_d_l`), the BERT's hidden size.
    pub orig_d_l: usize,
    /// Audio feature width (`orig_d_a`).
    pub orig_d_a: usize,
    /// Vision feature width (`orig_d_v`).
    pub orig_d_v: usize,
    /// Text length `T_l` (`l_len`; the model's `orig_l_len`).
    pub l_len: usize,
    /// Audio length `T_a` (`a_len`; the model's `orig_a_len`).
    pub a_len: usize,
    /// Vision length `T_v` (`v_len`; the model's `orig_v_len`).
    pub v_len: usize,
    /// Word-aligned audio and vision (`aligned`).
    pub aligned: bool,
    /// Model width `D` (`embed_dim`).
    pub embed_dim: usize,
    /// MCT layers (`multimodal_layers`).
    pub multimodal_layers: usize,
    /// MCT attention heads (`num_heads`).
    pub num_heads: usize,
    /// Attention dropout (`attn_dropout`).
    pub attn_dropout: f64,
    /// Feed-forward dropout (`relu_dropout`).
    pub relu_dropout: f64,
    /// Residual dropout (`res_dropout`).
    pub res_dropout: f64,
    /// Output dropout (`out_dropout`).
    pub out_dropout: f64,
    /// Embedding dropout (`embed_dropout`).
    pub embed_dropout: f64,
    /// Number of classes (`output_dim`): 3 for the binary task, 7 for seven.
    pub output_dim: usize,
    /// A cross-dataset run (`cross_dataset`): LayerNorms in the audio / vision confounders.
    pub cross_dataset: bool,
    /// The BERT text encoder.
    pub bert: BertConfig,
}

impl ReferenceHyperParameters {
    /// The model configuration: the reference's batch-indexed positional term, the BERT text
    /// encoder, `output_dim` classes, confounder LayerNorms for cross-dataset runs.
    pub fn to_config(&self) -> CiderConfig {
        let alignment = if self.aligned {
            Alignment::Aligned
        } else {
            Alignment::Unaligned
        };
        let network = NetworkConfig::new(
            self.orig_d_l,
            self.orig_d_a,
            self.orig_d_v,
            self.l_len,
            self.a_len,
            self.v_len,
            alignment,
        )
        .with_options(NetworkOptions {
            embed_dim: self.embed_dim,
            multimodal_layers: self.multimodal_layers,
            num_heads: self.num_heads,
            attn_dropout: self.attn_dropout,
            out_dropout: self.out_dropout,
            embed_dropout: self.embed_dropout,
            relu_dropout: self.relu_dropout,
            res_dropout: self.res_dropout,
            positional: PositionalMode::BatchIndex,
            ..NetworkOptions::default()
        })
        .with_bert_encoder(self.bert.clone());
        let confounder_norm = if self.cross_dataset {
            ConfounderNorm::LayerNorm
        } else {
            ConfounderNorm::None
        };
        CiderConfig::new(network, self.output_dim).with_confounder_norm(confounder_norm)
    }

    /// Reads them from a pickled `CIDERModel`: its own attributes, the `BertConfig` of
    /// `text_model.model.config`, and `cross_dataset` from the LayerNorms inside
    /// `cls_encoders_a` / `cls_encoders_v` (the model does not store the flag).
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the file and the attribute when the object is not a
    /// `CIDERModel`, an attribute is missing or wrongly typed, the two confounder encoders
    /// disagree, or `orig_d_l` is not the BERT's hidden size.
    pub fn from_module(module: &Pickled<'_>) -> Result<Self, ModelError> {
        let m = module.clone().expect_class(CIDER_MODEL_CLASS, false)?;
        let bert_model = m
            .submodule("text_model")?
            .expect_class(TEXT_ENCODER_CLASS, false)?
            .submodule("model")?
            .expect_class("transformers.models.bert.modeling_bert.BertModel", true)?;
        let bert = hf_pickle::bert_config(&bert_model.attr_object("config")?)?;
        let orig_d_l = m.usize("orig_d_l")?;
        if orig_d_l != bert.hidden_size {
            return Err(m.error(
                Some("orig_d_l"),
                format!(
                    "is {orig_d_l}, expected the BERT's hidden_size {} (the BERT output is \
                     the text feature)",
                    bert.hidden_size
                ),
            ));
        }
        let cross_a = has_layer_norm(&m.submodule("cls_encoders_a")?)?;
        let cross_v = has_layer_norm(&m.submodule("cls_encoders_v")?)?;
        if cross_a != cross_v {
            return Err(m.error(
                Some("cls_encoders_v"),
                format!(
                    "has {} LayerNorm while `cls_encoders_a` has {}: expected both (a \
                     cross-dataset run) or neither",
                    if cross_v { "a" } else { "no" },
                    if cross_a { "one" } else { "none" },
                ),
            ));
        }
        Ok(Self {
            orig_d_l,
            orig_d_a: m.usize("orig_d_a")?,
            orig_d_v: m.usize("orig_d_v")?,
            l_len: m.usize("orig_l_len")?,
            a_len: m.usize("orig_a_len")?,
            v_len: m.usize("orig_v_len")?,
            aligned: m.bool("aligned")?,
            embed_dim: m.usize("embed_dim")?,
            multimodal_layers: m.usize("multimodal_layers")?,
            num_heads: m.usize("num_heads")?,
            attn_dropout: m.f64("attn_dropout")?,
            relu_dropout: m.f64("relu_dropout")?,
            res_dropout: m.f64("res_dropout")?,
            out_dropout: m.f64("out_dropout")?,
            embed_dropout: m.f64("embed_dropout")?,
            output_dim: m.usize("output_dim")?,
            cross_dataset: cross_a,
            bert,
        })
    }

    /// The task `output_dim` implies ([`task_for_output_dim`]).
    pub fn task(&self) -> Option<Task> {
        task_for_output_dim(self.output_dim)
    }
}

/// Whether a pickled `nn.Sequential` holds a LayerNorm.
fn has_layer_norm(sequential: &Pickled<'_>) -> Result<bool, ModelError> {
    Ok(sequential
        .submodules()?
        .iter()
        .any(|(_, layer)| layer.class() == LAYER_NORM_CLASS))
}

/// The task a reference model with `output_dim` classes was trained for: 3 classes
/// (negative / neutral / positive) for "binary", 7 for "seven"; `None` for other counts.
pub fn task_for_output_dim(output_dim: usize) -> Option<Task> {
    [Task::Binary, Task::Seven]
        .into_iter()
        .find(|task| task.num_classes() == output_dim)
}

/// What the reference's file name says (`save_load_name` in its `src/utils.py`):
/// `[cross_dataset]{dataset}_{aligned|unaligned}_{iid|ood}_{binary|seven}_{MODEL}_trial_{N}.pt`,
/// the `[cross_dataset]` prefix only for cross-dataset runs, and no `_trial_{N}` on the best
/// model of a study, which the reference renames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceFileName {
    /// The `[cross_dataset]` prefix.
    pub cross_dataset: bool,
    /// The dataset, lower-case (`mosi`, `mosei`).
    pub dataset: String,
    /// `aligned` or `unaligned`.
    pub alignment: Alignment,
    /// `iid` or `ood`.
    pub variant: Variant,
    /// `binary` or `seven`.
    pub task: Task,
    /// The model name, upper-cased by the reference (`CIDER`).
    pub model: String,
    /// The Optuna trial number (`-2` for the reference's single runs), if present.
    pub trial: Option<i64>,
}

impl ReferenceFileName {
    /// The prefix of cross-dataset runs.
    pub const CROSS_DATASET_PREFIX: &'static str = "[cross_dataset]";

    /// Parses a file name (no directory); `None` when it is not one the reference writes.
    pub fn parse(file_name: &str) -> Option<Self> {
        let stem = file_name.strip_suffix(".pt")?;
        let (cross_dataset, stem) = match stem.strip_prefix(Self::CROSS_DATASET_PREFIX) {
            Some(rest) => (true, rest),
            None => (false, stem),
        };
        let (stem, trial) = match stem.rsplit_once("_trial_") {
            Some((head, number)) => (head, Some(parse_trial(number)?)),
            None => (stem, None),
        };
        let mut parts = stem.rsplitn(5, '_');
        let model = parts.next()?;
        let task = match parts.next()? {
            "binary" => Task::Binary,
            "seven" => Task::Seven,
            _ => return None,
        };
        let variant = match parts.next()? {
            "iid" => Variant::Iid,
            "ood" => Variant::Ood,
            _ => return None,
        };
        let alignment = match parts.next()? {
            "aligned" => Alignment::Aligned,
            "unaligned" => Alignment::Unaligned,
            _ => return None,
        };
        let dataset = parts.next()?;
        let word = |s: &str, upper: bool| {
            !s.is_empty()
                && s.chars().all(|c| {
                    c.is_ascii_digit()
                        || if upper {
                            c.is_ascii_uppercase()
                        } else {
                            c.is_ascii_lowercase()
                        }
                })
        };
        if !word(dataset, false) || !word(model, true) {
            return None;
        }
        Some(Self {
            cross_dataset,
            dataset: dataset.to_string(),
            alignment,
            variant,
            task,
            model: model.to_string(),
            trial,
        })
    }

    /// Parses the file name of `path`; `None` as for [`ReferenceFileName::parse`].
    pub fn from_path(path: &Path) -> Option<Self> {
        Self::parse(path.file_name()?.to_str()?)
    }
}

/// A trial number: decimal digits, perhaps after a minus sign.
fn parse_trial(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl fmt::Display for ReferenceFileName {
    /// The file name the reference gives such a model.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = if self.cross_dataset {
            Self::CROSS_DATASET_PREFIX
        } else {
            ""
        };
        let alignment = match self.alignment {
            Alignment::Aligned => "aligned",
            Alignment::Unaligned => "unaligned",
        };
        write!(
            f,
            "{prefix}{}_{alignment}_{}_{}_{}",
            self.dataset,
            self.variant.name(),
            task_name(self.task),
            self.model
        )?;
        if let Some(trial) = self.trial {
            write!(f, "_trial_{trial}")?;
        }
        f.write_str(".pt")
    }
}

fn task_name(task: Task) -> &'static str {
    match task {
        Task::Binary => "binary",
        Task::Seven => "seven",
    }
}

/// Where the file name and the pickled model disagree (the model wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameDiscrepancy {
    /// What differs: `aligned`, `task` or `cross_dataset`.
    pub field: &'static str,
    /// What the file name says.
    pub in_name: String,
    /// What the pickled model says (and is used).
    pub in_model: String,
}

impl fmt::Display for NameDiscrepancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}`: the file name says {}, the pickled model {} (used)",
            self.field, self.in_name, self.in_model
        )
    }
}

/// A reference model file, read: its configuration, tokenizer and file name.
#[derive(Debug)]
pub struct ReferenceCheckpoint {
    /// The file.
    pub source: String,
    /// The hyper-parameters, from the pickled attributes.
    pub hyper_parameters: ReferenceHyperParameters,
    /// The model configuration built from them ([`ReferenceHyperParameters::to_config`]).
    pub config: CiderConfig,
    /// The pickled `BertTokenizer`, producing rows of `T_l` (`orig_l_len`) tokens; `None`
    /// when the text encoder holds no tokenizer.
    pub tokenizer: Option<WordPieceTokenizer>,
    /// The file name parsed, if it is one the reference writes.
    pub name: Option<ReferenceFileName>,
    /// Where the file name disagrees with the pickled model.
    pub discrepancies: Vec<NameDiscrepancy>,
}

impl ReferenceCheckpoint {
    /// Reads a checkpoint holding a whole pickled `CIDERModel`.
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the file when it is a state dict (which holds no
    /// configuration), when its module is not a `CIDERModel`, or as
    /// [`ReferenceCheckpoint::from_module`].
    pub fn from_checkpoint(file: &TorchCheckpoint) -> Result<Self, ModelError> {
        let module = file.module().ok_or_else(|| ModelError::Config {
            source_name: file.source().to_string(),
            message: format!(
                "a state dict (`torch.save(model.state_dict())`, {} tensors), not a whole \
                 pickled `{CIDER_MODEL_CLASS}`: it holds no configuration; use the file \
                 `torch.save(model, path)` writes, or give the state dict to a model of known \
                 configuration (`cider check-golden DIR --weights FILE`)",
                file.tensors().len()
            ),
        })?;
        Self::from_module(module, file.source())
    }

    /// Reads a pickled `CIDERModel` object that came from the file `source`, whose file
    /// name is parsed and compared with the model.
    ///
    /// # Errors
    /// [`ModelError::Config`] naming the file and the attribute, as
    /// [`ReferenceHyperParameters::from_module`]; naming the file, for hyper-parameters that
    /// make no valid model ([`NetworkConfig::validate`]); and, for the tokenizer,
    /// [`hf_pickle::bert_tokenizer`] (or [`ModelError::Tokenizer`] from it).
    pub fn from_module(module: &PyObject, source: &str) -> Result<Self, ModelError> {
        let root = Pickled::root(module, source);
        let hyper_parameters = ReferenceHyperParameters::from_module(&root)?;
        let text_model = root.submodule("text_model")?;
        let tokenizer = match text_model.optional("tokenizer") {
            None | Some(PyValue::None) => None,
            Some(_) => Some(hf_pickle::bert_tokenizer(
                &text_model.attr_object("tokenizer")?,
                hyper_parameters.l_len,
            )?),
        };
        let config = hyper_parameters.to_config();
        config.network.validate().map_err(|e| match e {
            ModelError::Config { message, .. } => ModelError::Config {
                source_name: source.to_string(),
                message: format!("the pickled hyper-parameters do not make a model: {message}"),
            },
            other => other,
        })?;
        let name = ReferenceFileName::from_path(Path::new(source));
        let discrepancies = name
            .as_ref()
            .map(|name| discrepancies(name, &hyper_parameters))
            .unwrap_or_default();
        Ok(Self {
            source: source.to_string(),
            config,
            hyper_parameters,
            tokenizer,
            name,
            discrepancies,
        })
    }

    /// The task implied by `output_dim` ([`task_for_output_dim`]).
    pub fn task(&self) -> Option<Task> {
        self.hyper_parameters.task()
    }

    /// The number of classes (`output_dim`).
    pub fn num_classes(&self) -> usize {
        self.hyper_parameters.output_dim
    }
}

/// The fields where `name` and the pickled hyper-parameters disagree.
fn discrepancies(name: &ReferenceFileName, hp: &ReferenceHyperParameters) -> Vec<NameDiscrepancy> {
    let mut out = Vec::new();
    let name_aligned = name.alignment == Alignment::Aligned;
    let aligned = |a: bool| if a { "aligned" } else { "unaligned" }.to_string();
    if name_aligned != hp.aligned {
        out.push(NameDiscrepancy {
            field: "aligned",
            in_name: aligned(name_aligned),
            in_model: aligned(hp.aligned),
        });
    }
    if hp.task() != Some(name.task) {
        out.push(NameDiscrepancy {
            field: "task",
            in_name: task_name(name.task).to_string(),
            in_model: match hp.task() {
                Some(task) => format!("{} (output_dim {})", task_name(task), hp.output_dim),
                None => format!("output_dim {}", hp.output_dim),
            },
        });
    }
    if name.cross_dataset != hp.cross_dataset {
        let cross = |c: bool| {
            if c {
                "cross-dataset"
            } else {
                "not cross-dataset"
            }
            .to_string()
        };
        out.push(NameDiscrepancy {
            field: "cross_dataset",
            in_name: cross(name.cross_dataset),
            in_model: cross(hp.cross_dataset),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::Value;

    use super::*;
    use crate::golden::golden_config;

    const FIXTURES: [(&str, &str); 2] = [
        (
            "mosi-aligned-small",
            "mosi_aligned_iid_binary_CIDER_trial_0.pt",
        ),
        (
            "mosi-unaligned-small",
            "mosi_unaligned_iid_binary_CIDER_trial_0.pt",
        ),
    ];

    fn testdata(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata")
            .join(path)
    }

    fn open(folder: &str, file: &str) -> TorchCheckpoint {
        TorchCheckpoint::open(testdata(&format!("torch-checkpoints/{folder}/{file}")))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn golden(folder: &str) -> CiderConfig {
        let path = testdata(&format!("torch-golden/{folder}/golden.json"));
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        golden_config(&json, &path.display().to_string()).unwrap()
    }

    #[test]
    fn config_from_the_pickled_model_is_the_golden_config() {
        for (folder, file) in FIXTURES {
            let checkpoint = open(folder, file);
            let reference =
                ReferenceCheckpoint::from_checkpoint(&checkpoint).unwrap_or_else(|e| panic!("{e}"));
            let expected = golden(folder);
            assert_eq!(
                format!("{:?}", reference.config),
                format!("{expected:?}"),
                "{folder}"
            );
            let n = &reference.config.network;
            let bert = n.bert.as_ref().unwrap();
            assert_eq!((n.d_l, n.d_a, n.d_v), (64, 5, 20));
            // The unaligned model's own `a_len` / `v_len` are `T_l` (16); its lengths are the
            // `orig_a_len` / `orig_v_len`.
            let lengths = if folder.contains("unaligned") {
                (16, 40, 48)
            } else {
                (16, 16, 16)
            };
            assert_eq!((n.t_l, n.t_a, n.t_v), lengths, "{folder}");
            assert_eq!(
                (
                    n.options.embed_dim,
                    n.options.num_heads,
                    n.options.multimodal_layers
                ),
                (32, 8, 2)
            );
            assert_eq!(
                n.alignment,
                if folder.contains("unaligned") {
                    Alignment::Unaligned
                } else {
                    Alignment::Aligned
                }
            );
            assert_eq!(
                (bert.vocab_size, bert.hidden_size, bert.num_hidden_layers),
                (1000, 64, 2)
            );
            assert_eq!((bert.num_attention_heads, bert.intermediate_size), (2, 256));
            assert_eq!(
                (bert.max_position_embeddings, bert.type_vocab_size),
                (64, 2)
            );
            assert_eq!(bert.layer_norm_eps, 1e-12);
            assert_eq!(reference.config.num_classes, 3);
            assert_eq!(reference.config.confounder_norm, ConfounderNorm::None);
            assert_eq!(reference.task(), Some(Task::Binary));
            assert_eq!(reference.num_classes(), 3);
            assert!(!reference.hyper_parameters.cross_dataset);
            let name = reference
                .name
                .as_ref()
                .expect("the reference's own file name");
            assert_eq!(name.to_string(), file);
            assert_eq!(
                (name.dataset.as_str(), name.variant, name.trial),
                ("mosi", Variant::Iid, Some(0))
            );
            assert!(
                reference.discrepancies.is_empty(),
                "{:?}",
                reference.discrepancies
            );
        }
    }

    #[test]
    fn the_pickled_tokenizer_encodes_raw_text() {
        let (folder, file) = FIXTURES[0];
        let reference = ReferenceCheckpoint::from_checkpoint(&open(folder, file)).unwrap();
        let tokenizer = reference
            .tokenizer
            .as_ref()
            .expect("a pickled BertTokenizer");
        assert_eq!(tokenizer.seq_len(), 16);
        let ids = [
            ("[PAD]", 0),
            ("[unused1]", 1),
            ("[unused99]", 99),
            ("[UNK]", 100),
            ("[CLS]", 101),
            ("[SEP]", 102),
            ("[MASK]", 103),
            ("w104", 104),
            ("w500", 500),
            ("w999", 999),
        ];
        for (token, id) in ids {
            assert_eq!(tokenizer.token_id(token), Some(id), "{token}");
        }
        assert_eq!(tokenizer.token_id("w1000"), None);
        // Lower-cased; `w1040` and `zebra` have no pieces (no `##` entries) → [UNK]; `,` is
        // split off and unknown; [MASK] stays whole; `[unused1]` in text is split by the basic
        // tokenizer into `[`, `unused1`, `]`, all unknown.
        let rows = tokenizer
            .encode("W104 w105, zebra [MASK] w1040 W999 [unused1]")
            .unwrap();
        assert_eq!(
            rows.ids,
            [
                101, 104, 105, 100, 100, 103, 100, 999, 100, 100, 100, 102, 0, 0, 0, 0
            ]
        );
        assert_eq!(
            rows.attention_mask,
            [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
        );
        assert_eq!(rows.segments, [0; 16]);
        // Truncated on the right to T_l = 16, [SEP] kept.
        let long = tokenizer.encode(&"w200 ".repeat(20)).unwrap();
        assert_eq!(long.ids.len(), 16);
        assert_eq!((long.ids[0], long.ids[14], long.ids[15]), (101, 200, 102));
    }

    #[test]
    fn a_state_dict_is_refused() {
        let (folder, _) = FIXTURES[0];
        let err = ReferenceCheckpoint::from_checkpoint(&open(folder, "state_dict.pt"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("state_dict.pt: bad configuration: a state dict"),
            "{err}"
        );
        assert!(
            err.contains("holds no configuration; use the file"),
            "{err}"
        );
    }

    /// The root module of the aligned fixture, to edit.
    fn module() -> PyObject {
        let (folder, file) = FIXTURES[0];
        open(folder, file).module().unwrap().clone()
    }

    /// The BUILD-state pairs of an object.
    fn state(object: &mut PyObject) -> &mut Vec<(PyValue, PyValue)> {
        match object.state.as_mut() {
            Some(PyValue::Dict(pairs)) => pairs,
            other => panic!("state {other:?}"),
        }
    }

    /// The value of `key` in a list of pairs.
    fn entry<'a>(pairs: &'a mut [(PyValue, PyValue)], key: &str) -> &'a mut PyValue {
        pairs
            .iter_mut()
            .find(|(k, _)| matches!(k, PyValue::Str(s) if s == key))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no `{key}`"))
    }

    /// The object under a path of attribute / `_modules` names.
    fn object_at<'a>(root: &'a mut PyObject, path: &[&str]) -> &'a mut PyObject {
        let mut object = root;
        for name in path {
            let pairs = state(object);
            let value = if pairs
                .iter()
                .any(|(k, _)| matches!(k, PyValue::Str(s) if s == name))
            {
                entry(pairs, name)
            } else {
                let PyValue::Dict(modules) = entry(pairs, "_modules") else {
                    panic!("_modules")
                };
                entry(modules, name)
            };
            let PyValue::Object(child) = value else {
                panic!("{name} is not an object")
            };
            object = child;
        }
        object
    }

    fn error_of(module: &PyObject) -> String {
        ReferenceCheckpoint::from_module(module, "dir/model.pt")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn wrong_or_missing_attributes_are_one_line_errors() {
        let mut m = module();
        state(&mut m).retain(|(k, _)| !matches!(k, PyValue::Str(s) if s == "embed_dim"));
        assert_eq!(
            error_of(&m),
            "dir/model.pt: bad configuration: `embed_dim`: missing from the pickled \
             `src.models.CIDERModel`"
        );

        let mut m = module();
        *entry(state(&mut m), "aligned") = PyValue::Int(1);
        assert_eq!(
            error_of(&m),
            "dir/model.pt: bad configuration: `aligned`: expected True or False, got int 1"
        );

        let mut m = module();
        *entry(state(&mut m), "num_heads") = PyValue::Str("8".into());
        assert!(
            error_of(&m).ends_with("`num_heads`: expected a non-negative int, got str \"8\""),
            "{}",
            error_of(&m)
        );

        // Well-typed but impossible: 32 dimensions in 5 heads.
        let mut m = module();
        *entry(state(&mut m), "num_heads") = PyValue::Int(5);
        let err = error_of(&m);
        assert!(
            err.starts_with(
                "dir/model.pt: bad configuration: the pickled hyper-parameters do not make a \
                 model: "
            ) && err.contains("num_heads"),
            "{err}"
        );

        let mut m = module();
        m.class = "src.models.OtherModel".into();
        assert_eq!(
            error_of(&m),
            "dir/model.pt: bad configuration: the pickled `src.models.OtherModel`: expected a \
             pickled `src.models.CIDERModel`, got `src.models.OtherModel`"
        );

        let mut m = module();
        let config = object_at(&mut m, &["text_model", "model", "config"]);
        *entry(state(config), "hidden_size") = PyValue::Float(64.0);
        let err = error_of(&m);
        assert!(
            err.starts_with(
                "dir/model.pt (`text_model.model.config`): bad configuration: key `hidden_size`"
            ),
            "{err}"
        );

        let mut m = module();
        let config = object_at(&mut m, &["text_model", "model", "config"]);
        *entry(state(config), "hidden_act") = PyValue::Str("relu".into());
        assert!(error_of(&m).contains("`hidden_act`"), "{}", error_of(&m));

        let mut m = module();
        *entry(state(&mut m), "orig_d_l") = PyValue::Int(768);
        assert!(
            error_of(&m).contains("`orig_d_l`: is 768, expected the BERT's hidden_size 64"),
            "{}",
            error_of(&m)
        );
    }

    #[test]
    fn tokenizer_settings_are_read_or_refused() {
        let mut m = module();
        let basic = object_at(&mut m, &["text_model", "tokenizer", "basic_tokenizer"]);
        *entry(state(basic), "do_lower_case") = PyValue::Bool(false);
        let reference = ReferenceCheckpoint::from_module(&m, "dir/model.pt").unwrap();
        let tokenizer = reference.tokenizer.unwrap();
        // Not lower-cased: `W104` is unknown, `w104` is not.
        assert_eq!(
            tokenizer.encode("W104 w104").unwrap().ids[..4],
            [101, 100, 104, 102]
        );

        let mut m = module();
        let basic = object_at(&mut m, &["text_model", "tokenizer", "basic_tokenizer"]);
        *entry(state(basic), "never_split") = PyValue::Object(Box::new(PyObject {
            class: "builtins.set".into(),
            args: vec![PyValue::List(vec![PyValue::Str("w104".into())])],
            state: None,
            dict_items: Vec::new(),
            list_items: Vec::new(),
        }));
        let err = error_of(&m);
        assert!(
            err.contains("`text_model.tokenizer.basic_tokenizer.never_split`: only an empty set"),
            "{err}"
        );

        let mut m = module();
        let tokenizer = object_at(&mut m, &["text_model", "tokenizer"]);
        *entry(state(tokenizer), "vocab") = PyValue::List(Vec::new());
        let err = error_of(&m);
        assert!(
            err.contains("`text_model.tokenizer.vocab`: expected a dict or OrderedDict"),
            "{err}"
        );

        let mut m = module();
        let text_model = object_at(&mut m, &["text_model"]);
        state(text_model).retain(|(k, _)| !matches!(k, PyValue::Str(s) if s == "tokenizer"));
        let reference = ReferenceCheckpoint::from_module(&m, "dir/model.pt").unwrap();
        assert!(reference.tokenizer.is_none());
    }

    #[test]
    fn cross_dataset_comes_from_the_confounder_layer_norms() {
        let layer_norm = || {
            PyValue::Object(Box::new(PyObject {
                class: LAYER_NORM_CLASS.into(),
                args: Vec::new(),
                state: Some(PyValue::Dict(vec![(
                    PyValue::Str("_modules".into()),
                    PyValue::Dict(Vec::new()),
                )])),
                dict_items: Vec::new(),
                list_items: Vec::new(),
            }))
        };
        let mut m = module();
        for encoder in ["cls_encoders_a", "cls_encoders_v"] {
            let sequential = object_at(&mut m, &[encoder]);
            let PyValue::Dict(modules) = entry(state(sequential), "_modules") else {
                panic!()
            };
            modules.insert(1, (PyValue::Str("1n".into()), layer_norm()));
        }
        let source = "runs/[cross_dataset]mosi_aligned_iid_binary_CIDER_trial_0.pt";
        let reference = ReferenceCheckpoint::from_module(&m, source).unwrap();
        assert!(reference.hyper_parameters.cross_dataset);
        assert_eq!(reference.config.confounder_norm, ConfounderNorm::LayerNorm);
        assert!(reference.name.as_ref().unwrap().cross_dataset);
        assert!(
            reference.discrepancies.is_empty(),
            "{:?}",
            reference.discrepancies
        );
        // The same model under a plain name: the structure wins.
        let plain =
            ReferenceCheckpoint::from_module(&m, "mosi_aligned_iid_binary_CIDER.pt").unwrap();
        assert_eq!(plain.config.confounder_norm, ConfounderNorm::LayerNorm);
        assert_eq!(plain.discrepancies.len(), 1);
        assert_eq!(plain.discrepancies[0].field, "cross_dataset");

        // Only one of the two encoders normalised: refused.
        let mut m = module();
        let sequential = object_at(&mut m, &["cls_encoders_a"]);
        let PyValue::Dict(modules) = entry(state(sequential), "_modules") else {
            panic!()
        };
        modules.insert(1, (PyValue::Str("1n".into()), layer_norm()));
        assert!(
            error_of(&m).contains("`cls_encoders_v`: has no LayerNorm"),
            "{}",
            error_of(&m)
        );
    }

    #[test]
    fn file_name_disagreements_are_reported_and_the_model_wins() {
        let m = module(); // aligned, output_dim 3
        let reference =
            ReferenceCheckpoint::from_module(&m, "x/mosi_unaligned_ood_seven_CIDER_trial_7.pt")
                .unwrap();
        assert_eq!(reference.config.network.alignment, Alignment::Aligned);
        assert_eq!(reference.config.num_classes, 3);
        let name = reference.name.as_ref().unwrap();
        assert_eq!((name.variant, name.trial), (Variant::Ood, Some(7)));
        let lines: Vec<String> = reference
            .discrepancies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "`aligned`: the file name says unaligned, the pickled model aligned (used)",
                "`task`: the file name says seven, the pickled model binary (output_dim 3) (used)",
            ]
        );
        let other = ReferenceCheckpoint::from_module(&m, "x/model.pt").unwrap();
        assert!(other.name.is_none() && other.discrepancies.is_empty());
    }

    #[test]
    fn parses_the_reference_file_names() {
        let parsed = ReferenceFileName::parse("mosi_aligned_iid_binary_CIDER_trial_0.pt").unwrap();
        assert_eq!(
            parsed,
            ReferenceFileName {
                cross_dataset: false,
                dataset: "mosi".into(),
                alignment: Alignment::Aligned,
                variant: Variant::Iid,
                task: Task::Binary,
                model: "CIDER".into(),
                trial: Some(0),
            }
        );
        let cross =
            ReferenceFileName::parse("[cross_dataset]mosei_aligned_iid_seven_CIDER_trial_12.pt")
                .unwrap();
        assert!(cross.cross_dataset);
        assert_eq!(
            (cross.dataset.as_str(), cross.task, cross.trial),
            ("mosei", Task::Seven, Some(12))
        );
        // The best model of a study is renamed without its trial; single runs use trial -2.
        let best = ReferenceFileName::parse("mosei_unaligned_ood_binary_CIDER.pt").unwrap();
        assert_eq!(
            (best.alignment, best.variant, best.trial),
            (Alignment::Unaligned, Variant::Ood, None)
        );
        let run = ReferenceFileName::parse("mosi_unaligned_iid_seven_CIDER_trial_-2.pt").unwrap();
        assert_eq!(run.trial, Some(-2));
        for name in [
            "mosi_aligned_iid_binary_CIDER_trial_0.pt",
            "[cross_dataset]mosei_aligned_iid_seven_CIDER_trial_12.pt",
            "mosei_unaligned_ood_binary_CIDER.pt",
            "mosi_unaligned_iid_seven_CIDER_trial_-2.pt",
        ] {
            assert_eq!(ReferenceFileName::parse(name).unwrap().to_string(), name);
        }
        assert_eq!(
            ReferenceFileName::from_path(Path::new("/m/mosi_aligned_iid_binary_CIDER_trial_3.pt"))
                .and_then(|n| n.trial),
            Some(3)
        );
        for near_miss in [
            "state_dict.pt",
            "model.pt",
            "mosi_aligned_iid_binary_CIDER_trial_0.pth",
            "mosi_aligned_iid_binary_CIDER_trial_0",
            "mosi_aligned_iid_binary_CIDER_trial_.pt",
            "mosi_aligned_iid_binary_CIDER_trial_x.pt",
            "mosi_aligned_iid_binary_CIDER_trial_+1.pt",
            "mosi_aligned_iid_binary_trial_0.pt",
            "mosi_aligned_iid_five_CIDER_trial_0.pt",
            "mosi_sorted_iid_binary_CIDER_trial_0.pt",
            "mosi_aligned_test_binary_CIDER_trial_0.pt",
            "MOSI_aligned_iid_binary_CIDER_trial_0.pt",
            "mosi_aligned_iid_binary_cider_trial_0.pt",
            "_aligned_iid_binary_CIDER.pt",
            "my_mosi_aligned_iid_binary_CIDER.pt",
            "[cross]mosi_aligned_iid_binary_CIDER.pt",
            "mosi_aligned_iid_binary_CIDER_trial_0.pt.pt",
        ] {
            assert_eq!(ReferenceFileName::parse(near_miss), None, "{near_miss}");
        }
    }

    #[test]
    fn output_dim_gives_the_task() {
        assert_eq!(task_for_output_dim(3), Some(Task::Binary));
        assert_eq!(task_for_output_dim(7), Some(Task::Seven));
        assert_eq!(task_for_output_dim(1), None);
        assert_eq!(task_for_output_dim(2), None);
    }
}
