//! The error type of `cider-model`.

/// Everything that can go wrong while building the model or loading its weights.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An I/O failure on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A malformed configuration file or value.
    #[error("{source_name}: bad configuration: {message}")]
    Config {
        /// What the value came from (a file name, or a description of the text).
        source_name: String,
        /// What is wrong, and what was expected.
        message: String,
    },

    /// Weights that do not fit the model: every missing, unexpected and mis-shaped key is listed.
    #[error(
        "{file}: weights do not match the model:{}{}{}",
        list("missing", missing),
        list("unexpected", unexpected),
        list("mis-shaped", misshaped)
    )]
    Weights {
        /// The file involved.
        file: String,
        /// Keys the model has and the file lacks.
        missing: Vec<String>,
        /// Keys the file has and the model lacks.
        unexpected: Vec<String>,
        /// Keys whose shapes differ, with both shapes.
        misshaped: Vec<String>,
    },

    /// A malformed weight file (bad safetensors header, unsupported dtype, wrong byte count).
    #[error("{path}: bad weight file: {message}")]
    WeightFile {
        /// The file or folder involved.
        path: std::path::PathBuf,
        /// What is wrong, and what was expected.
        message: String,
    },

    /// A tokenizer that cannot be loaded or text that cannot be encoded.
    #[error("{source_name}: tokenizer: {message}")]
    Tokenizer {
        /// What the value came from (a file name, or a description of the text).
        source_name: String,
        /// What is wrong, and what was expected.
        message: String,
    },

    /// Model inputs whose kind or shape does not fit the network (`what` names the input).
    #[error("model input `{what}`: {message}")]
    Input {
        /// The input involved.
        what: String,
        /// What is wrong, and what was expected.
        message: String,
    },

    /// A configuration whose estimated memory is above the limit
    /// ([`crate::memory_estimate`]).
    #[error(
        "{source_name}: `{key}`: the model would need about {estimate_gib:.1} GiB \
         ({parameters:.3e} parameters and a batch's activations), above the limit of \
         {limit_gib:.1} GiB (set CIDER_MAX_MEMORY_GIB to raise it)"
    )]
    TooLarge {
        /// The file or configuration concerned.
        source_name: String,
        /// The key whose term of the estimate is largest.
        key: &'static str,
        /// The estimate, GiB.
        estimate_gib: f64,
        /// Estimated number of parameters.
        parameters: f64,
        /// The limit, GiB.
        limit_gib: f64,
    },

    /// Dataset text that a BERT cannot read (an id outside its vocabulary, too many tokens).
    #[error("{source_name}: split `{split}`: {message}")]
    Text {
        /// The dataset file.
        source_name: String,
        /// The split.
        split: String,
        /// The sample, the field and what was expected.
        message: String,
    },

    /// A data-layer error (reading `.npy` inputs, datasets).
    #[error(transparent)]
    Data(#[from] cider_data::DataError),
}

fn list(what: &str, keys: &[String]) -> String {
    if keys.is_empty() {
        String::new()
    } else {
        format!(" {what} [{}];", keys.join(", "))
    }
}
