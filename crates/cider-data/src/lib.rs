//! Data for CIDer (docs/method.md §2–§4): pure-Rust readers for MMSA / CIDer files (pickle, joblib,
//! `.npy` / `.npz`), datasets and labels, missing-modality simulation, bias words and
//! counterfactual text, the built-in synthetic dataset, and batching into Burn tensors.
//!
//! Nothing here executes Python: the pickle reader is a restricted machine that rebuilds
//! plain containers and NumPy arrays and refuses every other global.

pub mod batch;
pub mod bias;
pub mod dataset;
pub mod error;
pub mod joblib;
pub mod missing;
pub mod missing_mode;
pub mod mt19937;
pub mod npy;
pub mod pickle;
pub mod pickle_write;
pub mod synth;
pub mod value;

pub use error::DataError;
pub use value::{ArrayData, DType, NumpyArray, PyValue};
