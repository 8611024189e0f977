//! The CIDer network in Burn (docs/method.md §5): BERT text encoder, WSAM, GRU encoders, MCT, pooling,
//! reconstruction decoders, MSSD losses and weight import.

pub mod bert;
pub mod config;
pub mod decoder;
pub mod error;
pub mod hf;
pub mod import;
pub mod losses;
pub mod mct;
pub mod model;
pub mod pooling;
pub mod projection;
pub mod tokenize;
pub mod weights;
pub mod wsam;

pub use error::ModelError;
