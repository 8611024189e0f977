//! The CIDer network in Burn (docs/method.md §5): BERT text encoder, WSAM, GRU encoders, MCT, pooling,
//! reconstruction decoders and weight import.
//!
//! A network is configured by the data's sizes plus [`network_config::NetworkOptions`] (the
//! `[model]` table of a training configuration), built on any backend, and run on one view:
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::{Distribution, Int, Tensor};
//! use cider_model::network::{InputMasks, TextInput, ViewInput};
//! use cider_model::network_config::{Alignment, NetworkConfig, NetworkOptions};
//!
//! # fn main() -> Result<(), cider_model::ModelError> {
//! let device = Default::default();
//! // d_l = 768 (precomputed text), d_a = 5, d_v = 20; T_l = 8 tokens, T_a = 12, T_v = 10 frames.
//! let config = NetworkConfig::new(768, 5, 20, 8, 12, 10, Alignment::Unaligned).with_options(
//!     NetworkOptions { embed_dim: 16, num_heads: 4, multimodal_layers: 1, ..Default::default() },
//! );
//! let network = config.init::<Flex>(&device)?;
//! let normal = Distribution::Normal(0.0, 1.0);
//! let batch = 2;
//! let view = ViewInput {
//!     text: TextInput::Features(Tensor::random([batch, 8, 768], normal, &device)),
//!     audio: Tensor::random([batch, 12, 5], normal, &device),
//!     vision: Tensor::random([batch, 10, 20], normal, &device),
//! };
//! let masks = InputMasks {
//!     text: Tensor::ones([batch, 8], &device),
//!     audio: Tensor::ones([batch, 12], &device),
//!     vision: Tensor::ones([batch, 10], &device),
//!     text_len: Tensor::<Flex, 1, Int>::from_ints([8, 8], &device),
//! };
//! let out = network.forward(view, &masks)?;
//! assert_eq!(out.joint_rep.dims(), [batch, 3 * 16]); // r = [batch, 3D]
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod backbone;
pub mod batch_input;
pub mod bert;
pub mod decoder;
pub mod error;
pub mod hf;
pub mod hf_pickle;
pub mod import;
pub mod kernels;
pub mod mct;
pub mod memory_estimate;
pub mod mult;
pub mod mult_encoder;
pub mod network;
pub mod network_config;
pub mod pooling;
pub mod projection;
pub mod tokenize;
pub mod weights;
pub mod wsam;

pub use error::ModelError;
