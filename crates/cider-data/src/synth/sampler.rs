//! The seeded draws of the synthetic dataset: a ChaCha8 stream per split (stream 0 for what the
//! splits share), with uniforms, choices, categorical draws and standard normals.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Seeded sampler: a ChaCha8 stream plus a spare normal from the Marsaglia polar method.
pub(super) struct Sampler {
    rng: ChaCha8Rng,
    spare: Option<f32>,
}

impl Sampler {
    pub(super) fn new(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Sampler { rng, spare: None }
    }

    /// `U[0, 1)`.
    pub(super) fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    /// `U[lo, hi)`.
    pub(super) fn uniform_in(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform index in `0..n` (`n ≥ 1`).
    pub(super) fn index(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    /// `true` with probability `p`.
    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Index drawn from normalised cumulative weights.
    pub(super) fn categorical(&mut self, cumulative: &[f64]) -> usize {
        let u = self.uniform();
        cumulative
            .partition_point(|&c| c <= u)
            .min(cumulative.len() - 1)
    }

    /// Standard normal (Marsaglia polar method, values come in pairs).
    pub(super) fn normal(&mut self) -> f32 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        loop {
            let u = 2.0 * self.rng.random::<f32>() - 1.0;
            let v = 2.0 * self.rng.random::<f32>() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let m = (-2.0 * s.ln() / s).sqrt();
                self.spare = Some(v * m);
                return u * m;
            }
        }
    }
}

/// Normalised cumulative sums of non-negative weights.
pub(super) fn cumulative(weights: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    let mut sums: Vec<f64> = weights
        .into_iter()
        .map(|w| {
            acc += w;
            acc
        })
        .collect();
    for s in &mut sums {
        *s /= acc;
    }
    sums
}
