//! The fused MCA attention core on plain `f32` slices (docs/method.md §5.5, steps 2-5), forward
//! and backward, one `(sample, head)` pair per rayon task.
//!
//! For the rows of modality `i` only the four branches containing `i` are kept, so the kernel
//! evaluates only those. Per row `r` it computes the scores `s_t = q̂_r · k_t` once
//! (`q̂ = q / √hd`), the per-column-block maxima `m_j`, `e_t = exp(s_t − m_j)`, the block sums
//! `z_j = Σ_t e_t` and the block products `y_j = Σ_t e_t v_t`; a branch `U` then weighs block
//! `j ∈ U` by `w_Uj = exp(m_j − M_U) / Σ_{j'∈U} exp(m_j' − M_U) z_j'` (`M_U = max_{j∈U} m_j`),
//! and `O_U = Σ_{j∈U} w_Uj y_j` is its softmax-weighted value.
//!
//! The backward recomputes a row's `e_t` instead of storing `[B, H, 3L, 3L]` probabilities. With
//! `g_U = ∂ℓ/∂O_U` and `δ_U = g_U · O_U`, the softmax rule `∂s_t = p_t (g_U · v_t − δ_U)` summed
//! over the row's branches collapses per block to `∂s_t = e_t (v_t · G_j − c_j)` with
//! `G_j = Σ_{U∋j} w_Uj g_U` and `c_j = Σ_{U∋j} w_Uj δ_U`; likewise `∂v_t += e_t G_j`.

use rayon::prelude::*;

use crate::mct::{BRANCHES, SUMMARY_BRANCHES};

/// Sizes of one fused MCA call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct McaShape {
    /// Samples `B`.
    pub batch: usize,
    /// Tokens `3L` (text, audio, vision segments of `L` each).
    pub tokens: usize,
    /// Width `D`.
    pub d_model: usize,
    /// Heads `H` (`hd = D / H`).
    pub heads: usize,
}

impl McaShape {
    fn segment(&self) -> usize {
        self.tokens / 3
    }

    fn head_dim(&self) -> usize {
        self.d_model / self.heads
    }
}

/// One head of one sample, transposed for the inner loops: `q̂ᵀ`, `kᵀ`, `vᵀ`, each
/// `[hd, 3L]` row-major.
struct HeadInputs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl HeadInputs {
    /// Gathers head `h` of sample `b` from `qkv [B, 3L, 3D]`, scaling `q` by `1/√hd`.
    fn gather(qkv: &[f32], shape: McaShape, b: usize, h: usize) -> Self {
        let (n, d, hd) = (shape.tokens, shape.d_model, shape.head_dim());
        let scale = (hd as f32).powf(-0.5);
        let mut head = HeadInputs {
            q: vec![0.0; hd * n],
            k: vec![0.0; hd * n],
            v: vec![0.0; hd * n],
        };
        for t in 0..n {
            let row = &qkv[(b * n + t) * 3 * d..(b * n + t + 1) * 3 * d];
            for c in 0..hd {
                head.q[c * n + t] = row[h * hd + c] * scale;
                head.k[c * n + t] = row[d + h * hd + c];
                head.v[c * n + t] = row[2 * d + h * hd + c];
            }
        }
        head
    }
}

/// One row's attention statistics: `e_t` over all `3L` columns, and per column block `j` the
/// maximum `m_j`, the sum `z_j` and the product `y_j` (`[3, hd]`).
struct RowStats {
    e: Vec<f32>,
    max: [f32; 3],
    sum: [f32; 3],
    product: Vec<f32>,
}

impl RowStats {
    fn new(tokens: usize, hd: usize) -> Self {
        RowStats {
            e: vec![0.0; tokens],
            max: [0.0; 3],
            sum: [0.0; 3],
            product: vec![0.0; 3 * hd],
        }
    }

    /// Fills the statistics of row `r`.
    #[inline(always)]
    fn compute(&mut self, head: &HeadInputs, r: usize, l: usize, hd: usize) {
        let n = 3 * l;
        self.e.fill(0.0);
        for c in 0..hd {
            let q = head.q[c * n + r];
            let k = &head.k[c * n..(c + 1) * n];
            for (s, &k) in self.e.iter_mut().zip(k) {
                *s += q * k;
            }
        }
        for j in 0..3 {
            let block = &mut self.e[j * l..(j + 1) * l];
            let m = lane_max(block);
            for s in block.iter_mut() {
                *s = exp_nonpositive(*s - m);
            }
            self.max[j] = m;
            self.sum[j] = lane_sum(block);
            for c in 0..hd {
                self.product[j * hd + c] =
                    lane_dot(block, &head.v[c * n + j * l..c * n + (j + 1) * l]);
            }
        }
    }

