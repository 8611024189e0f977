//! A trained run, opened in one call: its configuration, weights, bias words, prototypes and
//! priors, the τ chosen on validation and, for a BERT model, the tokenizer's folder.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::tensor::backend::Backend;
use cider_data::bias::bias_words;
use cider_data::dataset::{Dataset, Split, Task};
use cider_maci::full_model::{Cider, CiderConfig, Classifier};
use cider_maci::inference::Debiasing;
use cider_maci::prototypes::{Prototypes, TextFeatures};
use cider_model::batch_input::check_bert_text;
use cider_model::hf::HfBertFolder;
use cider_model::network_config::{Alignment, TextSource};
use cider_model::tokenize::WordPieceTokenizer;
use cider_train::checkpoint::{
    BEST_DIR, CheckpointError, MODEL_CONFIG, STATE_FILE, load_model, read_json,
};
use cider_train::evaluate::{EvalData, PointResult, ProtocolConfig, ProtocolResults, run_protocol};
use cider_train::run_dir::{CONFIG_TOML, MACI_FILE, METRICS_JSON};
use cider_train::run_files::{check_best, check_maci};
use cider_train::run_state::{BestInfo, MaciState};
use cider_train::train_config::TrainConfig;

use crate::error::Error;

/// A run directory of `cider train` (or of a [`crate::Trainer`]) with its selected
/// model loaded on backend `B` (no dropout: the plain backend, not `Autodiff`).
#[derive(Debug)]
pub struct Run<B: Backend> {
    /// The run directory (holds `config.toml`).
    pub run_dir: PathBuf,
    /// The model directory (`best/`, or the one given).
    pub model_dir: PathBuf,
    /// The run's training configuration.
    pub config: TrainConfig,
    /// The model's architecture.
    pub model_config: CiderConfig,
    /// The model.
    pub model: Cider<B>,
    /// `maci.json`: bias words and training prototypes saved with the model, if present.
    pub maci: Option<MaciState>,
    /// `state.json`: the epoch and validation τ of the model, if present.
    pub best: Option<BestInfo>,
    /// The BERT tokenizer of `model.bert_dir`, read on the first raw text and kept.
    pub(crate) tokenizer: OnceLock<WordPieceTokenizer>,
}

impl<B: Backend> Run<B> {
    /// Opens a run directory (its `best/` model) or a model directory inside a run.
    ///
    /// # Errors
    /// [`Error::NotARun`] when `path` holds neither `config.toml` nor a model; configuration,
    /// checkpoint and weight errors name the file at fault.
    pub fn open(path: impl AsRef<Path>, device: &B::Device) -> Result<Self, Error> {
        let path = path.as_ref();
        let (run_dir, model_dir) = if path.join(MODEL_CONFIG).is_file() {
            let run = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            (run, path.to_path_buf())
        } else {
            (path.to_path_buf(), path.join(BEST_DIR))
        };
        let config_path = run_dir.join(CONFIG_TOML);
        if !config_path.is_file() {
            return Err(Error::NotARun {
                path: path.to_path_buf(),
                reason: format!("no {CONFIG_TOML} in {}", run_dir.display()),
            });
        }
        let config = TrainConfig::from_file(&config_path, &[])?;
        if !model_dir.join(MODEL_CONFIG).is_file() {
            return Err(Error::NotARun {
                path: path.to_path_buf(),
                reason: format!(
                    "no trained model: expected {}",
                    model_dir.join(MODEL_CONFIG).display()
                ),
            });
        }
        let classes = config.task.num_classes();
        let model_json = model_dir.join(MODEL_CONFIG);
        let saved = read_json::<serde_json::Value>(&model_json)?["num_classes"].clone();
        if saved.as_u64() != Some(classes as u64) {
            return Err(CheckpointError::Format {
                path: model_json,
                message: format!(
                    "`num_classes` = {saved}, expected {classes} (the task of {})",
                    config_path.display()
                ),
            }
            .into());
        }
        let (model_config, model) = load_model::<B>(&model_dir, device)?;
        let optional = |name: &str| model_dir.join(name).is_file().then(|| model_dir.join(name));
        let maci: Option<MaciState> = optional(MACI_FILE).map(|p| read_json(&p)).transpose()?;
        if let Some(maci) = &maci {
            check_maci(maci, &model_config, &model_dir.join(MACI_FILE))?;
        }
        let best: Option<BestInfo> = optional(STATE_FILE).map(|p| read_json(&p)).transpose()?;
        if let Some(best) = &best {
            let metrics = run_dir.join(METRICS_JSON);
            let epochs = match metrics.is_file() {
                true => Some(read_json::<Vec<serde_json::Value>>(&metrics)?.len()),
                false => None,
            };
            check_best(best, epochs, &model_dir.join(STATE_FILE))?;
        }
        Ok(Self {
            run_dir,
            model_dir,
            config,
            model_config,
            model,
            maci,
            best,
            tokenizer: OnceLock::new(),
        })
    }

