//! The `cider` command-line program: data tools, golden checks, training and evaluation.
//!
//! Every failure prints one line `error: …` naming the file, key and expectation, and exits
//! with status 1.

mod commands;
mod error;
mod values;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

use commands::data::DataCommand;

/// Training frees and reallocates the same large tensors every step: keep them instead of
/// returning them to the OS (docs/performance.md).
#[global_allocator]
static ALLOCATOR: cider_train::alloc::ReuseLargeBlocks =
    cider_train::alloc::ReuseLargeBlocks::new();

/// CIDer: robust multimodal emotion recognition under missing modalities and distribution shifts.
#[derive(Debug, Parser)]
#[command(name = "cider", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train CIDer on the built-in synthetic data, evaluate it IID and OOD over 11 missing
    /// rates, print the tables and draw the charts (no arguments needed).
    Demo(commands::demo::DemoArgs),
    /// Inspect, synthesise and mask MMSA-layout data files.
    #[command(subcommand)]
    Data(DataCommand),
    /// Train CIDer with MSSD from a TOML configuration; print the run directory.
    Train(commands::train::TrainArgs),
    /// Evaluate a trained model over missing rates (MACI, τ rules, AUILC); write results.json.
    Eval(commands::eval::EvalArgs),
    /// Print class probabilities of a trained model for a dataset split or one raw utterance.
    Infer(commands::infer::InferArgs),
    /// Draw one SVG chart per metric against the missing rate from results.json files.
    Plot(commands::plot::PlotArgs),
    /// Compare forward outputs (and the MSSD step) with a reference PyTorch golden folder.
    CheckGolden(commands::golden::GoldenArgs),
    /// Make a run directory from a model the authors' code saved (`torch.save(model)`, `.pt`).
    Import(commands::import::ImportArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if !e.use_stderr()
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("{}", one_line(&e));
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Demo(args) => commands::demo::run(&args),
        Command::Data(command) => commands::data::run(command),
        Command::Train(args) => commands::train::run(&args),
        Command::Eval(args) => commands::eval::run(&args),
        Command::Infer(args) => commands::infer::run(&args),
        Command::Plot(args) => commands::plot::run(&args),
        Command::CheckGolden(args) => commands::golden::run(&args),
        Command::Import(args) => commands::import::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A command-line usage error as one line: clap's message and any tip, without the usage
/// block that follows them.
fn one_line(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    lines.join(" ")
}
