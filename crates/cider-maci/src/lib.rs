//! MACI (docs/method.md §7): the multimodal causal classifier (MCM), prototypes and priors, and
//! counterfactual inference.

pub mod counterfactual;
pub mod error;
pub mod golden;
pub mod mcm;
pub mod metrics;
pub mod model;
pub mod prototypes;

pub use error::CausalError;