    /// The block weights `w_Uj` of branch `u` (zero for blocks outside `U`).
    fn weights(&self, u: usize) -> [f32; 3] {
        let members = BRANCHES[u];
        let top = (0..3)
            .filter(|&j| members[j])
            .map(|j| self.max[j])
            .fold(f32::NEG_INFINITY, f32::max);
        let mut weights = [0.0f32; 3];
        let mut norm = 0.0f32;
        for j in (0..3).filter(|&j| members[j]) {
            weights[j] = (self.max[j] - top).exp();
            norm += weights[j] * self.sum[j];
        }
        weights.map(|w| w / norm)
    }
}

/// The branch features of every row: `[3 (modality i), B·L, 4D]`, feature `k·D + h·hd + c` of
/// row `(b, r)` in block `i` holding `O_U[c]` of head `h` for `U = SUMMARY_BRANCHES[i][k]`.
///
/// # Shapes
/// - qkv: `[B, 3L, 3D]` row-major, columns `[q | k | v]`, head `h` at `h·hd..(h+1)·hd` of each
pub fn mca_forward(qkv: &[f32], shape: McaShape) -> Vec<f32> {
    let (l, d, hd) = (shape.segment(), shape.d_model, shape.head_dim());
    let per_head: Vec<Vec<f32>> = (0..shape.batch * shape.heads)
        .into_par_iter()
        .map(|bh| head_forward(qkv, shape, bh / shape.heads, bh % shape.heads))
        .collect();
    let mut feats = vec![0.0f32; 3 * shape.batch * l * 4 * d];
    for (bh, outputs) in per_head.iter().enumerate() {
        let (b, h) = (bh / shape.heads, bh % shape.heads);
        for (r, row) in outputs.chunks_exact(4 * hd).enumerate() {
            let (i, rr) = (r / l, r % l);
            let base = (i * shape.batch * l + b * l + rr) * 4 * d + h * hd;
            for (k, o) in row.chunks_exact(hd).enumerate() {
                feats[base + k * d..base + k * d + hd].copy_from_slice(o);
            }
        }
    }
    feats
}

/// `O_U` of the four kept branches for every row of one head: `[3L, 4, hd]`.
fn head_forward(qkv: &[f32], shape: McaShape, b: usize, h: usize) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the running CPU has AVX2, checked just above.
        return unsafe { head_forward_avx2(qkv, shape, b, h) };
    }
    head_forward_body(qkv, shape, b, h)
}

/// [`head_forward_body`] compiled for AVX2 (8-wide instead of SSE2's 4-wide vectors); the
/// same operations in the same order, so the same results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn head_forward_avx2(qkv: &[f32], shape: McaShape, b: usize, h: usize) -> Vec<f32> {
    head_forward_body(qkv, shape, b, h)
}

#[inline(always)]
fn head_forward_body(qkv: &[f32], shape: McaShape, b: usize, h: usize) -> Vec<f32> {
    let (n, l, hd) = (shape.tokens, shape.segment(), shape.head_dim());
    let head = HeadInputs::gather(qkv, shape, b, h);
    let mut stats = RowStats::new(n, hd);
    let mut out = vec![0.0f32; n * 4 * hd];
    for r in 0..n {
        stats.compute(&head, r, l, hd);
        for (k, &u) in SUMMARY_BRANCHES[r / l].iter().enumerate() {
            let weights = stats.weights(u);
            let o = &mut out[(r * 4 + k) * hd..(r * 4 + k + 1) * hd];
            for (j, &w) in weights.iter().enumerate().filter(|(_, w)| **w != 0.0) {
                for (o, y) in o.iter_mut().zip(&stats.product[j * hd..(j + 1) * hd]) {
                    *o += w * y;
                }
            }
        }
    }
    out
}

