//! The one error type of `cider-maci`. Every variant names the input involved (an argument, a
//! split or a file) and what was expected, so that a caller can fix the input without reading
//! our code.

use cider_data::DataError;
use cider_model::ModelError;

/// Everything that can go wrong while computing metrics, τ sweeps, prototypes or priors.
#[derive(Debug, thiserror::Error)]
pub enum MaciError {
    /// An input whose size disagrees with another input or with the number of classes.
    #[error("{what}: expected {expected} values, found {found}")]
    Length {
        /// The input involved.
        what: String,
        /// What was expected.
        expected: usize,
        /// What was found.
        found: usize,
    },

    /// A label outside `0..C`.
    #[error("{what}: label {label} at index {index} is out of range for {classes} classes")]
    Label {
        /// The input involved.
        what: String,
        /// Position of the offending value.
        index: usize,
        /// The offending label.
        label: u8,
        /// Number of classes `C`.
        classes: usize,
    },

    /// No sample to compute a metric or an average from.
    #[error("{what}: no sample to evaluate ({reason})")]
    Empty {
        /// The input involved.
        what: String,
        /// Why there is nothing.
        reason: String,
    },

    /// A NaN (or, where noted, an infinity) where a number is required.
    #[error("{what}: non-finite value {value} at index {index}")]
    NonFinite {
        /// The input involved.
        what: String,
        /// Position of the offending value.
        index: usize,
        /// The offending value.
        value: f64,
    },

    /// A class with no sample in the split a prototype is computed from.
    #[error("split `{split}`: class {class} has no sample, so its prototype is undefined")]
    EmptyClass {
        /// The split involved.
        split: String,
        /// The class involved.
        class: usize,
    },

    /// A class none of whose samples has a valid frame of one modality.
    #[error(
        "split `{split}`: no sample of class {class} has a valid {modality} position, so its {modality} prototype is undefined"
    )]
    EmptyModality {
        /// The split involved.
        split: String,
        /// The class involved.
        class: usize,
        /// The modality involved (`text`, `audio` or `vision`).
        modality: &'static str,
    },

    /// A reference-format `.npy` file with the wrong content.
    #[error("{file}: expected {expected}, found {found}")]
    File {
        /// The file involved.
        file: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },

    /// Any other invalid argument (rates not increasing, missing text features, …).
    #[error("invalid {what}: {message}")]
    Invalid {
        /// The input involved.
        what: String,
        /// What is wrong, and what was expected.
        message: String,
    },

    /// A failure while reading a file or masking a split.
    #[error(transparent)]
    Data(#[from] DataError),

    /// The model refused its inputs.
    #[error(transparent)]
    Model(#[from] ModelError),
}
