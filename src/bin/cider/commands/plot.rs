//! `cider plot RESULTS.json… --out DIR`: one SVG line chart per metric against the missing
//! rate, one line per results file.

use std::path::PathBuf;

use cider_maci::counterfactual::TauSelection;
use clap::Args;

use crate::error::CliError;
use cider_train::plot::{default_labels, write_charts};
use cider_train::results::ResultsFile;

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// `results.json` files written by `cider eval` (one line per file).
    #[arg(required = true)]
    results: Vec<PathBuf>,
    /// Output folder for the charts (`<metric>.svg`), created if needed.
    #[arg(long)]
    out: PathBuf,
    /// Legend labels, comma-separated, one per file (default: each file's folder name).
    #[arg(long, value_delimiter = ',')]
    labels: Option<Vec<String>>,
    /// Which numbers to plot: validation (τ chosen on the validation split) or oracle (every
    /// metric maximised over τ per rate, the reference's numbers).
    #[arg(long, value_enum, default_value = "validation")]
    tau: TauSelection,
}

pub fn run(args: &PlotArgs) -> Result<(), CliError> {
    let labels = match &args.labels {
        Some(labels) if labels.len() != args.results.len() => {
            return Err(CliError::Usage(format!(
                "--labels: {} label(s) for {} results file(s); give one per file",
                labels.len(),
                args.results.len()
            )));
        }
        Some(labels) => labels.clone(),
        None => default_labels(&args.results),
    };
    let files = args
        .results
        .iter()
        .zip(labels)
        .map(|(path, label)| Ok((label, ResultsFile::read(path)?)))
        .collect::<Result<Vec<_>, CliError>>()?;
    let written = write_charts(&files, args.tau, &args.out)?;
    for path in &written {
        println!("{}", path.display());
    }
    eprintln!(
        "wrote {} chart(s) of {} results file(s) to {}",
        written.len(),
        files.len(),
        args.out.display()
    );
    Ok(())
}
