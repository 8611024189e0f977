//! Runs the reference golden checks (the tiny PyTorch CIDer in `testdata/torch-golden/`: every
//! forward output, then one MSSD training step's losses, gradients and updated weights) on the
//! backend chosen by Cargo feature, to show that a backend computes what the reference computes.
//!
//! ```sh
//! cargo run --release --example golden_backend                        # flex (CPU)
//! cargo run --release --features wgpu --example golden_backend        # wgpu
//! ```
//!
//! On a machine without a GPU, wgpu runs on Mesa's software Vulkan driver
//! (`apt-get install mesa-vulkan-drivers`); the first run compiles its kernels (minutes).
//! Exits non-zero when any folder fails.

use std::path::PathBuf;
use std::process::ExitCode;

use cider_maci::golden::check_golden;
use cider_train::backend::{NAME, Selected, SelectedAutodiff};
use cider_train::golden_step::{STEP_TOLERANCE, check_training_step};

/// Largest absolute forward error accepted, as `cider check-golden`'s default.
const TOLERANCE: f64 = 1e-4;

fn main() -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/torch-golden");
    let device = Default::default();
    let mut ok = true;
    for folder in ["mosi-aligned-small", "mosi-unaligned-small"] {
        let dir = root.join(folder);
        match check_golden::<Selected>(&dir, None, &device) {
            Ok(report) => {
                let worst = report.max_abs_error().unwrap_or(f64::NAN);
                let pass = report.passes(TOLERANCE);
                ok &= pass;
                println!(
                    "{NAME} {folder} forward: {} outputs, largest abs error {worst:.6e} ({})",
                    report.entries.len(),
                    if pass { "pass" } else { "FAIL" }
                );
            }
            Err(error) => {
                ok = false;
                eprintln!("error: {error}");
            }
        }
        match check_training_step::<SelectedAutodiff>(&dir, None, &device) {
            Ok(report) => {
                let failures = report.failures(STEP_TOLERANCE);
                ok &= failures.is_empty();
                let largest_loss_error = report
                    .losses
                    .iter()
                    .map(|l| l.relative_error)
                    .fold(0.0, f64::max);
                let largest_share = report
                    .files
                    .iter()
                    .filter_map(|f| f.worst(STEP_TOLERANCE).map(|t| (f, t)))
                    .map(|(f, t)| t.usage(STEP_TOLERANCE, f.noise_floor))
                    .fold(0.0, f64::max);
                println!(
                    "{NAME} {folder} training step: {} losses, largest relative error \
                     {largest_loss_error:.3e}; tensors use at most {largest_share:.3} of their \
                     allowance; {} entries above tolerance ({})",
                    report.losses.len(),
                    failures.len(),
                    if failures.is_empty() { "pass" } else { "FAIL" }
                );
                for failure in failures.iter().take(5) {
                    println!("  {failure}");
                }
            }
            Err(error) => {
                ok = false;
                eprintln!("error: {error}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
