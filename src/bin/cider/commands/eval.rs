//! `cider eval --checkpoint RUN`: the robustness protocol of docs/method.md §8.2 on a trained model:
//! every missing rate of a grid (or the SMM subsets), MACI with τ chosen by a rule that reads no
//! test labels (`--tau`, docs/method.md §7.5) and with the reference's oracle τ, AUILC; writes
//! `results.json` and `results.csv`.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Map, Value};

use cider::Run;
use cider_data::dataset::Dataset;
use cider_data::missing::DEFAULT_MISSING_SEED;
use cider_data::missing_mode::EvalMode;
use cider_data::synth::{OodShift, Variant};
use cider_maci::counterfactual::TauSelection;
use cider_maci::inference::{Debiasing, EVAL_BATCH_SIZE};
use cider_maci::metrics::Metric;
use cider_maci::tau_rules::TauChoice;
use cider_train::backend::Selected;
use cider_train::evaluate::{PointResult, ProtocolConfig, ProtocolResults, parse_rates};
use cider_train::results::ResultsFile;
use cider_train::train_config::DataConfig;

use crate::error::CliError;
use crate::values;

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
    #[arg(long, default_value = "0:1:0.1", allow_hyphen_values = true)]
    pub(crate) rates: String,
    /// Split to evaluate (`test`, `valid`); τ rules compare it with `valid` and never read its
    /// labels.
    #[arg(long, default_value = "test")]
    pub(crate) split: String,
    /// How τ is chosen without the test labels: shift-gated (validation's τ unless the test
    /// outputs differ from validation's), validation, balanced-validation, prior-matching,
    /// bias-independence, or a τ of the grid (`0` is no counterfactual debiasing, `0.7` a fixed
    /// τ). See docs/method.md §7.5.
    #[arg(long, default_value = "shift-gated", value_parser = values::tau_choice)]
    pub(crate) tau: TauChoice,
    /// Which figures the printed table shows: under the chosen τ, or the oracle's (results.json
    /// always holds both).
    #[arg(long, value_enum, default_value = "chosen")]
    pub(crate) table: Table,
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
    /// With `--variant ood`: which biases its test split reverses (`both`, the generator's
    /// default; `label` priors only; `language`, the shortcut words only).
    #[arg(long, value_enum, requires = "variant")]
    pub(crate) shift: Option<OodShift>,
    /// Samples per batch, in file order.
    #[arg(long, default_value_t = EVAL_BATCH_SIZE, allow_negative_numbers = true, value_parser = values::at_least_one)]
    pub(crate) batch_size: usize,
    /// NumPy legacy seed of the evaluation masks.
    #[arg(long, default_value_t = DEFAULT_MISSING_SEED, allow_negative_numbers = true, value_parser = values::seed_u32)]
    pub(crate) seed: u32,
    /// Output folder for results.json / results.csv (default: `<run>/eval-<mode>`).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

/// The figures `cider eval` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Table {
    /// Under the τ `--tau` chose.
    Chosen,
    /// Under the oracle τ (per metric and rate, from the test labels).
    Oracle,
}

impl Table {
    fn selection(self) -> TauSelection {
        match self {
            Table::Chosen => TauSelection::Validation,
            Table::Oracle => TauSelection::Oracle,
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
    let run = Run::<Selected>::open(&args.checkpoint, &Default::default())?;
    let train_data = run.config.data.load()?;
    let evaluated_data = match (&args.data, args.variant) {
        (Some(path), _) => Some(Dataset::from_path(path)?),
        (None, Some(variant)) => Some(synthetic_variant(&run, variant, args.shift)?),
        (None, None) => None,
    };
    let evaluated_set = evaluated_data.as_ref().unwrap_or(&train_data);
    run.check_data(evaluated_set)?;
    let evaluated = evaluated_set.split(&args.split)?;
    let debiasing = args.debiasing.unwrap_or_else(|| run.default_debiasing());
    let protocol = ProtocolConfig {
        mode,
        rates,
        debiasing,
        tau: args.tau,
        seed: args.seed,
        batch_size: args.batch_size,
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
    let on_point = |point: &PointResult| {
        eprintln!(
            "  {} {:>5}: {headline} {:.4} (oracle {:.4})",
            mode.name(),
            point.point.label(),
            point.metrics.get(headline).unwrap_or(f64::NAN),
            point.oracle.get(headline).unwrap_or(f64::NAN)
        );
    };
    let results = run.evaluate(
        &train_data,
        evaluated_set,
        &args.split,
        &protocol,
        &Default::default(),
        on_point,
    )?;

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
        if variant == Variant::Ood {
            let shift = args.shift.unwrap_or(match &run.config.data {
                DataConfig::Synthetic(synthetic) => synthetic.ood_shift,
                DataConfig::File(_) => OodShift::Both,
            });
            settings.insert("shift".into(), Value::from(shift.name()));
        }
    }
    settings.insert("rates".into(), Value::from(args.rates.clone()));
    let train_config = serde_json::to_value(&run.config)
        .map_err(|e| CliError::Usage(format!("the run's configuration: {e}")))?;
    settings.insert("train_config".into(), train_config);
    let file = ResultsFile::from_protocol(&results, settings);
    eprintln!(
        "τ = {} by rule `{}`{}",
        results.tau.value(),
        results.config.tau.name(),
        if results.tau_detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", results.tau_detail)
        }
    );
    let out = args.out.clone().unwrap_or_else(|| {
        run.run_dir
            .join(format!("eval-{}", mode.name().to_ascii_lowercase()))
    });
    let [json, csv] = file.write(&out)?;
    print_table(&results, args.table.selection());
    eprintln!("wrote {} and {}", json.display(), csv.display());
    Ok((results, json))
}

/// The run's synthetic dataset drawn with another variant (and, for OOD, another shift).
fn synthetic_variant(
    run: &Run<Selected>,
    variant: Variant,
    shift: Option<OodShift>,
) -> Result<Dataset, CliError> {
    if variant == Variant::Iid && shift.is_some() {
        return Err(CliError::Usage(
            "--shift: the iid variant shifts nothing; use it with --variant ood".into(),
        ));
    }
    match &run.config.data {
        DataConfig::Synthetic(synthetic) => {
            let mut synthetic = synthetic.clone();
            synthetic.variant = variant;
            if let Some(shift) = shift {
                synthetic.ood_shift = shift;
            }
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
        TauSelection::Validation => format!(
            "τ = {} ({})",
            results.tau.value(),
            results.config.tau.name()
        ),
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
