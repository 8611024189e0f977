//! The one error type of `cider-causal`. Every variant names the input involved (an argument, a
//! split or a file) and what was expected, so that a caller can fix the input without reading
//! our code.

use cider_data::DataError;

/// Everything that can go wrong while computing metrics, τ sweeps, prototypes or priors.
#[derive(Debug, thiserror::Error)]
pub enum CausalError {
    /// An input whose size disagrees with another input or with the number of classes.
    #[error("{what}: expected {expected} values, found {found}")]
    Length {
        what: String,
        expected: usize,
        found: usize,
    },

    /// A label outside `0..C`.
    #[error("{what}: label {label} at index {index} is out of range for {classes} classes")]
    Label {
        what: String,
        index: usize,
        label: u8,
        classes: usize,
    },

    /// No sample to compute a metric or an average from.
    #[error("{what}: no sample to evaluate ({reason})")]
    Empty { what: String, reason: String },

    /// A NaN (or, where noted, an infinity) where a number is required.
    #[error("{what}: non-finite value {value} at index {index}")]
    NonFinite {
        what: String,
        index: usize,
        value: f64,
    },

    /// A class with no sample in the split a prototype is computed from.
    #[error("split `{split}`: class {class} has no sample, so its prototype is undefined")]
    EmptyClass { split: String, class: usize },

    /// A class none of whose samples has a valid frame of one modality.
    #[error(
        "split `{split}`: no sample of class {class} has a valid {modality} position, so its {modality} prototype is undefined"
    )]
    EmptyModality {
        split: String,
        class: usize,
        modality: &'static str,
    },

    /// A reference-format `.npy` file with the wrong content.
    #[error("{file}: expected {expected}, found {found}")]
    File {
        file: String,
        expected: String,
        found: String,
    },

    /// Any other invalid argument (rates not increasing, missing text features, …).
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },

    /// A failure while reading a file.
    #[error(transparent)]
    Data(#[from] DataError),
}
