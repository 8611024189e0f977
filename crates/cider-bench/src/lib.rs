//! Benchmarks for cider-rs: criterion benches under `benches/` and shared helpers.
//!
//! Run `cargo bench -p cider-bench` (add `--features wgpu` or `--features cuda` for GPU backends).
