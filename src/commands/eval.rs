//! `cider eval --checkpoint RUN`: the robustness protocol of docs/method.md §8.2 on a trained model:
//! every missing rate of a grid (or the SMM subsets), MACI with τ chosen on the validation
//! split and with the reference's oracle τ, AUILC; writes `results.json` and `results.csv`.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Map, Value};

use cider_causal::counterfactual::TauSelection;
use cider_causal::metrics::Metric;
use cider_causal::model::{Cider, CiderConfig, Classifier};
use cider_causal::prototypes::{Prototypes, TextFeatures};
use cider_data::bias::bias_words;
use cider_data::dataset::{Dataset, Split};
use cider_data::missing::DEFAULT_MISSING_SEED;
use cider_data::missing_mode::EvalMode;
use cider_data::synth::Variant;
use cider_train::backend::Selected;
use cider_train::checkpoint::{BEST_DIR, MODEL_CONFIG, STATE_FILE, load_model, read_json};
use cider_train::config::{DataConfig, TrainConfig};
use cider_train::evaluate::{
    Debiasing, EVAL_BATCH_SIZE, EvalData, EvalError, ProtocolConfig, ProtocolResults, parse_rates,
    run_protocol,
};
use cider_train::results::ResultsFile;
use cider_train::trainer::{BestInfo, CONFIG_TOML, MACI_FILE, MaciState};

use crate::error::CliError;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory written by `cider train` (its `best/` model is evaluated), or a model
    /// directory holding `model.json` and `model.mpk`.
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// Missing mode.
    #[arg(long, value_enum, default_value = "rmfm")]
    pub(crate) mode: EvalMode,
    /// Missing rates: `start:end:step` or a comma list, each in [0, 1], increasing.
    #[arg(long, default_value = "0:1:0.1")]
    pub(crate) rates: String,
    /// Split to evaluate (`test`, `valid`; τ is always chosen on `valid`).
    #[arg(long, default_value = "test")]
    pub(crate) split: String,
    /// Which τ rule the printed table shows (results.json always holds both).
    #[arg(long, value_enum, default_value = "validation")]
    pub(crate) tau: TauSelection,
    /// MACI debiasing or the plain prediction (default: maci, or no-maci for a model trained
    /// with the linear-head ablation).
    #[arg(long, value_enum)]
    pub(crate) debiasing: Option<Debiasing>,
    /// Evaluate on another dataset file than the run's (e.g. cross-dataset); bias words and
    /// prototypes still come from the run's training split.
    #[arg(long, conflicts_with = "variant")]
    pub(crate) data: Option<PathBuf>,
    /// For a run on the built-in synthetic data: evaluate the test split of this variant of
    /// the same generator (`iid` or `ood`; training and validation splits are the same in both).
    #[arg(long, value_enum)]
    pub(crate) variant: Option<Variant>,
    /// Samples per batch, in file order.
    #[arg(long, default_value_t = EVAL_BATCH_SIZE)]
    pub(crate) batch_size: usize,
    /// NumPy legacy seed of the evaluation masks.
    #[arg(long, default_value_t = DEFAULT_MISSING_SEED)]
    pub(crate) seed: u32,
    /// Output folder for results.json / results.csv (default: `<run>/eval-<mode>`).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

/// A trained model with its run's configuration and data.
pub struct RunModel {
    /// The run directory (holds `config.toml`).
    pub run_dir: PathBuf,
    /// The directory the model was read from (`<run>/best`).
    pub model_dir: PathBuf,
    /// The run's training configuration.
    pub config: TrainConfig,
    /// The model's architecture.
    pub model_config: CiderConfig,
    /// The model, on the plain (inference) backend: no dropout.
    pub model: Cider<Selected>,
    /// `maci.json`: bias words and training prototypes saved with the model, if present.
    pub maci: Option<MaciState>,
    /// `state.json`: the epoch and validation τ of the model, if present.
    pub best: Option<BestInfo>,
}

