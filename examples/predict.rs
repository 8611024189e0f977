//! Opens a trained run and predicts one utterance of its test split, complete and with the
//! audio missing, through the library API (`cider::Run`, `Utterance`, `Prediction`).
//!
//! ```sh
//! cargo run --release --example predict            # or: --example predict -- RUN_DIR
//! ```
//!
//! It opens the run given on the command line, else `runs/demo` (written by `cider demo`), else
//! trains a small one first (about a minute on 2 cores). The prediction itself takes a few
//! seconds: it loads the model, regenerates the run's data and runs two forward passes.

use std::process::ExitCode;

use cider::prelude::*;

mod common;

fn main() -> ExitCode {
    let result = common::RunDir::find_or_train().and_then(|run| {
        let result = predict(&run.path.display().to_string());
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
