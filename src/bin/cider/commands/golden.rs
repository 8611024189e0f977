//! `cider check-golden DIR`: runs the model on the inputs saved by the reference PyTorch harness
//! and compares every forward output (largest absolute error) and, when the folder holds them,
//! the MSSD training step's losses, gradients and updated weights (largest relative error).
//! `--weights FILE` takes the weights from FILE (safetensors, or the reference's own `.pt`).
//! A folder of MMSA's MulT (`golden.json` names `MULT`) is checked as MulT: its outputs, then
//! its loss and gradients in the training-step table.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use cider_maci::golden::{GoldenReport, GoldenStatus, check_golden};
use cider_train::backend::{Selected, SelectedAutodiff};
use cider_train::golden_step::mult::{check_mult_golden, is_mult_golden};
use cider_train::golden_step::report::StepCheckReport;
use cider_train::golden_step::{STEP_TOLERANCE, check_training_step};

use crate::error::CliError;
use crate::values;

/// The reference files of the training step; without them the step is not checked.
const STEP_FILES: [&str; 3] = [
    "grads_pass1.safetensors",
    "grads_pass2_accumulated.safetensors",
    "model_after_step.safetensors",
];

#[derive(Debug, Args)]
pub struct GoldenArgs {
    /// A golden folder written by the reference harness (`testdata/torch-golden/<config>`).
    dir: PathBuf,
    /// Take the weights from this file instead of `DIR/model.safetensors`: a `.safetensors`
    /// file, or a PyTorch `.pt` / `.pth` file (a whole pickled module, as the reference saves
    /// its models, or a state dict).
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Largest absolute error allowed on a forward output.
    #[arg(long, default_value_t = 1e-4, allow_negative_numbers = true, value_parser = values::non_negative)]
    tol: f64,
    /// Largest relative error (to each tensor's largest magnitude) allowed on the training
    /// step's losses, gradients and weights.
    #[arg(long, default_value_t = STEP_TOLERANCE, allow_negative_numbers = true, value_parser = values::non_negative)]
    step_tol: f64,
}

pub fn run(args: &GoldenArgs) -> Result<(), CliError> {
    for (flag, tol) in [("--tol", args.tol), ("--step-tol", args.step_tol)] {
        if !(tol.is_finite() && tol >= 0.0) {
            return Err(CliError::Usage(format!(
                "{flag} {tol}: expected a finite tolerance ≥ 0"
            )));
        }
    }
    let device = Default::default();
    let (forward, step) = if is_mult_golden(&args.dir) {
        let (forward, step) =
            check_mult_golden::<SelectedAutodiff>(&args.dir, args.weights.as_deref(), &device)?;
        (forward, Some(step))
    } else {
        cider_golden(args, &device)?
    };
    report(args, &forward, step.as_ref())
}

/// The forward check of a CIDer golden folder, and the MSSD step when the folder has its files.
fn cider_golden(
    args: &GoldenArgs,
    device: &<Selected as burn::tensor::backend::BackendTypes>::Device,
) -> Result<(GoldenReport, Option<StepCheckReport>), CliError> {
    let forward = check_golden::<Selected>(&args.dir, args.weights.as_deref(), device)?;
    let has_step = STEP_FILES.iter().all(|f| args.dir.join(f).is_file());
    let step = if has_step {
        Some(check_training_step::<SelectedAutodiff>(
            &args.dir,
            args.weights.as_deref(),
            device,
        )?)
    } else {
        None
    };
    Ok((forward, step))
}

