//! One module per command group.

pub mod data;
pub mod demo;
pub mod eval;
pub mod golden;
pub mod import;
pub mod infer;
pub mod plot;
pub mod train;
