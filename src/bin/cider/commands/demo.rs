//! `cider demo`: the whole job on the built-in synthetic data, with no arguments. Trains CIDer
//! (MSSD + MACI) once, evaluates it over the 11 missing rates on the IID test split and on the
//! OOD test split (same training and validation data, shifted test split), prints both tables
//! and a summary, and draws the curves of both into one set of SVG charts.

use std::path::PathBuf;

use clap::Args;

use cider_data::missing::DEFAULT_MISSING_SEED;
use cider_maci::counterfactual::TauSelection;
use cider_maci::inference::EVAL_BATCH_SIZE;
use cider_maci::metrics::Metric;
use cider_maci::tau_rules::TauChoice;
use cider_train::evaluate::ProtocolResults;
use cider_train::plot::write_charts;
use cider_train::results::ResultsFile;
use cider_train::train_config::TrainConfig;

use cider_data::missing_mode::EvalMode;
use cider_data::synth::Variant;

use crate::commands::eval::{EvalArgs, Table, evaluate};
use crate::commands::train::train;
use crate::error::CliError;
use crate::values;

/// Epochs of the demo's training run: enough for the synthetic data's curves to separate,
/// few enough for the whole demo to finish in minutes on two cores (docs/results.md).
pub const DEMO_EPOCHS: usize = 6;

/// Batch size of the demo's training run: four times the updates per epoch of the default 128,
/// which the synthetic task needs to learn in a few epochs.
pub const DEMO_BATCH_SIZE: usize = 32;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output folder: the run (`best/`, metrics), `eval-iid/`, `eval-ood/` and `plots/`.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Training epochs.
    #[arg(long, default_value_t = DEMO_EPOCHS, allow_negative_numbers = true, value_parser = values::at_least_one)]
    epochs: usize,
    /// Training seed (the data keep their own seed, 1111).
    #[arg(long, default_value_t = 1111, allow_negative_numbers = true, value_parser = values::seed_u64)]
    seed: u64,
    /// No progress bar and no per-epoch lines.
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: &DemoArgs) -> Result<(), CliError> {
    let out_dir = serde_json::to_string(&args.out.to_string_lossy())
        .map_err(|e| CliError::Usage(format!("--out: {e}")))?;
    let overrides = [
        format!("out_dir={out_dir}"),
        format!("epochs={}", args.epochs),
        format!("patience={}", args.epochs),
        format!("seed={}", args.seed),
        format!("batch_size={DEMO_BATCH_SIZE}"),
    ];
    let config = TrainConfig::from_toml_str("", "demo configuration", &overrides)?;
    train(config, false, args.quiet)?;

    let mut evaluated = Vec::new();
    for (variant, label) in [(Variant::Iid, "IID"), (Variant::Ood, "OOD")] {
        println!("\n{label} test split");
        let eval = EvalArgs {
            checkpoint: args.out.clone(),
            mode: EvalMode::Rmfm,
            rates: "0:1:0.1".into(),
            split: "test".into(),
            tau: TauChoice::default(),
            table: Table::Chosen,
            debiasing: None,
            data: None,
            variant: Some(variant),
            shift: None,
            batch_size: EVAL_BATCH_SIZE,
            seed: DEFAULT_MISSING_SEED,
            out: Some(
                args.out
                    .join(format!("eval-{}", label.to_ascii_lowercase())),
            ),
        };
        let (results, json) = evaluate(&eval)?;
        evaluated.push((label, results, json));
    }

    let files = evaluated
        .iter()
        .map(|(label, _, json)| Ok((label.to_string(), ResultsFile::read(json)?)))
        .collect::<Result<Vec<_>, CliError>>()?;
    let plots = args.out.join("plots");
    let charts = write_charts(&files, TauSelection::Validation, &plots)?;

    println!(
        "\nsummary (τ by the `{}` rule, no test labels; oracle τ in brackets)",
        TauChoice::default()
    );
    for (label, results, _) in &evaluated {
        println!("{}", summary_line(label, results));
    }
    println!(
        "\n{} charts in {}; results.json in {}/eval-iid and {}/eval-ood",
        charts.len(),
        plots.display(),
        args.out.display(),
        args.out.display()
    );
    Ok(())
}

/// `OOD  Non0_acc_2 at rate 0: 0.8123 [0.8301]  AUILC 0.734 [0.751]  τ 0.6`.
fn summary_line(label: &str, results: &ProtocolResults) -> String {
    let metric = Metric::headline(results.task);
    let at_zero = |rule| {
        results
            .series(metric, rule)
            .and_then(|series| series.first().copied())
            .unwrap_or(f64::NAN)
    };
    let auilc = |rule| results.auilc(metric, rule).unwrap_or(f64::NAN);
    format!(
        "{label:<4} {metric} at rate 0: {:.4} [{:.4}]  AUILC {:.3} [{:.3}]  τ {:.1}",
        at_zero(TauSelection::Validation),
        at_zero(TauSelection::Oracle),
        auilc(TauSelection::Validation),
        auilc(TauSelection::Oracle),
        results.tau.value()
    )
}
