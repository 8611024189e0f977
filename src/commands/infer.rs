//! `cider infer --checkpoint RUN`: class probabilities of a trained model for the samples of a
//! dataset split, or for one utterance given as raw text plus audio / vision feature arrays.
//!
//! Inputs are complete (no simulated missingness). Per sample it prints `p(y|x) = exp(ℓ)` of
//! the factual input and, with MACI, the debiased distribution `softmax(ℓ − τ·ℓ_cf)` whose
//! argmax is the prediction (τ from `--tau`, else the validation τ saved with the model).

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use cider_causal::prototypes::Prototypes;
use cider_data::bias::counterfactual_ids;
use cider_data::dataset::{Dataset, Dims, Split, Task, three_way_label};
use cider_data::missing::{DEFAULT_MISSING_SEED, EvalMissing, eval_view};
use cider_model::hf::HfBertFolder;
use cider_train::config::TextEncoder;
use cider_train::evaluate::{Debiasing, EVAL_BATCH_SIZE, predict};

use crate::commands::eval::RunModel;
use crate::error::CliError;

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
    #[arg(long)]
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
    prediction: u8,
    /// `exp(ℓ)`, the MCM's distribution for the factual input.
    probs: Vec<f64>,
    /// `softmax(ℓ − τ·ℓ_cf)` (equal to `probs` at τ = 0).
    debiased: Vec<f64>,
}

