//! `cider import FILE.pt --data DATA --out DIR`: turns a model saved by the authors' code (a
//! whole pickled `CIDERModel`) into a run directory for `cider eval` and `cider infer`, reading
//! its configuration, weights and tokenizer from the file without running any of it.

use std::path::PathBuf;

use clap::Args;

use cider::{PrototypeSource, import_reference};
use cider_data::synth::Variant;
use cider_train::backend::Selected;

use crate::error::CliError;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A `.pt` file of the reference code (`torch.save(model, path)`, e.g.
    /// `mosi_aligned_iid_binary_CIDER_trial_0.pt`).
    checkpoint: PathBuf,
    /// The dataset file the model was trained on (MMSA pickle or CIDer joblib dump): MACI's
    /// bias words and prototypes come from its training split, τ from its validation split.
    #[arg(long)]
    data: PathBuf,
    /// The authors' repository folder (holding `{dataset}_feats/` and `{dataset}_probs/`):
    /// MACI's training prototypes and priors come from its files for this model instead of
    /// being computed from `--data`.
    #[arg(long, value_name = "DIR")]
    prototypes: Option<PathBuf>,
    /// With `--prototypes`: whose files (`mosi`, `mosei`), instead of what the checkpoint's
    /// file name says.
    #[arg(long, requires = "prototypes")]
    dataset: Option<String>,
    /// With `--prototypes`: the IID or OOD training files, instead of what the checkpoint's file
    /// name says.
    #[arg(long, value_enum, requires = "prototypes")]
    variant: Option<Variant>,
    /// The run directory to create.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: &ImportArgs) -> Result<(), CliError> {
    let device = Default::default();
    let imported = import_reference::<Selected>(
        &args.checkpoint,
        &args.data,
        &PrototypeSource {
            reference_dir: args.prototypes.clone(),
            dataset: args.dataset.clone(),
            variant: args.variant,
        },
        &args.out,
        &device,
    )?;
    let reference = &imported.reference;
    let hp = &reference.hyper_parameters;
    println!(
        "{}: {} classes, {}, D = {}, {} MCT layers, {} heads, BERT {} layers of {}",
        args.checkpoint.display(),
        reference.num_classes(),
        if hp.aligned { "aligned" } else { "unaligned" },
        hp.embed_dim,
        hp.multimodal_layers,
        hp.num_heads,
        hp.bert.num_hidden_layers,
        hp.bert.hidden_size,
    );
    if let Some(name) = &reference.name {
        println!("file name: {name}");
    }
    for discrepancy in &reference.discrepancies {
        println!("note: {discrepancy} (the model's attributes are used)");
    }
    println!("{}", imported.run_dir.display());
    Ok(())
}