/// The gradient with respect to `qkv` of a loss whose gradient with respect to
/// [`mca_forward`]'s output is `grad`.
///
/// # Shapes
/// - qkv: `[B, 3L, 3D]`; grad: `[3, B·L, 4D]`; returns `[B, 3L, 3D]`
pub fn mca_backward(qkv: &[f32], grad: &[f32], shape: McaShape) -> Vec<f32> {
    let (n, d, hd) = (shape.tokens, shape.d_model, shape.head_dim());
    let per_head: Vec<Vec<f32>> = (0..shape.batch * shape.heads)
        .into_par_iter()
        .map(|bh| head_backward(qkv, grad, shape, bh / shape.heads, bh % shape.heads))
        .collect();
    let mut dqkv = vec![0.0f32; shape.batch * n * 3 * d];
    for (bh, grads) in per_head.iter().enumerate() {
        let (b, h) = (bh / shape.heads, bh % shape.heads);
        for (part, transposed) in grads.chunks_exact(hd * n).enumerate() {
            for c in 0..hd {
                for t in 0..n {
                    dqkv[(b * n + t) * 3 * d + part * d + h * hd + c] = transposed[c * n + t];
                }
            }
        }
    }
    dqkv
}

/// `[∂q ; ∂k ; ∂v]` of one head, each `[hd, 3L]` (transposed), `∂q` with respect to the
/// unscaled `q`.
fn head_backward(qkv: &[f32], grad: &[f32], shape: McaShape, b: usize, h: usize) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the running CPU has AVX2, checked just above.
        return unsafe { head_backward_avx2(qkv, grad, shape, b, h) };
    }
    head_backward_body(qkv, grad, shape, b, h)
}

/// [`head_backward_body`] compiled for AVX2, as [`head_forward_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn head_backward_avx2(qkv: &[f32], grad: &[f32], shape: McaShape, b: usize, h: usize) -> Vec<f32> {
    head_backward_body(qkv, grad, shape, b, h)
}

#[inline(always)]
fn head_backward_body(qkv: &[f32], grad: &[f32], shape: McaShape, b: usize, h: usize) -> Vec<f32> {
    let (n, l, d, hd) = (
        shape.tokens,
        shape.segment(),
        shape.d_model,
        shape.head_dim(),
    );
    let scale = (hd as f32).powf(-0.5);
    let head = HeadInputs::gather(qkv, shape, b, h);
    let mut stats = RowStats::new(n, hd);
    let mut out = vec![0.0f32; 3 * hd * n];
    let (dq, rest) = out.split_at_mut(hd * n);
    let (dk, dv) = rest.split_at_mut(hd * n);
    let mut ds = vec![0.0f32; n];
    let mut g_block = vec![0.0f32; 3 * hd];
    let mut o = vec![0.0f32; hd];
    for r in 0..n {
        stats.compute(&head, r, l, hd);
        let (i, rr) = (r / l, r % l);
        let g_row = &grad[(i * shape.batch * l + b * l + rr) * 4 * d..][..4 * d];
        // G_j and c_j, per column block.
        g_block.fill(0.0);
        let mut c_block = [0.0f32; 3];
        for (k, &u) in SUMMARY_BRANCHES[i].iter().enumerate() {
            let weights = stats.weights(u);
            let g = &g_row[k * d + h * hd..k * d + (h + 1) * hd];
            o.fill(0.0);
            for (j, &w) in weights.iter().enumerate() {
                for (o, y) in o.iter_mut().zip(&stats.product[j * hd..(j + 1) * hd]) {
                    *o += w * y;
                }
            }
            let delta: f32 = g.iter().zip(&o).map(|(g, o)| g * o).sum();
            for (j, &w) in weights.iter().enumerate().filter(|(_, w)| **w != 0.0) {
                for (acc, g) in g_block[j * hd..(j + 1) * hd].iter_mut().zip(g) {
                    *acc += w * g;
                }
                c_block[j] += w * delta;
            }
        }
        for j in 0..3 {
            let columns = j * l..(j + 1) * l;
            let e = &stats.e[columns.clone()];
            let ds = &mut ds[columns.clone()];
            ds.iter_mut().for_each(|x| *x = -c_block[j]);
            for c in 0..hd {
                let g = g_block[j * hd + c];
                let v = &head.v[c * n + columns.start..c * n + columns.end];
                for (x, &v) in ds.iter_mut().zip(v) {
                    *x += v * g;
                }
                let dv = &mut dv[c * n + columns.start..c * n + columns.end];
                for (acc, &e) in dv.iter_mut().zip(e) {
                    *acc += e * g;
                }
            }
            for (x, &e) in ds.iter_mut().zip(e) {
                *x *= e;
            }
        }
        for c in 0..hd {
            let k = &head.k[c * n..(c + 1) * n];
            dq[c * n + r] = lane_dot(&ds, k) * scale;
            let q = head.q[c * n + r];
            for (acc, &x) in dk[c * n..(c + 1) * n].iter_mut().zip(&ds) {
                *acc += x * q;
            }
        }
    }
    out
}

