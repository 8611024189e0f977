//! The backend chosen by Cargo features, for programs, examples and benches: `cuda` before
//! `wgpu` before `flex` (the CPU default). Library code stays generic over `B: Backend`.

#[cfg(feature = "cuda")]
/// The selected inference backend.
pub type Selected = burn::backend::Cuda;

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
/// The selected inference backend.
pub type Selected = burn::backend::Wgpu;

#[cfg(all(feature = "flex", not(any(feature = "wgpu", feature = "cuda"))))]
/// The selected inference backend.
pub type Selected = burn::backend::Flex;

#[cfg(any(feature = "flex", feature = "wgpu", feature = "cuda"))]
/// The selected backend with automatic differentiation, for training.
pub type SelectedAutodiff = burn::backend::Autodiff<Selected>;

/// The selected backend's name, for reports and bench ids.
pub const NAME: &str = if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "wgpu") {
    "wgpu"
} else {
    "flex"
};
