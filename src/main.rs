//! The `cider` command-line program: data tools, golden checks, training and evaluation.
//!
//! Every failure prints one line `error: …` naming the file, key and expectation, and exits
//! with status 1.

mod commands;
mod error;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::data::DataCommand;

/// CIDer: robust multimodal emotion recognition under missing modalities and distribution shifts.
#[derive(Debug, Parser)]
#[command(name = "cider", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect, synthesise and mask MMSA-layout data files.
    #[command(subcommand)]
    Data(DataCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data(command) => commands::data::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