pub fn run(args: &InferArgs) -> Result<(), CliError> {
    let run = RunModel::open(&args.checkpoint)?;
    let task = run.config.task;
    let debiasing = run.default_debiasing();
    let tau = match (debiasing, args.tau) {
        (Debiasing::NoMaci, Some(t)) if t != 0.0 => {
            return Err(CliError::Usage(format!(
                "--tau {t}: this model has a linear head (no MACI), τ must be 0"
            )));
        }
        (_, Some(t)) if !(t.is_finite() && t >= 0.0) => {
            return Err(CliError::Usage(format!(
                "--tau {t}: expected a finite τ ≥ 0"
            )));
        }
        (_, Some(t)) => t,
        (Debiasing::NoMaci, None) => 0.0,
        (Debiasing::Maci, None) => run.best.as_ref().map_or(0.0, |b| b.tau),
    };

    let (bias, train_prototypes) = run.maci_parts(None)?;
    let (split, labelled) = match (&args.data, &args.text) {
        (Some(path), _) => (Dataset::from_path(path)?.split(&args.split)?.clone(), true),
        (None, Some(text)) => (raw_sample(&run, text, args)?, false),
        (None, None) => {
            return Err(CliError::Usage(
                "give --data FILE, or --text with --audio and --vision".into(),
            ));
        }
    };
    // Raw samples have no split of their own: the training prototypes' mean (clean rule).
    let prototypes = if labelled {
        run.test_prototypes(&train_prototypes, &split)?
    } else {
        train_prototypes.collapsed()
    };
    let outputs = infer(&run, &split, &bias, &prototypes, debiasing, tau)?;
    for (i, mut out) in outputs.into_iter().enumerate() {
        if labelled {
            out.label = Some(split.label(task, i));
        }
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

/// Runs the model over `split` (complete inputs) and turns `ℓ`, `ℓ_cf` into probabilities.
fn infer(
    run: &RunModel,
    split: &Split,
    bias: &[u32],
    prototypes: &Prototypes,
    debiasing: Debiasing,
    tau: f64,
) -> Result<Vec<SampleOutput>, CliError> {
    let view = eval_view(split, EvalMissing::Rmfm { rate: 0.0 }, DEFAULT_MISSING_SEED)?;
    let cf_ids = (debiasing == Debiasing::Maci && tau != 0.0)
        .then(|| counterfactual_ids(&view.text_m_ids, bias));
    let out = predict(
        &run.model,
        split,
        &view,
        cf_ids.as_deref(),
        prototypes,
        EVAL_BATCH_SIZE,
        &Default::default(),
    )?;
    let c = out.classes;
    let scores = match &out.cf_pred {
        Some(cf) => debiased_with(&out.pred, cf, tau),
        None => out.pred.iter().map(|&l| f64::from(l)).collect(),
    };
    Ok(out
        .pred
        .chunks_exact(c)
        .zip(scores.chunks_exact(c))
        .enumerate()
        .map(|(i, (pred, s))| SampleOutput {
            index: i,
            id: split.id.get(i).cloned().unwrap_or_default(),
            label: None,
            prediction: argmax(s),
            probs: pred.iter().map(|&l| f64::from(l).exp()).collect(),
            debiased: softmax(s),
        })
        .collect())
}

/// `s_τ = ℓ − τ·ℓ_cf` for any τ ≥ 0 (not only the grid's), in f64.
fn debiased_with(pred: &[f32], cf_pred: &[f32], tau: f64) -> Vec<f64> {
    pred.iter()
        .zip(cf_pred)
        .map(|(&l, &l_cf)| f64::from(l) - tau * f64::from(l_cf))
        .collect()
}

fn argmax(row: &[f64]) -> u8 {
    let mut best = 0;
    for (k, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = k;
        }
    }
    best as u8
}

fn softmax(row: &[f64]) -> Vec<f64> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = row.iter().map(|v| (v - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    exp.iter().map(|e| e / total).collect()
}

/// Class names: negative / neutral / positive, or the seven scores −3 … 3.
fn class_names(task: Task) -> Vec<String> {
    match task {
        Task::Binary => ["negative", "neutral", "positive"]
            .map(String::from)
            .to_vec(),
        Task::Seven => (-3..=3).map(|s| format!("{s:+}")).collect(),
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
    let name = |k: u8| {
        names
            .get(usize::from(k))
            .cloned()
            .unwrap_or_else(|| k.to_string())
    };
    let label = out.label.map_or("-".to_string(), name);
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

/// One utterance as a one-sample split: the text tokenised with the run's BERT tokenizer to
/// `T_l`, audio and vision `[frames, d]` truncated or zero-padded to `T_a`, `T_v`.
fn raw_sample(run: &RunModel, text: &str, args: &InferArgs) -> Result<Split, CliError> {
    let network = &run.model_config.network;
    let bert_dir = match (run.config.model.text_encoder, &run.config.model.bert_dir) {
        (TextEncoder::Bert, Some(dir)) => dir,
        _ => {
            return Err(CliError::Usage(format!(
                "{}: the model reads precomputed text features (model.text_encoder = \
                 \"precomputed\"), so raw text cannot be encoded; use --data with a file that \
                 has `text` features",
                args.checkpoint.display()
            )));
        }
    };
    let tokenizer = HfBertFolder::open(bert_dir)?.tokenizer(network.t_l)?;
    let rows = tokenizer.encode(text)?;
    let (audio, audio_len) = frames(args.audio.as_deref(), network.t_a, network.d_a, "--audio")?;
    let (vision, vision_len) =
        frames(args.vision.as_deref(), network.t_v, network.d_v, "--vision")?;
    let text_len = rows.attention_mask.iter().map(|&m| usize::from(m)).sum();
    let score = 0.0;
    Ok(Split {
        name: "input".into(),
        n: 1,
        dims: Dims {
            d_l: network.d_l,
            t_l: network.t_l,
            t_a: network.t_a,
            t_v: network.t_v,
            d_a: network.d_a,
            d_v: network.d_v,
        },
        text_ids: rows.ids,
        text_mask: rows.attention_mask,
        text_segment: rows.segments,
        audio_sum: audio.iter().map(|&x| f64::from(x)).sum(),
        vision_sum: vision.iter().map(|&x| f64::from(x)).sum(),
        audio,
        vision,
        text_len: vec![text_len],
        audio_len: vec![audio_len],
        vision_len: vec![vision_len],
        score: vec![score],
        label3: vec![three_way_label(score)],
        label7: vec![3],
        raw_text: vec![text.to_string()],
        id: vec!["input".into()],
        text_features: None,
        audio_nonfinite: 0,
    })
}

/// Reads `[frames, d]` features, keeps the first `t` frames and pads with zeros to `t`;
/// returns them with the number of valid frames.
fn frames(
    path: Option<&Path>,
    t: usize,
    d: usize,
    flag: &str,
) -> Result<(Vec<f32>, usize), CliError> {
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
    let len = shape[0].min(t);
    if len == 0 {
        return Err(CliError::Usage(format!("{}: no frame", path.display())));
    }
    if shape[0] > t {
        eprintln!(
            "note: {} has {} frames; the model reads the first {t}",
            path.display(),
            shape[0]
        );
    }
    let mut out = vec![0.0f32; t * d];
    out[..len * d].copy_from_slice(&values[..len * d]);
    Ok((out, len))
}
