//! `cider train --config FILE.toml [--set KEY=VALUE]… [--resume]`: MSSD training with
//! validation-based selection (docs/method.md §6); writes the run directory (checkpoints, `best/`,
//! `metrics.csv`, `metrics.json`, the resolved `config.toml`) and prints its path.

use std::path::PathBuf;

use burn::module::Module;
use clap::Args;

use cider_train::backend::SelectedAutodiff;
use cider_train::epoch_record::EpochRecord;
use cider_train::train_config::TrainConfig;
use cider_train::trainer::{TrainProgress, TrainSummary, Trainer};
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::CliError;
use crate::values;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// TOML configuration (keys in docs/configuration.md; all optional). Without it, the
    /// defaults: the synthetic MOSI-aligned dataset, docs/method.md §9 hyper-parameters.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one key, e.g. `--set model.num_heads=4` or `--set data.variant=iid`
    /// (repeatable; applied after the file, before the flags below).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Maximum number of epochs (`epochs`).
    #[arg(long, allow_negative_numbers = true, value_parser = values::at_least_one)]
    epochs: Option<usize>,
    /// Training seed (`seed`).
    #[arg(long, allow_negative_numbers = true, value_parser = values::seed_u64)]
    seed: Option<u64>,
    /// Run directory (`out_dir`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Batch size (`batch_size`).
    #[arg(long, allow_negative_numbers = true, value_parser = values::at_least_one)]
    batch_size: Option<usize>,
    /// Synthetic layout (`data.layout`): mosi-aligned, mosi-unaligned, mosei-aligned,
    /// mosei-unaligned.
    #[arg(long)]
    layout: Option<String>,
    /// Synthetic variant (`data.variant`): iid or ood.
    #[arg(long)]
    variant: Option<String>,
    /// Continue the run in the output directory from its last checkpoint (the configuration
    /// must match; only `epochs`, `patience` and `out_dir` may change).
    #[arg(long)]
    resume: bool,
    /// No progress bar and no per-epoch lines.
    #[arg(long)]
    quiet: bool,
}

impl TrainArgs {
    /// `--set` items followed by the explicit flags, as `key=value` overrides.
    fn overrides(&self) -> Vec<String> {
        // Strings are written as TOML basic strings (JSON string syntax is a subset).
        let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let mut items = self.set.clone();
        if let Some(n) = self.epochs {
            items.push(format!("epochs={n}"));
        }
        if let Some(n) = self.seed {
            items.push(format!("seed={n}"));
        }
        if let Some(dir) = &self.out {
            items.push(format!("out_dir={}", quoted(&dir.to_string_lossy())));
        }
        if let Some(n) = self.batch_size {
            items.push(format!("batch_size={n}"));
        }
        if let Some(layout) = &self.layout {
            items.push(format!("data.layout={}", quoted(layout)));
        }
        if let Some(variant) = &self.variant {
            items.push(format!("data.variant={}", quoted(variant)));
        }
        items
    }
}

/// One line per finished epoch.
fn epoch_line(record: &EpochRecord) -> String {
    format!(
        "epoch {:>3}  loss {:.4}  {} {} {:.4} (τ {:.1}){}  {:.1} s  {:.1} samples/s",
        record.epoch,
        record.train_loss,
        record.split,
        record.metric,
        record.value,
        record.tau,
        if record.improved { " *" } else { "" },
        record.train_seconds + record.eval_seconds,
        record.samples_per_second
    )
}

pub fn run(args: &TrainArgs) -> Result<(), CliError> {
    let overrides = args.overrides();
    let config = match &args.config {
        Some(path) => TrainConfig::from_file(path, &overrides)?,
        None => TrainConfig::from_toml_str("", "default configuration", &overrides)?,
    };
    train(config, args.resume, args.quiet).map(|_| ())
}

/// Trains (or resumes) a run with progress output unless `quiet`; prints the run directory and
/// its best epoch.
pub fn train(config: TrainConfig, resume: bool, quiet: bool) -> Result<TrainSummary, CliError> {
    let mut trainer = Trainer::<SelectedAutodiff>::open(config, Default::default(), resume)?;
    if !quiet {
        let state = trainer.state();
        let what = if state.epoch > 0 {
            "resuming"
        } else {
            "training"
        };
        eprintln!(
            "{what} in {} (epoch {} of {})",
            trainer.run_dir().display(),
            state.epoch + 1,
            trainer.config().epochs
        );
        if let Some(model) = trainer.model() {
            eprintln!(
                "backbone {}, classifier {}: {} parameters ({} trained)",
                model.network.kind().name(),
                if model.linear_head.is_some() {
                    "linear"
                } else {
                    "maci"
                },
                model.num_params(),
                model.trained_params()
            );
        }
    }
    let mut bar = EpochBar::default();
    let summary = trainer.run(|progress| {
        if !quiet {
            bar.show(progress);
        }
    })?;
    let stop = if summary.stopped_early {
        "stopped early"
    } else {
        "finished"
    };
    match &summary.best {
        Some(best) => println!(
            "{} ({stop} after {} epochs; best epoch {}: {} {} = {:.4} at τ {:.1})",
            summary.run_dir.display(),
            summary.epochs,
            best.epoch,
            best.split,
            best.metric,
            best.value,
            best.tau
        ),
        None => println!(
            "{} ({stop} after {} epochs)",
            summary.run_dir.display(),
            summary.epochs
        ),
    }
    Ok(summary)
}

/// The per-batch progress bar of one epoch (hidden when stderr is not a terminal), then the
/// epoch's line.
#[derive(Default)]
struct EpochBar {
    bar: Option<ProgressBar>,
}

impl EpochBar {
    fn show(&mut self, progress: TrainProgress<'_>) {
        match progress {
            TrainProgress::Batch {
                epoch,
                epochs,
                batches,
                loss,
                ..
            } => {
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = ProgressBar::new(batches as u64);
                    if let Ok(style) = ProgressStyle::with_template(
                        "epoch {prefix} [{bar:30}] {pos}/{len} batches, {per_sec}, {msg} (eta {eta})",
                    ) {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    bar.set_prefix(format!("{epoch}/{epochs}"));
                    bar
                });
                bar.set_message(format!("loss {loss:.4}"));
                bar.inc(1);
            }
            TrainProgress::Evaluating { .. } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
            }
            TrainProgress::Epoch(record) => eprintln!("{}", epoch_line(record)),
        }
    }
}
