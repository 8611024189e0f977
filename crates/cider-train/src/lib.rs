//! Training and evaluation of CIDer (docs/method.md §6, §7.4, §8): the MSSD two-pass step, the training
//! loop with validation-based selection, MACI inference and the missing-rate protocol.

pub mod alloc;
pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod evaluate;
pub mod golden_step;
pub mod mssd;
pub mod optim;
pub mod plot;
pub mod results;
pub mod trainer;
