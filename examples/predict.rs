//! Opens a trained run and predicts one utterance of its test split, complete and with the
//! audio missing, through the library API (`cider::Run`, `Utterance`, `Prediction`).
//!
//! ```sh
//! cargo run --release -- demo                      # writes the run runs/demo (≈ 8 min)
//! cargo run --release --example predict            # or: --example predict -- RUN_DIR
//! ```
//!
//! Takes a few seconds after the build: it loads the model, regenerates the run's data and
//! runs two forward passes.

use std::process::ExitCode;

use cider::prelude::*;

fn main() -> ExitCode {
    let run_dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "runs/demo".into());
    match predict(&run_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn predict(run_dir: &str) -> Result<(), cider::Error> {
    let device = Default::default();
    let run = Run::<DefaultBackend>::open(run_dir, &device)?;
    let dataset = run.config.data.load()?;
    let test = dataset.split("test")?;
    let utterance = Utterance::from_sample(test, 0)?;
    println!(
        "run {run_dir}, test sample {:?}, true label {}",
        test.id[0],
        test.label(run.task(), 0)
    );
    for (what, utterance) in [
        ("complete", utterance.clone()),
        ("audio missing", utterance.without_audio()),
    ] {
        let p = run.predict(&utterance, &device)?;
        let probs: Vec<String> = p.debiased.iter().map(|q| format!("{q:.3}")).collect();
        println!(
            "{what:>14}: {} (debiased p = [{}], τ = {})",
            p.label_name,
            probs.join(", "),
            p.tau
        );
    }
    Ok(())
}
