//! `cider data …`: inspect a dataset file, check it against the dataset catalog, write the
//! synthetic dataset, write evaluation masks.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;

use cider_data::DataError;
use cider_data::bias::{self, BiasRule};
use cider_data::catalog::Catalog;
use cider_data::dataset::{Dataset, Split, Task};
use cider_data::missing::{self, EvalMissing};
use cider_data::missing_mode::EvalMode;
use cider_data::synth::{self, Layout, SynthConfig, Variant};
use cider_data::value::{ArrayData, NumpyArray};
use cider_data::verify::{FileContents, SplitFacts as VerifiedSplit};

use crate::error::CliError;
use crate::values;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Print per-split sample counts, shapes, class counts and feature sums of a dataset file.
    Inspect(InspectArgs),
    /// Check a downloaded dataset file against its entry of the catalog (datasets/catalog.toml):
    /// one line per split and key that is off; exit status 1 if any.
    Verify(VerifyArgs),
    /// Write the built-in synthetic dataset as an MMSA-layout pickle.
    Synth(SynthArgs),
    /// Write the evaluation masks, masked inputs and counterfactual ids of one split as `.npy`.
    Mask(MaskArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// An MMSA pickle (`aligned_50.pkl`, `unaligned_50.pkl`) or a CIDer joblib dump.
    file: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// An MMSA pickle (`aligned_50.pkl`, `unaligned_50.pkl`) or a CIDer joblib dump.
    file: PathBuf,
    /// The catalog entry to check against (e.g. mosi-aligned); without it the entry is chosen
    /// from the file's name and layout, and named.
    #[arg(long)]
    dataset: Option<String>,
    /// A catalog in the format of datasets/catalog.toml instead of the built-in one.
    #[arg(long)]
    catalog: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Layout: mosi-aligned, mosi-unaligned, mosei-aligned or mosei-unaligned.
    #[arg(long, default_value = "mosi-unaligned")]
    layout: Layout,
    /// iid, or ood (test split with shifted class priors and shortcut words).
    #[arg(long, default_value = "iid")]
    variant: Variant,
    /// Random seed.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = values::seed_u64)]
    seed: u64,
    /// Use MOSI's split sizes (1284 / 229 / 686) instead of the smaller defaults.
    #[arg(long)]
    mosi_size: bool,
    /// Also write 768-d precomputed `text` features.
    #[arg(long)]
    text_features: bool,
    /// Output pickle.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct MaskArgs {
    /// An MMSA pickle or CIDer joblib dump.
    file: PathBuf,
    /// Split to mask.
    #[arg(long, default_value = "test")]
    split: String,
    /// Missing mode.
    #[arg(long, value_enum, default_value = "rmfm")]
    mode: EvalMode,
    /// Missing rate(s) in [0, 1]: one value, or three (text, audio, vision) for rmfm-same.
    #[arg(long, value_delimiter = ',', required = true, allow_negative_numbers = true, value_parser = values::rate)]
    rate: Vec<f64>,
    /// NumPy legacy seed of the evaluation masks.
    #[arg(long, default_value_t = missing::DEFAULT_MISSING_SEED, allow_negative_numbers = true, value_parser = values::seed_u32)]
    seed: u32,
    /// Task whose labels define the bias words.
    #[arg(long, value_enum, default_value = "binary")]
    task: Task,
    /// Number of bias words kept.
    #[arg(long, default_value_t = 100, allow_negative_numbers = true, value_parser = values::count)]
    bias_thresh: usize,
    /// Bias-word rule for tokens never seen with a negative or positive label.
    #[arg(long, value_enum, default_value = "parity")]
    bias_rule: BiasRule,
    /// Output folder (created if needed).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(command: DataCommand) -> Result<(), CliError> {
    match command {
        DataCommand::Inspect(args) => inspect(&args),
        DataCommand::Verify(args) => verify(&args),
        DataCommand::Synth(args) => write_synth(&args),
        DataCommand::Mask(args) => write_masks(&args),
    }
}