impl RunModel {
    /// Opens a run directory (its `best/` model) or a model directory inside a run.
    pub fn open(path: &Path) -> Result<Self, CliError> {
        let (run_dir, model_dir) = if path.join(MODEL_CONFIG).is_file() {
            let run = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            (run, path.to_path_buf())
        } else {
            (path.to_path_buf(), path.join(BEST_DIR))
        };
        let config_path = run_dir.join(CONFIG_TOML);
        if !config_path.is_file() {
            return Err(CliError::Usage(format!(
                "{}: not a run directory of `cider train` (no {CONFIG_TOML} in {})",
                path.display(),
                run_dir.display()
            )));
        }
        let config = TrainConfig::from_file(&config_path, &[])?;
        if !model_dir.join(MODEL_CONFIG).is_file() {
            return Err(CliError::Usage(format!(
                "{}: no trained model (expected {})",
                path.display(),
                model_dir.join(MODEL_CONFIG).display()
            )));
        }
        let (model_config, model) = load_model::<Selected>(&model_dir, &Default::default())?;
        let optional = |name: &str| model_dir.join(name).is_file().then(|| model_dir.join(name));
        let maci = optional(MACI_FILE).map(|p| read_json(&p)).transpose()?;
        let best = optional(STATE_FILE).map(|p| read_json(&p)).transpose()?;
        Ok(Self {
            run_dir,
            model_dir,
            config,
            model_config,
            model,
            maci,
            best,
        })
    }