/// `max_t a_t` with eight independent partial maxima, so the loop vectorises (`f32::max`'s
/// NaN rule keeps LLVM from doing so); `−∞` for an empty slice.
#[inline(always)]
pub(super) fn lane_max(a: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = a.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = if x > *lane { x } else { *lane };
        }
    }
    lanes
        .iter()
        .chain(chunks.remainder())
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// `Σ a_t` with eight independent partial sums, so the loop vectorises.
#[inline(always)]
pub(super) fn lane_sum(a: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = a.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *lane += x;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `Σ a_t b_t` with eight independent partial sums.
#[inline(always)]
pub(super) fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut a_chunks = a.chunks_exact(8);
    let mut b_chunks = b.chunks_exact(8);
    for (x, y) in (&mut a_chunks).zip(&mut b_chunks) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    lanes.iter().sum::<f32>() + tail
}

/// `eˣ` for `x ≤ 0`, branch-free so the loops around it vectorise: `x = n ln 2 + f` with
/// `n = round(x / ln 2)` and `|f| ≤ ln 2 / 2`, `eᶠ` from its Taylor series to degree 7
/// (relative error below 2e-8 on that interval, under float rounding), and `2ⁿ` built from
/// its exponent bits. Inputs below −87 return `e⁻⁸⁷ ≈ 1.6e-38` instead of underflowing; NaN
/// stays NaN. No float-to-integer cast (Rust's saturating `as` does not vectorise): `n` is read
/// from the bits of `x / ln 2 + 1.5 · 2²³`, where one unit is one step of the mantissa.
#[inline(always)]
pub(super) fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2²³: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -87.0 { -87.0 } else { x };
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let f = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for coefficient in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * f + coefficient;
    }
    let n_int = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    p * f32::from_bits(((n_int + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_the_library_exp() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let exact = (x as f64).exp();
            worst = worst.max(((exp_nonpositive(x) as f64) - exact).abs() / exact);
        }
        assert!(worst < 3e-7, "largest relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-1000.0) > 0.0 && exp_nonpositive(-1000.0) < 1e-37);
    }

    /// The AVX2 builds of the per-head loops give the SSE2 builds' results bit for bit.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_heads_match_the_portable_heads_exactly() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let shape = McaShape {
            batch: 2,
            tokens: 3 * 11,
            d_model: 12,
            heads: 3,
        };
        let wave = |n: usize, f: f32| (0..n).map(|i| (f * i as f32).sin()).collect::<Vec<_>>();
        let qkv = wave(2 * 33 * 36, 0.37);
        let grad = wave(3 * 2 * 11 * 48, 0.91);
        for (b, h) in [(0, 0), (1, 2)] {
            // SAFETY: AVX2 was detected above.
            let fast = unsafe { head_forward_avx2(&qkv, shape, b, h) };
            assert_eq!(
                fast,
                head_forward_body(&qkv, shape, b, h),
                "forward {b}, {h}"
            );
            // SAFETY: as above.
            let fast = unsafe { head_backward_avx2(&qkv, &grad, shape, b, h) };
            let portable = head_backward_body(&qkv, &grad, shape, b, h);
            assert_eq!(fast, portable, "backward {b}, {h}");
        }
    }

    #[test]
    fn lane_reductions_match_plain_sums() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.1).collect();
        assert_eq!(lane_sum(&a), (0..19).map(|i| i as f32 * 0.5).sum::<f32>());
        let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((lane_dot(&a, &b) - dot).abs() < 1e-4);
        let c: Vec<f32> = (0..19).map(|i| ((i * 7) % 19) as f32 - 9.0).collect();
        assert_eq!(lane_max(&c), 9.0);
        assert_eq!(lane_max(&c[..5]), 5.0); // −9, −2, 5, −7, 0: shorter than one chunk
        assert_eq!(lane_max(&c[9..17]), 8.0); // one whole chunk, its largest in the last lane
        assert_eq!(lane_max(&[]), f32::NEG_INFINITY);
    }
}
