//! Training and evaluation of CIDer (docs/method.md §6, §8): the MSSD two-pass step and its
//! losses, the training loop with validation-based selection, the missing-rate protocol, results
//! files and charts.
//!
//! A run is configured by one TOML file whose tables are the library's own configuration types
//! (docs/configuration.md), then trained with a progress callback:
//!
//! ```no_run
//! use burn::backend::{Autodiff, Flex};
//! use cider_train::train_config::TrainConfig;
//! use cider_train::trainer::{TrainProgress, Trainer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let toml = "out_dir = \"runs/small\"\nepochs = 3\n[model]\nembed_dim = 16\nnum_heads = 4\n";
//! let config = TrainConfig::from_toml_str(toml, "inline", &[])?;
//! assert_eq!(config.model.embed_dim, 16);
//! let mut trainer = Trainer::<Autodiff<Flex>>::open(config, Default::default(), false)?;
//! let summary = trainer.run(|progress| {
//!     if let TrainProgress::Epoch(epoch) = progress {
//!         println!("epoch {}: {} = {:.4}", epoch.epoch, epoch.metric, epoch.value);
//!     }
//! })?;
//! println!("best epoch: {:?}", summary.best.map(|b| b.epoch));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod alloc;
pub mod any_backbone;
pub mod backend;
pub mod checkpoint;
pub mod early_stopping;
pub mod epoch_record;
pub mod evaluate;
pub mod golden_step;
pub mod mssd;
pub mod optim;
pub mod plot;
pub mod results;
pub mod run_dir;
pub mod run_files;
pub mod run_state;
pub mod train_config;
pub mod trainer;

mod maci_inputs;
mod record_check;
#[cfg(test)]
mod testkit;
mod train_error;