    /// The bias words (docs/method.md §4.1) and training prototypes and priors (docs/method.md §7.2) saved with
    /// the model in `maci.json`; without that file, computed from the training split (`train`,
    /// or the run's data read here) with the run's bias-word threshold and rule.
    pub fn maci_parts(&self, train: Option<&Split>) -> Result<(Vec<u32>, Prototypes), CliError> {
        if let Some(maci) = &self.maci {
            let prototypes = Prototypes::new(maci.prototypes.clone(), maci.priors.clone())
                .map_err(EvalError::from)?;
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
        let prototypes = Prototypes::from_split(train, task, TextFeatures::FromSplit)
            .map_err(EvalError::from)?;
        Ok((bias, prototypes))
    }

    /// The test-time prototypes of an evaluated split under the run's rule.
    pub fn test_prototypes(
        &self,
        train: &Prototypes,
        split: &Split,
    ) -> Result<Prototypes, CliError> {
        self.config
            .maci
            .test_prototypes
            .build(train, split, self.config.task, TextFeatures::FromSplit)
            .map_err(|e| EvalError::from(e).into())
    }

    /// MACI for the MCM, the plain prediction for the linear-head ablation.
    pub fn default_debiasing(&self) -> Debiasing {
        match self.model_config.classifier {
            Classifier::Maci => Debiasing::Maci,
            Classifier::Linear => Debiasing::NoMaci,
        }
    }
}

pub fn run(args: &EvalArgs) -> Result<(), CliError> {
    evaluate(args).map(|_| ())
}

/// Runs the protocol of `args`, prints its table and writes `results.json` / `results.csv`;
/// returns the results and the path of `results.json`.
pub fn evaluate(args: &EvalArgs) -> Result<(ProtocolResults, PathBuf), CliError> {
    let mode = args.mode;
    let rates = if mode == EvalMode::Smm {
        Vec::new()
    } else {
        parse_rates(&args.rates).map_err(|e| CliError::Usage(format!("--rates: {e}")))?
    };
    if args.batch_size == 0 {
        return Err(CliError::Usage("--batch-size: expected at least 1".into()));
    }
    let run = RunModel::open(&args.checkpoint)?;
    let train_data = run.config.data.load()?;
    let evaluated_data = match (&args.data, args.variant) {
        (Some(path), _) => Some(Dataset::from_path(path)?),
        (None, Some(variant)) => Some(synthetic_variant(&run, variant)?),
        (None, None) => None,
    };
    let evaluated_set = evaluated_data.as_ref().unwrap_or(&train_data);
    let evaluated = evaluated_set.split(&args.split)?;
    let (bias, train_prototypes) = run.maci_parts(Some(&train_data.train))?;
    let valid_prototypes = run.test_prototypes(&train_prototypes, &train_data.valid)?;
    let prototypes = run.test_prototypes(&train_prototypes, evaluated)?;
    let debiasing = args.debiasing.unwrap_or_else(|| run.default_debiasing());
    let protocol = ProtocolConfig {
        mode,
        rates,
        debiasing,
        seed: args.seed,
        batch_size: args.batch_size,
    };
    let data = EvalData {
        task: run.config.task,
        valid: &train_data.valid,
        evaluated,
        bias_words: &bias,
        valid_prototypes: &valid_prototypes,
        prototypes: &prototypes,
    };
    let headline = Metric::headline(run.config.task);
    eprintln!(
        "evaluating {} on {} split `{}` ({} samples), {}, {}",
        run.model_dir.display(),
        evaluated_set.source,
        args.split,
        evaluated.n,
        mode.name(),
        debiasing.name()
    );
    let results = run_protocol(&run.model, &data, &protocol, &Default::default(), |point| {
        eprintln!(
            "  {} {:>5}: {headline} {:.4} (oracle {:.4})",
            mode.name(),
            point.point.label(),
            point.metrics.get(headline).unwrap_or(f64::NAN),
            point.oracle.get(headline).unwrap_or(f64::NAN)
        );
    })?;

    let mut settings = Map::new();
    settings.insert("checkpoint".into(), path_value(&run.model_dir));
    settings.insert("split".into(), Value::from(args.split.clone()));
    settings.insert("data".into(), Value::from(evaluated_set.source.clone()));
    let variant = match (&args.data, &run.config.data) {
        (None, DataConfig::Synthetic(synthetic)) => Some(args.variant.unwrap_or(synthetic.variant)),
        _ => None,
    };
    if let Some(variant) = variant {
        settings.insert("variant".into(), Value::from(variant.name()));
    }
    settings.insert("rates".into(), Value::from(args.rates.clone()));
    let train_config = serde_json::to_value(&run.config)
        .map_err(|e| CliError::Usage(format!("the run's configuration: {e}")))?;
    settings.insert("train_config".into(), train_config);
    let file = ResultsFile::from_protocol(&results, settings);
    let out = args.out.clone().unwrap_or_else(|| {
        run.run_dir
            .join(format!("eval-{}", mode.name().to_ascii_lowercase()))
    });
    let [json, csv] = file.write(&out)?;
    print_table(&results, args.tau);
    eprintln!("wrote {} and {}", json.display(), csv.display());
    Ok((results, json))
}

/// The run's synthetic dataset drawn with another variant.
fn synthetic_variant(run: &RunModel, variant: Variant) -> Result<Dataset, CliError> {
    match &run.config.data {
        DataConfig::Synthetic(synthetic) => {
            let mut synthetic = synthetic.clone();
            synthetic.variant = variant;
            Ok(DataConfig::Synthetic(synthetic).load()?)
        }
        DataConfig::File(file) => Err(CliError::Usage(format!(
            "--variant: the run {} was trained on the file {}, not on the synthetic data; use --data",
            run.run_dir.display(),
            file.path.display()
        ))),
    }
}

fn path_value(path: &Path) -> Value {
    Value::from(path.display().to_string())
}

/// The per-point table of one τ rule, then the AUILC row.
pub fn print_table(results: &ProtocolResults, rule: TauSelection) {
    let metrics = Metric::for_task(results.task);
    let rule_name = match rule {
        TauSelection::Validation => format!("τ = {} (validation)", results.tau.value()),
        TauSelection::Oracle => "oracle τ".to_string(),
    };
    println!(
        "{} · {} · {rule_name}",
        results.config.mode.name(),
        results.config.debiasing.name()
    );
    let mut header = format!(
        "{:>7}",
        if results.rates().is_empty() {
            "subset"
        } else {
            "rate"
        }
    );
    for m in metrics {
        header.push_str(&format!(" {:>14}", m.name()));
    }
    println!("{header}");
    for point in &results.points {
        let values = match rule {
            TauSelection::Validation => &point.metrics,
            TauSelection::Oracle => &point.oracle,
        };
        let mut row = format!("{:>7}", point.point.label());
        for &m in metrics {
            row.push_str(&format!(" {:>14.4}", values.get(m).unwrap_or(f64::NAN)));
        }
        println!("{row}");
    }
    if results.rates().len() >= 2 {
        let mut row = format!("{:>7}", "AUILC");
        for &m in metrics {
            row.push_str(&format!(
                " {:>14.3}",
                results.auilc(m, rule).unwrap_or(f64::NAN)
            ));
        }
        println!("{row}");
    }
}
