//! The authors' own model files: a `.pt` the CIDer reference saved with `torch.save(model,
//! path)` (a whole pickled `CIDERModel`), opened as a [`Run`] in memory
//! ([`Run::from_reference_checkpoint`]) or written out as a run directory that `cider eval` and
//! `cider infer` accept ([`import_reference`], the `cider import` command).
//!
//! Everything comes from the file, read without running any of it: the architecture from the
//! model's pickled attributes and `BertConfig`, the weights from its state dict, the tokenizer
//! from its pickled `BertTokenizer`, and the task from `output_dim`. The dataset file given
//! beside it supplies what the checkpoint does not hold: the training split's bias words and
//! prototypes for MACI, and the validation split for τ. It must fit the model (alignment,
//! lengths, sizes, token ids), which is checked before anything is written.
//!
//! MACI's training prototypes and priors are computed from that training split, as for a run
//! of ours, unless the authors' own files are given (the `{dataset}_feats/` and
//! `{dataset}_probs/` folders of their repository, [`ReferencePrototypeFiles`]); then they are
//! read from there and saved as `best/maci.json` with the bias words of the training split.
//!
//! A written run directory holds `config.toml` (the task, the data file, the model options),
//! `best/` (`model.json`, the Burn record and, with the authors' prototypes, `maci.json`),
//! `bert/` for a BERT model (a HuggingFace folder: `config.json`, `tokenizer.json`,
//! `model.safetensors`) and `import.json` (where it came from and what the file name said). It is written in a sibling folder and renamed into place, so
//! a failure leaves nothing behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::config::Config;
use burn::tensor::backend::Backend;
use cider_data::bias::bias_words;
use cider_data::dataset::Dataset;
use cider_data::synth::Variant;
use cider_data::torch_file::TorchCheckpoint;
use cider_maci::reference_checkpoint::ReferenceCheckpoint;
use cider_maci::reference_prototypes::ReferencePrototypeFiles;
use cider_model::import::BERT_PREFIX;
use cider_model::memory_estimate::check_memory;
use cider_model::network_config::TextSource;
use cider_model::weights::{WeightFile, write_safetensors};
use cider_train::checkpoint::{BEST_DIR, CheckpointError, save_model, write_file_atomically};
use cider_train::run_dir::{CONFIG_TOML, MACI_FILE};
use cider_train::run_state::MaciState;
use cider_train::train_config::{DataConfig, FileData, TrainConfig};
use serde_json::json;

use crate::error::Error;
use crate::run::Run;

/// The HuggingFace folder of an imported BERT model, inside the run directory.
pub const BERT_DIR: &str = "bert";
/// Where an imported run came from, inside the run directory.
pub const IMPORT_FILE: &str = "import.json";

/// Where MACI's training prototypes and priors come from when a model is imported: computed
/// from the data's training split (the default), or read from the authors' files.
#[derive(Debug, Clone, Default)]
pub struct PrototypeSource {
    /// The authors' repository checkout holding `{dataset}_feats/` and `{dataset}_probs/`.
    pub reference_dir: Option<PathBuf>,
    /// Whose files (`mosi`, `mosei`), instead of what the checkpoint's file name says.
    pub dataset: Option<String>,
    /// IID or OOD training files, instead of what the checkpoint's file name says.
    pub variant: Option<Variant>,
}

/// What [`import_reference`] wrote.
#[derive(Debug)]
pub struct ImportedRun {
    /// The run directory written.
    pub run_dir: PathBuf,
    /// What was read from the checkpoint: its configuration, file name and any disagreement
    /// between the two.
    pub reference: ReferenceCheckpoint,
}

impl<B: Backend> Run<B> {
    /// Opens a checkpoint of the authors' code (a whole pickled `CIDERModel`, `.pt`) as a run,
    /// in memory: the model, its tokenizer and its task from the file; bias words, prototypes
    /// and the validation split from `data` (the dataset the model was trained on).
    ///
    /// # Errors
    /// A file that is not a whole pickled `CIDERModel` (a state dict holds no configuration),
    /// weights that do not fit it, an `output_dim` of neither 3 nor 7, and a dataset that does
    /// not fit the model ([`Error::DataMismatch`]).
    pub fn from_reference_checkpoint(
        checkpoint: &Path,
        data: &Path,
        device: &B::Device,
    ) -> Result<(Self, ReferenceCheckpoint), Error> {
        let (run, reference, _) = open_reference(checkpoint, data, device)?;
        Ok((run, reference))
    }
}