    /// The run's BERT tokenizer (to `T_l` tokens), read from `model.bert_dir` on first use.
    ///
    /// # Errors
    /// [`Error::Input`] when the run names no BERT folder; an unreadable folder or tokenizer.
    pub fn tokenizer(&self) -> Result<&WordPieceTokenizer, Error> {
        if let Some(tokenizer) = self.tokenizer.get() {
            return Ok(tokenizer);
        }
        let dir = self.config.model.bert_dir.as_ref().ok_or_else(|| {
            Error::input(
                "text",
                "the run names no BERT folder (model.bert_dir) to tokenise raw text",
            )
        })?;
        let tokenizer = HfBertFolder::open(dir)?.tokenizer(self.model_config.network.t_l)?;
        Ok(self.tokenizer.get_or_init(|| tokenizer))
    }

    /// The run's task (3 or 7 classes).
    pub fn task(&self) -> Task {
        self.config.task
    }

    /// The bias words (docs/method.md §4.1) and training prototypes and priors
    /// (docs/method.md §7.2) saved with the model in `maci.json`; without that file, computed
    /// from the training split (`train`, or the run's data read here) with the run's bias-word
    /// threshold and rule.
    ///
    /// # Errors
    /// Unreadable data or prototypes that do not fit the classifier.
    pub fn maci_parts(&self, train: Option<&Split>) -> Result<(Vec<u32>, Prototypes), Error> {
        if let Some(maci) = &self.maci {
            let prototypes = Prototypes::new(maci.prototypes.clone(), maci.priors.clone())?;
            return Ok((maci.bias_words.clone(), prototypes));
        }
        let loaded;
        let train = match train {
            Some(train) => train,
            None => {
                loaded = self.config.data.load()?;
                &loaded.train
            }
        };
        let task = self.config.task;
        let maci = &self.config.maci;
        let bias = bias_words(train, task, maci.bias_thresh, maci.bias_rule)?;
        let prototypes = Prototypes::from_split(train, task, TextFeatures::FromSplit)?;
        Ok((bias, prototypes))
    }

    /// The test-time prototypes of an evaluated split under the run's rule
    /// (docs/method.md §7.2).
    ///
    /// # Errors
    /// A split whose layout does not fit the prototypes.
    pub fn test_prototypes(&self, train: &Prototypes, split: &Split) -> Result<Prototypes, Error> {
        Ok(self.config.maci.test_prototypes.build(
            train,
            split,
            self.config.task,
            TextFeatures::FromSplit,
        )?)
    }

