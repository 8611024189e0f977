//! Quickstart: train a small CIDer (MSSD + MACI) on the built-in synthetic data, evaluate it
//! at a few random-missing (RMFM) rates, and predict one utterance whose audio is missing, all
//! through the library API.
//!
//! ```sh
//! cargo run --release --example quickstart
//! ```
//!
//! About a minute on 2 cores after the build (3 epochs over 300 samples, then four evaluation
//! points over 150 test samples). The run is written to a temporary folder, removed at the end.

use cider::maci::metrics::Metric;
use cider::prelude::*;

fn main() -> Result<(), cider::Error> {
    let run_dir = std::env::temp_dir().join(format!("cider-quickstart-{}", std::process::id()));
    let result = quickstart(&run_dir);
    // Best effort: the folder may not exist when training failed early.
    let _ = std::fs::remove_dir_all(&run_dir);
    result
}

fn quickstart(run_dir: &std::path::Path) -> Result<(), cider::Error> {
    // 1. Train: the defaults of docs/configuration.md on a small synthetic dataset.
    let config = TrainConfig::quick(run_dir);
    let task = config.task;
    let device = Default::default();
    Trainer::<DefaultTrainingBackend>::open(config, device, false)?.run(|progress| {
        if let TrainProgress::Epoch(epoch) = progress {
            println!(
                "epoch {}: loss {:.4}, {} {} {:.4}",
                epoch.epoch, epoch.train_loss, epoch.split, epoch.metric, epoch.value
            );
        }
    })?;

    // 2. Evaluate the selected model at four missing rates (τ chosen without test labels, by
    //    the default rule; `tau: TauChoice::Validation` would take the validation split's best).
    let run = Run::<DefaultBackend>::open(run_dir, &Default::default())?;
    let data = run.config.data.load()?;
    let protocol = ProtocolConfig {
        rates: vec![0.0, 0.3, 0.6, 0.9],
        ..ProtocolConfig::default()
    };
    let headline = Metric::headline(task);
    let results = run.evaluate(&data, &data, "test", &protocol, &Default::default(), |_| {})?;
    println!(
        "\nRMFM rate  {headline} (τ = {} by the `{}` rule)",
        results.tau.value(),
        results.config.tau
    );
    for point in &results.points {
        println!(
            "{:>9}  {:.4}",
            point.point.label(),
            point.metrics.get(headline).unwrap_or(f64::NAN)
        );
    }

    // 3. Predict the first test utterance, complete and without its audio.
    let test = data.split("test")?;
    let utterance = Utterance::from_sample(test, 0)?;
    println!("\ntest utterance 0, true label {}", test.label(task, 0));
    for (what, utterance) in [
        ("complete", utterance.clone()),
        ("audio missing", utterance.without_audio()),
    ] {
        let p = run.predict(&utterance, &Default::default())?;
        println!(
            "{what:>14}: {} (p = {:.3})",
            p.label_name, p.debiased[p.label]
        );
    }
    Ok(())
}
