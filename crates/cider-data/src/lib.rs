//! Data for CIDer (docs/method.md §2–§4): pure-Rust readers for MMSA / CIDer files (pickle, joblib,
//! `.npy` / `.npz`), datasets and labels, missing-modality simulation, bias words and
//! counterfactual text, the built-in synthetic dataset, and batching into Burn tensors (also as
//! a Burn `Dataset` and `Batcher`, [`burn_dataset`]).
//!
//! Nothing here executes Python: the pickle reader is a restricted machine that rebuilds
//! plain containers and NumPy arrays and refuses every other global.
//!
//! ```
//! use cider_data::missing::{EvalMissing, eval_view};
//! use cider_data::synth::{SynthConfig, generate};
//!
//! // The built-in synthetic dataset (MOSI aligned layout), then RMFM at rate 0.3 on its test
//! // split with the reference's evaluation seed.
//! let small = SynthConfig { n_train: 30, n_valid: 10, n_test: 20, ..SynthConfig::default() };
//! let data = generate(&small)?;
//! let test = data.split("test")?;
//! let view = eval_view(test, EvalMissing::Rmfm { rate: 0.3 }, 1111)?;
//! let present = view.audio_missing.iter().filter(|&&m| m == 1).count();
//! let valid: usize = test.audio_len.iter().sum();
//! assert!(present < valid, "some audio frames are missing");
//! # Ok::<(), cider_data::DataError>(())
//! ```

#![warn(missing_docs)]

pub mod atomic_write;
pub mod batch;
pub mod bias;
pub mod burn_dataset;
pub mod catalog;
pub mod dataset;
mod elements;
pub mod error;
pub mod excerpt;
pub mod joblib;
pub mod missing;
pub mod missing_mode;
pub mod mt19937;
pub mod npy;
pub mod pickle;
pub mod pickle_write;
pub mod splitmix;
pub mod synth;
pub mod torch_file;
pub mod value;
pub mod verify;

#[cfg(test)]
mod corrupt_corpus;
#[cfg(test)]
mod testkit;

pub use error::DataError;
pub use value::{ArrayData, DType, NumpyArray, PyObject, PyValue};