    /// Runs the evaluation protocol (docs/method.md §8.2) on split `split` of `evaluated`:
    /// every point of `protocol`, τ chosen on the validation split of `train_data` (the run's
    /// own data: [`TrainConfig::data`]`.load()`), bias words and prototypes from its training
    /// split. `on_point` sees each point as it finishes (a progress callback).
    ///
    /// # Errors
    /// An unknown split name, data of another layout than the model's, and protocol errors
    /// (rates, batch size).
    pub fn evaluate(
        &self,
        train_data: &Dataset,
        evaluated: &Dataset,
        split: &str,
        protocol: &ProtocolConfig,
        device: &B::Device,
        on_point: impl FnMut(&PointResult),
    ) -> Result<ProtocolResults, Error> {
        self.check_data(train_data)?;
        self.check_data(evaluated)?;
        let evaluated = evaluated.split(split)?;
        let (bias, train_prototypes) = self.maci_parts(Some(&train_data.train))?;
        let valid_prototypes = self.test_prototypes(&train_prototypes, &train_data.valid)?;
        let prototypes = self.test_prototypes(&train_prototypes, evaluated)?;
        let data = EvalData {
            task: self.config.task,
            valid: &train_data.valid,
            evaluated,
            bias_words: &bias,
            valid_prototypes: &valid_prototypes,
            prototypes: &prototypes,
        };
        Ok(run_protocol(
            &self.model,
            &data,
            protocol,
            device,
            on_point,
        )?)
    }

    /// Checks that a dataset fits the model before any batch reaches it: the same alignment,
    /// sequence lengths `T_l, T_a, T_v` and feature sizes `d_a, d_v` (and `d_l` of the
    /// precomputed text), and for a BERT model tokens the BERT can read (docs/method.md §2.3,
    /// §5.1).
    ///
    /// # Errors
    /// [`Error::DataMismatch`] naming the file and the first size that differs; token errors
    /// of [`check_bert_text`].
    pub fn check_data(&self, data: &Dataset) -> Result<(), Error> {
        let n = &self.model_config.network;
        let aligned = n.alignment == Alignment::Aligned;
        let kind = |a: bool| if a { "aligned" } else { "unaligned" };
        let fail = |message: String| {
            Err(Error::DataMismatch {
                file: data.source.clone(),
                run: self.model_dir.clone(),
                message,
            })
        };
        let d = &data.dims;
        if aligned != data.aligned {
            return fail(format!(
                "the run was trained on {} data (T_a = {}, T_v = {}) and the file is {} \
                 (T_a = {}, T_v = {})",
                kind(aligned),
                n.t_a,
                n.t_v,
                kind(data.aligned),
                d.t_a,
                d.t_v
            ));
        }
        let precomputed = n.options.text_encoder == TextSource::Precomputed;
        let sizes = [
            ("T_l", n.t_l, d.t_l),
            ("T_a", n.t_a, d.t_a),
            ("T_v", n.t_v, d.t_v),
            ("d_a", n.d_a, d.d_a),
            ("d_v", n.d_v, d.d_v),
            ("d_l", n.d_l, if precomputed { d.d_l } else { n.d_l }),
        ];
        if let Some((name, run, file)) = sizes.iter().find(|(_, run, file)| run != file) {
            return fail(format!(
                "the run was trained on {} data with {name} = {run} and the file has \
                 {name} = {file}",
                kind(aligned)
            ));
        }
        if let Some(bert) = &n.bert {
            for split in data.splits() {
                check_bert_text(split, &data.source, bert)?;
            }
        }
        Ok(())
    }

    /// MACI for the MCM, the plain prediction for the linear-head ablation.
    pub fn default_debiasing(&self) -> Debiasing {
        match self.model_config.classifier {
            Classifier::Maci => Debiasing::Maci,
            Classifier::Linear => Debiasing::NoMaci,
        }
    }

    /// The τ saved with the model (chosen on validation), 0 when none was saved or the model
    /// has no MACI.
    pub fn saved_tau(&self) -> f64 {
        match self.default_debiasing() {
            Debiasing::Maci => self.best.as_ref().map_or(0.0, |b| b.tau),
            Debiasing::NoMaci => 0.0,
        }
    }
}
