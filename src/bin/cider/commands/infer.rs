//! `cider infer --checkpoint RUN`: class probabilities of a trained model for the samples of a
//! dataset split, or for one utterance given as raw text plus audio / vision feature arrays.
//!
//! Inputs are complete (no simulated missingness). Per sample it prints `p(y|x) = exp(ℓ)` of
//! the factual input and, with MACI, the debiased distribution `softmax(ℓ − τ·ℓ_cf)` whose
//! argmax is the prediction (τ from `--tau`, else the validation τ saved with the model).

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use cider::{Frames, Prediction, Run, Text, Utterance, class_names};
use cider_data::dataset::{Dataset, Task};
use cider_model::network_config::TextSource;
use cider_train::backend::Selected;

use crate::error::CliError;
use crate::values;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["data", "text"])))]
pub struct InferArgs {
    /// A run directory written by `cider train` (its `best/` model), or a model directory.
    #[arg(long)]
    checkpoint: PathBuf,
    /// A dataset file (MMSA pickle or CIDer joblib dump): every sample of `--split`.
    #[arg(long, conflicts_with_all = ["audio", "vision"])]
    data: Option<PathBuf>,
    /// Split of `--data`.
    #[arg(long, default_value = "test", requires = "data")]
    split: String,
    /// One raw utterance (needs a checkpoint with a BERT text encoder and its tokenizer).
    #[arg(long, requires_all = ["audio", "vision"])]
    text: Option<String>,
    /// Audio features of the utterance: a `.npy` float array `[frames, d_a]`.
    #[arg(long)]
    audio: Option<PathBuf>,
    /// Vision features of the utterance: a `.npy` float array `[frames, d_v]`.
    #[arg(long)]
    vision: Option<PathBuf>,
    /// τ of `s_τ = ℓ − τ·ℓ_cf` (default: the validation τ saved with the model, else 0).
    #[arg(long, allow_negative_numbers = true, value_parser = values::non_negative)]
    tau: Option<f64>,
    /// Print one JSON object per sample instead of a table.
    #[arg(long)]
    json: bool,
}

/// One line of output.
#[derive(Debug, Serialize)]
struct SampleOutput {
    index: usize,
    id: String,
    /// The true label, when the data has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<u8>,
    /// argmax of the debiased scores.
    prediction: usize,
    /// `exp(ℓ)`, the MCM's distribution for the factual input.
    probs: Vec<f64>,
    /// `softmax(ℓ − τ·ℓ_cf)` (equal to `probs` at τ = 0).
    debiased: Vec<f64>,
}

pub fn run(args: &InferArgs) -> Result<(), CliError> {
    let device = Default::default();
    let run = Run::<Selected>::open(&args.checkpoint, &device)?;
    let task = run.task();
    let (predictions, ids, labels) = match (&args.data, &args.text) {
        (Some(path), _) => {
            let dataset = Dataset::from_path(path)?;
            run.check_data(&dataset)?;
            let split = dataset.split(&args.split)?;
            let labels = (0..split.n).map(|i| Some(split.label(task, i))).collect();
            (
                run.predict_split(split, args.tau, &device)?,
                split.id.clone(),
                labels,
            )
        }
        (None, Some(text)) => {
            if run.config.model.text_encoder == TextSource::Precomputed {
                return Err(CliError::Usage(format!(
                    "{}: the model reads precomputed text features (model.text_encoder = \
                     \"precomputed\"), so raw text cannot be encoded; use --data with a file \
                     that has `text` features",
                    args.checkpoint.display()
                )));
            }
            let network = &run.model_config.network;
            let audio = frames(args.audio.as_deref(), network.t_a, network.d_a, "--audio")?;
            let vision = frames(args.vision.as_deref(), network.t_v, network.d_v, "--vision")?;
            let utterance = Utterance::new(Text::Raw(text.clone()), audio, vision);
            let predictions = run.predict_many(&[utterance], args.tau, &device)?;
            (predictions, vec!["input".to_string()], vec![None])
        }
        (None, None) => {
            return Err(CliError::Usage(
                "give --data FILE, or --text with --audio and --vision".into(),
            ));
        }
    };
    let tau = predictions.first().map_or(0.0, |p| p.tau);
    for (i, prediction) in predictions.into_iter().enumerate() {
        let out = sample_output(
            i,
            ids.get(i).cloned().unwrap_or_default(),
            labels[i],
            prediction,
        );
        if args.json {
            let line = serde_json::to_string(&out).map_err(|e| CliError::Usage(e.to_string()))?;
            println!("{line}");
        } else {
            if i == 0 {
                print_header(task, tau);
            }
            print_row(&out, &class_names(task));
        }
    }
    Ok(())
}

fn sample_output(
    index: usize,
    id: String,
    label: Option<u8>,
    prediction: Prediction,
) -> SampleOutput {
    SampleOutput {
        index,
        id,
        label,
        prediction: prediction.label,
        probs: prediction.probs,
        debiased: prediction.debiased,
    }
}

fn print_header(task: Task, tau: f64) {
    let mut line = format!(
        "{:>6} {:<16} {:>10} {:>10}",
        "index", "id", "label", "prediction"
    );
    for name in class_names(task) {
        line.push_str(&format!(" {:>9}", format!("p({name})")));
    }
    println!("{line}    (debiased probabilities, τ = {tau})");
}

fn print_row(out: &SampleOutput, names: &[String]) {
    let name = |k: usize| names.get(k).cloned().unwrap_or_else(|| k.to_string());
    let label = out.label.map_or("-".to_string(), |l| name(usize::from(l)));
    let mut line = format!(
        "{:>6} {:<16} {:>10} {:>10}",
        out.index,
        out.id,
        label,
        name(out.prediction)
    );
    for p in &out.debiased {
        line.push_str(&format!(" {p:>9.4}"));
    }
    println!("{line}");
}

/// Reads `[frames, d]` features from a `.npy` file; frames beyond `t` are noted (the model
/// reads the first `t`).
fn frames(path: Option<&Path>, t: usize, d: usize, flag: &str) -> Result<Frames, CliError> {
    let path = path.ok_or_else(|| CliError::Usage(format!("{flag} is required with --text")))?;
    let array = cider_data::npy::from_path(path)?;
    let shape = array.shape().to_vec();
    let values = match (array.to_f32(), shape.as_slice()) {
        (Some(values), &[_, width]) if width == d => values,
        _ => {
            return Err(CliError::Usage(format!(
                "{}: expected a float array [frames, {d}], found {} of shape {shape:?}",
                path.display(),
                array.dtype().name()
            )));
        }
    };
    if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
        return Err(CliError::Usage(format!(
            "{}: non-finite value at index {bad}",
            path.display()
        )));
    }
    if shape[0] == 0 {
        return Err(CliError::Usage(format!("{}: no frame", path.display())));
    }
    if shape[0] > t {
        eprintln!(
            "note: {} has {} frames; the model reads the first {t}",
            path.display(),
            shape[0]
        );
    }
    Ok(Frames {
        values,
        frames: shape[0],
    })
}