/// [`Run::from_reference_checkpoint`], also giving the checkpoint's weights (an import writes
/// the BERT's out of them).
fn open_reference<B: Backend>(
    checkpoint: &Path,
    data: &Path,
    device: &B::Device,
) -> Result<(Run<B>, ReferenceCheckpoint, WeightFile), Error> {
    let file = TorchCheckpoint::open(checkpoint)?;
    let mut reference = ReferenceCheckpoint::from_checkpoint(&file)?;
    let task = reference.task().ok_or_else(|| {
        Error::input(
            &checkpoint.display().to_string(),
            format!(
                "`output_dim` is {}, expected 3 (binary task) or 7 (seven-class task)",
                reference.num_classes()
            ),
        )
    })?;
    let model_config = reference.config.clone();
    check_memory(
        &model_config.network,
        model_config.num_classes,
        1,
        &checkpoint.display().to_string(),
    )?;
    let weights = WeightFile::from_checkpoint(checkpoint, file);
    let model = model_config
        .init::<B>(device)?
        .load_reference_file(&weights, device)?;
    let run_dir = absolute(checkpoint.parent().unwrap_or(Path::new(".")))?;
    let config = TrainConfig {
        out_dir: run_dir.clone(),
        task,
        data: DataConfig::File(FileData {
            path: absolute(data)?,
        }),
        model: model_config.network.options.clone(),
        ..TrainConfig::default()
    };
    let tokenizer = OnceLock::new();
    if let Some(loaded) = reference.tokenizer.take() {
        let _ = tokenizer.set(loaded);
    }
    let run = Run {
        run_dir,
        model_dir: checkpoint.to_path_buf(),
        config,
        model_config,
        model,
        maci: None,
        best: None,
        tokenizer,
    };
    run.check_data(&Dataset::from_path(data)?)?;
    Ok((run, reference, weights))
}

/// Imports a checkpoint of the authors' code (`.pt`, a whole pickled `CIDERModel`) into the new
/// run directory `out`, for `cider eval` and `cider infer`; `data` is the dataset file the
/// model was trained on (see [`Run::from_reference_checkpoint`]); `prototypes` says whether
/// MACI's training prototypes and priors come from the authors' files.
///
/// # Errors
/// As [`Run::from_reference_checkpoint`]; prototype files that are missing or do not fit the
/// model, or a file name that does not say which belong to it; `out` already existing; any
/// write failure (nothing is left behind).
pub fn import_reference<B: Backend>(
    checkpoint: &Path,
    data: &Path,
    prototypes: &PrototypeSource,
    out: &Path,
    device: &B::Device,
) -> Result<ImportedRun, Error> {
    if out.exists() {
        return Err(Error::input(
            &out.display().to_string(),
            "already exists; give a new directory to import into",
        ));
    }
    let (mut run, reference, weights) = open_reference::<B>(checkpoint, data, device)?;
    if let Some(root) = &prototypes.reference_dir {
        run.maci = Some(reference_maci(
            &run, &reference, checkpoint, data, prototypes, root,
        )?);
    }
    let name = out
        .file_name()
        .ok_or_else(|| Error::input(&out.display().to_string(), "expected a directory name"))?;
    let staging = out.with_file_name(format!(".{}.importing", name.to_string_lossy()));
    let _ = fs::remove_dir_all(&staging);
    let written = write_run(&mut run, &reference, &weights, out, &staging)
        .and_then(|()| fs::rename(&staging, out).map_err(|e| io_error(out, e)));
    if let Err(error) = written {
        let _ = fs::remove_dir_all(&staging);
        return Err(error);
    }
    Ok(ImportedRun {
        run_dir: out.to_path_buf(),
        reference,
    })
}

