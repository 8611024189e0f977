//! Missing-modality simulation (docs/method.md §3): which tokens and frames a sample loses, and
//! the missing view built from it.
//!
//! Masks are bytes, 1 = present ("kept"), 0 = missing or padding; a missing mask is always
//! inside its input mask. Common rules (docs/method.md §3.1, [`MissingView`]): a missing token
//! becomes `[UNK]` (100), a missing frame becomes all zeros, and `[CLS]` (position 0) and `[SEP]`
//! (position `text_len − 1`) are never missing.
//!
//! * Evaluation ([`eval_view`], docs/method.md §3.3): one draw for the whole split from NumPy's
//!   legacy MT19937 seeded with 1111 (reset before every generation), consuming exactly the
//!   arrays the reference draws, in its order, so the masks equal the reference's. RMFM, the
//!   paper's mode, and `RMFM_same` / SMM are drawn in `rmfm.rs`; RMM, TMFM and STMFM in
//!   `eval_modes.rs`; [`EvalMissing`] and [`eval_view`] live in `evaluation.rs`.
//! * Training ([`TrainMissing`], docs/method.md §3.2, `train.rs`): every valid position of every
//!   modality is kept with probability ½, freshly for every fetch, yet reproducible from
//!   `(seed, epoch, sample index)`, so batching and shuffling never change a sample's mask.
//!
//! The view itself and the rules shared by every mode are in `view.rs`. The protocol's choice of
//! mode without its rate is `missing_mode::EvalMode`.

mod eval_modes;
mod evaluation;
mod rmfm;
#[cfg(test)]
mod testkit;
mod train;
mod view;

pub use evaluation::{DEFAULT_MISSING_SEED, EvalMissing, check_mode, eval_view};
pub use rmfm::smm_rates;
pub use train::{TrainMissing, TrainRng};
pub use view::MissingView;
