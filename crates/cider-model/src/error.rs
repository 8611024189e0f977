//! The error type of `cider-model`.

/// Everything that can go wrong while building the model or loading its weights.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An I/O failure on a named path.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A malformed configuration file or value.
    #[error("{source_name}: bad configuration: {message}")]
    Config {
        source_name: String,
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
        file: String,
        missing: Vec<String>,
        unexpected: Vec<String>,
        misshaped: Vec<String>,
    },

    /// A malformed weight file (bad safetensors header, unsupported dtype, wrong byte count).
    #[error("{path}: bad weight file: {message}")]
    WeightFile {
        path: std::path::PathBuf,
        message: String,
    },

    /// A tokenizer that cannot be loaded or text that cannot be encoded.
    #[error("{source_name}: tokenizer: {message}")]
    Tokenizer {
        source_name: String,
        message: String,
    },

    /// Model inputs whose kind or shape does not fit the network (`what` names the input).
    #[error("model input `{what}`: {message}")]
    Input { what: String, message: String },

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
