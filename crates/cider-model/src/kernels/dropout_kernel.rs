//! Dropout on plain `f32` slices with a counter-based keep mask: element `i` of a call is kept
//! when a hash of `(key, i)` falls below `keep · 2³²`. The mask is a pure function of the key
//! and the position, so chunks of the tensor are filled in parallel, and the backward
//! regenerates the mask from the key instead of storing it.
//!
//! The hash is two rounds of a 32-bit integer mixer (multiply, xor-shift), which AVX2
//! vectorises; the 64-bit key enters both rounds, and positions above `2³²` fold their high
//! half into the second.

use rayon::prelude::*;

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

/// The keep mask of one dropout call and its rescaling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutMask {
    /// The call's random key, drawn from the backend's generator.
    pub key: u64,
    /// `keep · 2³²` (`keep = 1 − p`) below `2³²`: an element is kept when its hash is below it.
    threshold: u32,
    /// `keep = 1`: every element is kept.
    keep_all: bool,
    /// `1 / keep`.
    scale: f32,
}

impl DropoutMask {
    /// The mask of dropout probability `prob` (`0 ≤ prob ≤ 1`) under `key`.
    pub fn new(key: u64, prob: f64) -> Self {
        let keep = 1.0 - prob;
        let threshold = keep * 4_294_967_296.0;
        DropoutMask {
            key,
            threshold: threshold.min(f64::from(u32::MAX)) as u32,
            keep_all: threshold >= 4_294_967_296.0,
            scale: (1.0 / keep) as f32,
        }
    }

    /// Whether element `i` is kept.
    pub fn keeps(&self, i: usize) -> bool {
        self.keeps_at(i as u32, self.high_key(i))
    }

    /// The second round's key for positions `i` that share `i`'s high half.
    #[inline(always)]
    fn high_key(&self, i: usize) -> u32 {
        (self.key >> 32) as u32 ^ ((i as u64) >> 32) as u32
    }

    /// Whether the element at low position half `low` is kept under [`Self::high_key`] `high`.
    #[inline(always)]
    fn keeps_at(&self, low: u32, high: u32) -> bool {
        self.keep_all || mix(mix(low ^ self.key as u32) ^ high) < self.threshold
    }

    /// `(x_i · m_i) · (1 / keep)` for every element, `m_i ∈ {0, 1}` the mask (the order of
    /// Burn's `Dropout`, so an infinite or NaN input propagates the same way).
    ///
    /// # Shapes
    /// - x: any, row-major; returns the same
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; x.len()];
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(chunk, (out, x))| self.apply_chunk(chunk * CHUNK, x, out));
        out
    }

    /// [`Self::apply`] on the elements from `start` (a multiple of [`CHUNK`], so all of them
    /// share one high position half), AVX2's 8-wide integer multiplies when the CPU has them.
    fn apply_chunk(&self, start: usize, x: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the running CPU has AVX2, checked just above.
            return unsafe { self.apply_chunk_avx2(start, x, out) };
        }
        self.apply_chunk_body(start, x, out)
    }

    /// [`Self::apply_chunk_body`] compiled for AVX2; integer arithmetic, so the same results.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn apply_chunk_avx2(&self, start: usize, x: &[f32], out: &mut [f32]) {
        self.apply_chunk_body(start, x, out)
    }

    #[inline(always)]
    fn apply_chunk_body(&self, start: usize, x: &[f32], out: &mut [f32]) {
        let high = self.high_key(start);
        let low = start as u32;
        for (j, (o, &x)) in out.iter_mut().zip(x).enumerate() {
            let m = if self.keeps_at(low.wrapping_add(j as u32), high) {
                1.0
            } else {
                0.0
            };
            *o = (x * m) * self.scale;
        }
    }
}

/// A 32-bit integer mixer: every input bit reaches every output bit (two multiply /
/// xor-shift rounds, constants from Wellons' hash-prospector search).
#[inline(always)]
fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept fraction matches `1 − p` within four standard deviations, neighbours are
    /// independent (the fraction of kept pairs is `keep²`), and each output is `0` or `x / keep`.
    #[test]
    fn keeps_the_right_fraction_independently() {
        let n = 200_003;
        let x: Vec<f32> = (0..n).map(|i| 1.0 + (i % 7) as f32).collect();
        for (key, prob) in [(1u64, 0.1), (0xdead_beef_0000_0001, 0.5), (u64::MAX, 0.9)] {
            let mask = DropoutMask::new(key, prob);
            let y = mask.apply(&x);
            let keep = 1.0 - prob;
            let kept: Vec<bool> = (0..n).map(|i| mask.keeps(i)).collect();
            let fraction = kept.iter().filter(|&&k| k).count() as f64 / n as f64;
            let sd = (keep * prob / n as f64).sqrt();
            assert!((fraction - keep).abs() < 4.0 * sd, "{key}: kept {fraction}");
            let pairs = kept.windows(2).filter(|w| w[0] && w[1]).count() as f64 / (n - 1) as f64;
            assert!(
                (pairs - keep * keep).abs() < 8.0 * sd,
                "{key}: pairs {pairs}"
            );
            for (i, (&y, &x)) in y.iter().zip(&x).enumerate() {
                let want = if kept[i] {
                    x * (1.0 / keep) as f32
                } else {
                    0.0
                };
                assert_eq!(y, want, "{key}: element {i}");
            }
        }
    }

    /// Two keys give different masks; the same key the same mask; the extremes keep all or
    /// nothing.
    #[test]
    fn the_mask_is_a_function_of_the_key() {
        let (a, b) = (DropoutMask::new(7, 0.5), DropoutMask::new(8, 0.5));
        let differ = (0..1000).filter(|&i| a.keeps(i) != b.keeps(i)).count();
        assert!((400..600).contains(&differ), "{differ} of 1000 differ");
        let again = DropoutMask::new(7, 0.5);
        assert!((0..1000).all(|i| a.keeps(i) == again.keeps(i)));
        assert!((0..1000).all(|i| DropoutMask::new(3, 0.0).keeps(i)));
        assert!((0..1000).all(|i| !DropoutMask::new(3, 1.0).keeps(i)));
        let high = 1usize << 33;
        let shifted = (0..1000)
            .filter(|&i| a.keeps(i) != a.keeps(i + high))
            .count();
        assert!(shifted > 300, "positions above 2³² get their own mask");
    }
}