/// Prints the reports (text or JSON) and fails when anything is above its tolerance.
fn report(
    args: &GoldenArgs,
    forward: &GoldenReport,
    step: Option<&StepCheckReport>,
) -> Result<(), CliError> {
    let forward_failures = forward.failures(args.tol).len();
    let step_failures = step.map_or(0, |s| s.failures(args.step_tol).len());
    if args.json {
        let report = json!({
            "dir": forward.dir,
            "config": forward.config,
            "tol": args.tol,
            "step_tol": args.step_tol,
            "passed": forward_failures + step_failures == 0,
            "forward": forward.entries.iter()
                .filter(|e| !matches!(e.status, GoldenStatus::NotChecked { .. }))
                .collect::<Vec<_>>(),
            "training_step": match step {
                Some(step) => json!(step),
                None => json!({"status": "not_checked", "reason": "the folder has no training-step files"}),
            },
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| CliError::Usage(e.to_string()))?
        );
    } else {
        print_forward(forward, args.tol);
        match step {
            Some(step) => print_step(step, args.step_tol),
            None => println!("\ntraining step: not checked (no training-step files)"),
        }
    }
    if forward_failures + step_failures > 0 {
        return Err(CliError::Usage(format!(
            "{}: golden check failed: {forward_failures} forward output(s) above --tol {:e}, \
             {step_failures} training-step entr(ies) above --step-tol {:e}",
            args.dir.display(),
            args.tol,
            args.step_tol
        )));
    }
    Ok(())
}

/// `ok` or `FAIL` for an error against a tolerance (NaN fails).
fn verdict(error: f64, tol: f64) -> &'static str {
    if error <= tol { "ok" } else { "FAIL" }
}

fn print_forward(report: &GoldenReport, tol: f64) {
    println!("golden check {} ({})", report.config, report.dir);
    println!(
        "{:<34} {:>16} {:>14}  status (tol {tol:e})",
        "forward output", "shape", "max abs error"
    );
    for entry in &report.entries {
        match &entry.status {
            GoldenStatus::Checked {
                shape,
                max_abs_error,
            } => println!(
                "{:<34} {:>16} {:>14.3e}  {}",
                entry.name,
                format!("{shape:?}"),
                max_abs_error,
                verdict(*max_abs_error, tol)
            ),
            GoldenStatus::ShapeMismatch { expected, actual } => println!(
                "{:<34} {:>16} {:>14}  FAIL (reference shape {expected:?})",
                entry.name,
                format!("{actual:?}"),
                "-"
            ),
            GoldenStatus::Unknown => println!(
                "{:<34} {:>16} {:>14}  FAIL (not an output of the model)",
                entry.name, "-", "-"
            ),
            GoldenStatus::NotChecked { .. } => {}
        }
    }
    if let Some(max) = report.max_abs_error() {
        println!("largest forward error: {max:.3e}");
    }
}

fn print_step(report: &StepCheckReport, tol: f64) {
    println!();
    println!(
        "{:<34} {:>14}  {:<6} detail (--step-tol {tol:e})",
        "training step", "error", "status"
    );
    for loss in &report.losses {
        println!(
            "{:<34} {:>14.3e}  {:<6} relative; ours {}, reference {}",
            format!("loss {}", loss.name),
            loss.relative_error,
            verdict(loss.relative_error, tol),
            loss.ours,
            loss.reference
        );
    }
    for file in &report.files {
        // Each tensor's error in units of what it is allowed: tol · max|ref| + noise floor.
        let worst = file.worst(tol).map(|t| (t.usage(tol, file.noise_floor), t));
        let failing = file
            .tensors
            .iter()
            .filter(|t| !t.passes(tol, file.noise_floor))
            .count();
        let complete = file.missing.is_empty() && file.unexpected.is_empty();
        let status = if failing == 0 && complete {
            "ok"
        } else {
            "FAIL"
        };
        let (error, mut detail) = match worst {
            Some((r, t)) => (
                r,
                format!(
                    "error / allowed; worst {} (max abs {:.2e}, scale {:.2e}); {failing} failing",
                    t.param, t.max_abs_error, t.scale
                ),
            ),
            None => (f64::NAN, "no tensor compared".to_string()),
        };
        if !complete {
            detail.push_str(&format!(
                "; {} missing, {} unexpected parameters",
                file.missing.len(),
                file.unexpected.len()
            ));
        }
        println!(
            "{:<34} {:>14.3e}  {status:<6} {detail}",
            format!("{} ({} tensors)", file.name, file.tensors.len()),
            error
        );
    }
}