/// Writes the run directory of `run` into `staging` (renamed to `out` afterwards).
fn write_run<B: Backend>(
    run: &mut Run<B>,
    reference: &ReferenceCheckpoint,
    weights: &WeightFile,
    out: &Path,
    staging: &Path,
) -> Result<(), Error> {
    let best = staging.join(BEST_DIR);
    fs::create_dir_all(&best).map_err(|e| io_error(&best, e))?;
    if run.config.model.text_encoder == TextSource::Bert {
        write_bert_folder(run, weights, &staging.join(BERT_DIR))?;
        run.config.model.bert_dir = Some(absolute(out)?.join(BERT_DIR));
    }
    run.config.out_dir = absolute(out)?;
    let toml = run.config.to_toml_string()?;
    write_file_atomically(&staging.join(CONFIG_TOML), |f| {
        std::io::Write::write_all(f, toml.as_bytes())
    })?;
    save_model(&run.model, &run.model_config, &best)?;
    if let Some(maci) = &run.maci {
        let text = serde_json::to_string_pretty(maci)
            .map_err(|e| Error::input(MACI_FILE, format!("cannot be written as JSON: {e}")))?;
        write_file_atomically(&best.join(MACI_FILE), |f| {
            std::io::Write::write_all(f, text.as_bytes())
        })?;
    }
    let record = json!({
        "source": weights.path().display().to_string(),
        "class": cider_maci::reference_checkpoint::CIDER_MODEL_CLASS,
        "task": run.config.task,
        "file_name": reference.name.as_ref().map(ToString::to_string),
        "discrepancies": reference
            .discrepancies
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&record)
        .map_err(|e| Error::input(IMPORT_FILE, format!("cannot be written as JSON: {e}")))?;
    write_file_atomically(&staging.join(IMPORT_FILE), |f| {
        std::io::Write::write_all(f, text.as_bytes())
    })?;
    Ok(())
}

/// MACI's state from the authors' prototype files under `root` and the bias words of the
/// training split of `data`. Which files: the model's task, alignment and cross-dataset setting,
/// and the dataset and IID / OOD variant given in `source` or else said by the file name.
fn reference_maci<B: Backend>(
    run: &Run<B>,
    reference: &ReferenceCheckpoint,
    checkpoint: &Path,
    data: &Path,
    source: &PrototypeSource,
    root: &Path,
) -> Result<MaciState, Error> {
    let name = reference.name.as_ref();
    let unknown = |what: &str, flag: &str| {
        Error::input(
            &checkpoint.display().to_string(),
            format!(
                "the file name does not follow the reference's \
                 `{{dataset}}_{{aligned|unaligned}}_{{iid|ood}}_{{task}}_CIDER…` pattern, so it \
                 does not say the {what} of the prototype files; give it ({flag})"
            ),
        )
    };
    let dataset = match (&source.dataset, name) {
        (Some(dataset), _) => dataset.clone(),
        (None, Some(name)) => name.dataset.clone(),
        (None, None) => return Err(unknown("dataset", "--dataset")),
    };
    let variant = match (source.variant, name) {
        (Some(variant), _) => variant,
        (None, Some(name)) => name.variant,
        (None, None) => return Err(unknown("IID / OOD variant", "--variant")),
    };
    let files = ReferencePrototypeFiles {
        dataset,
        variant,
        task: run.config.task,
        alignment: run.model_config.network.alignment,
        cross_dataset: reference.hyper_parameters.cross_dataset,
    };
    let n = &run.model_config.network;
    let prototypes = files.read(root, n.d_l + n.d_a + n.d_v)?;
    let train = Dataset::from_path(data)?.train;
    let maci = &run.config.maci;
    let bias_words = bias_words(&train, run.config.task, maci.bias_thresh, maci.bias_rule)?;
    Ok(MaciState {
        bias_words,
        prototypes: prototypes.per_class,
        priors: prototypes.priors,
    })
}

/// The BERT of the checkpoint as a HuggingFace folder: `config.json`, `tokenizer.json` and
/// `model.safetensors` (its weights under `BertModel`'s key names, from `weights`).
fn write_bert_folder<B: Backend>(
    run: &Run<B>,
    weights: &WeightFile,
    dir: &Path,
) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let bert = run.model_config.network.bert.as_ref().ok_or_else(|| {
        Error::input(
            &weights.path().display().to_string(),
            "a BERT text encoder without a BERT configuration",
        )
    })?;
    let config_path = dir.join("config.json");
    bert.save(&config_path)
        .map_err(|e| io_error(&config_path, e))?;
    run.tokenizer()?.save_json(&dir.join("tokenizer.json"))?;
    let tensors = weights
        .keys()
        .into_iter()
        .filter_map(|key| Some(key.strip_prefix(BERT_PREFIX)?.to_string()))
        .filter(|key| !key.ends_with("position_ids"))
        .map(|key| {
            let (shape, values) = weights.get_f32(&format!("{BERT_PREFIX}{key}"))?;
            Ok((key, shape, values))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    write_safetensors(&dir.join("model.safetensors"), &tensors)?;
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|e| io_error(path, e))
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Checkpoint(CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}
