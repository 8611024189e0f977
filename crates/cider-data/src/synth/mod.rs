//! The built-in synthetic dataset (docs/method.md §1, §2, §4, §2.5): an MMSA-layout
//! [`Dataset`](crate::dataset::Dataset) generated from a seed, with a known generative model,
//! so that the whole toolkit runs without downloading MOSI / MOSEI. The model is documented
//! with its formulas in `docs/synthetic-data.md`; in short:
//!
//! * a 3-way class `c` is drawn from a per-split prior `π` and a sentiment score `s ∈ [-3, 3]`
//!   (a multiple of 1/3, exactly 0 for neutral) from `c`; the latent intensity `z = s / 3`
//!   drives all three modalities;
//! * **text**: English-like utterances over a fixed vocabulary of real `bert-base-uncased`
//!   WordPiece ids ([`vocab`]); polar words lean towards the sign of `s` with strength `κ_l`;
//! * **audio / vision**: frames `μ + α·z·g(t)·w + σ_s·η + σ_f·ξ_t` (offset, a burst-shaped
//!   signal along a fixed direction `w`, per-utterance and per-frame Gaussian noise);
//! * **label bias** `b`: training is skewed positive; the OOD test split mirrors the polar
//!   priors (skewed negative);
//! * **language bias** `λ`: one "shortcut" word per utterance (with probability 1/2) comes
//!   from the group of the utterance's polarity with probability `(1 + λ)/2` in training; the
//!   OOD test split reverses this to `(1 − λ)/2`.
//!
//! Validation always follows the training statistics; only the OOD test split is shifted. IID
//! uses the training statistics in all three splits.
//!
//! Files: `config.rs` (layouts, variants and [`SynthConfig`]), `generator.rs` ([`generate`] and
//! the generative model), `sampler.rs` (the seeded draws) and `vocab.rs` ([`vocab`]).

mod config;
mod generator;
mod sampler;
pub mod vocab;

pub use config::{Layout, OodShift, SynthConfig, Variant};
pub use generator::generate;
