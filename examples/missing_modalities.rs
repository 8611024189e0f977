//! Accuracy against the missing rate for four missing modes — RMFM (random frames of every
//! modality), RMM (whole modalities), TMFM (the same time steps in every modality) and STMFM
//! (one block of time steps) — printed as a table, through the library API (`Run::evaluate`).
//!
//! ```sh
//! cargo run --release --example missing_modalities             # or: ... -- RUN_DIR
//! ```
//!
//! It opens the run given on the command line, else `runs/demo` (written by `cider demo`), else
//! trains a small one first (about a minute on 2 cores). The table takes about two minutes on
//! 2 cores: 20 evaluation points over the run's test split (τ chosen once on validation, as
//! `cider eval` does).

use std::process::ExitCode;

use cider::maci::metrics::Metric;
use cider::prelude::*;

/// The missing rates of the table.
const RATES: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

mod common;

fn main() -> ExitCode {
    let result = common::RunDir::find_or_train().and_then(|run| {
        let result = table(&run.path.display().to_string());
        run.remove_if_temporary();
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn table(run_dir: &str) -> Result<(), cider::Error> {
    let device = Default::default();
    let run = Run::<DefaultBackend>::open(run_dir, &device)?;
    let data = run.config.data.load()?;
    let headline = Metric::headline(run.task());
    println!("{headline} on the test split of {run_dir} (τ chosen on validation)\n");
    let mut header = format!("{:>6}", "mode");
    for rate in RATES {
        header.push_str(&format!(" {rate:>6.2}"));
    }
    println!("{header}");
    for mode in [
        EvalMode::Rmfm,
        EvalMode::Rmm,
        EvalMode::Tmfm,
        EvalMode::Stmfm,
    ] {
        let protocol = ProtocolConfig {
            mode,
            rates: RATES.to_vec(),
            ..ProtocolConfig::default()
        };
        let results = run.evaluate(&data, &data, "test", &protocol, &device, |_| {})?;
        let mut row = format!("{:>6}", mode.name());
        for point in &results.points {
            row.push_str(&format!(
                " {:>6.3}",
                point.metrics.get(headline).unwrap_or(f64::NAN)
            ));
        }
        println!("{row}");
    }
    Ok(())
}
