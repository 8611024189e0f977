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
    let utterance = first_utterance(test)?;
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

/// The first sample of a split as an utterance: its text features and WordPiece ids, audio
/// `[frames, d_a]` and vision `[frames, d_v]`.
fn first_utterance(split: &Split) -> Result<Utterance, cider::Error> {
    let d = split.dims;
    let features = split.text_features.as_ref().ok_or_else(|| {
        cider::Error::input(
            "text",
            "this example needs a split with precomputed text features",
        )
    })?;
    let len = split.text_len[0];
    let text = Text::Features {
        values: features[..len * d.d_l].to_vec(),
        ids: split.text_ids[..len].to_vec(),
    };
    let audio = Frames {
        values: split.audio[..split.audio_len[0] * d.d_a].to_vec(),
        frames: split.audio_len[0],
    };
    let vision = Frames {
        values: split.vision[..split.vision_len[0] * d.d_v].to_vec(),
        frames: split.vision_len[0],
    };
    Ok(Utterance::new(text, audio, vision))
}
