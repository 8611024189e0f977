//! Runs the reference golden check (forward passes of the tiny PyTorch CIDer in
//! `testdata/torch-golden/`) on the backend chosen by Cargo feature, to show that a backend
//! computes what the reference computes.
//!
//! ```sh
//! cargo run --release --example golden_backend                        # flex (CPU)
//! cargo run --release --no-default-features --features wgpu --example golden_backend
//! ```
//!
//! On a machine without a GPU, wgpu runs on Mesa's software Vulkan driver
//! (`apt-get install mesa-vulkan-drivers`); the first run compiles its kernels (minutes).

use std::path::PathBuf;
use std::process::ExitCode;

use cider_causal::golden::check_golden;
use cider_train::backend::{NAME, Selected};

/// Largest absolute error accepted, as `cider check-golden`'s default.
const TOLERANCE: f64 = 1e-4;

fn main() -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/torch-golden");
    let device = Default::default();
    let mut ok = true;
    for folder in ["mosi-aligned-small", "mosi-unaligned-small"] {
        match check_golden::<Selected>(&root.join(folder), &device) {
            Ok(report) => {
                let worst = report.max_abs_error().unwrap_or(f64::NAN);
                let pass = report.passes(TOLERANCE);
                ok &= pass;
                println!(
                    "{NAME} {folder}: {} outputs, largest abs error {worst:.3e} ({})",
                    report.entries.len(),
                    if pass { "pass" } else { "FAIL" }
                );
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
