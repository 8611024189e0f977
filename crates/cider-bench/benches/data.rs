//! Data benches (in progress).
fn main() {}