/// The facts `cider data inspect` reports for one split.
#[derive(Debug, Serialize)]
struct SplitFacts {
    n: usize,
    text_bert: [usize; 3],
    audio: [usize; 3],
    vision: [usize; 3],
    three_way_counts: [usize; 3],
    audio_nonfinite: usize,
    audio_sum: f64,
    vision_sum: f64,
}

impl SplitFacts {
    fn of(split: &Split) -> Self {
        let d = split.dims;
        SplitFacts {
            n: split.n,
            text_bert: [split.n, 3, d.t_l],
            audio: [split.n, d.t_a, d.d_a],
            vision: [split.n, d.t_v, d.d_v],
            three_way_counts: split.three_way_counts(),
            audio_nonfinite: split.audio_nonfinite,
            audio_sum: split.audio_sum,
            vision_sum: split.vision_sum,
        }
    }
}

#[derive(Debug, Serialize)]
struct Inspection {
    file: String,
    aligned: bool,
    splits: serde_json::Map<String, serde_json::Value>,
}

fn inspect(args: &InspectArgs) -> Result<(), CliError> {
    let dataset = Dataset::from_path(&args.file)?;
    let mut splits = serde_json::Map::new();
    for split in dataset.splits() {
        let facts = serde_json::to_value(SplitFacts::of(split))
            .map_err(|e| CliError::Usage(e.to_string()))?;
        splits.insert(split.name.clone(), facts);
    }
    if args.json {
        let report = Inspection {
            file: dataset.source.clone(),
            aligned: dataset.aligned,
            splits,
        };
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| CliError::Usage(e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    println!(
        "{} ({})",
        dataset.source,
        if dataset.aligned {
            "aligned"
        } else {
            "unaligned"
        }
    );
    println!(
        "{:<6} {:>6} {:>16} {:>16} {:>16} {:>16} {:>8} {:>16} {:>16}",
        "split",
        "n",
        "text_bert",
        "audio",
        "vision",
        "neg/neu/pos",
        "-inf",
        "audio sum",
        "vision sum"
    );
    for split in dataset.splits() {
        let f = SplitFacts::of(split);
        let shape = |s: [usize; 3]| format!("{}x{}x{}", s[0], s[1], s[2]);
        let c = f.three_way_counts;
        println!(
            "{:<6} {:>6} {:>16} {:>16} {:>16} {:>16} {:>8} {:>16.6} {:>16.6}",
            split.name,
            f.n,
            shape(f.text_bert),
            shape(f.audio),
            shape(f.vision),
            format!("{}/{}/{}", c[0], c[1], c[2]),
            f.audio_nonfinite,
            f.audio_sum,
            f.vision_sum
        );
    }
    Ok(())
}

/// `cider data verify`: the file's format and hash, the entry and why it was chosen, what each
/// split holds, then `ok` or one line per mismatch and an error.
fn verify(args: &VerifyArgs) -> Result<(), CliError> {
    let catalog = match &args.catalog {
        Some(path) => Catalog::from_file(path),
        None => Catalog::builtin(),
    }
    .map_err(DataError::from)?;
    let contents = FileContents::read(&args.file)?;
    let (entry, chosen) = match &args.dataset {
        Some(name) => {
            let entry = catalog.entry(name).map_err(DataError::from)?;
            (entry, format!("{name} (given with --dataset)"))
        }
        None => {
            let choice = catalog
                .choose(&args.file, contents.layout().as_ref())
                .map_err(DataError::from)?;
            (choice.entry, choice.to_string())
        }
    };
    println!(
        "{}: {} file, sha256 {}",
        args.file.display(),
        contents.format().name(),
        contents.sha256().unwrap_or("-")
    );
    println!("catalog entry: {chosen}");
    let report = contents.verify(entry);
    print_verified_splits(&report.splits);
    if report.matches() {
        println!(
            "ok: every split and key matches {} ({})",
            entry.name, entry.title
        );
        return Ok(());
    }
    for mismatch in &report.mismatches {
        println!("{mismatch}");
    }
    Err(CliError::Usage(format!(
        "{}: {} mismatch(es) against catalog entry {}",
        args.file.display(),
        report.mismatches.len(),
        entry.name
    )))
}

/// The table of `cider data verify`: samples, the shapes of the feature arrays, `-inf` audio
/// values and the score range of each split.
fn print_verified_splits(splits: &[VerifiedSplit]) {
    println!(
        "{:<6} {:>6} {:>12} {:>14} {:>14} {:>14} {:>8} {:>14}",
        "split", "n", "text_bert", "text", "audio", "vision", "-inf", "scores"
    );
    for split in splits {
        let shape = |key: &str| {
            split.shapes.iter().find(|(k, _)| k == key).map_or_else(
                || "-".to_string(),
                |(_, s)| s.iter().map(usize::to_string).collect::<Vec<_>>().join("x"),
            )
        };
        println!(
            "{:<6} {:>6} {:>12} {:>14} {:>14} {:>14} {:>8} {:>14}",
            split.name,
            split
                .samples
                .map_or_else(|| "-".to_string(), |n| n.to_string()),
            shape("text_bert"),
            shape("text"),
            shape("audio"),
            shape("vision"),
            split.audio_neg_inf,
            split
                .score_range
                .map_or_else(|| "-".to_string(), |[lo, hi]| format!("{lo:.2}..{hi:.2}")),
        );
    }
}

fn write_synth(args: &SynthArgs) -> Result<(), CliError> {
    let mut config = if args.mosi_size {
        SynthConfig::mosi_size()
    } else {
        SynthConfig::default()
    };
    config.layout = args.layout;
    config.variant = args.variant;
    config.seed = args.seed;
    config.text_features = args.text_features;
    let dataset = synth::generate(&config)?;
    write_pickle(&dataset, &args.out)?;
    eprintln!(
        "wrote {} ({} / {} / {} samples)",
        args.out.display(),
        dataset.train.n,
        dataset.valid.n,
        dataset.test.n
    );
    Ok(())
}

fn write_pickle(dataset: &Dataset, path: &Path) -> Result<(), CliError> {
    let value = dataset.to_pyvalue()?;
    cider_data::pickle_write::to_path(&value, path)?;
    Ok(())
}

/// The concrete mode of `--mode` and `--rate`: one rate, or three (text, audio, vision) for
/// `rmfm-same`; `smm` has no rate (its subsets are `rmfm-same` with rates 0 and 1).
fn eval_mode(mode: EvalMode, rate: &[f64]) -> Result<EvalMissing, CliError> {
    match (mode, rate) {
        (EvalMode::Smm, _) => Err(CliError::Usage(
            "--mode smm: SMM has no rate; give --mode rmfm-same with --rate 0,1,1 style rates \
             (1 = missing) for one modality subset"
                .into(),
        )),
        (EvalMode::RmfmSame, &[t, a, v]) => Ok(EvalMissing::RmfmSame { rates: [t, a, v] }),
        (EvalMode::RmfmSame, _) => Err(CliError::Usage(format!(
            "--rate: rmfm-same takes three rates (text,audio,vision), got {}",
            rate.len()
        ))),
        (_, &[r]) => Ok(mode.at_rate(r).expect("every mode but SMM has a rate")),
        (_, _) => Err(CliError::Usage(format!(
            "--rate: mode {} takes one rate, got {}",
            mode.name(),
            rate.len()
        ))),
    }
}

fn write_masks(args: &MaskArgs) -> Result<(), CliError> {
    let mode = eval_mode(args.mode, &args.rate)?;
    let dataset = Dataset::from_path(&args.file)?;
    let split = dataset.split(&args.split)?;
    let view = missing::eval_view(split, mode, args.seed)?;
    let bias_words = bias::bias_words(&dataset.train, args.task, args.bias_thresh, args.bias_rule)?;
    let cf_ids = bias::counterfactual_ids(&view.text_m_ids, &bias_words);
    let d = split.dims;
    let n = split.n;
    let ids = |v: &[u32]| ArrayData::I64(v.iter().map(|&x| i64::from(x)).collect());
    let arrays = [
        ("text_m_ids", vec![n, d.t_l], ids(&view.text_m_ids)),
        ("text_cf_ids", vec![n, d.t_l], ids(&cf_ids)),
        (
            "text_missing_mask",
            vec![n, d.t_l],
            ArrayData::U8(view.text_missing.clone()),
        ),
        (
            "audio_missing_mask",
            vec![n, d.t_a],
            ArrayData::U8(view.audio_missing.clone()),
        ),
        (
            "vision_missing_mask",
            vec![n, d.t_v],
            ArrayData::U8(view.vision_missing.clone()),
        ),
        (
            "audio_m",
            vec![n, d.t_a, d.d_a],
            ArrayData::F32(view.audio_m.clone()),
        ),
        (
            "vision_m",
            vec![n, d.t_v, d.d_v],
            ArrayData::F32(view.vision_m.clone()),
        ),
        ("bias_word_ids", vec![bias_words.len()], ids(&bias_words)),
    ];
    let arrays = arrays
        .into_iter()
        .map(|(name, shape, data)| Ok((name, NumpyArray::new(shape, data)?)))
        .collect::<Result<Vec<_>, CliError>>()?;
    write_mask_set(&args.out, &arrays)?;
    eprintln!(
        "wrote {} arrays of {} {} samples ({} rate {:?}) to {}",
        MASK_SET.len(),
        n,
        args.split,
        mode.name(),
        args.rate,
        args.out.display()
    );
    Ok(())
}

/// The arrays of a mask set, by file stem, in the order they are written.
const MASK_SET: [&str; 8] = [
    "text_m_ids",
    "text_cf_ids",
    "text_missing_mask",
    "audio_missing_mask",
    "vision_missing_mask",
    "audio_m",
    "vision_m",
    "bias_word_ids",
];

/// Writes a mask set as `out/NAME.npy`, all or nothing: the arrays go to a temporary sibling
/// folder, which then replaces `out` (a folder that holds anything but a mask set is refused,
/// so no other file is lost). On failure the temporary folder is removed and `out` is as it
/// was.
fn write_mask_set(out: &Path, arrays: &[(&str, NumpyArray)]) -> Result<(), CliError> {
    let usage = |message: String| CliError::Usage(format!("--out {}: {message}", out.display()));
    if out.exists() {
        let entries = std::fs::read_dir(out).map_err(|e| CliError::io(out, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| CliError::io(out, e))?;
            let file = entry.file_name();
            let known = MASK_SET
                .iter()
                .any(|n| file == std::ffi::OsStr::new(&format!("{n}.npy")));
            if !known {
                return Err(usage(format!(
                    "holds {}, which is not part of a mask set; give a new or empty folder",
                    file.to_string_lossy()
                )));
            }
        }
    }
    let name = out
        .file_name()
        .ok_or_else(|| usage("expected a folder name".into()))?
        .to_string_lossy()
        .into_owned();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).map_err(|e| CliError::io(parent, e))?;
    let pid = std::process::id();
    let tmp = parent.join(format!(".{name}.tmp-{pid}"));
    let old = parent.join(format!(".{name}.old-{pid}"));
    let written = (|| {
        std::fs::create_dir(&tmp).map_err(|e| CliError::io(&tmp, e))?;
        for (stem, array) in arrays {
            let bytes = cider_data::npy::to_bytes(array)?;
            let path = out.join(format!("{stem}.npy"));
            std::fs::File::create(tmp.join(format!("{stem}.npy")))
                .and_then(|mut file| file.write_all(&bytes).and_then(|()| file.sync_all()))
                .map_err(|e| CliError::io(&path, e))?;
        }
        let replaced = out.exists();
        if replaced {
            std::fs::rename(out, &old).map_err(|e| CliError::io(out, e))?;
        }
        if let Err(e) = std::fs::rename(&tmp, out) {
            if replaced {
                // Put the previous set back; the error that matters is the rename's.
                let _ = std::fs::rename(&old, out);
            }
            return Err(CliError::io(out, e));
        }
        if replaced {
            std::fs::remove_dir_all(&old).map_err(|e| CliError::io(&old, e))?;
        }
        Ok(())
    })();
    if written.is_err() {
        // Best effort: the temporary folder may not exist.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written
}
